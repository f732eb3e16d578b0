"""Evaluate and curve jobs: the proxy probe on a subset, or the budget curve of several
methods, served as a JSON report and a PNG plot."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from core.artifacts import REPORT_FORMATS
from core.celery_app import TASK_EVALUATE, celery_app
from core.contract import CurveJob, EvaluateJob
from isa.embed.base import Encoder
from isa.evaluate import runner
from isa.evaluate.report import plot_curve, plot_evaluation
from workers.lifecycle import JobRun, run_claimed


@celery_app.task(name=TASK_EVALUATE)
def evaluate_job(job_id: str, resume: bool = False) -> None:
    run_claimed(job_id, evaluate_job, _evaluate, resume)


def _pairs(job: JobRun, dataset_id: str, encoder: Encoder) -> runner.PairSet:
    data = job.open(job.dataset(dataset_id))
    return runner.load_pairs(data, encoder, cache=job.ctx.embeddings(job.tenant),
                             progress=job.progress)


def _evaluate(job: JobRun) -> None:
    req: EvaluateJob | CurveJob = job.request
    encoder = job.ctx.encoder(req.encoder)
    pool = _pairs(job, req.dataset_id, encoder)
    held = _pairs(job, req.eval_dataset_id, encoder) if req.eval_dataset_id else None
    train, test, split = runner.holdout(pool, held, eval_fraction=req.eval_fraction,
                                        seed=req.seed)
    job.stage("evaluating")
    if isinstance(req, EvaluateJob):
        report = runner.evaluate_subset(train, test, req.method, req.params, req.budget,
                                        seeds=range(req.seeds or 1))
        plot = plot_evaluation
        summary = {"accuracy": report["subset"]["accuracy"],
                   # the 95% interval (one seed; several seeds give their spread instead)
                   "accuracy_ci_low": report["subset"].get("ci_low"),
                   "accuracy_ci_high": report["subset"].get("ci_high"),
                   "accuracy_sd": report["subset"].get("accuracy_sd"),
                   "balanced_accuracy": report["subset"].get("balanced_accuracy"),
                   "full_accuracy": report["full"]["accuracy"],
                   "full_accuracy_ci_low": report["full"].get("ci_low"),
                   "full_accuracy_ci_high": report["full"].get("ci_high"),
                   "full_balanced_accuracy": report["full"].get("balanced_accuracy"),
                   # "pairs" kept for clients that read it: the subset's training pairs
                   "pairs": report["pairs"], "subset_pairs": report["pairs"]}
    else:
        report = runner.budget_curve(train, test, [(m.method, m.params) for m in req.methods],
                                     grid=req.budgets_percent, seeds=req.seeds or 5,
                                     share=req.share, metric=req.metric,
                                     progress=job.progress)
        plot = plot_curve
        summary = {"recommended_budget_percent": {
            m["method"]: m.get("recommended_budget_percent") for m in report["methods"]},
            "metric": report["metric"], "full_accuracy": report["full"]["accuracy"],
            "full_balanced_accuracy": report["full"].get("balanced_accuracy")}
    length = report["length"]
    summary |= {"length_rule_accuracy": length["length_rule_accuracy"],
                "warning": length["warning"], "eval_pairs": len(test.table),
                "pool_pairs": len(train.table), "encoder": encoder.name}
    report |= {"split": split, "encoder": encoder.name, "eval_pairs": len(test.table),
               "pool_pairs": len(train.table)}
    job.check_cancel()
    json_file, png_file = REPORT_FORMATS
    job.stage("writing", 0, 2)
    with tempfile.TemporaryDirectory(dir=job.ctx.settings.data_dir) as tmp:
        (Path(tmp) / json_file.filename).write_text(json.dumps(report, indent=1))
        plot(report, Path(tmp) / png_file.filename)
        for f in REPORT_FORMATS:
            job.put_file(Path(tmp) / f.filename)
    job.succeed({**summary, "files": {f.name: f.filename for f in REPORT_FORMATS}})
