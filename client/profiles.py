"""``assay profile set|show|rm``: the verification profile of a namespace on an assay
registry, over its REST API (``/api/v1/profiles``). The registry validates the document
(YAML or JSON, sent as written) and names the bad field; failures are one ``error:`` line
(``errors.reported``)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import click

from client.errors import InputError, reported
from client.registry_client import RegistryClient
from client.rest import JSON, registry_of, response_json

MAX_PROFILE_BYTES = 64 * 1024  # the registry refuses more


def _path(namespace: str) -> str:
    return "/api/v1/profiles/" + quote(namespace.strip("/") or "_", safe="/")


def _print(doc: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    where = f"namespace {doc['namespace'] or '_'}" if doc["namespace"] is not None \
        else "the built-in default"
    click.echo(f"profile {doc['profile']['name']} ({where}), {doc['sha256']}")
    for run in doc["profile"]["runs"]:
        click.echo(f"  run: context {run['context']}, kv {run['kv_cache']}, parallel "
                   f"{run['parallel']}, {run['prompt_tokens']} prompt + {run['max_tokens']} "
                   "generated tokens")
    quality, limits = doc["profile"]["quality"], doc["profile"]["limits"]
    click.echo(f"  quality: perplexity {'on' if quality['perplexity'] else 'off'}, "
               f"{len(quality['prompts'])} prompt(s), reference "
               f"{quality['reference'] or '-'}")
    set_limits = ", ".join(f"{k} {v}" for k, v in limits.items() if v not in (None, True))
    click.echo(f"  limits: {set_limits or 'none'}")
    r = doc["profile"]["regressions"]
    click.echo(f"  regressions: tokens/s -{r['generation_tps']:.0%}, memory "
               f"+{r['memory']:.0%}, perplexity ratio +{r['perplexity_ratio']:.0%}: "
               f"{r['action']}")


def run_set(namespace: str, file: str, location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        path = Path(file)
        try:
            if path.stat().st_size > MAX_PROFILE_BYTES:
                raise InputError(f"{file}: a profile may be at most {MAX_PROFILE_BYTES} bytes")
            body = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {file}: {exc.strerror or exc}") from None
        kind = "application/json" if path.suffix.lower() == ".json" else "application/yaml"
        registry = registry_of(location, insecure)
        with RegistryClient(registry) as client:
            resp = client.request("PUT", _path(namespace), what=f"set the profile of {namespace}",
                                  content=lambda: body, headers={**JSON, "Content-Type": kind})
            _print(response_json(resp, "set profile"), as_json)


def run_show(namespace: str, location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        registry = registry_of(location, insecure)
        with RegistryClient(registry) as client:
            resp = client.request("GET", _path(namespace),
                                  what=f"the profile of {namespace}", headers=JSON)
            _print(response_json(resp, "show profile"), as_json)


def run_rm(namespace: str, location: str, insecure: bool) -> None:
    with reported():
        registry = registry_of(location, insecure)
        with RegistryClient(registry) as client:
            client.request("DELETE", _path(namespace),
                           what=f"remove the profile of {namespace}", headers=JSON)
        click.echo(f"removed the profile of {namespace}")
