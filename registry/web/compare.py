"""Two to four models side by side: one table whose columns are the models and whose
rows are their card, status and the figures of their latest verification.

    GET /-/compare?m=REPO:TAG&m=REPO@DIGEST[...]

Each model is read as REST's ``GET /api/v1/repositories/<repo>/tags/<tag>`` reads it
(``registry.api.rest.manifests.describe``), and only when the caller may pull its
repository (``registry.api.guard.may``). The page itself is for anyone; a model the
caller may not pull reads exactly like one that does not exist ("not found or not
visible to you"), so the page never tells whether a hidden repository or tag exists.
Fewer than two models is the page with the form to pick them; more than four is the
same with a 400.
"""

from __future__ import annotations

import math

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from registry.access.permissions import PULL
from registry.api.guard import may
from registry.api.oci.base import absolute, service
from registry.api.rest.manifests import describe
from registry.digests import check_name, check_tag, parse_digest
from registry.errors import NotFound, RegistryError
from registry.services.browse import DEFAULT_CONTEXT
from registry.web import model_parts as parts
from registry.web.model import model_url
from registry.web.models import parameters
from registry.web.render import mib, number, render

FEWEST, MOST = 2, 4
MAX_REFERENCE = 512    # longer is no repository:tag (names <= 255, tags <= 128)
SHOWN_INPUTS = 8       # the form's fields when too many were given (the rest are cut)
HIDDEN = "not found or not visible to you"
INVALID = "not a model reference: write repository:tag or repository@digest"
KV_ORDER = {"f16": 0, "q8_0": 1, "q4_0": 2}


def picked(request: Request) -> list[str]:
    """The ``m`` values, stripped, empty ones dropped, each once, in the order given."""
    values = (v.strip() for v in request.query_params.getlist("m"))
    return list(dict.fromkeys(v for v in values if v))


def parse_reference(value: str) -> tuple[str, str] | None:
    """``repo:tag`` or ``repo@digest`` -> (repository, tag or digest); None when it is
    neither (no lookup is made for it)."""
    if len(value) > MAX_REFERENCE:
        return None
    name, at, digest = value.partition("@")
    try:
        if at:
            parse_digest(digest)
            return check_name(name), digest
        name, colon, tag = value.rpartition(":")
        if not colon:
            return None
        return check_name(name), check_tag(tag)
    except RegistryError:
        return None


def _lookup(svc, found: list, base_url: str) -> list[dict | None]:
    """The REST detail of each (repository, reference); None for what does not exist."""
    out = []
    for item in found:
        if item is None:
            out.append(None)
            continue
        try:
            out.append(describe(svc, item[0], item[1], base_url))
        except NotFound:
            out.append(None)
    return out


# ---- one model, in figures ------------------------------------------------------------

