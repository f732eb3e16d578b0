"""The package boundaries hold: a walk over every import in the four packages, and
fresh interpreters that import the library and the gateway alone."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("isa", "core", "app", "workers")
SERVICE_LIBS = ("fastapi", "starlette", "celery", "kombu", "redis", "uvicorn")
MODEL_LIBS = ("torch", "transformers", "sentence_transformers", "trl", "peft")

#: package -> modules it must never import (top-level names or dotted prefixes)
FORBIDDEN = {
    # the library stands alone
    "isa": (*PACKAGES[1:], *SERVICE_LIBS),
    # the shared layer serves both deployables and depends on neither
    "core": ("app", "workers", "fastapi", "starlette"),
    # the gateway sends tasks by name: nothing of the workers, no model code
    "app": ("workers", *MODEL_LIBS),
    # the workers never reach into the gateway
    "workers": ("app", "fastapi", "starlette"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Absolute module names a file imports (relative imports resolved)."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


def _edges() -> list[tuple[str, str, int, str]]:
    edges = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for line, name in _imports(path):
                edges.append((pkg, str(path.relative_to(ROOT)), line, name))
    return edges


def test_no_import_crosses_a_forbidden_boundary():
    bad = [f"{file}:{line} imports {name}" for pkg, file, line, name in _edges()
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[pkg])]
    assert bad == []


def test_the_walk_sees_the_edges_that_are_allowed():
    # guards the walk itself: if it parsed nothing, the test above would pass vacuously
    names = {(pkg, name.split(".")[0]) for pkg, _, _, name in _edges()}
    assert {("workers", "isa"), ("workers", "core"), ("app", "core"), ("core", "isa"),
            ("workers", "celery"), ("app", "fastapi")} <= names


def _fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_library_imports_without_the_service():
    loaded = _fresh(
        "import sys, json\n"
        "from isa import Budget, PreferenceFile, make_method, run_selection, write_subset\n"
        "import isa.cli, isa.evaluate, isa.align\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & "
        f"set({[*PACKAGES[1:], *SERVICE_LIBS]!r}))))")
    assert loaded == []


#: the library's modules that load or run models: the gateway never needs them
MODEL_MODULES = ("isa.embed.sentence", "isa.embed.causal", "isa.align.train", "isa.evaluate",
                 "isa.pipeline", "isa.export")


def test_the_gateway_loads_no_model_code():
    loaded = _fresh(
        "import sys, json\nimport app.main\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{[*MODEL_LIBS, 'workers', 'sklearn']!r} or m.startswith({MODEL_MODULES!r}))))")
    assert loaded == []
