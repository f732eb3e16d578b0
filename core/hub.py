"""Data sets imported from the Hugging Face Hub: ``hf://datasets/<org>/<name>`` with a
config, a split and a revision (``HubSelection``).

The Hub lists a revision's files through ``huggingface_hub`` (its offline mode, its
token handling and its pagination); the split's data files are chosen by the Hub's own
naming (``<config>/<split>-00000-of-00002.parquet``, ``data/<split>.jsonl``, a ``<split>/``
folder) and streamed into the artifact store under the import's size limit. Several
Parquet shards become one Parquet file (row group by row group), several JSON Lines
shards one JSON Lines file. Offline (``HF_HUB_OFFLINE=1``) or unreachable, the import
fails with ``hub_unavailable`` naming the data set; no such data set, revision or split:
``hub_not_found``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from core.settings import Settings
from isa.errors import ConfigError

#: ``hf://datasets/<org>/<name>``: the Hub's own repository id rules (letters, digits,
#: ``-``, ``_``, ``.``; no ``..``)
HUB_URL = re.compile(r"^hf://datasets/([A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})/?$")
_DATA_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz", ".csv",
                  ".csv.gz")
_CHUNK = 1 << 20


def hub_repo(url: str) -> str:
    """The repository id of a Hub data set URL, or ``import_not_allowed``."""
    m = HUB_URL.match(url)
    if m is None or ".." in m.group(1):
        raise ConfigError(f"url {url!r} is not a Hub data set: write hf://datasets/<org>/<name> "
                          "(config, split and revision go in 'hub')",
                          code="import_not_allowed", field="url")
    return m.group(1)


def split_files(files: list[str], *, config: str | None, split: str) -> list[str]:
    """The data files of ``config``'s ``split`` among a revision's files, in name order."""
    data = [f for f in files if f.lower().endswith(_DATA_SUFFIXES)]
    if config is not None:
        data = [f for f in data if config in PurePosixPath(f).parts[:-1]]

    def of_split(path: str) -> bool:
        p = PurePosixPath(path)
        name = p.name.lower()
        stem = name.split(".", 1)[0]
        return split in p.parts[:-1] or stem == split or name.startswith(f"{split}-")

    return sorted(f for f in data if of_split(f))


def copy_hub(url: str, hub: dict[str, Any] | None, settings: Settings,
             take: Callable[[bytes], None], max_bytes: int) -> None:
    """Stream the chosen split of the Hub data set at ``url`` into ``take`` (which counts
    the bytes it is given against the import's limit; shards fetched to disk to be
    joined count against ``max_bytes`` too)."""
    import httpx
    from huggingface_hub import HfApi, constants, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    repo = hub_repo(url)
    hub = hub or {}
    config, split = hub.get("config"), hub.get("split") or "train"
    revision = hub.get("revision") or "main"
    named = f"{repo} (split {split!r}{f', config {config!r}' if config else ''}, " \
            f"revision {revision!r})"
    if constants.is_offline_mode():
        raise _unavailable(named, "this worker runs with HF_HUB_OFFLINE=1")
    api = HfApi(endpoint=settings.hub_endpoint, token=settings.hub_token or False)
    try:
        files = api.list_repo_files(repo, repo_type="dataset", revision=revision)
    except OfflineModeIsEnabled as exc:
        raise _unavailable(named, "this worker runs with HF_HUB_OFFLINE=1") from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403, 404):
            raise ConfigError(f"the Hub has no data set {named} this server may read "
                              f"(HTTP {status})", code="hub_not_found", field="url") from None
        raise _unavailable(named, f"HTTP {status}") from None
    except _transport_errors() as exc:
        raise _unavailable(named, type(exc).__name__) from None
    chosen = split_files(files, config=config, split=split)
    if not chosen:
        raise ConfigError(f"the Hub data set {named} has no data files for that split; its "
                          f"data files: {[f for f in files if f.endswith(_DATA_SUFFIXES)][:20]}",
                          code="hub_not_found", field="hub")
    kinds = {_kind(f) for f in chosen}
    if len(kinds) > 1 or (len(chosen) > 1 and kinds & {"csv", "json"}):
        raise ConfigError(f"the split's files {chosen[:10]} cannot be joined into one data "
                          "set (mixed formats, or several CSV or JSON-array files)",
                          code="hub_not_found", field="hub")
    headers = api._build_hf_headers()  # the token, as the Hub client sends it
    links = [hf_hub_url(repo, f, repo_type="dataset", revision=revision,
                        endpoint=settings.hub_endpoint) for f in chosen]
    # the Hub answers a file with a redirect to its storage: followed, from the Hub only
    with httpx.Client(follow_redirects=True, timeout=60, headers=headers) as client:
        if kinds == {"parquet"} and len(links) > 1:
            _join_parquet(client, links, take, max_bytes)
        else:
            for link in links:
                _stream(client, link, take)


def _transport_errors() -> tuple[type[Exception], ...]:
    """A refused or dropped connection as each HTTP stack says it: httpx's, and httpx2's
    (the fork ``huggingface_hub`` 2 lists with, after its own retries)."""
    import httpx

    errors: list[type[Exception]] = [httpx.TransportError, OSError]
    try:
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:
        pass
    return tuple(errors)


def _kind(path: str) -> str:
    name = path.lower().removesuffix(".gz")
    return "parquet" if name.endswith(".parquet") else "csv" if name.endswith(".csv") else \
        "json" if name.endswith(".json") else "jsonl"


def _stream(client: Any, link: str, take: Callable[[bytes], None]) -> None:
    with client.stream("GET", link) as r:
        if r.status_code != 200:
            raise ConfigError(f"GET {link} answered {r.status_code}", code="import_failed")
        for block in r.iter_bytes(_CHUNK):
            take(block)


def _join_parquet(client: Any, links: list[str], take: Callable[[bytes], None],
                  max_bytes: int) -> None:
    """Several Parquet shards as one file: each shard is fetched to a temporary file
    (Parquet needs its footer first), its row groups appended to one writer."""
    import pyarrow.parquet as pq

    from core.imports import ImportTooLarge

    class _Out:  # the writer's file: bytes go to ``take`` (which counts the limit)
        closed = False
        written = 0

        def write(self, b: bytes) -> int:
            take(bytes(b))
            self.written += len(b)
            return len(b)

        def tell(self) -> int:
            return self.written

        def flush(self) -> None:
            pass

    fetched = 0

    def to_disk(shard: Any) -> Callable[[bytes], None]:
        def write(block: bytes) -> None:
            nonlocal fetched
            fetched += len(block)
            if fetched > max_bytes:
                raise ImportTooLarge(max_bytes)
            shard.write(block)
        return write

    writer = None
    for link in links:
        with tempfile.TemporaryFile() as shard:
            _stream(client, link, to_disk(shard))
            shard.seek(0)
            pf = pq.ParquetFile(shard)
            for i in range(pf.num_row_groups):
                group = pf.read_row_group(i)
                if writer is None:
                    writer = pq.ParquetWriter(_Out(), group.schema)
                writer.write_table(group.cast(writer.schema))
    if writer is not None:
        writer.close()


def _unavailable(named: str, why: str) -> ConfigError:
    return ConfigError(f"the Hugging Face Hub cannot be reached for {named} ({why}); "
                       "upload the file instead, or import it from object storage",
                       code="hub_unavailable", field="url")
