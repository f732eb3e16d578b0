"""The wheel is the product: built from the repository with ``python -m build``, it holds
the four packages and an ``isa`` command that works from anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import HH_SAMPLE, ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("isa_service-*.whl")
    return path


def test_the_wheel_holds_the_packages_and_not_the_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"isa", "core", "app", "workers"}
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "isa = isa.cli:app" in zipfile.ZipFile(wheel).read(entry).decode()


def test_the_installed_cli_selects_from_the_sample(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    # the installed copy, run from outside the repository: not the checkout's packages
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    where = subprocess.run([sys.executable, "-c", "import isa; print(isa.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(target))
    out = tmp_path / "subset.jsonl"
    run = subprocess.run([str(target / "bin" / "isa"), "select", str(HH_SAMPLE), "--method",
                          "random", "--budget", "5%", "--out", str(out), "--quiet"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and all({"chosen", "rejected"} <= set(r) for r in rows)


def _name(requirement: str) -> str:
    """A requirement's canonical project name (PEP 503), without extras or versions."""
    import re

    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]).lower()


def test_the_lock_pins_every_dependency_pyproject_names():
    # scripts/bootstrap.sh installs with -c scripts/constraints.txt because pip's resolver
    # gives up on this graph from an empty venv; a dependency added to pyproject.toml
    # without rerunning scripts/lock.sh would be resolved unpinned again
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    named = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        named |= {_name(r) for r in extra}
    named.discard("isa-service")
    lock = (ROOT / "scripts" / "constraints.txt").read_text().splitlines()
    pinned = {_name(line): line for line in lock if "==" in line and not line.startswith("#")}
    assert named - set(pinned) == set(), "rerun scripts/lock.sh"
    assert pinned["torch"] == "torch==2.13.0"
    # the CUDA-only dependencies of PyPI's torch stay out: our torch is the local CPU build
    assert not [n for n in pinned if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
