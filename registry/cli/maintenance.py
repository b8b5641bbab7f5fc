"""``assay gc|scrub|retention``: the maintenance jobs of ``registry.maintenance``, run
against the configured database and blob store (``serverside.service`` says which, and
creates none); each is safe while the registry serves."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

import click

from client.progress import Transfers
from registry.cli.options import data_dir_option, json_option
from registry.cli.serverside import call, service, show
from registry.errors import RegistryError
from registry.maintenance import retention as policy
from registry.maintenance.gc import collect
from registry.maintenance.scrub import scrub as run_scrub


@click.command()
@data_dir_option("[ASSAY_DATA_DIR]")
@click.option("--grace-seconds", type=int,
              help="Keep unreferenced blobs younger than this [ASSAY_GC_GRACE_SECONDS, 3600].")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted, delete nothing.")
@json_option
def gc(data_dir, grace_seconds, dry_run, as_json) -> None:
    """Delete blobs no manifest refers to, and abandoned uploads; safe while serving.

    A blob is freed once the grace period after its last use has passed; the report
    says how many unreferenced blobs and open uploads wait, and when they can go.
    """
    report = collect(service(data_dir, gc_grace_seconds=grace_seconds), dry_run=dry_run)
    show(report.to_json(), as_json, report.lines())


def _age(ctx, param, value):
    """``30m``, ``12h``, ``7d``, ``2w`` or plain seconds, as a timedelta (None stays None)."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    number, unit = (value[:-1], value[-1]) if value[-1:] in units else (value, "s")
    if not number.isdigit():
        raise click.BadParameter(f"{value!r} is not an age like 90s, 30m, 12h, 7d or 2w")
    return timedelta(seconds=int(number) * units[unit])


def _scrub_progress(bars: Transfers, quiet: bool):
    """The scrub's progress callback: a bar on a terminal; without one (cron), a line on
    stderr every 30 s; nothing with --quiet."""
    lines = not quiet and not bars.enabled
    last = {"at": time.monotonic(), "bytes": 0, "task": None}

    def progress(p) -> None:
        if bars.enabled:
            if last["task"] is None:
                last["task"] = bars.task("scrub", p.bytes_total)
            last["task"].advance(p.bytes_done - last["bytes"])
            last["bytes"] = p.bytes_done
        elif lines and time.monotonic() - last["at"] >= 30:
            last["at"] = time.monotonic()
            click.echo(f"scrub: {p.blobs_done}/{p.blobs_total} blob(s), "
                       f"{p.bytes_done}/{p.bytes_total} bytes", err=True)

    return progress


def _print_scrub_report(report) -> None:
    for d in report.damaged:
        state = "; quarantined" if d.quarantined else ""
        click.echo(f"{d.problem} {d.digest}: {d.detail}{state}")
        click.echo(f"  repositories: {', '.join(d.repositories) or '-'}")
        for m in d.manifests:
            tagged = f" (tags: {', '.join(m.tags)})" if m.tags else ""
            click.echo(f"  manifest: {m.repository}@{m.digest}{tagged}")
    click.echo(f"scrubbed {report.checked} blob(s), {report.bytes} bytes: "
               f"{report.corrupt} corrupt, {report.missing} missing, "
               f"{report.quarantined} quarantined")


@click.command()
@data_dir_option("[ASSAY_DATA_DIR]")
@click.option("--quarantine", is_flag=True,
              help="Take damaged blobs out of service (corrupt bytes move to quarantine/) "
                   "until a client pushes them again.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="Check at most N blobs, the least recently scrubbed first.")
@click.option("--older-than", callback=_age, metavar="AGE",
              help="Only blobs not scrubbed within AGE (90s, 30m, 12h, 7d, 2w).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def scrub(data_dir, quarantine, limit, older_than, as_json, quiet) -> None:
    """Re-hash stored blobs and report corrupt or missing ones; safe while serving.

    Exit status: 0 nothing damaged, 1 damaged blobs found, 2 the scrub could not finish.
    """
    svc = service(data_dir)
    bars = Transfers(quiet=quiet)
    progress = _scrub_progress(bars, quiet)
    try:
        with bars:
            report = run_scrub(svc, quarantine=quarantine, limit=limit,
                               older_than=older_than, progress=progress)
    except RegistryError as exc:
        error = click.ClickException(f"scrub stopped: {exc.message} (blobs checked so far "
                                     "keep their scrub time; run it again to resume)")
        error.exit_code = 2
        raise error from exc
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_scrub_report(report)
    if not report.clean:
        sys.exit(1)


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@data_dir_option()
@json_option
def retention(dry_run, data_dir, as_json) -> None:
    """Apply every namespace's retention policy (assay namespace retention).

    Deletes old tags and old untagged manifests as a DELETE request would (events,
    audit log); anything pushed or tagged meanwhile is kept. Their blobs are freed by
    `assay gc` once the grace period after their last use has passed: the report says
    how many and when, and which untagged manifests stay.
    """
    report = call(policy.apply, service(data_dir), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    show(report.to_json(), as_json, [
        *(f"{verb} {d.target}  ({d.reason})" for d in report.deleted),
        *(f"kept {d.target}  (changed since listed)" for d in report.skipped),
        report.summary(), *report.notes(),
    ])
