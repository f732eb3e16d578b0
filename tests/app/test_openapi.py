"""The gateway's published contract and its validation errors, in the client's terms."""

from __future__ import annotations

from app.api.errors import _field_error


def test_the_openapi_document_shows_one_schema_per_job_type():
    from app.main import app

    spec = app.openapi()
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    assert schema["discriminator"]["propertyName"] == "type"
    assert set(schema["discriminator"]["mapping"]) == {"select", "evaluate", "curve", "align"}


def test_validation_errors_name_fields_without_the_union_tag():
    assert _field_error({"loc": ("body", "select", "budget"), "type": "missing",
                         "msg": "Field required"}) == {"field": "body.budget",
                                                       "message": "Field required"}
    assert _field_error({"loc": ("body",), "type": "union_tag_not_found", "msg": "x"}) == {
        "field": "body.type", "message": "must be one of select, evaluate, curve, align"}
