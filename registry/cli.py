"""The ``assay`` command line: ``serve``, ``gc``, ``migrate`` (the registry), and the client
commands ``push``, ``pull``, ``ls``, ``inspect``, ``rm``, ``login``, ``logout``, ``key``,
``token`` (see ``client``).

Every server option can also be set with its ``ASSAY_*`` environment variable; a flag given
on the command line wins.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


def _settings(**overrides):
    """The settings, or a one-line ``error:`` naming the variable that is wrong."""
    # Imported here: pydantic-settings costs ~0.1 s, which client commands never need.
    from pydantic import ValidationError

    from registry.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "ASSAY_" + "_".join(map(str, first["loc"])).upper()
        message = first["msg"].removeprefix("Value error, ")
        raise click.ClickException(message if message.startswith(name)
                                   else f"{name}: {message}") from None


class _Group(click.Group):
    """Usage errors (a missing argument, a bad option) as one ``error:`` line, like every
    other failure of the CLI, instead of click's usage block."""

    def main(self, *args, **kwargs):
        if not kwargs.pop("standalone_mode", True):
            return super().main(*args, standalone_mode=False, **kwargs)  # embedding caller
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group)
def main() -> None:
    """assay: an OCI registry for models that runs every model before it is served."""


@main.command()
@click.option("--host", help="Interface to bind [ASSAY_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [ASSAY_PORT, default 5000].")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Where SQLite and the filesystem blob store live [ASSAY_DATA_DIR, ./data].")
@click.option("--log-level", help="uvicorn log level [ASSAY_LOG_LEVEL, info].")
@click.option("--workers", type=click.IntRange(0, 64),
              help="Verification worker processes to run alongside [ASSAY_WORKERS, 1]; "
                   "0 leaves verification to `assay worker` processes.")
@click.option("--auth/--no-auth", default=None,
              help="Require credentials (users, tokens, roles) [ASSAY_AUTH, off].")
def serve(host, port, data_dir, log_level, workers, auth) -> None:
    """Serve the registry (OCI Distribution API under /v2/, REST under /api/v1/) and,
    unless --workers 0, verify pushed models in background worker processes."""
    import uvicorn

    from registry.api.headerlimit import HttpToolsProtocol
    from registry.api.requestid import configure_logging
    from registry.app import create_app

    settings = _settings(host=host, port=port, data_dir=data_dir, log_level=log_level,
                         workers=workers, auth=auth)
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, workers=settings.workers)
    json_logs = settings.log_format == "json"
    # JSON: uvicorn's loggers go through our root handler (log_config=None) and the access
    # lines come from RequestIdMiddleware, which knows the request id and the user.
    extra = {"log_config": None} if json_logs else {}
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=settings.log_level == "debug" and not json_logs, loop="uvloop",
                http=HttpToolsProtocol, h11_max_incomplete_event_size=settings.max_header_bytes,
                server_header=False, date_header=False,
                # Only a configured proxy's X-Forwarded-* are believed (rightmost untrusted
                # address wins); without one they are ignored.
                proxy_headers=settings.forwarded_allow_ips is not None,
                forwarded_allow_ips=settings.forwarded_allow_ips, **extra)


# Identities and roles on the server's database (registry.cli_admin).
def _add_admin_commands() -> None:
    from registry.cli_admin import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_add_admin_commands()


@main.command()
@click.option("-c", "--concurrency", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (each runs one verification at a time).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="[ASSAY_DATA_DIR]")
@click.option("--log-level", help="[ASSAY_LOG_LEVEL, info]")
def worker(concurrency, data_dir, log_level) -> None:
    """Run verification workers against the configured database and blob store until
    SIGTERM/Ctrl-C (a job in progress is handed back to the queue)."""
    from registry.db import migrate as run_migrations
    from worker.pool import Pool

    settings = _settings(data_dir=data_dir, log_level=log_level)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(settings.sqlalchemy_url)
    pool = Pool(settings, concurrency)
    pool.start()
    logging.getLogger("assay").info("%d worker(s): pids %s", concurrency, pool.pids)
    pool.wait()


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="[ASSAY_DATA_DIR]")
def migrate(data_dir) -> None:
    """Create or upgrade the database schema (serve does this at start too)."""
    from registry.db import migrate as run

    settings = _settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run(settings.sqlalchemy_url)
    click.echo("database is at the latest schema")


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="[ASSAY_DATA_DIR]")
@click.option("--grace-seconds", type=int,
              help="Keep unreferenced blobs younger than this [ASSAY_GC_GRACE_SECONDS, 3600].")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted, delete nothing.")
