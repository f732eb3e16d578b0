"""What a select job's tasks share, whichever of them ends it: its plan (the request
resolved against its data set), whether it scores as map/reduce (``scoring``), and its
end (score, select, write the subset formats and the scores, record the result).
``select`` and ``scoring`` both import it; it imports neither."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from core.artifacts import SCORES, SUBSET_FORMATS
from isa.export import write_scores, write_subsets
from isa.pipeline import (
    SelectionPlan,
    SelectionResult,
    SelectionRun,
    StageProgress,
    default_export_shapes,
)
from isa.select import make_method
from isa.select.isa import ISA
from workers.lifecycle import JobRun


def scores_sharded(job: JobRun, run: SelectionRun) -> bool:
    """Whether this selection scores as map/reduce: paper ISA, not yet scored, more units
    than one scoring task takes."""
    return (type(run.plan.method) is ISA and not run.scored
            and len(run.units) > job.ctx.settings.score_shard_units)


def reads_keys_only(job: JobRun, method: Any, dataset: dict[str, Any]) -> bool:
    """Whether a select job reads its units without their texts: an ISA job sure to score
    as map/reduce (a file holds at least as many units as valid rows). Its texts are
    hashed as they stream by; those the store lacks are found again by key."""
    return (type(method) is ISA
            # units: the pairs the rows hold (a ranked row may hold several)
            and int(dataset.get("examples") or dataset.get("rows_valid") or 0)
            > job.ctx.settings.score_shard_units)


def plan(job: JobRun, progress: StageProgress | None = None) -> SelectionRun:
    """Stage 0, the plan: the job's request resolved against its data set."""
    req, ctx = job.request, job.ctx
    ds = job.dataset(req.dataset_id)
    method = make_method(req.method, **{"random_state": req.seed, **req.params})
    plan = SelectionPlan(
        job.open(ds), method, req.budget, level=req.level, template=req.template,
        encoder=lambda: ctx.encoder(req.encoder), encoder_key=req.encoder.model_dump(),
        reference=ctx.reference, reference_key=ctx.settings.reference_model,
        source_key=f"{ds['sha256']}:{json.dumps(ds.get('options'), sort_keys=True)}",
        keep_texts=not reads_keys_only(job, method, ds))
    return SelectionRun(plan, cache=ctx.embeddings(job.tenant), scores=ctx.scores(job.tenant),
                        progress=progress or job.progress)


def complete(job: JobRun, run: SelectionRun) -> None:
    """score (unless scored already) → select → write, and the job's result."""
    ctx = job.ctx
    run.score()
    job.check_cancel()
    result = run.select()
    job.stage("writing", 0, result.n_selected)
    t = time.perf_counter()
    files = _write_outputs(job, run, result)
    result.timings["writing"] = time.perf_counter() - t
    for stage, seconds in result.timings.items():
        if stage == "embedding" and not (result.embed_stats and result.embed_stats.embedded):
            continue  # only assembled from the cache; the encoding was timed where it ran
        ctx.metrics.observe_stage(stage, seconds)
    record = ctx.jobs.get(job.id) or {}
    summary = {
        "rows_selected": result.n_selected,
        "units": len(result.units),
        "level": result.units.level,
        "budget": result.budget.to_dict(),
        "files": files,
        "score_cache_hit": result.score_cache_hit,
        "reference": None if result.reference_stats is None else {
            "model": result.reference_name, **result.reference_stats.to_dict()},
        "embedding": None if not result.method.needs_embeddings else {
            # the cache name: the model and every setting that changes its vectors
            "encoder": result.encoder_name,
            "texts": record.get("texts", result.units.n_items),
            "unique": record.get("texts_unique"),
            "cached": record.get("texts_cached"),
            "newly_embedded": record.get("embedded_new", 0),
            # embedding tasks per worker (node name), when the texts fanned out
            "workers": ctx.jobs.task_workers(job.id),
        },
        # scoring tasks per worker, when the job scored as map/reduce
        "scoring": {"workers": ctx.jobs.task_workers(job.id, "scoring")},
    }
    job.check_cancel()
    job.succeed(summary, progress_done=result.n_selected, progress_total=result.n_selected)


def _write_outputs(job: JobRun, run: SelectionRun, result: SelectionResult) -> dict[str, str]:
    """Every subset format that applies (one pass over the source) and the scores."""
    shapes = default_export_shapes(result.units)
    formats = [f for f in SUBSET_FORMATS if f.shape in shapes]
    with tempfile.TemporaryDirectory(dir=job.ctx.settings.data_dir) as tmp:
        folder = Path(tmp)
        write_subsets(run.plan.source, result,
                      {folder / f.filename: f.shape for f in formats})  # type: ignore[misc]
        write_scores(result, folder / SCORES.filename)
        for f in (*formats, SCORES):
            job.put_file(folder / f.filename)
    return {f.name: f.filename for f in (*formats, SCORES)}
