"""Verification profiles per namespace (``namespace_profiles``; the documents themselves
are ``registry.profiles``).

The longest namespace that equals the repository name or is a ``/``-prefix of it applies
(``""`` matches every repository), as for the policies; without one, the profile the
``default_profile`` setting names does (the built-in ``DEFAULT_PROFILE`` unless set).
Stored documents are canonical JSON with every default spelled out, so what is read back
is exactly what results are measured under, and its sha256 is the profile's identity.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select

from registry.db.tables import isoformat, namespace_profiles, utcnow
from registry.errors import NotFound
from registry.profiles import Profile, validate_profile
from registry.services import audit
from registry.services.common import Service
from registry.services.policies import longest_match, namespace_key


@dataclass(frozen=True)
class AppliedProfile:
    """A profile and where it comes from: ``namespace`` None is the built-in default."""

    namespace: str | None
    profile: Profile
    updated_at: str | None = None

    def to_json(self) -> dict:
        return {"namespace": self.namespace, "sha256": self.profile.sha256,
                "updated_at": self.updated_at, "profile": self.profile.to_json()}


def _applied(row) -> AppliedProfile:
    # Stored documents were validated when they were set; validating again keeps a row
    # written by an older version (a field since renamed) from reaching a worker unchecked.
    return AppliedProfile(row.namespace, validate_profile(json.loads(row.document)),
                          isoformat(row.updated_at))


class ProfileService(Service):
    # Called with the namespace after a profile is set or deleted (the registry wires
    # ``VerificationService.backfill``: models measured on the classes it now names).
    changed: Callable[[str], object] | None = None

    def default(self) -> AppliedProfile:
        """The profile for repositories no namespace profile covers (``default_profile``)."""
        return AppliedProfile(None, self.settings.profile)

    def applies(self, name: str, conn=None) -> AppliedProfile:
        """The profile that applies to repository ``name`` (read in ``conn`` if given)."""
        if conn is None:
            with self.db.read() as c:
                return self.applies(name, c)
        best = longest_match(conn.execute(select(namespace_profiles)).all(), name)
        return self.default() if best is None else _applied(best)

    def profiles(self) -> list[AppliedProfile]:
        """Every namespace's profile, by namespace."""
        with self.db.read() as conn:
            rows = conn.execute(select(namespace_profiles)
                                .order_by(namespace_profiles.c.namespace)).all()
        return [_applied(r) for r in rows]

    def set(self, namespace: str, profile: Profile) -> AppliedProfile:
        namespace = namespace_key(namespace)
        document = json.dumps(profile.to_json(), sort_keys=True)
        now = utcnow()
        values = {"document": document, "sha256": profile.sha256, "updated_at": now}
        with self.db.write() as conn:
            conn.execute(self.db.upsert(namespace_profiles, ["namespace"], values,
                                        namespace=namespace, **values))
            audit.record(conn, "profile.set", namespace or "_", name=profile.name,
                         sha256=profile.sha256)
        if self.changed is not None:
            self.changed(namespace)
        return AppliedProfile(namespace, profile, isoformat(now))

    def delete(self, namespace: str) -> None:
        """Back to what a shorter namespace (or the default) says; ``NotFound`` if none."""
        namespace = namespace_key(namespace)
        with self.db.write() as conn:
            gone = conn.execute(delete(namespace_profiles).where(
                namespace_profiles.c.namespace == namespace))
            if not gone.rowcount:
                raise NotFound(f"no profile is set on namespace {namespace or '_'!r}")
            audit.record(conn, "profile.delete", namespace or "_")
        if self.changed is not None:
            self.changed(namespace)
