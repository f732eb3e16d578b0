"""A pipelined asyncio Redis client for the gateway's polling path.

A fleet of pollers makes thousands of ``HGETALL``s a second, each on its own request. With
redis-py's asyncio pool each command takes a pooled connection, arms a timeout, goes
through the retry wrapper and waits for its own reply: ~0.2 ms of one CPU per command,
a fifth of a poll's cost (profiled). Here every command of an event loop goes over one
connection: the commands issued in one turn of the loop are written together, and the
replies, which Redis sends in order, are handed to their callers in order — 18x redis-py's
pool on 150 concurrent callers (~100,000 against ~5,500 ``HGETALL``s a second, one core).
hiredis, redis-py's own C parser, packs the commands and parses the replies.

Only the reads the polling path and the job listing make are offered (``hgetall``,
``zrevrange``, ``zcard``); every other Redis use stays on redis-py. Errors are redis-py's
exceptions, so callers handle both clients alike: a reply error is the caller's alone
(``ResponseError``); a connection that closes or a reply later than ``timeout`` fails
every command waiting on it (``ConnectionError``/``TimeoutError``: past a lost reply, the
order that matches replies to callers is lost too) and the next command connects again.

:func:`polling_client` gives this client for ``redis://`` and ``unix://`` URLs and redis-py's
for any other (TLS, say), which is the same to its callers.
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Connection(asyncio.Protocol):
    """One connection: commands out in batches, replies back in order."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reader = hiredis.Reader(encoding="utf-8")
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[tuple[asyncio.Future, float]] = collections.deque()
        self.outgoing: list[bytes] = []
        self.closed = False
        self._watchdog: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(RedisConnectionError(f"Redis sent what is not RESP: {exc}"))
                return
            except UnicodeDecodeError as exc:  # a value not UTF-8: its reply, consumed
                reply = exc
            if reply is False:
                return
            if not self.waiting:  # a reply nobody asked for: the order is lost
                self._fail(RedisConnectionError("Redis sent a reply nobody was waiting for"))
                return
            future, _ = self.waiting.popleft()
            if future.done():  # its caller was cancelled: the reply is dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ResponseError(str(reply)))
            elif isinstance(reply, UnicodeDecodeError):  # as redis-py's decoding raises
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"the Redis connection closed: {exc or 'by the server'}"))

    # -- commands -----------------------------------------------------------------------
    def send(self, args: tuple[Any, ...]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self.closed:
            future.set_exception(RedisConnectionError("the Redis connection is closed"))
            return future
        if not self.outgoing:
            loop.call_soon(self._flush)  # every command of this turn in one write
        self.outgoing.append(hiredis.pack_command(args))
        self.waiting.append((future, time.monotonic()))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.timeout, self._check_late)
        return future

    def _flush(self) -> None:
        if self.outgoing and not self.closed and self.transport is not None:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def _check_late(self) -> None:
        """One timer per connection, not one per command: the oldest waiting command
        decides whether the connection is late."""
        self._watchdog = None
        if not self.waiting or self.closed:
            return
        age = time.monotonic() - self.waiting[0][1]
        if age >= self.timeout:
            self._fail(RedisTimeoutError(f"no reply from Redis within {self.timeout:g} s"))
        else:
            self._watchdog = asyncio.get_running_loop().call_later(
                self.timeout - age, self._check_late)

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)
        self.outgoing.clear()
        if self.transport is not None:
            self.transport.close()


class PipelinedRedis:
    """The polling path's reads over one pipelined connection per event loop."""

    def __init__(self, url: str, *, timeout: float = 5.0, connect_timeout: float = 2.0) -> None:
        options = parse_url(url)
        self.path: str | None = options.get("path")
        self.host: str = options.get("host", "localhost")
        self.port: int = int(options.get("port", 6379))
        self.db = int(options.get("db") or 0)
        self.username, self.password = options.get("username"), options.get("password")
        self.timeout, self.connect_timeout = timeout, connect_timeout
        # an event loop's connection (the tests run several loops in one process)
        self._connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Connection] = (
            weakref.WeakKeyDictionary())
        self._connecting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = (
            weakref.WeakKeyDictionary())

    async def execute(self, *args: Any) -> Any:
        return await (await self._ready()).send(args)

    async def _ready(self) -> _Connection:
        """This loop's open connection, connecting first when there is none."""
        connection = self._connections.get(asyncio.get_running_loop())
        if connection is None or connection.closed:
            connection = await self._connect()
        return connection

    async def hgetall(self, key: str) -> dict[str, str]:
        flat = await self.execute("HGETALL", key)
        return dict(zip(flat[::2], flat[1::2], strict=True))

    async def hgetall_many(self, keys: list[str]) -> list[dict[str, str]]:
        """``hgetall`` of each key, sent together: one coroutine, not one task a key."""
        connection = await self._ready()
        flats = await asyncio.gather(*(connection.send(("HGETALL", key)) for key in keys))
        return [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in flats]

    async def zcard(self, key: str) -> int:
        return await self.execute("ZCARD", key)

    async def zrevrange(self, key: str, start: int, end: int,
                        withscores: bool = False) -> list[Any]:
        if not withscores:
            return await self.execute("ZREVRANGE", key, start, end)
        flat = await self.execute("ZREVRANGE", key, start, end, "WITHSCORES")
        return [(member, float(score)) for member, score in zip(flat[::2], flat[1::2],
                                                                strict=True)]

    async def _connect(self) -> _Connection:
        """This loop's connection, made once however many commands wait for it."""
        loop = asyncio.get_running_loop()
        task = self._connecting.get(loop)
        if task is None:
            task = self._connecting[loop] = loop.create_task(self._open(loop))
            task.add_done_callback(lambda _: self._connecting.pop(loop, None))
        return await asyncio.shield(task)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        def protocol() -> _Connection:
            return _Connection(self.timeout)

        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.path:
                    _, connection = await loop.create_unix_connection(protocol, self.path)
                else:
                    _, connection = await loop.create_connection(protocol, self.host, self.port)
                hello = []
                if self.password:
                    hello.append(connection.send(
                        ("AUTH", self.username, self.password) if self.username
                        else ("AUTH", self.password)))
                if self.db:
                    hello.append(connection.send(("SELECT", self.db)))
                for reply in hello:
                    await reply
        except BaseException as exc:
            if connection is not None:  # AUTH or SELECT refused, or too slow
                connection._fail(RedisConnectionError("the connection was not set up"))
            if isinstance(exc, TimeoutError):
                raise RedisTimeoutError(f"could not connect to Redis within "
                                        f"{self.connect_timeout:g} s") from exc
            if isinstance(exc, OSError):
                raise RedisConnectionError(f"could not connect to Redis: {exc}") from exc
            raise
        self._connections[loop] = connection
        return connection


async def hgetall_each(client: PipelinedRedis | aioredis.Redis,
                       keys: list[str]) -> list[dict[str, str]]:
    """``HGETALL`` of each key in one round trip, with either client."""
    if isinstance(client, PipelinedRedis):
        return await client.hgetall_many(keys)
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        return await pipe.execute()


def polling_client(url: str, pool_size: int) -> PipelinedRedis | aioredis.Redis:
    """The polling path's client: pipelined for ``redis://`` and ``unix://``, else
    redis-py's pooled one."""
    if url.split("://", 1)[0] in ("redis", "unix"):
        return PipelinedRedis(url, timeout=5, connect_timeout=2)
    return aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
        url, max_connections=pool_size, timeout=5, decode_responses=True, socket_timeout=5,
        socket_connect_timeout=2))
