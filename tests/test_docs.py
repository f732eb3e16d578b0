"""The documentation: the site builds with no warning (``mkdocs build --strict``), the
README's links resolve, and every code block in README.md and docs/ is either run by a
test as it is written or of a language that is only shown (the convention is in
docs/development.md, "Code blocks in the docs"). The CLI and library blocks run here; the
service blocks run in tests/service/ (test_readme_tour.py, test_readme_pipeline.py,
test_light_client.py)."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.service.test_readme_tour import assert_wrote_only_into_out

SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: languages a test runs; every such block is named by markers a test looks up
RUN = {"bash", "python"}
#: languages only shown (output, layouts, configuration): never run
SHOWN = {"text", "json"}
#: every named block -> the test that runs it as written
RUNNERS = {
    "commands": "tests/test_docs.py::test_the_readme_commands_are_the_ones_ci_runs",
    "tour": "tests/service/test_readme_tour.py",
    "client": "tests/service/test_readme_pipeline.py, tests/service/test_light_client.py",
    "remote": "tests/service/test_readme_pipeline.py, tests/service/test_light_client.py",
    "webhook": "tests/service/test_readme_pipeline.py",
    "cli": "tests/test_docs.py::test_the_cli_block_runs",
    "evaluate": "tests/test_docs.py::test_the_evaluation_block_runs",
    "library": "tests/test_docs.py::test_the_library_block_runs",
}
MARKER = re.compile(r"^<!-- ([a-z]+):(start|end) -->$")
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)\s*$")
#: pages a newcomer must find in the built site
PAGES = ["index.html", "getting-started/index.html", "install/index.html",
         *(f"guides/{g}/index.html" for g in ("service", "client", "cli", "library", "data",
                                               "methods", "evaluation", "scaling",
                                               "operations", "security")),
         "reference/python/index.html", "reference/http/index.html",
         "reference/settings/index.html", "reference/redoc.html",
         "assets/redoc/redoc.standalone.js", "openapi.json", "architecture/index.html",
         "benchmarks/index.html", "development/index.html"]


def code_blocks(path: Path) -> list[tuple[str, str | None, str, int]]:
    """(language, the name of the markers around it or None, body, line) of each fenced
    block in ``path``."""
    lines = path.read_text().splitlines()
    found, name, i = [], None, 0
    while i < len(lines):
        marker = MARKER.match(lines[i].strip())
        if marker:
            name = marker.group(1) if marker.group(2) == "start" else None
        fence = FENCE.match(lines[i].strip())
        if fence:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != fence.group(1):
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"{path}:{start}: an unclosed code block"
            found.append((fence.group(2), name, "\n".join(body) + "\n", start))
        i += 1
    return found


def named_block(name: str) -> str:
    """The one block between ``<!-- name:start -->`` and ``<!-- name:end -->`` in the
    README or docs/."""
    hits = [body for path in SOURCES for lang, marked, body, _ in code_blocks(path)
            if marked == name]
    assert len(hits) == 1, f"{len(hits)} blocks named {name!r} in README.md and docs/"
    return hits[0]


# --- the convention ----------------------------------------------------------------------

def test_every_code_block_is_run_by_a_test_or_only_shown():
    named: dict[str, int] = {}
    for path in SOURCES:
        where = path.relative_to(ROOT)
        for lang, name, _, line in code_blocks(path):
            assert lang in RUN | SHOWN, (
                f"{where}:{line}: a ```{lang or '(no language)'} block: name a language, "
                f"one of {sorted(RUN)} (run by a test) or {sorted(SHOWN)} (shown only)")
            if lang in RUN:
                assert name in RUNNERS, (
                    f"{where}:{line}: a ```{lang} block no test runs: put it between "
                    f"<!-- NAME:start --> / <!-- NAME:end --> markers and run it in a "
                    f"test (RUNNERS in tests/test_docs.py), or show it as ```text")
                named[name] = named.get(name, 0) + 1
    assert named == dict.fromkeys(RUNNERS, 1), named


def test_the_readme_is_short_and_keeps_the_tour_and_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for heading in ("## Run the service; run the tests", "## A tour with curl (uses `jq`)",
                    "## Where to go next"):
        assert heading in readme, heading
    assert {name for _, name, _, _ in code_blocks(ROOT / "README.md")} == {"commands", "tour"}


def test_the_readme_commands_are_the_ones_ci_runs():
    commands = [line.split("#", 1)[0].strip() for line in named_block("commands").splitlines()]
    assert commands == ["bash scripts/serve.sh", "bash scripts/test.sh"]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == "bash scripts/test.sh"


def test_the_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link.split("#", 1)[0] for link in links if not re.match(r"[a-z]+:", link)]
    assert local, "the README links into docs/"
    for link in local:
        assert (ROOT / link).is_file(), link
    # every guide the README names is in the site's navigation
    nav = (ROOT / "mkdocs.yml").read_text()
    for link in local:
        if link.startswith("docs/"):
            assert link.removeprefix("docs/") in nav, link


# --- the site ----------------------------------------------------------------------------

def test_the_site_builds_with_no_warning(tmp_path):
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                          "-d", str(site)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, (
        "mkdocs build --strict failed (install the docs extra: pip install -e '.[docs]')\n"
        + out.stdout + out.stderr)
    for page in PAGES:
        assert (site / page).is_file(), page
    # the reference pages were made from the code
    from app.main import app

    spec = json.loads((site / "openapi.json").read_text())
    assert spec["paths"].keys() == app.openapi()["paths"].keys()
    http = (site / "reference" / "http" / "index.html").read_text()
    for path in spec["paths"]:
        assert path in http, path
    settings = (site / "reference" / "settings" / "index.html").read_text()
    assert "ISA_REDIS_URL" in settings and "ISA_WEBHOOK_SECRET_OVERLAP_S" in settings
    python = (site / "reference" / "python" / "index.html").read_text()
    for name in ("isa.remote.client.Client", "isa.pipeline.run_selection",
                 "isa.ingest.dataset.PreferenceFile"):
        assert f'id="{name}"' in python, name
    # the README's parts included into the getting-started page
    started = html.unescape(re.sub(r"<[^>]+>", "", (site / "getting-started" /
                                                    "index.html").read_text()))
    assert "bash scripts/serve.sh" in started and "wait_for jobs/$JOB" in started


# --- the blocks this file runs -----------------------------------------------------------

def _run(block: str, tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([*command, block], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, out.stderr + out.stdout
    assert_wrote_only_into_out(tmp_path)
    return out


def _bash(block: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return _run(block, tmp_path, "bash", "-euo", "pipefail", "-c")


@pytest.mark.slow
def test_the_cli_block_runs(tmp_path):
    out = _bash(named_block("cli"), tmp_path)
    assert len((tmp_path / "out" / "subset.jsonl").read_text().splitlines()) == 30
    assert pq.read_table(tmp_path / "out" / "scores.parquet").num_rows == 600
    assert "length_balanced" in out.stdout  # isa methods
    assert "500" in out.stdout  # isa validate: the AlpacaEval sample's rows


@pytest.mark.slow
def test_the_evaluation_block_runs(tmp_path):
    _bash(named_block("evaluate"), tmp_path)
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert {"subset", "full", "length"} <= set(report)
    curve = json.loads((tmp_path / "out" / "curve.json").read_text())
    assert len(curve["methods"]) == 3 and curve["metric"] in ("accuracy", "balanced_accuracy")
    assert (tmp_path / "out" / "curve.png").stat().st_size > 0


@pytest.mark.slow
def test_the_library_block_runs(tmp_path):
    _run(named_block("library"), tmp_path, sys.executable, "-c")
    assert len((tmp_path / "out" / "subset.jsonl").read_text().splitlines()) == 30
    assert pq.read_table(tmp_path / "out" / "scores.parquet").num_rows == 600
