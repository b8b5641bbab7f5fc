"""``assay user|robot|namespace|audit|retention``: identities, roles, namespace settings
(quota, retention) and the retention run, managed on the server.

These commands work on the configured database directly (``ASSAY_DATABASE_URL`` or the
SQLite file in ``--data-dir``), before the registry is first started too: that is how the
first admin is made. Every change is in the audit log, as ``local:<os user>``.

Any user's tokens are ``assay user token create|ls|revoke USER``; ``assay token`` is the
client command for the signed-in user's own tokens (over REST, ``client.account``).
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import click

data_dir_option = click.option("--data-dir", type=click.Path(path_type=Path),
                               help="[ASSAY_DATA_DIR, ./data]")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _service(data_dir):
    from registry.app import build_service
    from registry.cli import _settings
    from registry.services.audit import Actor, current_actor

    settings = _settings(data_dir=data_dir)
    current_actor.set(Actor(f"local:{getpass.getuser()}"[:64]))
    return build_service(settings)


def _run(fn, *args, **kwargs):
    """Call a service; its errors become one ``error:`` line and exit status 1."""
    from registry.errors import RegistryError

    try:
        return fn(*args, **kwargs)
    except RegistryError as exc:
        raise click.ClickException(exc.message) from None


def _password(stdin: bool) -> str:
    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise click.ClickException("give the password with --password-stdin")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _print(value, as_json: bool, lines) -> None:
    if as_json:
        click.echo(json.dumps(value, indent=2))
    else:
        for line in lines:
            click.echo(line)


# ---- users ----------------------------------------------------------------------------

@click.group()
def user() -> None:
    """People who sign in with a password (and their tokens and keys)."""


@user.command(name="add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--admin", is_flag=True, help="A site admin (may do everything).")
@data_dir_option
def user_add(name, password_stdin, admin, data_dir) -> None:
    """Add a user; they own the namespace NAME. Works before the server first starts."""
    password = _password(password_stdin)
    svc = _service(data_dir)
    _run(svc.access.add_user, name, password, admin=admin)
    click.echo(f"added {'admin ' if admin else ''}user {name}")


@user.command(name="passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@data_dir_option
def user_passwd(name, password_stdin, data_dir) -> None:
    """Set a user's password."""
    password = _password(password_stdin)
    _run(_service(data_dir).access.set_password, name, password)
    click.echo(f"password of {name} changed")


@user.command(name="admin")
@click.argument("name")
@click.option("--revoke", is_flag=True, help="Take site admin away instead.")
@data_dir_option
def user_admin(name, revoke, data_dir) -> None:
    """Make a user a site admin (or, with --revoke, no longer one)."""
    _run(_service(data_dir).access.set_admin, name, not revoke)
    click.echo(f"{name} is {'no longer ' if revoke else ''}a site admin")


@user.command(name="rm")
@click.argument("name")
@data_dir_option
def user_rm(name, data_dir) -> None:
    """Delete a user or robot with their tokens, keys and roles."""
    _run(_service(data_dir).access.remove_user, name)
    click.echo(f"removed {name}")


@user.command(name="ls")
@data_dir_option
@json_option
def user_ls(data_dir, as_json) -> None:
    """List users and robots."""
    users = _run(_service(data_dir).access.list_users)
    _print(users, as_json, [f"{u['name']:<32} {'robot' if u['robot'] else 'user':<6}"
                            f"{' admin' if u['admin'] else ''}" for u in users])


# ---- robots and tokens -------------------------------------------------------------

@click.group()
def robot() -> None:
    """Robot accounts: no password, only tokens (for CI and deployments)."""


@robot.command(name="add")
@click.argument("name")
@click.option("--namespace", "grants", multiple=True, metavar="NS=ROLE",
              help="A role in a namespace, e.g. team=write (repeatable).")
@click.option("--scope", "scopes", multiple=True,
              help="Token scope: pull, push, delete, admin, optionally :NAMESPACE "
                   "(repeatable; default pull and push).")
@click.option("--expires-days", type=click.FloatRange(min=0, min_open=True),
              help="The token expires after this many days [default: never].")
