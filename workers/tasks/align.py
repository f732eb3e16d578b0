"""Align jobs: DPO or KTO with TRL on a data set or a select job's subset."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from app.core.celery_app import TASK_ALIGN, celery_app
from app.core.records import now
from workers.engine import ConfigError
from workers.engine.align import AlignConfig, ModelRegistry, run_alignment
from workers.engine.align.train import plot_history
from workers.tasks.context import WorkerContext, context
from workers.tasks.datasets import open_dataset
from workers.tasks.select import _fail, _stage, begin_job


@celery_app.task(name=TASK_ALIGN)
def align_job(job_id: str) -> None:
    ctx = context()
    job = begin_job(ctx, job_id, align_job)
    if job is None:
        return
    try:
        _run(ctx, job)
    except ConfigError as exc:
        _fail(ctx, job_id, exc.code, exc.message, **exc.details)
    except Exception as exc:  # keep the worker; the job records what went wrong
        _fail(ctx, job_id, "internal_error", f"{type(exc).__name__}: {exc}")


def _examples(ctx: WorkerContext, job: dict[str, Any]) -> list[Any]:
    req = job["request"]
    if req.get("select_job_id"):
        src = ctx.jobs.get(req["select_job_id"], job["tenant"])
        if src is None or src["status"] != "succeeded":
            raise ConfigError("the select job is missing or not finished",
                              code="job_not_succeeded")
        with ctx.artifacts.open_read(f"jobs/{src['id']}/scores.parquet") as fh:
            scores = pq.read_table(fh, columns=["row_id", "selected"]).to_pylist()
        keep = {s["row_id"] for s in scores if s["selected"]}
        dataset_id = src["request"]["dataset_id"]
    else:
        keep, dataset_id = None, req["dataset_id"]
    ds = ctx.datasets.get(dataset_id, job["tenant"])
    if ds is None or ds["status"] != "ready":
        raise ConfigError("the data set is missing or not ready", code="dataset_not_ready")
    return [e for e in open_dataset(ds) if keep is None or e.row_id in keep]


def _run(ctx: WorkerContext, job: dict[str, Any]) -> None:
    job_id, req = job["id"], job["request"]
    spec = dict(req.get("align") or {})
    eval_n = spec.pop("eval_pairs", 200)
    base = spec.pop("base_model", "smollm2-135m")
    config = AlignConfig(**spec).validate()
    _stage(ctx, job_id, "preparing")
    train = _examples(ctx, job)
    eval_pairs: list[Any] = []
    if req.get("eval_dataset_id"):
        ds = ctx.datasets.get(req["eval_dataset_id"], job["tenant"])
        if ds is None or ds["status"] != "ready":
            raise ConfigError("the evaluation data set is missing or not ready",
                              code="dataset_not_ready")
        for e in open_dataset(ds):
            if e.kind == "pair":
                eval_pairs.append(e)
            if len(eval_pairs) >= eval_n:
                break
    model_path = ModelRegistry(ctx.settings.model_registry,
                               ctx.settings.model_cache_dir).resolve(base)

    def progress(step: int, total: int, loss: float | None) -> None:
        ctx.jobs.set_progress(job_id, "training", step, total)
        if loss is not None:
            ctx.jobs.update(job_id, latest_loss=loss)

    def should_stop() -> bool:
        return ctx.jobs.status(job_id) != "running"

    work = Path(tempfile.mkdtemp(prefix=f"{job_id}.", dir=ctx.settings.data_dir))
    try:
        result = run_alignment(train, model_path, work, config, eval_pairs=eval_pairs,
                               progress=progress, should_stop=should_stop)
        _stage(ctx, job_id, "writing", result.steps, result.steps)
        metrics = {**result.to_dict(), "base_model": base, "config": config.__dict__,
                   "train_examples": len(train), "eval_pairs": len(eval_pairs)}
        metrics.pop("model_dir")
        (work / "metrics.json").write_text(json.dumps(metrics, indent=1))
        plot_history(result.history, work / "plot.png")
        shutil.make_archive(str(work / "model"), "zip", result.model_dir)
        for name in ("metrics.json", "plot.png", "model.zip"):
            ctx.artifacts.put_file(work / name, f"jobs/{job_id}/{name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"steps": result.steps, "stopped_early": result.stopped_early,
               "seconds_per_step": result.seconds_per_step, "train_examples": len(train),
               "evaluation": result.evaluation,
               "files": {"json": "metrics.json", "png": "plot.png", "archive": "model.zip"}}
    if result.stopped_early:
        ctx.jobs.transition(job_id, "cancelled", finished_at=now(), result=summary)
    else:
        ctx.jobs.transition(job_id, "succeeded", finished_at=now(), stage="done",
                            result=summary)
