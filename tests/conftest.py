"""Shared fixtures: the real sample data in examples/ (in the repository), the full data
sets when a folder of them is at hand, and the Redis the tests use."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: real samples that ship with the repository (see examples/README.md)
HH_SAMPLE = ROOT / "examples" / "hh_rlhf_harmless_sample.jsonl.gz"  # 600 rows
ALPACA_SAMPLE = ROOT / "examples" / "alpaca_eval_prefs_sample.jsonl.gz"  # 500 rows
#: the full public sets (scripts/fetch_data.py); tests that need them skip without them
FULL_DATA = Path(os.environ.get("ISA_FULL_DATA_DIR") or ROOT.parent / "shared" / "data")
#: the Redis the tests use; they flush this database or keep to a key prefix of their own
TEST_REDIS_URL = os.environ.get("ISA_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def read_rows(path: Path, n: int) -> list[dict]:
    """The first ``n`` rows of a gzip'd JSON Lines file (the file must have them)."""
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    assert len(rows) == n, f"{path.name} has {len(rows)} rows, the test wants {n}"
    return rows


def varied_rows(rows: list[dict], copies: int) -> list[dict]:
    """``copies`` versions of each row whose prompts differ by a suffix: a larger data set
    of distinct texts (for tests that need the work to take a while, like cancelling)."""
    return [{**r, "prompt": f"{r['prompt']} (variant {k})"} for k in range(copies)
            for r in rows]


def write_jsonl(path: Path, rows: list[dict], *, gz: bool = False) -> Path:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def full_data(name: str) -> Path:
    """A file of the full data sets, or a skip saying how to get it."""
    path = FULL_DATA / name
    if not path.is_file():
        pytest.skip(f"needs the full data set {name} in {FULL_DATA}: run "
                    "scripts/fetch_data.py and set ISA_FULL_DATA_DIR to its folder")
    return path


@pytest.fixture(scope="session")
def hh_rows() -> list[dict]:
    return read_rows(HH_SAMPLE, 120)


@pytest.fixture(scope="session")
def alpaca_rows() -> list[dict]:
    return read_rows(ALPACA_SAMPLE, 120)


@pytest.fixture(scope="session")
def sentence_encoder():
    """The real packaged all-MiniLM-L6-v2, loaded once per test session."""
    from isa import SentenceTransformerEncoder

    return SentenceTransformerEncoder(batch_size=32)
