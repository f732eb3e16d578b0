"""Redis memory of the embedding cache per million cached texts: the sharded store
(vectors in artifact-store shards, an index in Redis) against the former layout (one
Redis value of float32 bytes per text), measured in one run on a redis-server of its own.

    .venv/bin/python bench/embedding_store.py [--texts 1000000] [--dim 384]

The index does not depend on the vector width; ``--dim`` only sizes the shard files.
Writes bench/results/embedding_store.md.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.artifacts import ArtifactStore  # noqa: E402
from workers.embedding_store import ShardedEmbeddingStore  # noqa: E402

OUT = ROOT / "bench" / "results"


def _redis() -> tuple[subprocess.Popen, redis.Redis]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port",
                             str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc, client
        except redis.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=1_000_000)
    ap.add_argument("--legacy-texts", type=int, default=100_000,
                    help="texts for the former layout (its memory is linear in them)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--chunk", type=int, default=2048, help="texts per shard (one task)")
    args = ap.parse_args()
    proc, client = _redis()
    rng = np.random.default_rng(0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = ShardedEmbeddingStore(client, ArtifactStore(f"{tmp}/a"), "bench:",
                                          ttl_s=30 * 86400, dtype="float16")
            base = _used(client)
            t0 = time.perf_counter()
            keys: list[bytes] = []
            for start in range(0, args.texts, args.chunk):
                n = min(args.chunk, args.texts - start)
                ks = [rng.bytes(16) for _ in range(n)]
                store.put_many("enc", dict(zip(ks, rng.normal(size=(n, args.dim))
                                               .astype(np.float32), strict=True)))
                keys += ks
            put_s = time.perf_counter() - t0
            sharded = _used(client) - base
            probe = [keys[i] for i in rng.choice(len(keys), 100_000, replace=False)]
            t0 = time.perf_counter()
            assert len(store.get_many("enc", probe)) == len(probe)
            get_s = time.perf_counter() - t0
            shard_bytes = sum(p.stat().st_size for p in Path(tmp).rglob("*.npy"))
        client.flushall()
        base = _used(client)
        pipe = client.pipeline(transaction=False)
        blob = rng.normal(size=args.dim).astype(np.float32).tobytes()
        for i in range(args.legacy_texts):
            pipe.set(f"isa:emb:enc:{rng.bytes(16).hex()}", blob, ex=30 * 86400)
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        legacy = _used(client) - base
    finally:
        proc.terminate()
        proc.wait()
    per_m_new = sharded / args.texts * 1e6
    per_m_old = legacy / args.legacy_texts * 1e6
    lines = [
        "# Embedding cache: Redis memory per million cached texts (bench/embedding_store.py)",
        "",
        f"{args.texts:,} texts in shards of {args.chunk} (float16, dim {args.dim}); the former "
        f"layout measured on {args.legacy_texts:,} texts (float32 values, linear in n).",
        "",
        "| layout | Redis bytes / text | Redis MB per million texts | artifact bytes / text |",
        "|---|---|---|---|",
        f"| sharded store (index only) | {sharded / args.texts:.1f} | {per_m_new / 1e6:.1f} | "
        f"{shard_bytes / args.texts:.0f} |",
        f"| former: a Redis value per text | {legacy / args.legacy_texts:.1f} | "
        f"{per_m_old / 1e6:.1f} | 0 |",
        "",
        f"Ratio: the sharded store needs **{per_m_old / per_m_new:.0f}x less Redis memory**. "
        f"Writing {args.texts:,} texts took {put_s:.1f} s; looking up 100,000 random ones "
        f"(index + memory-mapped shards) {get_s:.2f} s ({1e5 / get_s:,.0f} texts/s).",
        "",
        "Regenerate: `.venv/bin/python bench/embedding_store.py`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (OUT / "embedding_store.md").write_text(text)


if __name__ == "__main__":
    main()
