"""``assay user|robot``: identities and their tokens, managed on the server.

These commands work on the configured database directly (``ASSAY_DATABASE_URL`` or the
SQLite file in ``--data-dir``), before the registry is first started too: that is how the
first admin is made. Every change is in the audit log, as ``local:<os user>``.

Any user's tokens are ``assay user token create|ls|revoke USER``; ``assay token`` is the
client command for the signed-in user's own tokens (over REST, ``client.account``).
"""

from __future__ import annotations

import sys

import click

from registry.cli.options import data_dir_option, expires_option, json_option, scope_option
from registry.cli.serverside import call, service, show


def _password(stdin: bool) -> str:
    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise click.ClickException("give the password with --password-stdin")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


# ---- users ----------------------------------------------------------------------------

@click.group()
def user() -> None:
    """People who sign in with a password (and their tokens and keys)."""


@user.command(name="add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--admin", is_flag=True, help="A site admin (may do everything).")
@data_dir_option()
def user_add(name, password_stdin, admin, data_dir) -> None:
    """Add a user; they own the namespace NAME. Works before the server first starts."""
    password = _password(password_stdin)
    svc = service(data_dir)
    call(svc.identities.add_user, name, password, admin=admin)
    click.echo(f"added {'admin ' if admin else ''}user {name}")


@user.command(name="passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@data_dir_option()
def user_passwd(name, password_stdin, data_dir) -> None:
    """Set a user's password."""
    password = _password(password_stdin)
    call(service(data_dir).identities.set_password, name, password)
    click.echo(f"password of {name} changed")


@user.command(name="admin")
@click.argument("name")
@click.option("--revoke", is_flag=True, help="Take site admin away instead.")
@data_dir_option()
def user_admin(name, revoke, data_dir) -> None:
    """Make a user a site admin (or, with --revoke, no longer one)."""
    call(service(data_dir).identities.set_admin, name, not revoke)
    click.echo(f"{name} is {'no longer ' if revoke else ''}a site admin")


@user.command(name="rm")
@click.argument("name")
@data_dir_option()
def user_rm(name, data_dir) -> None:
    """Delete a user or robot with their tokens, keys and roles."""
    call(service(data_dir).identities.remove_user, name)
    click.echo(f"removed {name}")


@user.command(name="ls")
@data_dir_option()
@json_option
def user_ls(data_dir, as_json) -> None:
    """List users and robots."""
    users = call(service(data_dir).identities.list_users)
    show(users, as_json, [f"{u['name']:<32} {'robot' if u['robot'] else 'user':<6}"
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
@expires_option
@data_dir_option()
def robot_add(name, grants, scopes, expires_days, data_dir) -> None:
    """Add a robot, grant it roles, and print its first token (shown once)."""
    pairs = []
    for grant in grants:
        ns, sep, role = grant.partition("=")
        if not sep:
            raise click.ClickException(f"--namespace {grant!r}: expected NS=ROLE")
        pairs.append((ns, role))
    svc = service(data_dir)
    call(svc.identities.add_user, name, None, robot=True)
    for ns, role in pairs:
        call(svc.identities.grant, ns, name, role)
    _, secret = call(svc.identities.create_token, name, "initial", list(scopes) or None,
                     expires_days)
    click.echo(secret)


@user.group()
def token() -> None:
    """Personal access tokens of any user or robot, managed on the server (your own, on
    a running registry: `assay token`)."""


@token.command(name="create")
@click.argument("user_name", metavar="USER")
@click.option("--name", "token_name", required=True, help="What the token is for.")
@scope_option
@expires_option
@data_dir_option()
def token_create(user_name, token_name, scopes, expires_days, data_dir) -> None:
    """Create a token for USER and print it (shown once)."""
    _, secret = call(service(data_dir).identities.create_token, user_name, token_name,
                     list(scopes) or None, expires_days)
    click.echo(secret)


@token.command(name="ls")
@click.argument("user_name", metavar="USER")
@data_dir_option()
@json_option
def token_ls(user_name, data_dir, as_json) -> None:
    """List USER's tokens (never their secrets)."""
    tokens = call(service(data_dir).identities.list_tokens, user_name)
    show(tokens, as_json, [
        f"{t['id']:>4} {t['name']:<20} {t['prefix']}… {','.join(t['scopes']):<20} "
        f"{'revoked' if t['revoked'] else 'expires ' + (t['expires_at'] or 'never')}"
        for t in tokens])


@token.command(name="revoke")
@click.argument("user_name", metavar="USER")
@click.argument("token_id", metavar="ID", type=int)
@data_dir_option()
def token_revoke(user_name, token_id, data_dir) -> None:
    """Revoke one of USER's tokens."""
    call(service(data_dir).identities.revoke_token, user_name, token_id)
    click.echo(f"revoked token {token_id} of {user_name}")
