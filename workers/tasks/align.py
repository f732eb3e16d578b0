"""Align jobs: DPO or KTO with TRL on a data set or a select job's subset."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from core.artifacts import ALIGN_FORMATS, SCORES, Keys
from core.celery_app import TASK_ALIGN, celery_app
from core.contract import AlignJob
from isa.align import ModelRegistry, run_alignment
from isa.align.train import plot_history
from isa.errors import ConfigError
from isa.ingest.records import Example
from workers.lifecycle import JobRun, run_claimed


@celery_app.task(name=TASK_ALIGN)
def align_job(job_id: str, resume: bool = False) -> None:
    run_claimed(job_id, align_job, _align, resume)


def _training_examples(job: JobRun) -> list[Example]:
    """The data set's examples, or only those a finished select job kept."""
    req: AlignJob = job.request
    keep: set[str] | None = None
    dataset_id = req.dataset_id
    if req.select_job_id is not None:
        src = job.ctx.jobs.get(req.select_job_id, job.tenant)
        if src is None or src["status"] != "succeeded":
            raise ConfigError("the select job is missing or not finished",
                              code="job_not_succeeded")
        with job.ctx.artifacts.open_read(Keys.job_file(src["id"], SCORES.filename)) as fh:
            scores = pq.read_table(fh, columns=["row_id", "selected"]).to_pylist()
        keep = {s["row_id"] for s in scores if s["selected"]}
        dataset_id = src["request"]["dataset_id"]
    data = job.open(job.dataset(dataset_id))  # type: ignore[arg-type]
    return [e for e in data if keep is None or e.row_id in keep]


def _align(job: JobRun) -> None:
    req: AlignJob = job.request
    ctx, config = job.ctx, req.align
    job.stage("preparing")
    train = _training_examples(job)
    eval_pairs: list[Example] = []
    if req.eval_dataset_id:
        pairs = (e for e in job.open(job.dataset(req.eval_dataset_id)) if e.kind == "pair")
        eval_pairs = list(itertools.islice(pairs, config.eval_pairs))
    model_path = ModelRegistry(ctx.settings.model_registry,
                               ctx.settings.model_cache_dir).resolve(config.base_model)

    def progress(step: int, total: int, loss: float | None) -> None:
        job.stage("training", step, total)
        if loss is not None:
            ctx.jobs.update(job.id, latest_loss=loss)

    work = Path(tempfile.mkdtemp(prefix=f"{job.id}.", dir=ctx.settings.data_dir))
    try:
        result = run_alignment(train, model_path, work, config, eval_pairs=eval_pairs,
                               progress=progress, should_stop=job.cancel_requested)
        job.stage("writing", result.steps, result.steps)
        metrics = {**result.to_dict(), "base_model": config.base_model,
                   "config": dataclasses.asdict(config), "train_examples": len(train),
                   "eval_pairs": len(eval_pairs)}
        metrics.pop("model_dir")
        json_file, png_file, archive = ALIGN_FORMATS
        (work / json_file.filename).write_text(json.dumps(metrics, indent=1))
        plot_history(result.history, work / png_file.filename)
        shutil.make_archive(str(work / Path(archive.filename).stem), "zip", result.model_dir)
        for f in ALIGN_FORMATS:
            job.put_file(work / f.filename)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"steps": result.steps, "examples_trained": result.examples_trained,
               "stopped_early": result.stopped_early,
               "seconds_per_step": result.seconds_per_step, "train_examples": len(train),
               "evaluation": result.evaluation,
               "files": {f.name: f.filename for f in ALIGN_FORMATS}}
    if result.stopped_early:  # cancelled: it keeps (and serves) what it trained
        job.cancelled(result=summary)
    else:
        job.succeed(summary)
