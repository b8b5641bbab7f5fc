"""Verification policies per namespace (``namespace_policies``).

The longest namespace that equals the repository name or is a ``/``-prefix of it applies
(``""`` matches every repository); without one, the ``gate`` and ``min_generation_tps``
settings do. Manifests read the gate, verification reads the speed floor; both take this
service, which depends on nothing but the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import delete, select

from registry.db.tables import namespace_policies, utcnow
from registry.digests import check_name
from registry.errors import RequestInvalid
from registry.services import audit
from registry.services.common import Service


@dataclass
class Policy:
    namespace: str | None  # None: the settings' defaults
    gate: bool
    min_generation_tps: float | None

    def to_json(self) -> dict:
        return {"namespace": self.namespace, "gate": self.gate,
                "min_generation_tps": self.min_generation_tps}


def namespace_key(namespace: str) -> str:
    """A policy's or profile's namespace: "" (every repository) or a repository name
    (prefix); ``NameInvalid`` for anything else."""
    namespace = namespace.strip("/")
    return check_name(namespace) if namespace else namespace


def longest_match(rows, name: str):
    """Of ``rows`` (each with a ``namespace``), the one whose namespace is the longest that
    equals ``name`` or is a ``/``-prefix of it (``""`` matches every name); None if none."""
    best = None
    for r in rows:
        ns = r.namespace
        if (ns == "" or name == ns or name.startswith(ns + "/")) and (
                best is None or len(ns) > len(best.namespace)):
            best = r
    return best


class PolicyService(Service):
    def policy(self, name: str, conn=None) -> Policy:
        """The policy that applies to repository ``name`` (read in ``conn`` if given)."""
        def find(c) -> Policy:
            best = longest_match(c.execute(select(namespace_policies)).all(), name)
            if best is None:
                return Policy(None, self.settings.gate, self.settings.min_generation_tps)
            return Policy(best.namespace, best.gate, best.min_generation_tps)

        if conn is not None:
            return find(conn)
        with self.db.read() as c:
            return find(c)

    def gated(self, name: str) -> bool:
        """Whether repository ``name`` serves only models that passed verification."""
        return self.policy(name).gate

    def policies(self) -> list[Policy]:
        with self.db.read() as conn:
            rows = conn.execute(select(namespace_policies)
                                .order_by(namespace_policies.c.namespace)).all()
        return [Policy(r.namespace, r.gate, r.min_generation_tps) for r in rows]

    def set_policy(self, namespace: str, gate: bool, min_generation_tps: float | None) -> Policy:
        namespace = namespace_key(namespace)
        if min_generation_tps is not None and not (
                math.isfinite(min_generation_tps) and min_generation_tps >= 0):
            raise RequestInvalid("min_generation_tps must be a finite number >= 0")
        now = utcnow()
        with self.db.write() as conn:
            conn.execute(self.db.upsert(
                namespace_policies, ["namespace"],
                {"gate": gate, "min_generation_tps": min_generation_tps, "updated_at": now},
                namespace=namespace, gate=gate, min_generation_tps=min_generation_tps,
                updated_at=now))
            audit.record(conn, "policy.set", namespace or "_", gate=gate,
                         min_generation_tps=min_generation_tps)
        return Policy(namespace, gate, min_generation_tps)

    def delete_policy(self, namespace: str) -> bool:
        namespace = namespace_key(namespace)
        with self.db.write() as conn:
            gone = conn.execute(delete(namespace_policies).where(
                namespace_policies.c.namespace == namespace))
            if gone.rowcount:
                audit.record(conn, "policy.delete", namespace or "_")
        return gone.rowcount > 0
