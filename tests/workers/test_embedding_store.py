"""The embedding cache of the service: vectors in artifact-store shards, a compact index
in the real Redis."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import redis

from core.artifacts import ArtifactStore
from isa.embed.base import Encoder, MemoryEmbeddingCache, embed_texts, text_key
from tests.conftest import TEST_REDIS_URL
from workers.embedding_store import ShardedEmbeddingStore


@pytest.fixture()
def store(tmp_path):
    client = redis.Redis.from_url(TEST_REDIS_URL)
    scope = f"isa-emb-{uuid.uuid4().hex[:8]}:"
    artifacts = ArtifactStore(str(tmp_path / "artifacts"), cache_dir=tmp_path / "cache")
    yield ShardedEmbeddingStore(client, artifacts, scope, ttl_s=3600)
    for key in client.scan_iter(f"{scope}*"):
        client.delete(key)


def _vectors(n: int, seed: int = 0, dim: int = 384) -> dict[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {text_key(f"text {seed} {i}"): rng.normal(size=dim).astype(np.float32)
            for i in range(n)}


def test_round_trip_is_exact_and_per_encoder(store):
    items = _vectors(500)
    store.put_many("enc-a", items)
    keys = list(items)[::-1] + [text_key("never stored")]
    got = store.get_many("enc-a", keys)
    assert set(got) == set(items)
    for k, v in items.items():
        assert np.array_equal(got[k], v) and got[k].dtype == np.float32
    assert store.get_many("enc-b", keys) == {}  # another encoder's cache is another cache


def test_vectors_are_in_shards_and_only_a_small_index_in_redis(store):
    items = _vectors(2000)
    store.put_many("enc", items)
    shards = list((store.artifacts.cache_dir.parent / "artifacts" / "embeddings").rglob("*.npy"))
    assert len(shards) == 1 and np.load(shards[0]).shape == (2000, 384)
    index = list(store.r.scan_iter(f"{store.scope}*"))
    used = sum(store.r.memory_usage(k) for k in index)
    # a float32 vector is 1,536 bytes; the index entry of a text, even at this small scale
    # where most buckets hold one text, under an eighth of that (bench/embedding_store.py
    # measures ~40 bytes a text at a million)
    assert used / len(items) < 1536 / 8, used / len(items)


def test_overlap_stores_only_new_texts_and_finds_old_ones(store):
    texts = [f"sentence number {i}" for i in range(40)]
    calls: list[int] = []

    class CountingEncoder(Encoder):
        name = "counting"
        dim = 8

        def encode(self, batch, *, progress=None):  # noqa: ANN001, ANN202
            calls.append(len(batch))
            return np.stack([np.full(8, len(t), dtype=np.float32) for t in batch])

    enc = CountingEncoder()
    first, _ = embed_texts(texts[:30], enc, cache=store)
    second, stats = embed_texts(texts[20:], enc, cache=store)  # 10 old, 10 new
    assert calls == [30, 10] and (stats.cached, stats.embedded) == (10, 10)
    assert np.array_equal(first[20:], second[:10])
    again, stats = embed_texts(texts, enc, cache=store)
    assert calls == [30, 10] and again.shape == (40, 8) and stats.embedded == 0


def test_a_redelivered_chunk_rewrites_the_same_shard(store):
    items = _vectors(50, seed=3)
    store.put_many("enc", items)
    store.put_many("enc", dict(items))
    shards = list((store.artifacts.cache_dir.parent / "artifacts" / "embeddings").rglob("*"))
    assert len([p for p in shards if p.is_file()]) == 1


def test_a_lost_shard_is_a_miss_not_an_error(store):
    items = _vectors(20, seed=4)
    store.put_many("enc", items)
    for p in (store.artifacts.cache_dir.parent / "artifacts" / "embeddings").rglob("*.npy"):
        p.unlink()
    fresh = ShardedEmbeddingStore(store.r, store.artifacts, store.scope)
    assert fresh.get_many("enc", list(items)) == {}


def test_float16_shards_halve_the_bytes_and_keep_the_direction(store):
    half = ShardedEmbeddingStore(store.r, store.artifacts, store.scope + "h:", dtype="float16")
    items = _vectors(200, seed=5)
    half.put_many("enc", items)
    got = half.get_many("enc", list(items))
    cos = [float(got[k] @ v / np.linalg.norm(got[k]) / np.linalg.norm(v))
           for k, v in items.items()]
    assert min(cos) > 0.9999 and got[next(iter(items))].dtype == np.float32
    sizes = {p.stat().st_size for p in
             (store.artifacts.cache_dir.parent / "artifacts" / "embeddings").rglob("*.npy")}
    assert max(sizes) < 200 * 384 * 2 + 256


def test_matches_the_in_memory_cache(store):
    items = _vectors(300, seed=6)
    mem = MemoryEmbeddingCache()
    for cache in (mem, store):
        cache.put_many("e", dict(list(items.items())[:150]))
        cache.put_many("e", dict(list(items.items())[100:]))
    keys = list(items)
    a, b = mem.get_many("e", keys), store.get_many("e", keys)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in keys)


def test_sweep_deletes_only_old_shards_no_index_entry_names(store):
    """Index entries expire or are evicted; their shard files would stay for ever. The
    sweep deletes a shard once no entry names it, never one younger than its grace period
    (a shard is written before its entries), and leaves every named shard readable."""
    import os
    import time

    from workers.embedding_store import sweep_shards

    root = store.artifacts.cache_dir.parent / "artifacts" / "embeddings"
    kept, evicted = _vectors(50, seed=1), _vectors(50, seed=2)
    store.put_many("enc", kept)
    kept_shard = next(root.rglob("*.npy"))
    store.put_many("enc", evicted)
    (evicted_shard,) = set(root.rglob("*.npy")) - {kept_shard}
    for k in evicted:  # what an evicting Redis or the TTL does to the index
        store.r.hdel(store._bucket("enc", k), k[2:])
    sweep = lambda: sweep_shards(store.r, store.artifacts, store.scope,  # noqa: E731
                                 grace_s=3600)
    assert sweep() == {"shards": 2, "deleted": 0, "bytes_freed": 0}  # both still young
    hours_ago = time.time() - 2 * 3600
    for shard in (kept_shard, evicted_shard):
        os.utime(shard, (hours_ago, hours_ago))
    size = evicted_shard.stat().st_size
    assert sweep() == {"shards": 2, "deleted": 1, "bytes_freed": size}
    assert kept_shard.exists() and not evicted_shard.exists()
    got = store.get_many("enc", [*kept, *evicted])
    assert set(got) == set(kept)
    assert all(np.array_equal(got[k], v) for k, v in kept.items())
