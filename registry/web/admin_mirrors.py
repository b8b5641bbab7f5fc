"""Mirror namespaces in the browser (site admin, as over REST).

    GET  /-/admin/mirrors[?edit=<ns>]              every mirror; add one or change one
                                                   (``edit`` fills the form with it)
    POST /-/admin/mirrors                          PUT /api/v1/mirrors/<ns>
    POST /-/admin/mirrors/<ns>/delete              DELETE /api/v1/mirrors/<ns>

Every change is ``MirrorService.set`` or ``delete``, as over REST, so the checks and the
audit entries (``mirror.set``, ``mirror.delete``) are the same. The upstream's password
is never shown, nor put back into the form: the page says only whether one is stored.
An empty password field keeps the stored one (while the username stays the same, as
REST's omitted ``password``); "Remove the stored password" sends REST's ``""``.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from registry.api.oci.base import service
from registry.errors import RequestInvalid
from registry.services.mirrors import DEFAULT_REFRESH, KINDS, Mirror
from registry.spans import duration
from registry.web import session
from registry.web.admin import attempt, back, call, checked, field, show

MIRRORS = "/-/admin/mirrors"
# REST's limits on the same fields (registry.api.rest.mirrors.MirrorRequest): the
# service leaves them to its callers.
MAX_URL, MAX_USERNAME, MAX_PASSWORD = 2048, 255, 4096


def every(seconds: int) -> str:
    """A refresh time as people read it: ``1h``, ``2d3h``, ``15m``; 0 is every pull."""
    return "every pull" if seconds <= 0 else duration(timedelta(seconds=seconds))


def _form_of(m: Mirror | None) -> dict:
    """The form's values for changing ``m`` (an empty form for a new mirror)."""
    if m is None:
        return {"namespace": "", "kind": "ollama", "url": "", "username": "",
                "refresh_seconds": str(DEFAULT_REFRESH), "verify_first": False,
                "keep_days": ""}
    return {"namespace": m.namespace, "kind": m.kind, "url": m.url,
            "username": m.username or "", "refresh_seconds": str(m.refresh_seconds),
            "verify_first": m.verify_first,
            "keep_days": "" if m.keep_days is None else str(m.keep_days)}


async def mirrors_page(request: Request, *, error: str | None = None, status: int = 200,
                       values: dict | None = None) -> Response:
    """The list and the form; ``values`` (a refused form's) win over ``?edit=``'s."""
    mirrors = service(request).mirrors
    found = await call(mirrors.list)
    edit = request.query_params.get("edit", "").strip() if values is None else ""
    editing = await call(mirrors.get, edit) if edit else None  # unknown: the 404 page
    form = _form_of(editing)
    form.update(values or {})
    return show(request, "admin_mirrors.html", status=status, error=error, form=form,
                mirrors=found, kinds=KINDS, every=every, editing=editing is not None)


def _number(text: str, name: str, *, optional: bool = False) -> int | None:
    if not text and optional:
        return None
    if not (text.isascii() and text.isdigit()):
        raise RequestInvalid(f'"{name}" must be a whole number'
                             + (", or empty for none" if optional else ""))
    return int(text)


def _limit(text: str | None, name: str, most: int) -> None:
    if text is not None and len(text) > most:
        raise RequestInvalid(f'"{name}" is at most {most} characters')


async def set_mirror(request: Request) -> Response:
    """PUT /api/v1/mirrors/<ns> {"kind", "url", "username", "password",
    "refresh_seconds", "verify_first", "keep_days"}: an empty password keeps the stored
    one, "Remove the stored password" removes it."""
    data = await session.form(request)
    ns, kind, url, username = (field(data, k) for k in ("namespace", "kind", "url",
                                                        "username"))
    typed = field(data, "password", strip=False)
    password = "" if checked(data, "remove_password") else (typed or None)
    refresh, keep = field(data, "refresh_seconds"), field(data, "keep_days")
    verify_first = checked(data, "verify_first")
    mirrors = service(request).mirrors

    def change() -> Mirror:
        _limit(url, "url", MAX_URL)
        _limit(username, "username", MAX_USERNAME)
        _limit(password, "password", MAX_PASSWORD)
        return mirrors.set(ns, kind=kind, url=url, username=username or None,
                           password=password,
                           refresh_seconds=_number(refresh, "refresh_seconds"),
                           verify_first=verify_first,
                           keep_days=_number(keep, "keep_days", optional=True))

    # The password is not sent back into the form: a refused form asks for it again.
    m, failed = await attempt(request, change, mirrors_page, values={
        "namespace": ns, "kind": kind, "url": url, "username": username,
        "refresh_seconds": refresh, "verify_first": verify_first, "keep_days": keep})
    if failed:
        return failed
    return back(MIRRORS, f"{m.namespace} now mirrors {m.url} ({m.kind}).")


async def delete_mirror(request: Request) -> Response:
    """DELETE /api/v1/mirrors/<ns>: what the namespace cached stays."""
    await session.form(request)
    ns = request.path_params["namespace"]
    await call(service(request).mirrors.delete, ns)  # unknown: the 404 page
    return back(MIRRORS, f"{ns.strip('/')} is no longer a mirror; what it cached stays.")
