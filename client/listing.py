"""``assay ls``: repositories, the tags of one, or models across a registry, as tables.

On assay the rows come from the REST browse API (``/api/v1/repositories/<name>/tags``
and ``/api/v1/models``, every page): each tag with its status, the headline figures of
its latest verification (generation tokens/s, peak memory), the card's format,
architecture and quantization, its size, and for a model that is not ready the reason.
The browse API's filters and sorts map onto options (``Filters``). Any other registry
has no such API: a repository's tags are listed from ``/v2/`` with their digests, and
filters are an error (nothing to filter on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from client.auth import AuthError
from client.errors import ClientError, NotFoundError, TransientError, oci_error_text
from client.registry_client import RegistryClient
from client.show import human_size, render_table

JSON = {"Accept": "application/json"}
PAGE = 500  # rows per request (the browse API's largest page)
REASON_WIDTH = 60
MiB = 2**20
# ``--sort`` key -> the browse API's sort, best first: names A-Z, the newest first, the
# smallest first, the fastest first, the lowest perplexity first. ``--reverse`` flips it.
SORTS = {"name": "name", "updated": "-updated", "size": "size", "tps": "-tokens_per_s",
         "memory": "memory", "perplexity": "perplexity"}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kKMGT]i?B|B)?")
_UNITS = {"B": 1, "kB": 1000, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "KiB": 2**10, "kiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def parse_size(text: str) -> int:
    """``800MiB``, ``2GB``, ``1.5 GiB`` or a byte count -> bytes; ClientError otherwise."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ClientError(f"{text!r} is not a size: give bytes or a number with a unit "
                          "(800MiB, 2GiB, 2GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2) or "B"])


@dataclass(frozen=True)
class Filters:
    """What ``assay ls`` asks the browse API for (empty: everything, by name)."""

    status: tuple[str, ...] = ()
    format: tuple[str, ...] = ()
    backend: tuple[str, ...] = ()
    architecture: tuple[str, ...] = ()
    quantization: tuple[str, ...] = ()
    min_tps: float | None = None
    max_memory: str | None = None     # a size; the API takes MiB
    max_perplexity: float | None = None
    fits: str | None = None           # a size the API reads (fits_memory)
    context: int | None = None
    kv_cache: str | None = None
    search: str | None = None
    sort: str | None = None           # a key of SORTS
    reverse: bool = False

    def any(self) -> bool:
        """Whether anything beyond the plain listing was asked for."""
        return any((self.status, self.format, self.backend, self.architecture,
                    self.quantization, self.min_tps is not None, self.max_memory,
                    self.max_perplexity is not None, self.fits, self.context, self.kv_cache,
                    self.search, self.sort, self.reverse))

    def params(self) -> list[tuple[str, str]]:
        """The browse API's query parameters."""
        if (self.context or self.kv_cache) and not self.fits:
            raise ClientError("--context and --kv-cache say what --fits is asked at: give "
                              "--fits SIZE with them")
        p: list[tuple[str, str]] = [("n", str(PAGE))]
        for name, values in (("status", self.status), ("format", self.format),
                             ("backend", self.backend), ("architecture", self.architecture),
                             ("quantization", self.quantization)):
            if values:
                p.append((name, ",".join(values)))
        if self.min_tps is not None:
            p.append(("min_tokens_per_s", _number(self.min_tps)))
        if self.max_memory:
            p.append(("max_memory_mb", _number(parse_size(self.max_memory) / MiB)))
        if self.max_perplexity is not None:
            p.append(("max_perplexity", _number(self.max_perplexity)))
        if self.fits:
            p.append(("fits_memory", self.fits.replace(" ", "")))
            if self.context:
                p.append(("context", str(self.context)))
            if self.kv_cache:
                p.append(("kv_cache", self.kv_cache))
        if self.search:
            p.append(("q", self.search))
        sort = SORTS[self.sort or "name"]
        if self.reverse:
            sort = sort[1:] if sort.startswith("-") else f"-{sort}"
        if sort != "name":
            p.append(("sort", sort))
        return p


def _number(value: float) -> str:
    return f"{value:.6g}" if value != int(value) else str(int(value))


def _is_problem(resp) -> bool:
    return resp.headers.get("content-type", "").startswith("application/problem+json")


