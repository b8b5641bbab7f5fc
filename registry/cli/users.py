"""``assay user``: people who sign in with a password, and their tokens, managed on the
server (robots are ``assay robot``, ``registry.cli.robots``).

These commands work on the configured database directly (``ASSAY_DATABASE_URL`` or the
SQLite file in ``--data-dir``; ``serverside.service`` says which on stderr and creates
none without ``--init``), before the registry is first started too: that is how the
first admin is made. Every change is in the audit log, as ``local:<os user>``.

Verbs: ``add|ls|rm|show``, ``passwd``, ``admin``, and ``token add|ls|rm USER`` (any
user's tokens; ``assay token`` is the client command for the signed-in user's own, over
REST). The earlier ``token create|revoke`` still work, unlisted. A new token is printed
alone on stdout, what it is and "save it now" on stderr (``client.account.print_secret``).
"""

from __future__ import annotations

import sys

import click

from client.account import print_secret, token_summary
from registry.cli.group import alias
from registry.cli.options import data_dir_option, expires_option, json_option, scope_option
from registry.cli.serverside import call, service, show, show_table


def _password(stdin: bool) -> str:
    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise click.ClickException("give the password with --password-stdin")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def account(svc, name: str, *, robot: bool | None) -> dict:
    """User or robot ``name`` with their roles; with ``robot`` True/False, refused when it
    is the other kind (a robot is not removed by `assay robot rm alice`'s typo)."""
    found = call(svc.identities.get_user, name)
    if robot is not None and found["robot"] != robot:
        kind, wanted = ("user", "robot") if robot else ("robot", "user")
        raise click.ClickException(f"{name} is a {kind}, not a {wanted}: manage it with "
                                   f"assay {kind}")
    return found


def token_rows(tokens: list[dict]) -> list[list[str]]:
    return [[str(t["id"]), t["name"], f"{t['prefix']}…", ",".join(t["scopes"]),
             "revoked" if t["revoked"] else (t["expires_at"] or "never")[:19],
             (t["last_used_at"] or "-")[:19]] for t in tokens]


TOKEN_HEADER = ["ID", "NAME", "PREFIX", "SCOPES", "EXPIRES", "LAST USED"]


def show_account(svc, name: str, as_json: bool, *, robot: bool | None) -> None:
    """``user show`` / ``robot show``: the account, its roles and its tokens."""
    found = account(svc, name, robot=robot)
    tokens = call(svc.identities.list_tokens, name)
    if as_json:
        show(found | {"tokens": tokens}, True, [])
        return
    kind = "robot" if found["robot"] else "site admin" if found["admin"] else "user"
    click.echo(f"{found['name']} ({kind}{', disabled' if found['disabled'] else ''}), "
               f"created {(found['created_at'] or '-')[:19]}")
    roles = found.get("roles") or {}
    click.echo("roles: " + (", ".join(f"{ns}={role}" for ns, role in sorted(roles.items()))
                            or "none"))
    if tokens:
        show_table(tokens, False, TOKEN_HEADER, token_rows(tokens), "")
    else:
        click.echo("tokens: none")


def token_group(parent: click.Group, owner: str, robot: bool | None) -> click.Group:
    """``assay PARENT token add|ls|rm OWNER``: the tokens of a user (``robot`` None:
    any account, as before robots had their own group) or of a robot (True)."""
    metavar = owner.upper()

    @parent.group(name="token")
    def group() -> None:
        pass

    group.help = (f"Personal access tokens of a {owner}, managed on the server"
                  + (" (your own, on a running registry: `assay token`)." if robot is None
                     else "."))

    @group.command(name="add")
    @click.argument("user_name", metavar=metavar)
    @click.option("--name", "token_name", required=True, help="What the token is for.")
    @scope_option
    @expires_option
    @data_dir_option()
    def token_add(user_name, token_name, scopes, expires_days, data_dir) -> None:
        svc = service(data_dir)
        if robot is not None:
            account(svc, user_name, robot=robot)
        record, secret = call(svc.identities.create_token, user_name, token_name,
                              list(scopes) or None, expires_days)
        print_secret(secret, token_summary(record, user_name))

    token_add.help = f"Create a token for {metavar} and print it, alone on stdout (shown once)."

    @group.command(name="ls")
    @click.argument("user_name", metavar=metavar)
    @data_dir_option()
    @json_option
    def token_ls(user_name, data_dir, as_json) -> None:
        svc = service(data_dir)
        if robot is not None:
            account(svc, user_name, robot=robot)
        tokens = call(svc.identities.list_tokens, user_name)
        show_table(tokens, as_json, TOKEN_HEADER, token_rows(tokens),
                   f"{user_name} has no tokens")

    token_ls.help = f"List {metavar}'s tokens (never their secrets)."

    @group.command(name="rm")
    @click.argument("user_name", metavar=metavar)
    @click.argument("token_id", metavar="ID", type=int)
    @data_dir_option()
    def token_rm(user_name, token_id, data_dir) -> None:
        svc = service(data_dir)
        if robot is not None:
            account(svc, user_name, robot=robot)
        call(svc.identities.revoke_token, user_name, token_id)
        click.echo(f"revoked token {token_id} of {user_name}")

    token_rm.help = f"Revoke one of {metavar}'s tokens."
    alias(group, token_add, "create")
    alias(group, token_rm, "revoke")
    return group


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
    """Add a user; they own the namespace NAME. Works before the server first starts
    (with --init when there is no database yet)."""
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
    """Delete a user with their tokens, keys and roles (a robot too, as before
    `assay robot rm`)."""
    call(service(data_dir).identities.remove_user, name)
    click.echo(f"removed {name}")


@user.command(name="ls")
@data_dir_option()
@json_option
def user_ls(data_dir, as_json) -> None:
    """List the users (robots: `assay robot ls`)."""
    people = [u for u in call(service(data_dir).identities.list_users) if not u["robot"]]
    show_table(people, as_json, ["NAME", "SITE ADMIN", "CREATED", "DISABLED"],
               ([u["name"], "yes" if u["admin"] else "no", (u["created_at"] or "-")[:19],
                 "yes" if u["disabled"] else ""] for u in people), "no users")


@user.command(name="show")
@click.argument("name")
@data_dir_option()
@json_option
def user_show(name, data_dir, as_json) -> None:
    """Show a user: site admin or not, roles in namespaces, tokens."""
    show_account(service(data_dir), name, as_json, robot=False)


token = token_group(user, "user", None)