@data_dir_option
def robot_add(name, grants, scopes, expires_days, data_dir) -> None:
    """Add a robot, grant it roles, and print its first token (shown once)."""
    pairs = []
    for grant in grants:
        ns, sep, role = grant.partition("=")
        if not sep:
            raise click.ClickException(f"--namespace {grant!r}: expected NS=ROLE")
        pairs.append((ns, role))
    svc = _service(data_dir)
    _run(svc.access.add_user, name, None, robot=True)
    for ns, role in pairs:
        _run(svc.access.grant, ns, name, role)
    _, secret = _run(svc.access.create_token, name, "initial", list(scopes) or None,
                     expires_days)
    click.echo(secret)


@user.group()
def token() -> None:
    """Personal access tokens of any user or robot, managed on the server (your own, on
    a running registry: `assay token`)."""


@token.command(name="create")
@click.argument("user_name", metavar="USER")
@click.option("--name", "token_name", required=True, help="What the token is for.")
@click.option("--scope", "scopes", multiple=True,
              help="pull, push, delete, admin, optionally :NAMESPACE (repeatable; "
                   "default pull and push).")
@click.option("--expires-days", type=click.FloatRange(min=0, min_open=True),
              help="The token expires after this many days [default: never].")
@data_dir_option
def token_create(user_name, token_name, scopes, expires_days, data_dir) -> None:
    """Create a token for USER and print it (shown once)."""
    _, secret = _run(_service(data_dir).access.create_token, user_name, token_name,
                     list(scopes) or None, expires_days)
    click.echo(secret)


@token.command(name="ls")
@click.argument("user_name", metavar="USER")
@data_dir_option
@json_option
def token_ls(user_name, data_dir, as_json) -> None:
    """List USER's tokens (never their secrets)."""
    tokens = _run(_service(data_dir).access.list_tokens, user_name)
    _print(tokens, as_json, [
        f"{t['id']:>4} {t['name']:<20} {t['prefix']}… {','.join(t['scopes']):<20} "
        f"{'revoked' if t['revoked'] else 'expires ' + (t['expires_at'] or 'never')}"
        for t in tokens])


@token.command(name="revoke")
@click.argument("user_name", metavar="USER")
@click.argument("token_id", metavar="ID", type=int)
@data_dir_option
def token_revoke(user_name, token_id, data_dir) -> None:
    """Revoke one of USER's tokens."""
    _run(_service(data_dir).access.revoke_token, user_name, token_id)
    click.echo(f"revoked token {token_id} of {user_name}")


# ---- namespaces -------------------------------------------------------------------

@click.group()
def namespace() -> None:
    """Roles in a namespace (read, write, admin), its anonymous-pull switch, storage
    quota and retention policy."""


@namespace.command(name="grant")
@click.argument("ns", metavar="NAMESPACE")
@click.argument("user_name", metavar="USER")
@click.argument("role", type=click.Choice(["read", "write", "admin"]))
@data_dir_option
def namespace_grant(ns, user_name, role, data_dir) -> None:
    """Give USER a ROLE in NAMESPACE (replacing any role they had)."""
    _run(_service(data_dir).access.grant, ns, user_name, role)
    click.echo(f"{user_name} has {role} in {ns}")


@namespace.command(name="revoke")
@click.argument("ns", metavar="NAMESPACE")
@click.argument("user_name", metavar="USER")
@data_dir_option
def namespace_revoke(ns, user_name, data_dir) -> None:
    """Take USER's role in NAMESPACE away."""
    _run(_service(data_dir).access.revoke, ns, user_name)
    click.echo(f"{user_name} has no role in {ns}")


@namespace.command(name="anonymous-pull")
@click.argument("ns", metavar="NAMESPACE")
@click.argument("state", type=click.Choice(["on", "off"]))
@data_dir_option
def namespace_anonymous(ns, state, data_dir) -> None:
    """Let anyone pull from NAMESPACE without signing in (on), or not (off)."""
    _run(_service(data_dir).access.set_anonymous_pull, ns, state == "on")
    click.echo(f"anonymous pull from {ns} is {state}")


