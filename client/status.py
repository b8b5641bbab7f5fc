"""``assay status`` and ``assay verify``: a model's verification, for people and scripts.

Both speak assay's REST API (``/api/v1/repositories/<name>/...``); other registries have
no verification and get a one-line error. ``--wait`` follows the manifest the tag pointed
at when waiting began (by digest), so a later push to the tag does not change what is
awaited. Exit status: 0 ready (or not a model: never gated), 1 failed, 2 timed out.

While the model's job waits, the registry says how many queued jobs go before it
(``job.ahead``) and whether any worker is there to run it (``workers``): both are shown,
and ``--wait`` warns at once, on stderr, when no worker has been seen lately, instead of
spinning until the timeout.

A profile that names hardware classes has the model verified once per class: the latest
result of each is shown as a matrix of class x run configuration (``client.class_matrix``)
with each class's status and why it did not pass or what it waits for.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

import click

from client.class_matrix import summary_line, table_lines
from client.errors import ClientError
from client.ref import Reference
from client.registry_client import RegistryClient
from client.results import profile_lines, quality_lines, regression_lines, result_lines

TERMINAL = ("ready", "failed")
POLL_SECONDS = 1.0


def _path(ref: Reference, digest: str | None = None) -> str:
    base = f"/api/v1/repositories/{ref.name}"
    digest = digest or ref.digest
    return f"{base}/manifests/{digest}" if digest else f"{base}/tags/{ref.reference}"


def fetch_state(client: RegistryClient, ref: Reference, digest: str | None = None) -> dict:
    resp = client.request("GET", _path(ref, digest), what=f"status of {ref}",
                          headers={"Accept": "application/json"})
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body:
        raise ClientError(f"{ref.registry.host} does not report verification (not an assay "
                          "registry?)")
    return body


def request_verification(client: RegistryClient, ref: Reference) -> dict:
    resp = client.request("POST", _path(ref) + "/verify", what=f"verify {ref}", ok=(202,),
                          headers={"Accept": "application/json"})
    return resp.json()


def _pending(state: dict, job_id: int | None) -> bool:
    if state.get("status") not in (*TERMINAL, None):
        return True
    job = state.get("job") or {}
    # A re-run of a ready model keeps it "ready" until the new verdict: follow the job.
    return job_id is not None and job.get("id") == job_id and \
        job.get("status") in ("queued", "running")


def wait_for(client: RegistryClient, ref: Reference, state: dict, timeout: float,
             quiet: bool, job_id: int | None = None) -> tuple[dict, bool]:
    """Poll until the manifest's status is final (and job ``job_id``, when given, has
    finished); ``(state, timed_out)``."""
    digest = state["digest"]
    deadline = time.monotonic() + timeout
    warned = _warn_no_worker(state, False)
    show = not quiet and sys.stderr.isatty()
    progress = None
    if show:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        progress.start()
        task = progress.add_task(_waiting_text(ref, state))
    try:
        while _pending(state, job_id):
            if time.monotonic() >= deadline:
                return state, True
            time.sleep(POLL_SECONDS)
            state = fetch_state(client, ref, digest)
            warned = _warn_no_worker(state, warned)
            if progress is not None:
                progress.update(task, description=_waiting_text(ref, state))
        return state, False
    finally:
        if progress is not None:
            progress.stop()


def _warn_no_worker(state: dict, warned: bool) -> bool:
    """Print the no-worker warning once (stderr); whether it has been printed."""
    warning = no_worker_warning(state)
    if warning and not warned:
        click.echo(f"warning: {warning}", err=True)
        return True
    return warned


def _waiting_text(ref: Reference, state: dict) -> str:
    job = state.get("job") or {}
    attempt = f", attempt {job['attempts']}/{job['max_attempts']}" if job.get("attempts") \
        else ""
    ahead = f", {jobs_ahead(job['ahead'])}" if isinstance(job.get("ahead"), int) else ""
    return f"{ref.name}@{state['digest'][:19]}: {state.get('status')}{ahead}{attempt}"


def jobs_ahead(n: int) -> str:
    return "next in line" if n == 0 else f"{n} job{'s' if n != 1 else ''} ahead"


def _ago(iso: str) -> str:
    try:
        then = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return "a while"
    seconds = max(0.0, (datetime.now(UTC) - then).total_seconds())
    for unit, size in (("days", 86400 * 2), ("h", 3600 * 2), ("min", 60 * 2)):
        if seconds >= size:
            return f"{seconds / (size / 2):.0f} {unit}"
    return f"{seconds:.0f} s"


def no_worker_warning(state: dict) -> str | None:
    """What to say when the model's job is live and no worker is there to run it (the
    registry's ``workers`` presence); None when one is, or the registry does not say."""
    job, workers = state.get("job") or {}, state.get("workers")
    if job.get("status") not in ("queued", "running") or not isinstance(workers, dict) \
            or workers.get("present", 1):
        return None
    last = workers.get("last_seen_at")
    seen = f"has been seen for {_ago(last)}" if last else "has ever been seen"
    return (f"no verification worker {seen}; start one with `assay worker`, or run "
            "`assay serve` with --workers 1 or more")


