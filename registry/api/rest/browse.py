"""Browsing over REST: repositories, the tags of one, and tagged models registry-wide.

    GET /api/v1/repositories                 ?q= &prefix= &sort=name|updated|tags|size
    GET /api/v1/repositories/<name>/tags     ?status= &format= &backend= &architecture=
                                             &quantization= &min_tokens_per_s=
                                             &max_memory_mb= &q=
                                             &sort=name|updated|size|tokens_per_s|memory
    GET /api/v1/models                       the same filters, every repository

Every listing takes ``n`` (page size, 1..500, default 50) and ``cursor``; ``-`` before a
sort key sorts descending. A page that is not the last carries ``Link: <...>;
rel="next"`` (and the same URL as ``"next"`` in the body): follow it as is. List filters
take comma-separated values (``status=ready,failed``) or repeat the parameter. An unknown
parameter, or a value out of range, is a 400 problem; an unknown repository a 404.
See ``registry.services.browse`` for the rows and the cursor.
"""

from __future__ import annotations

import math
import re
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.guard import readable
from registry.api.oci.base import repo_name, service
from registry.errors import RequestInvalid
from registry.services.browse import (
    DEFAULT_PAGE,
    FORMATS,
    MAX_PAGE,
    REPOSITORY_SORTS,
    STATUSES,
    TAG_SORTS,
    BrowseService,
    Page,
    Sort,
    TagFilter,
)

PAGING = {"n", "cursor", "sort"}
REPOSITORY_PARAMS = PAGING | {"q", "prefix"}
TAG_PARAMS = PAGING | {"q", "status", "format", "backend", "architecture", "quantization",
                       "min_tokens_per_s", "max_memory_mb"}
MAX_TEXT = 255
_N = re.compile(r"[0-9]{1,6}")


def _browse(request: Request) -> BrowseService:
    svc = service(request)
    return BrowseService(svc.db, svc.store, svc.settings)


def _check_params(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise RequestInvalid(f"unknown query parameter(s): {', '.join(unknown)}; this "
                             f"endpoint takes {', '.join(sorted(allowed))}")


def _text(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise RequestInvalid(f"{name} is given more than once")
    value = values[0]
    if len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise RequestInvalid(f"{name} must be at most {MAX_TEXT} printable characters")
    return value


def _list(request: Request, name: str, allowed: tuple[str, ...] | None = None
          ) -> tuple[str, ...]:
    values = []
    for raw in request.query_params.getlist(name):
        for value in raw.split(","):
            if not value or len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
                raise RequestInvalid(f"{name} takes comma-separated non-empty values of at "
                                     f"most {MAX_TEXT} printable characters")
            if allowed is not None and value not in allowed:
                raise RequestInvalid(f"{name} must be one of {', '.join(allowed)}, "
                                     f"not {value!r}")
            values.append(value)
    return tuple(dict.fromkeys(values))


def _number(request: Request, name: str) -> float | None:
    raw = _text(request, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise RequestInvalid(f"{name} must be a non-negative number, not {raw!r}")
    return value


def _paging(request: Request, sorts: tuple[str, ...]) -> tuple[Sort, int, str | None]:
    raw = _text(request, "n")
    n = DEFAULT_PAGE
    if raw is not None:
        if not _N.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE:
            raise RequestInvalid(f"n must be an integer from 1 to {MAX_PAGE}, not {raw!r}")
        n = int(raw)
    cursor = request.query_params.get("cursor") or None  # checked by the service
    return Sort.parse(_text(request, "sort"), sorts), n, cursor


def _filters(request: Request) -> TagFilter:
    return TagFilter(
        statuses=_list(request, "status", STATUSES),
        formats=_list(request, "format", FORMATS),
        backends=_list(request, "backend"),
        architectures=_list(request, "architecture"),
        quantizations=_list(request, "quantization"),
        min_tokens_per_s=_number(request, "min_tokens_per_s"),
        max_memory_mb=_number(request, "max_memory_mb"),
        q=_text(request, "q") or None,
    )


def _next_url(request: Request, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    return f"{request.url.path}?{urlencode([*params, ('cursor', cursor)])}"


def _listing(request: Request, key: str, page: Page, **extra) -> JSONResponse:
    url = _next_url(request, page.cursor)
    headers = {"Link": f'<{url}>; rel="next"'} if url else None
    return JSONResponse({**extra, key: page.items, "next": url}, headers=headers)


def _tag_hrefs(items: list[dict]) -> list[dict]:
    for item in items:
        item["href"] = (f"/api/v1/repositories/{item['repository']}/tags/"
                        f"{quote(item['tag'], safe='')}")
    return items


async def list_repositories(request: Request) -> JSONResponse:
    _check_params(request, REPOSITORY_PARAMS)
    sort, n, cursor = _paging(request, REPOSITORY_SORTS)
    page = await run_in_threadpool(_browse(request).repositories,
                                   q=_text(request, "q") or None,
                                   prefix=_text(request, "prefix") or None, sort=sort, n=n,
                                   cursor=cursor, namespaces=readable(request))
    for item in page.items:
        item["href"] = f"/api/v1/repositories/{item['name']}/tags"
    return _listing(request, "repositories", page)


async def list_tags(request: Request) -> JSONResponse:
    _check_params(request, TAG_PARAMS)
    name = repo_name(request)
    sort, n, cursor = _paging(request, TAG_SORTS)
    page = await run_in_threadpool(_browse(request).tags, name, _filters(request), sort=sort,
                                   n=n, cursor=cursor)
    _tag_hrefs(page.items)
    return _listing(request, "tags", page, repository=name)


async def list_models(request: Request) -> JSONResponse:
    _check_params(request, TAG_PARAMS)
    sort, n, cursor = _paging(request, TAG_SORTS)
    page = await run_in_threadpool(_browse(request).models, _filters(request), sort=sort,
                                   n=n, cursor=cursor, namespaces=readable(request))
    _tag_hrefs(page.items)
    return _listing(request, "models", page)
