"""A verification's profile results as people read them (pure: a REST ``verification``
object in, lines out): the profile, the run matrix as a table, quality (perplexity, the
reference ratio, prompts), the fit estimate and regressions.

``describe_regression`` is also the registry's wording of a regression in a verdict's
reason, so the CLI and the reason say it the same way.
"""

from __future__ import annotations

import json

# metric -> what people call it
METRIC_LABELS = {"generation_tps": "generation tokens/s", "peak_rss_bytes": "peak memory",
                 "perplexity_ratio": "perplexity ratio", "perplexity": "perplexity"}
RUN_HEADER = ["CONTEXT", "KV", "PARALLEL", "PROMPT/S", "GEN/S", "GEN/S(ALL)", "TTFT", "PEAK"]
MIB = 2**20


def _number(value, fmt: str, suffix: str = "") -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:{fmt}}{suffix}"


def _mib(value) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value / MIB:.0f}MiB"


def _figure(metric: str, value) -> str:
    if not isinstance(value, (int, float)):
        return "?"
    if metric == "peak_rss_bytes":
        return f"{value / MIB:.0f} MiB"
    return f"{value:.3f}" if metric == "perplexity_ratio" else f"{value:.1f}"


def describe_regression(item: dict) -> str:
    """``run 0 generation tokens/s 20.1 -> 15.0 (-25%, threshold 10%)``."""
    metric = item.get("metric")
    where = f"run {item['run']} " if item.get("run") is not None else ""
    change = item.get("change")
    threshold = item.get("threshold")
    how = f" ({change:+.0%}, threshold {threshold:.0%})" \
        if isinstance(change, (int, float)) and isinstance(threshold, (int, float)) else ""
    return (f"{where}{METRIC_LABELS.get(metric, metric)} "
            f"{_figure(metric, item.get('previous'))} -> "
            f"{_figure(metric, item.get('current'))}{how}")


def result_lines(v: dict) -> list[str]:
    """The indented lines for the profile's results of verification ``v`` (none for a
    result recorded before profiles)."""
    return [*profile_lines(v.get("profile")), *run_lines(v.get("runs")),
            *quality_lines(v.get("quality")), *fit_lines(v.get("fit")),
            *regression_lines(v.get("regressions"))]


def profile_lines(profile) -> list[str]:
    if not isinstance(profile, dict):
        return []
    sha = str(profile.get("sha256") or "")
    return [f"  profile {profile.get('name')} ({sha[:19]}…)" if sha
            else f"  profile {profile.get('name')}"]


def run_lines(runs) -> list[str]:
    """The run matrix: one row per configuration; an unsupported one says why."""
    if not isinstance(runs, list) or not runs:
        return []
    rows: list[list[str]] = []
    for r in runs:
        r = r if isinstance(r, dict) else {}
        config = [str(r.get("context", "-")), str(r.get("kv_cache", "-")),
                  str(r.get("parallel", "-"))]
        if r.get("unsupported"):
            rows.append([*config, f"unsupported: {r['unsupported']}"])
            continue
        rows.append([*config, _number(r.get("prompt_tps"), ".1f"),
                     _number(r.get("generation_tps"), ".1f"),
                     _number(r.get("aggregate_generation_tps"), ".1f"),
                     _number(r.get("ttft_s"), ".2f", "s"), _mib(r.get("peak_rss_bytes"))])
    table = [RUN_HEADER, *rows]
    # Widths from full rows only: an unsupported row's reason runs on past the columns.
    widths = [max(len(row[i]) for row in table if len(row) == len(RUN_HEADER))
              for i in range(len(RUN_HEADER))]
    return ["  " + "  ".join(cell.ljust(widths[i]) if i < len(row) - 1 else cell
                               for i, cell in enumerate(row)) for row in table]


def quality_lines(quality) -> list[str]:
    """Perplexity and its ratio to the reference (or why there is none), then the
    prompts: how many matched, and each that did not."""
    if not isinstance(quality, dict):
        return []
    lines = []
    ppl = quality.get("perplexity")
    text = f"perplexity {ppl:.2f}" if isinstance(ppl, (int, float)) else "perplexity -"
    ratio, reference = quality.get("perplexity_ratio"), quality.get("reference")
    if isinstance(ratio, (int, float)):
        text += (f", {ratio:.3f}x {reference} "
                 f"({_number(quality.get('reference_perplexity'), '.2f')})")
    elif reference:
        text += f"; no ratio to {reference}: {quality.get('reference_note') or 'unknown'}"
    lines.append(f"  quality: {text}")
    prompts = [p for p in quality.get("prompts") or [] if isinstance(p, dict)]
    if prompts:
        matched = sum(1 for p in prompts if p.get("matched") is True)
        lines.append(f"  prompts matched {matched}/{len(prompts)}")
        for p in prompts:
            if p.get("matched") is True:
                continue
            chat = f" (chat, template {p.get('template')})" if p.get("chat") else ""
            said = f"unsupported: {p['unsupported']}" if p.get("unsupported") \
                else f"got {json.dumps(p.get('output'))[:120]}"
            lines.append(f"    {json.dumps(p.get('prompt'))[:80]} expected "
                         f"/{p.get('expect')}/{chat}, {said}")
    return lines


def fit_lines(fit) -> list[str]:
    """"fits <kv>: <memory> up to context N, ..." per KV-cache type, then the estimate
    against each run's measured peak. Shapes it does not know are shown as JSON."""
    if not isinstance(fit, dict):
        return []
    lines = []
    fits = fit.get("fits")
    if isinstance(fits, dict):
        for kv, sizes in fits.items():
            if isinstance(sizes, dict):
                parts = [f"{mem} up to context {ctx}" if ctx else f"{mem} does not fit"
                         for mem, ctx in sizes.items()]
                lines.append(f"  fits {kv}: {', '.join(parts) or 'nothing'}")
            else:
                lines.append(f"  fits {kv}: {json.dumps(sizes)[:160]}")
    elif fits is not None:
        lines.append(f"  fits: {json.dumps(fits)[:160]}")
    for check in fit.get("checks") or []:
        if not isinstance(check, dict):
            continue
        estimate = check.get("estimate_bytes", check.get("estimated_bytes"))
        measured = check.get("measured_bytes", check.get("peak_rss_bytes"))
        error = check.get("error")
        how = f" ({error:+.1%})" if isinstance(error, (int, float)) else ""
        where = f", run {check['run']}" if check.get("run") is not None else ""
        lines.append(f"  fit{where}: estimate {_figure('peak_rss_bytes', estimate)} vs measured "
                     f"{_figure('peak_rss_bytes', measured)}{how}")
    return lines


def regression_lines(regressions) -> list[str]:
    if not isinstance(regressions, dict):
        return []
    prev = regressions.get("previous") or {}
    against = f"{prev.get('tag')} ({str(prev.get('digest'))[:19]}…)"
    items = [i for i in regressions.get("items") or [] if isinstance(i, dict)]
    if not items:
        return [f"  no regressions against {against}"]
    return [f"  regressed against {against}, action {regressions.get('action')}:",
            *(f"    {describe_regression(i)}" for i in items)]