def summary(ref: Reference, state: dict) -> list[str]:
    """Human lines: the verdict, then the figures of the latest run."""
    name = f"{ref.registry.host}/{ref.name}@{state['digest']}"
    status = state.get("status")
    if status is None:
        return [f"{name}: not a model (never verified, never gated)"]
    return [f"{name}: {status}", *details(state)]


def details(state: dict) -> list[str]:
    """The indented lines under a status: reason, override, figures, output, then the
    profile's results (``client.results``: run matrix, quality, fit, regressions); for
    a profile naming hardware classes, the results per class instead."""
    status = state.get("status")
    lines: list[str] = []
    if state.get("reason") and status != "ready":
        lines.append(f"  reason: {state['reason']}")
    job = state.get("job") or {}
    if job.get("status") == "queued" and isinstance(job.get("ahead"), int):
        lines.append(f"  queued: {jobs_ahead(job['ahead'])}")
    if warning := no_worker_warning(state):
        lines.append(f"  warning: {warning}")
    if status in ("queued", "verifying") and job.get("last_error"):
        lines.append(f"  last attempt: {job['last_error']}")
    if state.get("override"):
        o = state["override"]
        lines.append(f"  override: by {o.get('by')} ({o.get('reason')})")
    if state.get("served") and state["served"] != state["digest"]:
        lines.append(f"  a pull by tag gets {state['served']} (the newest ready version)")
    elif "served" in state and state["served"] is None and status != "ready":
        lines.append("  a pull by tag is refused until a version of it passes verification")
    v = state.get("verification")
    if v and isinstance(v.get("classes"), dict) and v["classes"]:
        lines += class_details(v)
    elif v:
        lines += verification_lines(v)
        lines += result_lines(v)
    return lines


def verification_lines(v: dict, indent: str = "  ", figures_too: bool = True) -> list[str]:
    """Who verified it, on what and when; results adopted from elsewhere; then (with
    ``figures_too``) the figures and the output."""
    f = v.get("figures") or {}
    hw = v.get("hardware") or {}
    lines = [f"{indent}verified by {v.get('backend')} {v.get('backend_version') or ''} "
             f"on {hw.get('cpu_model', '?')} ({hw.get('threads', '?')} threads), "
             f"{v.get('finished_at')}"]
    imported = v.get("imported")
    if isinstance(imported, dict):  # measured elsewhere, carried in a bundle
        by = f" by {imported['by']}" if imported.get("by") else ""
        lines.append(f"{indent}results adopted from {imported.get('referrer')}{by}, "
                     f"{imported.get('at')}")
    if not figures_too:
        return lines
    figures = []
    if f.get("generation_tps") is not None:
        figures.append(f"generation {f['generation_tps']:.1f} tokens/s")
    if f.get("prompt_tps") is not None:
        figures.append(f"prompt {f['prompt_tps']:.1f} tokens/s")
    if f.get("ttft_s") is not None:
        figures.append(f"first token {f['ttft_s']:.2f} s")
    if f.get("load_s") is not None:
        figures.append(f"load {f['load_s']:.2f} s")
    if f.get("peak_rss_bytes"):
        figures.append(f"peak RSS {f['peak_rss_bytes'] / 2**20:.0f} MiB")
    if figures:
        lines.append(indent + ", ".join(figures))
    if f.get("output"):
        lines.append(f"{indent}output ({f.get('tokens_generated')} tokens): "
                     f"{json.dumps(f['output'])[:200]}")
    return lines


def class_details(v: dict) -> list[str]:
    """A profile naming hardware classes: the matrix of class x configuration
    (``client.class_matrix``), then per class that has a result who verified it and its
    quality and regressions (its run matrix is in the table)."""
    classes = v["classes"]
    measured = [(str(n), e["verification"]) for n, e in classes.items()
                if isinstance(e, dict) and isinstance(e.get("verification"), dict)]
    profile = next((c.get("profile") for _, c in measured if c.get("profile")), None)
    lines = [*profile_lines(profile), f"  {summary_line(classes)}", *table_lines(classes)]
    for name, result in measured:
        lines.append(f"  on {name}:")
        lines += verification_lines(result, "    ", figures_too=False)
        lines += ["  " + line for line in
                  (*quality_lines(result.get("quality")),
                   *regression_lines(result.get("regressions")))]
    return lines


def report(ref: Reference, state: dict, as_json: bool, timed_out: bool = False) -> int:
    """Print the state; return the exit status."""
    if as_json:
        click.echo(json.dumps(state, indent=2))
    else:
        for line in summary(ref, state):
            click.echo(line)
    if timed_out:
        click.echo(f"error: timed out waiting for {ref} (still {state.get('status')})",
                   err=True)
        return 2
    if state.get("status") == "failed":
        if not as_json:
            click.echo(f"error: {ref} failed verification: {state.get('reason')}", err=True)
        return 1
    return 0
