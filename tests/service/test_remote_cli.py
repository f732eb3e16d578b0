"""``isa remote`` against the real service, run as a user runs it: a subprocess, the
server and key from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq

from tests.conftest import HH_SAMPLE

ISA = [sys.executable, "-m", "isa"]


def _isa(service, *args: str, key: str = "key-b") -> subprocess.CompletedProcess:
    env = {**os.environ, "ISA_SERVER_URL": service.base_url, "ISA_API_KEY": key}
    return subprocess.run([*ISA, "remote", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_upload_select_download_status(service, tmp_path):
    up = _isa(service, "upload", str(HH_SAMPLE), "--quiet")
    assert up.returncode == 0, up.stderr
    dataset_id = up.stdout.strip()
    assert dataset_id.startswith("ds_") and "600 rows (hh_raw, jsonl)" in up.stderr

    sub, scores = tmp_path / "subset.jsonl", tmp_path / "scores.parquet"
    sel = _isa(service, "select", dataset_id, "--method", "random", "--budget", "5%",
               "--max-seq-length", "128", "--out", str(sub), "--format", "openai",
               "--scores", str(scores), "--quiet")
    assert sel.returncode == 0, sel.stderr
    job_id = sel.stdout.strip()
    assert "selected 30 of 600 with random" in sel.stderr
    rows = [json.loads(x) for x in sub.read_text().splitlines()]
    assert len(rows) == 30 and {"input", "preferred_output", "non_preferred_output"} <= set(
        rows[0])
    assert pq.read_table(scores).num_rows == 600

    st = _isa(service, "status", job_id)
    assert st.returncode == 0 and json.loads(st.stdout)["status"] == "succeeded"
    listed = _isa(service, "jobs")
    assert job_id in listed.stdout
    # filtered by type: a select job is not an evaluate one
    assert job_id in _isa(service, "jobs", "--type", "select").stdout
    assert job_id not in _isa(service, "jobs", "--type", "evaluate").stdout
    sets = _isa(service, "datasets", "--status", "ready")
    assert sets.returncode == 0 and dataset_id in sets.stdout and "600" in sets.stdout
    assert dataset_id not in _isa(service, "datasets", "--metadata", "team:none").stdout
    bad = _isa(service, "datasets", "--metadata", "no-colon")
    assert bad.returncode == 2 and "key:value" in bad.stderr


def test_refusals_exit_2_with_their_code(service):
    missing = _isa(service, "select", "ds_missing", "--budget", "10")
    assert missing.returncode == 2 and "[dataset_not_found]" in missing.stderr
    nokey = _isa(service, "status", "job_x", key="")
    assert nokey.returncode == 2 and "[missing_api_key]" in nokey.stderr
