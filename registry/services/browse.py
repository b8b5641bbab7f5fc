"""Browsing: repositories, and tags (or tagged models registry-wide) with their model card
and latest verification, filtered, sorted and paged by keyset cursors.

Rows:

- a repository: name, tag / manifest / model counts, total size (every blob its
  manifests refer to, once), created, updated (its newest tag move or manifest push);
- a tag: the manifest it points at now (digest, media type, status and why it is not
  ready, logical size), the card's columns (format, architecture, quantization, ...) and
  the figures of the latest verification of that manifest (backend, generation tokens/s,
  peak RSS, perplexity, the number of regressions it found). ``models`` lists the same
  rows for every tag in every repository whose manifest is a model.

With a hardware class (``TagFilter.hw_class``) the figures, and the filters and sorts on
them, are those of the latest verification *on that class* (``verifications.hw_class``)
instead of the latest of any: a model verified on several classes is found by how it ran
on the one asked about; one with no result on the class shows no figures.

The memory filter (``fits_memory`` at a ``context`` and KV-cache type) reads the fit
estimate of the latest verification, kept as a line in the context per KV type
(``registry.services.report_columns``: exact past the sliding window, conservative before
it), and also asks that the model was trained for that context when its card says.

Pagination is keyset ("seek"), never OFFSET: a page is the rows strictly after the last
row of the previous page in the sort order, and the sort order always ends in a unique
key (the tag name; repository and tag name across repositories). A row inserted or
deleted elsewhere therefore never shifts a page; a row whose sort key changes between two
pages (a tag moved while sorted by ``updated``) is seen at its new place or not at all.
The cursor is opaque to clients: URL-safe base64 of
``{"e": <endpoint>, "s": <sort>, "k": [<the last row's sort key values>]}``, checked on
the way back in (shape and types) so a forged or stale one is a 400, never a 500.

Sort keys whose value may be unknown (tokens/s, memory, perplexity) sort those rows last
in either direction: the key is ``(value IS NULL, COALESCE(value, 0), ...)``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.sql import ColumnElement

from registry import jsontext
from registry.db.tables import (
    as_utc,
    blobs,
    isoformat,
    manifest_references,
    manifests,
    models,
    repositories,
    tags,
    verifications,
)
from registry.errors import NameUnknown, RequestInvalid
from registry.formats.classify import GGUF, SAFETENSORS
from registry.services.common import Service, in_namespaces
from registry.services.report_columns import fit_columns, padded

DEFAULT_PAGE = 50
MAX_PAGE = 500
STATUSES = ("queued", "verifying", "ready", "failed")
FORMATS = (GGUF, SAFETENSORS)
REPOSITORY_SORTS = ("name", "updated", "tags", "size")
TAG_SORTS = ("name", "updated", "size", "tokens_per_s", "memory", "perplexity")
DEFAULT_CONTEXT = 4096   # tokens, for the memory filter when no context is given
MAX_CONTEXT = 1 << 24
MiB = 1024 * 1024
_INT64 = 2**63
_FLOAT_MAX = 1.7976931348623157e308


@dataclass(frozen=True)
class TagFilter:
    """Filters of the tag and model listings; empty tuples / None filter nothing.
    Each tuple matches any of its values; the filters combine with AND."""

    statuses: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()          # of the latest verification
    architectures: tuple[str, ...] = ()     # case-insensitive
    quantizations: tuple[str, ...] = ()     # case-insensitive
    min_tokens_per_s: float | None = None   # latest verification's generation tokens/s
    max_memory_mb: float | None = None      # latest verification's peak RSS, MiB
    max_perplexity: float | None = None     # latest verification's perplexity
    # The latest verification's fit estimate at ``context`` tokens with a ``kv_cache``
    # KV cache is at most ``fits_memory`` bytes (and the model's training context, when
    # known, is at least ``context``).
    fits_memory: int | None = None
    context: int = DEFAULT_CONTEXT
    kv_cache: str = "f16"
    q: str | None = None                    # substring of the tag ("repo:tag" for models)
    # The figures (and the filters on them) are the latest verification's on this hardware
    # class; None: the latest verification, whichever class it ran on.
    hw_class: str | None = None


@dataclass(frozen=True)
class Sort:
    key: str
    descending: bool = False

    @classmethod
    def parse(cls, value: str | None, allowed: tuple[str, ...]) -> Sort:
        """``name``, ``-updated``, ...; RequestInvalid for anything else."""
        if value is None:
            return cls(allowed[0])
        desc = value.startswith("-")
        key = value[1:] if desc else value
        if key not in allowed:
            raise RequestInvalid(f"sort must be one of {', '.join(allowed)} (with an optional "
                                 f"'-' for descending), not {value!r}")
        return cls(key, desc)

    def __str__(self) -> str:
        return ("-" if self.descending else "") + self.key


@dataclass
class Page:
    items: list[dict]
    cursor: str | None  # of the next page; None on the last one


# ---- cursors ----------------------------------------------------------------------------

def encode_cursor(endpoint: str, sort: Sort, values: list[Any]) -> str:
    raw = json.dumps({"e": endpoint, "s": str(sort), "k": [_jsonable(v) for v in values]},
                     separators=(",", ":"), allow_nan=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, endpoint: str, sort: Sort, kinds: list[str]) -> list[Any]:
    """The key values in ``cursor``, typed as ``kinds`` says ("int", "float", "str", "dt");
    RequestInvalid when it was not made by ``encode_cursor`` for this endpoint and sort."""
    bad = RequestInvalid("invalid cursor: pass the cursor from the previous page's Link "
                         "header unchanged, with the same sort")
    if len(cursor) > 4096:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = jsontext.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("e") != endpoint:
        raise bad
    if data.get("s") != str(sort):
        raise RequestInvalid(f"this cursor was made for sort={data.get('s')!r}, not "
                             f"sort={sort}; start again without a cursor") from None
    values = data.get("k")
    if not isinstance(values, list) or len(values) != len(kinds):
        raise bad
    try:
        return [_typed(v, kind) for v, kind in zip(values, kinds, strict=True)]
    except (TypeError, ValueError):
        raise bad from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)
    return value


def _typed(value: Any, kind: str) -> Any:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= _INT64:
            raise TypeError
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or abs(value) >= 2.0**63:
            raise TypeError
        return float(value)
    if not isinstance(value, str) or "\x00" in value or len(value) > 1024:
        raise TypeError
    if kind == "dt":
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed.astimezone(UTC)
    return value


# ---- keyset pagination ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Key:
    expr: ColumnElement
    kind: str          # "int" | "float" | "str" | "dt" (for the cursor)
    descending: bool


def _after(keys: list[_Key], values: list[Any]) -> ColumnElement:
    """Rows strictly after ``values`` in the order of ``keys`` (directions may differ):
    ``k1 > v1 OR (k1 = v1 AND k2 > v2) OR ...``."""
    clauses = []
    for i, key in enumerate(keys):
        equal = [keys[j].expr == values[j] for j in range(i)]
        beyond = key.expr < values[i] if key.descending else key.expr > values[i]
        clauses.append(and_(*equal, beyond))
    return or_(*clauses)


def _order(keys: list[_Key]) -> list[ColumnElement]:
    return [k.expr.desc() if k.descending else k.expr.asc() for k in keys]


def _nulls_last(expr: ColumnElement, kind: str, descending: bool) -> list[_Key]:
    return [_Key(case((expr.is_(None), 1), else_=0), "int", False),
            _Key(func.coalesce(expr, 0), kind, descending)]


# ---- the service ---------------------------------------------------------------------------

class BrowseService(Service):
    def _lexical(self, column) -> ColumnElement:
        # Byte order, not the server locale's (PostgreSQL's default collation is not).
        return column if self.db.is_sqlite else column.collate("C")

    def _greatest(self, *exprs) -> ColumnElement:
        fn = func.max if self.db.is_sqlite else func.greatest  # SQLite's max(a, b) is scalar
        return fn(*exprs, type_=DateTime(timezone=True))

    def _json_number(self, column, key: str) -> ColumnElement:
        """A number in a JSON text column (NULL when absent)."""
        if self.db.is_sqlite:
            return func.json_extract(column, f"$.{key}", type_=Float)
        return cast(column, JSON)[key].as_float()

    # ---- repositories ------------------------------------------------------------------
    def _repository_columns(self):
        r = repositories.c
        tag_count = (select(func.count()).select_from(tags)
                     .where(tags.c.repository_id == r.id).scalar_subquery())
        manifest_count = (select(func.count()).select_from(manifests)
                          .where(manifests.c.repository_id == r.id).scalar_subquery())
        model_count = (select(func.count()).select_from(manifests)
                       .where(manifests.c.repository_id == r.id,
                              manifests.c.status.is_not(None)).scalar_subquery())
        referenced = (select(manifest_references.c.digest)
                      .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                      .where(manifests.c.repository_id == r.id).correlate(repositories))
        size = cast(select(func.coalesce(func.sum(blobs.c.size), 0))
                    .where(blobs.c.digest.in_(referenced)).scalar_subquery(), BigInteger)
        last_tag = (select(func.max(tags.c.updated_at))
                    .where(tags.c.repository_id == r.id).scalar_subquery())
        last_push = (select(func.max(manifests.c.created_at))
                     .where(manifests.c.repository_id == r.id).scalar_subquery())
        updated = self._greatest(func.coalesce(last_tag, r.created_at),
                                 func.coalesce(last_push, r.created_at), r.created_at)
        return {"name": r.name, "tags": tag_count, "manifests": manifest_count,
                "models": model_count, "size": size, "created": r.created_at,
                "updated": updated}

    def _repository_keys(self, cols: dict, sort: Sort) -> list[_Key]:
        name = _Key(self._lexical(cols["name"]), "str", sort.descending)
        if sort.key == "name":
            return [name]
        kind = {"updated": "dt", "tags": "int", "size": "int"}[sort.key]
        return [_Key(cols[sort.key], kind, sort.descending), name]

    def repositories(self, *, q: str | None = None, prefix: str | None = None,
                     sort: Sort = Sort("name"), n: int = DEFAULT_PAGE,
                     cursor: str | None = None, namespaces: set[str] | None = None) -> Page:
        """Repositories whose name contains ``q`` and starts with ``prefix`` (and in
        ``namespaces``, unless None: what the caller may pull)."""
        cols = self._repository_columns()
        keys = self._repository_keys(cols, sort)
        query = select(*(c.label(k) for k, c in cols.items()),
                       *(k.expr.label(f"k{i}") for i, k in enumerate(keys)))
        if q:
            query = query.where(repositories.c.name.contains(q.lower(), autoescape=True))
        if prefix:
            query = query.where(repositories.c.name.startswith(prefix.lower(), autoescape=True))
        query = query.where(in_namespaces(repositories.c.name, namespaces))
        return self._page(query, "repositories", keys, sort, n, cursor, _repository_json)

    # ---- tags and models --------------------------------------------------------------
    def _tag_query(self, hw_class: str | None = None):
        """The tag rows' columns and joins; the figures are of the manifest's latest
        verification, on ``hw_class`` when given."""
        latest = select(func.max(verifications.c.id)).where(
            verifications.c.manifest_id == manifests.c.id)
        if hw_class is not None:
            latest = latest.where(verifications.c.hw_class == hw_class)
        latest = latest.correlate(manifests).scalar_subquery()
        size = cast(select(func.coalesce(func.sum(blobs.c.size), 0))
                    .select_from(manifest_references.join(
                        blobs, blobs.c.digest == manifest_references.c.digest))
                    .where(manifest_references.c.manifest_id == manifests.c.id)
                    .correlate(manifests).scalar_subquery(), BigInteger)
        memory = self._json_number(verifications.c.report, "peak_rss_bytes")
        cols = {
            "repository": repositories.c.name, "tag": tags.c.name,
            "updated": tags.c.updated_at, "digest": manifests.c.digest,
            "media_type": manifests.c.media_type, "artifact_type": manifests.c.artifact_type,
            "status": manifests.c.status, "reason": manifests.c.status_reason, "size": size,
            "format": models.c.format, "architecture": models.c.architecture,
            "parameter_count": models.c.parameter_count,
            "quantization": models.c.quantization, "context_length": models.c.context_length,
            "verdict": verifications.c.verdict, "backend": verifications.c.backend,
            "tokens_per_s": verifications.c.generation_tps, "memory": memory,
            "perplexity": verifications.c.perplexity,
            "regressions": verifications.c.regression_count,
            "verified_at": verifications.c.finished_at,
        }
        joined = (tags.join(repositories, repositories.c.id == tags.c.repository_id)
                  .join(manifests, manifests.c.id == tags.c.manifest_id)
                  .outerjoin(models, models.c.manifest_id == manifests.c.id)
                  .outerjoin(verifications, verifications.c.id == latest))
        return cols, joined

    def _tag_keys(self, cols: dict, sort: Sort, across: bool) -> list[_Key]:
        names = [_Key(self._lexical(cols["tag"]), "str", sort.descending)]
        if across:
            names.insert(0, _Key(self._lexical(cols["repository"]), "str", sort.descending))
        if sort.key == "name":
            return names
        if sort.key == "updated":
            return [_Key(cols["updated"], "dt", sort.descending), *names]
        if sort.key == "size":
            return [_Key(cols["size"], "int", sort.descending), *names]
        return [*_nulls_last(cols[sort.key], "float", sort.descending), *names]

    def _tag_where(self, cols: dict, f: TagFilter, across: bool) -> list[ColumnElement]:
        where = []
        if f.statuses:
            where.append(cols["status"].in_(f.statuses))
        if f.formats:
            where.append(cols["format"].in_(f.formats))
        if f.backends:
            where.append(func.lower(cols["backend"]).in_([b.lower() for b in f.backends]))
        if f.architectures:
            where.append(func.lower(cols["architecture"])
                         .in_([a.lower() for a in f.architectures]))
        if f.quantizations:
            where.append(func.lower(cols["quantization"])
                         .in_([x.lower() for x in f.quantizations]))
        if f.min_tokens_per_s is not None:
            where.append(cols["tokens_per_s"] >= f.min_tokens_per_s)
        if f.max_memory_mb is not None:
            limit = f.max_memory_mb * MiB
            where.append(cols["memory"] <= (limit if math.isfinite(limit) else _FLOAT_MAX))
        if f.max_perplexity is not None:
            where.append(cols["perplexity"] <= f.max_perplexity)
        if f.fits_memory is not None:
            where.append(_fits(f, cols["context_length"]))
        if f.q:
            target = func.lower(cols["tag"])
            if across:
                target = func.lower(cols["repository"] + literal(":") + cols["tag"])
            where.append(target.contains(f.q.lower(), autoescape=True))
        return where

    def tags(self, name: str, filters: TagFilter = TagFilter(), *, sort: Sort = Sort("name"),
             n: int = DEFAULT_PAGE, cursor: str | None = None) -> Page:
        """Tags of repository ``name`` (NameUnknown if there is none)."""
        with self.db.read() as conn:
            rid = conn.execute(select(repositories.c.id)
                               .where(repositories.c.name == name)).scalar()
        if rid is None:
            raise NameUnknown(f"repository {name!r} is not known to this registry")
        cols, joined = self._tag_query(filters.hw_class)
        keys = self._tag_keys(cols, sort, across=False)
        query = (select(*(c.label(k) for k, c in cols.items()),
                        *(k.expr.label(f"k{i}") for i, k in enumerate(keys)))
                 .select_from(joined)
                 .where(tags.c.repository_id == rid, *self._tag_where(cols, filters, False)))
        return self._page(query, "tags", keys, sort, n, cursor, _tag_json)

    def models(self, filters: TagFilter = TagFilter(), *, sort: Sort = Sort("name"),
               n: int = DEFAULT_PAGE, cursor: str | None = None,
               namespaces: set[str] | None = None) -> Page:
        """Every tag, in every repository (of ``namespaces`` unless None), whose manifest
        is a model."""
        cols, joined = self._tag_query(filters.hw_class)
        keys = self._tag_keys(cols, sort, across=True)
        query = (select(*(c.label(k) for k, c in cols.items()),
                        *(k.expr.label(f"k{i}") for i, k in enumerate(keys)))
                 .select_from(joined)
                 .where(manifests.c.status.is_not(None), *self._tag_where(cols, filters, True),
                        in_namespaces(repositories.c.name, namespaces)))
        return self._page(query, "models", keys, sort, n, cursor, _tag_json)

    # ---- one page --------------------------------------------------------------------
    def _page(self, query, endpoint: str, keys: list[_Key], sort: Sort, n: int,
              cursor: str | None, to_json: Callable[[Any], dict]) -> Page:
        if not 1 <= n <= MAX_PAGE:
            raise RequestInvalid(f"n must be between 1 and {MAX_PAGE}")
        if cursor:
            values = decode_cursor(cursor, endpoint, sort, [k.kind for k in keys])
            query = query.where(_after(keys, values))
        query = query.order_by(*_order(keys)).limit(n + 1)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        more = len(rows) > n
        rows = rows[:n]
        next_cursor = None
        if more:
            last = rows[-1]
            next_cursor = encode_cursor(endpoint, sort,
                                        [_key_value(getattr(last, f"k{i}"), k.kind)
                                         for i, k in enumerate(keys)])
        return Page([to_json(r) for r in rows], next_cursor)


def _fits(f: TagFilter, context_length: ColumnElement) -> ColumnElement:
    """The fit line of ``f.kv_cache`` at ``f.context`` (padded as the backends allocate)
    is within ``f.fits_memory``; unknown (no fit table) never fits. A model whose card
    states a shorter training context does not serve ``f.context`` at all."""
    base, per_token = fit_columns(f.kv_cache)
    memory = float(min(f.fits_memory, _INT64))  # beyond it: everything fits
    return and_(base + per_token * padded(f.context) <= memory,
                or_(context_length.is_(None), context_length >= f.context))


def _key_value(value: Any, kind: str) -> Any:
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "dt":
        if isinstance(value, str):  # SQLite: an expression over timestamps comes back raw
            value = datetime.fromisoformat(value)
        return as_utc(value)
    return value


def _dt(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


def _repository_json(row) -> dict:
    return {"name": row.name, "tag_count": int(row.tags),
            "manifest_count": int(row.manifests), "model_count": int(row.models),
            "size": int(row.size), "created": isoformat(_dt(row.created)),
            "updated": isoformat(_dt(row.updated))}


def _tag_json(row) -> dict:
    memory = row.memory
    return {
        "repository": row.repository, "tag": row.tag, "digest": row.digest,
        "mediaType": row.media_type, "artifactType": row.artifact_type,
        "status": row.status, "reason": row.reason if row.status != "ready" else None,
        "size": int(row.size), "updated": isoformat(_dt(row.updated)),
        "format": row.format, "architecture": row.architecture,
        "parameter_count": row.parameter_count, "quantization": row.quantization,
        "context_length": row.context_length,
        "verdict": row.verdict, "backend": row.backend, "tokens_per_s": row.tokens_per_s,
        "peak_rss_bytes": None if memory is None else int(memory),
        "perplexity": row.perplexity, "regressions": row.regressions,
        "verified_at": isoformat(_dt(row.verified_at)),
    }
