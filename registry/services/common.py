"""Queries shared by the services: repository lookup and creation, blob linking."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select, update

from registry.db import Database
from registry.db.tables import blobs, repositories, repository_blobs, utcnow
from registry.errors import NameUnknown
from registry.settings import Settings
from registry.storage import BlobStore


class Service:
    def __init__(self, db: Database, store: BlobStore, settings: Settings):
        self.db = db
        self.store = store
        self.settings = settings


_REPO_ID = select(repositories.c.id).where(repositories.c.name == bindparam("name"))


def repo_id(conn: Connection, name: str) -> int | None:
    return conn.execute(_REPO_ID, {"name": name}).scalar()


def require_repo(conn: Connection, name: str) -> int:
    rid = repo_id(conn, name)
    if rid is None:
        raise NameUnknown(f"repository {name!r} is not known to this registry")
    return rid


def ensure_repo(db: Database, conn: Connection, name: str) -> int:
    """The id of repository ``name``, created if needed (inside a write transaction)."""
    rid = repo_id(conn, name)
    if rid is None:
        conn.execute(db.insert_ignore(repositories, name=name, created_at=utcnow()))
        rid = repo_id(conn, name)
    return rid


def link_blob(db: Database, conn: Connection, rid: int, digest: str, size: int) -> None:
    """Record that blob ``digest`` is stored, readable from repository ``rid``, and live now.

    Bumping ``last_linked_at`` takes the blob's row lock, which is what keeps GC from
    deleting a blob that is being linked at this very moment. It also ends a quarantine
    (``registry.maintenance.scrub``): the quarantined bytes were moved out of ``blobs/``, so the
    caller's ``commit_upload`` stores the verified bytes being linked.
    """
    now = utcnow()
    conn.execute(db.upsert(blobs, ["digest"], {"last_linked_at": now, "quarantined_at": None},
                           digest=digest, size=size, created_at=now, last_linked_at=now))
    conn.execute(db.insert_ignore(repository_blobs, repository_id=rid, digest=digest,
                                  created_at=now))


def touch_blobs(conn: Connection, digests: list[str]) -> dict[str, int]:
    """Mark stored blobs live now; returns ``{digest: size}`` of those that still exist
    and are not quarantined.

    The UPDATE takes each row's lock before anything else is checked, so GC either
    deleted a blob before (it is absent from the result) or cannot delete it until this
    transaction ends (and then sees it linked). Nothing else may create blob rows:
    only an upload commit, which stores the bytes in the same transaction.
    """
    if not digests:
        return {}
    if conn.dialect.name != "sqlite":  # SQLite: one writer at a time, no row locks
        # Row locks in digest order, the order GC deletes in: an UPDATE locks rows in scan
        # order, and two transactions locking the same blobs in different orders deadlock
        # (GC holding a layer's row while this holds the config's).
        conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(digests))
                     .order_by(blobs.c.digest).with_for_update())
    # A quarantined blob (``assay scrub``) counts as absent: a manifest cannot newly
    # refer to it until its bytes are pushed again.
    rows = conn.execute(update(blobs).where(blobs.c.digest.in_(digests),
                                            blobs.c.quarantined_at.is_(None))
                        .values(last_linked_at=utcnow())
                        .returning(blobs.c.digest, blobs.c.size))
    return {r.digest: r.size for r in rows}


def in_namespaces(name_column, namespaces: set[str] | None):
    """A WHERE clause keeping repositories in ``namespaces`` (None: no restriction), for
    listings filtered by what the caller may pull."""
    from sqlalchemy import false, or_, true

    if namespaces is None:
        return true()
    if not namespaces:
        return false()
    return or_(*(or_(name_column == ns, name_column.startswith(ns + "/", autoescape=True))
                 for ns in sorted(namespaces)))
