"""Signing in and out of the web interface (sessions: ``registry.web.session``).

Wrong passwords count against the same per-IP limit as wrong credentials on the APIs
(``registry.api.guard.FailedLogins``), so the form is no faster way to guess.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.api.guard import failed_logins
from registry.api.ratelimit import client_ip
from registry.web import session
from registry.web.render import render


def _next(value) -> str:
    """Where to go after signing in: a path on this registry only (never another site)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") \
            or "\\" in value or any(ord(c) < 32 for c in value):
        return "/"
    return value


async def sign_in_form(request: Request) -> Response:
    return render(request, "sign_in.html", next=_next(request.query_params.get("next")),
                  error=None, name="")


async def sign_in(request: Request) -> Response:
    data = await session.form(request)
    name, password = data.get("name"), data.get("password")
    target = _next(data.get("next"))
    if not request.app.state.settings.auth:
        return RedirectResponse(target, status_code=303)
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        return render(request, "sign_in.html", status=400, next=target, name=name or "",
                      error="Enter your user name and password.")
    ip = client_ip(request.scope)
    failed_logins(request).check(ip)
    access = request.app.state.registry.identities
    found = await run_in_threadpool(access.by_password, name, password)
    if found is None:
        failed_logins(request).failed(ip)
        return render(request, "sign_in.html", status=401, next=target, name=name,
                      error="Wrong user name or password.")
    key = await run_in_threadpool(access.signing_key)
    response = RedirectResponse(target, status_code=303)
    session.set_session(request, response, session.issue(key, found.name))
    return response


async def sign_out(request: Request) -> Response:
    await session.form(request)
    response = RedirectResponse("/", status_code=303)
    session.set_session(request, response, None)
    return response
