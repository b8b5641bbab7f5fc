"""Who may do what: identities, roles, actions and token scopes (pure functions).

Actions on a repository:

    pull     read manifests, blobs, tags, referrers, model cards, verifications
    push     upload blobs, put manifests, ask for a re-verification
    delete   delete manifests, tags and blobs
    admin    the namespace's gate policy, overrides, members, anonymous-pull switch

Roles a user holds in a namespace (a repository name's first segment, ``team`` for
``team/gemma3``): ``read`` = pull; ``write`` = pull + push; ``admin`` = all four.
Every person (not robots) is ``admin`` of the namespace named after them. Site admins
(``users.is_admin``) may do everything, including user management, webhooks, the audit
log and the registry-wide policy.

A personal access token can only narrow what its owner may do: its scopes are actions,
optionally limited to a namespace (``"push:team"``). A bearer token from the token
endpoint carries the exact repository actions it was granted.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

PULL, PUSH, DELETE, ADMIN = "pull", "push", "delete", "admin"
ACTIONS = (PULL, PUSH, DELETE, ADMIN)
ROLES = {"read": {PULL}, "write": {PULL, PUSH}, "admin": {PULL, PUSH, DELETE, ADMIN}}


def namespace_of(repository: str) -> str:
    """``team`` for ``team/gemma3``; a one-segment name is its own namespace."""
    return repository.split("/", 1)[0]


def parse_scopes(scopes: list[str]) -> list[tuple[str, str | None]]:
    """``["pull", "push:team"]`` as ``[("pull", None), ("push", "team")]``; raises
    ValueError naming the first scope that is not ``<action>[:<namespace glob>]``."""
    out = []
    for scope in scopes:
        action, _, ns = scope.partition(":")
        if action not in ACTIONS or (_ and not ns):
            raise ValueError(f"invalid scope {scope!r}: expected one of "
                             f"{', '.join(ACTIONS)}, optionally followed by :<namespace>")
        out.append((action, ns or None))
    return out


def scope_strings(identity: Identity) -> list[str] | None:
    """The inverse of ``parse_scopes`` for an identity's token limits (None: no limits)."""
    if identity.scopes is None:
        return None
    return [a if ns is None else f"{a}:{ns}" for a, ns in identity.scopes]


@dataclass(frozen=True)
class Identity:
    """An authenticated caller.

    ``roles``: namespace -> role, as granted (the personal namespace included).
    ``scopes``: the token's limits, None when the caller used a password or a key.
    ``grants``: for a bearer token from the token endpoint, repository -> actions it
    carries (and nothing else); None otherwise.
    """

    name: str | None  # None: anonymous (only anonymous pull)
    is_admin: bool = False
    is_robot: bool = False
    roles: dict[str, str] = field(default_factory=dict)
    anonymous_namespaces: frozenset[str] = frozenset()
    anonymous_pull: bool = False  # registry-wide switch
    scopes: tuple[tuple[str, str | None], ...] | None = None
    grants: dict[str, frozenset[str]] | None = None
    via: str = "anonymous"  # anonymous | password | token | bearer | key | signed-url
    expires_at: float | None = None  # epoch seconds: when the credential itself expires
    # The personal access token or Ollama key signed in with (``token:<id>``,
    # ``key:<id>``): a bearer token issued for it carries it, and dies with it.
    credential: str | None = None
    credential_name: str | None = None  # that token's name, for refusals
    # For a bearer token: repository -> actions asked for but not granted, so that a
    # later refusal explains the push a client set out to do, not only the pull it
    # was refused first.
    wanted: dict[str, frozenset[str]] | None = None

    @property
    def anonymous(self) -> bool:
        return self.name is None

    def role_allows(self, action: str, repository: str) -> bool:
        """Whether the user's roles (or anonymous pull) allow it, whatever the token."""
        if self.is_admin:
            return True
        ns = namespace_of(repository)
        if action == PULL and (self.anonymous_pull or ns in self.anonymous_namespaces):
            return True
        role = self.roles.get(ns)
        return role is not None and action in ROLES[role]

    def scope_allows(self, action: str, repository: str) -> bool:
        """Whether the personal access token's scopes allow it (no token: yes)."""
        if self.scopes is None:
            return True
        ns = namespace_of(repository)
        return any(a == action and (glob is None or fnmatch.fnmatchcase(ns, glob))
                   for a, glob in self.scopes)

    def can(self, action: str, repository: str) -> bool:
        """May this caller do ``action`` on ``repository``?"""
        if self.grants is not None:
            return action in self.grants.get(repository, ())
        return self.role_allows(action, repository) and self.scope_allows(action, repository)

    def allowed_actions(self, repository: str, requested: set[str]) -> set[str]:
        """The subset of ``requested`` this caller may do (what a bearer token gets)."""
        return {a for a in requested if a in ACTIONS and self.can(a, repository)}

    def site_admin(self) -> bool:
        """Site-wide administration: a site admin whose token (if any) has ``admin``."""
        return self.is_admin and self.grants is None and (
            self.scopes is None or any(a == ADMIN and g is None for a, g in self.scopes))

    def readable_namespaces(self) -> set[str] | None:
        """Namespaces whose repositories this caller may list; None: all of them.
        By role, not by a bearer token's grants: a listing only reveals names the
        caller could pull anyway (Docker clients list with a catalog-only token)."""
        if (self.is_admin or self.anonymous_pull) and (
                self.scopes is None or (PULL, None) in self.scopes):
            return None
        return {ns for ns in (*self.roles, *self.anonymous_namespaces)
                if self.role_allows(PULL, ns) and self.scope_allows(PULL, ns)}


ANONYMOUS = Identity(name=None)