def _limit(low: int):
    """A click callback: an integer of at least ``low``, or "none" (clear the setting);
    None when the option is not given."""

    def convert(ctx, param, value):
        if value is None or value.lower() == "none":
            return value and "none"
        try:
            n = int(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a whole number, or none") from None
        if n < low:
            raise click.BadParameter(f"must be at least {low}, or none")
        return n

    return convert


@namespace.command(name="quota")
@click.argument("ns", metavar="NAMESPACE")
@click.argument("size", metavar="SIZE|none")
@data_dir_option
def namespace_quota(ns, size, data_dir) -> None:
    """Limit NAMESPACE's storage to SIZE (10GiB, 500MB, 1.5TiB or bytes; none: unlimited).

    Usage counts each distinct blob of its repositories once; a push that would pass
    the quota is refused (403 DENIED). Nothing stored is removed.
    """
    from registry.services.quotas import human, parse_size

    if size.lower() == "none":
        value = None
    else:
        try:
            value = parse_size(size)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    svc = _service(data_dir)
    _run(svc.access.configure_namespace, ns, quota_bytes=value)
    used = _run(svc.access.namespace, ns)["usage_bytes"]
    click.echo(f"quota of {ns}: {'none' if value is None else human(value)} "
               f"({human(used)} used)")


@namespace.command(name="retention")
@click.argument("ns", metavar="NAMESPACE")
@click.option("--keep-tags", metavar="N|none", callback=_limit(1),
              help="Keep the N newest tags of each repository (none: all).")
@click.option("--untagged-days", metavar="D|none", callback=_limit(1),
              help="Delete untagged manifests older than D days (none: never).")
@data_dir_option
def namespace_retention(ns, keep_tags, untagged_days, data_dir) -> None:
    """Set NAMESPACE's retention policy; `assay retention` applies it."""
    changes = {}
    if keep_tags is not None:
        changes["keep_tags"] = None if keep_tags == "none" else keep_tags
    if untagged_days is not None:
        changes["untagged_days"] = None if untagged_days == "none" else untagged_days
    if not changes:
        raise click.ClickException("give --keep-tags and/or --untagged-days (N or none)")
    svc = _service(data_dir)
    _run(svc.access.configure_namespace, ns, **changes)
    info = _run(svc.access.namespace, ns)
    click.echo(f"retention of {ns}: {_retention_text(info)}")


def _retention_text(info: dict) -> str:
    keep = info["keep_tags"]
    days = info["untagged_days"]
    return (f"keep {'all' if keep is None else f'the newest {keep}'} tags per repository; "
            + ("keep untagged manifests" if days is None
               else f"delete untagged manifests after {days} days"))


@namespace.command(name="show")
@click.argument("ns", metavar="NAMESPACE")
@data_dir_option
@json_option
def namespace_show(ns, data_dir, as_json) -> None:
    """Members, anonymous-pull switch, quota and usage, retention of NAMESPACE."""
    from registry.services.quotas import human

    info = _run(_service(data_dir).access.namespace, ns)
    quota = info["quota_bytes"]
    _print(info, as_json, [f"anonymous pull: {'on' if info['anonymous_pull'] else 'off'}",
                           f"storage: {human(info['usage_bytes'])} used of "
                           f"{'no quota' if quota is None else human(quota)}",
                           f"retention: {_retention_text(info)}",
                           *(f"{m['user']:<32} {m['role']}" for m in info["members"])])


# ---- retention --------------------------------------------------------------------

@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@data_dir_option
@json_option
def retention(dry_run, data_dir, as_json) -> None:
    """Apply every namespace's retention policy (assay namespace retention).

    Deletes old tags and old untagged manifests as a DELETE request would (events,
    audit log); anything pushed or tagged meanwhile is kept. Their blobs are freed by
    `assay gc`: run it after this command.
    """
    from registry.maintenance import retention as policy

    report = _run(policy.apply, _service(data_dir), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    _print(report.to_json(), as_json, [
        *(f"{verb} {d.target}  ({d.reason})" for d in report.deleted),
        *(f"kept {d.target}  (changed since listed)" for d in report.skipped),
        report.summary() + ("" if dry_run or not report.deleted
                            else "; run `assay gc` to free their blobs"),
    ])


# ---- audit log --------------------------------------------------------------------

@click.command()
@click.option("-n", "limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--actor", help="Only entries by this user.")
@click.option("--action", help="Only this action (push, delete, override, user.add, ...).")
@data_dir_option
@json_option
def audit(limit, actor, action, data_dir, as_json) -> None:
    """The audit log, newest first: pushes, deletes, permission changes, overrides."""
    entries = _run(_service(data_dir).audit.entries, limit=limit, actor=actor, action=action)
    _print(entries, as_json, [
        f"{e['at'][:19]} {e['actor'] or '-':<16} {e['action']:<24} {e['target']}"
        + (f" {json.dumps(e['detail'])}" if e["detail"] else "") for e in entries])


COMMANDS = [user, robot, namespace, audit, retention]
