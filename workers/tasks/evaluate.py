"""Evaluate and curve jobs: the proxy probe on a subset, or the budget curve of several
methods, served as a JSON report and a PNG plot."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from app.core.celery_app import TASK_EVALUATE, celery_app
from app.core.records import now
from workers.engine import Budget, ConfigError
from workers.engine.evaluate import runner
from workers.engine.evaluate.report import plot_curve, plot_evaluation
from workers.tasks.context import WorkerContext, context, get_encoder
from workers.tasks.datasets import open_dataset
from workers.tasks.select import _check_cancel, _guard, _stage, begin_job


@celery_app.task(name=TASK_EVALUATE)
def evaluate_job(job_id: str) -> None:
    ctx = context()
    if begin_job(ctx, job_id, evaluate_job) is not None:
        _guard(ctx, job_id, _run)


def _pairs(ctx: WorkerContext, job: dict[str, Any], dataset_id: str, encoder: Any,
           progress: Any) -> runner.PairSet:
    ds = ctx.datasets.get(dataset_id, job["tenant"])
    if ds is None or ds["status"] != "ready":
        raise ConfigError(f"data set {dataset_id!r} is missing or not ready",
                          code="dataset_not_ready")
    return runner.load_pairs(open_dataset(ds), encoder, cache=ctx.embeddings,
                             progress=progress)


def _run(ctx: WorkerContext, job_id: str) -> None:
    job = ctx.jobs.get(job_id)
    req = job["request"]  # type: ignore[index]
    encoder = get_encoder(req.get("encoder") or {"name": "sentence"})

    def progress(stage: str, done: int, total: int) -> None:
        _check_cancel(ctx, job_id)
        _stage(ctx, job_id, stage, done, total)

    pool = _pairs(ctx, job, req["dataset_id"], encoder, progress)  # type: ignore[arg-type]
    held = (_pairs(ctx, job, req["eval_dataset_id"], encoder, progress)  # type: ignore[arg-type]
            if req.get("eval_dataset_id") else None)
    train, test, split = runner.holdout(pool, held, eval_fraction=req.get("eval_fraction", 0.2),
                                        seed=req.get("seed", 0))
    _stage(ctx, job_id, "evaluating", 0, 0)
    if req["type"] == "evaluate":
        report = runner.evaluate_subset(
            train, test, req["method"], req.get("params") or {},
            Budget(**{k: v for k, v in req["budget"].items() if v is not None}),
            seeds=range(req.get("seeds") or 1))
        plot = plot_evaluation
        summary = {"accuracy": report["subset"]["accuracy"],
                   "full_accuracy": report["full"]["accuracy"], "pairs": report["pairs"]}
    else:
        methods = [(m["method"], m.get("params") or {}) for m in req["methods"]]
        report = runner.budget_curve(train, test, methods, grid=req["budgets_percent"],
                                     seeds=req.get("seeds") or 5, share=req.get("share", 0.95),
                                     progress=progress)
        plot = plot_curve
        summary = {"recommended_budget_percent": {
            m["method"]: m.get("recommended_budget_percent") for m in report["methods"]},
            "full_accuracy": report["full"]["accuracy"]}
    report |= {"split": split, "encoder": encoder.name, "eval_pairs": len(test.table),
               "pool_pairs": len(train.table)}
    _check_cancel(ctx, job_id)
    _stage(ctx, job_id, "writing", 0, 2)
    with tempfile.TemporaryDirectory(dir=ctx.settings.data_dir) as tmp:
        (Path(tmp) / "report.json").write_text(json.dumps(report, indent=1))
        plot(report, Path(tmp) / "plot.png")
        for name in ("report.json", "plot.png"):
            ctx.artifacts.put_file(Path(tmp) / name, f"jobs/{job_id}/{name}")
    ctx.jobs.transition(job_id, "succeeded", finished_at=now(), stage="done",
                        result={**summary, "files": {"json": "report.json",
                                                      "png": "plot.png"}})
