"""app.keyfile.ensure_keys_file racing itself: threads released at once by a barrier on
one missing file (as several gateway workers starting together): exactly one creates
it, the others get None, the file holds the creator's key whole, no temporary file is
left, and a file that exists is never overwritten — with hard links, and with the
exclusive-create fallback of a file system that has none."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from app.keyfile import ensure_keys_file

THREADS = 16


def _race(path: Path) -> list[str | None]:
    barrier = threading.Barrier(THREADS)
    results: list[str | None] = [None] * THREADS
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = ensure_keys_file(path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


@pytest.fixture(params=["link", "no-hard-links"])
def link_mode(request, monkeypatch) -> str:
    if request.param == "no-hard-links":
        def no_link(*args: object, **kwargs: object) -> None:
            raise OSError(1, "Operation not permitted")  # as on some network file systems

        monkeypatch.setattr(os, "link", no_link)
    return request.param


def test_racing_creators_make_one_file_with_one_key(tmp_path, link_mode):
    for round_ in range(5):  # a few rounds: each a fresh race on a missing file
        path = tmp_path / f"round-{round_}" / "api_keys.json"
        results = _race(path)
        created = [k for k in results if k is not None]
        assert len(created) == 1, (link_mode, results)
        assert json.loads(path.read_text()) == {created[0]: "default"}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_an_existing_file_is_never_overwritten(tmp_path, link_mode):
    path = tmp_path / "api_keys.json"
    path.write_text('{"mine": "ops"}\n')
    before = path.read_bytes()
    assert _race(path) == [None] * THREADS
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