def gc(data_dir, grace_seconds, dry_run) -> None:
    """Delete blobs no manifest refers to, and abandoned uploads; safe while serving."""
    from registry.app import build_service
    from registry.maintenance.gc import collect

    settings = _settings(data_dir=data_dir, gc_grace_seconds=grace_seconds)
    report = collect(build_service(settings), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {report.blobs} blob(s), {report.bytes} bytes; "
               f"{report.orphans} orphaned object(s); {report.uploads} expired upload(s); "
               f"{report.links} unused repository link(s)")


def _age(ctx, param, value):
    """``30m``, ``12h``, ``7d``, ``2w`` or plain seconds, as a timedelta (None stays None)."""
    from datetime import timedelta

    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    number, unit = (value[:-1], value[-1]) if value[-1:] in units else (value, "s")
    if not number.isdigit():
        raise click.BadParameter(f"{value!r} is not an age like 90s, 30m, 12h, 7d or 2w")
    return timedelta(seconds=int(number) * units[unit])


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="[ASSAY_DATA_DIR]")
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
    import json
    import time

    from client.progress import Transfers
    from registry.app import build_service
    from registry.errors import RegistryError
    from registry.maintenance.scrub import scrub as run_scrub

    settings = _settings(data_dir=data_dir)
    bars = Transfers(quiet=quiet)
    # Without a terminal (cron), a progress line every 30 s instead of a bar.
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

    try:
        with bars:
            report = run_scrub(build_service(settings), quarantine=quarantine, limit=limit,
                               older_than=older_than, progress=progress)
    except RegistryError as exc:
        error = click.ClickException(f"scrub stopped: {exc.message} (blobs checked so far "
                                     "keep their scrub time; run it again to resume)")
        error.exit_code = 2
        raise error from exc
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
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
    if not report.clean:
        sys.exit(1)


# ---------------------------------------------------------------------------- client

REF_HELP = ("REF is HOST[:PORT]/NAME[:TAG|@DIGEST] (tag default: latest); loopback hosts "
            "are spoken to over plain HTTP, others over HTTPS unless --insecure.")
insecure_option = click.option("--insecure", is_flag=True,
                               help="Use plain HTTP even for a non-loopback registry.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")


@main.command(epilog=REF_HELP)
@click.argument("path")
@click.argument("ref")
@click.option("--format", "fmt", metavar="ollama|docker|modelpack",
              help="Layout: for a .gguf ollama (default), docker or modelpack; for a model "
                   "directory modelpack (default) or docker; a Modelfile is always ollama.")
@insecure_option
@quiet_option
def push(path, ref, fmt, insecure, quiet) -> None:
    """Push PATH (a .gguf file, an Ollama Modelfile, or a safetensors/MLX model directory)
    to REF. Blobs the registry already has are skipped or mounted."""
    from client.commands import run_push
    from registry.formats.cards import LocalCards  # the GGUF reader (and numpy): only here

    run_push(path, ref, fmt, insecure, quiet, LocalCards())


@main.command(epilog=REF_HELP)
@click.argument("ref")
@click.option("-o", "--output", metavar="DIR",
              help="Directory to write into [default: . for a single weights file, "
                   "./NAME for a model directory].")
@click.option("-j", "--parallel", type=click.IntRange(1, 64),
              help="Parts of a large blob fetched at once [default: 4; 1 for a registry "
                   "on this machine, where more streams only compete for CPU].")
@insecure_option
@quiet_option
def pull(ref, output, parallel, insecure, quiet) -> None:
    """Pull REF and write the model as files (.gguf plus Modelfile, or a model directory).
    Parallel ranged downloads; an interrupted pull resumes; every digest is verified."""
    from client.commands import run_pull

    run_pull(ref, output, insecure, quiet, parallel)


@main.command(name="ls")
@click.argument("location", metavar="[HOST[:PORT][/REPO]]", required=False,
                envvar="ASSAY_REGISTRY", default="127.0.0.1:5000")
@insecure_option
def ls_command(location, insecure) -> None:
    """List the repositories of a registry, or the tags of REPO (on assay with the model's
    format, architecture, quantization and size). The registry defaults to $ASSAY_REGISTRY,
    else 127.0.0.1:5000."""
    from client.commands import run_ls

    run_ls(location, insecure)


@main.command(epilog=REF_HELP)
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the details as JSON.")
@insecure_option
def inspect(ref, as_json, insecure) -> None:
    """Show a manifest, its model card, logical vs. stored size, status and verification."""
    from client.commands import run_inspect

    run_inspect(ref, insecure, as_json)


