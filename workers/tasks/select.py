"""Select jobs: read → embed (split into chunk tasks, a Celery chord) → score → select →
write. Tasks take ids, are idempotent (a redelivered task finds its work in the caches),
record failures in the job record instead of raising, and stop at the next batch when
the job is being cancelled.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from celery import chord

from app.core.celery_app import TASK_EMBED_CHUNK, TASK_FINISH_SELECT, TASK_SELECT, celery_app
from app.core.records import TERMINAL, now
from workers.engine import (
    Budget,
    ConfigError,
    EngineError,
    SelectionResult,
    apply_budget,
    make_method,
    read_units,
    write_scores,
    write_subset,
)
from workers.engine.embed.base import embed_texts, text_key
from workers.engine.pipeline import UnitTable
from workers.tasks.context import WorkerContext, context, get_encoder
from workers.tasks.datasets import open_dataset

EXPORTS = ("jsonl", "parquet", "trl", "kto", "openai")


class JobCancelled(Exception):
    pass


def _check_cancel(ctx: WorkerContext, job_id: str) -> None:
    if ctx.jobs.status(job_id) != "running":
        raise JobCancelled


def _fail(ctx: WorkerContext, job_id: str, code: str, message: str, **details: Any) -> None:
    ctx.jobs.transition(job_id, "failed", finished_at=now(),
                        error={"code": code, "message": message, "details": details})
    ctx.metrics.incr("jobs_failed")


def _guard(ctx: WorkerContext, job_id: str, fn: Any, *args: Any) -> Any:
    """Run a task body; map every outcome onto the job record."""
    try:
        return fn(ctx, job_id, *args)
    except JobCancelled:
        ctx.jobs.transition(job_id, "cancelled", finished_at=now())
    except EngineError as exc:
        _fail(ctx, job_id, exc.code, exc.message, **exc.details)
    except Exception as exc:  # a bug or a broken dependency: fail the job, keep the worker
        _fail(ctx, job_id, "internal_error", f"{type(exc).__name__}: {exc}")
    return None


class SelectPlan:
    """What a job asks for, resolved against its data set."""

    def __init__(self, ctx: WorkerContext, job: dict[str, Any]) -> None:
        req = job["request"]
        self.job_id = job["id"]
        self.request = req
        ds = ctx.datasets.get(req["dataset_id"], job["tenant"])
        if ds is None or ds["status"] != "ready":
            raise ConfigError("the data set is missing or not ready", code="dataset_not_ready")
        self.dataset = ds
        self.data = open_dataset(ds)
        self.params = {"random_state": req.get("seed", 0), **(req.get("params") or {})}
        self.method = make_method(req["method"], **self.params)
        self.budget = Budget(**{k: v for k, v in req["budget"].items() if v is not None})
        self.encoder_config = req.get("encoder") or {"name": "sentence"}
        self.level = req.get("level", "auto")
        self.template = req.get("template", "prompt_completion")
        self.score_key = ctx.scores.key({
            "dataset": ds["sha256"], "options": ds.get("options"), "method": req["method"],
            "params": self.params, "level": self.level, "template": self.template,
            "encoder": self.encoder_config if self.method.needs_embeddings else None,
            # a greedy method's order past the budget differs by budget: key it too
            "budget": req["budget"] if self.method.uses_budget_hint else None})

    def units(self) -> UnitTable:
        table, _ = read_units(self.data, level=self.level, template=self.template)
        return table


def begin_job(ctx: WorkerContext, job_id: str, task: Any) -> dict[str, Any] | None:
    """Claim a job for this task: None when it is gone, finished, cancelled, waiting for
    its data set (re-sent shortly) or claimed by another delivery."""
    job = ctx.jobs.get(job_id)
    if job is None or job["status"] in TERMINAL or requeued_while_validating(ctx, job, task):
        return None
    if not ctx.jobs.transition(job_id, "running", started_at=now())[0]:
        return None
    return job


def requeued_while_validating(ctx: WorkerContext, job: dict[str, Any], task: Any) -> bool:
    """If a data set the job reads is still being validated, send the task again shortly
    (rather than hold a worker slot) and say so."""
    req = job["request"]
    for dataset_id in (req.get("dataset_id"), req.get("eval_dataset_id")):
        ds = ctx.datasets.get(dataset_id, job["tenant"]) if dataset_id else None
        if ds is not None and ds["status"] in ("uploaded", "validating"):
            task.apply_async(args=(job["id"],), countdown=1,
                             queue=req.get("queue") or ctx.settings.default_queue)
            return True
    return False


def _stage(ctx: WorkerContext, job_id: str, stage: str, done: int = 0, total: int = 0) -> None:
    ctx.jobs.set_progress(job_id, stage, done, total)


@celery_app.task(name=TASK_SELECT)
def select_job(job_id: str) -> None:
    ctx = context()
    if begin_job(ctx, job_id, select_job) is not None:
        _guard(ctx, job_id, _start)


def _start(ctx: WorkerContext, job_id: str) -> None:
    job = ctx.jobs.get(job_id)
    plan = SelectPlan(ctx, job)  # type: ignore[arg-type]
    _stage(ctx, job_id, "reading")
    t = time.perf_counter()
    table = plan.units()
    ctx.metrics.observe_stage("reading", time.perf_counter() - t)
    plan.budget.size(len(table))  # a budget larger than the data fails now, not later
    if not plan.method.needs_embeddings or ctx.scores.has(plan.score_key):
        _finish(ctx, job_id)
        return
    encoder = get_encoder(plan.encoder_config)
    distinct = dict(zip((text_key(t) for t in table.texts), table.texts, strict=True))
    keys = list(distinct)
    cached = ctx.embeddings.get_many(encoder.name, keys)
    todo = {k: t for k, t in distinct.items() if k not in cached}
    ctx.metrics.incr("embed_cache_hits", len(cached))
    ctx.metrics.incr("embed_cache_misses", len(todo))
    ctx.jobs.update(job_id, texts=len(table.texts), texts_unique=len(keys),
                    texts_cached=len(cached))
    _stage(ctx, job_id, "embedding", 0, len(todo))
    size = ctx.settings.embed_chunk_size
    if len(todo) <= size:
        _embed(ctx, job_id, list(todo.values()), plan.encoder_config)
        _finish(ctx, job_id)
        return
    # Fan out: one task per chunk of texts, on any worker; the last one to finish
    # triggers finish_select through the chord.
    artifact = f"jobs/{job_id}/todo.jsonl"
    with ctx.artifacts.open_write(artifact) as fh:
        for text in todo.values():
            fh.write(json.dumps(text).encode() + b"\n")
    queue = plan.request.get("queue") or ctx.settings.default_queue
    header = [celery_app.signature(TASK_EMBED_CHUNK, args=(job_id, a, min(a + size, len(todo))),
                                   queue=queue) for a in range(0, len(todo), size)]
    chord(header)(celery_app.signature(TASK_FINISH_SELECT, args=(job_id,), queue=queue))


def _embed(ctx: WorkerContext, job_id: str, texts: list[str], config: dict[str, Any]) -> None:
    encoder = get_encoder(config)
    reported = 0

    def progress(done: int, total: int) -> None:
        nonlocal reported
        _check_cancel(ctx, job_id)  # first: a cancelled job's counters stay where they were
        ctx.jobs.add_progress(job_id, done - reported, embedded=done - reported)
        reported = done

    t = time.perf_counter()
    _check_cancel(ctx, job_id)
    embed_texts(texts, encoder, cache=ctx.embeddings, progress=progress)
    ctx.metrics.observe_stage("embedding", time.perf_counter() - t)


@celery_app.task(name=TASK_EMBED_CHUNK)
def embed_chunk(job_id: str, start: int, end: int) -> None:
    ctx = context()
    if ctx.jobs.status(job_id) != "running":
        return

    def body(ctx: WorkerContext, job_id: str) -> None:
        job = ctx.jobs.get(job_id)
        texts = []
        with ctx.artifacts.open_read(f"jobs/{job_id}/todo.jsonl") as fh:
            for i, line in enumerate(fh):
                if i >= end:
                    break
                if i >= start:
                    texts.append(json.loads(line))
        _embed(ctx, job_id, texts, job["request"].get("encoder") or {"name": "sentence"})

    _guard(ctx, job_id, body)


@celery_app.task(name=TASK_FINISH_SELECT)
def finish_select(_results: Any, job_id: str) -> None:
    ctx = context()
    status = ctx.jobs.status(job_id)
    if status == "cancelling":
        ctx.jobs.transition(job_id, "cancelled", finished_at=now())
    elif status == "running":
        _guard(ctx, job_id, _finish)


def _finish(ctx: WorkerContext, job_id: str) -> None:
    job = ctx.jobs.get(job_id)
    plan = SelectPlan(ctx, job)  # type: ignore[arg-type]
    table = plan.units()
    n_select = plan.budget.size(len(table))
    method = plan.method
    cached = ctx.scores.get(plan.score_key)
    stats = None
    if cached is not None:
        ctx.metrics.incr("score_cache_hits")
        method.scores_, method.ranking_ = cached.pop("scores_"), cached.pop("ranking_")
        method.details_ = {k[2:]: v for k, v in cached.items() if k.startswith("d:")}
        method.item_details_ = {k[2:]: v for k, v in cached.items() if k.startswith("i:")}
    else:
        ctx.metrics.incr("score_cache_misses")
        X = None
        if method.needs_embeddings:
            _check_cancel(ctx, job_id)
            encoder = get_encoder(plan.encoder_config)
            X, stats = embed_texts(table.texts, encoder, cache=ctx.embeddings)
        _stage(ctx, job_id, "scoring", 0, len(table))
        t = time.perf_counter()
        method.fit(X, groups=table.groups, meta=table.meta, n_units=len(table),
                   n_select=n_select)
        ctx.metrics.observe_stage("scoring", time.perf_counter() - t)
        arrays = {"scores_": method.scores_, "ranking_": method.ranking_}
        arrays |= {f"d:{k}": v for k, v in method.details_.items()}
        arrays |= {f"i:{k}": v for k, v in method.item_details_.items()}
        ctx.scores.put(plan.score_key, arrays)
    _check_cancel(ctx, job_id)
    _stage(ctx, job_id, "selecting", 0, len(table))
    selected = apply_budget(method.ranking_, plan.budget)
    result = SelectionResult(table, method, plan.budget, selected, plan.data.report, stats,
                             None, {})
    _stage(ctx, job_id, "writing", 0, int(selected.sum()))
    t = time.perf_counter()
    files = _write_outputs(ctx, job_id, plan, result)
    ctx.metrics.observe_stage("writing", time.perf_counter() - t)
    job = ctx.jobs.get(job_id) or job
    summary = {
        "rows_selected": result.n_selected,
        "units": len(table),
        "level": table.level,
        "budget": plan.budget.to_dict(),
        "files": files,
        "score_cache_hit": cached is not None,
        "embedding": None if not method.needs_embeddings else {
            "texts": job.get("texts", len(table.texts)),
            "unique": job.get("texts_unique"),
            "cached": job.get("texts_cached"),
            "newly_embedded": job.get("embedded_new", 0),
        },
    }
    _check_cancel(ctx, job_id)
    ctx.jobs.transition(job_id, "succeeded", finished_at=now(), result=summary,
                        stage="done", progress_done=result.n_selected,
                        progress_total=result.n_selected)
    ctx.metrics.incr("jobs_succeeded")


def _write_outputs(ctx: WorkerContext, job_id: str, plan: SelectPlan,
                   result: SelectionResult) -> dict[str, str]:
    files: dict[str, str] = {}
    item_pairs = result.units.level == "item" and result.units.sides[0] != "completion"
    pairs = result.units.level == "pair"
    with tempfile.TemporaryDirectory(dir=ctx.settings.data_dir) as tmp:
        outputs: list[tuple[str, str, str]] = []  # (name, file, export shape)
        if not item_pairs:
            outputs += [("jsonl", "subset.jsonl", "input"), ("parquet", "subset.parquet",
                                                              "input")]
        outputs.append(("kto", "kto.jsonl", "kto"))
        if pairs:
            outputs += [("trl", "trl.jsonl", "trl"), ("openai", "openai.jsonl", "openai")]
        for name, filename, shape in outputs:
            local = Path(tmp) / filename
            write_subset(plan.data, result, local, shape=shape)
            ctx.artifacts.put_file(local, f"jobs/{job_id}/{filename}")
            files[name] = filename
        write_scores(result, Path(tmp) / "scores.parquet")
        ctx.artifacts.put_file(Path(tmp) / "scores.parquet", f"jobs/{job_id}/scores.parquet")
        files["scores"] = "scores.parquet"
    return files

