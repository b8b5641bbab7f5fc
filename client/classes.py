"""``assay class set|ls|rm``: the hardware classes of an assay registry, over its REST API
(``/api/v1/classes``; changing them is for site admins).

A selector is given as ``KEY=VALUE`` words (``accelerator=cuda min_accelerator_memory=16GiB
os=darwin backend=mlx labels.site=lab2``; ``backend`` may repeat, ``min_cores`` is a
number) or whole as ``--selector JSON``. The registry checks the selector and names what
is wrong. Failures are one ``error:`` line (``errors.reported``).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import click

from client.errors import InputError, reported
from client.registry_client import RegistryClient
from client.rest import JSON, registry_of, response_json
from client.show import render_table


def parse_selector(words: tuple[str, ...], as_json: str | None) -> dict:
    """The selector from ``KEY=VALUE`` words or a JSON object (not both)."""
    if as_json is not None:
        if words:
            raise InputError("give the selector as KEY=VALUE words or --selector JSON, "
                             "not both")
        try:
            value = json.loads(as_json)
        except ValueError as exc:
            raise InputError(f"--selector is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise InputError("--selector must be a JSON object")
        return value
    selector: dict = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InputError(f"{word[:80]!r} is not KEY=VALUE")
        if key.startswith("labels."):
            selector.setdefault("labels", {})[key[len("labels."):]] = value
        elif key == "backend":
            selector.setdefault("backend", []).append(value)
        elif key == "min_cores":
            if not value.isdigit():
                raise InputError(f"min_cores must be a number, not {value[:40]!r}")
            selector[key] = int(value)
        else:
            selector[key] = value
    return selector


def _describe(selector: dict) -> str:
    parts = []
    for key, value in sorted(selector.items()):
        if key == "labels":
            parts += [f"labels.{k}={v}" for k, v in sorted(value.items())]
        elif isinstance(value, list):
            parts += [f"{key}={v}" for v in value]
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts) or "(every worker)"


def _send(location: str, insecure: bool, method: str, path: str, what: str,
          body: dict | None = None) -> dict:
    registry = registry_of(location, insecure)
    with RegistryClient(registry) as client:
        resp = client.request(method, path, what=what, headers=JSON,
                              content=(lambda: json.dumps(body).encode()) if body else None)
        return response_json(resp, what)


def run_set(name: str, words: tuple[str, ...], selector_json: str | None, location: str,
            insecure: bool) -> None:
    with reported():
        selector = parse_selector(words, selector_json)
        found = _send(location, insecure, "PUT", f"/api/v1/classes/{quote(name, safe='')}",
                      f"set class {name}", {"selector": selector})
        click.echo(f"class {found['name']}: {_describe(found['selector'])}")


def run_ls(location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        found = _send(location, insecure, "GET", "/api/v1/classes", "list classes")
        classes = found.get("classes", [])
        if as_json:
            click.echo(json.dumps(classes, indent=2))
        elif not classes:
            click.echo("no hardware classes", err=True)
        else:
            click.echo(render_table(["CLASS", "SELECTOR"],
                                    [[c["name"], _describe(c["selector"])] for c in classes]))


def run_rm(name: str, location: str, insecure: bool) -> None:
    with reported():
        _send(location, insecure, "DELETE", f"/api/v1/classes/{quote(name, safe='')}",
              f"remove class {name}")
        click.echo(f"removed class {name}")
