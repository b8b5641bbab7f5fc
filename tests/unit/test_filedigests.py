"""The client's persistent cache of file digests (``client.filedigests``)."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from client import blobs, filedigests


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ASSAY_NO_DIGEST_CACHE", raising=False)
    blobs._hashes.clear()  # the in-process memo would answer before the persistent cache
    yield tmp_path / "cache"
    blobs._hashes.clear()


def later() -> int:
    """A hashing time safely past the racy window of a file written just now."""
    return time.time_ns() + int(10e9)


def test_an_unchanged_file_is_found_and_an_edit_invalidates(tmp_path):
    path = tmp_path / "w.gguf"
    path.write_bytes(b"a" * 1000)
    st = path.stat()
    filedigests.record(path, st, path.stat(), "sha256:" + "1" * 64, later())
    assert filedigests.lookup(path, path.stat()) == "sha256:" + "1" * 64
    with open(path, "r+b") as f:  # same size, new content: ctime moves
        f.write(b"b")
    assert filedigests.lookup(path, path.stat()) is None


def test_racy_or_changing_files_are_not_recorded(tmp_path):
    path = tmp_path / "w.gguf"
    path.write_bytes(b"a" * 1000)
    st = path.stat()
    filedigests.record(path, st, st, "sha256:" + "2" * 64, time.time_ns())  # just written
    assert filedigests.lookup(path, st) is None
    path.write_bytes(b"c" * 1001)
    filedigests.record(path, st, path.stat(), "sha256:" + "3" * 64, later())  # changed
    assert filedigests.lookup(path, path.stat()) is None


def test_hash_file_uses_the_cache_and_can_be_told_not_to(tmp_path, monkeypatch):
    path = tmp_path / "w.gguf"
    data = os.urandom(5000)
    path.write_bytes(data)
    real = "sha256:" + hashlib.sha256(data).hexdigest()
    assert blobs.hash_file(path) == (real, 5000)  # racy: hashed, not recorded
    assert filedigests.lookup(path, path.stat()) is None
    # Recorded as if hashed long after the last write: the next push reads nothing.
    marker = "sha256:" + "4" * 64
    filedigests.record(path, path.stat(), path.stat(), marker, later())
    blobs._hashes.clear()
    seen = []
    assert blobs.hash_file(path, seen.append) == (marker, 5000) and sum(seen) == 5000
    blobs._hashes.clear()
    monkeypatch.setenv("ASSAY_NO_DIGEST_CACHE", "1")
    assert blobs.hash_file(path) == (real, 5000)


def test_an_unreadable_cache_is_empty(cache, tmp_path):
    cache.mkdir(parents=True)
    (cache / "file-digests.json").write_text("{not json")
    path = tmp_path / "w.gguf"
    path.write_bytes(b"x")
    assert filedigests.lookup(path, path.stat()) is None
    filedigests.record(path, path.stat(), path.stat(), "sha256:" + "5" * 64, later())
    assert filedigests.lookup(path, path.stat()) == "sha256:" + "5" * 64
