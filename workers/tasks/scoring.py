"""Sharded scoring of large ISA select jobs: map/reduce over workers.

A select job with more than ``ISA_SCORE_SHARD_UNITS`` units never gathers its
embeddings in one process. Once every text is in the embedding store:

1. ``fan_out_scoring`` (the task that read the data) writes the items' text keys (a
   ``.npy`` each scoring task memory-maps only its slice of) and the unit table without
   texts (``isa.unit_files``), fits the mixture on ISA's seeded sample (``ISAModel``: a
   few arrays) and sends one ``score_shard`` task per block of whole units, on any
   worker;
2. each ``score_shard`` reads its keys, its vectors from the store, and writes its
   items' log-likelihoods (16 bytes an item) and their bounds;
3. ``finish_scoring`` (sent by the last shard, ``workers.fanout``) loads the unit table
   (the source is not parsed again, only streamed once to write the subset), joins the
   log-likelihoods into the method's fitted state, exactly what ``ISA().fit`` gives
   (isa.select.sharded; the tests compare), puts it in the score cache, and selects and
   writes as any select job does.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from typing import Any

import numpy as np

from core.artifacts import Keys
from core.celery_app import TASK_FINISH_SCORING, TASK_SCORE_SHARD, celery_app
from isa.embed.base import embed_texts
from isa.pipeline import SelectionRun, texts_of
from isa.select import make_method
from isa.select.isa import ISA
from isa.select.sharded import ISAModel, score_shard
from isa.unit_files import read_unit_file, write_unit_file
from workers import fanout
from workers.lifecycle import JobRun, run_continuation, run_part
from workers.tasks import selection

log = logging.getLogger("isa.scoring")


def _folder(job_id: str) -> str:
    return Keys.job_file(job_id, "scoring")


def _save(job: JobRun, name: str, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with job.ctx.artifacts.open_write(f"{_folder(job.id)}/{name}") as fh:
        fh.write(buf.getvalue())


def _load(job: JobRun, name: str) -> dict[str, np.ndarray]:
    with job.ctx.artifacts.open_read(f"{_folder(job.id)}/{name}") as fh, \
            np.load(io.BytesIO(fh.read())) as npz:
        return {k: npz[k] for k in npz.files}


def _keys_file(job_id: str) -> str:
    return f"{_folder(job_id)}/items.npy"


def _units_file(job_id: str) -> str:
    return f"{_folder(job_id)}/units.arrow"


def _vectors(job: JobRun, encoder: str, keys: np.ndarray) -> np.ndarray:
    """The vectors of ``keys`` from the store. Any evicted since the job embedded them (an
    evicting cache Redis, a swept shard) are embedded again here, their texts found by one
    streaming pass over the source; ``MissingEmbeddings`` only if they leave again (a
    cache too small to hold one task's vectors)."""
    ctx, req = job.ctx, job.request
    store = ctx.embeddings(job.tenant)
    X, found = store.gather(encoder, keys)
    if X is not None and found.all():
        return X
    lost = {bytes(k) for k in keys[~found]}
    log.warning("job %s: %d embeddings left the cache; embedding them again", job.id,
                len(lost))
    ctx.metrics.incr("embed_cache_misses", len(lost))
    texts = list(texts_of(job.open(job.dataset(req.dataset_id)), lost, level=req.level,
                          template=req.template))
    embed_texts(texts, ctx.encoder(req.encoder), cache=store)
    return store.matrix(encoder, keys)


def worker_name(task: Any) -> str:
    """The Celery node a task runs on (the machine's name outside a worker)."""
    return task.request.hostname or socket.gethostname()


def _method(job: JobRun) -> ISA:
    req = job.request
    return make_method(req.method, **{"random_state": req.seed, **req.params})  # type: ignore[return-value]


def fan_out_scoring(job: JobRun, run: SelectionRun) -> None:
    """Step 1: keys, the fitted mixture, and one scoring task per block of units."""
    ctx, units, method = job.ctx, run.units, run.plan.method
    assert isinstance(method, ISA) and units.text_keys is not None
    with ctx.artifacts.open_write(_keys_file(job.id)) as fh:
        # .npy: each shard task maps only its slice
        np.save(fh, units.text_keys, allow_pickle=False)
    with ctx.artifacts.open_write(_units_file(job.id)) as fh:  # the reduce reads no source
        assert run.report is not None
        write_unit_file(units, run.report, fh)
    encoder = run.encoder.name
    job.stage("fitting", 0, method.max_iter)
    t = time.perf_counter()
    n_units, n_items = len(units), units.n_items
    method._check(n_items)
    size = ctx.settings.score_shard_units
    edges = list(range(0, n_units, size)) + [n_units]
    item_edges = np.searchsorted(units.groups, edges).tolist()
    sample = method.fit_sample(n_items)
    rows = units.text_keys if sample is None else units.text_keys[sample]
    # the table is in its files now: let it go before the mixture is fitted (the caller
    # keeps no reference to it), so that the reading task's peak is the larger of the
    # two, not their sum
    run.table = None
    del units
    X_fit = _vectors(job, encoder, rows)
    method._progress = lambda done, total: job.progress("fitting", done, total)
    _save(job, "model.npz", **ISAModel.fit(method, X_fit).state)
    del X_fit, rows
    job.stage("scoring", 0, n_units)
    shards = [(i, item_edges[i], item_edges[i + 1], edges[i + 1] - edges[i], encoder)
              for i in range(len(edges) - 1)]
    fanout.start(ctx.jobs, job.id, TASK_SCORE_SHARD, shards, TASK_FINISH_SCORING,
                 (job.id, len(shards), time.perf_counter() - t),
                 job.request.queue or ctx.settings.default_queue)


@celery_app.task(name=TASK_SCORE_SHARD)
def score_shard_task(job_id: str, generation: int, part: int, index: int, start: int,
                     end: int, n_units: int, encoder: str) -> None:
    run_part(job_id, generation, part, lambda job: _score_shard(
        job, index, start, end, n_units, encoder, part=f"{generation}:{part}"))


def _score_shard(job: JobRun, index: int, start: int, end: int, n_units: int,
                 encoder: str, part: str) -> None:
    """Step 2 (map): the log-likelihood of one block's items."""
    ctx = job.ctx
    job.check_cancel()
    t = time.perf_counter()
    keys = np.load(ctx.artifacts.local_path(_keys_file(job.id)), mmap_mode="r")[start:end]
    X = _vectors(job, encoder, np.asarray(keys))
    method = ISAModel(_load(job, "model.npz")).restore(_method(job))
    scores = score_shard(method, X)
    _save(job, f"shard-{index:05d}.npz", log_likelihood=scores.log_likelihood,
          component=scores.component, seconds=np.float64(time.perf_counter() - t))
    ctx.jobs.add_part_progress(job.id, part, n_units)  # a re-sent shard counts once
    ctx.jobs.count_task(job.id, worker_name(score_shard_task), kind="scoring")


@celery_app.task(name=TASK_FINISH_SCORING)
def finish_scoring(job_id: str, shards: int, fit_s: float) -> None:
    run_continuation(job_id, lambda job: _finish_scoring(job, shards, fit_s))


def _finish_scoring(job: JobRun, shards: int, fit_s: float) -> None:
    """Step 3 (reduce): the fitted state from every shard's log-likelihoods, then select
    and write like any select job."""
    run = selection.plan(job)
    # memory-mapped: its columns are the file's pages, not this process's memory
    units_path = job.ctx.artifacts.local_path(_units_file(job.id))
    run.use_units(*read_unit_file(units_path))
    if not job.ctx.artifacts.local:  # a downloaded copy: mapped now, its name can go
        units_path.unlink(missing_ok=True)
    if not run.restore_scores():  # another job may have scored the same meanwhile
        parts = [_load(job, f"shard-{i:05d}.npz") for i in range(shards)]
        ll = np.concatenate([p["log_likelihood"] for p in parts])
        component = np.concatenate([p["component"] for p in parts])
        map_s = sum(float(p["seconds"]) for p in parts)
        del parts
        method = run.plan.method
        assert isinstance(method, ISA)
        state = method.state_from_log_likelihood(ll, component, run.units.groups,
                                                 len(run.units))
        run.adopt_scores(state, seconds=fit_s + map_s)
    job.ctx.artifacts.delete_prefix(_folder(job.id))
    selection.complete(job, run)
