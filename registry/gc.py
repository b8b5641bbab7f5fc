"""Garbage collection, safe while the registry serves.

A blob is garbage when no manifest refers to it and nothing linked it within the grace
period (``blobs.last_linked_at``). Each deletion is one conditional DELETE, re-checked
under the row lock, done in the same transaction as the removal of the bytes: a push
that links the blob concurrently either commits first (and the DELETE matches nothing)
or waits for GC and then stores the bytes again. Blobs being uploaded are never
candidates: they live under ``uploads/`` until committed.

Also removed: objects under ``blobs/`` with no SQL row that are older than the grace
period (left by a crash between storing and recording), and expired upload sessions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, exists, select

from registry.db.tables import blobs, manifest_references, uploads, utcnow
from registry.services import RegistryService

log = logging.getLogger("assay.gc")


@dataclass
class GCReport:
    blobs: int = 0
    bytes: int = 0
    orphans: int = 0
    uploads: int = 0


def _unreferenced(cutoff):
    return (blobs.c.last_linked_at < cutoff) & ~exists().where(
        manifest_references.c.digest == blobs.c.digest)


def collect(svc: RegistryService, *, dry_run: bool = False, batch: int = 100) -> GCReport:
    report = GCReport()
    now = utcnow()
    cutoff = now - timedelta(seconds=svc.settings.gc_grace_seconds)
    db, store = svc.db, svc.store

    with db.read() as conn:
        candidates = conn.execute(select(blobs.c.digest, blobs.c.size)
                                  .where(_unreferenced(cutoff))).all()
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

    # Expired sessions, and upload data whose session row is gone. Each one is re-checked
    # under the write lock, so a session that starts or advances meanwhile is kept.
    live = uploads.c.expires_at >= now
    for session, mtime in store.iter_uploads():
        if mtime >= horizon:
            continue
        with db.write() as conn:
            if conn.execute(select(uploads.c.id).where(uploads.c.id == session, live)
                            ).first() is not None:
                continue
            if not dry_run:
                conn.execute(delete(uploads).where(uploads.c.id == session))
                store.cancel_upload(session)
        report.uploads += 1
    if not dry_run:
        with db.write() as conn:
            conn.execute(delete(uploads).where(~live))
    log.info("gc: %s", report)
    return report
