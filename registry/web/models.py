"""The models listing: every tagged model in every repository the caller may pull.

    GET /-/models      ?status= &format= &backend= &architecture= &quantization=
                       &min_tokens_per_s= &max_memory_mb= &max_perplexity=
                       &fits_memory= [&context=] [&kv_cache=] &class= &q= &sort= &n=
                       &cursor=

The query is REST's ``GET /api/v1/models`` (``registry.api.rest.browse``): the same
parsers read it and the same ``BrowseService.models`` call answers it, limited to the
namespaces the caller may read, so the page lists exactly the rows REST would. Two
differences, both for forms: an empty field (a GET form sends ``min_tokens_per_s=``)
means "no filter" rather than a 400, and a bad value shows the page again with REST's
message (status 400) so the form keeps what was typed. Parameters REST does not know
are ignored, as on the other pages (REST refuses them). Each row has a "compare"
checkbox; the table is a form that GETs ``/-/compare`` (``registry.web.compare``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from registry.api.guard import readable
from registry.api.oci.base import quick_read
from registry.api.rest.browse import paging, tag_filters
from registry.errors import RequestInvalid
from registry.formats.fit import KV_CACHE_TYPES
from registry.services.browse import DEFAULT_CONTEXT, FORMATS, STATUSES, TAG_SORTS, Page
from registry.web.browse import browse_service
from registry.web.model import model_url
from registry.web.render import query, render

# The columns a header link sorts by, with the direction a first click asks for: the
# useful end first (newest, fastest, biggest; smallest memory and perplexity).
SORT_FIRST = {"name": "", "updated": "-", "size": "-", "tokens_per_s": "-", "memory": "",
              "perplexity": ""}
# The form's text fields, in the order they are shown.
TEXT_FIELDS = ("q", "backend", "architecture", "quantization", "class", "min_tokens_per_s",
               "max_memory_mb", "max_perplexity", "fits_memory", "context")


def without_empty(request: Request) -> Request:
    """``request`` with every empty query value dropped (an empty form field is no
    filter); the same request when it has none."""
    given = request.query_params.multi_items()
    if all(value != "" for _, value in given):
        return request
    kept = urlencode([(k, v) for k, v in given if v != ""]).encode("latin-1")
    return Request({**request.scope, "query_string": kept}, request.receive)


def parameters(count) -> str:
    """A parameter count as people say it: 270M, 7.2B."""
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        return "–"
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if count >= scale:
            value = count / scale
            return f"{value:.0f}{unit}" if value >= 100 else f"{value:.3g}{unit}"
    return str(count)


def _headers(request: Request, sort: str) -> dict[str, dict]:
    """For each sortable column: the link that sorts by it (keeping the filters, back to
    the first page) and its ``aria-sort`` when the listing is sorted by it."""
    key, descending = sort.lstrip("-"), sort.startswith("-")
    out = {}
    for column, first in SORT_FIRST.items():
        if column == key:
            target = column if descending else f"-{column}"
            state = "descending" if descending else "ascending"
        else:
            target, state = first + column, None
        out[column] = {"href": query(request, sort=target, cursor=None), "aria_sort": state}
    return out


def _form_values(request: Request) -> dict:
    """What the filter form shows: the values as given (also when one of them is bad)."""
    params = request.query_params
    values = {name: params.get(name, "") for name in TEXT_FIELDS}
    chosen = {s.strip().lower() for raw in params.getlist("status") for s in raw.split(",")}
    values["statuses"] = [s for s in STATUSES if s in chosen]
    values["format"] = params.get("format", "").lower()
    values["kv_cache"] = params.get("kv_cache", "").lower()
    values["sort"] = params.get("sort", "")
    values["n"] = params.get("n", "")
    return values


def _rows(items: list[dict]) -> list[dict]:
    for item in items:
        item["url"] = model_url(item["repository"], item["tag"], item["digest"])
        item["ref"] = f"{item['repository']}:{item['tag']}"
        item["parameters"] = parameters(item.get("parameter_count"))
    return items


async def models(request: Request) -> Response:
    """The listing (as ``GET /api/v1/models``); a bad value is this page with REST's
    message and status 400."""
    request = without_empty(request)
    error, page, sort = None, Page([], None), "name"
    try:
        parsed_sort, n, cursor = paging(request, TAG_SORTS)
        sort = str(parsed_sort)
        filters = tag_filters(request)
        page = await quick_read(request, lambda: browse_service(request).models(
            filters, sort=parsed_sort, n=n, cursor=cursor, namespaces=readable(request)))
    except RequestInvalid as exc:
        error = exc.message
    filtered = any(k not in ("sort", "n", "cursor") for k in request.query_params)
    who = request.scope.get("assay.identity")
    hint = (error is None and not page.items and bool(request.app.state.settings.auth)
            and who is not None and who.anonymous)
    return render(request, "models.html", status=400 if error else 200, error=error,
                  models=_rows(page.items), next_cursor=page.cursor,
                  first_page="cursor" not in request.query_params, sort=sort,
                  headers=_headers(request, sort), form=_form_values(request),
                  filtered=filtered, statuses=STATUSES, formats=FORMATS,
                  kv_types=KV_CACHE_TYPES, default_context=DEFAULT_CONTEXT,
                  sign_in_hint=hint)
