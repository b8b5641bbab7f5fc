"""Administration pages under ``/-/admin``: what the signed-in user may manage.

    GET  /-/admin                         an index of what the caller may manage
    /-/admin/users[/<user>...]            users and robots, a robot's tokens (admin_access)
    /-/admin/tokens[...]                  the caller's own tokens (admin_access)
    /-/admin/namespaces[/<ns>...]         members, anonymous pull, quota, retention, the
                                          readiness gate and the verification profile
                                          (admin_namespaces)
    /-/admin/webhooks[...], /-/admin/workers, /-/admin/audit     (admin_ops)
    /-/admin/mirrors[...]                 mirror namespaces (admin_mirrors)

Each page and form checks what the REST route reading or changing the same thing checks
(``registry.api.rest``'s table) and calls the same service method, so the audit log and
the service's own checks are the same as over REST. A form answers with a redirect back
to its page and a one-time notice (a cookie the next page shows and drops), or with its
page again, the error said at the top and nothing changed.

This module holds the index and what the admin modules share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.access.permissions import ADMIN, Identity
from registry.api.guard import ACCOUNT, SITE_ADMIN, USER, caller
from registry.api.oci.base import service
from registry.errors import RegistryError
from registry.web.render import render

# The needs of the pages, REST's for the same reads and changes (registry/web/routes.py).
NEED_SITE = SITE_ADMIN  # users, webhooks, mirrors, workers, the audit log
NEED_USER = USER  # the index, the namespace list, one's own tokens listed
NEED_ACCOUNT = ACCOUNT  # one's own tokens made or revoked: a password session
NEED_NAMESPACE = ("namespace", ADMIN)  # one namespace's members and settings
NOTICE_COOKIE = "assay_notice"
NOTICE_PATH = "/-/admin"
MAX_NOTICE = 300
# Refusals of the input a form sent: the page again, with the message. Anything else
# (403 from a service's own check, 5xx) is an error page, as over REST.
INPUT_STATUSES = (400, 404, 409, 413)
T = TypeVar("T")
Page = Callable[..., Awaitable[Response]]


# ---- what the admin modules share --------------------------------------------------------

def who(request: Request) -> Identity | None:
    """The caller: None when auth is off (everything allowed, as over REST)."""
    return caller(request)


def is_site_admin(request: Request) -> bool:
    identity = who(request)
    return identity is None or identity.site_admin()


async def call(fn: Callable[..., T], *args, **kwargs) -> T:
    """A service call, off the event loop (services block on the database)."""
    return await run_in_threadpool(lambda: fn(*args, **kwargs))


def field(data: dict, name: str, default: str = "", *, strip: bool = True) -> str:
    """A form field as one string (a repeated field: its first value), stripped of
    surrounding white space unless ``strip`` is False (passwords are taken as typed)."""
    value = data.get(name, default)
    if isinstance(value, list):
        value = value[0] if value else default
    if not isinstance(value, str):
        return default
    return value.strip() if strip else value


def fields(data: dict, name: str) -> list[str]:
    """Every value of a repeated form field (checkboxes with one name)."""
    value = data.get(name)
    if value is None:
        return []
    return [v for v in (value if isinstance(value, list) else [value]) if v]


def checked(data: dict, name: str) -> bool:
    return field(data, name) in ("on", "true", "1", "yes")


def back(path: str, notice: str) -> RedirectResponse:
    """303 to ``path`` with ``notice`` for the next page to show once."""
    response = RedirectResponse(path, status_code=303)
    response.set_cookie(NOTICE_COOKIE, quote(notice[:MAX_NOTICE], safe=""), max_age=60,
                        httponly=True, samesite="strict", path=NOTICE_PATH)
    return response


def show(request: Request, template: str, status: int = 200, **context) -> Response:
    """``render`` for admin pages: adds the pending notice (and drops its cookie) and
    ``site_admin``. Context keys ``error`` and ``notice`` default to None."""
    notice = context.pop("notice", None)
    cookie = request.cookies.get(NOTICE_COOKIE)
    if notice is None and cookie and request.method == "GET":
        notice = unquote(cookie)[:MAX_NOTICE]
    context.setdefault("error", None)
    response = render(request, template, status=status, nav="admin", notice=notice,
                      site_admin=is_site_admin(request), **context)
    if cookie:
        response.delete_cookie(NOTICE_COOKIE, path=NOTICE_PATH)
    return response


async def attempt(request: Request, change: Callable[[], Any], redo: Page, *,
                  values: dict | None = None) -> tuple[Any, Response | None]:
    """Run the blocking ``change``; on a refusal of the input (400, 404, 409, 413) the
    answer is ``redo``'s page with the message, status and the values sent, and the
    result None. Anything else propagates (an error page)."""
    try:
        return await run_in_threadpool(change), None
    except RegistryError as exc:
        if exc.status not in INPUT_STATUSES:
            raise
        return None, await redo(request, error=exc.message, status=exc.status,
                                values=values or {})


def managed_namespaces(request: Request) -> list[str] | None:
    """The namespaces the caller administers, sorted; None: every one (site admin or
    auth off)."""
    identity = who(request)
    if identity is None or identity.site_admin():
        return None
    return sorted(ns for ns, role in identity.roles.items() if role == "admin")


async def namespace_list(request: Request) -> list[str]:
    mine = managed_namespaces(request)
    if mine is not None:
        return mine
    return await call(service(request).identities.namespace_names)


# ---- the index ---------------------------------------------------------------------------

async def index(request: Request) -> Response:
    """Links to what the caller may manage (needs a signed-in caller: ``USER``)."""
    identity = who(request)
    return show(request, "admin_index.html", namespaces=await namespace_list(request),
                tokens=identity is not None)
