"""Reading, mounting and unlinking committed blobs."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import bindparam, delete, select

from registry.db.tables import blobs, repositories, repository_blobs, utcnow
from registry.digests import check_name, parse_digest
from registry.errors import BlobUnknown, DigestInvalid, NameInvalid
from registry.services import audit, quotas
from registry.services.common import Service, ensure_repo, require_repo, touch_blobs

_BLOB_SIZE = (
    select(blobs.c.size)
    .select_from(repository_blobs.join(blobs, blobs.c.digest == repository_blobs.c.digest)
                 .join(repositories, repositories.c.id == repository_blobs.c.repository_id))
    .where(repositories.c.name == bindparam("name"), repository_blobs.c.digest == bindparam("d"),
           # A quarantined blob (``assay scrub``) is unknown until pushed again: not
           # served, and not mountable, so clients upload it and heal it.
           blobs.c.quarantined_at.is_(None))
)


class BlobService(Service):
    def size(self, name: str, digest: str) -> int:
        """Size of a blob readable from repository ``name``; BlobUnknown otherwise."""
        parse_digest(digest)
        with self.db.read() as conn:
            size = conn.execute(_BLOB_SIZE, {"name": name, "d": digest}).scalar()
        if size is None:
            with self.db.read() as conn:  # only on a miss: say why when it is quarantined
                quarantined = conn.execute(select(blobs.c.quarantined_at).where(
                    blobs.c.digest == digest)).scalar()
            if quarantined is not None:
                raise BlobUnknown(f"blob {digest} failed its integrity check and is "
                                  "quarantined; push it again to restore it",
                                  {"digest": digest})
            raise BlobUnknown(f"blob {digest} is not in repository {name!r}", {"digest": digest})
        return size

    def open(self, digest: str, offset: int, length: int) -> Iterator[bytes]:
        return self.store.open(digest, offset, length, self.settings.read_chunk_bytes)

    def redirect_url(self, digest: str) -> str | None:
        return self.store.redirect_url(digest)

    def mount(self, name: str, digest: str, source: str | None) -> bool:
        """Make blob ``digest`` readable from ``name`` without copying it.

        The blob must be readable from ``source`` or, without one, already from ``name``
        (then this only refreshes the link). Never any stored blob: with access control
        on that would let a pusher link, and so read, blobs of namespaces it cannot read.
        Returns False when it cannot be mounted (the caller starts an upload instead).
        A blob new to ``name``'s namespace must fit its storage quota: else
        QuotaExceeded (403 DENIED), rather than False, which would only send the client
        into an upload that its commit refuses (``registry.services.quotas``).
        """
        try:
            parse_digest(digest)
            check_name(source or name)
        except (DigestInvalid, NameInvalid):
            return False  # "unable to mount": the caller opens a session instead
        with self.db.write() as conn:
            alive = touch_blobs(conn, [digest])  # locks the row: GC cannot race us
            if not alive:
                return False
            if conn.execute(_BLOB_SIZE, {"name": source or name, "d": digest}).first() is None:
                return False
            quotas.check(conn, name, digest, alive[digest], lock=True)
            rid = ensure_repo(self.db, conn, name)
            conn.execute(self.db.insert_ignore(repository_blobs, repository_id=rid,
                                               digest=digest, created_at=utcnow()))
        return True

    def unlink(self, name: str, digest: str) -> None:
        """Remove a blob from a repository; its bytes go when GC finds no other use."""
        parse_digest(digest)
        with self.db.write() as conn:
            rid = require_repo(conn, name)
            gone = conn.execute(delete(repository_blobs).where(
                repository_blobs.c.repository_id == rid, repository_blobs.c.digest == digest))
            if gone.rowcount == 0:
                raise BlobUnknown(f"blob {digest} is not in repository {name!r}",
                                  {"digest": digest})
            audit.record(conn, "blob.delete", f"{name}@{digest}")
