"""Authentication and authorization over HTTP (``ASSAY_AUTH=1``).

Every route's handler is wrapped by ``guard(need)``, which states what the route
requires; ``tests/api/test_permissions.py`` checks each route against a permission
matrix. ``need`` is one of:

    ("repo", action)     an action on the repository in the ``name`` path parameter
    ("namespace", ADMIN) admin of the namespace in the ``namespace`` path parameter
                         ("_" or "": the registry-wide default, so site admin)
    SITE_ADMIN           a site admin (users, webhooks, audit log, storage summary)
    USER                 any signed-in caller (who am I, list my tokens and keys)
    ACCOUNT              a caller signed in with their password, or with a token whose
                         scopes include an unrestricted ``admin``: making or revoking
                         tokens and keys (a narrowed token must not mint a wider one)
    ANYONE               anonymous callers too (listings are filtered by what they
                         may pull; ``GET /v2/`` answers 401 so clients log in)
    PUBLIC               no authentication at all (the token endpoint, the OpenAPI
                         document, webhooks in, which check their own credentials)

Credentials, in ``Authorization``: ``Basic user:password``, ``Basic user:<personal
access token>`` (``user`` being the token's owner or ``token``), ``Bearer <personal
access token>``, or ``Bearer <token from GET /auth/token>`` (Docker token auth; the token
carries the actions it was granted, and dies with its user and with the personal access
token or Ollama key it was asked for with). A blob GET may instead carry a signed URL's
``expires`` and ``signature`` (Ollama fetches blob parts from the ``Location`` without
credentials), and so may a Hub LFS object PUT (a git-LFS basic transfer sends none: the
batch API signs the upload URL for its caller, ``tokens.sign_upload``).

A caller without credentials who may not do something gets 401 and a challenge (on /v2/
``Bearer realm=...,service=...,scope=...`` so Docker, skopeo, oras and Ollama fetch a
token; on /api/ ``Basic``); a signed-in caller gets 403 DENIED. Either message names the
namespace, the action, the role it needs and whether the user or the token lacks it
(``registry.access.refusals``). With auth off every route is open, as before.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import time
from collections.abc import Awaitable, Callable
from functools import wraps

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from registry.access import refusals, tokens
from registry.access.permissions import (
    ADMIN,
    DELETE,
    PULL,
    PUSH,
    Identity,
    namespace_of,
    parse_scopes,
)
from registry.api.ratelimit import client_ip
from registry.api.urls import absolute
from registry.errors import Denied, TooManyRequests, Unauthorized
from registry.services.audit import Actor, current_actor

SITE_ADMIN, USER, ACCOUNT, ANYONE, PUBLIC = "site-admin", "user", "account", "anyone", "public"
TOKEN_PATH = "/auth/token"
_CHALLENGE_ACTIONS = {PULL: "pull", PUSH: "pull,push", DELETE: "delete", ADMIN: "*"}

Handler = Callable[[Request], Awaitable[Response]]


def _settings(request: Request):
    return request.app.state.settings


def _identities(request: Request):
    return request.app.state.registry.identities


def base_url(request: Request) -> str:
    """This registry's absolute base URL, as the client sees it (``public_url``)."""
    return absolute(request, "")


def challenge(request: Request, scope: str | None = None) -> str:
    """The ``WWW-Authenticate`` value for a 401 on this path (values double-quoted, the
    realm on this host:port: Ollama insists on both)."""
    if request.url.path.startswith("/api/"):
        return 'Basic realm="assay"'
    s = _settings(request)
    value = f'Bearer realm="{base_url(request)}{TOKEN_PATH}",service="{s.auth_service}"'
    return value + (f',scope="{scope}"' if scope else "")


class CredentialCache:
    """Verified credentials by the sha256 of their ``Authorization`` header, for
    ``auth_cache_seconds``: argon2 costs ~50 ms, and a chunked upload sends the same
    header with every PATCH. Failures are not cached. This is also how long another
    replica goes on accepting a credential revoked or a user deleted on this one: a
    bearer token is checked against its user and the token or key it came from each
    time it is verified."""

    def __init__(self, ttl: float, size: int = 4096):
        self.ttl, self.size = ttl, size
        self._items: dict[str, tuple[float, Identity]] = {}

    def get(self, key: str) -> Identity | None:
        hit = self._items.get(key)
        # Never past the credential's own expiry (a bearer token's exp, a token's date).
        if hit is None or hit[0] < time.monotonic() or (
                hit[1].expires_at is not None and hit[1].expires_at <= time.time()):
            self._items.pop(key, None)
            return None
        return hit[1]

    def clear(self) -> None:
        """Forget everything: after a change to who may do what (this process at once,
        other replicas within their TTL)."""
        self._items.clear()

    def put(self, key: str, identity: Identity) -> None:
        if len(self._items) >= self.size:
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v[0] >= now}
            if len(self._items) >= self.size:
                self._items.clear()
        self._items[key] = (time.monotonic() + self.ttl, identity)


