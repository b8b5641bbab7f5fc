"""Why a caller may not do something, and what would let them (pure functions).

Every refusal names the namespace, the action and the role it needs, and who lacks it:

- ``anonymous``: nobody signed in (``anonymous callers may not push team/gemma3:
  pushing needs the write role in namespace team; sign in as a user who has it``);
- ``user``: the user's role in the namespace is missing or too low (``alice has no
  write role in namespace other (pushing other/gemma3 needs write); a namespace admin
  can grant it: assay namespace grant other alice write``);
- ``token``: the user may, but the personal access token used (or the one a bearer
  token was asked for with) is narrower (``the token 'ci' (scope: pull) may not push
  team/gemma3; alice has write there: use a token with the push scope``).

When both the user and the token fall short, the user's role is named first (granting
it is the step that has to come first) and the token second.

``also`` names actions the caller asked for together with the refused one (a Docker
token request for ``pull,push`` whose ``push`` was not granted): a push that is refused
on its first blob ``HEAD`` is then explained as the push it is, not as a pull.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from registry.access.permissions import (
    ACTIONS,
    ADMIN,
    DELETE,
    PULL,
    PUSH,
    Identity,
    namespace_of,
    scope_strings,
)

ROLE_NEEDED = {PULL: "read", PUSH: "write", DELETE: "admin", ADMIN: "admin"}
_VERB = {PULL: "pull", PUSH: "push", DELETE: "delete from", ADMIN: "administer"}
_DOING = {PULL: "pulling", PUSH: "pushing", DELETE: "deleting from", ADMIN: "administering"}


@dataclass(frozen=True)
class Refusal:
    """``message``: one line for people; ``detail``: the same facts for programs (the
    OCI error's ``detail``); ``lacking``: ``anonymous``, ``user``, ``token`` or
    ``user and token``."""

    message: str
    lacking: str
    detail: dict = field(default_factory=dict)


def _top(identity: Identity, action: str, repository: str, also: Iterable[str]) -> str:
    """The most demanding action asked for that the caller may not do (``action`` if
    none of ``also`` is refused)."""
    wanted = {action, *also}
    refused = [a for a in ACTIONS if a in wanted and not identity.can(a, repository)]
    return refused[-1] if refused else action


def token_label(identity: Identity) -> str:
    """``the token 'ci' (scopes: pull, push:team)``."""
    scopes = scope_strings(identity) or []
    name = f" {identity.credential_name!r}" if identity.credential_name else ""
    plural = "s" if len(scopes) != 1 else ""
    return f"the token{name} (scope{plural}: {', '.join(scopes) or 'none'})"


def _held(identity: Identity, ns: str) -> str:
    """What the user has in ``ns``, for "... has X there"."""
    if identity.is_admin:
        return f"{identity.name} is a site admin"
    role = identity.roles.get(ns)
    if role:
        return f"{identity.name} has {role} there"
    return f"namespace {ns} is open to anonymous pull"


def explain(identity: Identity, action: str, repository: str, *, also: Iterable[str] = (),
            namespace: bool = False) -> Refusal:
    """Why ``identity`` (judged by its role and token scopes, not a bearer token's
    grants) may not do ``action`` on ``repository`` (with ``namespace``: on the
    namespace itself, ``repository`` being its name)."""
    ns = namespace_of(repository)
    top = _top(identity, action, repository, also)
    role = ROLE_NEEDED[top]
    subject = f"namespace {ns}" if namespace else repository
    doing = f"{_DOING[top]} {subject}"
    verbs = " or ".join(_VERB[a] for a in ACTIONS if a in {action, *also}
                        and not identity.can(a, repository)) or _VERB[action]
    detail = {"namespace": ns, "action": top, "role_needed": role,
              **({} if namespace else {"repository": repository})}
    if identity.anonymous:
        closed = (f"; namespace {ns} is not open to anonymous pull" if top == PULL
                  else "")
        return Refusal(f"anonymous callers may not {verbs} {subject}: {doing} needs the "
                       f"{role} role in namespace {ns}{closed}; sign in as a user who has "
                       "it", "anonymous", {**detail, "lacking": "anonymous"})
    name = identity.name
    by_role = identity.role_allows(top, repository)
    by_scope = identity.scope_allows(top, repository)
    detail |= {"user": name, "role": identity.roles.get(ns)}
    if identity.scopes is not None:
        detail |= {"token": identity.credential_name, "token_scopes": scope_strings(identity)}
    if not by_role:
        held = identity.roles.get(ns)
        has = f"; {name} has {held}" if held else ""
        who = f"robot {name}" if identity.is_robot else name
        text = (f"{who} has no {role} role in namespace {ns} ({doing} needs {role}{has}); "
                f"a namespace admin can grant it: assay namespace grant {ns} {name} {role}")
        lacking = "user"
        if not by_scope:
            text += f"; {token_label(identity)} does not allow {top} there either"
            lacking = "user and token"
        return Refusal(text, lacking, {**detail, "lacking": lacking})
    return Refusal(f"{token_label(identity)} may not {verbs} {subject}; "
                   f"{_held(identity, ns)}: use a token with the {top} (or {top}:{ns}) "
                   "scope", "token", {**detail, "lacking": "token"})


def site_admin(identity: Identity, what: str) -> Refusal:
    """Why ``identity`` may not do ``what`` (e.g. ``GET /api/v1/users``), which needs a
    site admin."""
    if identity.anonymous:
        return Refusal(f"anonymous callers may not {what}: it needs a site admin; sign in "
                       "as one", "anonymous", {"lacking": "anonymous", "role_needed":
                                               "site admin"})
    detail = {"user": identity.name, "role_needed": "site admin"}
    if identity.is_admin:  # the user is one, the token is not allowed to act as one
        return Refusal(f"{token_label(identity)} may not {what}; {identity.name} is a site "
                       "admin: use the password or a token with the admin scope", "token",
                       {**detail, "lacking": "token",
                        "token_scopes": scope_strings(identity)})
    return Refusal(f"{identity.name} is not a site admin ({what} needs one); a site admin "
                   f"can make them one: assay user admin {identity.name}", "user",
                   {**detail, "lacking": "user"})

