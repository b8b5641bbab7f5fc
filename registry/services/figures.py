"""Deployment-wide figures read from the shared database (the job queue, model manifests,
verification runs and the regressions they found, quarantined blobs), for the Prometheus
scrape (``registry.api.metrics``).

Every replica reads the same rows, so each reports the same figures for the whole
deployment, whichever process did the work. Each query runs on its own autocommit read
(no snapshot across them), as the figures are independent gauges and counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import extract, func, select

from registry.db import Database
from registry.db.queue import JobQueue
from registry.db.tables import blobs, manifests, verifications


@dataclass(frozen=True)
class VerificationTotals:
    """The verification runs recorded with one (verdict, backend)."""

    verdict: str
    backend: str     # "" for runs that recorded no backend
    runs: int
    seconds: float   # the sum of their durations (finished - started)


@dataclass(frozen=True)
class Figures:
    """One reading; mappings and lists keep the database's GROUP BY order."""

    jobs: dict[tuple[str, str], int]          # (kind, status) -> jobs; no zero entries
    manifest_statuses: dict[str, int]         # verification status -> model manifests
    verifications: list[VerificationTotals]
    quarantined_blobs: int
    # verdict -> verification runs that found regressions against a tag's previous version
    regressions: dict[str, int] = field(default_factory=dict)
    regressed_models: int = 0                 # model manifests whose latest run found some


def read_figures(db: Database, queue: JobQueue) -> Figures:
    """Read every figure; raises the driver's error when the database is unavailable."""
    if db.is_sqlite:
        seconds = (func.julianday(verifications.c.finished_at)
                   - func.julianday(verifications.c.started_at)) * 86400.0
    else:
        seconds = extract("epoch", verifications.c.finished_at - verifications.c.started_at)
    job_counts = queue.counts()
    with db.read() as conn:
        status_rows = conn.execute(
            select(manifests.c.status, func.count())
            .where(manifests.c.status.is_not(None))
            .group_by(manifests.c.status)).all()
        verdict_rows = conn.execute(
            select(verifications.c.verdict, func.coalesce(verifications.c.backend, ""),
                   func.count(), func.coalesce(func.sum(seconds), 0.0))
            .group_by(verifications.c.verdict, verifications.c.backend)).all()
        quarantined = conn.execute(select(func.count()).select_from(blobs)
                                   .where(blobs.c.quarantined_at.is_not(None))).scalar()
        regressions, regressed = _regressions(conn)
    return Figures(
        jobs=job_counts,
        manifest_statuses={status: n for status, n in status_rows},
        verifications=[VerificationTotals(verdict, backend, n, float(total))
                       for verdict, backend, n, total in verdict_rows],
        quarantined_blobs=quarantined, regressions=regressions, regressed_models=regressed)


def _regressions(conn) -> tuple[dict[str, int], int]:
    """Runs that found regressions, by verdict (a regression fails a run only where the
    profile says so), and the model manifests whose latest run found some."""
    v = verifications.c
    found = v.regression_count > 0
    rows = conn.execute(select(v.verdict, func.count()).where(found)
                        .group_by(v.verdict)).all()
    latest = (select(func.max(v.id)).where(v.manifest_id.is_not(None))
              .group_by(v.manifest_id))
    regressed = conn.execute(select(func.count()).select_from(verifications)
                             .where(v.id.in_(latest), found)).scalar()
    return {verdict: n for verdict, n in rows}, regressed
