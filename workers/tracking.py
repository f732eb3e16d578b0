"""MLflow tracking of finished jobs. With ``ISA_MLFLOW_TRACKING_URI`` set, or a job's own
``mlflow`` request field, a job that succeeds logs one MLflow run: its request as
parameters, its numeric results as metrics (an align job's training log per step), and
its result files as artifacts (evaluate/curve: the report JSON and the plot; align: the
metrics JSON, the plot and the model/adapter archive). Select jobs log their method,
budget and subset statistics only (a subset can be large; it stays in the service).

A job that fails logs a run too, with status ``FAILED``: its request as parameters and
its error as tags (``isa.error_code``, ``isa.error``), so a sweep's failures show beside
its successes. Not tracked: a job failed by the supervisor (its worker was lost: no
worker is there to log it) or by the task time limit (the hard limit follows a minute
later, too close for a call to a server that may be slow).

Tracking never fails a job: an unreachable server is recorded on the job's result as
``mlflow.error``, and so is a job's own tracking URI that no longer passes the outbound
check when the job ends (``mlflow.code`` ``invalid_tracking_uri``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from core.artifacts import Keys, result_format
from core.webhooks import check_callback_url
from isa.errors import ConfigError
from workers.context import WorkerContext

logger = logging.getLogger("isa.tracking")
# MLflow's client retries a dead server for minutes by default; a job's end waits on it
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
#: result files logged per job type (select subsets are not)
ARTIFACT_FORMATS = {"evaluate": ("json", "png"), "curve": ("json", "png"),
                    "align": ("json", "png", "archive"), "select": ()}


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def _params(request: dict[str, Any]) -> dict[str, str]:
    flat = _flatten("", {k: v for k, v in request.items()
                         if k not in ("mlflow", "callback_url") and v is not None}, {})
    return {k: (json.dumps(v) if isinstance(v, list | bool) else str(v))[:500]
            for k, v in flat.items() if v is not None}


def _metrics(job_type: str, result: dict[str, Any]) -> dict[str, float]:
    flat = _flatten("", {k: v for k, v in result.items() if k != "files"}, {})
    out = {k: float(v) for k, v in flat.items()
           if isinstance(v, int | float) and not isinstance(v, bool)}
    if job_type == "select" and result.get("units"):
        out["selected_fraction"] = result["rows_selected"] / result["units"]
    return out


def track_job(ctx: WorkerContext, job_id: str, record: dict[str, Any],
              result: dict[str, Any], error: dict[str, Any] | None = None
              ) -> dict[str, Any] | None:
    """Log the finished job as an MLflow run (``error``: a failed job, its run ``FAILED``);
    what the job records of it (the run and experiment ids, or the error), or None when
    tracking is off for the job."""
    spec = record["request"].get("mlflow") or {}
    uri = spec.get("tracking_uri") or ctx.settings.mlflow_tracking_uri
    if not uri:
        return None
    if spec.get("tracking_uri"):
        # checked at POST too, but the name may resolve elsewhere by now (DNS rebinding):
        # a user's server is checked again just before the worker calls it. The
        # operator's ISA_MLFLOW_TRACKING_URI is trusted (it may be a file store)
        try:
            check_callback_url(uri, ctx.settings.outbound_allowed_networks,
                               field="mlflow.tracking_uri", code="invalid_tracking_uri")
        except ConfigError as exc:
            logger.warning("MLflow tracking of job %s refused: %s", job_id, exc.message)
            return {"error": exc.message, "code": exc.code}
    try:
        return _log_run(ctx, job_id, record, result, uri, spec, error)
    except Exception as exc:  # noqa: BLE001 - tracking must not fail the job
        logger.warning("MLflow tracking of job %s failed: %s", job_id, exc)
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def _log_run(ctx: WorkerContext, job_id: str, record: dict[str, Any],
             result: dict[str, Any], uri: str, spec: dict[str, Any],
             error: dict[str, Any] | None) -> dict[str, Any]:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    name = spec.get("experiment") or ctx.settings.mlflow_experiment
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
    job_type = record["type"]
    run = client.create_run(exp_id, run_name=spec.get("run_name") or f"{job_type}-{job_id}",
                            tags={"isa.job_id": job_id, "isa.job_type": job_type,
                                  "isa.tenant": record["tenant"],
                                  **({} if error is None else {
                                      "isa.error_code": str(error.get("code")),
                                      "isa.error": str(error.get("message"))[:5000]})})
    run_id = run.info.run_id
    try:
        ts = int(record.get("created_at", 0) * 1000)
        metrics = [Metric(k, v, ts, 0) for k, v in _metrics(job_type, result).items()]
        params = [Param(k, v) for k, v in _params(record["request"]).items()]
        for i in range(0, max(len(params), len(metrics)), 100):  # MLflow's batch limits
            client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100],
                             tags=[RunTag("isa.service", "isa-service")] if i == 0 else [])
        with tempfile.TemporaryDirectory(dir=ctx.settings.data_dir) as tmp:
            for fmt_name in ARTIFACT_FORMATS.get(job_type, ()):
                fmt = result_format(job_type, fmt_name)
                if fmt is None or fmt_name not in result.get("files", {}):
                    continue
                local = Path(tmp) / fmt.filename
                with ctx.artifacts.open_read(Keys.job_file(job_id, fmt.filename)) as src, \
                        local.open("wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
                client.log_artifact(run_id, str(local))
                if job_type == "align" and fmt_name == "json":
                    _log_training_steps(client, run_id, local)
        client.set_terminated(run_id, "FINISHED" if error is None else "FAILED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return {"run_id": run_id, "experiment_id": exp_id, "experiment": name}


def _log_training_steps(client: Any, run_id: str, metrics_json: Path) -> None:
    """An align job's training log (TRL's, every ``logging_steps``) as per-step metrics."""
    from mlflow.entities import Metric

    history = json.loads(metrics_json.read_text()).get("history", [])
    points = [Metric(f"train.{k}", float(v), 0, int(h["step"])) for h in history
              for k, v in h.items() if k != "step" and isinstance(v, int | float)]
    for i in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[i:i + 1000])
