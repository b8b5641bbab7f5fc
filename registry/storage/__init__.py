"""Blob storage: one small interface, a filesystem and an S3 implementation.

Key layout, the same for every backend (relative to the store's root or bucket prefix)::

    blobs/<algorithm>/<first 2 hex>/<hex>      committed, immutable, content-addressed blobs
    quarantine/<algorithm>/<first 2 hex>/<hex> bytes ``assay scrub`` found corrupt, moved aside
    uploads/<session id>/...                   in-progress upload data (backend specific)
        filesystem: uploads/<session>/data     one file, written at explicit offsets
        s3:         uploads/<session>/<offset> one object per received chunk (20-digit offset)

A blob is stored once for the whole registry: which repository may read it is SQL's
business (``repository_blobs``), never a second copy. Upload data only becomes a blob
through ``commit_upload``, which moves it into place atomically (rename on a filesystem,
a completed multipart copy on S3): a half-written blob is never visible under
``blobs/``. Committing content that already exists discards the upload and keeps
the existing bytes.

Quarantined bytes are out of ``blobs/``: not served, not listed by ``iter_blobs``, and
a later commit of the same digest stores fresh bytes (that is how a re-push heals a
corrupt blob). Nothing in the registry reads or deletes ``quarantine/``; it is kept for
the operator to inspect.

Every backend raises only ``registry.errors.StorageError`` (or ``BlobUnknown`` /
``BlobUploadUnknown``); backend exceptions are translated at this boundary.
The shared test suite in ``tests/storage`` runs against every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from registry.digests import parse_digest
from registry.settings import Settings


def blob_key(digest: str) -> str:
    """The storage key of a committed blob (see the layout above)."""
    algorithm, hexdigest = parse_digest(digest)
    return f"blobs/{algorithm}/{hexdigest[:2]}/{hexdigest}"


def quarantine_key(digest: str) -> str:
    """Where ``BlobStore.quarantine`` moves a blob's bytes (see the layout above)."""
    return "quarantine/" + blob_key(digest).removeprefix("blobs/")


class UploadWriter(ABC):
    """Receives the bytes of one chunk of an upload, in order.

    Created by ``BlobStore.upload_writer(session, offset)``. ``write`` may be called any
    number of times; ``close`` makes the chunk durable and part of the upload; ``abort``
    discards it (the upload stays at ``offset``). Not thread-safe: one writer per chunk.
    """

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    def writelines(self, parts: list[bytes]) -> None:
        """Write several buffers in order (backends may do it without joining them)."""
        for part in parts:
            self.write(part)

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...


class BlobStore(ABC):
    """Content-addressed blob storage plus resumable upload sessions.

    All methods are blocking; the HTTP layer calls them from worker threads.
    """

    # ---- committed blobs -------------------------------------------------
    @abstractmethod
    def stat(self, digest: str) -> int | None:
        """Size in bytes of a committed blob, or None if it is not stored."""

    @abstractmethod
    def open(self, digest: str, offset: int = 0, length: int | None = None,
             chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the bytes ``[offset, offset+length)`` of a blob in chunks.

        Raises BlobUnknown if the blob is not stored.
        """

    @abstractmethod
    def delete(self, digest: str) -> None:
        """Remove a committed blob; removing a missing blob is not an error."""

    @abstractmethod
    def quarantine(self, digest: str) -> bool:
        """Move a committed blob's bytes from ``blobs/`` to ``quarantine/`` (replacing an
        earlier quarantined copy of the same digest).

        Afterwards the blob is not stored as far as every other method is concerned
        (``stat`` gives None, ``open`` raises BlobUnknown, ``commit_upload`` stores new
        bytes). Returns False, storing nothing, when the blob is not stored. The caller
        (``registry.maintenance.scrub``) holds the blob's row lock, so no commit races the move.
        """

    @abstractmethod
    def iter_blobs(self) -> Iterator[tuple[str, float]]:
        """Yield ``(digest, modified epoch seconds)`` for every committed blob (for GC)."""

    def redirect_url(self, digest: str, expires_in: int = 600) -> str | None:
        """A URL clients may fetch the blob from directly, or None to serve it ourselves."""
        return None

    @abstractmethod
    def ping(self) -> None:
        """Check the store is reachable and usable (``GET /readyz``); raise StorageError
        with a one-line reason if not. Cheap: no blob is read or written."""

    # ---- uploads ---------------------------------------------------------
    @abstractmethod
    def begin_upload(self, session: str) -> None:
        """Prepare storage for a new upload session (idempotent)."""

    @abstractmethod
    def upload_writer(self, session: str, offset: int) -> UploadWriter:
        """A writer for the chunk starting at ``offset``.

        Anything stored for this session at or beyond ``offset`` (left by a chunk whose
        request failed half-way) is discarded first, so a retried chunk is safe.
        """

    @abstractmethod
    def read_upload(self, session: str, size: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the first ``size`` bytes received by an upload (to hash them)."""

    def seal_upload(self, session: str, size: int) -> None:  # noqa: B027 - optional hook
        """Make the first ``size`` bytes of an upload durable before it is committed.

        Called outside any database transaction (it may wait for the disk), so that
        ``commit_upload``, which runs under the blob's row lock, stays short.
        Backends whose writes are durable when acknowledged (S3) need not override it.
        """

    @abstractmethod
    def commit_upload(self, session: str, size: int, digest: str) -> bool:
        """Move the first ``size`` bytes of an upload into place as blob ``digest``.

        The caller has verified the digest. Atomic: the blob is either fully visible or
        not at all. Returns True if bytes were stored, False if the blob already existed
        (the upload data is discarded either way and the session storage removed).
        """

    @abstractmethod
    def cancel_upload(self, session: str) -> None:
        """Discard an upload's data (idempotent)."""

    @abstractmethod
    def iter_uploads(self) -> Iterator[tuple[str, float]]:
        """Yield ``(session, modified epoch seconds)`` of every upload with stored data."""


def open_store(settings: Settings) -> BlobStore:
    """Build the configured backend."""
    if settings.storage == "s3":
        from registry.storage.s3 import S3BlobStore

        return S3BlobStore.from_settings(settings)
    from registry.storage.filesystem import FilesystemBlobStore

    return FilesystemBlobStore(settings.blob_root, fsync=settings.fsync)
