"""``assay robot add|ls|rm|show`` and ``assay robot token add|ls|rm ROBOT``: accounts
without a password, for CI and deployments, managed on the server's database like
``assay user`` (``registry.cli.users``, whose helpers these share). A robot's first token
is made with it and printed once, alone on stdout.
"""

from __future__ import annotations

import click

from client.account import print_secret, token_summary
from registry.access.permissions import ROLES
from registry.cli.options import data_dir_option, expires_option, json_option
from registry.cli.serverside import call, service, show_table
from registry.cli.users import account, show_account, token_group
from registry.services.identities import check_namespace


def _grants(grants: tuple[str, ...]) -> list[tuple[str, str]]:
    """``NS=ROLE`` pairs, every one checked before anything is written."""
    pairs = []
    for grant in grants:
        ns, sep, role = grant.partition("=")
        if not sep or role not in ROLES:
            raise click.ClickException(f"--namespace {grant!r}: expected NS=ROLE, ROLE one "
                                       f"of {', '.join(ROLES)}")
        call(check_namespace, ns)
        pairs.append((ns, role))
    return pairs


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
    """Add a robot, grant it roles, and print its first token, alone on stdout (shown
    once)."""
    pairs = _grants(grants)
    svc = service(data_dir)
    call(svc.identities.add_user, name, None, robot=True)
    for ns, role in pairs:
        call(svc.identities.grant, ns, name, role)
    record, secret = call(svc.identities.create_token, name, "initial", list(scopes) or None,
                          expires_days)
    print_secret(secret, f"added robot {name}"
                         f"{''.join(f', {role} in {ns}' for ns, role in pairs)}; "
                         + token_summary(record))


@robot.command(name="ls")
@data_dir_option()
@json_option
def robot_ls(data_dir, as_json) -> None:
    """List the robots and their roles."""
    svc = service(data_dir)
    robots = [call(svc.identities.get_user, u["name"])
              for u in call(svc.identities.list_users) if u["robot"]]
    show_table(robots, as_json, ["NAME", "ROLES", "CREATED", "DISABLED"],
               ([r["name"], ",".join(f"{ns}={role}" for ns, role in sorted(r["roles"].items()))
                 or "-", (r["created_at"] or "-")[:19], "yes" if r["disabled"] else ""]
                for r in robots), "no robots")


@robot.command(name="rm")
@click.argument("name")
@data_dir_option()
def robot_rm(name, data_dir) -> None:
    """Delete a robot with its tokens and roles (refused for a user)."""
    svc = service(data_dir)
    account(svc, name, robot=True)
    call(svc.identities.remove_user, name)
    click.echo(f"removed robot {name}")


@robot.command(name="show")
@click.argument("name")
@data_dir_option()
@json_option
def robot_show(name, data_dir, as_json) -> None:
    """Show a robot: roles in namespaces, tokens."""
    show_account(service(data_dir), name, as_json, robot=True)


token = token_group(robot, "robot", True)
