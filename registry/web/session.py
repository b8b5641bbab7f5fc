"""Who is browsing: session cookies, CSRF tokens, and ``page(need)``, the pages' guard.

A session is a signed token (HS256 with the registry's signing key, shared by every
replica; audience ``assay-web`` so it is no bearer token anywhere else) in an HttpOnly,
SameSite=Lax cookie, good for ``SESSION_SECONDS``. It names the user and when it was
issued: it dies with the user (deleted or disabled, checked on every request), and
signing out removes it from the browser.

CSRF: every form carries the value of the ``assay_csrf`` cookie (random, HttpOnly,
SameSite=Strict); a POST whose form value differs, or whose ``Origin`` is another site,
is refused before anything is read or changed (double-submit, which works across
replicas without server state).
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import quote, urlsplit

import jwt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.access.permissions import Identity
from registry.api import guard
from registry.api.errors import WEB
from registry.api.ratelimit import client_ip
from registry.errors import Denied, RequestInvalid, Unauthorized
from registry.services.audit import Actor, current_actor

COOKIE = "assay_session"
CSRF_COOKIE = "assay_csrf"
CSRF_FIELD = "csrf"
AUDIENCE = "assay-web"
SESSION_SECONDS = 12 * 3600
MAX_FORM_BYTES = 64 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def issue(key: str, user: str, now: float | None = None) -> str:
    now = int(time.time() if now is None else now)
    return jwt.encode({"sub": user, "aud": AUDIENCE, "iat": now,
                       "exp": now + SESSION_SECONDS, "jti": uuid.uuid4().hex},
                      key, algorithm="HS256")


def read(key: str, value: str) -> dict | None:
    """The claims of a session cookie, None when it is forged, for elsewhere or expired."""
    try:
        claims = jwt.decode(value, key, algorithms=["HS256"], audience=AUDIENCE,
                            options={"require": ["sub", "iat", "exp"]})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims.get("sub"), str) and claims["sub"] else None


def _auth(request: Request) -> bool:
    return bool(request.app.state.settings.auth)


async def identity(request: Request) -> Identity | None:
    """The browsing identity: None when auth is off (everything allowed, as on REST),
    the session's user, else the anonymous caller."""
    if not _auth(request):
        return None
    access = request.app.state.registry.identities
    value = request.cookies.get(COOKIE)
    if value:
        claims = read(await run_in_threadpool(access.signing_key), value)
        if claims is not None:
            found = await run_in_threadpool(
                lambda: access.by_subject(claims["sub"], issued_at=claims["iat"],
                                          credential=None, grants=None))
            if found is not None:
                # Signed in with a password: may manage their tokens (guard's ACCOUNT).
                return dataclasses.replace(found, via="password")
    return await run_in_threadpool(access.anonymous)


def csrf_value(request: Request) -> str:
    """This browser's CSRF token (a new one until the cookie is set; ``render`` sets it)."""
    value = request.cookies.get(CSRF_COOKIE)
    if not value or len(value) != 43:
        value = request.scope.setdefault("assay.csrf", secrets.token_urlsafe(32))
    return value


def set_cookies(request: Request, response: Response) -> None:
    """Set the CSRF cookie on a page that made a new token."""
    new = request.scope.get("assay.csrf")
    if new is not None and request.cookies.get(CSRF_COOKIE) != new:
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")


def set_session(request: Request, response: Response, value: str | None) -> None:
    if value is None:
        response.delete_cookie(COOKIE, path="/")
        return
    response.set_cookie(COOKIE, value, max_age=SESSION_SECONDS, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https", path="/")


async def form(request: Request) -> dict[str, str | list[str]]:
    """A POSTed form, after its CSRF check: one value per field, or a list when repeated.
    Raises Denied for a missing or wrong token or a foreign Origin."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = urlsplit(origin).netloc
        if host != request.headers.get("host", ""):
            raise Denied(f"a form from {origin} may not change this registry")
    if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
        raise RequestInvalid(f"a form is at most {MAX_FORM_BYTES} bytes")
    data = await request.form(max_files=0, max_fields=200)
    sent = data.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not cookie or not hmac.compare_digest(sent, cookie):
        raise Denied("the form's security token is missing or stale: reload the page and "
                     "send it again")
    out: dict[str, str | list[str]] = {}
    for key in data:
        values = [v for v in data.getlist(key) if isinstance(v, str)]
        out[key] = values[0] if len(values) == 1 else values
    return out


def sign_in_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/-/sign-in?next={quote(target, safe='')}"


def page(need) -> Callable[[Handler], Handler]:
    """Wrap a page handler: the caller must meet ``need`` exactly as on REST
    (``registry.api.guard``). An anonymous visitor who may not see a page is sent to
    sign in; a signed-in one gets a 403 page saying who lacks what."""

    def wrap(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: Request) -> Response:
            started = time.perf_counter()
            response = await _serve(request)
            # Server time, for the browser's devtools and bench/web_pages.py.
            response.headers["Server-Timing"] = \
                f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            return response

        async def _serve(request: Request) -> Response:
            request.scope[WEB] = True
            who = None if need == guard.PUBLIC else await identity(request)
            current_actor.set(Actor(who.name if who else None, client_ip(request.scope)))
            if who is not None:
                request.scope["assay.identity"] = who
                request.scope["assay.user"] = who.name
                if need != guard.ANYONE:
                    try:
                        guard.check(request, who, need)
                    except Unauthorized:
                        if request.method == "GET":
                            return RedirectResponse(sign_in_url(request), status_code=303)
                        raise
            return await handler(request)

        guarded.requirement = need  # read by the permission-matrix tests
        guarded.web = True  # signs in with a session: tests/api/test_web_permissions.py
        return guarded

    return wrap


def me(request: Request) -> Identity | None:
    """The signed-in identity of a page, None when auth is off or anonymous."""
    who: Identity | None = request.scope.get("assay.identity")
    return None if who is None or who.anonymous else who
