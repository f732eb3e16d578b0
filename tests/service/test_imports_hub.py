"""Hub imports (``hf://datasets/org/name`` with a config, split and revision) against a
loopback server that speaks the Hub's protocol as ``huggingface_hub`` uses it: the tree
listing (``/api/datasets/<repo>/tree/<revision>``) and file downloads
(``/datasets/<repo>/resolve/<revision>/<path>``, answered with a redirect to the blob, as
the Hub does). The service's own gateway and worker run against it; no internet."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.hub import config_folders, copy_hub, split_files
from core.settings import Settings
from isa.errors import ConfigError
from tests.conftest import ALPACA_SAMPLE, read_rows
from tests.isa.test_layouts import layout_rows
from tests.service.harness import RedisServer, running_service

TOKEN = "hf_server_token_for_private_sets"
STORAGE_SIG = "storage-signature-never-shown"


def _parquet(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def _lines(rows: list[dict], *, last_newline: bool = True) -> bytes:
    text = b"\n".join(json.dumps(r).encode() for r in rows)
    return text + b"\n" if last_newline else text


class FakeHub:
    """Two revisions of ``org/uf`` (UltraFeedback-binarized rows, the train split in two
    Parquet shards) and a public ``org/plain`` (one JSON Lines file a split, in two config
    folders); JSON Lines shards whose first lacks its last newline, plain
    (``org/shards``) and gzip'd (``org/gz-shards``), and a mix of the two
    (``org/mixed``); and repositories whose downloads redirect to another origin: ``away``
    (127.0.0.2, outside the allowed networks) and ``named`` (localhost, inside)."""

    def __init__(self) -> None:
        pairs = [r for r in read_rows(ALPACA_SAMPLE, 80) if r["chosen"] != r["rejected"]]
        uf = layout_rows("ultrafeedback_binarized", pairs[:60])
        self.counts = {"main": 50, "v1": 20}
        self.repos: dict[tuple[str, str], dict[str, bytes]] = {
            ("org/uf", "main"): {
                "README.md": b"---\nlicense: mit\n---\n",
                "data/train_prefs-00000-of-00002.parquet": _parquet(uf[:30]),
                "data/train_prefs-00001-of-00002.parquet": _parquet(uf[30:50]),
                "data/test_prefs-00000-of-00001.parquet": _parquet(uf[50:60]),
            },
            ("org/uf", "v1"): {"data/train_prefs-00000-of-00001.parquet": _parquet(uf[:20])},
            ("org/plain", "main"): {
                "sft/train.jsonl": b"".join(json.dumps(r).encode() + b"\n" for r in pairs[:15]),
                "prefs/train.jsonl": b"".join(json.dumps(r).encode() + b"\n"
                                              for r in pairs[15:40]),
            },
        }
        for repo, name, pack in (("org/shards", "jsonl", bytes),
                                 ("org/gz-shards", "jsonl.gz", lambda b: gzip.compress(b))):
            self.repos[(repo, "main")] = {
                f"data/train-00000-of-00002.{name}": pack(_lines(pairs[:10],
                                                                 last_newline=False)),
                f"data/train-00001-of-00002.{name}": pack(_lines(pairs[10:25]))}
        self.repos[("org/mixed", "main")] = {
            "data/train-00000-of-00002.jsonl": _lines(pairs[:10]),
            "data/train-00001-of-00002.jsonl.gz": gzip.compress(_lines(pairs[10:25]))}
        for repo in ("org/away", "org/named"):
            self.repos[(repo, "main")] = {"data/train.jsonl": _lines(pairs[:12])}
        #: where a repository's downloads redirect ({path}: the blob's; default: this
        #: server's /blobs/{path})
        self.redirect_to: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = unquote(urlsplit(self.path).path)
                hub.requests.append((path, self.headers.get("Authorization")))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "datasets"] and parts[4:5] == ["tree"]:
                    files = hub.repos.get(("/".join(parts[2:4]), parts[5]))
                    if files is None:
                        return self._answer(404, b'{"error": "Repository not found"}',
                                            {"X-Error-Code": "RepoNotFound"})
                    listing = [{"type": "file", "path": p, "size": len(b), "oid": f"{i:040x}"}
                               for i, (p, b) in enumerate(files.items())]
                    return self._answer(200, json.dumps(listing).encode(),
                                        {"Content-Type": "application/json"})
                if parts[:1] == ["datasets"] and parts[3:4] == ["resolve"]:
                    where = hub.redirect_to.get("/".join(parts[1:3]), "/blobs/{path}")
                    return self._answer(302, b"", {
                        "Location": where.format(path="/".join(parts[1:]))})
                if parts[:1] == ["blobs"]:
                    repo, rev, file = "/".join(parts[1:3]), parts[4], "/".join(parts[5:])
                    body = hub.repos.get((repo, rev), {}).get(file)
                    if body is not None:
                        return self._answer(200, body, {})
                self._answer(404, b"not found", {})

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        # storage answers signed URLs: the refused hop's query must not reach the error
        self.redirect_to = {
            "org/away": f"http://127.0.0.2:{port}/blobs/{{path}}?X-Amz-Signature={STORAGE_SIG}",
            "org/named": f"http://localhost:{port}/blobs/{{path}}"}
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    server = FakeHub()
    yield server
    server.server.shutdown()


def test_the_split_files_follow_the_hubs_naming():
    files = ["README.md", "data/train_prefs-00000-of-00002.parquet",
             "data/train_prefs-00001-of-00002.parquet", "data/test_prefs-00000-of-00001.parquet",
             "default/train/0000.parquet", "cfg/train-00000.jsonl", "cfg/test.jsonl",
             "train.jsonl"]
    assert split_files(files, config=None, split="train_prefs") == [
        "data/train_prefs-00000-of-00002.parquet", "data/train_prefs-00001-of-00002.parquet"]
    assert split_files(files, config="cfg", split="train") == ["cfg/train-00000.jsonl"]
    assert split_files(files, config="default", split="train") == ["default/train/0000.parquet"]
    assert split_files(files, config=None, split="validation") == []


def test_offline_the_import_fails_naming_the_data_set(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError) as exc:
        copy_hub("hf://datasets/org/uf", {"split": "train_prefs"}, Settings(), lambda b: None,
                 1 << 20)
    assert exc.value.code == "hub_unavailable"
    assert "org/uf" in exc.value.message and "train_prefs" in exc.value.message
    assert "HF_HUB_OFFLINE" in exc.value.message


def test_an_unreachable_hub_is_named_too(monkeypatch):
    from huggingface_hub import constants

    from tests.service.harness import free_port

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("time.sleep", lambda s: None)  # the Hub client's 5 retries, at once
    settings = Settings(hub_endpoint=f"http://127.0.0.1:{free_port()}")  # nothing listens
    with pytest.raises(ConfigError) as exc:
        copy_hub("hf://datasets/org/uf", None, settings, lambda b: None, 1 << 20)
    assert exc.value.code == "hub_unavailable" and "org/uf" in exc.value.message


@pytest.fixture(scope="module")
def hub_service(hub, tmp_path_factory) -> Iterator:
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server on PATH (.ci/run starts the machine's)")
    redis_server = RedisServer(tmp_path_factory.mktemp("hub-redis"), persist=False)
    redis_server.start()
    env = {"HF_HUB_OFFLINE": "0", "ISA_HUB_ENDPOINT": hub.url, "ISA_HUB_TOKEN": TOKEN,
           "ISA_IMPORT_ALLOWED_URLS": json.dumps(["hf://datasets/org/"]),
           # the fake Hub's own address only (localhost's two): a redirect elsewhere on
           # loopback is as refused as a private address would be
           "ISA_OUTBOUND_ALLOWED_NETWORKS": json.dumps(["127.0.0.1/32", "::1/128"])}
    try:
        with running_service(redis_server.url, tmp_path_factory.mktemp("hub-svc"),
                             concurrency=1, extra_env=env) as svc:
            yield svc
    finally:
        assert redis_server.proc is not None
        redis_server.proc.terminate()
        redis_server.proc.wait(10)


def _import(svc, c, body: dict) -> dict:
    r = c.post("/v1/datasets/import", json=body)
    assert r.status_code == 201, r.text
    return svc.wait_dataset(c, r.json()["id"], timeout=120)


def test_a_hub_split_imports_by_config_split_and_revision(hub_service, hub):
    svc, c = hub_service, hub_service.client()
    ds = _import(svc, c, {"url": "hf://datasets/org/uf", "hub": {"split": "train_prefs"}})
    assert ds["status"] == "ready", ds
    # two Parquet shards joined into one data set, read in its own layout
    assert (ds["shape"], ds["rows_valid"], ds["format"]) == ("ultrafeedback_binarized",
                                                             hub.counts["main"], "parquet")
    assert ds["hub"] == {"config": None, "split": "train_prefs", "revision": None}
    assert ds["source_url"] == "hf://datasets/org/uf"
    # the server's token reached the Hub; the caller never sent one
    assert all(auth == f"Bearer {TOKEN}" for path, auth in hub.requests
               if not path.startswith("/blobs"))
    old = _import(svc, c, {"url": "hf://datasets/org/uf",
                           "hub": {"split": "train_prefs", "revision": "v1"}})
    assert old["status"] == "ready" and old["rows_valid"] == hub.counts["v1"], old
    prefs = _import(svc, c, {"url": "hf://datasets/org/plain",
                             "hub": {"config": "prefs", "split": "train"}})
    assert (prefs["status"], prefs["shape"], prefs["rows_valid"]) == ("ready", "standard", 25)


def test_missing_repositories_and_splits_are_named(hub_service):
    svc, c = hub_service, hub_service.client()
    ds = _import(svc, c, {"url": "hf://datasets/org/nothing"})
    assert ds["status"] == "invalid" and ds["error"]["code"] == "hub_not_found", ds
    assert "org/nothing" in ds["error"]["message"]
    ds = _import(svc, c, {"url": "hf://datasets/org/uf", "hub": {"split": "validation"}})
    assert ds["status"] == "invalid" and ds["error"]["code"] == "hub_not_found", ds
    assert "train_prefs-00000-of-00002.parquet" in ds["error"]["message"]  # what there is
    # refused at the door: not a Hub data set id, outside the allowed prefix, a bad revision
    for body in ({"url": "hf://datasets/org/../other"}, {"url": "hf://datasets/elsewhere/x"},
                 {"url": "hf://datasets/org/uf", "hub": {"revision": "../../x"}}):
        r = c.post("/v1/datasets/import", json=body)
        assert r.status_code == 422, (body, r.text)


def test_config_folders_are_the_files_folders_less_the_split_folder():
    assert config_folders(["sft/train.jsonl", "prefs/train.jsonl"], "train") == ["prefs", "sft"]
    assert config_folders(["data/train-0.parquet", "data/train-1.parquet"], "train") == ["data"]
    assert config_folders(["default/train/0.parquet", "train/1.parquet", "train.jsonl"],
                          "train") == ["", "default"]


def test_json_lines_shards_join_line_by_line(hub_service, hub):
    """A shard without its last newline does not merge its last row with the next
    shard's first: plain shards get a newline between them, gzip'd ones a gzip member
    holding one (the joined file is one multi-member gzip)."""
    svc, c = hub_service, hub_service.client()
    for repo in ("org/shards", "org/gz-shards"):
        ds = _import(svc, c, {"url": f"hf://datasets/{repo}", "hub": {"split": "train"}})
        assert (ds["status"], ds["rows_valid"], ds["rows_read"]) == ("ready", 25, 25), ds
        assert ds["format"] == "jsonl", ds


def test_shards_of_mixed_compression_or_configs_are_refused(hub_service):
    svc, c = hub_service, hub_service.client()
    mixed = _import(svc, c, {"url": "hf://datasets/org/mixed", "hub": {"split": "train"}})
    assert mixed["status"] == "invalid" and mixed["error"]["code"] == "hub_not_found", mixed
    assert "compression" in mixed["error"]["message"]
    # org/plain's split "train" is in two config folders: one must be named
    both = _import(svc, c, {"url": "hf://datasets/org/plain", "hub": {"split": "train"}})
    assert both["status"] == "invalid" and both["error"]["code"] == "hub_not_found", both
    message = both["error"]["message"]
    assert "['prefs', 'sft']" in message and "name one with hub.config" in message, message
    one = _import(svc, c, {"url": "hf://datasets/org/plain",
                           "hub": {"config": "sft", "split": "train"}})
    assert (one["status"], one["rows_valid"]) == ("ready", 15), one


def test_a_redirect_away_from_the_hub_passes_the_outbound_rule(hub_service, hub):
    """The Hub's redirect to its storage is followed when the storage's address is
    allowed (localhost: the fake Hub itself), refused (import_not_allowed) when it is not
    (127.0.0.2, a loopback address outside ISA_OUTBOUND_ALLOWED_NETWORKS) — before any
    connection to it."""
    svc, c = hub_service, hub_service.client()
    named = _import(svc, c, {"url": "hf://datasets/org/named", "hub": {"split": "train"}})
    assert (named["status"], named["rows_valid"]) == ("ready", 12), named
    away = _import(svc, c, {"url": "hf://datasets/org/away", "hub": {"split": "train"}})
    assert away["status"] == "invalid", away
    assert away["error"]["code"] == "import_not_allowed", away["error"]
    message = away["error"]["message"]
    assert "redirect" in message and "127.0.0.2" in message, message
    assert STORAGE_SIG not in str(away)
    assert not any(path.startswith("/blobs/org/away") for path, _ in hub.requests)
