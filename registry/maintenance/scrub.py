"""Scrub: re-hash every stored blob, report (and optionally quarantine) damaged ones.

Safe while the registry serves, pushes and collects garbage:

- Only committed blobs with a row are read, through ``BlobStore.open``, in chunks: upload
  data is never touched, and no blob is ever held in memory whole.
- Hashing takes no lock (a blob may be gigabytes). A blob whose bytes do not match its
  digest or size, or that cannot be found, is only a *suspect* until it is re-checked
  in a write transaction holding its row lock (``FOR UPDATE``; SQLite's write lock):
  if the row is gone (GC deleted it), was re-created meanwhile (GC then a fresh push:
  ``created_at`` differs), or is quarantined already, nothing is reported. Otherwise
  the bytes hashed are the bytes stored now: while its row lives, nothing in the
  registry writes a blob's key (a commit of existing content discards the upload;
  GC deletes row and bytes together), and pushes of that digest wait for the lock.
- Rows are never deleted. Scrub writes ``blobs.scrubbed_at`` (when the bytes were last
  re-hashed) and, with ``quarantine``, ``blobs.quarantined_at``.

Blobs are visited oldest ``scrubbed_at`` first, never-scrubbed first of all, so an
interrupted run (or one cut short by ``limit``) is resumed by the next.

Quarantine moves a corrupt blob's bytes to ``quarantine/`` (``BlobStore.quarantine``) and
sets ``quarantined_at``; a missing blob is only marked. A quarantined blob is not served
(HEAD/GET answer BLOB_UNKNOWN) and cannot be mounted, so clients upload it again; that
push stores fresh, verified bytes and clears ``quarantined_at`` (``link_blob``).
Manifests referring to it stay: they are served, their blob is not until re-pushed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from sqlalchemy import or_, select, update

from registry.db.tables import (
    as_utc,
    blobs,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    tags,
    utcnow,
)
from registry.digests import parse_digest
from registry.errors import BlobUnknown, StorageError
from registry.services import RegistryService

log = logging.getLogger("assay.scrub")

CORRUPT, MISSING = "corrupt", "missing"


@dataclass
class ManifestRef:
    """A manifest that refers to a damaged blob, with the tags pointing at it."""

    repository: str
    digest: str
    tags: list[str] = field(default_factory=list)


@dataclass
class Damaged:
    """One blob whose stored bytes are wrong (``corrupt``) or gone (``missing``)."""

    digest: str
    problem: str  # CORRUPT | MISSING
    detail: str
    size: int  # recorded size
    repositories: list[str] = field(default_factory=list)
    manifests: list[ManifestRef] = field(default_factory=list)
    quarantined: bool = False


@dataclass
class ScrubReport:
    checked: int = 0  # blobs whose bytes were read to the end (or found missing)
    bytes: int = 0  # bytes read
    corrupt: int = 0
    missing: int = 0
    quarantined: int = 0  # quarantined by this run
    damaged: list[Damaged] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.damaged

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Progress:
    """Passed to the ``progress`` callback after every chunk read and every blob done."""

    blobs_total: int
    bytes_total: int  # recorded sizes of the blobs to check
    blobs_done: int = 0
    bytes_done: int = 0
    digest: str = ""  # the blob being read


def scrub(svc: RegistryService, *, quarantine: bool = False, limit: int | None = None,
          older_than: timedelta | None = None,
          progress: Callable[[Progress], None] | None = None,
          chunk_size: int = 1 << 20) -> ScrubReport:
    """Re-hash stored blobs and report the damaged ones (see the module docstring).

    ``limit``: check at most this many blobs (the least recently scrubbed).
    ``older_than``: skip blobs scrubbed more recently than this.
    ``quarantine``: move damaged blobs out of service (they heal when pushed again).
    A storage error reading a blob that GC deleted meanwhile is ignored; any other
    propagates, and what was checked until then keeps its ``scrubbed_at``, so a re-run
    resumes with the rest.
    """
    query = (select(blobs.c.digest, blobs.c.size, blobs.c.created_at)
             .where(blobs.c.quarantined_at.is_(None))
             # NULL first on both databases (PostgreSQL sorts NULLs last by default).
             .order_by(blobs.c.scrubbed_at.is_not(None), blobs.c.scrubbed_at, blobs.c.digest))
    if older_than is not None:
        cutoff = utcnow() - older_than
        query = query.where(or_(blobs.c.scrubbed_at.is_(None), blobs.c.scrubbed_at < cutoff))
    if limit is not None:
        query = query.limit(limit)
    with svc.db.read() as conn:
        rows = conn.execute(query).all()

    report = ScrubReport()
    state = Progress(blobs_total=len(rows), bytes_total=sum(r.size for r in rows))
    for row in rows:
        state.digest = row.digest
        _check(svc, row, report, quarantine, chunk_size, state, progress)
        state.blobs_done += 1
        if progress is not None:
            progress(state)
    log.info("scrub: checked %d blob(s), %d bytes; %d corrupt, %d missing, %d quarantined",
             report.checked, report.bytes, report.corrupt, report.missing, report.quarantined)
    return report


def _check(svc, row, report: ScrubReport, quarantine: bool, chunk_size: int,
           state: Progress, progress) -> None:
    """Scrub one blob listed as ``row``; count what was found in ``report``."""
    try:
        problem, detail, read = _hash(svc, row.digest, row.size, chunk_size, state, progress)
    except StorageError:
        if _still_there(svc, row):
            raise
        return  # collected while we read it: nothing left to check
    report.bytes += read
    if problem is None:
        _mark_scrubbed(svc, row.digest)
        report.checked += 1
        return
    damaged = _confirm(svc, row, problem, detail, quarantine)
    if damaged is None:  # deleted or re-pushed meanwhile: not damage
        return
    report.checked += 1
    report.damaged.append(damaged)
    if damaged.problem == CORRUPT:
        report.corrupt += 1
    else:
        report.missing += 1
    report.quarantined += damaged.quarantined
    log.warning("scrub: %s blob %s (%s)%s", damaged.problem, row.digest, damaged.detail,
                ", quarantined" if damaged.quarantined else "")


def _hash(svc, digest: str, size: int, chunk_size: int, state: Progress,
          progress) -> tuple[str | None, str, int]:
    """``(problem or None, detail, bytes read)`` for the stored bytes of ``digest``."""
    algorithm, _ = parse_digest(digest)
    hasher = hashlib.new(algorithm)
    read = 0
    try:
        for data in svc.store.open(digest, chunk_size=chunk_size):
            hasher.update(data)
            read += len(data)
            state.bytes_done += len(data)
            if progress is not None:
                progress(state)
    except BlobUnknown:
        return MISSING, "no stored bytes", read
    actual = f"{algorithm}:{hasher.hexdigest()}"
    if read != size:
        return CORRUPT, f"holds {read} bytes, {size} recorded (hashes to {actual})", read
    if actual != digest:
        return CORRUPT, f"hashes to {actual}", read
    return None, "", read


def _still_there(svc, row) -> bool:
    """Whether the blob read as ``row`` still has that row (waiting for a GC deleting it)."""
    with svc.db.write() as conn:
        now = conn.execute(select(blobs.c.created_at).where(blobs.c.digest == row.digest)
                           .with_for_update()).first()
    return now is not None and as_utc(now.created_at) == as_utc(row.created_at)


def _mark_scrubbed(svc, digest: str) -> None:
    with svc.db.write() as conn:
        conn.execute(update(blobs).where(blobs.c.digest == digest)
                     .values(scrubbed_at=utcnow()))


def _confirm(svc, row, problem: str, detail: str, quarantine: bool) -> Damaged | None:
    """Re-check a suspect under its row lock; record (and quarantine) it if it stands."""
    with svc.db.write() as conn:
        now = conn.execute(select(blobs.c.created_at, blobs.c.quarantined_at)
                           .where(blobs.c.digest == row.digest).with_for_update()).first()
        if (now is None or now.quarantined_at is not None
                or as_utc(now.created_at) != as_utc(row.created_at)):
            return None
        stored = svc.store.stat(row.digest)
        if problem == MISSING and stored is not None:
            return None  # a push of it meanwhile stored the bytes: healed already
        if problem == CORRUPT and stored is None:
            problem, detail = MISSING, "no stored bytes"
        values = {"scrubbed_at": utcnow()}
        moved = False
        if quarantine:
            values["quarantined_at"] = values["scrubbed_at"]
        conn.execute(update(blobs).where(blobs.c.digest == row.digest).values(**values))
        if quarantine and problem == CORRUPT:
            # After the UPDATE and before COMMIT: if the move fails, the row is unchanged.
            moved = svc.store.quarantine(row.digest)
        damaged = Damaged(row.digest, problem, detail, row.size, quarantined=quarantine)
        _references(conn, damaged)
    if moved:
        log.info("scrub: moved the bytes of %s to quarantine/", row.digest)
    return damaged


def _references(conn, damaged: Damaged) -> None:
    """Fill in which repositories may read the blob and which manifests refer to it."""
    damaged.repositories = list(conn.execute(
        select(repositories.c.name)
        .select_from(repository_blobs.join(repositories,
                                           repositories.c.id == repository_blobs.c.repository_id))
        .where(repository_blobs.c.digest == damaged.digest)
        .order_by(repositories.c.name)).scalars())
    rows = conn.execute(
        select(manifests.c.id, repositories.c.name, manifests.c.digest)
        .select_from(manifest_references
                     .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                     .join(repositories, repositories.c.id == manifests.c.repository_id))
        .where(manifest_references.c.digest == damaged.digest)
        .order_by(repositories.c.name, manifests.c.digest)).all()
    for row in rows:
        names = conn.execute(select(tags.c.name).where(tags.c.manifest_id == row.id)
                             .order_by(tags.c.name)).scalars()
        damaged.manifests.append(ManifestRef(row.name, row.digest, list(names)))
