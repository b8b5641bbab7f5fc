"""``GET /auth/token``: Docker token authentication (and Ollama's signed variant).

    GET /auth/token?service=assay&scope=repository:team/gemma3:pull,push[&scope=...]

Credentials: ``Basic user:password`` or ``Basic user:<personal access token>`` (skopeo,
oras, docker, containerd; ``user`` is the token's owner or ``token``), ``Bearer <personal
access token>``, Ollama's ``<public key>:<signature>`` with ``ts`` and ``nonce`` in the
query (see ``registry.access.ollama``), or none (an anonymous token: only what anonymous
callers may pull).

At most ``tokens.MAX_SCOPES`` scopes of at most ``tokens.MAX_SCOPE_LENGTH`` characters
each, else 400 with OCI error JSON.

Answer: ``{"token", "access_token", "expires_in", "issued_at"}``. The token is granted
the requested actions the caller may do, and no others (Distribution's semantics: a
reader asking for ``pull,push`` gets a ``pull`` token, and the push is then refused with
403 DENIED). What was asked for but not granted travels in the token (``assay_wanted``),
so that 403 names the role or token scope that is missing for the whole request (a push
refused on its first blob ``HEAD`` is explained as a push). Wrong credentials: 401
UNAUTHORIZED naming what was wrong; an anonymous request for more than anonymous
callers may do: 401 naming the namespace and the role it needs.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.access import ollama, refusals, tokens
from registry.access.permissions import ACTIONS, Identity, scope_strings
from registry.api.guard import (
    PUBLIC,
    base_url,
    credential_cache,
    failed_logins,
    guard,
    verify_credentials,
)
from registry.api.ratelimit import client_ip
from registry.digests import check_name
from registry.errors import NameInvalid, RequestInvalid, Unauthorized


def _requested(request: Request) -> list[str]:
    """The scopes asked for (repeated and space-separated alike); raises RequestInvalid
    past the bounds, before any is looked at."""
    scopes = []
    for value in request.query_params.getlist("scope"):
        scopes.extend(value.split())
        if len(scopes) > tokens.MAX_SCOPES:
            raise RequestInvalid(f"too many scopes: at most {tokens.MAX_SCOPES} per token")
    for scope in scopes:
        if len(scope) > tokens.MAX_SCOPE_LENGTH:
            raise RequestInvalid(f"scope {scope[:64]!r}... is too long: at most "
                                 f"{tokens.MAX_SCOPE_LENGTH} characters")
    return scopes


def _ollama_identity(request: Request, access, settings, key: str, sig: str) -> Identity:
    """Check an Ollama signed token request; raises Unauthorized saying what is wrong."""
    ts = request.query_params.get("ts", "")
    nonce = request.query_params.get("nonce", "")
    skew = settings.ollama_signature_skew_seconds
    if not ts.lstrip("-").isdigit() or abs(time.time() - int(ts)) > skew:
        raise Unauthorized(f"the signed token request's ts is missing or more than {skew} s "
                           "from the registry's clock", challenge='Basic realm="assay"')
    # What the client signed: the realm it was given, plus the query exactly as sent.
    url = f"{base_url(request)}{request.url.path}?{request.url.query}"
    if not ollama.verify_signature(key, sig, url):
        raise Unauthorized("the signature of the token request does not verify",
                           challenge='Basic realm="assay"')
    identity = access.by_key(key)
    if identity is None:
        try:
            fp = ollama.fingerprint(key)
        except Exception:  # noqa: BLE001 - a malformed key is just unknown
            fp = "?"
        raise Unauthorized(f"unknown Ollama key {fp}: register it with `assay key add`",
                           challenge='Basic realm="assay"')
    if not access.use_nonce(nonce, 2 * skew):
        raise Unauthorized("the token request's nonce was used already (a replay)",
                           challenge='Basic realm="assay"')
    return identity


def _issue_sync(request: Request, header: str | None) -> dict:
    settings = request.app.state.settings
    access = request.app.state.registry.identities
    service = request.query_params.get("service") or settings.auth_service
    if service != settings.auth_service:
        raise RequestInvalid(f"unknown service {service[:64]!r}: this is "
                             f"{settings.auth_service!r}")
    requested = _requested(request)
    if not settings.auth:
        # Nothing asks for credentials: a token is never needed, but one is harmless.
        identity = Identity(name=None, is_admin=True, via="anonymous")
    elif not header:
        identity = access.anonymous()
    elif (signed := ollama.split_authorization(header)) is not None:
        identity = _ollama_identity(request, access, settings, *signed)
    else:
        # Verified passwords are cached as on every other route: argon2 per token
        # request would cap this endpoint at a few requests a second per core.
        cache, key = credential_cache(request), hashlib.sha256(header.encode()).hexdigest()
        identity = cache.get(key) or verify_credentials(access, header, settings)
        if identity is not None and identity.grants is None:
            cache.put(key, identity)
        if identity is None or identity.grants is not None:
            raise Unauthorized("invalid credentials: wrong user name or password, or a "
                               "token that is unknown, revoked or expired",
                               challenge='Basic realm="assay"')
    granted, wanted = [], []
    for scope in requested:
        parsed = tokens.parse_scope(scope)
        if parsed is None:
            raise RequestInvalid(f"invalid scope {scope!r}: expected "
                                 "repository:<name>:<actions>")
        kind, name, actions = parsed
        if kind == "registry":
            if name == "catalog" and not identity.anonymous:
                granted.append({"type": "registry", "name": "catalog", "actions": ["*"]})
            continue
        try:
            check_name(name)
        except NameInvalid:
            continue
        asked = set(ACTIONS) if "*" in actions else actions & set(ACTIONS)
        allowed = identity.allowed_actions(name, asked)
        granted.append({"type": "repository", "name": name, "actions": sorted(allowed)})
        if allowed != asked:
            wanted.append({"type": "repository", "name": name,
                           "actions": sorted(asked - allowed)})
    if identity.anonymous and wanted:
        # Clients (oras, skopeo) try an anonymous token first: refuse one that would
        # not do what they asked, so they sign in instead of failing on a bare 403.
        first = wanted[0]
        why = refusals.explain(identity, first["actions"][0], first["name"],
                               also=first["actions"])
        raise Unauthorized(f"authentication required: {why.message}", why.detail,
                           challenge='Basic realm="assay"')
    token, ttl = tokens.issue(access.signing_key(), subject=identity.name, service=service,
                              issuer=base_url(request), access=granted,
                              ttl=settings.auth_token_seconds, limits=scope_strings(identity),
                              credential=identity.credential, wanted=wanted)
    return {"token": token, "access_token": token, "expires_in": ttl,
            "issued_at": datetime.now(UTC).isoformat()}


@guard(PUBLIC)
async def token(request: Request) -> JSONResponse:
    header = request.headers.get("authorization")
    ip = client_ip(request.scope)
    if header:
        failed_logins(request).check(ip)
    try:
        body = await run_in_threadpool(_issue_sync, request, header)
    except Unauthorized:
        if header:  # an anonymous request refused is no failed sign-in
            failed_logins(request).failed(ip)
        raise
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
