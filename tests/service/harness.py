"""Start the real service — a Celery worker and the gateway as separate processes on the
real Redis — for the end-to-end tests and bench/service.py."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b", "dev-key": "local",  # dev-key: README tour
        # tenants of their own for tests that count what a tenant has
        **{f"key-{name}": f"tenant-{name}"
           for name in ("client", "other", "retry", "async", "fuzz", "mlflow", "idem", "erase",
                        "range", "subscribed", "unsubscribed")}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




def wait_http(url: str, procs: list[subprocess.Popen], describe: Callable[[], str], *,
              timeout: float = 120, ok: Callable[[httpx.Response], bool] =
              lambda r: r.status_code == 200) -> None:
    """Poll ``url`` until an answer is ``ok``; ``RuntimeError(describe())`` when one of
    ``procs`` exits first or ``timeout`` passes (a server that never came up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ok(httpx.get(url, timeout=5)):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError(describe())
        time.sleep(0.3)


@contextmanager
def production_gateway(folder: Path, env: dict[str, str], *, workers: int = 1
                       ) -> Iterator[int]:
    """The gateway as production starts it (``python -m app.serve``) on a free port, with
    ``env`` over this process's; yields the port once /healthz answers, stops it after."""
    port = free_port()
    with open(folder / "api.log", "wb") as log:
        api = subprocess.Popen([sys.executable, "-m", "app.serve", "--port", str(port),
                                "--workers", str(workers)], env={**os.environ, **env},
                               cwd=Path(__file__).resolve().parents[2], stdout=log,
                               stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", [api],
                      lambda: (folder / "api.log").read_text(), timeout=60)
            yield port
        finally:
            api.terminate()
            api.wait(timeout=30)


class Service:
    def __init__(self, base_url: str, data_dir: Path, logs: dict[str, Path]) -> None:
        self.base_url, self.data_dir, self.logs = base_url, data_dir, logs
        self.env: dict[str, str] = {}
        self.concurrency = 2
        self.worker: subprocess.Popen | None = None
        #: more worker processes beside ``worker``, by name (``start_named_worker``)
        self.named_workers: dict[str, subprocess.Popen] = {}

    def start_worker(self) -> None:
        """A Celery worker (its own process group, so a test can kill all of it)."""
        with open(self.logs["worker"], "ab") as wlog:
            self.worker = subprocess.Popen(_worker_command(self.concurrency), env=self.env,
                                           stdout=wlog, stderr=subprocess.STDOUT,
                                           start_new_session=True)

    def kill_worker(self) -> None:
        """SIGKILL the worker's whole process group: no goodbye, tasks left unacked."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=20)
        self.worker = None

    def start_named_worker(self, name: str, concurrency: int | None = None
                           ) -> subprocess.Popen:
        """One more worker process beside ``worker``, for tests of several workers: node
        name ``name@<host>`` (as a task's ``request.hostname`` and a job's per-worker task
        counts name it), log ``logs[name]``, its own process group; stopped with the
        service."""
        assert name not in self.named_workers and name not in ("worker", "api"), name
        self.logs[name] = self.data_dir / f"{name}.log"
        with open(self.logs[name], "ab") as log:
            proc = subprocess.Popen(
                _worker_command(concurrency or self.concurrency, node=f"{name}@%h"),
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.named_workers[name] = proc
        return proc

    def kill_named_worker(self, name: str) -> None:
        """SIGKILL a ``start_named_worker`` process group, as ``kill_worker`` does."""
        proc = self.named_workers.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)

    def client(self, key: str | None = "key-a") -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)

    def upload(self, client: httpx.Client, path: Path, **form: str) -> dict:
        with open(path, "rb") as fh:
            r = client.post("/v1/datasets", files={"file": (path.name, fh)}, data=form)
        assert r.status_code == 201, r.text
        return r.json()

    def wait_dataset(self, client: httpx.Client, dataset_id: str, timeout: float = 120) -> dict:
        return self._wait(client, f"/v1/datasets/{dataset_id}",
                          {"ready", "invalid"}, timeout)

    def wait_job(self, client: httpx.Client, job_id: str, timeout: float = 600,
                 states: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
                 ) -> dict:
        return self._wait(client, f"/v1/jobs/{job_id}", set(states), timeout)

    def _wait(self, client: httpx.Client, url: str, states: set[str], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            doc = client.get(url).json()
            if doc.get("status") in states:
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} still {doc.get('status')} after {timeout}s: {doc}"
                                     f"\n--- worker log ---\n{self.tail('worker')}")
            time.sleep(0.3)

    def select_while_embedding(self, client: httpx.Client, path: Path, *,
                               max_seq_length: int, timeout: float = 600) -> str:
        """Upload ``path``, start an ISA 5% select job on it, and return its id once its
        embedding is under way (``max_seq_length`` picks an encoder setting: one no
        earlier job used finds nothing in the cache)."""
        ds = self.wait_dataset(client, self.upload(client, path)["id"], timeout=timeout)
        assert ds["status"] == "ready", ds
        r = client.post("/v1/jobs", json={
            "type": "select", "dataset_id": ds["id"], "method": "isa",
            "budget": {"fraction": 0.05},
            "encoder": {"name": "sentence", "max_seq_length": max_seq_length}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + timeout
        while True:
            doc = client.get(f"/v1/jobs/{job_id}").json()
            if doc["stage"] == "embedding" and doc["progress"]["done"] > 0:
                return job_id
            assert doc["status"] in ("queued", "running"), doc
            assert time.monotonic() < deadline, doc
            time.sleep(0.2)

    def tail(self, name: str, n: int = 60) -> str:
        return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-n:])



def _worker_command(concurrency: int, node: str | None = None) -> list[str]:
    node = node or f"test-{uuid.uuid4().hex[:6]}@%h"
    return [str(Path(sys.executable).parent / "celery"), "-A", "workers.worker", "worker",
            "-Q", "cpu", "-c", str(concurrency), "-n", node,
            "--loglevel", "INFO", "--without-gossip", "--without-mingle"]


class RedisServer:
    """A redis-server of the test's own, on a free port, persisting to an append-only
    file so that a restart keeps the queue and the records (``persist=False``: memory
    only, as a benchmark's throwaway cache)."""

    def __init__(self, folder: Path, *, persist: bool = True) -> None:
        self.folder, self.port, self.persist = folder, free_port(), persist
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes" if self.persist else "no",
             "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()  # SIGTERM: redis flushes the append-only file and exits
        self.proc.wait(timeout=20)


class RabbitServer:
    """A rabbitmq-server node of the test's own (never the machine's): its own node name,
    free AMQP and distribution ports, config, data and logs under ``folder``, no plugins.
    ``stop`` then ``start`` restarts it on the same data folder, so durable (quorum) queues
    and their messages survive. ``RabbitServer.installed()``: whether one can be started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"rabbit-isa-{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.proc: subprocess.Popen | None = None
        (folder / "enabled_plugins").write_text("")
        (folder / "rabbitmq-env.conf").write_text("")  # not the machine's
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n")
        self.env = {
            **os.environ,
            "HOME": str(folder),  # an Erlang cookie of its own, shared with rabbitmqctl
            "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @staticmethod
    def scripts() -> Path | None:
        """The folder of the real rabbitmq-server and rabbitmqctl scripts (Debian's
        /usr/sbin ones are a wrapper that runs them as the rabbitmq user)."""
        found = shutil.which("rabbitmq-server") or (
            "/usr/lib/rabbitmq/bin/rabbitmq-server"
            if Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() else None)
        if found is None:
            return None
        real = Path(found).resolve()
        folder = real.parent if real.name == "rabbitmq-script-wrapper" else Path(found).parent
        return folder if (folder / "rabbitmqctl").exists() else None

    @classmethod
    def installed(cls) -> bool:
        return cls.scripts() is not None

    def ctl(self, *args: str, timeout: float = 90) -> str:
        scripts = self.scripts()
        assert scripts is not None
        return subprocess.run([str(scripts / "rabbitmqctl"), "-q", "-n", self.node, *args],
                              env=self.env, capture_output=True, text=True, check=True,
                              timeout=timeout).stdout

    def start(self, timeout: float = 90) -> None:
        scripts = self.scripts()
        assert scripts is not None, "rabbitmq-server is not installed"
        with open(self.folder / "server.log", "ab") as log:
            self.proc = subprocess.Popen([str(scripts / "rabbitmq-server")], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:  # the node's applications running, and its AMQP port taking connections
                self.ctl("wait", "--timeout", "10", str(self.folder / "rabbit.pid"),
                         timeout=30)
                with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                    return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("rabbitmq-server did not start:\n" + "\n".join(
                        (self.folder / "server.log").read_text(errors="replace")
                        .splitlines()[-40:])) from None
                time.sleep(0.5)

    def stop(self) -> None:
        """Stop the node the clean way (``rabbitmqctl stop``), killing it if it will not."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.ctl("stop", str(self.folder / "rabbit.pid"), timeout=60)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None


class S3Server:
    """A local S3-compatible server process (moto's), for data set imports."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = Path(sys.executable).parent / "moto_server"
        self.log = (self.folder / "s3.log").open("wb")
        self.proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(self.url, [self.proc], lambda: (self.folder / "s3.log").read_text(),
                  timeout=60, ok=lambda r: True)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)

    def storage_options(self) -> dict:
        return {"endpoint_url": self.url, "key": "testing", "secret": "testing"}

    def client(self):  # noqa: ANN201
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")


async def poll_concurrently(base_url: str, path: str, clients: int, seconds: float,
                            key: str = "key-a") -> tuple[list[float], dict[int, int]]:
    """``clients`` coroutines GETting ``path`` as fast as they can for ``seconds``:
    every latency, and the count of each status code."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                status = (await client.get(path)).status_code
            except httpx.HTTPError:
                status = 0  # a connection the server dropped
            latencies.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": key},
                                 limits=limits, timeout=30) as client:
        await asyncio.gather(*(one(client) for _ in range(clients)))
    return latencies, statuses


@contextmanager
def running_service(redis_url: str, data_dir: Path, *, concurrency: int = 2,
                    extra_env: dict[str, str] | None = None) -> Iterator[Service]:
    """Flush ``redis_url``'s database (it must belong to the caller), start a worker and
    the API, wait until /readyz answers 200, and stop both on exit."""
    r = redis.Redis.from_url(redis_url)
    r.ping()
    r.flushdb()  # stale queue messages from an earlier run go too
    env = {
        **os.environ,
        "ISA_REDIS_URL": redis_url,
        "ISA_KEY_PREFIX": f"isa-test-{uuid.uuid4().hex[:8]}:",
        "ISA_DATA_DIR": str(data_dir),
        "ISA_API_KEYS": json.dumps(KEYS),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **(extra_env or {}),
    }
    logs = {"worker": data_dir / "worker.log", "api": data_dir / "api.log"}
    port = free_port()
    svc = Service(f"http://127.0.0.1:{port}", data_dir, logs)
    svc.env, svc.concurrency = env, concurrency
    with open(logs["api"], "ab") as alog:
        api = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host",
                                "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                               env=env, stdout=alog, stderr=subprocess.STDOUT)
    svc.start_worker()
    try:
        assert svc.worker is not None
        wait_http(f"{svc.base_url}/readyz", [api, svc.worker],
                  lambda: f"service did not become ready\n--- api ---\n{svc.tail('api')}"
                          f"\n--- worker ---\n{svc.tail('worker')}")
        yield svc
    finally:
        procs = (api, svc.worker, *svc.named_workers.values())
        for p in procs:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in procs:
            if p is None:
                continue
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@dataclass
class ChunkKill:
    """What ``kill_worker_mid_chunk`` saw: one worker SIGKILLed while it embedded a chunk of
    a job whose other chunks ran on a second worker, never restarted."""

    killed_part: int | None = None  # the part the supervisor sent again (its index)
    live_at_kill: list[int] = field(default_factory=list)  # the job's parts beating then
    resend_after_s: float | None = None  # from the kill to the job's attempts going up
    siblings_at_resend: list[int] = field(default_factory=list)  # other parts beating then
    pending_at_resend: int = 0  # parts not finished then
    done_after_s: float | None = None  # from the kill to the job's end
    job: dict = field(default_factory=dict)  # its last document
    #: (stage, done, total) as each poll of GET /v1/jobs/{id} saw it, from the start
    polls: list[tuple[str, int, int]] = field(default_factory=list)
    workers_at_kill: dict[str, int] = field(default_factory=dict)  # chunks done, per node
    workers_at_end: dict[str, int] = field(default_factory=dict)
    parts: int = 0  # the job's chunks



def _chunks_on(log: Path) -> tuple[int, int]:
    """Embedding chunk tasks a worker's log says it received, and ended."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines()
             if "Task isa.embed_chunk[" in ln]
    return (sum("] received" in ln for ln in lines),
            sum("] succeeded in" in ln or "] raised" in ln for ln in lines))


def kill_worker_mid_chunk(svc: Service, client: httpx.Client, job_id: str, *,
                          timeout: float = 600, poll_s: float = 0.1,
                          fresh_s: float = 2.0) -> ChunkKill:
    """Watch a select job whose embedding fans out to ``svc.worker`` and (at least) one
    ``start_named_worker``; SIGKILL ``svc.worker``'s process group just after it started
    a chunk (it has ended one before, and a part on another worker beats), without
    starting it again; then follow the job to its end. The re-send is seen in the job
    record's ``attempts`` (``workers.fanout.resend`` counts it there) and its part in
    the fan-out's ``part-attempts``; a part beats when ``live:parts`` scored it within
    ``fresh_s``."""
    assert svc.worker is not None
    r = redis.Redis.from_url(svc.env["ISA_REDIS_URL"], decode_responses=True)
    prefix = svc.env["ISA_KEY_PREFIX"]
    job_key, live_key = f"{prefix}job:{job_id}", f"{prefix}live:parts"
    seen = ChunkKill()
    terminal = {"succeeded", "failed", "cancelled"}

    def beating() -> list[int]:
        at = time.time()
        return sorted(int(m.split("|")[2]) for m, score in
                      r.zrange(live_key, 0, -1, withscores=True)
                      if m.startswith(f"{job_id}|") and at - score < fresh_s)

    def poll() -> dict:
        doc = client.get(f"/v1/jobs/{job_id}").json()
        seen.polls.append((doc["stage"], doc["progress"]["done"], doc["progress"]["total"]))
        return doc

    deadline = time.monotonic() + timeout
    started, started_at = 0, 0.0  # the chunks the worker to kill received, and when
    t_kill = 0.0
    while True:  # 1. the kill
        doc = poll()
        assert doc["status"] in ("queued", "running"), doc
        assert time.monotonic() < deadline, f"never saw both workers embed: {doc}"
        received, ended = _chunks_on(svc.logs["worker"])
        if received > started:
            started, started_at = received, time.monotonic()
        live = beating()
        if doc["stage"] == "embedding" and ended >= 1 and received == ended + 1 and \
                time.monotonic() - started_at < 1.0 and len(live) >= 2:
            seen.workers_at_kill = {k: int(v) for k, v in
                                    r.hgetall(f"{job_key}:workers:embedding").items()}
            seen.live_at_kill = live
            t_kill = time.monotonic()
            svc.kill_worker()
            break
        time.sleep(poll_s)
    while True:  # 2. the re-send, and 3. the end
        attempts = int(r.hget(job_key, "attempts") or 0)
        if attempts and seen.resend_after_s is None:
            seen.resend_after_s = time.monotonic() - t_kill
            resent = [int(i) for i, n in r.hgetall(f"{job_key}:part-attempts").items()
                      if int(n) > 0]  # a try the broker refused is given back (0)
            seen.killed_part = resent[0] if len(resent) == 1 else None
            seen.siblings_at_resend = [i for i in beating() if i != seen.killed_part]
            seen.pending_at_resend = int(r.scard(f"{job_key}:pending"))
        doc = poll()
        if doc["status"] in terminal:
            seen.done_after_s = time.monotonic() - t_kill
            seen.job = doc
            break
        assert time.monotonic() < deadline, f"the job did not end: {doc}\n" \
            f"--- surviving workers ---\n" + "\n".join(
                svc.tail(name) for name in svc.named_workers)
        time.sleep(poll_s)
    seen.workers_at_end = {k: int(v) for k, v in
                           r.hgetall(f"{job_key}:workers:embedding").items()}
    seen.parts = int(r.hlen(f"{job_key}:parts"))
    return seen
