"""``assay profile set|show|rm``: a namespace's verification profile on an assay registry,
over its REST API (the work is in ``client.profiles``). The registry is ``-r/--registry``
(``registry.cli.options``); the earlier trailing REGISTRY argument still works."""

from __future__ import annotations

import click

from client.profiles import run_rm, run_set, run_show
from registry.cli.group import Group
from registry.cli.options import insecure_option, json_option, registry_option

namespace_argument = click.argument("namespace", metavar="NS")
registry = registry_option(unlisted=True)


@click.group(cls=Group)
def profile() -> None:
    """Verification profiles: what a namespace's models are measured under (run matrix,
    quality, limits, regression thresholds). NS is a repository name or a /-prefix of
    names ('_': every repository); the longest match applies."""


@profile.command(name="set")
@namespace_argument
@click.argument("file", type=click.Path(dir_okay=False))
@registry
@insecure_option
@json_option
def profile_set(namespace, file, registry, insecure, as_json) -> None:
    """Set NS's profile from FILE (YAML or JSON); a bad field is named."""
    run_set(namespace, file, registry, insecure, as_json)


@profile.command(name="show")
@namespace_argument
@registry
@insecure_option
@json_option
def profile_show(namespace, registry, insecure, as_json) -> None:
    """Show the profile that applies to NS, and where it comes from."""
    run_show(namespace, registry, insecure, as_json)


@profile.command(name="rm")
@namespace_argument
@registry
@insecure_option
def profile_rm(namespace, registry, insecure) -> None:
    """Remove NS's profile (a shorter namespace's, or the default, applies again)."""
    run_rm(namespace, registry, insecure)
