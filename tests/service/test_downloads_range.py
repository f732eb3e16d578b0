"""Range requests on result and scores downloads, and the Python client resuming a
download whose connection drops, against the real gateway and worker: through a
loopback proxy that cuts the first answer mid-body."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from isa.remote import AsyncClient, Client
from tests.conftest import HH_SAMPLE

KEY = "key-range"


def _select(service, c: httpx.Client, dataset_id: str, count: int) -> dict:
    r = c.post("/v1/jobs", json={"type": "select", "dataset_id": dataset_id,
                                 "method": "random", "budget": {"count": count}})
    assert r.status_code == 201, r.text
    job = service.wait_job(c, r.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job
    return job


@pytest.fixture(scope="module")
def dataset(service) -> str:
    c = service.client(KEY)
    ds = service.wait_dataset(c, service.upload(c, HH_SAMPLE)["id"])
    assert ds["status"] == "ready", ds
    return ds["id"]


@pytest.fixture(scope="module")
def job(service, dataset) -> dict:
    return _select(service, service.client(KEY), dataset, 500)


def _url(job_id: str, fmt: str) -> str:
    return f"/v1/jobs/{job_id}/scores" if fmt == "scores" else \
        f"/v1/jobs/{job_id}/result?format={fmt}"


def test_every_stored_format_answers_ranges(service, job):
    c = service.client(KEY)
    formats = [*job["result"]["files"]]
    assert {"jsonl", "parquet", "scores"} <= set(formats)
    for fmt in formats:
        full = c.get(_url(job["id"], fmt))
        assert full.status_code == 200, full.text
        body, size, etag = full.content, len(full.content), full.headers["ETag"]
        assert full.headers["Accept-Ranges"] == "bytes" and int(
            full.headers["Content-Length"]) == size > 200
        assert etag.startswith('"') and c.get(_url(job["id"], fmt)).headers["ETag"] == etag

        def ask(spec: str, url: str = _url(job["id"], fmt), **headers: str) -> httpx.Response:
            return c.get(url, headers={"Range": spec, **headers})

        for spec, want in (("bytes=10-99", body[10:100]), ("bytes=100-", body[100:]),
                           ("bytes=-7", body[-7:]), (f"bytes=0-{size * 2}", body),
                           (f"bytes={size - 1}-", body[-1:])):
            r = ask(spec)
            assert r.status_code == 206, (fmt, spec, r.text)
            assert r.content == want, (fmt, spec)
            first = size - len(want) if spec.startswith("bytes=-") or spec.endswith("-") \
                else int(spec[6:].split("-")[0])
            assert r.headers["Content-Range"] == \
                f"bytes {first}-{first + len(want) - 1}/{size}", (fmt, spec)
            assert int(r.headers["Content-Length"]) == len(want)
            assert r.headers["ETag"] == etag
        for spec in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
            r = ask(spec)
            assert r.status_code == 416, (fmt, spec, r.text)
            assert r.headers["Content-Range"] == f"bytes */{size}"
            assert r.json()["error"]["code"] == "range_not_satisfiable"
        # documented: several ranges, or a malformed one, answer the whole file
        for spec in ("bytes=0-1,5-6", "bytes=9-3", "lines=1-2", "bytes=x-"):
            r = ask(spec)
            assert (r.status_code, r.content) == (200, body), (fmt, spec)
        # If-Range: the same ETag resumes, another one (the file changed) sends it whole
        assert ask("bytes=50-", **{"If-Range": etag}).content == body[50:]
        stale = ask("bytes=50-", **{"If-Range": '"another-version"'})
        assert (stale.status_code, stale.content) == (200, body)


class _CuttingProxy:
    """A loopback TCP proxy to the gateway that closes the first connection (the first
    ``cuts``) whose answer passes ``cut_after`` bytes (headers included) right there, as a
    network drop would; ``on_cut`` runs then. ``strip_etag``: answers lose their ETag
    header, as behind a proxy that drops it. Past ``max_connections`` it closes each new
    connection at once (a test of a client that would loop ends). It records what the
    client sent and the status lines seen."""

    def __init__(self, upstream: str, cut_after: int,
                 on_cut: Callable[[], None] | None = None, *, cuts: int = 1,
                 strip_etag: bool = False, max_connections: int = 1000) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream, self.cut_after, self.on_cut = (host, int(port)), cut_after, on_cut
        self.cuts_left, self.requests, self.statuses = cuts, bytearray(), []
        self.strip_etag, self.connections_left = strip_etag, max_connections
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            self.connections_left -= 1
            if self.connections_left < 0:
                down.close()
                continue
            up = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump_requests, args=(down, up), daemon=True).start()
            threading.Thread(target=self._pump_answers, args=(up, down), daemon=True).start()

    def _pump_requests(self, down: socket.socket, up: socket.socket) -> None:
        with_suppressed(lambda: _copy(down, up, self.requests, self.lock))

    def _pump_answers(self, up: socket.socket, down: socket.socket) -> None:
        sent = 0
        try:
            while block := up.recv(65536):
                if block.startswith(b"HTTP/1.1 "):
                    self.statuses.append(int(block[9:12]))
                    if self.strip_etag:
                        head, sep, body = block.partition(b"\r\n\r\n")
                        block = b"\r\n".join(line for line in head.split(b"\r\n")
                                              if not line.lower().startswith(b"etag:"))
                        block += sep + body
                with self.lock:
                    cut = self.cuts_left > 0 and sent + len(block) > self.cut_after
                    if cut:
                        self.cuts_left -= 1
                if cut:
                    down.sendall(block[:self.cut_after - sent])
                    if self.on_cut:
                        self.on_cut()
                    break
                down.sendall(block)
                sent += len(block)
        except OSError:
            pass
        for s in (down, up):
            with_suppressed(lambda s=s: s.shutdown(socket.SHUT_RDWR))
            s.close()

    def close(self) -> None:
        self.sock.close()


def _copy(src: socket.socket, dst: socket.socket, log: bytearray, lock: threading.Lock) -> None:
    while block := src.recv(65536):
        with lock:
            log.extend(block)
        dst.sendall(block)


def with_suppressed(fn: Callable[[], object]) -> None:
    with contextlib.suppress(OSError):  # the other side went away first
        fn()


def test_the_client_resumes_a_dropped_download(service, job, tmp_path):
    c = service.client(KEY)
    for fmt in ("jsonl", "scores"):
        want = c.get(_url(job["id"], fmt)).content
        proxy = _CuttingProxy(service.base_url, cut_after=len(want) // 2)
        try:
            with Client(proxy.url, api_key=KEY, max_backoff_s=0.2) as cl:
                out = cl.download(job["id"], tmp_path / f"out-{fmt}", format=fmt)
        finally:
            proxy.close()
        assert out.read_bytes() == want, fmt
        sent = proxy.requests.decode("latin-1").lower()
        resumed_at = int(sent.split("range: bytes=")[1].split("-")[0])
        assert 0 < resumed_at < len(want) and "if-range: \"" in sent
        assert proxy.statuses == [200, 206], proxy.statuses  # the server served a part
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out-jsonl", "out-scores"]


def test_a_file_changed_before_the_resume_is_fetched_again_whole(service, dataset,
                                                                tmp_path):
    c = service.client(KEY)
    job = _select(service, c, dataset, 400)  # a job of this test's own: its file changes
    stored = Path(service.data_dir, "artifacts", "jobs", job["id"], "subset.jsonl")
    old = stored.read_bytes()
    new = b"".join(reversed(old.splitlines(keepends=True)))[:len(old) - 1000]

    def rewrite() -> None:  # a new version, written as the store writes (a rename)
        tmp = stored.with_name(".rewrite.tmp")
        tmp.write_bytes(new)
        tmp.replace(stored)

    proxy = _CuttingProxy(service.base_url, cut_after=len(old) // 2, on_cut=rewrite)
    try:
        with Client(proxy.url, api_key=KEY, max_backoff_s=0.2) as cl:
            out = cl.download(job["id"], tmp_path / "subset.jsonl", format="jsonl")
    finally:
        proxy.close()
    assert out.read_bytes() == new  # not the old half with the new file's tail
    assert "range: bytes=" in proxy.requests.decode("latin-1").lower()
    assert proxy.statuses == [200, 200]  # If-Range did not match: the whole new file


def test_the_async_client_resumes_too(service, job, tmp_path):
    import asyncio

    want = service.client(KEY).get(_url(job["id"], "parquet")).content
    proxy = _CuttingProxy(service.base_url, cut_after=len(want) // 3)

    async def main() -> Path:
        async with AsyncClient(proxy.url, api_key=KEY, max_backoff_s=0.2) as cl:
            return await cl.download(job["id"], tmp_path / "s.parquet", format="parquet")

    try:
        out = asyncio.run(main())
    finally:
        proxy.close()
    assert out.read_bytes() == want and proxy.statuses == [200, 206]


def test_a_download_cut_at_the_same_size_without_an_etag_gives_up(service, job, tmp_path):
    """Behind a proxy that drops the ETag (so no try can resume) and cuts every answer at
    the same byte, each try starts again from 0 and ends where the last did: that is no
    progress, so the client stops after max_retries with a clear error, not in a loop."""
    import asyncio

    from isa.remote import errors

    want = service.client(KEY).get(_url(job["id"], "jsonl")).content
    retries = 3
    for kind in ("sync", "async"):
        proxy = _CuttingProxy(service.base_url, cut_after=len(want) // 2, cuts=10**6,
                              strip_etag=True, max_connections=30)
        out = tmp_path / f"never-{kind}.jsonl"
        try:
            with pytest.raises(errors.TransportError) as exc:
                if kind == "sync":
                    with Client(proxy.url, api_key=KEY, max_retries=retries,
                                max_backoff_s=0.05) as cl:
                        cl.download(job["id"], out, format="jsonl")
                else:
                    asyncio.run(_download_async(proxy.url, job["id"], out, retries))
        finally:
            proxy.close()
        # the first try got as far as any will; then max_retries + 1 that got no further
        assert proxy.statuses == [200] * (retries + 2), (kind, proxy.statuses)
        assert "range:" not in proxy.requests.decode("latin-1").lower()  # nothing to resume
        assert exc.value.code == "unreachable"
        message = str(exc.value)
        assert "got no further than" in message and "no ETag" in message, message
        assert f"of {len(want):,}" in message, message
        assert not out.exists() and list(tmp_path.iterdir()) == [], kind  # nothing half


async def _download_async(url: str, job_id: str, out: Path, retries: int) -> Path:
    async with AsyncClient(url, api_key=KEY, max_retries=retries, max_backoff_s=0.05) as cl:
        return await cl.download(job_id, out, format="jsonl")
