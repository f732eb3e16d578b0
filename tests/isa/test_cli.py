"""The ``isa`` command, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import write_jsonl

ISA = [sys.executable, "-m", "isa"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*ISA, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def test_select_writes_subset_scores_and_summary(tmp_path, hh_rows):
    src = write_jsonl(tmp_path / "hh.jsonl", hh_rows[:80])
    out, scores, summary = tmp_path / "subset.jsonl", tmp_path / "s.parquet", tmp_path / "r.json"
    proc = run("select", str(src), "--method", "isa", "--budget", "0.05", "--out", str(out),
               "--scores", str(scores), "--summary", str(summary), "--param",
               "covariance_type=diag")
    assert proc.returncode == 0, proc.stderr
    assert "selected 4 of 80 pairs" in proc.stderr
    assert "embedding" in proc.stderr  # the progress bar's stage
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 4 and all(r in hh_rows for r in rows)
    table = pq.read_table(scores)
    assert table.num_rows == 80 and sum(table.column("selected").to_pylist()) == 4
    info = json.loads(summary.read_text())
    assert info["embedding"]["texts"] == 160 and info["ingest"]["shape"] == "hh_raw"


def test_select_exports_other_shapes(tmp_path, alpaca_rows):
    src = write_jsonl(tmp_path / "a.jsonl", alpaca_rows[:50])
    out = tmp_path / "subset.parquet"
    proc = run("select", str(src), "--method", "margin", "--budget", "10", "--out", str(out),
               "--format", "trl", "--quiet")
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(out).to_pylist()
    assert len(table) == 10
    assert {"row_id", "prompt", "chosen", "rejected", "margin"} <= set(table[0])


def test_bad_input_exits_2_with_a_named_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{oops\n')
    proc = run("select", str(bad), "--method", "random", "--out", str(tmp_path / "o.jsonl"),
               "--quiet")
    assert proc.returncode == 2
    assert "invalid_json" in proc.stderr and "line 2" in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()
    proc = run("validate", str(bad))
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert report["rows_skipped"] == 1 and report["skipped"][0]["line"] == 2


@pytest.mark.parametrize("flag", [[], ["--json"]])
def test_methods_lists_every_method_with_parameters(flag):
    proc = run("methods", *flag)
    assert proc.returncode == 0, proc.stderr
    for name in ("isa", "random", "density", "kcenter", "margin", "covariance_type",
                 "pca_components", "n_tables"):
        assert name in proc.stdout
    if flag:
        described = {m["name"]: m for m in json.loads(proc.stdout)}
        assert {p["name"] for p in described["isa"]["params"]} >= {"n_components",
                                                                     "covariance_type"}


def test_a_bad_option_fails_before_any_work(tmp_path, alpaca_rows):
    src = write_jsonl(tmp_path / "a.jsonl", alpaca_rows[:5])
    proc = run("select", str(src), "--out", str(tmp_path / "o.jsonl"), "--format", "yaml")
    assert proc.returncode == 2 and "--format" in proc.stderr
    assert "embedding" not in proc.stderr


def test_cache_dir_skips_embedding_on_the_second_run(tmp_path, hh_rows):
    src = write_jsonl(tmp_path / "hh.jsonl", hh_rows[:30])
    args = ["select", str(src), "--budget", "5", "--quiet", "--cache-dir",
            str(tmp_path / "cache")]
    first = run(*args, "--out", str(tmp_path / "a.jsonl"), "--summary", str(tmp_path / "a.json"))
    second = run(*args, "--out", str(tmp_path / "b.jsonl"), "--method", "kcenter",
                 "--summary", str(tmp_path / "b.json"))
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert json.loads((tmp_path / "a.json").read_text())["embedding"]["embedded"] == 60
    assert json.loads((tmp_path / "b.json").read_text())["embedding"]["embedded"] == 0


def test_curve_command_writes_report_and_plot(tmp_path, alpaca_rows):
    src = write_jsonl(tmp_path / "a.jsonl", alpaca_rows[:120])
    proc = run("curve", str(src), "--out", str(tmp_path / "c.json"), "--plot",
               str(tmp_path / "c.png"), "-m", "random", "-m", "margin:order=low",
               "--budgets", "10,50,100", "--seeds", "2", "--eval-fraction", "0.3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "c.json").read_text())
    assert [m["method"] for m in report["methods"]] == ["random", "margin"]
    assert report["methods"][1]["params"] == {"order": "low"}
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    # the length baseline is printed beside the accuracies, with the dominance warning
    assert "length rule (longer answer wins)" in proc.stderr and "warning" in proc.stderr
    assert report["metric"] == "balanced_accuracy"
    bad = run("curve", str(src), "--out", str(tmp_path / "x.json"), "--metric", "f1")
    assert bad.returncode == 2 and "--metric" in bad.stderr


def test_backend_option_picks_the_encoder_runtime(tmp_path, hh_rows):
    """``--backend openvino`` embeds with OpenVINO (its own encoder name, so its vectors
    never mix with torch's in a cache) and keeps the torch subset; an unknown backend is
    refused before any work."""
    pytest.importorskip("openvino")
    src = write_jsonl(tmp_path / "hh.jsonl", hh_rows[:40])
    subsets = {}
    for backend in ("torch", "openvino"):
        out, summary = tmp_path / f"{backend}.jsonl", tmp_path / f"{backend}.json"
        proc = run("select", str(src), "--budget", "0.25", "--precision", "float32",
                   "--backend", backend, "--out", str(out), "--summary", str(summary))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(summary.read_text())["encoder"].endswith(":openvino") == (
            backend == "openvino")
        subsets[backend] = out.read_text()
    assert subsets["openvino"] == subsets["torch"]  # float32: the same vectors to ~1e-6
    bad = run("select", str(src), "--backend", "onnx", "--out", str(tmp_path / "x.jsonl"))
    assert bad.returncode == 2 and "--backend" in bad.stderr and not (tmp_path / "x.jsonl").exists()
