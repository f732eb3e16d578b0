"""The docs' Python client block and remote CLI block, run as written from a venv made
from the wheel with plain ``pip install isa-service`` (no torch, no service packages),
against the real service (a gateway and worker of the main venv)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.light_venv import EMBED_ALIGN_MODULES, SERVICE_MODULES, clean_env, wheel_venv
from tests.service.test_readme_pipeline import _block
from tests.service.test_readme_tour import assert_wrote_only_into_out

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def light(tmp_path_factory) -> Path:
    return wheel_venv(tmp_path_factory)


def _env(service, light: Path) -> dict[str, str]:
    return clean_env(PATH=f"{light}:{clean_env()['PATH']}", ISA_SERVER_URL=service.base_url,
                     ISA_API_KEY="dev-key", API=service.base_url)


def _workdir(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def test_the_readme_client_block_runs_without_torch(service, light, tmp_path):
    absent = list(EMBED_ALIGN_MODULES + SERVICE_MODULES)
    before = ("import importlib.util, sys, isa\n"
              "assert isa.__file__.startswith(sys.prefix), isa.__file__\n"
              f"assert not [m for m in {absent!r} if importlib.util.find_spec(m)]\n")
    after = f"\nassert not [m for m in {absent!r} if m in sys.modules]\n"
    code = before + _block("client", "python") + after
    out = subprocess.run([str(light / "python"), "-c", code], cwd=_workdir(tmp_path),
                         env=_env(service, light), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["30", "600"]
    assert_wrote_only_into_out(tmp_path)
    assert len((tmp_path / "out" / "subset_trl.jsonl").read_text().splitlines()) == 30


def test_the_readme_remote_cli_block_runs_without_torch(service, light, tmp_path):
    script = (f'test "$(command -v isa)" = "{light}/isa"\n'
              f'! "{light}/python" -c "import torch" 2>/dev/null\n' + _block("remote", "bash"))
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=_workdir(tmp_path),
                         env=_env(service, light), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert_wrote_only_into_out(tmp_path)
    assert len((tmp_path / "out" / "subset.jsonl").read_text().splitlines()) == 30
    assert pq.read_table(tmp_path / "out" / "scores.parquet").num_rows == 600