class FailedLogins:
    """Wrong credentials per client IP in a sliding minute. Past ``limit`` the IP gets
    429 TOOMANYREQUESTS *before* its credentials are checked, so guessing a password
    costs a minute per ``limit`` guesses and a right guess is not told apart."""

    def __init__(self, limit: int, window: float = 60.0):
        self.limit, self.window = limit, window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, ip: str) -> list[float]:
        cutoff = time.monotonic() - self.window
        recent = [t for t in self._failures.get(ip, ()) if t > cutoff]
        if recent:
            self._failures[ip] = recent
        else:
            self._failures.pop(ip, None)
        return recent

    def check(self, ip: str) -> None:
        recent = self._recent(ip)
        if self.limit and len(recent) >= self.limit:
            wait = recent[0] + self.window - time.monotonic()
            raise TooManyRequests(f"too many failed sign-ins from {ip}; retry in "
                                  f"{max(wait, 1):.0f} s", retry_after=wait)

    def failed(self, ip: str) -> None:
        if len(self._failures) > 100_000:
            self._failures.clear()
        self._failures.setdefault(ip, []).append(time.monotonic())


def failed_logins(request: Request) -> FailedLogins:
    state = request.app.state
    if getattr(state, "failed_logins", None) is None:
        state.failed_logins = FailedLogins(_settings(request).auth_max_failures_per_minute)
    return state.failed_logins


def credential_cache(request: Request) -> CredentialCache:
    state = request.app.state
    if getattr(state, "credential_cache", None) is None:
        state.credential_cache = CredentialCache(_settings(request).auth_cache_seconds)
    return state.credential_cache


def basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, secret) if sep else None


def verify_credentials(access, header: str, settings) -> Identity | None:
    """The identity behind an ``Authorization`` header (blocking: run in a thread), None
    if the credentials are wrong. Ollama's key signatures are only valid at /auth/token."""
    basic = basic_credentials(header)
    if basic is not None:
        user, secret = basic
        if tokens.is_pat(secret):
            identity = access.by_token(secret)
            # Another user's name with this token is someone confused or impersonating.
            if identity is not None and user not in (identity.name, tokens.PAT_USER):
                return None
            return identity
        return access.by_password(user, secret)
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    if tokens.is_pat(value):
        return access.by_token(value)
    try:
        claims = tokens.verify(access.signing_key(), value, service=settings.auth_service)
    except tokens.TokenInvalid:
        return None
    grants, wanted = tokens.grants_of(claims), tokens.wanted_of(claims)
    if not claims["sub"]:
        return Identity(name=None, grants=grants, wanted=wanted, via="bearer",
                        expires_at=claims["exp"],
                        anonymous_namespaces=access.anonymous_namespaces(),
                        anonymous_pull=settings.anonymous_pull)
    credential = claims.get("assay_credential")
    identity = access.by_subject(claims["sub"], issued_at=claims.get("iat"), grants=grants,
                                 credential=credential if isinstance(credential, str) else None)
    if identity is None:
        return None
    limits = claims.get("assay_scopes")
    try:
        scopes = tuple(parse_scopes(limits)) if isinstance(limits, list) else None
    except ValueError:
        return None
    return dataclasses.replace(identity, expires_at=claims["exp"], scopes=scopes,
                               wanted=wanted)


async def identify(request: Request) -> Identity:
    """Who is calling: the anonymous identity without credentials; raises 401
    (with a challenge) for credentials that are wrong, expired or revoked."""
    header = request.headers.get("authorization")
    access = _identities(request)
    if not header:
        return await run_in_threadpool(access.anonymous)
    key = hashlib.sha256(header.encode()).hexdigest()
    cache = credential_cache(request)
    identity = cache.get(key)
    if identity is None:
        ip = client_ip(request.scope)
        failed_logins(request).check(ip)
        identity = await run_in_threadpool(verify_credentials, access, header,
                                           _settings(request))
        if identity is None:
            failed_logins(request).failed(ip)
            raise Unauthorized("invalid credentials: wrong user name or password, or a "
                               "token that is unknown, revoked or expired",
                               challenge=challenge(request))
        cache.put(key, identity)
    return identity


