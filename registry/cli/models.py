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
@click.option("--unchecked", is_flag=True,
              help="Push even a file whose header or tensor table cannot be read (normally "
                   "refused before a byte is sent), e.g. to see the registry's verification "
                   "fail a truncated model.")
@insecure_option
@quiet_option
def push(path, ref, fmt, unchecked, insecure, quiet) -> None:
    """Push PATH (a .gguf file, an Ollama Modelfile, or a safetensors/MLX model directory)
    to REF. Blobs the registry already has are skipped or mounted."""
    # Imported here: the header readers load gguf and numpy (~0.2 s), which the other
    # commands of this module (pull, ls, inspect...) never need.
    from registry.formats.cards import LocalCards

    run_push(path, ref, fmt, insecure, quiet, LocalCards(checked=not unchecked))


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


LS_EPILOG = """\b
Examples:
  assay ls 127.0.0.1:5000                        repositories
  assay ls 127.0.0.1:5000/team/gemma3            its tags, status and figures
  assay ls 127.0.0.1:5000 --status ready --format gguf --min-tps 20 --sort tps
                                                 ready GGUF models anywhere, fastest first
  assay ls 127.0.0.1:5000 --fits 8GiB --context 8192
                                                 models estimated to fit in 8 GiB
\b
Filters and sorting need assay; names match in any case. A failed tag's REASON is
shortened: `assay status REF` has it in full."""


def _many(*names: str, metavar: str, text: str):
    return click.option(*names, multiple=True, metavar=metavar,
                        help=f"{text} Repeat or separate with commas: any matches.")


@click.command(name="ls", epilog=LS_EPILOG)
@click.argument("location", metavar="[HOST[:PORT][/REPO]]", required=False,
                envvar="ASSAY_REGISTRY", default="127.0.0.1:5000")
@_many("--status", metavar="STATUS", text="queued, verifying, ready or failed.")
@_many("--format", "fmt", metavar="FORMAT", text="Weights format: gguf or safetensors.")
@_many("--backend", metavar="BACKEND",
       text="Backend of the latest verification: llama.cpp or mlx.")
@_many("--arch", "--architecture", "arch", metavar="ARCH",
       text="Architecture (llama, gemma3, ...).")
@_many("--quant", "--quantization", "quant", metavar="QUANT",
       text="Quantization (Q4_K_M, ...).")
@click.option("--min-tps", type=click.FloatRange(min=0), metavar="N",
              help="Generated at least N tokens/s in its latest verification.")
@click.option("--max-memory", metavar="SIZE",
              help="Peak memory of its latest verification at most SIZE (800MiB, 2GiB).")
@click.option("--max-perplexity", type=click.FloatRange(min=0), metavar="N",
              help="Perplexity of its latest verification at most N.")
@click.option("--fits", metavar="SIZE",
              help="Estimated to fit in SIZE (16GiB) at --context tokens with a --kv-cache "
                   "K/V cache.")
@click.option("--context", type=click.IntRange(min=1), metavar="TOKENS",
              help="Context for --fits [default: 4096].")
@click.option("--kv-cache", type=click.Choice(["f16", "q8_0", "q4_0"], case_sensitive=False),
              help="K/V cache type for --fits [default: f16].")
@click.option("-q", "--search", metavar="TEXT", help="Tag (or REPO:TAG) contains TEXT.")
@click.option("--sort", type=click.Choice(["name", "updated", "size", "tps", "memory",
                                           "perplexity"]),
              help="Order: name A-Z, updated newest first, size smallest first, tps fastest "
                   "first, memory least first, perplexity lowest first [default: name]; "
                   "unknown figures last.")
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@insecure_option
def ls_command(location, status, fmt, backend, arch, quant, min_tps, max_memory,
               max_perplexity, fits, context, kv_cache, search, sort, reverse, as_json,
               insecure) -> None:
    """List the repositories of a registry, or the tags of REPO with their verification
    status and figures. On assay each tag shows its status (ready, verifying, queued,
    failed), the tokens/s and peak memory of its latest verification, format,
    architecture, quantization, size, and why a failed one failed. With filters or
    --sort and no REPO: the models of every repository. The registry defaults to
    $ASSAY_REGISTRY, else 127.0.0.1:5000."""
    from client.listing import Filters

    filters = Filters(status=status, format=fmt, backend=backend, architecture=arch,
                      quantization=quant, min_tps=min_tps, max_memory=max_memory,
                      max_perplexity=max_perplexity, fits=fits, context=context,
                      kv_cache=kv_cache.lower() if kv_cache else None, search=search,
                      sort=sort, reverse=reverse)
    run_ls(location, insecure, filters, as_json)


@click.command(epilog=REF_HELP)
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the details as JSON.")
@insecure_option
def inspect(ref, as_json, insecure) -> None:
    """Show a manifest, its model card, logical vs. stored size, status and verification.
    On assay a tag shows the manifest it points at, also while it is queued, verifying or
    failed (a pull by tag would be refused). Exit status 0 whenever the manifest is found,
    whatever its status (`assay status` exits 1 for a failed model)."""
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
    """Show a model's verification status and figures. While it waits: its place in the
    queue, and a warning when no worker is there to verify it. With --wait, exit 0 once
    it is ready, 1 if it failed (the reason is printed), 2 on timeout."""
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
