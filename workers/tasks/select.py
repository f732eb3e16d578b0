"""Select jobs: the library's selection stages, run as tasks.

``select_job`` plans and reads, restores the scores from the score cache or looks the
embeddings up once; if few texts are missing it embeds, scores, selects and writes in
the same task. Otherwise the missing texts fan out to ``embed_chunk`` tasks on any worker
(``workers.fanout``) and ``finish_select`` scores, selects and writes once all are in.
ISA jobs larger than one scoring task score as map/reduce instead (``scoring``).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable

import numpy as np

from core.artifacts import Keys
from core.celery_app import TASK_EMBED_CHUNK, TASK_FINISH_SELECT, TASK_SELECT, celery_app
from isa.embed.base import complete_embeddings, lookup_embeddings
from isa.pipeline import (
    SelectionRun,
    key_ids,
    texts_of,
)
from workers import fanout
from workers.lifecycle import JobRun, run_claimed, run_continuation, run_part
from workers.tasks import scoring, selection

_INDEX_BLOCK = 1 << 22  # text keys the index is asked about at a time


@celery_app.task(name=TASK_SELECT)
def select_job(job_id: str, resume: bool = False) -> None:
    run_claimed(job_id, select_job, _start, resume)


@celery_app.task(name=TASK_EMBED_CHUNK)
def embed_chunk(job_id: str, generation: int, index: int, chunk: int) -> None:
    run_part(job_id, generation, index,
             lambda job: _embed_chunk(job, chunk, part=f"{generation}:{index}"))


@celery_app.task(name=TASK_FINISH_SELECT)
def finish_select(job_id: str) -> None:
    run_continuation(job_id, _finish_after_chunks)


def _start(job: JobRun) -> None:
    run, ctx = selection.plan(job), job.ctx
    run.read()
    key = run.plan.score_key()
    if key is not None:  # deleting the data set deletes these scores with the job
        ctx.jobs.update(job.id, score_cache=ctx.scores(job.tenant).locations(key))
    restored = run.restore_scores()
    ctx.metrics.incr("score_cache_hits" if restored else "score_cache_misses")
    if selection.scores_sharded(job, run):
        _start_sharded(job, run)
        return
    if not restored and run.plan.method.needs_embeddings:
        lookup = run.lookup()
        todo = lookup.missing_texts(run.units.texts)
        ctx.metrics.incr("embed_cache_hits", len(lookup.found))
        ctx.metrics.incr("embed_cache_misses", len(todo))
        ctx.jobs.update(job.id, texts=len(lookup.keys), texts_unique=len(lookup.unique_keys),
                        texts_cached=len(lookup.found))
        if len(todo) > ctx.settings.embed_chunk_size:
            _fan_out(job, todo)
            return
        run.embed()
        ctx.jobs.update(job.id, embedded_new=run.embed_stats.embedded)  # type: ignore[union-attr]
    _finish(job, run)


def _start_sharded(job: JobRun, run: SelectionRun) -> None:
    """A job scored as map/reduce: embed what the store lacks on any worker (asking the
    index only; no vector is gathered here), then fan the scoring out."""
    ctx, units = job.ctx, run.units
    keys = units.text_keys
    assert keys is not None
    first = key_ids(keys, inverse=False)[0]
    store, name = ctx.embeddings(job.tenant), run.encoder.name
    have = np.concatenate([  # a block at a time: the index's lookup holds one block
        store.contains_many(name, keys[first[a:a + _INDEX_BLOCK]])
        for a in range(0, len(first), _INDEX_BLOCK)])
    missing = first[~have]
    cached = int(have.sum())
    ctx.metrics.incr("embed_cache_hits", cached)
    ctx.metrics.incr("embed_cache_misses", len(missing))
    ctx.jobs.update(job.id, texts=len(keys), texts_unique=len(first), texts_cached=cached)
    del first, have
    if not len(missing):
        del units, keys  # fan_out_scoring lets the table go once it is in its files
        scoring.fan_out_scoring(job, run)
    elif units.texts:  # longest first, as the library orders its batches
        _fan_out(job, sorted((units.texts[i] for i in missing), key=len, reverse=True))
    else:  # read without texts: one more streaming pass finds the missing ones
        _fan_out(job, texts_of(run.plan.source, {bytes(k) for k in keys[missing]},
                               level=units.level, template=units.template))


def _fan_out(job: JobRun, todo: Iterable[str]) -> None:
    """One task per chunk of missing texts, on any worker (``workers.fanout``); the last
    to finish sends ``finish_select``. Each chunk's texts are a file of their own, so a
    task reads only its own (the queue may hold millions)."""
    ctx, size = job.ctx, job.ctx.settings.embed_chunk_size
    chunks = total = 0
    texts = iter(todo)
    while chunk := list(itertools.islice(texts, size)):
        with ctx.artifacts.open_write(Keys.embed_queue(job.id, chunks)) as fh:
            fh.write(b"".join(json.dumps(text).encode() + b"\n" for text in chunk))
        chunks += 1
        total += len(chunk)
    job.stage("embedding", 0, total)
    fanout.start(ctx.jobs, job.id, TASK_EMBED_CHUNK, [(i,) for i in range(chunks)],
                 TASK_FINISH_SELECT, (job.id,), job.request.queue or ctx.settings.default_queue)


def _embed_chunk(job: JobRun, chunk: int, part: str) -> None:
    ctx = job.ctx
    with ctx.artifacts.open_read(Keys.embed_queue(job.id, chunk)) as fh:
        texts = [json.loads(line) for line in fh]
    encoder, cache = ctx.encoder(job.request.encoder), ctx.embeddings(job.tenant)
    lookup = lookup_embeddings(texts, encoder.name, cache)
    # a re-sent copy finds what the lost one checkpointed: those texts are done. The
    # chunk's progress is counted as its own total so far, so the copy adds only what
    # goes beyond the lost copy's count (the job's progress never counts a text twice)
    cached = len(texts) - len(lookup.todo(texts))
    embedded = 0

    def progress(done: int, total: int) -> None:
        nonlocal embedded
        job.check_cancel()  # first: a cancelled job's counters stay where they were
        ctx.jobs.add_part_progress(job.id, part, cached + done, embedded=done - embedded)
        embedded = done

    job.check_cancel()
    t = time.perf_counter()
    complete_embeddings(texts, lookup, encoder, cache=cache, progress=progress)
    ctx.metrics.observe_stage("embedding", time.perf_counter() - t)
    ctx.jobs.count_task(job.id, scoring.worker_name(embed_chunk))


def _finish_after_chunks(job: JobRun) -> None:
    def progress(stage: str, done: int, total: int) -> None:
        # reading again and assembling the (now cached) embeddings is not news to the
        # client: the job goes on showing the finished embedding until scoring starts
        if stage in ("reading", "embedding"):
            job.check_cancel()
        else:
            job.progress(stage, done, total)

    job.ctx.artifacts.delete_prefix(Keys.job_file(job.id, "todo"))  # all embedded
    run = selection.plan(job, progress)
    run.read()
    run.restore_scores()  # another job may have scored the same meanwhile
    _finish(job, run)


def _finish(job: JobRun, run: SelectionRun) -> None:
    """Score as map/reduce when the job is large (its reduce ends it, ``scoring``), else
    here: score → select → write."""
    if selection.scores_sharded(job, run):
        scoring.fan_out_scoring(job, run)
        return
    selection.complete(job, run)
