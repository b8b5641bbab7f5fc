"""A tag's versions: the manifests it pointed at (``tag_history``), newest last, each with
its status and the figures of its latest verification. What the model page charts.

One indexed query (``ix_tag_history_lookup``) bounded by ``limit``; a manifest the tag
pointed at twice is one version, placed at its latest ``pushed_at`` (the history keeps
one row per tag and manifest).
"""

from __future__ import annotations

from sqlalchemy import JSON, Float, cast, func, select

from registry.db.tables import isoformat, manifests, tag_history, verifications
from registry.digests import check_tag
from registry.services.common import Service, require_repo

MAX_VERSIONS = 50


class VersionService(Service):
    def _json_number(self, column, key: str):
        """A number in a JSON text column (NULL when absent)."""
        if self.db.is_sqlite:
            return func.json_extract(column, f"$.{key}", type_=Float)
        return cast(column, JSON)[key].as_float()

    def versions(self, name: str, tag: str, limit: int = MAX_VERSIONS) -> list[dict]:
        """The last ``limit`` (1..MAX_VERSIONS) manifests tag ``tag`` of repository
        ``name`` pointed at, oldest first: ``{"digest", "pushed_at", "status",
        "verdict", "backend", "tokens_per_s", "peak_rss_bytes", "verified_at"}`` (the
        figures of its latest verification; null when it has none). Raises NameUnknown
        for an unknown repository; an unknown tag has no versions."""
        check_tag(tag)
        limit = max(1, min(limit, MAX_VERSIONS))
        latest = (select(func.max(verifications.c.id))
                  .where(verifications.c.manifest_id == manifests.c.id)
                  .correlate(manifests).scalar_subquery())
        memory = self._json_number(verifications.c.report, "peak_rss_bytes")
        query = (select(manifests.c.digest, manifests.c.status, tag_history.c.pushed_at,
                        verifications.c.verdict, verifications.c.backend,
                        verifications.c.generation_tps, memory.label("memory"),
                        verifications.c.finished_at)
                 .select_from(tag_history
                              .join(manifests, manifests.c.id == tag_history.c.manifest_id)
                              .outerjoin(verifications, verifications.c.id == latest))
                 .order_by(tag_history.c.pushed_at.desc(), manifests.c.id.desc())
                 .limit(limit))
        with self.db.read() as conn:
            rid = require_repo(conn, name)
            rows = conn.execute(query.where(tag_history.c.repository_id == rid,
                                            tag_history.c.tag == tag)).all()
        return [{"digest": r.digest, "pushed_at": isoformat(r.pushed_at),
                 "status": r.status, "verdict": r.verdict, "backend": r.backend,
                 "tokens_per_s": r.generation_tps,
                 "peak_rss_bytes": None if r.memory is None else int(r.memory),
                 "verified_at": isoformat(r.finished_at)}
                for r in reversed(rows)]
