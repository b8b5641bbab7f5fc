"""A repository's pages: its tags, and the model page of one tag or digest.

    GET  /<repo>                                      tags (REST .../tags: same params)
    GET  /<repo>/-/tags/<tag>                         the model page by tag
    GET  /<repo>/-/manifests/<digest>                 the same, by digest
    GET  /<repo>/-/manifests/<digest>/status          status JSON, polled while it verifies
    POST /<repo>/-/manifests/<digest>/verify          verify again (push, as REST verify)
    POST /<repo>/-/manifests/<digest>/override        let it through (repo admin, as REST)

Every read is the REST API's (``registry.api.rest.manifests.describe`` and the services it
calls), so a page shows what ``GET /api/v1/repositories/<repo>/tags/<tag>`` answers; the
rest is gathered in ``registry.web.model_parts``. The forms call the services the REST
handlers call, so checks and audit entries are the same.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from registry.access.permissions import ADMIN, PULL, PUSH
from registry.api.oci.base import absolute, quick_read, service
from registry.api.rest.browse import paging, tag_filters, text_param
from registry.digests import check_name, check_tag, is_digest, parse_digest
from registry.errors import NameInvalid, NameUnknown, RegistryError
from registry.services.browse import STATUSES, TAG_SORTS
from registry.web import model_parts as parts
from registry.web.browse import browse_service
from registry.web.render import render
from registry.web.session import form

MIB = 1024 * 1024
# What each route needs: the REST routes' needs for the same reads and changes.
NEED_PULL, NEED_PUSH, NEED_ADMIN = ("repo", PULL), ("repo", PUSH), ("repo", ADMIN)
# Notices after a form, by key: fixed text (nothing from the request is echoed).
NOTICES = {"verify": "Verification queued: the status below updates as it runs.",
           "override": "Let through: pulls by tag get this version now."}


def _name(request: Request) -> str:
    """The repository of the path; a name no repository can have is a page not found."""
    try:
        return check_name(request.path_params["name"])
    except NameInvalid:
        raise NameUnknown(f"there is no page at {request.url.path}") from None


def _digest(request: Request) -> str:
    reference = request.path_params["reference"]
    parse_digest(reference)  # DigestInvalid: a 400 page
    return reference


def model_url(name: str, tag: str | None, digest: str) -> str:
    if tag is not None:
        return f"/{name}/-/tags/{quote(tag, safe='')}"
    return f"/{name}/-/manifests/{digest}"


def _may(request: Request, action: str, name: str) -> bool:
    """Whether the browsing caller may ``action`` on ``name`` (auth off: everyone)."""
    if not request.app.state.settings.auth:
        return True
    who = request.scope.get("assay.identity")
    return who is not None and who.can(action, name)


# ---- the repository's tags -------------------------------------------------------------

async def repository(request: Request) -> Response:
    name = _name(request)
    given = request.query_params.multi_items()
    if any(v == "" for _, v in given):  # the form's "any": REST's filters take no ""
        kept = urlencode([(k, v) for k, v in given if v != ""])
        return RedirectResponse(f"/{name}" + (f"?{kept}" if kept else ""), status_code=303)
    sort, n, cursor = paging(request, TAG_SORTS)
    filters = tag_filters(request)
    page = await run_in_threadpool(browse_service(request).tags, name, filters, sort=sort,
                                   n=n, cursor=cursor)
    return render(request, "repository.html", name=name, tags=page.items, sort=str(sort),
                  sorts=TAG_SORTS, statuses=STATUSES, next_cursor=page.cursor,
                  q=text_param(request, "q") or "", status_filter=filters.statuses,
                  first_page=cursor is None, MIB=MIB)


# ---- the model page --------------------------------------------------------------------

async def _model_page(request: Request, name: str, reference: str, status: int = 200,
                      error: str | None = None, reason: str = "") -> Response:
    svc = service(request)
    data = await run_in_threadpool(parts.gather, svc, name, reference,
                                   absolute(request, "/"))
    detail = data["detail"]
    tag, digest = detail.get("tag"), detail["digest"]
    latest = detail.get("verification")
    versions = data["versions"]
    return render(
        request, "model.html", status=status, name=name, tag=tag, digest=digest,
        d=detail, card=detail.get("model"), v=latest, layout=data["layout"],
        runs=parts.runs(latest), classes=parts.classes(latest), fit=parts.fit(latest),
        quality=parts.quality(latest),
        regressions=parts.regressions(latest), history=data["history"],
        history_limit=parts.HISTORY, referrers=data["referrers"],
        referrer_count=data["referrer_count"], versions=versions,
        tps_chart=parts.chart(versions, "tokens_per_s"),
        memory_chart=parts.chart(versions, "peak_rss_bytes", scale=MIB, digits=0),
        commands=parts.pull_commands(absolute(request, "/"), name, tag, digest,
                                     data["layout"]),
        live=detail.get("status") in parts.LIVE, url=model_url(name, tag, digest),
        can_verify=detail.get("status") is not None and _may(request, PUSH, name),
        can_override=detail.get("status") not in (None, "ready")
        and _may(request, ADMIN, name),
        notice=NOTICES.get(request.query_params.get("done", "")), error=error,
        override_reason=reason, MIB=MIB)


async def model_by_tag(request: Request) -> Response:
    name = _name(request)
    tag = request.path_params["reference"]
    if is_digest(tag):  # a digest in the tag's place: its own page
        return RedirectResponse(f"/{name}/-/manifests/{tag}", status_code=303)
    check_tag(tag)
    return await _model_page(request, name, tag)


async def model_by_digest(request: Request) -> Response:
    name = _name(request)
    return await _model_page(request, name, _digest(request))


async def status(request: Request) -> JSONResponse:
    """``{"status", "reason", "job", "workers"?}``: what the page's status region shows,
    for static/model.js to poll while the model is queued or verifying."""
    name = _name(request)
    body = await quick_read(request, parts.live_state, service(request), name,
                            _digest(request))
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


# ---- actions ---------------------------------------------------------------------------

def _back(data: dict, name: str, digest: str) -> str:
    """The page the form came from: the tag's, when it names a valid one, else the
    digest's."""
    tag = data.get("tag")
    if isinstance(tag, str) and tag:
        try:
            check_tag(tag)
            return model_url(name, tag, digest)
        except RegistryError:
            pass
    return model_url(name, None, digest)


async def verify(request: Request) -> Response:
    """Verify again (as ``POST /api/v1/.../manifests/<digest>/verify``)."""
    name, digest = _name(request), _digest(request)
    data = await form(request)
    await run_in_threadpool(service(request).verification.request, name, digest)
    return RedirectResponse(_back(data, name, digest) + "?done=verify", status_code=303)


async def override(request: Request) -> Response:
    """Let it through (as ``POST /api/v1/.../manifests/<digest>/override``): by whoever
    is signed in; with auth off, as REST's default, ``admin``."""
    name, digest = _name(request), _digest(request)
    data = await form(request)
    reason = data.get("reason")
    reason = reason if isinstance(reason, str) else ""
    back = _back(data, name, digest)
    if not reason.strip():
        tag = data.get("tag") if back.startswith(f"/{name}/-/tags/") else None
        return await _model_page(request, name, tag or digest, status=400, reason=reason,
                                 error="Say why it may be let through: the reason is "
                                       "recorded in the audit log.")
    who = request.scope.get("assay.identity")
    by = (who.name or "anonymous") if who is not None else "admin"
    await run_in_threadpool(service(request).verification.override, name, digest, by,
                            reason)
    return RedirectResponse(back + "?done=override", status_code=303)
