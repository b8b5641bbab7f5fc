"""``assay workers``: the verification workers of an assay registry and what each can run
(the work is in ``client.workers``; site admins only)."""

from __future__ import annotations

import click

from client.workers import run_workers
from registry.cli.options import insecure_option, json_option, registry_option


@click.command(name="workers")
@registry_option()
@insecure_option
@json_option
def workers(registry, insecure, as_json) -> None:
    """List the verification workers a registry knows of: state, machine, backends,
    accelerator, labels, what each is running and when it was last seen."""
    run_workers(registry, insecure, as_json)
