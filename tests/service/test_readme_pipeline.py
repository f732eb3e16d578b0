"""The docs' pipeline examples, run as written against the real service: the Python
client (docs/guides/client.md), the remote CLI (docs/guides/cli.md), and the webhook
receiver (docs/guides/service.md), which must verify a real delivery."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import ROOT
from tests.service.test_readme_tour import assert_wrote_only_into_out

#: where the examples live (tests/test_docs.py checks that a test runs each named block)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _block(name: str, lang: str) -> str:
    """The one ``lang`` block between ``<!-- name:start -->`` and ``<!-- name:end -->`` in
    README.md or docs/."""
    pattern = re.compile(rf"<!-- {name}:start -->\s*```{lang}\n(.*?)```\s*<!-- {name}:end -->",
                         re.S)
    found = [m.group(1) for path in DOCS for m in pattern.finditer(path.read_text())]
    assert len(found) == 1, f"README.md and docs/ have {len(found)} {name} blocks"
    return found[0]


def _env(service) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
            "ISA_SERVER_URL": service.base_url, "ISA_API_KEY": "dev-key",
            "API": service.base_url}


def _workdir(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def test_the_client_example(service, tmp_path):
    out = subprocess.run([sys.executable, "-c", _block("client", "python")],
                         cwd=_workdir(tmp_path), env=_env(service), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["30", "600"]
    assert_wrote_only_into_out(tmp_path)
    assert len((tmp_path / "out" / "subset_trl.jsonl").read_text().splitlines()) == 30


def test_the_remote_cli_example(service, tmp_path):
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", _block("remote", "bash")],
                         cwd=_workdir(tmp_path), env=_env(service), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert_wrote_only_into_out(tmp_path)
    assert len((tmp_path / "out" / "subset.jsonl").read_text().splitlines()) == 30
    assert pq.read_table(tmp_path / "out" / "scores.parquet").num_rows == 600


def test_the_webhook_receiver_example(service, tmp_path):
    c = service.client("dev-key")
    secret = c.get("/v1/webhook").json()["secret"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "receiver.py"
    script.write_text(_block("webhook", "python"))
    receiver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "ISA_WEBHOOK_SECRET": secret,
                                     "PORT": str(port)})
    try:
        time.sleep(1.5)
        assert c.put("/v1/webhook", json={"url": f"http://127.0.0.1:{port}/"}).status_code == 200
        ds = service.wait_dataset(c, service.upload(c, ROOT / "examples" /
                                                    "hh_rlhf_harmless_sample.jsonl.gz")["id"])
        job = c.post("/v1/jobs", json={"type": "select", "dataset_id": ds["id"],
                                       "method": "random", "budget": {"count": 3}}).json()
        assert service.wait_job(c, job["id"])["status"] == "succeeded"
        ready, _, _ = select.select([receiver.stdout], [], [], 60)
        assert ready, "the receiver printed nothing in 60 s"
        line = receiver.stdout.readline().split()  # the receiver verified and printed it
        assert line == ["job.succeeded", job["id"]]
    finally:
        c.put("/v1/webhook", json={"url": None})
        receiver.terminate()
        receiver.wait(timeout=10)