@main.command(epilog=REF_HELP)
@click.argument("ref")
@click.option("--wait", is_flag=True, help="Wait until the model is ready or failed.")
@click.option("--timeout", type=click.FloatRange(min=0), default=1800.0, show_default=True,
              help="Give up waiting after this many seconds (exit 2).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@insecure_option
@quiet_option
def status(ref, wait, timeout, as_json, insecure, quiet) -> None:
    """Show a model's verification status and figures. With --wait, exit 0 once it is
    ready, 1 if it failed (the reason is printed), 2 on timeout."""
    from client.commands import run_status

    run_status(ref, wait, timeout, as_json, insecure, quiet)


@main.command(epilog=REF_HELP)
@click.argument("ref")
@click.option("--wait", is_flag=True, help="Wait for the new verdict (as `status --wait`).")
@click.option("--timeout", type=click.FloatRange(min=0), default=1800.0, show_default=True)
@insecure_option
@quiet_option
def verify(ref, wait, timeout, insecure, quiet) -> None:
    """Run verification of a model again (on assay registries)."""
    from client.commands import run_verify

    run_verify(ref, wait, timeout, insecure, quiet)


@main.command(epilog=REF_HELP)
@click.argument("ref")
@insecure_option
def rm(ref, insecure) -> None:
    """Delete a tag (REF with :TAG) or a manifest (REF with @DIGEST)."""
    from client.commands import run_rm

    run_rm(ref, insecure)


# ---------------------------------------------------------------- outgoing webhooks

registry_argument = click.argument("registry", metavar="[REGISTRY]", required=False,
                                   envvar="ASSAY_REGISTRY", default="127.0.0.1:5000")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@main.group(cls=_Group)
def webhook() -> None:
    """Outgoing webhooks of an assay registry: signed events (push, tag, delete,
    verification.*) POSTed to a URL. REGISTRY is HOST[:PORT] (default $ASSAY_REGISTRY,
    else 127.0.0.1:5000)."""


@webhook.command(name="add")
@click.argument("url")
@registry_argument
@click.option("--secret", help="Key of the X-Assay-Signature HMAC [default: a random one, "
                               "printed once].")
@click.option("--event", "events", multiple=True, metavar="ACTION",
              type=click.Choice(["push", "delete", "tag", "verification.started",
                                 "verification.succeeded", "verification.failed"]),
              help="An event to send (repeatable): push, tag, delete, verification."
                   "{started,succeeded,failed} [default: every event].")
@click.option("--repository", metavar="GLOB", help="Only repositories matching this glob, "
                                                   "e.g. 'team/*'.")
@insecure_option
@json_option
def webhook_add(url, registry, secret, events, repository, insecure, as_json) -> None:
    """Subscribe URL to the registry's events."""
    from client.webhooks import run_add

    run_add(url, registry, secret, events, repository, insecure, as_json)


@webhook.command(name="ls")
@registry_argument
@insecure_option
@json_option
def webhook_ls(registry, insecure, as_json) -> None:
    """List the subscriptions, with counts of their deliveries."""
    from client.webhooks import run_ls

    run_ls(registry, insecure, as_json)


@webhook.command(name="rm")
@click.argument("webhook_id", metavar="ID", type=click.IntRange(min=1))
@registry_argument
@insecure_option
def webhook_rm(webhook_id, registry, insecure) -> None:
    """Remove subscription ID (and its delivery log)."""
    from client.webhooks import run_rm

    run_rm(webhook_id, registry, insecure)


@webhook.command(name="deliveries")
@click.argument("webhook_id", metavar="ID", type=click.IntRange(min=1))
@registry_argument
@click.option("-n", "limit", type=click.IntRange(1, 100), default=20, show_default=True,
              help="How many, newest first.")
@insecure_option
@json_option
def webhook_deliveries(webhook_id, registry, limit, insecure, as_json) -> None:
    """Show the delivery log of subscription ID: status, attempts, HTTP codes."""
    from client.webhooks import run_deliveries

    run_deliveries(webhook_id, registry, limit, insecure, as_json)


@webhook.command(name="redeliver")
@click.argument("webhook_id", metavar="ID", type=click.IntRange(min=1))
@click.argument("delivery_id", metavar="DELIVERY", type=click.IntRange(min=1))
@registry_argument
@insecure_option
def webhook_redeliver(webhook_id, delivery_id, registry, insecure) -> None:
    """Send delivery DELIVERY of subscription ID again."""
    from client.webhooks import run_redeliver

    run_redeliver(webhook_id, delivery_id, registry, insecure)


# ---------------------------------------------------------------- credentials

registry_option = click.option("--registry", "registry", metavar="HOST[:PORT]",
                               envvar="ASSAY_REGISTRY", default="127.0.0.1:5000",
                               show_default=True, help="The registry [$ASSAY_REGISTRY].")


@main.command()
@registry_argument
@click.option("-u", "--username", metavar="USER", help="User name [prompted on a terminal].")
@click.option("--password-stdin", is_flag=True,
              help="Read the password (or a personal access token) from stdin.")
@insecure_option
def login(registry, username, password_stdin, insecure) -> None:
    """Check credentials against REGISTRY (HOST[:PORT], default $ASSAY_REGISTRY, else
    127.0.0.1:5000) and store them for later commands (~/.config/assay/auth.json, mode
    0600; $ASSAY_CONFIG_DIR moves it). ASSAY_TOKEN, or ASSAY_USERNAME and ASSAY_PASSWORD,
    override the stored credentials; Docker's ~/.docker/config.json is the fallback."""
    from client.account import run_login

    run_login(registry, username, password_stdin, insecure)


@main.command()
@registry_argument
@insecure_option
def logout(registry, insecure) -> None:
    """Forget the credentials stored for REGISTRY."""
    from client.account import run_logout

    run_logout(registry, insecure)


@main.group(cls=_Group)
def key() -> None:
    """Your Ollama public keys on an assay registry (with one registered, `ollama push`
    and `ollama pull` sign in as you)."""


@key.command(name="add")
@click.argument("pubkey_file", metavar="[PUBKEY_FILE]", required=False)
@registry_option
@insecure_option
@json_option
def key_add(pubkey_file, registry, insecure, as_json) -> None:
    """Register PUBKEY_FILE (default ~/.ollama/id_ed25519.pub) for the logged-in user."""
    from client.account import run_key_add

    run_key_add(pubkey_file, registry, insecure, as_json)


@key.command(name="ls")
@registry_option
@insecure_option
@json_option
def key_ls(registry, insecure, as_json) -> None:
    """List your registered keys."""
    from client.account import run_key_ls

    run_key_ls(registry, insecure, as_json)


@key.command(name="rm")
@click.argument("key_id", metavar="ID", type=click.IntRange(min=1))
@registry_option
@insecure_option
def key_rm(key_id, registry, insecure) -> None:
    """Remove key ID."""
    from client.account import run_key_rm

    run_key_rm(key_id, registry, insecure)


@main.group(cls=_Group)
def token() -> None:
    """Your personal access tokens on an assay registry (for CI, scripts, ASSAY_TOKEN).
    Any user's tokens, on the server: `assay user token`."""


@token.command(name="create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True,
              help="pull, push, delete, admin, optionally :NAMESPACE (repeatable; "
                   "default pull and push).")
@click.option("--expires-days", type=click.FloatRange(min=0, min_open=True),
              help="The token expires after this many days [default: never].")
@registry_option
@insecure_option
@json_option
@click.option("--name", "server_token_name", hidden=True)
@click.option("--data-dir", type=click.Path(path_type=Path), hidden=True)
@click.pass_context
def token_create(ctx, name, scopes, expires_days, registry, insecure, as_json,
                 server_token_name, data_dir) -> None:
    """Create a token called NAME and print it (shown once)."""
    if data_dir is not None or server_token_name is not None:
        # The earlier server-side spelling, `assay token create USER --name N --data-dir D`
        # (now `assay user token create`), still works: scripts and fixtures use it.
        from registry.cli_admin import token_create as on_server

        if server_token_name is None:
            raise click.UsageError("give the token's name with --name (or drop --data-dir "
                                   "to create your own token over the API)")
        ctx.invoke(on_server, user_name=name, token_name=server_token_name, scopes=scopes,
                   expires_days=expires_days, data_dir=data_dir)
        return
    from client.account import run_token_create

    run_token_create(name, scopes, expires_days, registry, insecure, as_json)


@token.command(name="ls")
@registry_option
@insecure_option
@json_option
def token_ls(registry, insecure, as_json) -> None:
    """List your tokens (never their secrets)."""
    from client.account import run_token_ls

    run_token_ls(registry, insecure, as_json)


@token.command(name="revoke")
@click.argument("token_id", metavar="ID", type=click.IntRange(min=1))
@registry_option
@insecure_option
def token_revoke(token_id, registry, insecure) -> None:
    """Revoke your token ID."""
    from client.account import run_token_revoke

    run_token_revoke(token_id, registry, insecure)


if __name__ == "__main__":
    sys.exit(main())
