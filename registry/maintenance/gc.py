"""Garbage collection, safe while the registry serves.

A blob is garbage when no manifest refers to it and nothing linked it within the grace
period (``blobs.last_linked_at``). Each deletion is one conditional DELETE, re-checked
under the row lock, done in the same transaction as the removal of the bytes: a push
that links the blob concurrently either commits first (and the DELETE matches nothing)
or waits for GC and then stores the bytes again. Blobs being uploaded are never
candidates: they live under ``uploads/`` until committed.

Also removed: objects under ``blobs/`` with no SQL row that are older than the grace
period (left by a crash between storing and recording), and expired upload sessions.

Stale links go too: a blob stays readable from a repository (``repository_blobs``) after
the last manifest there that used it is deleted, and it counts in that namespace's quota.
A link no manifest of its repository refers to is removed once both the link and the
blob's last use anywhere are older than the grace period, under the blob's row lock like
a blob deletion: a manifest PUT locks the same row first (``touch_blobs``), so it either
commits before (and the link is kept) or runs after and finds the link gone
(MANIFEST_BLOB_UNKNOWN, and the client uploads the blob again).

Expired upload sessions (``upload_expiry_seconds`` after their last chunk) already
answer BLOB_UPLOAD_UNKNOWN; ``sweep_uploads`` deletes their rows and data, and data
under ``uploads/`` whose row is gone. It runs within ``collect`` (``assay gc``) and
every ``upload_sweep_seconds`` in the registry process (``sweep_forever``).

What a run leaves for later is reported too (``GCReport.waiting_blobs``,
``waiting_uploads``): unreferenced blobs still inside the grace period and upload
sessions not yet expired, with when the first and the last of them become collectable.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio
from sqlalchemy import delete, exists, func, or_, select

from registry.db.tables import (
    as_utc,
    blobs,
    manifest_references,
    manifests,
    repository_blobs,
    uploads,
    utcnow,
)
from registry.services import RegistryService
from registry.services.quotas import human
from registry.spans import duration  # noqa: F401 (retention reads it from here)

log = logging.getLogger("assay.gc")


def moment(when: datetime, now: datetime) -> str:
    """``2026-12-05 14:03:12 UTC (in 58m)``, or ``now`` once it has passed."""
    if when <= now:
        return "now"
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC (in {duration(when - now)})"


@dataclass
class Pending:
    """Things a later run will remove: how many, their bytes, and when the first and the
    last of them become removable."""

    count: int = 0
    bytes: int = 0
    first: datetime | None = None
    last: datetime | None = None

    def add(self, size: int, when: datetime) -> None:
        when = as_utc(when)
        self.count += 1
        self.bytes += size
        self.first = when if self.first is None else min(self.first, when)
        self.last = when if self.last is None else max(self.last, when)

    def window(self, now: datetime) -> str:
        """When they become removable: ``now``, ``at T (in 5m)``, ``from T1 (in 5m) to
        T2 (in 1h)`` or ``from now to T2 (in 1h)``."""
        if self.first is None or self.last <= now:
            return "now"
        first, last = moment(self.first, now), moment(self.last, now)
        return f"at {last}" if first == last else f"from {first} to {last}"

    def to_json(self) -> dict:
        return {"count": self.count, "bytes": self.bytes,
                "first": self.first and self.first.isoformat(),
                "last": self.last and self.last.isoformat()}


@dataclass
class GCReport:
    blobs: int = 0
    bytes: int = 0
    orphans: int = 0
    uploads: int = 0
    links: int = 0
    dry_run: bool = False
    grace: timedelta = timedelta(0)
    now: datetime = field(default_factory=utcnow)
    # Left for a later run: unreferenced blobs inside the grace period (removable at
    # last use + grace) and open upload sessions (removable once expired).
    waiting_blobs: Pending = field(default_factory=Pending)
    waiting_uploads: Pending = field(default_factory=Pending)

    def lines(self) -> list[str]:
        """The report as ``assay gc`` prints it: what went, then what waits and when."""
        verb = "would delete" if self.dry_run else "deleted"
        out = [f"{verb} {self.blobs} blob(s), {self.bytes} bytes; {self.orphans} orphaned "
               f"object(s); {self.uploads} expired upload(s); {self.links} unused "
               "repository link(s)"]
        blobs, sessions = self.waiting_blobs, self.waiting_uploads
        if blobs.count:
            out.append(f"waiting: {blobs.count} unreferenced blob(s) ({human(blobs.bytes)}) "
                       f"inside the {duration(self.grace)} grace period after their last "
                       f"use; `assay gc` frees them {blobs.window(self.now)}")
        if sessions.count:
            out.append(f"waiting: {sessions.count} open upload session(s) "
                       f"({human(sessions.bytes)} received), in progress or abandoned; "
                       f"unless their clients send more they expire "
                       f"{sessions.window(self.now)}, and `assay gc` removes them then")
        if not blobs.count and not sessions.count:
            out.append(f"waiting: nothing (no unreferenced blob inside the "
                       f"{duration(self.grace)} grace period, no open upload session)")
        return out

    def to_json(self) -> dict:
        return {"dry_run": self.dry_run, "blobs": self.blobs, "bytes": self.bytes,
                "orphans": self.orphans, "uploads": self.uploads, "links": self.links,
                "grace_seconds": self.grace.total_seconds(),
                "waiting": {"blobs": self.waiting_blobs.to_json(),
                            "uploads": self.waiting_uploads.to_json()}}


def _unused_link(cutoff):
    """Links older than ``cutoff`` that no manifest of their repository refers to."""
    used = (select(manifest_references.c.digest)
            .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
            .where(manifests.c.repository_id == repository_blobs.c.repository_id,
                   manifest_references.c.digest == repository_blobs.c.digest))
    return (repository_blobs.c.created_at < cutoff) & ~exists(used)


def unlink_stale(svc: RegistryService, cutoff, *, dry_run: bool = False) -> int:
    """Remove links no manifest of their repository uses (see the module docstring);
    returns how many went (or would go)."""
    db = svc.db
    with db.read() as conn:
        candidates = conn.execute(
            select(repository_blobs.c.repository_id, repository_blobs.c.digest)
            .join(blobs, blobs.c.digest == repository_blobs.c.digest)
            .where(_unused_link(cutoff), blobs.c.last_linked_at < cutoff)).all()
    if dry_run:
        return len(candidates)
    count = 0
    for row in candidates:
        with db.write() as conn:
            # The blob's row lock first, re-checked: a manifest PUT using it now holds it.
            if conn.execute(select(blobs.c.digest).where(
                    blobs.c.digest == row.digest, blobs.c.last_linked_at < cutoff)
                    .with_for_update()).first() is None:
                continue
            gone = conn.execute(delete(repository_blobs).where(
                repository_blobs.c.repository_id == row.repository_id,
                repository_blobs.c.digest == row.digest, _unused_link(cutoff)))
            count += gone.rowcount
    return count


def _unreferenced(cutoff):
    return (blobs.c.last_linked_at < cutoff) & ~exists().where(
        manifest_references.c.digest == blobs.c.digest)


def _expired(now: datetime):
    """Upload sessions past ``expires_at`` that no request holds a write lease on."""
    return (uploads.c.expires_at <= now) & or_(uploads.c.writer.is_(None),
                                               uploads.c.lease_until <= now)


def waiting_blobs(conn, now: datetime, grace: timedelta) -> Pending:
    """Unreferenced blobs still inside the grace period: each becomes collectable at its
    last use (``last_linked_at``) plus ``grace``."""
    row = conn.execute(select(func.count(), func.coalesce(func.sum(blobs.c.size), 0),
                              func.min(blobs.c.last_linked_at),
                              func.max(blobs.c.last_linked_at))
                       .where(blobs.c.last_linked_at >= now - grace, ~exists().where(
                           manifest_references.c.digest == blobs.c.digest))).one()
    if not row[0]:
        return Pending()
    return Pending(row[0], row[1], as_utc(row[2]) + grace, as_utc(row[3]) + grace)


def waiting_uploads(conn, now: datetime) -> Pending:
    """Upload sessions not expired yet (in progress, or abandoned and waiting out their
    expiry): the bytes received so far, and when the first and last expire."""
    row = conn.execute(select(func.count(), func.coalesce(func.sum(uploads.c.received), 0),
                              func.min(uploads.c.expires_at), func.max(uploads.c.expires_at))
                       .where(~_expired(now))).one()
    if not row[0]:
        return Pending()
    return Pending(row[0], row[1], as_utc(row[2]), as_utc(row[3]))


def collect(svc: RegistryService, *, dry_run: bool = False, batch: int = 100) -> GCReport:
    """Delete what is garbage now (module docstring); the report also says what waits:
    unreferenced blobs inside the grace period and open upload sessions."""
    now = utcnow()
    grace = timedelta(seconds=svc.settings.gc_grace_seconds)
    report = GCReport(dry_run=dry_run, grace=grace, now=now)
    cutoff = now - grace
    db, store = svc.db, svc.store

    with db.read() as conn:
        # In digest order: the order a manifest push locks blob rows in (touch_blobs).
        candidates = conn.execute(select(blobs.c.digest, blobs.c.size)
                                  .where(_unreferenced(cutoff))
                                  .order_by(blobs.c.digest)).all()
    for i in range(0, len(candidates), batch):
        group = candidates[i:i + batch]
        if dry_run:
            report.blobs += len(group)
            report.bytes += sum(r.size for r in group)
            continue
        with db.write() as conn:
            for row in group:
                gone = conn.execute(delete(blobs).where(blobs.c.digest == row.digest,
                                                        _unreferenced(cutoff)))
                if gone.rowcount:
                    store.delete(row.digest)
                    report.blobs += 1
                    report.bytes += row.size

    # Bytes with no row, older than the grace period (a crash after storing them).
    with db.read() as conn:
        known = set(conn.execute(select(blobs.c.digest)).scalars())
    horizon = cutoff.timestamp()
    for digest, mtime in store.iter_blobs():
        if digest not in known and mtime < horizon:
            with db.write() as conn:
                # Re-check under the write lock: a commit may have just recorded it.
                if conn.execute(select(blobs.c.digest).where(blobs.c.digest == digest)
                                ).first() is None:
                    if not dry_run:
                        store.delete(digest)
                    report.orphans += 1

    report.links = unlink_stale(svc, cutoff, dry_run=dry_run)
    report.uploads = sweep_uploads(svc, dry_run=dry_run, now=now)
    with db.read() as conn:
        report.waiting_blobs = waiting_blobs(conn, now, grace)
        report.waiting_uploads = waiting_uploads(conn, now)
    log.info("gc: %s", report)
    return report


def sweep_uploads(svc: RegistryService, *, dry_run: bool = False,
                  now: datetime | None = None) -> int:
    """Remove expired upload sessions (row and data) and upload data with no row that is
    older than the grace period; returns how many sessions went.

    A session is expired once ``expires_at`` has passed and no request holds its write
    lease; each one is re-checked under the write lock, so a session that advances
    meanwhile is kept. Data without a row can only be left by a failure between
    deleting a row and its data (rows are created before data, removed before it).
    """
    now = now or utcnow()
    db, store = svc.db, svc.store
    expired = _expired(now)
    count = 0
    with db.read() as conn:
        sessions = list(conn.execute(select(uploads.c.id).where(expired)).scalars())
    for session in sessions:
        if dry_run:
            count += 1
            continue
        with db.write() as conn:
            gone = conn.execute(delete(uploads).where(uploads.c.id == session, expired))
        if gone.rowcount:
            store.cancel_upload(session)
            count += 1
    horizon = (now - timedelta(seconds=svc.settings.gc_grace_seconds)).timestamp()
    for session, mtime in store.iter_uploads():
        if mtime >= horizon:
            continue
        with db.write() as conn:  # under the write lock: a commit may be moving it
            if conn.execute(select(uploads.c.id).where(uploads.c.id == session)
                            ).first() is not None:
                continue
            if not dry_run:
                store.cancel_upload(session)
        count += 1
    return count


async def sweep_forever(svc: RegistryService, every: float) -> None:
    """``sweep_uploads`` every ``every`` seconds until cancelled (the app's lifespan)."""
    while True:
        await anyio.sleep(every)
        try:
            n = await anyio.to_thread.run_sync(sweep_uploads, svc)
        except Exception:  # a database or storage hiccup: try again next time
            log.exception("upload sweep failed")
            continue
        if n:
            log.info("upload sweep: removed %d expired or abandoned session(s)", n)


@asynccontextmanager
async def upload_sweeper(svc: RegistryService, every: float) -> AsyncIterator[None]:
    """Run ``sweep_forever`` while the block runs (not at all when ``every`` <= 0)."""
    if every <= 0:
        yield
        return
    async with anyio.create_task_group() as tg:
        tg.start_soon(sweep_forever, svc, every)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
