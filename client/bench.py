"""``assay bench REF [REF...]``: the figures assay measured for models, side by side.

Reads each model's verification from assay's REST API (the status JSON of ``assay
status``) and prints one table: the configurations of the run matrix as rows (context,
K/V cache type, parallel sequences), then perplexity and the prompt checks; for each model
(and the backend it ran on) generation tokens/s per sequence (and in aggregate with
parallel sequences), time to first token and peak memory. A configuration one model was
not measured on shows ``-``; one its backend cannot run shows ``unsupported``. This is the
comparison people make between two engines on the same weights (llama.cpp's GGUF against
an MLX copy), measured by the registry on every push.

``--json`` prints ``{"models": [...], "rows": [...]}``: per model its reference, digest,
status, backend, profile, runs and quality as the REST API gives them; per row the
configuration and, per model, the run (or ``null``).

A model whose profile names hardware classes was measured once per class: it gets a column
per class (``REF on CLASS (backend)``), so the same weights on a CPU box and a Mac read side
by side, and a class that has no result says why under the table (queued and what it waits
for, unsupported, not measured). In ``--json`` such a model has ``classes`` (per class:
required, status, reason, waiting, backend, runs, quality), the output has ``columns``
(``{"reference", "class"}`` each) and each row's ``runs`` follow the columns.
"""

from __future__ import annotations

import json

import click

from client.class_matrix import note, status_label
from client.ref import Reference
from client.registry_client import RegistryClient
from client.status import fetch_state

CONFIG_KEYS = ("context", "kv_cache", "parallel", "prompt_tokens", "max_tokens")


def collect(client: RegistryClient, ref: Reference) -> dict:
    """One model's entry: what its latest verification measured (on each hardware class,
    when its profile names classes)."""
    state = fetch_state(client, ref)
    verification = state.get("verification") or {}
    entry = {"reference": str(ref), "digest": state.get("digest"),
             "status": state.get("status"), "backend": verification.get("backend"),
             "profile": verification.get("profile"), "runs": verification.get("runs") or [],
             "quality": verification.get("quality"), "fit": verification.get("fit")}
    if isinstance(verification.get("classes"), dict) and verification["classes"]:
        entry["classes"] = {name: _class_entry(result)
                            for name, result in verification["classes"].items()}
    return entry


def _class_entry(result: dict) -> dict:
    result = result if isinstance(result, dict) else {}
    v = result.get("verification") or {}
    return {"required": bool(result.get("required")), "status": result.get("status"),
            "reason": result.get("reason"), "waiting": result.get("waiting"),
            "job": result.get("job"), "backend": v.get("backend"),
            "runs": v.get("runs") or [], "quality": v.get("quality")}


def columns(models: list[dict]) -> list[dict]:
    """The table's columns: a model, or one per hardware class of a model that has them
    (``class`` names it; None: the model's latest verification)."""
    out = []
    for m in models:
        if not m.get("classes"):
            out.append({**m, "class": None, "label": m["reference"]})
            continue
        for name, c in m["classes"].items():
            out.append({**c, "reference": m["reference"], "class": name,
                        "label": f"{m['reference']} on {name}",
                        "status": status_label(c), "note": note(c)})
    return out


def _config(run: dict) -> tuple:
    return tuple(run.get(k) for k in CONFIG_KEYS)


def rows(models: list[dict]) -> list[dict]:
    """The union of the columns' configurations, in the order they first appear, with
    each column's run of it (or None)."""
    cols = columns(models)
    order: dict[tuple, dict] = {}
    for col in cols:
        for run in col["runs"]:
            order.setdefault(_config(run), dict(zip(CONFIG_KEYS, _config(run), strict=True)))
    return [{**config, "runs": [next((r for r in c["runs"] if _config(r) == key), None)
                                for c in cols]}
            for key, config in order.items()]


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def _cell(run: dict | None) -> str:
    if run is None:
        return "-"
    if run.get("unsupported"):
        return "unsupported"
    tps, agg = run.get("generation_tps"), run.get("aggregate_generation_tps")
    speed = "-" if tps is None else f"{tps:.1f} t/s"
    if run.get("parallel", 1) > 1 and agg is not None:
        speed += f" ({agg:.1f} total)"
    ttft = "-" if run.get("ttft_s") is None else f"{run['ttft_s'] * 1000:.0f} ms"
    return f"{speed}, TTFT {ttft}, {_mib(run.get('peak_rss_bytes'))}"


def _quality_cells(cols: list[dict]) -> list[list[str]]:
    perplexity, prompts = ["perplexity"], ["prompts matched"]
    for col in cols:
        quality = col["quality"] or {}
        value = quality.get("perplexity")
        ratio = quality.get("perplexity_ratio")
        perplexity.append("-" if value is None else f"{value:.3f}" +
                          (f" (x{ratio:.3f} of reference)" if ratio is not None else ""))
        checked = [p for p in quality.get("prompts") or [] if p.get("matched") is not None]
        prompts.append(f"{sum(bool(p['matched']) for p in checked)}/{len(checked)}"
                       if checked else "-")
    return [perplexity, prompts]


def table(models: list[dict]) -> list[list[str]]:
    """The printed table's cells, header first."""
    cols = columns(models)
    header = ["configuration"] + [f"{c['label']} ({c['backend'] or c['status']})"
                                  for c in cols]
    body = [[f"ctx {r['context']}, {r['kv_cache']} KV, x{r['parallel']}, "
             f"{r['prompt_tokens']}+{r['max_tokens']} tok"] + [_cell(run) for run in r["runs"]]
            for r in rows(models)]
    return [header, *body, *_quality_cells(cols)]


def notes(models: list[dict]) -> list[str]:
    """Under the table: a column with nothing measured, and a class that did not pass
    (why) or waits (for what)."""
    out = []
    for c in columns(models):
        empty = not c["runs"] and not c["quality"]
        if c["class"] is None:
            if empty:
                out.append(f"{c['label']}: {c['status']}, nothing measured")
            continue
        if c["status"] == "passed" and not empty:
            continue
        why = f" ({c['note']})" if c.get("note") else ""
        out.append(f"{c['label']}: {c['status']}{', nothing measured' if empty else ''}{why}")
    return out


def render(models: list[dict], as_json: bool) -> str:
    if as_json:
        data = {"models": models, "rows": rows(models)}
        if any(m.get("classes") for m in models):
            data["columns"] = [{"reference": c["reference"], "class": c["class"]}
                               for c in columns(models)]
        return json.dumps(data, indent=2)
    cells = table(models)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    return "\n".join(lines + notes(models))


def echo(models: list[dict], as_json: bool) -> None:
    click.echo(render(models, as_json))
