"""The home page: repositories, searchable and sortable, a page at a time.

Query parameters are the REST listing's (``GET /api/v1/repositories``): ``q``, ``sort``
(``-`` for descending), ``n`` and ``cursor``; the same parser reads them, so a bad value
gets the same message, here as a page.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from registry.api.guard import readable
from registry.api.oci.base import service
from registry.api.rest.browse import paging, text_param
from registry.services.browse import REPOSITORY_SORTS, BrowseService
from registry.web.render import render


def browse_service(request: Request) -> BrowseService:
    svc = service(request)
    return BrowseService(svc.db, svc.store, svc.settings)


async def repositories(request: Request) -> Response:
    sort, n, cursor = paging(request, REPOSITORY_SORTS)
    q = text_param(request, "q") or None
    page = await run_in_threadpool(browse_service(request).repositories, q=q, sort=sort,
                                   n=n, cursor=cursor, namespaces=readable(request))
    hidden = not page.items and q is None and cursor is None and \
        request.app.state.settings.auth and request.scope.get("assay.identity") is not None \
        and request.scope["assay.identity"].anonymous
    return render(request, "repositories.html", repositories=page.items, q=q or "",
                  sort=str(sort), sorts=REPOSITORY_SORTS, next_cursor=page.cursor,
                  sign_in_hint=hidden)
