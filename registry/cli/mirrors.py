"""``assay mirror add|ls|show|rm``: the mirror namespaces of an assay registry, managed over
its REST API (the work is in ``client.mirrors``; site admins only). The registry is
``-r/--registry`` (``registry.cli.options``)."""

from __future__ import annotations

import click

from client.mirrors import run_add, run_ls, run_rm, run_show
from registry.cli.group import Group
from registry.cli.options import insecure_option, json_option, list_command, registry_option

namespace_argument = click.argument("namespace", metavar="NAMESPACE")

ADD_EPILOG = """\b
Examples:
  assay mirror add mirror --kind ollama
      then: ollama pull --insecure HOST:5000/mirror/gemma3:270m (library/gemma3)
  assay mirror add hub https://registry-1.docker.io/ai --kind oci --refresh 15m
      then: assay pull HOST:5000/hub/gemma3 (Docker Hub's ai/gemma3)
  printf '%s\\n' "$HF_TOKEN" | assay mirror add google https://huggingface.co/google \\
      --kind hf --password-stdin --refresh 1d
      then: HF_ENDPOINT=http://HOST:5000 hf download google/gemma-3-270m
\b
Adding a namespace again replaces its settings; without --password-stdin the stored
password stays as long as the username is the same."""


@click.group(cls=Group)
def mirror() -> None:
    """Mirror namespaces: pulls of what a namespace lacks are fetched from an upstream
    registry (Ollama's, any OCI registry, or a Hugging Face endpoint), stored and
    verified. Site admins only."""


@mirror.command(name="add", epilog=ADD_EPILOG)
@namespace_argument
@click.argument("url", required=False, default="")
@click.option("--kind", required=True, metavar="ollama|oci|hf",
              help="The upstream's protocol: ollama (Ollama's registry), oci (any OCI "
                   "Distribution registry) or hf (a Hugging Face Hub endpoint).")
@click.option("--username", metavar="USER", help="The user name at the upstream.")
@click.option("--password-stdin", is_flag=True,
              help="Read the upstream's password (or Hugging Face token) from stdin; it "
                   "is stored sealed and never shown again.")
@click.option("--refresh", default="1h", show_default=True, metavar="DURATION",
              help="Re-check a tag upstream once it is this old: 30s, 15m, 1h, 2d or "
                   "seconds (0: at every pull).")
@click.option("--verify-first", is_flag=True,
              help="Hold a first pull until the model has passed verification [default: "
                   "serve at once, verify after].")
@click.option("--keep-days", type=click.IntRange(1, 36500), metavar="N",
              help="Remove tags not pulled for N days [default: keep].")
@registry_option()
@insecure_option
@json_option
def mirror_add(namespace, url, kind, username, password_stdin, refresh, verify_first,
               keep_days, registry, insecure, as_json) -> None:
    """Make NAMESPACE a mirror of URL (or change it). URL's path is the upstream's name
    prefix: with https://huggingface.co/google, NAMESPACE/gemma is google/gemma. For
    --kind ollama URL may be left out (https://registry.ollama.ai)."""
    run_add(namespace, url, kind, username, password_stdin, refresh, verify_first,
            keep_days, registry, insecure, as_json)


mirror_ls = list_command(mirror, run_ls, "List the mirror namespaces: kind, upstream, "
                         "refresh, verify-first, whether a password is set.")


@mirror.command(name="show")
@namespace_argument
@registry_option()
@insecure_option
@json_option
def mirror_show(namespace, registry, insecure, as_json) -> None:
    """Show the mirror NAMESPACE (never its password)."""
    run_show(namespace, registry, insecure, as_json)


@mirror.command(name="rm")
@namespace_argument
@registry_option()
@insecure_option
def mirror_rm(namespace, registry, insecure) -> None:
    """Stop mirroring NAMESPACE; what it cached stays, as ordinary repositories."""
    run_rm(namespace, registry, insecure)
