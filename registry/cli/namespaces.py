"""``assay namespace``: roles, the anonymous-pull switch, storage quota and retention
policy of a namespace, managed on the server's database (``assay retention`` applies the
policies; ``registry.cli.maintenance``). ``ls`` and ``show`` print tables, or JSON with
``--json``."""

from __future__ import annotations

import click

from registry.cli.options import data_dir_option, json_option
from registry.cli.serverside import call, service, show, show_table
from registry.services.quotas import human, parse_size

namespace_argument = click.argument("ns", metavar="NAMESPACE")


@click.group()
def namespace() -> None:
    """Roles in a namespace (read, write, admin), its anonymous-pull switch, storage
    quota and retention policy."""


@namespace.command(name="grant")
@namespace_argument
@click.argument("user_name", metavar="USER")
@click.argument("role", type=click.Choice(["read", "write", "admin"]))
@data_dir_option()
def namespace_grant(ns, user_name, role, data_dir) -> None:
    """Give USER a ROLE in NAMESPACE (replacing any role they had)."""
    call(service(data_dir).identities.grant, ns, user_name, role)
    click.echo(f"{user_name} has {role} in {ns}")


@namespace.command(name="revoke")
@namespace_argument
@click.argument("user_name", metavar="USER")
@data_dir_option()
def namespace_revoke(ns, user_name, data_dir) -> None:
    """Take USER's role in NAMESPACE away."""
    call(service(data_dir).identities.revoke, ns, user_name)
    click.echo(f"{user_name} has no role in {ns}")


@namespace.command(name="anonymous-pull")
@namespace_argument
@click.argument("state", type=click.Choice(["on", "off"]))
@data_dir_option()
def namespace_anonymous(ns, state, data_dir) -> None:
    """Let anyone pull from NAMESPACE without signing in (on), or not (off)."""
    call(service(data_dir).identities.set_anonymous_pull, ns, state == "on")
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
@namespace_argument
@click.argument("size", metavar="SIZE|none")
@data_dir_option()
def namespace_quota(ns, size, data_dir) -> None:
    """Limit NAMESPACE's storage to SIZE (10GiB, 500MB, 1.5TiB or bytes; none: unlimited).

    Usage counts each distinct blob of its repositories once; a push that would pass
    the quota is refused (403 DENIED). Nothing stored is removed.
    """
    if size.lower() == "none":
        value = None
    else:
        try:
            value = parse_size(size)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    svc = service(data_dir)
    call(svc.identities.configure_namespace, ns, quota_bytes=value)
    used = call(svc.identities.namespace, ns)["usage_bytes"]
    click.echo(f"quota of {ns}: {'none' if value is None else human(value)} "
               f"({human(used)} used)")


def _patterns(ctx, param, value):
    """A click callback: comma-separated tag globs as a list, "none" as [] (None when
    the option is not given)."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return []
    patterns = [p.strip() for p in value.split(",")]
    if not all(patterns):
        raise click.BadParameter(f"{value!r} has an empty pattern: give globs separated "
                                 "by commas (latest,main,v*), or none")
    return patterns


@namespace.command(name="retention")
@namespace_argument
@click.option("--keep-tags", metavar="N|none", callback=_limit(1),
              help="Keep the N newest tags of each repository (none: rule off).")
@click.option("--keep-ready", metavar="N|none", callback=_limit(1),
              help="Keep the N newest ready tags of each repository, and every tag still "
                   "being verified; failed tags do not count (none: rule off).")
@click.option("--protect", metavar="GLOBS|none", callback=_patterns,
              help="Never delete tags matching these comma-separated globs, e.g. "
                   "'latest,main,v*' (replaces the list; none: protect nothing). "
                   "Default: latest.")
@click.option("--untagged-days", metavar="D|none", callback=_limit(1),
              help="Delete untagged manifests older than D days (none: never).")
@data_dir_option()
def namespace_retention(ns, keep_tags, keep_ready, protect, untagged_days, data_dir) -> None:
    """Set NAMESPACE's retention policy; `assay retention` applies it.

    A tag is deleted only when --keep-tags or --keep-ready is set and neither keeps it;
    protected tags are always kept and count in neither. Options not given stay as
    they are.
    """
    changes = {}
    for field, value in (("keep_tags", keep_tags), ("keep_ready", keep_ready),
                         ("untagged_days", untagged_days)):
        if value is not None:
            changes[field] = None if value == "none" else value
    if protect is not None:
        changes["protected_tags"] = protect
    if not changes:
        raise click.ClickException("give --keep-tags, --keep-ready, --protect and/or "
                                   "--untagged-days")
    svc = service(data_dir)
    call(svc.identities.configure_namespace, ns, **changes)
    info = call(svc.identities.namespace, ns)
    click.echo(f"retention of {ns}: {_retention_text(info)}")


def _retention_text(info: dict) -> str:
    keep, ready = info["keep_tags"], info["keep_ready"]
    days = info["untagged_days"]
    if keep is None and ready is None:
        tags = "keep all tags per repository"
    else:
        rules = ([f"the newest {keep} tags"] if keep is not None else []) + (
            [f"the newest {ready} ready tags (and those being verified)"]
            if ready is not None else [])
        tags = f"keep {' and '.join(rules)} per repository"
    protected = ", ".join(info["protected_tags"]) or "none"
    return (f"{tags}; protected tags: {protected}; "
            + ("keep untagged manifests" if days is None
               else f"delete untagged manifests after {days} days"))


@namespace.command(name="show")
@namespace_argument
@data_dir_option()
@json_option
def namespace_show(ns, data_dir, as_json) -> None:
    """Members, anonymous-pull switch, quota and usage, retention of NAMESPACE."""
    info = call(service(data_dir).identities.namespace, ns)
    quota = info["quota_bytes"]
    show(info, as_json, [f"anonymous pull: {'on' if info['anonymous_pull'] else 'off'}",
                         f"storage: {human(info['usage_bytes'])} used of "
                         f"{'no quota' if quota is None else human(quota)}",
                         f"retention: {_retention_text(info)}"])
    if not as_json:
        show_table(info["members"], False, ["MEMBER", "ROLE"],
                   ([m["user"], m["role"]] for m in info["members"]), "no members")


@namespace.command(name="ls")
@data_dir_option()
@json_option
def namespace_ls(data_dir, as_json) -> None:
    """List the namespaces with settings, members or repositories: members, anonymous
    pull, storage used and quota."""
    svc = service(data_dir)
    found = [call(svc.identities.namespace, ns) for ns in svc.identities.namespace_names()]
    show_table(found, as_json, ["NAMESPACE", "MEMBERS", "ANONYMOUS PULL", "USED", "QUOTA"],
               ([n["name"], str(len(n["members"])), "on" if n["anonymous_pull"] else "off",
                 human(n["usage_bytes"]),
                 "-" if n["quota_bytes"] is None else human(n["quota_bytes"])]
                for n in found), "no namespaces")
