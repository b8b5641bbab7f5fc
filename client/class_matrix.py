"""A model's results per hardware class as people read them (pure: the REST
``verification.classes`` object in, lines out), for ``assay status`` and ``assay bench``.

A profile that names hardware classes has a model verified once per class; the registry
answers, per class, whether it is required, its status (queued, running, passed, failed,
unsupported, not_measured, none), why it did not pass or what it waits for, its job and
its latest verification (with the run matrix). ``table_lines`` prints one row per class
and run configuration, the class repeated on each (so ``grep apple`` keeps its rows)::

  CLASS  NEED      STATUS  BACKEND    CONTEXT  KV    PARALLEL  GEN/S  PEAK
  cpu    required  passed  llama.cpp  2048     f16   1         41.2   400MiB
  apple  required  queued  -          waiting for a worker of class apple; none has ...

A class without a run matrix (a result from before profiles) shows its figures on one row
with ``-`` for the configuration; a reason, a wait or an unsupported configuration runs on
past the columns.
"""

from __future__ import annotations

HEADER = ["CLASS", "NEED", "STATUS", "BACKEND", "CONTEXT", "KV", "PARALLEL", "GEN/S", "PEAK"]
# A class's status as people say it (the REST ``ClassResult.status``).
STATUS_LABELS = {"not_measured": "not measured", "none": "not queued"}
MIB = 2**20


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value, fmt: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:{fmt}}"


def _mib(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value / MIB:.0f}MiB"


def status_label(entry: dict) -> str:
    status = str(entry.get("status") or "none")
    return STATUS_LABELS.get(status, status)


def note(entry: dict) -> str | None:
    """Why a class did not pass, what it waits for, or where it runs; None when there is
    nothing to say (it passed, or is queued with a worker of the class present)."""
    job = _dict(entry.get("job"))
    status = entry.get("status")
    if status == "running":
        return f"running on {job['worker']}" if job.get("worker") else "running"
    if status == "none":
        return "added to the profile after this version was verified; `assay verify` " \
               "measures it"
    return entry.get("waiting") or entry.get("reason") or None


def class_runs(entry: dict) -> list[dict]:
    """The class's run matrix; a result without one (before profiles) as one run of its
    figures, with no configuration; none without a result."""
    verification = _dict(entry.get("verification"))
    runs = [r for r in verification.get("runs") or [] if isinstance(r, dict)]
    if runs or not verification:
        return runs
    figures = _dict(verification.get("figures"))
    return [{"generation_tps": figures.get("generation_tps"),
             "peak_rss_bytes": figures.get("peak_rss_bytes")}]


def _rows(name: str, entry: dict) -> list[list[str]]:
    verification = _dict(entry.get("verification"))
    head = [name, "required" if entry.get("required") else "optional", status_label(entry),
            str(verification.get("backend") or "-")]
    rows = []
    for r in class_runs(entry):
        config = [str(r.get(k, "-")) for k in ("context", "kv_cache", "parallel")]
        if r.get("unsupported"):
            rows.append([*head, *config, f"unsupported: {r['unsupported']}"])
        else:
            rows.append([*head, *config, _number(r.get("generation_tps"), ".1f"),
                         _mib(r.get("peak_rss_bytes"))])
    text = note(entry)
    if text:
        rows.append([*head, text])
    return rows or [[*head, *["-"] * (len(HEADER) - len(head))]]


def table_lines(classes: dict, indent: str = "  ") -> list[str]:
    """The matrix of ``verification.classes``: one row per class and configuration."""
    table = [HEADER]
    for name, entry in classes.items():
        table += _rows(str(name), _dict(entry))
    # A column's width from the rows that have it as a column, not as the text that runs
    # on past the columns.
    widths = [max(len(row[i]) for row in table
                  if i < len(row) - 1 or len(row) == len(HEADER))
              for i in range(len(HEADER))]
    return [indent + "  ".join(cell.ljust(widths[i]) if i < len(row) - 1 else cell
                               for i, cell in enumerate(row)) for row in table]


def summary_line(classes: dict) -> str:
    """``hardware classes: required cpu, apple; optional cuda``."""
    required = [str(n) for n, e in classes.items() if _dict(e).get("required")]
    optional = [str(n) for n, e in classes.items() if not _dict(e).get("required")]
    parts = [f"required {', '.join(required)}" if required else "none required"]
    if optional:
        parts.append(f"optional {', '.join(optional)}")
    return "hardware classes: " + "; ".join(parts)
