"""MLflow tracking of finished jobs. With ``ISA_MLFLOW_TRACKING_URI`` set, or a job's own
``mlflow`` request field, a job that succeeds logs one MLflow run: its request as
parameters, its numeric results as metrics (an align job's training log per step), and
its result files as artifacts (evaluate/curve: the report JSON and the plot; align: the
metrics JSON, the plot and the model/adapter archive). Select jobs log their method,
budget, subset statistics and a sample of the first kept rows (a subset can be large; it
stays in the service). Every run spans its job (start and end times), carries the time
of each stage (``stage_seconds.<stage>``), the encoder as it ran, and the job's data sets
as MLflow inputs (name, sha256, rows, shape); experiments are per tenant by default
(``ISA_MLFLOW_EXPERIMENT``, a template with ``{tenant}``).

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
import time
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
    # a tenant's own experiment by default (ISA_MLFLOW_EXPERIMENT is a template)
    name = spec.get("experiment") or ctx.settings.mlflow_experiment.replace(
        "{tenant}", record["tenant"])
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
    job_type = record["type"]
    # the run spans the job: from its start (not from the moment it is logged)
    started = record.get("started_at") or record.get("created_at") or time.time()
    run = client.create_run(exp_id, run_name=spec.get("run_name") or f"{job_type}-{job_id}",
                            start_time=int(started * 1000),
                            tags={"isa.job_id": job_id, "isa.job_type": job_type,
                                  "isa.tenant": record["tenant"],
                                  **({} if error is None else {
                                      "isa.error_code": str(error.get("code")),
                                      "isa.error": str(error.get("message"))[:5000]})})
    run_id = run.info.run_id
    try:
        ts = int(record.get("created_at", 0) * 1000)
        figures = _metrics(job_type, result) | _stage_seconds(ctx, job_id)
        metrics = [Metric(k, v, ts, 0) for k, v in figures.items()]
        params = [Param(k, v) for k, v in (_params(record["request"])
                                           | _resolved(result)).items()]
        for i in range(0, max(len(params), len(metrics)), 100):  # MLflow's batch limits
            client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100],
                             tags=[RunTag("isa.service", "isa-service")] if i == 0 else [])
        _log_inputs(ctx, client, run_id, record)
        with tempfile.TemporaryDirectory(dir=ctx.settings.data_dir) as tmp:
            if job_type == "select" and result.get("files"):
                _log_subset_sample(ctx, client, run_id, job_id, result, Path(tmp))
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
        client.set_terminated(run_id, "FINISHED" if error is None else "FAILED",
                              end_time=int(time.time() * 1000))
    except BaseException:
        client.set_terminated(run_id, "FAILED", end_time=int(time.time() * 1000))
        raise
    return {"run_id": run_id, "experiment_id": exp_id, "experiment": name}


def _stage_seconds(ctx: WorkerContext, job_id: str) -> dict[str, float]:
    """Seconds the job spent in each stage (from the times it first reached them, the last
    one up to now), as metrics ``stage_seconds.<stage>``."""
    reached = ctx.jobs.stage_times(job_id)
    ends = [at for _, at in reached[1:]] + [time.time()]
    return {f"stage_seconds.{stage}": round(max(0.0, end - at), 3)
            for (stage, at), end in zip(reached, ends, strict=True) if stage != "tracking"}


def _resolved(result: dict[str, Any]) -> dict[str, str]:
    """What the request left to defaults, as the job ran it: the encoder in full."""
    encoder = (result.get("embedding") or {}).get("encoder") or result.get("encoder")
    return {"encoder.resolved": str(encoder)[:500]} if encoder else {}


def _log_inputs(ctx: WorkerContext, client: Any, run_id: str, record: dict[str, Any]) -> None:
    """The job's data sets as MLflow inputs (lineage): name, sha256, rows, shape."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    request = record["request"]
    inputs = []
    for field, context in (("dataset_id", "training"), ("eval_dataset_id", "evaluation")):
        ds = ctx.datasets.get(request.get(field) or "", record["tenant"])
        if ds is None:
            continue
        profile = {"rows": ds.get("rows_valid"), "examples": ds.get("examples"),
                   "shape": ds.get("shape"), "format": ds.get("format"),
                   "size_bytes": ds.get("size_bytes")}
        inputs.append(DatasetInput(
            Dataset(name=ds.get("filename") or ds["id"], digest=(ds.get("sha256") or "")[:36],
                    source_type="isa-service", source=f"isa-service://datasets/{ds['id']}",
                    profile=json.dumps(profile)),
            tags=[InputTag("mlflow.data.context", context), InputTag("isa.dataset_id",
                                                                     ds["id"])]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


#: kept rows a select run carries as a sample (the subset itself stays in the service)
SAMPLE_ROWS = 20


def _log_subset_sample(ctx: WorkerContext, client: Any, run_id: str, job_id: str,
                       result: dict[str, Any], tmp: Path) -> None:
    """A select run's artifacts: the subset's statistics and its first kept rows."""
    stats = {k: v for k, v in result.items() if k not in ("files", "mlflow")}
    (tmp / "subset_stats.json").write_text(json.dumps(stats, indent=1, default=str))
    client.log_artifact(run_id, str(tmp / "subset_stats.json"))
    fmt = result_format("select", "jsonl")
    if fmt is None or "jsonl" not in result.get("files", {}):
        return
    sample = tmp / "subset_sample.jsonl"
    with ctx.artifacts.open_read(Keys.job_file(job_id, fmt.filename)) as src, \
            sample.open("wb") as dst:
        for i, line in enumerate(src):
            if i >= SAMPLE_ROWS:
                break
            dst.write(line)
    client.log_artifact(run_id, str(sample))


def _log_training_steps(client: Any, run_id: str, metrics_json: Path) -> None:
    """An align job's training log (TRL's, every ``logging_steps``) as per-step metrics."""
    from mlflow.entities import Metric

    history = json.loads(metrics_json.read_text()).get("history", [])
    points = [Metric(f"train.{k}", float(v), 0, int(h["step"])) for h in history
              for k, v in h.items() if k != "step" and isinstance(v, int | float)]
    for i in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[i:i + 1000])
