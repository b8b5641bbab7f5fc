"""The figures of a verifier report that listings filter and sort on, kept in columns of its
``verifications`` row so that SQLite and PostgreSQL can query them (the report itself is
JSON text). ``report_columns`` computes them when a report is recorded; a report without a
figure leaves its column NULL, and NULL never passes a filter.

- ``perplexity``: the profile's perplexity (``quality.perplexity``), else the smoke check's
  (``perplexity``).
- ``regression_count``: how many regression items the registry found against the previous
  version of a tag (``regressions.items``); NULL when there was no previous version to
  compare with.
- ``fit_<kv>_base_bytes`` and ``fit_<kv>_bytes_per_token`` for each KV-cache type: the fit
  estimate (``registry.formats.fit``, the worst case of one sequence) as a line in the
  context, ``base + per_token x padded(context)``, where ``padded`` rounds up to the 256
  cells both backends allocate in.

Why a line, and how close it is. The estimate, at a padded context, is a sum of terms linear
in the context (the KV cells of full-attention layers, the attention masks, the per-cell
bookkeeping) and terms that stop growing once the context passes the sliding window (the
cells of sliding-window layers: ``window + one micro-batch`` for llama.cpp, ``window`` for
MLX): it is piecewise linear and concave, with its one bend there. The line through the
estimates at the two largest contexts of the report's table (65,536 and 131,072 tokens in
the worker's tables) is therefore

- exact (to the byte, up to rounding) at every context past the bend: every context for a
  model without sliding-window layers, and from 1,024 tokens for Gemma 3 (window 512);
- above the estimate below the bend, by the sliding-window cells a shorter context does not
  allocate: conservative, never a model reported to fit that does not. For a Gemma 2 2B
  shape (26 layers, window 4,096, bend at 4,608 on llama.cpp) with an f16 cache that is
  1.3% at 4,096 tokens and 7% at 2,048, less with a quantized cache;
- exact beyond the table's largest context as well (the line is the estimate there).

This assumes the bend lies below the second-largest listed context (windows under 64k
tokens; the largest in use are 4,096-8,192). A table of every listed (context, total) per
KV type would be exact only at the listed contexts and up to 2x too high between them
(4,097 tokens read as 8,192); the line is exact everywhere that matters and is two numbers.
"""

from __future__ import annotations

import math

from sqlalchemy import Column

from registry.db.tables import verifications
from registry.formats.fit import KV_CACHE_TYPES
from registry.services.regressions import perplexity_of

CELL_PAD = 256  # llama.cpp pads the context to 256 cells; mlx-lm grows its cache by 256


def padded(context: int) -> int:
    """``context`` rounded up to the cells a backend allocates for it."""
    return -(-context // CELL_PAD) * CELL_PAD


def fit_columns(kv_cache: str) -> tuple[Column, Column]:
    """The ``(base bytes, bytes per token)`` columns of a KV-cache type."""
    if kv_cache not in KV_CACHE_TYPES:
        raise ValueError(f"unknown KV cache type {kv_cache!r}")
    return (verifications.c[f"fit_{kv_cache}_base_bytes"],
            verifications.c[f"fit_{kv_cache}_bytes_per_token"])


def fit_line(estimates, kv_cache: str) -> tuple[int, float] | None:
    """``(base_bytes, bytes_per_token)`` of the line through the estimates of ``kv_cache``
    at the two largest contexts in a fit table's ``estimates`` (see the module's text);
    None when there are not two such rows or they do not make a sane line. The base is
    rounded up, so the line never falls below an estimate it passes through."""
    if not isinstance(estimates, list):
        return None
    points = {}
    for row in estimates:
        if not isinstance(row, dict) or row.get("kv_cache") != kv_cache:
            continue
        context, total = row.get("context"), row.get("total_bytes")
        if _is_int(context) and _is_int(total) and context > 0 and total >= 0:
            points[context] = total
    if len(points) < 2:
        return None
    (c1, t1), (c2, t2) = sorted(points.items())[-2:]
    per_token = (t2 - t1) / (c2 - c1)
    base = math.ceil(t2 - per_token * c2)
    if per_token < 0 or base < 0:  # memory never shrinks as the context grows
        return None
    return base, per_token


def report_columns(report: dict) -> dict:
    """The column values of ``report`` (a verifier report as recorded, after the registry
    judged it) for its ``verifications`` row; keys are column names."""
    perplexity = perplexity_of(report)
    regressions = report.get("regressions")
    items = regressions.get("items") if isinstance(regressions, dict) else None
    fit = report.get("fit")
    estimates = fit.get("estimates") if isinstance(fit, dict) else None
    columns = {
        "perplexity": float(perplexity) if _is_number(perplexity) else None,
        "regression_count": len(items) if isinstance(items, list) else None,
    }
    for kv in KV_CACHE_TYPES:
        line = fit_line(estimates, kv)
        columns[f"fit_{kv}_base_bytes"] = line[0] if line else None
        columns[f"fit_{kv}_bytes_per_token"] = line[1] if line else None
    return columns


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))
