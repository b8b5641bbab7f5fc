"""What the model page shows, gathered and shaped (no HTTP here): the REST detail plus
the verification history, the referrers, the tag's versions for the chart, the pull
command of each client, and the figures of a verification in table-ready form.

Reports come from workers as JSON: every shape is checked here (a list that is not one,
a number that is text), so an odd report shows as "–", never as a 500. Text from reports
and cards is escaped by the templates.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from client.ref import is_loopback
from client.results import METRIC_LABELS, describe_regression
from registry.api.rest.manifests import describe
from registry.formats.classify import classify
from registry.manifests import parse_manifest
from registry.services.versions import VersionService

HISTORY = 20      # verification runs shown (newest first)
REFERRERS = 50    # referrers shown (newest)
LIVE = ("queued", "verifying")


# ---- gathering ------------------------------------------------------------------------

def live_state(svc, name: str, reference: str) -> dict:
    """Status, reason and live job of a manifest, as the REST detail has them (with
    ``job.ahead`` and ``workers`` while its job is queued or running)."""
    state = svc.verification.state_of(name, reference)
    svc.workers.explain(state)
    body = {"status": state["status"], "reason": state["reason"], "job": state["job"]}
    if "workers" in state:
        body["workers"] = state["workers"]
    return body


def layout(svc, name: str, digest: str) -> str | None:
    """The model's layout (ollama, docker, modelpack, oci), None when it is no model."""
    stored = svc.manifests.get(name, digest)
    try:
        found = classify(parse_manifest(stored.content, stored.media_type))
    except Exception:  # stored byte for byte: a manifest it cannot parse is no model
        return None
    return found.kind if found else None


def gather(svc, name: str, reference: str, base_url: str) -> dict:
    """Everything the model page shows (blocking: run it in a thread). Raises the
    service's NameUnknown / ManifestUnknown like REST."""
    detail = describe(svc, name, reference, base_url)
    digest = detail["digest"]
    tag = detail.get("tag")
    versions = []
    if tag is not None:
        versions = VersionService(svc.db, svc.store, svc.settings).versions(name, tag)
    referrers = svc.manifests.referrers(name, digest, None)["manifests"]
    return {
        "detail": detail,
        "layout": layout(svc, name, digest) if detail.get("model") else None,
        "history": svc.verification.history(name, digest, limit=HISTORY),
        "referrers": list(reversed(referrers[-REFERRERS:])),
        "referrer_count": len(referrers),
        "versions": versions,
    }


# ---- pull commands --------------------------------------------------------------------

def pull_commands(base_url: str, name: str, tag: str | None, digest: str,
                  kind: str | None) -> list[dict]:
    """One entry per client: ``{"client", "command"}`` with the command to copy, or
    ``{"client", "command": None, "note"}`` saying why the client cannot pull it. By
    tag the command names the tag (gated); else the digest."""
    parts = urlsplit(base_url)
    host, plain = parts.netloc, parts.scheme == "http"
    local = is_loopback((parts.hostname or "").strip("[]"))
    ref = f"{host}/{name}:{tag}" if tag else f"{host}/{name}@{digest}"
    last = name.rsplit("/", 1)[-1]
    model = kind is not None
    out = []

    def add(client: str, command: str | None, note: str | None = None) -> None:
        out.append({"client": client, "command": command, "note": note})

    if kind == "ollama" and tag and name.count("/") == 1:
        add("Ollama", f"ollama pull {'--insecure ' if plain else ''}{ref}")
    elif kind == "ollama" and tag:
        add("Ollama", None, "Ollama names have exactly one namespace segment "
                            "(namespace/model); this repository's name has another shape.")
    elif kind == "ollama":
        add("Ollama", None, "Ollama pulls by tag only; open a tag's page.")
    else:
        add("Ollama", None, "Ollama pulls only models in its own layout (pushed with "
                            "`assay push` or `ollama push`).")
    if kind == "docker":
        add("Docker Model Runner", f"docker model pull {ref}",
            "Docker needs a plain-HTTP registry in its insecure-registries list."
            if plain and not local else None)
    else:
        add("Docker Model Runner", None, "docker model pulls models in the Docker Model "
                                         "Runner layout (assay push --format docker).")
    add("oras", f"oras pull {'--plain-http ' if plain else ''}{ref}")
    if kind == "ollama":
        add("skopeo / podman", None, "skopeo and podman cannot carry the Ollama layout "
                                     "(its layer types are not image layers to them); "
                                     "use oras, ollama or assay.")
    else:
        dest = f"oci:./{last}:{tag}" if tag else f"oci:./{last}"
        add("skopeo / podman", f"skopeo copy {'--src-tls-verify=false ' if plain else ''}"
                               f"docker://{ref} {dest}")
    if model:
        revision = tag if tag else digest.split(":", 1)[-1][:40]
        add("Hugging Face (hf)", f"HF_ENDPOINT={parts.scheme}://{host} hf download {name} "
                                 f"--revision {revision}")
        insecure = "--insecure " if plain and not local else ""
        add("assay", f"assay pull {insecure}{ref}")
    return out


