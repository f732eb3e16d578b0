"""Memory of a large ISA select job's two table-holding tasks, each alone in a fresh
process, without the service around them (bench/scale_service.py runs the real thing):

- *reading*: ``read_units`` without texts (as ``selection.reads_keys_only`` jobs read),
  the distinct keys (``key_ids``), the keys file and the unit file the map tasks and the
  reduce read, the fit sample's keys;
- *reduce*: the unit file back (``read_unit_file``), every item's log-likelihood from
  per-shard arrays (synthetic here, as the map tasks leave them), the fitted state
  (``state_from_log_likelihood``), the state into the score cache
  (``ArtifactScoreCache.put``), the budget, the subset (one pass over the source) and
  the scores file.

The same script run from an older checkout measures that code (the keys and unit files
are written as the reading task writes them today, straight to the file).

    .venv/bin/python bench/unit_memory.py --pairs 1000000,10000000

Printed per size: the bytes a unit takes in each column of the table, and each task's
peak anonymous memory (RssAnon, sampled every 20 ms) and time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _anon() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class _Peak:
    """The process's peak RssAnon while the block runs (a sampling thread)."""

    def __enter__(self) -> _Peak:
        self.peak, self._stop = _anon(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _anon())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _anon())


def _nbytes(column: object) -> int:
    """What a column holds: its arrays, or (a list) its pointers and distinct objects."""
    for attr in ("arrow", "codes"):
        if hasattr(column, attr):
            return int(getattr(column, attr).nbytes)
    if isinstance(column, np.ndarray):
        return column.nbytes
    assert isinstance(column, list)
    distinct = {id(x): x for x in column}
    return 56 + 8 * len(column) + sum(sys.getsizeof(x) for x in distinct.values())


def _column_bytes(table) -> dict[str, float]:  # noqa: ANN001
    names = ("row_ids", "sides", "source_rows", "text_labels", "groups", "text_keys")
    cols = {k: _nbytes(getattr(table, k)) for k in names}
    cols.update({f"meta {k}": v.nbytes for k, v in table.meta.items()})
    return {k: round(v / len(table), 1) for k, v in cols.items()}


class _Index:
    """The score cache's Redis index, as far as ``put`` uses it."""

    def set(self, key: str, value: str) -> None:
        pass


def reading(data: Path, work: Path) -> dict:
    from isa import PreferenceFile
    from isa.pipeline import key_ids, read_units
    from isa.select.isa import ISA
    from isa.unit_files import write_unit_file

    base = _anon()
    steps: dict[str, float] = {}  # each step's own peak, MB

    def step(name: str) -> _Peak:
        peak = _Peak()
        peak.name = name  # type: ignore[attr-defined]
        return peak

    t = time.perf_counter()
    with _Peak() as peak:
        with step("read_units") as p:
            units, report = read_units(PreferenceFile(data, id_field="id"), keep_texts=False)
        steps[p.name] = p.peak / 2**20  # type: ignore[attr-defined]
        read_s = time.perf_counter() - t
        cols = _column_bytes(units)
        with step("key_ids") as p:
            first = key_ids(units.text_keys, inverse=False)[0]
            del first
        steps[p.name] = p.peak / 2**20  # type: ignore[attr-defined]
        with step("keys and unit files") as p:
            with (work / "items.npy").open("wb") as fh:
                np.save(fh, units.text_keys, allow_pickle=False)
            with (work / "units.arrow").open("wb") as fh:
                write_unit_file(units, report, fh)
            sample = ISA().fit_sample(units.n_items)
            rows = units.text_keys[sample]
            del units, rows
        steps[p.name] = p.peak / 2**20  # type: ignore[attr-defined]
    return {"task": "reading", "s": time.perf_counter() - t, "read_s": read_s,
            "units": report.examples, "column_bytes_per_unit": cols,
            "peak_anon_mb": peak.peak / 2**20, "step_peak_anon_mb": steps,
            "after_anon_mb": _anon() / 2**20, "base_anon_mb": base / 2**20}


def reduce(data: Path, work: Path, shard_units: int) -> dict:
    from core.artifacts import ArtifactStore
    from isa import Budget, PreferenceFile
    from isa.export import write_scores, write_subsets
    from isa.pipeline import SelectionResult, default_export_shapes, select_units
    from isa.select.isa import ISA
    from isa.unit_files import read_unit_file
    from workers.cache import ArtifactScoreCache

    base = _anon()
    with _Peak() as peak:
        t = time.perf_counter()
        if "memory-mapped" in (read_unit_file.__doc__ or ""):
            units, report = read_unit_file(work / "units.arrow")
        else:  # before the unit file was mapped: read from a stream
            with (work / "units.arrow").open("rb") as fh:
                units, report = read_unit_file(fh)
        rng = np.random.default_rng(0)
        edges = np.searchsorted(units.groups, np.r_[0:len(units):shard_units, len(units)])
        parts = [{"log_likelihood": rng.normal(-300, 20, b - a),
                  "component": rng.integers(0, 2, b - a)} for a, b in zip(
                      edges[:-1], edges[1:], strict=True)]
        ll = np.concatenate([p["log_likelihood"] for p in parts])
        component = np.concatenate([p["component"] for p in parts])
        del parts
        method = ISA()
        state = method.state_from_log_likelihood(ll, component, units.groups, len(units))
        del ll, component
        ArtifactScoreCache(_Index(), ArtifactStore(str(work / "artifacts")), "b:").put(
            "k", state)
        del state
        budget = Budget(fraction=0.01)
        result = SelectionResult(units, method, budget, select_units(method, budget),
                                 report, None, None, {})
        source = PreferenceFile(data, id_field="id")
        write_subsets(source, result, {work / f"subset-{s}.jsonl": s
                                       for s in default_export_shapes(units)})
        write_scores(result, work / "scores.parquet")
    return {"task": "reduce", "s": time.perf_counter() - t, "units": len(units),
            "peak_anon_mb": peak.peak / 2**20, "base_anon_mb": base / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default="1000000")
    ap.add_argument("--shard-units", type=int, default=50_000)
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.task:  # one task, in this (fresh) process
        work, data = Path(args.work_dir), Path(args.data)
        out = reading(data, work) if args.task == "reading" else \
            reduce(data, work, args.shard_units)
        print(json.dumps(out))
        return
    from bench.scale_service import write_pairs

    for n in (int(x) for x in args.pairs.split(",")):
        with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
            work = Path(tmp)
            write_pairs(work / "pairs.parquet", n)
            for task in ("reading", "reduce"):
                out = subprocess.run(
                    [sys.executable, __file__, "--task", task, "--work-dir", str(work),
                     "--data", str(work / "pairs.parquet"),
                     "--shard-units", str(args.shard_units)],
                    capture_output=True, text=True, check=True)
                print(json.dumps({"pairs": n, **json.loads(out.stdout.splitlines()[-1])}),
                      flush=True)


if __name__ == "__main__":
    main()
