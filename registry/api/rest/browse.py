"""Browsing over REST: repositories, the tags of one, and tagged models registry-wide.

    GET /api/v1/repositories                 ?q= &prefix= &sort=name|updated|tags|size
    GET /api/v1/repositories/<name>/tags     ?status= &format= &backend= &architecture=
                                             &quantization= &min_tokens_per_s=
                                             &max_memory_mb= &max_perplexity=
                                             &fits_memory= [&context=] [&kv_cache=] &q=
                                             &class=
                                             &sort=name|updated|size|tokens_per_s|memory
                                                   |perplexity
    GET /api/v1/models                       the same filters, every repository

Every listing takes ``n`` (page size, 1..500, default 50) and ``cursor``; ``-`` before a
sort key sorts descending. A page that is not the last carries ``Link: <...>;
rel="next"`` (and the same URL as ``"next"`` in the body): follow it as is. List filters
take comma-separated values (``status=ready,failed``) or repeat the parameter. Every
value that names something (status, format, backend, architecture, quantization,
kv_cache) is matched in any case (``format=GGUF``). An unknown parameter, or a value out
of range, is a 400 problem; an unknown repository a 404.
``fits_memory`` is bytes or a size (``16GiB``, ``16GB``; pydantic's ``ByteSize``);
``context`` (tokens, default 4096) and ``kv_cache`` (f16 default, q8_0, q4_0) say what
it is asked at, and only go with it. ``class`` (a hardware class name: lower case
letters, digits, ``-`` and ``_``) makes the figures, and the filters and sorts on them,
those of the latest verification on that class instead of the latest of any.
See ``registry.services.browse`` for the rows and the cursor.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from urllib.parse import quote, urlencode

from pydantic import ByteSize, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.guard import readable
from registry.api.oci.base import repo_name, service
from registry.api.rest.common import operation
from registry.api.rest.schemas import Answer, Format, ModelStatus, Verdict, query_param
from registry.errors import RequestInvalid
from registry.formats.fit import KV_CACHE_TYPES
from registry.profiles import CLASS_NAME
from registry.services.browse import (
    DEFAULT_CONTEXT,
    DEFAULT_PAGE,
    FORMATS,
    MAX_CONTEXT,
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
                       "min_tokens_per_s", "max_memory_mb", "max_perplexity",
                       "fits_memory", "context", "kv_cache", "class"}
MAX_TEXT = 255
_N = re.compile(r"[0-9]{1,6}")
_CONTEXT = re.compile(r"[0-9]{1,9}")
_CLASS = re.compile(CLASS_NAME[1:-1])
# A byte count or a size with a unit; pydantic's ByteSize then reads the unit.
SIZE_PATTERN = r"^[0-9]{1,30}(\.[0-9]{1,30})? ?[A-Za-z]{0,3}$"
_SIZE = re.compile(SIZE_PATTERN[1:-1])
_BYTES = TypeAdapter(ByteSize)


class Repository(Answer):
    name: str
    tag_count: int
    manifest_count: int
    model_count: int = Field(description="Manifests that are models.")
    size: int = Field(description="Bytes of every blob its manifests refer to, once.")
    created: datetime
    updated: datetime = Field(description="Its newest tag move or manifest push.")
    href: str = Field(description="Its tags.")


class RepositoryPage(Answer):
    repositories: list[Repository]
    next: str | None = Field(description="The next page (as in Link).")


class TagRow(Answer):
    """A tag, the manifest it points at now, its model card's columns and its latest
    verification's figures (with ``class``: its latest on that hardware class; null:
    unknown, not a model, or no result on the class)."""

    repository: str
    tag: str
    digest: str
    mediaType: str  # the OCI field's name
    artifactType: str | None
    status: ModelStatus | None
    reason: str | None = Field(description="Why the model is not ready (a failed "
                                           "verification's reason); null when ready.")
    size: int = Field(description="Bytes of the manifest's blobs.")
    updated: datetime = Field(description="When the tag last moved.")
    format: Format | None
    architecture: str | None
    parameter_count: int | None
    quantization: str | None
    context_length: int | None
    verdict: Verdict | None
    backend: str | None
    tokens_per_s: float | None = Field(description="Generation tokens/s.")
    peak_rss_bytes: int | None
    perplexity: float | None = Field(description="On the project's English text.")
    regressions: int | None = Field(description="Regressions found against the previous "
                                                "version of a tag; null: none to compare "
                                                "with.")
    verified_at: datetime | None
    href: str = Field(description="Its full model card.")


class TagPage(Answer):
    repository: str
    tags: list[TagRow]
    next: str | None


class ModelPage(Answer):
    models: list[TagRow]
    next: str | None


# ---- the query parameters, as documented (parsed below) --------------------------------------

_TEXT = {"type": "string", "maxLength": MAX_TEXT, "pattern": r"^[^\x00-\x1f]*$"}
_ITEM = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT,
         "pattern": r"^[^,\x00-\x1f]+$"}
LINK = {"Link": {"$ref": "#/components/headers/Link"}}


def any_case(values: tuple[str, ...]) -> dict:
    """A string schema matching one of ``values`` in any case (JSON Schema has no
    case-insensitive enum, and its ECMA regexes no ``(?i)``: ``[Gg][Gg][Uu][Ff]``)."""
    def letters(value: str) -> str:
        return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c)
                       for c in value)
    return {"type": "string", "pattern": f"^(?:{'|'.join(letters(v) for v in values)})$",
            "examples": list(values[:1])}


def _list_param(name: str, items: dict, description: str) -> dict:
    return query_param(name, {"type": "array", "items": items, "minItems": 1},
                       description + " Comma-separated: any of the values matches.",
                       style="form", explode=False)


def _paging_params(sorts: tuple[str, ...]) -> dict[str, dict]:
    return {
        "n": query_param("n", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                               "default": DEFAULT_PAGE}, "Page size."),
        "cursor": query_param("cursor", {"type": "string", "maxLength": 4096},
                              "Opaque; from the previous page's Link header (keep the same "
                              "sort)."),
        "sort": query_param("sort", {"type": "string",
                                     "enum": [*sorts, *(f"-{s}" for s in sorts)],
                                     "default": sorts[0]},
                            "Sort key; a leading '-' sorts descending. Unknown values sort "
                            "last."),
    }


def _tag_params(q: str) -> dict[str, dict]:
    return {
        "status": _list_param("status", any_case(STATUSES),
                              f"Model status of the tagged manifest: {', '.join(STATUSES)} "
                              "(any case)."),
        "format": _list_param("format", any_case(FORMATS),
                              f"Weights format: {', '.join(FORMATS)} (any case)."),
        "backend": _list_param("backend", _ITEM, "Backend of the latest verification "
                                                 "(llama.cpp, mlx); any case."),
        "architecture": _list_param("architecture", _ITEM,
                                    "Model architecture (e.g. llama); any case."),
        "quantization": _list_param("quantization", _ITEM,
                                    "Quantization (e.g. Q4_K_M); any case."),
        "min_tokens_per_s": query_param("min_tokens_per_s", {"type": "number", "minimum": 0},
                                        "Latest verification generated at least this many "
                                        "tokens/s."),
        "max_memory_mb": query_param("max_memory_mb", {"type": "number", "minimum": 0},
                                     "Latest verification's peak resident memory is at most "
                                     "this many MiB."),
        "max_perplexity": query_param("max_perplexity", {"type": "number", "minimum": 0},
                                      "Latest verification's perplexity is at most this."),
        "fits_memory": query_param(
            "fits_memory", {"type": "string", "pattern": SIZE_PATTERN, "examples": ["16GiB"]},
            "Latest verification's memory estimate at `context` tokens with a `kv_cache` "
            "K/V cache is at most this (bytes, or a size: 16GiB, 16GB), and the model was "
            "trained for that context (when its card says). No estimate: no match."),
        "context": query_param("context", {"type": "integer", "minimum": 1,
                                           "maximum": MAX_CONTEXT,
                                           "default": DEFAULT_CONTEXT},
                               "Tokens of context for fits_memory (only with it)."),
        "kv_cache": query_param("kv_cache", {**any_case(KV_CACHE_TYPES), "default": "f16"},
                                f"K/V cache type for fits_memory (only with it): "
                                f"{', '.join(KV_CACHE_TYPES)} (any case)."),
        "q": query_param("q", _TEXT, q),
        "class": query_param(
            "class", {"type": "string", "pattern": CLASS_NAME, "maxLength": 64,
                      "examples": ["cpu"]},
            "A hardware class (lower case letters, digits, - and _): the figures, the "
            "filters on them (min_tokens_per_s, max_memory_mb, max_perplexity, "
            "fits_memory, backend) and the sorts by them are the latest verification's on "
            "this class instead of the latest of any. A model with no result on the class "
            "has no figures (and passes no filter on one)."),
        **_paging_params(TAG_SORTS),
    }


def _links(name: str, targets: dict[str, str | None]) -> dict:
    """OpenAPI links from a listing's first row to the operations about it."""
    links = {}
    for op, reference in targets.items():
        params = {"name": f"$response.body#{name}"}
        if reference is not None:
            params["reference"] = f"$response.body#{reference}"
        links[op] = {"operationId": op, "parameters": params}
    return links


