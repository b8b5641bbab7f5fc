"""Blobs to push: content from a file on disk, from memory or from a ``BlobSource`` (another
registry's copy), with digest and size.

A file blob is never read whole into memory: it is hashed and sent in 1 MiB blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from client.errors import InputError

BLOCK = 1024 * 1024


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns)


# In-process memo of file digests, keyed by the file's identity and change times, so one
# file is read once per command even when a hash was started early (``prefetch_hash``).
_hashes: dict[tuple, Future] = {}
_hashes_lock = threading.Lock()


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """``(digest, size)`` of a file, read in blocks (once per process while unchanged)."""
    try:
        key = _file_key(path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with _hashes_lock:
        future = _hashes.get(key)
        mine = future is None
        if mine:
            future = _hashes[key] = Future()
    if not mine:
        digest, size = future.result()
        if on_bytes:
            on_bytes(size)
        return digest, size
    try:
        result = _cached_or_read(path, on_bytes)
    except BaseException as exc:
        with _hashes_lock:
            _hashes.pop(key, None)
        future.set_exception(exc)
        raise
    future.set_result(result)
    return result


def prefetch_hash(path: Path) -> None:
    """Start hashing ``path`` in the background; a later ``hash_file`` joins it. Used to
    overlap the hash with work that must precede it (reading the GGUF header)."""
    def run() -> None:
        with contextlib.suppress(Exception):  # the foreground call reports any error
            hash_file(path)

    threading.Thread(target=run, name="prefetch-hash", daemon=True).start()


def _cached_or_read(path: Path, on_bytes: Callable[[int], None] | None) -> tuple[str, int]:
    """From the persistent digest cache when the file is unchanged, else read and hash it
    (and remember the result; see ``filedigests``)."""
    from client import filedigests

    try:
        before = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    cached = filedigests.lookup(path, before)
    if cached is not None:
        if on_bytes:
            on_bytes(before.st_size)
        return cached, before.st_size
    started = time.time_ns()
    digest, size = _read_digest(path, on_bytes)
    with contextlib.suppress(OSError):
        filedigests.record(path, before, path.stat(), digest, started)
    return digest, size


def _read_digest(path: Path, on_bytes: Callable[[int], None] | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while block := f.read(4 * BLOCK):
                digest.update(block)
                size += len(block)
                if on_bytes:
                    on_bytes(len(block))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return "sha256:" + digest.hexdigest(), size


def canonical_json(obj) -> bytes:
    """Compact JSON with keys in the order given (manifests and configs are pushed as is)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class BlobSource(Protocol):
    """Where the bytes of a blob that is neither a file nor in memory come from (a
    registry's copy of a base model: ``bases.RegistryBlobs``)."""

    def read(self, blob: Blob, offset: int, length: int,
             on_bytes: Callable[[int], None] | None) -> Iterator[bytes]:
        """The bytes ``[offset, offset+length)`` of ``blob``, streamed."""


@dataclass
class Blob:
    """One blob of a manifest: a config or a layer. ``mounts`` names repositories of the
    registry pushed to that may already hold it (a mount from them is tried first)."""

    media_type: str
    digest: str
    size: int
    path: Path | None = None
    data: bytes | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    label: str = ""  # shown in progress bars
    source: BlobSource | None = None
    mounts: tuple[str, ...] = ()

    @classmethod
    def from_bytes(cls, media_type: str, data: bytes, label: str = "", **kw) -> Blob:
        return cls(media_type, sha256_digest(data), len(data), data=data, label=label, **kw)

    @classmethod
    def from_file(cls, media_type: str, path: Path, label: str = "",
                  on_bytes: Callable[[int], None] | None = None, **kw) -> Blob:
        digest, size = hash_file(path, on_bytes)
        return cls(media_type, digest, size, path=path, label=label or path.name, **kw)

    def descriptor(self) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    def body(self, offset: int = 0, length: int | None = None,
             on_bytes: Callable[[int], None] | None = None):
        """A request body for ``[offset, offset+length)``: a ``FileRegion`` for a file (sent
        with ``sendfile``), else an iterator of blocks."""
        if self.path is not None and self.data is None:
            from client.transport import FileRegion

            length = self.size - offset if length is None else length
            return FileRegion(self.path, offset, length, on_bytes)
        return self.chunks(offset, length, on_bytes)

    def chunks(self, offset: int = 0, length: int | None = None,
               on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes]:
        """The bytes ``[offset, offset+length)`` in blocks; fails if the file shrank."""
        length = self.size - offset if length is None else length
        if self.data is not None:
            piece = self.data[offset:offset + length]
            if on_bytes:
                on_bytes(len(piece))
            yield piece
            return
        if self.path is None and self.source is not None:
            yield from self.source.read(self, offset, length, on_bytes)
            return
        with open(self.path, "rb") as f:
            f.seek(offset)
            remaining = length
            while remaining:
                block = f.read(min(BLOCK, remaining))
                if not block:
                    raise InputError(f"{self.path} changed while it was being pushed")
                remaining -= len(block)
                if on_bytes:
                    on_bytes(len(block))
                yield block
