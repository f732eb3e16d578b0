"""First start of the real gateway with ISA_API_KEYS_FILE naming a file that does not
exist and ISA_CREATE_API_KEYS_FILE=true (as docker-compose.yml's api): the file appears,
mode 0600, holding one random key for tenant ``default``; the key is printed once in the
log, with the file that keeps it, and answers calls; a restart keeps it. Two gateways
starting at once make one file and one key. Without ISA_CREATE_API_KEYS_FILE the file is
not created: a warning names it, and the keys of ISA_API_KEYS answer as before."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from tests.conftest import TEST_REDIS_URL
from tests.service.harness import free_port, wait_http

KEY_LINE = re.compile(r"X-API-Key: (\S+)")


def start_gateway(keys_file: Path, log: Path, prefix: str, *, create: bool = True,
                  **extra: str) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ISA_API_KEYS", "ISA_CREATE_API_KEYS_FILE")}
    env |= {"ISA_API_KEYS_FILE": str(keys_file), "ISA_REDIS_URL": TEST_REDIS_URL,
            "ISA_KEY_PREFIX": prefix, "ISA_DATA_DIR": str(log.parent / "data"), **extra}
    if create:
        env["ISA_CREATE_API_KEYS_FILE"] = "true"
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host",
                                 "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_up(proc: subprocess.Popen, url: str, log: Path) -> None:
    wait_http(f"{url}/healthz", [proc], lambda: log.read_text(), timeout=60)


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=20)


def test_a_missing_key_file_is_created_once_and_its_key_works(tmp_path):
    keys_file = tmp_path / "secrets" / "api_keys.json"  # its folder does not exist either
    prefix = f"isa-test-{uuid.uuid4().hex[:8]}:"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    # two gateways at once on the same missing file
    procs = [start_gateway(keys_file, log, prefix) for log in logs]
    try:
        for (proc, url), log in zip(procs, logs, strict=True):
            wait_up(proc, url, log)
        printed = [KEY_LINE.findall(log.read_text()) for log in logs]
        assert sorted(len(p) for p in printed) == [0, 1], printed  # printed once, by one
        (key,) = printed[0] or printed[1]
        creator = logs[0] if printed[0] else logs[1]
        assert f"kept in {keys_file}" in creator.read_text()  # where to find it later
        assert json.loads(keys_file.read_text()) == {key: "default"}
        assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
        assert len(key) >= 32
        assert list(keys_file.parent.iterdir()) == [keys_file]  # no temporary file left
        for _, url in procs:
            ok = httpx.get(f"{url}/v1/datasets", headers={"X-API-Key": key}, timeout=30)
            assert ok.status_code == 200, ok.text
            bad = httpx.get(f"{url}/v1/datasets", headers={"X-API-Key": key + "x"}, timeout=30)
            assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    finally:
        stop(*(p for p, _ in procs))

    # a restart keeps the file and prints no key
    before = keys_file.read_bytes()
    proc, url = start_gateway(keys_file, tmp_path / "c.log", prefix)
    try:
        wait_up(proc, url, tmp_path / "c.log")
        assert keys_file.read_bytes() == before
        assert KEY_LINE.findall((tmp_path / "c.log").read_text()) == []
        r = httpx.get(f"{url}/v1/datasets", headers={"X-API-Key": key}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        stop(proc)


def test_without_the_opt_in_a_missing_key_file_is_only_named(tmp_path):
    """ISA_API_KEYS set, ISA_API_KEYS_FILE naming a missing file, no
    ISA_CREATE_API_KEYS_FILE: nothing is created or printed, a warning names the path,
    and the keys of ISA_API_KEYS are the only ones."""
    keys_file = tmp_path / "secrets" / "api_keys.json"
    log = tmp_path / "off.log"
    proc, url = start_gateway(keys_file, log, f"isa-test-{uuid.uuid4().hex[:8]}:",
                              create=False, ISA_API_KEYS=json.dumps({"env-key": "ops"}))
    try:
        wait_up(proc, url, log)
        assert not keys_file.exists() and not keys_file.parent.exists()
        text = log.read_text()
        assert KEY_LINE.findall(text) == []
        assert f"ISA_API_KEYS_FILE {keys_file} does not exist" in text, text
        assert "ISA_CREATE_API_KEYS_FILE" in text
        ok = httpx.get(f"{url}/v1/datasets", headers={"X-API-Key": "env-key"}, timeout=30)
        assert ok.status_code == 200, ok.text
    finally:
        stop(proc)