def _browse(request: Request) -> BrowseService:
    svc = service(request)
    return BrowseService(svc.db, svc.store, svc.settings)


def _check_params(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise RequestInvalid(f"unknown query parameter(s): {', '.join(unknown)}; this "
                             f"endpoint takes {', '.join(sorted(allowed))}")


def text_param(request: Request, name: str) -> str | None:
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
    """The values of list filter ``name``; with ``allowed`` (lower case), each must be
    one of them in any case, and comes back lower case."""
    values = []
    for raw in request.query_params.getlist(name):
        for value in raw.split(","):
            if not value or len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
                raise RequestInvalid(f"{name} takes comma-separated non-empty values of at "
                                     f"most {MAX_TEXT} printable characters")
            if allowed is not None:
                if value.lower() not in allowed:
                    raise RequestInvalid(f"{name} must be one of {', '.join(allowed)} (any "
                                         f"case), not {value!r}")
                value = value.lower()
            values.append(value)
    return tuple(dict.fromkeys(values))


def _number(request: Request, name: str) -> float | None:
    raw = text_param(request, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise RequestInvalid(f"{name} must be a non-negative number, not {raw!r}")
    return value


def _size(request: Request, name: str) -> int | None:
    raw = text_param(request, name)
    if raw is None:
        return None
    try:
        if not _SIZE.fullmatch(raw):
            raise ValueError
        return int(_BYTES.validate_python(raw))
    except (ValueError, ValidationError):
        raise RequestInvalid(f"{name} must be a number of bytes or a size such as 16GiB or "
                             f"16GB, not {raw!r}") from None


def _fit(request: Request) -> dict:
    """``fits_memory`` and what it is asked at; ``context``/``kv_cache`` alone are 400s."""
    memory = _size(request, "fits_memory")
    context, kv_cache = text_param(request, "context"), text_param(request, "kv_cache")
    if memory is None:
        for name, value in (("context", context), ("kv_cache", kv_cache)):
            if value is not None:
                raise RequestInvalid(f"{name} only goes with fits_memory (the memory to fit "
                                     "in at that context)")
        return {}
    if context is None:
        context = str(DEFAULT_CONTEXT)
    if not _CONTEXT.fullmatch(context) or not 1 <= int(context) <= MAX_CONTEXT:
        raise RequestInvalid(f"context must be an integer from 1 to {MAX_CONTEXT} (tokens), "
                             f"not {context!r}")
    kv_cache = "f16" if kv_cache is None else kv_cache
    if kv_cache.lower() not in KV_CACHE_TYPES:
        raise RequestInvalid(f"kv_cache must be one of {', '.join(KV_CACHE_TYPES)} (any "
                             f"case), not {kv_cache!r}")
    kv_cache = kv_cache.lower()
    return {"fits_memory": memory, "context": int(context), "kv_cache": kv_cache}


def hw_class(request: Request) -> str | None:
    """The ``class`` parameter: a hardware class name (its grammar, not that it is
    defined: a class that is gone still names its past results)."""
    raw = text_param(request, "class")
    if raw is None:
        return None
    if not _CLASS.fullmatch(raw):
        raise RequestInvalid(f"class must be a hardware class name: lower case letters, "
                             f"digits, - and _ (at most 64), not {raw[:80]!r}")
    return raw


def paging(request: Request, sorts: tuple[str, ...]) -> tuple[Sort, int, str | None]:
    raw = text_param(request, "n")
    n = DEFAULT_PAGE
    if raw is not None:
        if not _N.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE:
            raise RequestInvalid(f"n must be an integer from 1 to {MAX_PAGE}, not {raw!r}")
        n = int(raw)
    cursor = request.query_params.get("cursor") or None  # checked by the service
    return Sort.parse(text_param(request, "sort"), sorts), n, cursor


def tag_filters(request: Request) -> TagFilter:
    return TagFilter(
        statuses=_list(request, "status", STATUSES),
        formats=_list(request, "format", FORMATS),
        backends=_list(request, "backend"),
        architectures=_list(request, "architecture"),
        quantizations=_list(request, "quantization"),
        min_tokens_per_s=_number(request, "min_tokens_per_s"),
        max_memory_mb=_number(request, "max_memory_mb"),
        max_perplexity=_number(request, "max_perplexity"),
        q=text_param(request, "q") or None,
        hw_class=hw_class(request),
        **_fit(request),
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


@operation("listRepositories", "browse", "Repositories, searchable by name", RepositoryPage,
           params={"q": query_param("q", _TEXT, "Substring of the name (any case)."),
                   "prefix": query_param("prefix", _TEXT,
                                         "The name starts with this (e.g. 'team/')."),
                   **_paging_params(REPOSITORY_SORTS)},
           headers=LINK, links=_links("/repositories/0/name", {"listTags": None}),
           problems=(400,))
async def list_repositories(request: Request) -> JSONResponse:
    _check_params(request, REPOSITORY_PARAMS)
    sort, n, cursor = paging(request, REPOSITORY_SORTS)
    page = await run_in_threadpool(_browse(request).repositories,
                                   q=text_param(request, "q") or None,
                                   prefix=text_param(request, "prefix") or None, sort=sort, n=n,
                                   cursor=cursor, namespaces=readable(request))
    for item in page.items:
        item["href"] = f"/api/v1/repositories/{item['name']}/tags"
    return _listing(request, "repositories", page)


@operation("listTags", "browse",
           "Tags of a repository with their model card and latest figures", TagPage,
           params=_tag_params("Substring of the tag (any case)."), headers=LINK,
           links=_links("/repository", {
               "getTag": "/tags/0/tag", "getManifest": "/tags/0/digest",
               "listManifestVerifications": "/tags/0/digest",
               "verifyManifest": "/tags/0/digest", "overrideManifest": "/tags/0/digest"}),
           problems=(400, 404))
async def list_tags(request: Request) -> JSONResponse:
    _check_params(request, TAG_PARAMS)
    name = repo_name(request)
    sort, n, cursor = paging(request, TAG_SORTS)
    page = await run_in_threadpool(_browse(request).tags, name, tag_filters(request), sort=sort,
                                   n=n, cursor=cursor)
    _tag_hrefs(page.items)
    return _listing(request, "tags", page, repository=name)


@operation("listModels", "browse", "Tagged models in every repository", ModelPage,
           description="One row per tag whose manifest is a model; 'name' sorts by "
                       "repository, then tag.",
           params=_tag_params("Substring of 'repository:tag' (any case)."), headers=LINK,
           links=_links("/models/0/repository", {"getTag": "/models/0/tag",
                                                 "getManifest": "/models/0/digest"}),
           problems=(400,))
async def list_models(request: Request) -> JSONResponse:
    _check_params(request, TAG_PARAMS)
    sort, n, cursor = paging(request, TAG_SORTS)
    page = await run_in_threadpool(_browse(request).models, tag_filters(request), sort=sort,
                                   n=n, cursor=cursor, namespaces=readable(request))
    _tag_hrefs(page.items)
    return _listing(request, "models", page)
