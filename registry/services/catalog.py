"""Listing repositories and tags, with ``n``/``last`` pagination (lexical order)."""

from __future__ import annotations

from sqlalchemy import select

from registry.db.tables import repositories, tags
from registry.services.common import Service, in_namespaces, require_repo


class CatalogService(Service):
    @property
    def _max_page(self) -> int:
        return self.settings.max_page_size

    def _lexical(self, column):
        # Byte order, not the server locale's (PostgreSQL's default collation is not).
        return column if self.db.is_sqlite else column.collate("C")

    def repositories(self, n: int, last: str | None,
                     namespaces: set[str] | None = None) -> list[str]:
        """Repository names after ``last``; only those in ``namespaces`` unless None."""
        key = self._lexical(repositories.c.name)
        q = select(repositories.c.name).where(
            in_namespaces(repositories.c.name, namespaces)).order_by(key)
        if last:
            q = q.where(key > last)
        q = q.limit(min(n, self._max_page))
        with self.db.read() as conn:
            return list(conn.execute(q).scalars())

    def tags(self, name: str, n: int, last: str | None) -> list[str]:
        """Tags of ``name`` in lexical (byte) order; NameUnknown if no such repository."""
        with self.db.read() as conn:
            rid = require_repo(conn, name)
            key = self._lexical(tags.c.name)
            q = select(tags.c.name).where(tags.c.repository_id == rid)
            if last:
                q = q.where(key > last)
            q = q.order_by(key).limit(min(n, self._max_page))
            return list(conn.execute(q).scalars())
