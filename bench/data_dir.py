"""Where the benchmarks find the full public data sets: ``--data-dir``, else
``$ISA_FULL_DATA_DIR``, else ``../shared/data`` beside the repository. Fetch them with
``python scripts/fetch_data.py --out DIR``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = Path(os.environ.get("ISA_FULL_DATA_DIR") or ROOT.parent / "shared" / "data")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=DEFAULT,
                        help=f"folder of the full data sets (default: {DEFAULT})")


def data_file(folder: Path, name: str) -> Path:
    """``folder/name``, or exit saying how to get it."""
    path = folder / name
    if not path.is_file():
        sys.exit(f"{path} is missing: run `python scripts/fetch_data.py --out {folder}` "
                 "(network needed) or pass --data-dir")
    return path
