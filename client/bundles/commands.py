"""The commands behind ``assay export`` and ``assay import`` (``registry.cli.bundles``
declares the options). Results on stdout, one line per model; failures are ``error: <one
line>`` on stderr with exit status 1 (``errors.reported``). An import whose results could
not be adopted still succeeds: the registry verifies those models as any push."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from client.bundles.adoption import ADOPT_PATH, adopt_all, assay_api, results_of
from client.bundles.contents import Bundle, Item
from client.bundles.export import REF_NAME, export
from client.bundles.importer import Imported, Importer
from client.bundles.layout import LayoutReader
from client.errors import reported
from client.progress import Transfers
from client.ref import Registry, parse_reference
from client.registry_client import RegistryClient
from client.rest import registry_of
from client.show import human_size


def run_export(ref_texts: tuple[str, ...], output: str, insecure: bool, quiet: bool) -> None:
    with reported():
        refs = [parse_reference(text, insecure=insecure) for text in ref_texts]
        clients: dict[Registry, RegistryClient] = {}

        def client_for(registry: Registry) -> RegistryClient:
            if registry not in clients:
                clients[registry] = RegistryClient(registry)
            return clients[registry]

        try:
            with Transfers(quiet=quiet) as transfers:
                result = export(refs, Path(output), transfers, client_for)
        finally:
            for client in clients.values():
                client.close()
        for m in result.models:
            ref = m.reference
            name = m.entry["annotations"].get(REF_NAME)
            shown = f"as {name}" if name else "by digest"
            click.echo(f"exported {ref.registry.host}/{ref.name}@{m.digest} {shown} "
                       f"({m.referrers} referrer(s))")
        click.echo(f"wrote {result.path} ({human_size(result.size)}; {len(result.models)} "
                   f"model(s), {len(result.referrers)} referrer(s), {result.blobs} blob(s) "
                   "and manifest(s))")


def run_import(path: str, registry: str, insecure: bool, quiet: bool, verify: bool,
               prefix: str | None) -> None:
    with reported():
        target = registry_of(registry, insecure)
        with LayoutReader(Path(path)) as reader:
            bundle = Bundle.read(reader, prefix)
            with Transfers(quiet=quiet) as transfers:
                task = transfers.task(f"check {Path(path).name}", bundle.size())
                reader.verify(bundle.digests(), task.advance)
                task.done()
                with RegistryClient(target) as client:
                    importer = Importer(bundle, client, transfers)
                    adopt = None if verify else _adopter(client, bundle)
                    outcomes: dict[str, str] = {}
                    imported = importer.run(
                        None if adopt is None else lambda m: outcomes.update(adopt(m)))
        models = [i for i in imported if not i.entry.referrer]
        for i in models:
            own = outcomes.get(i.entry.item.digest)
            click.echo(f"imported {i.reference}{f': {own}' if own else ''}")
            for child in _children(bundle, i.entry.item):
                if child.digest in outcomes:
                    click.echo(f"  {child.digest}: {outcomes[child.digest]}")
        blobs = ", ".join(f"{n} {what}" for what, n in sorted(importer.outcomes.items()))
        click.echo(f"imported {len(models)} model(s) and {len(imported) - len(models)} "
                   f"referrer(s) into {target.host} (blobs: {blobs or 'none'})")


def _adopter(client: RegistryClient, bundle: Bundle
             ) -> Callable[[Imported], dict[str, str]] | None:
    """On an assay registry: what adopts a model's carried results once it is pushed
    (``{digest: outcome}`` for it and its child manifests); None on any other registry."""
    api = assay_api(client)
    if api is None:
        return None
    able = ADOPT_PATH in (api.get("paths") or {})

    def adopt(model: Imported) -> dict[str, str]:
        items = [model.entry.item, *_children(bundle, model.entry.item)]
        if not able:
            return {item.digest: "verifying: this assay registry cannot adopt carried "
                                 "results (an older version)"
                    for item in items if results_of(bundle, item)}
        return adopt_all(client, bundle, items)

    return adopt
def _children(bundle: Bundle, item: Item) -> list[Item]:
    """An index's child manifests, depth first."""
    found = []
    for digest in item.children:
        child = bundle.items[(item.repository, digest)]
        found += [child, *_children(bundle, child)]
    return found
