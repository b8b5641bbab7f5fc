"""The client commands behind ``assay push|pull|ls|inspect|rm`` (``registry.cli`` declares
the options). Each prints its result on stdout; failures are ``error: <one line>`` on stderr
with exit status 1 (see ``errors.reported``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from client.errors import ClientError, InputError, NotFoundError, reported, response_error
from client.progress import Transfers
from client.pull import pull
from client.ref import parse_location, parse_reference
from client.registry_client import RegistryClient
from client.rest import JSON, response_json
from client.show import human_size, inspect, render_inspect

if TYPE_CHECKING:
    from client.layouts import CardReader
    from client.listing import Filters


def _client(ref_or_registry) -> RegistryClient:
    registry = getattr(ref_or_registry, "registry", ref_or_registry)
    return RegistryClient(registry)


def run_push(path: str, ref_text: str, fmt: str | None, insecure: bool, quiet: bool,
             cards: CardReader) -> None:
    from client.push import push

    with reported():
        ref = parse_reference(ref_text, insecure=insecure)
        with _client(ref) as client, Transfers(quiet=quiet) as transfers:
            result = push(Path(path), ref, client, transfers, cards=cards, fmt=fmt)
        counts = ", ".join(f"{n} {what}" for what, n in sorted(result.outcomes.items()))
        layout = result.layout
        size = sum(b.size for b in layout.blobs())
        base = f"; FROM {layout.base}" if layout.base else ""
        if layout.card is not None and layout.card.error:
            click.echo(f"warning: pushed unchecked: {layout.source or path}: "
                       f"{layout.card.error}", err=True)
        click.echo(f"pushed {result.reference} ({layout.kind}, {len(layout.layers)} layer(s), "
                   f"{human_size(size)}; blobs: {counts}{base})")


def run_pull(ref_text: str, output: str | None, insecure: bool, quiet: bool,
             parallel: int | None = None) -> None:
    with reported():
        ref = parse_reference(ref_text, insecure=insecure)
        with _client(ref) as client, Transfers(quiet=quiet) as transfers:
            result = pull(ref, client, transfers, output=Path(output) if output else None,
                          workers=parallel)
        shown = ref.with_digest(result.digest)
        names = ", ".join(str(p) for p in result.files)
        click.echo(f"pulled {shown} ({result.kind}) -> {names}")


def run_ls(location: str, insecure: bool, filters: Filters | None = None,
           as_json: bool = False) -> None:
    """Repositories (``HOST``), a repository's tags (``HOST/REPO``) or, with filters or a
    sort and no repository, models across the registry (``client.listing``). An empty
    listing that is empty only for want of signing in says so on stderr."""
    from client import listing

    filters = filters or listing.Filters()
    with reported():
        registry, name = parse_location(location, insecure=insecure)
        with _client(registry) as client:
            if name is None and not filters.any():
                repos = client.catalog()
                if as_json:
                    click.echo(json.dumps(repos, indent=2))
                for repo in [] if as_json else repos:
                    click.echo(repo)
                if not repos:
                    _hidden_hint(client, registry.host)
                return
            across = name is None
            rows = listing.models(client, filters) if across else \
                listing.tags(client, name, filters)
            plain = rows is None
            if plain:
                rows = listing.plain_tags(client, name, filters)
            if as_json:
                click.echo(json.dumps(rows, indent=2))
            elif rows:
                click.echo(listing.render_plain(rows) if plain else
                           listing.render_rows(rows, across))
            if rows:
                return
            if across or filters.any():
                click.echo(f"{registry.host}{'/' + name if name else ''}: nothing matches",
                           err=True)
            else:
                click.echo(f"{registry.host}/{name}: no tags", err=True)
            if across:
                _hidden_hint(client, registry.host)


def _hidden_hint(client: RegistryClient, host: str) -> None:
    from client.listing import anonymous_and_hidden

    if anonymous_and_hidden(client):
        click.echo(f"nothing visible without signing in: sign in with `assay login {host}` "
                   "to see more", err=True)


def run_inspect(ref_text: str, insecure: bool, as_json: bool) -> None:
    with reported():
        ref = parse_reference(ref_text, insecure=insecure)
        with _client(ref) as client:
            info = inspect(client, ref)
        click.echo(json.dumps(info, indent=2) if as_json else render_inspect(info))


def run_rm(ref_text: str, insecure: bool) -> None:
    with reported():
        ref = parse_reference(ref_text, insecure=insecure)
        with _client(ref) as client:
            try:
                client.delete_manifest(ref.name, ref.reference)
            except NotFoundError:
                raise
            except ClientError as exc:
                if ref.digest is None and getattr(exc, "status", None) in (400, 405):
                    raise ClientError(f"{exc}; this registry cannot delete a tag alone, "
                                      f"delete the manifest with {ref.registry.host}/"
                                      f"{ref.name}@<digest>") from None
                raise
        if ref.digest:
            click.echo(f"deleted {ref.registry.host}/{ref.name}@{ref.digest}")
        else:
            click.echo(f"untagged {ref}")


def run_rm_repository(location: str, insecure: bool, yes: bool) -> None:
    """``assay rm HOST/REPO --all``: every tag and manifest of REPO, then REPO, through
    assay's ``DELETE /api/v1/repositories/<name>`` (OCI cannot list untagged manifests).
    Asks first on a terminal, unless ``yes``; off a terminal ``yes`` is required."""
    with reported():
        registry, name = parse_location(location, insecure=insecure)
        if name is None:
            raise InputError(f"{location!r}: give the repository to delete, "
                             "HOST[:PORT]/NAME")
        shown = f"{registry.host}/{name}"
        with _client(registry) as client:
            tags = client.tags(name)  # also: an unknown repository is refused here
            if not yes:
                _confirm(shown, tags)
            resp = client.request("DELETE", f"/api/v1/repositories/{name}", headers=JSON,
                                  what=f"delete {shown}", ok=(200, 404, 405))
            if resp.status_code != 200:
                if resp.headers.get("content-type", "").startswith("application/problem+json"):
                    raise response_error(resp, f"delete {shown}")
                raise ClientError(f"{registry.host} is not an assay registry: it has no API "
                                  "to delete a whole repository; delete each tag with "
                                  f"assay rm {shown}:TAG")
            deleted = response_json(resp, f"delete {shown}").get("manifests", [])
        for m in deleted:
            tagged = f" (tags: {', '.join(m['tags'])})" if m["tags"] else ""
            click.echo(f"deleted {shown}@{m['digest']}{tagged}")
        click.echo(f"deleted repository {shown}: {len(deleted)} manifest(s), "
                   f"{sum(len(m['tags']) for m in deleted)} tag(s); the registry's "
                   "`assay gc` frees their blobs")


def _confirm(shown: str, tags: list[str]) -> None:
    if not sys.stdin.isatty():
        raise InputError(f"deleting {shown} with every tag and manifest needs --yes when "
                         "not run on a terminal")
    listed = ", ".join(tags[:5]) + (", ..." if len(tags) > 5 else "")
    if not click.confirm(f"Delete {shown}: {len(tags)} tag(s){f' ({listed})' if tags else ''} "
                         "and every manifest?", default=False, err=True):
        raise ClientError(f"{shown}: nothing deleted")


def run_status(ref_text: str, wait: bool, timeout: float, as_json: bool, insecure: bool,
               quiet: bool) -> None:
    from client.status import fetch_state, report, wait_for

    with reported():
        ref = parse_reference(ref_text, insecure=insecure)
        with _client(ref) as client:
            state = fetch_state(client, ref)
            timed_out = False
            if wait:
                state, timed_out = wait_for(client, ref, state, timeout, quiet)
        code = report(ref, state, as_json, timed_out)
    if code:
        raise click.exceptions.Exit(code)


def run_bench(ref_texts: tuple[str, ...], as_json: bool, insecure: bool) -> None:
    from client.bench import collect, echo

    with reported():
        models = []
        for text in ref_texts:
            ref = parse_reference(text, insecure=insecure)
            with _client(ref) as client:
                models.append(collect(client, ref))
        echo(models, as_json)


def run_verify(ref_text: str, wait: bool, timeout: float, insecure: bool, quiet: bool) -> None:
    from client.status import fetch_state, report, request_verification, wait_for

    with reported():
        ref = parse_reference(ref_text, insecure=insecure)
        with _client(ref) as client:
            queued = request_verification(client, ref)
            click.echo(f"queued verification of {ref.registry.host}/{ref.name}@"
                       f"{queued['digest']} (job {queued['job']})")
            if not wait:
                return
            state = fetch_state(client, ref, queued["digest"])
            state, timed_out = wait_for(client, ref, state, timeout, quiet, queued["job"])
        code = report(ref, state, False, timed_out)
    if code:
        raise click.exceptions.Exit(code)