def _num(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _hardware(hardware) -> str | None:
    """Where it ran: the verifier's ``cpu_model`` (``cpu`` in older reports) and machine."""
    if not isinstance(hardware, dict):
        return None
    cpu = hardware.get("cpu_model") or hardware.get("cpu")
    machine = hardware.get("machine")
    text = " ".join(str(x) for x in (cpu, f"({machine})" if machine else None) if x)
    return text or None


def facts(detail: dict) -> dict:
    """The figures of one model the table shows (numbers, or None when unknown)."""
    card = detail.get("model") or {}
    v = detail.get("verification") or {}
    figures = v.get("figures") if isinstance(v.get("figures"), dict) else {}
    quality = parts.quality(v) or {}
    hardware = v.get("hardware")
    return {
        "status": detail.get("status"), "reason": detail.get("reason"),
        "format": card.get("format"), "architecture": card.get("architecture"),
        "parameters": card.get("parameter_label") or parameters(card.get("parameter_count")),
        "quantization": card.get("quantization"),
        "context_length": _num(card.get("context_length")),
        "size": _num((detail.get("size") or {}).get("logical")),
        "verdict": v.get("verdict"), "verification_reason": v.get("reason"),
        "backend": " ".join(str(x) for x in (v.get("backend"), v.get("backend_version"))
                            if x) or None,
        "hardware": _hardware(hardware),
        "finished_at": v.get("finished_at"),
        "generation_tps": _num(figures.get("generation_tps")),
        "prompt_tps": _num(figures.get("prompt_tps")),
        "ttft_s": _num(figures.get("ttft_s")),
        "peak_rss_bytes": _num(figures.get("peak_rss_bytes")),
        "perplexity": quality.get("perplexity"),
        "prompts": (f"{quality['matched']} of {len(quality['prompts'])}"
                    if quality.get("prompts") else None),
        "runs": parts.runs(v),
        "fit": parts.fit(v),
    }


def _cell(text: str, value: float | None = None) -> dict:
    return {"text": text, "value": value, "best": False}


def _mark_best(cells: list[dict], higher: bool) -> list[dict]:
    """Mark the best value of a row when at least two models have one."""
    known = [c for c in cells if c["value"] is not None]
    if len(known) >= 2:
        best = (max if higher else min)(c["value"] for c in known)
        if sum(1 for c in known if c["value"] == best) < len(known):
            for c in known:
                c["best"] = c["value"] == best
    return cells


def _figure_rows(models: list[dict | None]) -> list[dict]:
    """The latest verification's headline figures, one row each."""
    spec = [("Tokens/s (generation)", "generation_tps", lambda x: number(x), True),
            ("Prompt tokens/s", "prompt_tps", lambda x: number(x), True),
            ("Time to first token", "ttft_s", lambda x: f"{number(x, 2)} s", False),
            ("Peak memory", "peak_rss_bytes", mib, False),
            ("Perplexity", "perplexity", lambda x: number(x, 2), False)]
    rows = []
    for label, key, show, higher in spec:
        cells = []
        for m in models:
            value = None if m is None else m[key]
            cells.append(_cell("–" if value is None else show(value), value))
        rows.append({"label": label, "cells": _mark_best(cells, higher)})
    rows.append({"label": "Quality prompts passed",
                 "cells": [_cell((m or {}).get("prompts") or "–") for m in models]})
    return rows


def _run_text(run: dict) -> str:
    if run.get("unsupported"):
        return f"unsupported: {run['unsupported']}"
    parts_ = [f"{number(run['generation_tps'])} tokens/s"]
    if run.get("parallel") not in (None, 1) and run.get("aggregate_generation_tps"):
        parts_.append(f"{number(run['aggregate_generation_tps'])} in all")
    if run.get("ttft_s") is not None:
        parts_.append(f"first token {number(run['ttft_s'], 2)} s")
    if run.get("peak_rss_bytes") is not None:
        parts_.append(mib(run["peak_rss_bytes"]))
    return ", ".join(parts_)


def _run_key(run: dict) -> tuple:
    context, parallel = run.get("context"), run.get("parallel")
    return (context if isinstance(context, int) else 0, KV_ORDER.get(run.get("kv_cache"), 9),
            str(run.get("kv_cache")), parallel if isinstance(parallel, int) else 0)


def _matrix_rows(models: list[dict | None]) -> list[dict]:
    """One row per run configuration any model has (context x KV cache x parallel)."""
    configs: dict[tuple, dict] = {}
    for m in models:
        for run in (m or {}).get("runs", []):
            configs.setdefault(_run_key(run), run)
    rows = []
    for key in sorted(configs):
        run = configs[key]
        cells = []
        for m in models:
            mine = next((r for r in (m or {}).get("runs", []) if _run_key(r) == key), None)
            if mine is None:
                cells.append(_cell("–"))
            else:
                value = None if mine.get("unsupported") else mine.get("generation_tps")
                cells.append(_cell(_run_text(mine), value))
        label = (f"{number(run.get('context'), 0)} tokens, KV {run.get('kv_cache')}, "
                 f"{run.get('parallel')} parallel")
        rows.append({"label": label, "cells": _mark_best(cells, True)})
    return rows


def _fit_rows(models: list[dict | None]) -> list[dict]:
    """The fit estimate: peak memory at the default context (KV f16), then per memory
    size the largest context that fits, for each KV cache type."""
    fits = [(m or {}).get("fit") or {} for m in models]
    if not any(fits):
        return []
    cells = []
    for fit in fits:
        value = None
        if "f16" in fit.get("kv_types", []):
            column = fit["kv_types"].index("f16")
            value = next((e["cells"][column] for e in fit["estimates"]
                          if e["context"] == DEFAULT_CONTEXT), None)
        cells.append(_cell("–" if value is None else mib(value), value))
    rows = [{"label": f"Estimated memory at {DEFAULT_CONTEXT:,} tokens, KV f16",
             "cells": _mark_best(cells, False)}]
    sizes = list(dict.fromkeys(size for fit in fits for f in fit.get("fits", [])
                               for size, _ in f["sizes"]))
    for size in sizes:
        row = []
        for fit in fits:
            found = [(f["kv_cache"], dict(f["sizes"]).get(size)) for f in fit.get("fits", [])
                     if size in dict(f["sizes"])]
            text = "; ".join(f"KV {kv}: " + (f"{number(ctx, 0)} tokens" if ctx
                                               else "does not fit")
                             for kv, ctx in found)
            row.append(_cell(text or "–"))
        rows.append({"label": f"Largest context in {size}", "cells": row})
    return rows


def table(models: list[dict | None]) -> dict:
    """The comparison's figure sections (card and status rows are the template's)."""
    return {"figures": _figure_rows(models), "matrix": _matrix_rows(models),
            "fit": _fit_rows(models)}


# ---- the page -------------------------------------------------------------------------

def _page(request: Request, refs: list[str], status: int = 200, message: str | None = None,
          error: str | None = None, columns: list[dict] | None = None,
          sections: dict | None = None) -> Response:
    inputs = refs[:SHOWN_INPUTS] + [""] * max(0, MOST - len(refs))
    return render(request, "compare.html", status=status, inputs=inputs, message=message,
                  error=error, columns=columns or [], sections=sections, most=MOST,
                  fewest=FEWEST)


async def compare(request: Request) -> Response:
    """The comparison of the ``m`` models (see the module docstring)."""
    refs = picked(request)
    if len(refs) > MOST:
        return _page(request, refs, status=400,
                     error=f"Pick at most {MOST} models to compare ({len(refs)} were "
                           "given): clear the ones you do not need.")
    if len(refs) < FEWEST:
        return _page(request, refs, message=f"Pick {FEWEST} to {MOST} models to compare: "
                                            "type them below as repository:tag, or tick them "
                                            "in the models list.")
    parsed = [parse_reference(r) for r in refs]
    # Only what the caller may pull is looked up: the rest is never read at all.
    allowed = [p if p is not None and may(request, PULL, p[0]) else None for p in parsed]
    details = await run_in_threadpool(_lookup, service(request), allowed,
                                      absolute(request, "/"))
    columns, models = [], []
    for ref, p, detail in zip(refs, parsed, details, strict=True):
        if detail is None:
            columns.append({"ref": ref, "url": None,
                            "missing": INVALID if p is None else HIDDEN})
            models.append(None)
            continue
        tag = detail.get("tag")
        columns.append({"ref": ref, "missing": None,
                        "url": model_url(detail["repository"], tag, detail["digest"]),
                        **facts(detail)})
        models.append(columns[-1])
    return _page(request, refs, columns=columns, sections=table(models))
