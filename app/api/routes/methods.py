"""/v1/methods — the selection methods a job may name, with their parameters: default,
type and bounds (what ``POST /v1/jobs`` checks a job's ``params`` against)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import CurrentTenant
from app.api.errors import error_responses
from isa.select import describe_methods

router = APIRouter(prefix="/v1/methods", tags=["methods"],
                   responses=error_responses(401, 422, 503))


class MethodParam(BaseModel):
    name: str
    default: Any
    type: str
    #: JSON-schema bounds: minimum, maximum, exclusiveMinimum, exclusiveMaximum
    bounds: dict[str, float | int]


class MethodPublic(BaseModel):
    name: str
    summary: str
    needs_embeddings: bool
    params: list[MethodParam]


class MethodsPublic(BaseModel):
    data: list[MethodPublic]


_METHODS = MethodsPublic(data=[MethodPublic(**m) for m in describe_methods()])


@router.get("", response_model=MethodsPublic, operation_id="list_methods")
def list_methods(tenant: CurrentTenant) -> MethodsPublic:
    """Every selection method with its parameters (the same for every tenant)."""
    del tenant  # a key is needed, as for every /v1 route
    return _METHODS