# ---- one verification, table-ready ---------------------------------------------------

def _num(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _dicts(value) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def runs(v: dict | None) -> list[dict]:
    """The run matrix: context, KV cache, parallel sequences and the figures, or why the
    configuration is unsupported."""
    out = []
    for r in _dicts((v or {}).get("runs")):
        out.append({"context": r.get("context"), "kv_cache": r.get("kv_cache"),
                    "parallel": r.get("parallel"), "unsupported": r.get("unsupported"),
                    **{k: _num(r.get(k)) for k in (
                        "prompt_tps", "generation_tps", "aggregate_generation_tps",
                        "ttft_s", "peak_rss_bytes")}})
    return out


# A class's status as the page says it (the REST ``ClassResult.status``).
CLASS_STATUS = {"not_measured": "not measured", "none": "not queued"}


def _run_key(run: dict) -> tuple:
    """A run's configuration, hashable whatever the report put there."""
    return tuple(v if isinstance(v, int | float | str | None) else str(v)
                 for v in (run["context"], run["kv_cache"], run["parallel"]))


def _config_label(key: tuple) -> str:
    context, kv_cache, parallel = key
    sequences = f"{parallel} sequence{'' if parallel == 1 else 's'}"
    return f"Context {context}, KV {kv_cache}, {sequences}"


def _class_note(entry: dict) -> str | None:
    """Why a class did not pass, what it waits for, or where it is running."""
    job = _dict(entry.get("job"))
    if entry.get("status") == "running" and job.get("worker"):
        return f"running on {job['worker']}"
    if entry.get("status") == "none":
        return "added to the profile after this version was verified: verify again to " \
               "measure it"
    return entry.get("waiting") or entry.get("reason")


def classes(v: dict | None) -> dict | None:
    """The result on each hardware class of the profile (REST ``verification.classes``)
    as a matrix: ``configs`` (the union of the classes' run configurations, in the order
    they first appear) and per class ``{"name", "required", "status", "label", "note",
    "backend", "cells"}``, a cell per configuration (a run as ``runs`` shapes it, or
    None). A class whose result has no run matrix (a report from before profiles) has
    one cell of its figures, under a configuration of None. None without classes."""
    entries = {str(k): e for k, e in _dict((v or {}).get("classes")).items()
               if isinstance(e, dict)}
    if not entries:
        return None
    matrices = {name: runs(_dict(e.get("verification"))) for name, e in entries.items()}
    keys: list[tuple | None] = []
    for matrix in matrices.values():
        for r in matrix:
            key = _run_key(r)
            if key not in keys:
                keys.append(key)
    plain = {n for n, e in entries.items() if e.get("verification") and not matrices[n]}
    if plain:
        keys.append(None)
    rows = []
    for name, entry in entries.items():
        by_key = {_run_key(r): r for r in matrices[name]}
        verification = _dict(entry.get("verification"))
        if name in plain:
            figures = _dict(verification.get("figures"))
            by_key[None] = {"unsupported": None, "generation_tps": _num(
                figures.get("generation_tps")), "peak_rss_bytes": _num(
                figures.get("peak_rss_bytes"))}
        status = str(entry.get("status") or "none")
        rows.append({"name": name, "required": entry.get("required") is True,
                     "status": status, "label": CLASS_STATUS.get(status, status),
                     "note": _class_note(entry), "backend": verification.get("backend"),
                     "cells": [by_key.get(k) for k in keys]})
    configs = [{"label": "Figures" if k is None else _config_label(k)} for k in keys]
    return {"configs": configs, "rows": rows}


def fit(v: dict | None) -> dict | None:
    """The fit table: estimates (rows: context, columns: KV type), the largest context
    that fits in each memory size, and the estimate held against measured peaks."""
    table = _dict((v or {}).get("fit"))
    if not table:
        return None
    kvs: list[str] = []
    cells: dict = {}
    for e in _dicts(table.get("estimates")):
        context, kv = e.get("context"), str(e.get("kv_cache"))
        if kv not in kvs:
            kvs.append(kv)
        cells.setdefault(context, {})[kv] = _num(e.get("total_bytes", e.get("bytes")))
    estimates = [{"context": c, "cells": [row.get(kv) for kv in kvs]}
                 for c, row in cells.items()]
    fits = [{"kv_cache": str(kv), "sizes": [(str(m), c) for m, c in _dict(sizes).items()]}
            for kv, sizes in _dict(table.get("fits")).items()]
    checks = [{"run": c.get("run"), "context": c.get("context"),
               "kv_cache": c.get("kv_cache"), "parallel": c.get("parallel"),
               "estimated": _num(c.get("estimated_bytes", c.get("estimate_bytes"))),
               "measured": _num(c.get("measured_bytes", c.get("peak_rss_bytes"))),
               "error": _num(c.get("error"))}
              for c in _dicts(table.get("checks"))]
    return {"backend": table.get("backend"), "kv_types": kvs, "estimates": estimates,
            "fits": fits, "checks": checks}


def quality(v: dict | None) -> dict | None:
    q = _dict((v or {}).get("quality"))
    if not q:
        return None
    prompts = [{"prompt": p.get("prompt"), "expect": p.get("expect"),
                "output": p.get("output"), "chat": bool(p.get("chat")),
                "matched": p.get("matched") is True, "unsupported": p.get("unsupported")}
               for p in _dicts(q.get("prompts"))]
    return {"perplexity": _num(q.get("perplexity")), "ratio": _num(q.get("perplexity_ratio")),
            "reference": q.get("reference"),
            "reference_perplexity": _num(q.get("reference_perplexity")),
            "note": q.get("reference_note"), "prompts": prompts,
            "matched": sum(1 for p in prompts if p["matched"])}


def regressions(v: dict | None) -> dict | None:
    r = _dict((v or {}).get("regressions"))
    if not r:
        return None
    items = []
    for item in _dicts(r.get("items")):
        try:
            text = describe_regression(item)
        except (KeyError, TypeError, ValueError):
            text = str(METRIC_LABELS.get(item.get("metric"), item.get("metric")))
        items.append(text)
    previous = _dict(r.get("previous"))
    return {"previous_digest": previous.get("digest"), "previous_tag": previous.get("tag"),
            "items": items, "action": r.get("action")}


# ---- the chart ------------------------------------------------------------------------

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 36


def _ticks(top: float) -> list[float]:
    """At most four round steps from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def chart(versions: list[dict], key: str, scale: float = 1.0, digits: int = 1) -> dict | None:
    """One series of the versions chart as SVG geometry: ``points`` (x, y, value, label),
    ``line`` (a polyline's points), ``yticks`` (y, label) and ``xlabels`` (x, label).
    None when no version has the figure. ``scale`` divides values (bytes -> MiB)."""
    values = [(i, _num(v.get(key))) for i, v in enumerate(versions)]
    known = [(i, x / scale) for i, x in values if x is not None]
    if not known:
        return None
    ticks = _ticks(max(x for _, x in known))
    top = ticks[-1] or 1.0
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = len(versions)

    def x_of(i: int) -> float:
        return LEFT + (inner_w / 2 if n == 1 else inner_w * i / (n - 1))

    def y_of(value: float) -> float:
        return TOP + inner_h * (1 - value / top)

    points = [{"x": round(x_of(i), 1), "y": round(y_of(x), 1), "value": f"{x:,.{digits}f}",
               "label": f"version {i + 1} ({str(versions[i].get('digest'))[7:19]})"}
              for i, x in known]
    step = max(1, math.ceil(n / 10))
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT,
        "top": TOP, "bottom": HEIGHT - BOTTOM,
        "points": points,
        "line": " ".join(f"{p['x']},{p['y']}" for p in points),
        "yticks": [{"y": round(y_of(t), 1), "label": f"{round(t, 6):,g}"}
                   for t in ticks],
        "xlabels": [{"x": round(x_of(i), 1), "label": str(i + 1)}
                    for i in range(n) if i % step == 0 or i == n - 1],
        "min": min(x for _, x in known), "max": max(x for _, x in known),
    }
