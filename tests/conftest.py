"""Shared fixtures: paths to the real data in ../shared/data and small slices of it."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
HH_FILE = SHARED_DATA / "hh_rlhf_harmless_base_test.jsonl.gz"
ALPACA_TRAIN = SHARED_DATA / "alpaca_eval_prefs_train.jsonl.gz"
ALPACA_TEST = SHARED_DATA / "alpaca_eval_prefs_test.jsonl.gz"
#: the Redis the tests use; they flush this database or keep to a key prefix of their own
TEST_REDIS_URL = os.environ.get("ISA_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def read_rows(path: Path, n: int) -> list[dict]:
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def write_jsonl(path: Path, rows: list[dict], *, gz: bool = False) -> Path:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture(scope="session")
def hh_rows() -> list[dict]:
    return read_rows(HH_FILE, 120)


@pytest.fixture(scope="session")
def alpaca_rows() -> list[dict]:
    return read_rows(ALPACA_TEST, 120)


@pytest.fixture(scope="session")
def sentence_encoder():
    """The real packaged all-MiniLM-L6-v2, loaded once per test session."""
    from isa import SentenceTransformerEncoder

    return SentenceTransformerEncoder(batch_size=32)
