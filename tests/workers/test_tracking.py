"""MLflow tracking's last check, in this process: a job's own tracking URI is checked
again when the job ends, not only at POST (its name may resolve elsewhere by now)."""

from __future__ import annotations

import pytest

from workers.tracking import track_job


class _Called(Exception):
    pass


@pytest.fixture()
def clients(monkeypatch):
    """The MlflowClient the tracking code builds, recorded and stopped before any call."""
    made: list[str] = []

    def client(tracking_uri):  # noqa: ANN202
        made.append(tracking_uri)
        raise _Called

    monkeypatch.setattr("mlflow.tracking.MlflowClient", client)
    return made


def _record(uri: str) -> dict:
    return {"type": "select", "tenant": "t1", "created_at": 0.0,
            "request": {"type": "select", "method": "random",
                        "mlflow": {"tracking_uri": uri}}}


def test_a_tracking_uri_inside_the_network_is_refused_when_the_job_ends(worker_ctx, clients,
                                                                         monkeypatch):
    # as if the name had resolved to a public address at POST and to loopback now
    monkeypatch.setattr(worker_ctx.settings, "outbound_allowed_networks", [])
    out = track_job(worker_ctx, "job_x", _record("http://127.0.0.1:5000"), {"rows": 1})
    assert out is not None and out["code"] == "invalid_tracking_uri"
    assert "127.0.0.1" in out["error"]
    assert clients == []  # the server was never called


def test_an_allowed_tracking_uri_is_called(worker_ctx, clients, monkeypatch):
    monkeypatch.setattr(worker_ctx.settings, "outbound_allowed_networks", ["127.0.0.0/8"])
    out = track_job(worker_ctx, "job_x", _record("http://127.0.0.1:5000"), {"rows": 1})
    assert clients == ["http://127.0.0.1:5000"]
    assert out is not None and "code" not in out and out["error"].startswith("_Called")


def test_the_operators_tracking_uri_is_not_checked(worker_ctx, clients, monkeypatch,
                                                   tmp_path):
    monkeypatch.setattr(worker_ctx.settings, "outbound_allowed_networks", [])
    monkeypatch.setattr(worker_ctx.settings, "mlflow_tracking_uri", f"file://{tmp_path}")
    record = {**_record(""), "request": {"type": "select", "method": "random"}}
    track_job(worker_ctx, "job_x", record, {"rows": 1})
    assert clients == [f"file://{tmp_path}"]
