"""Files the library, the CLI and the client write get the user's umask (as ``open()``
gives them), not the 0600 of a temporary file, and still appear only when complete."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from contextlib import contextmanager

import pytest

from isa.files import atomic_output
from tests.conftest import write_jsonl


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600),
                                                 (0o002, 0o664)])
def test_atomic_output_follows_the_umask(tmp_path, mask, expected):
    target = tmp_path / "deeper" / "subset.jsonl"
    with umask(mask), atomic_output(target) as fh:
        fh.write(b"{}\n")
        assert not target.exists()  # not there until complete
    assert target.read_bytes() == b"{}\n" and mode(target) == expected
    assert [p.name for p in target.parent.iterdir()] == ["subset.jsonl"]


def test_a_private_file_stays_private(tmp_path):
    with umask(0o022), atomic_output(tmp_path / "secret", mode=0o600) as fh:
        fh.write(b"x")
    assert mode(tmp_path / "secret") == 0o600


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "x.jsonl") as fh:
        fh.write(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_the_cli_writes_files_with_the_umask(tmp_path, hh_rows):
    src = write_jsonl(tmp_path / "hh.jsonl", hh_rows[:40])
    out, scores = tmp_path / "out" / "subset.jsonl", tmp_path / "out" / "scores.parquet"
    proc = subprocess.run([sys.executable, "-m", "isa", "select", str(src), "--method",
                           "random", "--budget", "4", "--out", str(out), "--scores",
                           str(scores), "--quiet"], capture_output=True, text=True,
                          timeout=300, preexec_fn=lambda: os.umask(0o022))
    assert proc.returncode == 0, proc.stderr
    assert mode(out) == mode(scores) == 0o644
