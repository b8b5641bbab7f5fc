"""``assay push|pull|ls|inspect|status|bench|verify|rm``: the client commands on models in a
registry (any OCI registry; ``status`` and ``verify`` need assay). The work is in
``client.commands``; this module declares the options and imports nothing of the server.
"""

from __future__ import annotations

import click

from client.commands import (
    run_bench,
    run_inspect,
    run_ls,
    run_pull,
    run_push,
    run_rm,
    run_rm_repository,
    run_status,
    run_verify,
)
from registry.cli.options import REF_HELP, insecure_option, quiet_option


@click.command(epilog=REF_HELP)
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
    # Imported here: the header readers load gguf and numpy (~0.2 s), which the other
    # commands of this module (pull, ls, inspect...) never need.
    from registry.formats.cards import LocalCards

    run_push(path, ref, fmt, insecure, quiet, LocalCards())


@click.command(epilog=REF_HELP)
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
    run_pull(ref, output, insecure, quiet, parallel)


@click.command(name="ls")
@click.argument("location", metavar="[HOST[:PORT][/REPO]]", required=False,
                envvar="ASSAY_REGISTRY", default="127.0.0.1:5000")
@insecure_option
def ls_command(location, insecure) -> None:
    """List the repositories of a registry, or the tags of REPO (on assay with the model's
    format, architecture, quantization and size). The registry defaults to $ASSAY_REGISTRY,
    else 127.0.0.1:5000."""
    run_ls(location, insecure)


@click.command(epilog=REF_HELP)
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the details as JSON.")
@insecure_option
def inspect(ref, as_json, insecure) -> None:
    """Show a manifest, its model card, logical vs. stored size, status and verification."""
    run_inspect(ref, insecure, as_json)


@click.command(epilog=REF_HELP)
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
    run_status(ref, wait, timeout, as_json, insecure, quiet)


@click.command(epilog=REF_HELP)
@click.argument("refs", metavar="REF...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@insecure_option
def bench(refs, as_json, insecure) -> None:
    """Compare models side by side: for each configuration of the run matrix, each model's
    tokens/s, time to first token and peak memory, then perplexity and prompts."""
    run_bench(refs, as_json, insecure)


@click.command(epilog=REF_HELP)
@click.argument("ref")
@click.option("--wait", is_flag=True, help="Wait for the new verdict (as `status --wait`).")
@click.option("--timeout", type=click.FloatRange(min=0), default=1800.0, show_default=True)
@insecure_option
@quiet_option
def verify(ref, wait, timeout, insecure, quiet) -> None:
    """Run verification of a model again (on assay registries)."""
    run_verify(ref, wait, timeout, insecure, quiet)


@click.command(epilog=REF_HELP)
@click.argument("ref")
@click.option("--all", "whole", is_flag=True,
              help="Delete the whole repository REF (HOST[:PORT]/NAME): every tag and "
                   "manifest (assay registries).")
@click.option("-y", "--yes", is_flag=True,
              help="With --all: do not ask (required when not on a terminal).")
@insecure_option
def rm(ref, whole, yes, insecure) -> None:
    """Delete a tag (REF with :TAG), a manifest (REF with @DIGEST), or with --all a whole
    repository. --all prints every manifest it deleted; their events and audit entries
    are those of single deletes."""
    if yes and not whole:
        raise click.UsageError("--yes goes with --all")
    if whole:
        run_rm_repository(ref, insecure, yes)
    else:
        run_rm(ref, insecure)
