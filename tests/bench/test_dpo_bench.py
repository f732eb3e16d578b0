"""bench/dpo.py keeps running: the whole yardstick (split, reference pass, selection,
DPO training, per-pair outcomes, the paired table) at tiny size on the CPU, resumable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_the_dpo_yardstick_runs_end_to_end_and_resumes(tmp_path):
    runs, table = tmp_path / "runs.jsonl", tmp_path / "dpo.md"
    cmd = [sys.executable, str(ROOT / "bench" / "dpo.py"), "--tiny", "--seeds", "0,1",
           "--runs", str(runs), "--table", str(table), "--cache-dir", str(tmp_path / "c"),
           "--device", "cpu"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    arms = [json.loads(x) for x in runs.read_text().splitlines()]
    assert sorted((a["method"], a["seed"]) for a in arms) == [
        ("implicit_margin", 0), ("implicit_margin", 1), ("random", 0), ("random", 1)]
    for a in arms:  # per-pair outcomes on the same evaluation pairs, and the arm's cost
        assert len(a["outcomes"]) == a["eval_pairs"] == 20 and set(a["outcomes"]) <= {"0", "1"}
        assert a["steps"] == 1 and a["train_pairs"] == 4 and a["train_eval_s"] > 0
    text = table.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| implicit_margin"))
    assert "[" in row and "]" in row  # the paired interval against random
    assert "reference: 20 evaluation pairs, 40 texts scored" in first.stdout
    # started again: nothing to train, and the reference comes from the cache
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(runs.read_text().splitlines()) == 4
    assert "0 texts scored, 40 cached" in again.stdout


@pytest.mark.slow
def test_the_gpu_suite_runs_unchanged_on_a_cpu_at_tiny_size(tmp_path):
    import os

    env = {**os.environ, "ISA_GPU_SUITE_TINY": "1", "OUT": str(tmp_path),
           "TMPDIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_suite.sh")], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gpu_suite: done" in proc.stdout
    runs = (tmp_path / "dpo_runs_tiny.jsonl").read_text().splitlines()
    assert len(runs) == 4
    assert "| implicit_margin |" in (tmp_path / "dpo_tiny.md").read_text()
