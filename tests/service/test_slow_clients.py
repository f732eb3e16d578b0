"""The production gateway (``python -m app.serve``) defends its connections: headers and
bodies that do not arrive are timed out, and connections stuck before their headers are
capped, while prompt clients (and slow uploads that progress) are served."""

from __future__ import annotations

import json
import select
import socket
import time
import uuid

import httpx
import pytest

from tests.conftest import TEST_REDIS_URL
from tests.service.harness import production_gateway

HEADER_S, BODY_S, HALF_OPEN = 1.0, 1.5, 20


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slow")
    env = {"ISA_REDIS_URL": TEST_REDIS_URL, "ISA_KEY_PREFIX": f"isa-slow-{uuid.uuid4().hex[:8]}:",
           "ISA_DATA_DIR": str(folder), "ISA_API_KEYS": json.dumps({"key-a": "a"}),
           "ISA_API_LOG_LEVEL": "warning", "ISA_API_HEADER_TIMEOUT_S": str(HEADER_S),
           "ISA_API_BODY_IDLE_TIMEOUT_S": str(BODY_S), "ISA_API_MAX_HALF_OPEN": str(HALF_OPEN)}
    with production_gateway(folder, env) as port:
        yield port


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    out = b""
    try:
        while part := sock.recv(65536):
            out += part
    except TimeoutError:
        return out + b"<still open>"
    return out


def test_headers_that_do_not_arrive_get_408_and_the_connection_closes(gateway):
    with socket.create_connection(("127.0.0.1", gateway)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        t0 = time.monotonic()
        answer = _read_all(sock, 10)
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer, answer
    assert answer.endswith(b"}"), answer  # then closed, not left open
    assert HEADER_S - 0.2 < time.monotonic() - t0 < HEADER_S + 3
    # a connection that sends nothing at all is closed the same way
    with socket.create_connection(("127.0.0.1", gateway)) as sock:
        assert _read_all(sock, 10).startswith(b"HTTP/1.1 408")


def test_a_stalled_body_is_cut_and_a_slow_one_that_progresses_is_not(gateway):
    with socket.create_connection(("127.0.0.1", gateway)) as sock:
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nX-API-Key: key-a\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ty")
        t0 = time.monotonic()
        answer = _read_all(sock, 10)
    assert not answer.endswith(b"<still open>"), answer
    assert BODY_S - 0.2 < time.monotonic() - t0 < BODY_S + 3

    def trickle():  # 12 parts 0.4 s apart: 4.8 s in all, far past both timeouts
        body = json.dumps({"type": "select", "dataset_id": "ds_" + "0" * 20,
                           "method": "random", "budget": {"count": 1}}).encode()
        step = -(-len(body) // 12)
        for i in range(0, len(body), step):
            time.sleep(0.4)
            yield body[i:i + step]

    r = httpx.post(f"http://127.0.0.1:{gateway}/v1/jobs", content=trickle(), timeout=30,
                   headers={"X-API-Key": "key-a", "Content-Type": "application/json"})
    # read whole and answered by the app (the data set does not exist), not cut
    assert r.status_code == 404 and r.json()["error"]["code"] == "dataset_not_found", r.text


def test_silent_connections_are_capped_and_the_oldest_evicted(gateway):
    stuck = []
    try:
        for _ in range(HALF_OPEN + 10):
            sock = socket.create_connection(("127.0.0.1", gateway))
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            stuck.append(sock)
        time.sleep(0.3)  # well inside the header timeout
        readable, _, _ = select.select(stuck, [], [], 0)
        evicted = sorted(stuck.index(s) for s in readable)
        # the 10 that waited longest made room, at once (not after the timeout), each with
        # a 408; the rest are still waiting
        assert evicted == list(range(10)), evicted
        assert all(_read_all(stuck[i], 1).startswith(b"HTTP/1.1 408") for i in evicted)
        # a prompt client is served while the flood goes on
        for _ in range(5):
            assert httpx.get(f"http://127.0.0.1:{gateway}/healthz", timeout=5
                             ).status_code == 200
    finally:
        for sock in stuck:
            sock.close()
