"""The polling path's pipelined Redis client (core/redis_pipelined.py) against real Redis
servers: the machine's, and one of the test's own that it stops and starts again."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redis_pipelined import PipelinedRedis, polling_client
from tests.conftest import TEST_REDIS_URL
from tests.service.harness import RedisServer


def test_concurrent_callers_each_get_their_own_reply(prefix):
    """2,000 commands in flight at once on one connection, in one write per loop turn:
    every caller gets the reply to its own command, equal to redis-py's."""
    r = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    for i in range(200):
        r.hset(f"{prefix}h{i}", mapping={"i": str(i), "name": f"job {i}", "empty": ""})
        r.zadd(f"{prefix}z{i}", {f"node-{i}": 1000.0 + i, "old": 1.5})
    client = PipelinedRedis(TEST_REDIS_URL)

    async def calls():
        hashes = [client.hgetall(f"{prefix}h{i % 200}") for i in range(1000)]
        ranges = [client.zrevrange(f"{prefix}z{i % 200}", 0, 0, withscores=True)
                  for i in range(1000)]
        return await asyncio.gather(*hashes, *ranges, client.hgetall(f"{prefix}none"),
                                    client.zrevrange(f"{prefix}z0", 0, -1))

    out = asyncio.run(calls())
    for i in range(1000):
        assert out[i] == r.hgetall(f"{prefix}h{i % 200}")
        assert out[1000 + i] == r.zrevrange(f"{prefix}z{i % 200}", 0, 0, withscores=True)
        assert out[1000 + i] == [(f"node-{i % 200}", 1000.0 + i % 200)]
    assert out[2000] == {}
    assert out[2001] == ["node-0", "old"]


def test_a_reply_error_is_its_callers_alone(prefix):
    """HGETALL of a sorted set is WRONGTYPE: that caller gets redis-py's ResponseError, the
    commands around it their replies, on the same connection."""
    r = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    r.hset(f"{prefix}h", "a", "1")
    r.zadd(f"{prefix}z", {"m": 1})
    client = PipelinedRedis(TEST_REDIS_URL)

    async def calls():
        return await asyncio.gather(client.hgetall(f"{prefix}h"), client.hgetall(f"{prefix}z"),
                                    client.hgetall(f"{prefix}h"), return_exceptions=True)

    before, wrong, after = asyncio.run(calls())
    assert before == after == {"a": "1"}
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)


def test_a_value_that_is_not_utf8_fails_its_caller_alone(prefix):
    """A hash with a value that is not UTF-8: that caller gets UnicodeDecodeError (as
    redis-py's decoding raises), and the replies after it still reach their callers."""
    r = redis.Redis.from_url(TEST_REDIS_URL)
    r.hset(f"{prefix}bad", "v", b"\xff\xfe")
    r.hset(f"{prefix}ok", "v", "fine")
    client = PipelinedRedis(TEST_REDIS_URL)

    async def calls():
        return await asyncio.gather(client.hgetall(f"{prefix}bad"),
                                    client.hgetall(f"{prefix}ok"),
                                    client.zcard(f"{prefix}none"), return_exceptions=True)

    bad, ok, count = asyncio.run(calls())
    assert isinstance(bad, UnicodeDecodeError)
    assert ok == {"v": "fine"} and count == 0


def test_the_url_picks_database_and_password(tmp_path):
    """AUTH and SELECT from the URL, on connect; a wrong password fails the command as
    redis-py would (ResponseError), and the client is usable with the right one."""
    server = RedisServer(tmp_path, persist=False)
    server.start()
    try:
        redis.Redis(port=server.port).config_set("requirepass", "s3cret")
        admin = redis.Redis(port=server.port, password="s3cret", db=3, decode_responses=True)
        admin.hset("k", "db", "3")

        async def get(url):
            return await PipelinedRedis(url).hgetall("k")

        assert asyncio.run(get(f"redis://:s3cret@127.0.0.1:{server.port}/3")) == {"db": "3"}
        assert asyncio.run(get(f"redis://:s3cret@127.0.0.1:{server.port}/0")) == {}
        with pytest.raises(ResponseError):
            asyncio.run(get(f"redis://:wrong@127.0.0.1:{server.port}/3"))
    finally:
        server.stop()


def test_redis_restarting_fails_the_commands_in_flight_then_reconnects(tmp_path):
    """A Redis that goes away: the next command fails with redis-py's ConnectionError (no
    hang); once Redis is back, the same client connects again and answers."""
    server = RedisServer(tmp_path)
    server.start()
    redis.Redis(port=server.port, decode_responses=True).hset("job", "status", "running")
    client = PipelinedRedis(server.url)

    async def scenario():
        loop_answers = [await client.hgetall("job")]
        server.stop()
        with pytest.raises(RedisConnectionError):
            await client.hgetall("job")
        with pytest.raises(RedisConnectionError):  # nothing listens: connecting fails
            await client.hgetall("job")
        server.start()
        loop_answers.append(await client.hgetall("job"))
        return loop_answers

    try:
        assert asyncio.run(scenario()) == [{"status": "running"}] * 2
    finally:
        server.stop()


def test_a_silent_server_times_every_waiting_command_out():
    """A server that accepts and never answers: every command waiting on the connection
    fails with TimeoutError after the timeout, not one by one and not never."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    client = PipelinedRedis(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout=0.5)

    async def calls():
        start = time.monotonic()
        out = await asyncio.gather(*(client.hgetall(f"k{i}") for i in range(50)),
                                   return_exceptions=True)
        return out, time.monotonic() - start

    try:
        out, took = asyncio.run(calls())
        assert all(isinstance(x, RedisTimeoutError) for x in out)
        assert 0.5 <= took < 3
    finally:
        listener.close()


def test_other_schemes_get_redis_py():
    """TLS (rediss://) is redis-py's: this client speaks plain TCP and Unix sockets."""
    assert isinstance(polling_client("redis://127.0.0.1:6379/0", 8), PipelinedRedis)
    assert isinstance(polling_client("unix:///tmp/redis.sock?db=1", 8), PipelinedRedis)
    tls = polling_client("rediss://127.0.0.1:6380/0", 8)
    assert not isinstance(tls, PipelinedRedis)
    assert tls.connection_pool.max_connections == 8
