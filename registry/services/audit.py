"""The audit log: pushes, deletes, permission changes, policy changes and gate overrides.

Entries are written in the transaction of the change they describe, so the log never
names a change that did not happen. The caller is taken from ``current_actor``, a
context variable the HTTP layer sets for each request (``registry.api.guard``) and the
CLI sets for commands run on the server; context variables follow the request into the
worker threads that run the services.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from registry.db.tables import audit_log, isoformat, utcnow
from registry.services.common import Service


@dataclass(frozen=True)
class Actor:
    name: str | None  # None: anonymous (auth off, or anonymous access)
    remote_addr: str | None = None


SYSTEM = Actor(None)
# Actor is frozen (immutable), which ruff's B039 cannot see.
current_actor: ContextVar[Actor] = ContextVar("assay_actor", default=SYSTEM)  # noqa: B039


def record(conn: Connection, action: str, target: str, **detail) -> None:
    """Add an audit entry inside the caller's write transaction."""
    actor = current_actor.get()
    conn.execute(insert(audit_log).values(
        at=utcnow(), actor=actor.name, remote_addr=actor.remote_addr, action=action,
        target=target[:1024],
        detail=json.dumps({k: v for k, v in detail.items() if v is not None}) or None))


class AuditService(Service):
    def entries(self, *, limit: int = 100, before: int | None = None,
                actor: str | None = None, action: str | None = None) -> list[dict]:
        """Newest first; ``before`` is an entry id (keyset paging)."""
        q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if before is not None:
            q = q.where(audit_log.c.id < before)
        if actor is not None:
            q = q.where(audit_log.c.actor == actor)
        if action is not None:
            q = q.where(audit_log.c.action == action)
        with self.db.read() as conn:
            return [{"id": r.id, "at": isoformat(r.at), "actor": r.actor,
                     "remote_addr": r.remote_addr, "action": r.action, "target": r.target,
                     "detail": json.loads(r.detail) if r.detail else {}}
                    for r in conn.execute(q)]