def _signed_blob(request: Request) -> bool:
    q = request.query_params
    if "signature" not in q or not request.url.path.startswith("/v2/"):
        return False
    parts = request.url.path.split("/blobs/")
    if len(parts) != 2 or parts[1].startswith("uploads"):
        return False
    return tokens.check_blob_signature(_identities(request).signing_key(),
                                       request.path_params.get("name", ""),
                                       request.path_params.get("digest", ""),
                                       q.get("expires", ""), q["signature"])


def _signed_upload(request: Request) -> str | None:
    """The user a Hub LFS upload URL (``PUT /<repo>.git/info/lfs/objects/<oid>``) was
    signed for, or None when the request carries no valid signature."""
    if "signature" not in request.query_params or "/info/lfs/objects/" not in \
            request.url.path:
        return None
    return tokens.check_upload_signature(_identities(request).signing_key(),
                                         request.path_params.get("name", ""),
                                         request.path_params.get("oid", ""),
                                         request.query_params)


async def _signer(request: Request, user: str) -> Identity:
    """The identity a signed upload URL was made for, if they may still push there
    (their role or account may have gone since): 403 otherwise."""
    name = request.path_params["name"]
    if not user:  # signed for an anonymous caller: possible only with anonymous push
        identity = await run_in_threadpool(_identities(request).anonymous)
    else:
        identity = await run_in_threadpool(
            lambda: _identities(request).by_subject(user, issued_at=None, credential=None,
                                                    grants=None))
    if identity is None or not identity.can(PUSH, name):
        raise Denied(f"the upload URL was signed for {user or 'an anonymous caller'}, who "
                     f"may no longer push to {name}")
    return dataclasses.replace(identity, via="signed-url")


def _refuse(request: Request, identity: Identity, action: str, name: str,
            scope: str | None = None, *, namespace: bool = False):
    """401 with a challenge for callers who could do better by signing in (anonymous,
    or a bearer token that lacks an action its user's role and token allow:
    Distribution's ``insufficient_scope``, on which Ollama fetches a wider token); 403
    DENIED for callers whose role or token scope does not allow it. Either way the
    message says who lacks what (``registry.access.refusals``)."""
    wanted = (identity.wanted or {}).get(name, frozenset())
    base = dataclasses.replace(identity, grants=None, wanted=None)
    if identity.grants is not None and base.can(action, name):
        error = "" if identity.anonymous else ',error="insufficient_scope"'
        raise Unauthorized(f"the bearer token does not cover {action} on {name}: ask "
                           f"{TOKEN_PATH} for scope {scope}",
                           challenge=challenge(request, scope) + error)
    why = refusals.explain(base, action, name, also=wanted, namespace=namespace)
    if identity.anonymous:
        raise Unauthorized(why.message, why.detail, challenge=challenge(request, scope))
    raise Denied(why.message, why.detail)


def _refuse_site(request: Request, identity: Identity) -> None:
    why = refusals.site_admin(identity, f"{request.method} {request.url.path}")
    if identity.anonymous:
        raise Unauthorized(why.message, why.detail, challenge=challenge(request))
    raise Denied(why.message, why.detail)


def _challenge_actions(request: Request, action: str) -> str:
    # A blob HEAD is how Ollama and oras start a push (does the registry have it?):
    # ask for push too, so the token they fetch serves the whole push. A reader's token
    # is still cut down to pull by the token endpoint.
    if action == PULL and request.method == "HEAD" and "/blobs/" in request.url.path:
        return "pull,push"
    return _CHALLENGE_ACTIONS[action]


