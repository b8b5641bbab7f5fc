"""``assay class set|ls|rm``: hardware classes of an assay registry, managed over its REST
API (the work is in ``client.classes``)."""

from __future__ import annotations

import click

from client.classes import run_ls, run_rm, run_set
from registry.cli.group import Group
from registry.cli.options import insecure_option, list_command, registry_option

SET_EPILOG = """\b
Selector keys (every one must hold):
  accelerator=none|any|cuda|metal|rocm|vulkan   min_accelerator_memory=16GiB
  backend=llama.cpp|mlx (may repeat)            llama_cpp_build=cpu|cuda|metal|...
  mlx_device=cpu|gpu   os=linux|darwin   arch=x86_64|arm64   min_memory=32GiB
  min_cores=8          labels.KEY=VALUE (a label from ASSAY_WORKER_LABELS)
\b
Examples:
  assay class set cpu accelerator=none
  assay class set cuda accelerator=cuda min_accelerator_memory=16GiB
  assay class set apple os=darwin backend=mlx
  assay class set lab2 --selector '{"labels": {"site": "lab2"}}'"""


@click.group(name="class", cls=Group)
def hardware_class() -> None:
    """Hardware classes: named selectors over what verification workers are and can run
    (GET /api/v1/workers lists each worker's classes)."""


@hardware_class.command(name="set", epilog=SET_EPILOG)
@click.argument("name", metavar="NAME")
@click.argument("words", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--selector", "selector_json", metavar="JSON",
              help="The whole selector as a JSON object instead of KEY=VALUE words.")
@registry_option()
@insecure_option
def class_set(name, words, selector_json, registry, insecure) -> None:
    """Define class NAME (or replace its selector); no KEY=VALUE selects every worker."""
    run_set(name, words, selector_json, registry, insecure)


class_ls = list_command(hardware_class, run_ls, "List the hardware classes and their "
                        "selectors.")


@hardware_class.command(name="rm")
@click.argument("name", metavar="NAME")
@registry_option()
@insecure_option
def class_rm(name, registry, insecure) -> None:
    """Remove class NAME."""
    run_rm(name, registry, insecure)
