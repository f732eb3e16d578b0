"""Data sets imported from the Hugging Face Hub: ``hf://datasets/<org>/<name>`` with a
config, a split and a revision (``HubSelection``).

The Hub lists a revision's files through ``huggingface_hub`` (its offline mode, its
token handling and its pagination); the split's data files are chosen by the Hub's own
naming (``<config>/<split>-00000-of-00002.parquet``, ``data/<split>.jsonl``, a ``<split>/``
folder) and streamed into the artifact store under the import's size limit. Several
Parquet shards become one Parquet file (row group by row group), several JSON Lines
shards one JSON Lines file (a newline put between two shards where the first lacks its
last one). Gzip'd JSON Lines shards are a kind of their own: several of them are joined
as one multi-member gzip file (each shard's bytes as they are, a one-line gzip member
between two where the first's text lacks its last newline); plain and gzip'd shards, or
any two formats, are never mixed (``hub_not_found``), nor are several CSV or JSON-array
files. Without ``config``, a split whose files lie in several config folders is refused
(``hub_not_found`` naming them): one has to be named. Offline (``HF_HUB_OFFLINE=1``) or
unreachable, the import fails with ``hub_unavailable`` naming the data set; no such data
set, revision or split: ``hub_not_found``.

The Hub answers a file with a redirect to its storage. Redirects are followed, but every
hop that leaves the origin of ``Settings.hub_endpoint`` must pass the webhooks' outbound
rule (public addresses, or ``outbound_allowed_networks``), else ``import_not_allowed``.
"""

from __future__ import annotations

import gzip
import re
import tempfile
import zlib
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
    if config is None and len(configs := config_folders(chosen, split)) > 1:
        raise ConfigError(f"the Hub data set {named} has that split in several configs "
                          f"{configs[:10]}: name one with hub.config",
                          code="hub_not_found", field="hub", configs=configs[:10])
    kinds = {_kind(f) for f in chosen}
    if len(kinds) > 1 or (len(chosen) > 1 and {k.removesuffix("+gzip") for k in kinds}
                          & {"csv", "json"}):
        raise ConfigError(f"the split's files {chosen[:10]} cannot be joined into one data "
                          "set (mixed formats or compression, or several CSV or JSON-array "
                          "files)", code="hub_not_found", field="hub")
    headers = api._build_hf_headers()  # the token, as the Hub client sends it
    links = [hf_hub_url(repo, f, repo_type="dataset", revision=revision,
                        endpoint=settings.hub_endpoint) for f in chosen]
    # the Hub answers a file with a redirect to its storage: followed, each hop away from
    # the Hub checked as webhooks are (httpx runs request hooks on every hop)
    with httpx.Client(follow_redirects=True, timeout=60, headers=headers,
                      event_hooks={"request": [_outbound_check(settings)]}) as client:
        if kinds == {"parquet"} and len(links) > 1:
            _join_parquet(client, links, take, max_bytes)
        elif kinds <= {"jsonl", "jsonl+gzip"} and len(links) > 1:
            _join_lines(client, links, take, gzipped=kinds == {"jsonl+gzip"},
                        max_inflated=max(max_bytes, 64 << 20) * settings.max_decompression_ratio)
        else:
            _stream(client, links[0], take)


def config_folders(chosen: list[str], split: str) -> list[str]:
    """The config folders ``chosen`` lie in (a file's folder, less a trailing folder named
    after the split; "" for the top level), sorted."""
    folders = set()
    for f in chosen:
        parts = PurePosixPath(f).parts[:-1]
        if parts and parts[-1] == split:
            parts = parts[:-1]
        folders.add("/".join(parts))
    return sorted(folders)


def _outbound_check(settings: Settings) -> Callable[[Any], None]:
    """An httpx request hook: a request to another origin than the Hub endpoint's (a
    redirect to storage) must pass ``check_callback_url`` with the server's
    ``outbound_allowed_networks``; else ``import_not_allowed`` (no query shown)."""
    from urllib.parse import urlsplit

    from core.urls import without_query
    from core.webhooks import check_callback_url

    def origin(scheme: str, host: str | None, port: int | None) -> tuple[str, str, int]:
        return scheme, (host or "").lower(), port or (443 if scheme == "https" else 80)

    home = urlsplit(settings.hub_endpoint)
    hub = origin(home.scheme, home.hostname, home.port)

    def check(request: Any) -> None:
        url = request.url
        if origin(url.scheme, url.host, url.port) == hub:
            return
        shown = without_query(str(url))
        try:
            check_callback_url(shown, settings.outbound_allowed_networks, field="url",
                               code="import_not_allowed")
        except ConfigError as exc:
            raise ConfigError(f"the Hub's redirect was not followed: {exc.message}",
                              code="import_not_allowed", field="url") from None

    return check


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
    """``parquet``, ``csv``, ``json`` or ``jsonl``; ``+gzip`` when gzip'd (its own kind:
    plain and gzip'd bytes never meet in one file)."""
    lower = path.lower()
    name = lower.removesuffix(".gz")
    kind = "parquet" if name.endswith(".parquet") else "csv" if name.endswith(".csv") else \
        "json" if name.endswith(".json") else "jsonl"
    return kind + ("+gzip" if lower.endswith(".gz") else "")


class _GzipTail:
    """The last byte of the text inside a gzip stream fed to it in pieces (every member;
    the text itself is dropped as it inflates): whether a shard ends with a newline."""

    def __init__(self, link: str, max_inflated: float) -> None:
        self.link, self.max_inflated, self.inflated = link, max_inflated, 0
        self.last, self._z = b"", zlib.decompressobj(31)

    def feed(self, data: bytes) -> None:
        try:
            while data:
                out = self._z.decompress(data, _CHUNK)
                self.inflated += len(out)
                if out:
                    self.last = out[-1:]
                if self.inflated > self.max_inflated:
                    raise ConfigError(f"the gzip'd shard {self.link} inflates past "
                                      f"{self.max_inflated:,.0f} bytes",
                                      code="decompression_limit", field="hub")
                if self._z.eof:  # another member may follow
                    data = self._z.unused_data
                    self._z = zlib.decompressobj(31)
                else:
                    data = self._z.unconsumed_tail
        except zlib.error as exc:
            raise ConfigError(f"the shard {self.link} is not valid gzip ({exc})",
                              code="import_failed", field="hub") from None


def _join_lines(client: Any, links: list[str], take: Callable[[bytes], None], *,
                gzipped: bool, max_inflated: float) -> None:
    """Several JSON Lines shards (all plain, or all gzip'd) as one file: each shard's bytes
    as they are, and a newline between two where the text so far lacks its last one (in
    a gzip'd join, a gzip member holding it: gzip readers read the members as one)."""
    last = b"\n"  # the last byte of the text joined so far (nothing yet: no newline due)
    newline = gzip.compress(b"\n", mtime=0) if gzipped else b"\n"
    for link in links:
        if last != b"\n":
            take(newline)
            last = b"\n"
        tail = _GzipTail(link, max_inflated) if gzipped else None

        def counted(block: bytes, tail: _GzipTail | None = tail) -> None:
            nonlocal last
            take(block)
            if tail is not None:
                tail.feed(block)
                last = tail.last or last
            elif block:
                last = block[-1:]

        _stream(client, link, counted)


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

    from core.urls import ImportTooLarge

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