def check(request: Request, identity: Identity, need) -> None:
    """Raise 401/403 unless ``identity`` meets ``need`` (see the module docstring)."""
    if need in (PUBLIC, ANYONE):
        if need == ANYONE and request.url.path == "/v2/" and identity.anonymous \
                and identity.grants is None:
            raise Unauthorized("authentication required", challenge=challenge(request))
        return
    if need in (USER, ACCOUNT) and identity.anonymous:
        raise Unauthorized(f"anonymous callers may not {request.method} {request.url.path}: "
                           "sign in", challenge=challenge(request))
    if need == USER:
        return
    if need == ACCOUNT:
        full = identity.via == "password" or (
            identity.via == "token" and (ADMIN, None) in (identity.scopes or ()))
        if not full:
            raise Denied("managing tokens and keys needs your password (or a token with "
                         "the admin scope): a narrower token cannot make a wider one")
        return
    if need == SITE_ADMIN:
        if not identity.site_admin():
            _refuse_site(request, identity)
        return
    kind, action = need
    if kind == "repo":
        name = request.path_params["name"]
        if not identity.can(action, name):
            _refuse(request, identity, action, name,
                    f"repository:{name}:{_challenge_actions(request, action)}")
        return
    if kind == "namespace":
        ns = request.path_params["namespace"].strip("/")
        if ns in ("", "_"):
            if not identity.site_admin():
                _refuse_site(request, identity)
        elif not identity.can(action, namespace_of(ns)):
            _refuse(request, identity, action, namespace_of(ns), namespace=True)
        return
    raise AssertionError(f"unknown requirement {need!r}")


async def refuse_mirror_push(request: Request, name: str | None) -> None:
    """Nobody pushes into a mirror namespace, whatever their role: its content is the
    upstream's. Deleting stays allowed (it evicts from the cache), and so does what a
    route marks as no push (``guard(..., into_mirrors=True)``)."""
    from registry.api.oci.base import mirror_of  # here: the OCI package imports the guard

    m = await mirror_of(request, name) if name else None
    if m is not None:
        raise Denied(f"{name} is in namespace {m.namespace!r}, a mirror of {m.url}: pushes "
                     "are refused (pulls fetch from the upstream)",
                     {"mirror": m.namespace, "upstream": m.url})


def guard(need, *, into_mirrors: bool = False) -> Callable[[Handler], Handler]:
    """Wrap a route handler so it runs only for callers who meet ``need``; the caller is
    recorded for the audit log (``current_actor``) and upload limits (``assay.user``).
    A route that needs push is refused in mirror namespaces unless ``into_mirrors`` (it
    needs the right but stores no content: asking for a model to be verified again)."""

    def wrap(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: Request) -> Response:
            addr = client_ip(request.scope)
            if need == ("repo", PUSH) and not into_mirrors:
                await refuse_mirror_push(request, request.path_params.get("name"))
            if not _settings(request).auth:
                current_actor.set(Actor(None, addr))
                return await handler(request)
            if need == PUBLIC:
                identity = Identity(name=None)
            elif need == ("repo", PULL) and request.method in ("GET", "HEAD") \
                    and _signed_blob(request):
                identity = Identity(name=None, via="signed-url")
                request.scope["assay.identity"] = identity
                return await handler(request)
            elif need == ("repo", PUSH) and request.method == "PUT" \
                    and (signer := _signed_upload(request)) is not None:
                # Signed by the batch API for a caller who could push (a git-LFS PUT
                # carries no credentials), who must still be able to: the upload
                # counts to them.
                identity = await _signer(request, signer)
                request.scope["assay.identity"] = identity
                request.scope["assay.user"] = identity.name
                current_actor.set(Actor(identity.name, addr))
                return await handler(request)
            else:
                identity = await identify(request)
                check(request, identity, need)
            request.scope["assay.identity"] = identity
            request.scope["assay.user"] = identity.name
            current_actor.set(Actor(identity.name, addr))
            return await handler(request)

        guarded.requirement = need  # read by the permission-matrix test
        return guarded

    return wrap


def caller(request: Request) -> Identity | None:
    """The identity a guarded handler runs for; None when auth is off (all allowed)."""
    return request.scope.get("assay.identity")


def may(request: Request, action: str, repository: str) -> bool:
    identity = caller(request)
    return identity is None or identity.can(action, repository)


def readable(request: Request) -> set[str] | None:
    """Namespaces the caller may list (None: all), for catalog and browse filtering."""
    identity = caller(request)
    return None if identity is None else identity.readable_namespaces()


def blob_location(request: Request, name: str, digest: str) -> str:
    """Where a client should GET a blob: this URL, signed when auth is on (Ollama fetches
    the parts of a blob from it with no Authorization header)."""
    url = f"{base_url(request)}/v2/{name}/blobs/{digest}"
    if not _settings(request).auth:
        return url
    key = _identities(request).signing_key()
    return f"{url}?{tokens.sign_blob(key, name, digest, _settings(request).signed_url_seconds)}"
