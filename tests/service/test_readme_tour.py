"""The README's curl tour, run exactly as written against the real service."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess

import pyarrow.parquet as pq
import pytest

from tests.conftest import HH_SAMPLE, ROOT


def assert_wrote_only_into_out(folder) -> None:
    """A README block run in ``folder`` (holding only the ``examples`` link) wrote nothing
    but ``out/``, which git ignores: run from the repository root it leaves
    ``git status`` as it was."""
    assert sorted(p.name for p in folder.iterdir()) == ["examples", "out"]
    probe = subprocess.run(["git", "check-ignore", "-q", "out/subset.jsonl"], cwd=ROOT)
    assert probe.returncode == 0, "out/ is not in .gitignore"


def _tour() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- tour:start -->\s*```bash\n(.*?)```\s*<!-- tour:end -->", text,
                      re.S)
    assert block, "the README has no tour block"
    return block.group(1)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")),
                    reason="the tour uses curl and jq (.ci/run installs them)")
def test_the_readme_tour_runs_as_written(service, tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", _tour()], cwd=tmp_path,
                         env={"PATH": os.environ["PATH"], "API": service.base_url},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr + out.stdout
    printed = [json.loads(line) for line in out.stdout.splitlines()]
    assert printed[0] == {"status": "ready", "shape": "hh_raw", "rows_valid": 600}
    assert printed[1]["status"] == "succeeded" and printed[1]["stage"] == "done"
    assert_wrote_only_into_out(tmp_path)
    subset = [json.loads(line)
              for line in (tmp_path / "out" / "subset.jsonl").read_text().splitlines()]
    with gzip.open(HH_SAMPLE, "rt") as fh:
        source = [json.loads(line) for line in fh]
    assert len(subset) == 30 and all(row in source for row in subset)
    scores = pq.read_table(tmp_path / "out" / "scores.parquet").to_pylist()
    assert len(scores) == 600 and sum(s["selected"] for s in scores) == 30
