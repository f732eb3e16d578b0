"""The artifact store on a local folder and on another fsspec file system."""

from __future__ import annotations

import pytest

from core.artifacts import ArtifactStore


@pytest.mark.parametrize("remote", [False, True])
def test_write_read_and_local_copy(tmp_path, remote):
    root = "memory://isa-test" if remote else str(tmp_path / "store")
    store = ArtifactStore(root, cache_dir=tmp_path / "cache")
    with store.open_write("jobs/j1/subset.jsonl") as fh:
        fh.write(b'{"a": 1}\n')
    assert store.exists("jobs/j1/subset.jsonl") and store.size("jobs/j1/subset.jsonl") == 9
    with store.open_read("jobs/j1/subset.jsonl") as fh:
        assert fh.read() == b'{"a": 1}\n'
    assert store.local_path("jobs/j1/subset.jsonl").read_bytes() == b'{"a": 1}\n'
    store.delete_prefix("jobs/j1")
    assert not store.exists("jobs/j1/subset.jsonl")


def test_failed_write_leaves_nothing(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(RuntimeError), store.open_write("datasets/d1/data.jsonl") as fh:
        fh.write(b"half")
        raise RuntimeError("client went away")
    assert list((tmp_path / "datasets" / "d1").iterdir()) == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a b", ""])
def test_keys_from_outside_are_refused(tmp_path, key):
    with pytest.raises(ValueError):
        ArtifactStore(str(tmp_path)).open_read(key)


def test_a_local_artifact_is_private_to_the_service_whatever_its_umask(tmp_path):
    import os
    import stat

    store = ArtifactStore(str(tmp_path / "store"))
    old = os.umask(0o022)
    try:
        with store.open_write("datasets/ds_1/upload.jsonl") as fh:
            fh.write(b"{}\n")
    finally:
        os.umask(old)
    path = tmp_path / "store" / "datasets" / "ds_1" / "upload.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
