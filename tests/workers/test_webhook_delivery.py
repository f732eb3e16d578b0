"""One webhook delivery attempt against a loopback receiver: it goes to the address the
outbound check approved, never to a second lookup of the name (DNS rebinding)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.records import now
from tests.workers.conftest import add_job
from workers.tasks.webhooks import _attempt, _load


@pytest.fixture()
def receiver():
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            seen.append({"host": self.headers["host"], "body": body,
                         "signature": self.headers["webhook-signature"]})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()


def test_a_delivery_goes_to_the_address_that_was_checked(worker_ctx, receiver, monkeypatch):
    port, seen = receiver
    lookups: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        """hooks.example answers loopback (allowed below) once, then an address that
        nothing allowed lives at: a connection that looked the name up again goes there."""
        if host != "hooks.example":
            return real(host, *args, **kwargs)
        lookups.append(host)
        return real("127.0.0.1" if len(lookups) == 1 else "10.255.255.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(worker_ctx.settings, "outbound_allowed_networks", ["127.0.0.0/8"])
    monkeypatch.setattr(worker_ctx.settings, "webhook_timeout_s", 3.0)
    job_id = add_job(worker_ctx, {"type": "select", "dataset_id": "ds_x", "method": "random",
                                  "budget": {"count": 1}})
    worker_ctx.jobs.transition(job_id, "cancelled", finished_at=now())
    event = _load(worker_ctx, job_id, "job.cancelled", None)  # as the delivery task reads it
    entry, state = _attempt(worker_ctx, event, f"http://hooks.example:{port}/hook", 1)
    assert state == "delivered", entry
    assert lookups == ["hooks.example"]  # looked up once, by the check
    assert seen[0]["host"] == f"hooks.example:{port}"  # the name still heads the request
    assert job_id.encode() in seen[0]["body"] and seen[0]["signature"].startswith("v1,")


def test_an_address_that_refuses_falls_back_to_the_next_checked_one(worker_ctx, receiver,
                                                                    monkeypatch):
    port, seen = receiver  # listening on 127.0.0.1 only: 127.0.0.2 refuses
    real = socket.getaddrinfo

    def two(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if host != "hooks.example":
            return real(host, *args, **kwargs)
        return real("127.0.0.2", *args, **kwargs) + real("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", two)
    monkeypatch.setattr(worker_ctx.settings, "outbound_allowed_networks", ["127.0.0.0/8"])
    job_id = add_job(worker_ctx, {"type": "select", "dataset_id": "ds_x", "method": "random",
                                  "budget": {"count": 1}})
    worker_ctx.jobs.transition(job_id, "cancelled", finished_at=now())
    entry, state = _attempt(worker_ctx, _load(worker_ctx, job_id, "job.cancelled", None),
                            f"http://hooks.example:{port}/hook", 1)
    assert state == "delivered", entry
    assert len(seen) == 1 and seen[0]["host"] == f"hooks.example:{port}"