def browse(client: RegistryClient, path: str, key: str, params: list[tuple[str, str]],
           what: str, fallback: bool = True) -> list[dict] | None:
    """Every row of browse listing ``path`` (following ``next``); None when the registry
    has no such API (not assay, or, with ``fallback``, it wants credentials the client
    lacks: ``/v2/`` then says what to do). A bad filter value or an unknown repository
    is the registry's one-line error about ``what``."""
    rows: list[dict] = []
    url: str | None = path
    query: list[tuple[str, str]] | None = params
    while url:
        def attempt(url=url, query=query):
            return client.send("GET", url, params=query, headers=JSON)

        try:
            resp = client.call(attempt, what)
        except AuthError:
            if not fallback:
                raise
            return None
        if resp.status_code in (400, 404) and _is_problem(resp):
            code, message = oci_error_text(resp)
            if resp.status_code == 404:
                raise NotFoundError(f"{what}: {message}", 404, code)
            raise ClientError(f"{what}: {message}")
        if resp.status_code != 200:
            return None
        try:
            body = resp.json()
            page = body[key]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(page, list):
            return None
        rows += [r for r in page if isinstance(r, dict)]
        url, query = body.get("next"), None
    return rows


def tags(client: RegistryClient, name: str, filters: Filters) -> list[dict] | None:
    """The tags of ``name`` as browse rows, or None when the registry is not assay."""
    return browse(client, f"/api/v1/repositories/{name}/tags", "tags", filters.params(),
                  f"{client.registry.host}/{name}", fallback=not filters.any())


def models(client: RegistryClient, filters: Filters) -> list[dict]:
    """Tagged models in every repository the caller may pull (assay only)."""
    rows = browse(client, "/api/v1/models", "models", filters.params(),
                  f"models in {client.registry.host}", fallback=False)
    if rows is None:
        raise ClientError(f"{client.registry.host} has no model listing (not an assay "
                          "registry?): filters and sorting need assay; list a repository's "
                          "tags with assay ls HOST/REPO")
    return rows


def plain_tags(client: RegistryClient, name: str, filters: Filters) -> list[dict]:
    """Tags and digests from ``/v2/`` (any registry)."""
    if filters.any():
        raise ClientError(f"{client.registry.host} does not report models (not an assay "
                          "registry?): filters and sorting need assay")
    return [{"tag": t, "digest": client.manifest_digest(name, t)} for t in client.tags(name)]


def _reason(row: dict) -> str:
    reason = " ".join(str(row.get("reason") or "").split())
    if row.get("status") in (None, "ready") or not reason:
        return ""
    return reason if len(reason) <= REASON_WIDTH else reason[:REASON_WIDTH - 1] + "…"


def _figure(value, fmt: str) -> str:
    return "-" if not isinstance(value, (int, float)) else format(value, fmt)


def render_rows(rows: list[dict], across: bool) -> str:
    """The table of browse rows: one line each, a header on top, columns nothing fills
    left out; ``across``: rows of several repositories (``REPO:TAG``)."""
    header = ["MODEL" if across else "TAG", "STATUS", "TOKENS/S", "MEMORY", "FORMAT",
              "ARCHITECTURE", "QUANTIZATION", "SIZE", "DIGEST", "REASON"]
    table = []
    for r in rows:
        name = f"{r.get('repository')}:{r.get('tag')}" if across else str(r.get("tag"))
        rss = r.get("peak_rss_bytes")
        model = [_figure(r.get("tokens_per_s"), ".1f"),
                 "-" if not isinstance(rss, int) else f"{rss / MiB:.0f} MiB",
                 str(r.get("format") or "-"), str(r.get("architecture") or "-"),
                 str(r.get("quantization") or "-")]
        if r.get("status") is None:  # not a model: nothing of the kind to say
            model = [""] * len(model)
        table.append([name, str(r.get("status") or "-"), *model, human_size(r.get("size")),
                      str(r.get("digest") or "")[7:19], _reason(r)])
    return render_table(header, table)


def render_plain(rows: list[dict]) -> str:
    return render_table(["TAG", "DIGEST"],
                        [[str(r["tag"]), str(r.get("digest") or "")[7:19]] for r in rows])


def anonymous_and_hidden(client: RegistryClient) -> bool:
    """Whether an empty listing may be empty only because no one signed in: the client
    sent no credentials and the registry asks anonymous callers to log in."""
    if client.auth.credentials is not None:
        return False
    try:
        return client.requires_login()
    except (ClientError, TransientError):
        return False
