"""``assay export|import``: models carried across an air gap as one tar (an OCI image
layout; docs/bundles.md). The work is in ``client.bundles``; this module declares the
options and imports nothing of the server.
"""

from __future__ import annotations

import click

from client.bundles.commands import run_export, run_import
from registry.cli.options import REF_HELP, insecure_option, quiet_option, registry_option

EXPORT_EPILOG = REF_HELP + """

\b
Examples:
  assay export 127.0.0.1:5000/team/gemma3:270m -o gemma3.tar
  skopeo inspect oci-archive:gemma3.tar:270m
  assay import gemma3.tar registry.offline.example:5000"""

IMPORT_EPILOG = """\b
On an assay registry, each model whose verification results came with it (under the
profile that applies there now) has them adopted instead of being run again: that needs
admin of the model's namespace, and the registry records who did it. Without that right,
with another profile there, or with --verify, the registry verifies the model as any push."""


@click.command(name="export", epilog=EXPORT_EPILOG)
@click.argument("refs", metavar="REF...", nargs=-1, required=True)
@click.option("-o", "--output", metavar="FILE.tar", required=True,
              help="The bundle to write (through FILE.tar.part, renamed when complete).")
@insecure_option
@quiet_option
def export_command(refs, output, insecure, quiet) -> None:
    """Write models, with every blob and referrer (verification results, signatures), into
    one tar for an air-gapped site: an OCI image layout that assay import, skopeo
    (oci-archive:FILE.tar:TAG) and oras read. Blobs stream from the registry into the tar,
    each checked against its digest and written once."""
    run_export(refs, output, insecure, quiet)


@click.command(name="import", epilog=IMPORT_EPILOG)
@click.argument("bundle", metavar="FILE.tar", type=click.Path(dir_okay=False))
@registry_option(positional=True)
@click.option("--verify", is_flag=True,
              help="Verify every model here: adopt no carried results.")
@click.option("--prefix", metavar="NAMESPACE",
              help="Put every repository under NAMESPACE (team/gemma3 -> NAMESPACE/team/"
                   "gemma3).")
@insecure_option
@quiet_option
def import_command(bundle, registry, verify, prefix, insecure, quiet) -> None:
    """Push everything a bundle from assay export holds into REGISTRY (any OCI registry),
    every digest kept. The whole bundle is checked first: a damaged or altered one is
    refused before anything is pushed."""
    run_import(bundle, registry, insecure, quiet, verify, prefix)
