"""``assay mirror add|ls|show|rm``: the mirror namespaces of an assay registry, over its
REST API (``/api/v1/mirrors``, site admins only).

A mirror namespace answers pulls of what it lacks from an upstream registry (Ollama's, any
OCI registry, or a Hugging Face endpoint); the URL's path is the upstream's name prefix.
``add`` creates or replaces a mirror with a ``PUT``: a password given on stdin is sent
once and never printed; without one the registry keeps the stored password as long as the
username is unchanged. The registry validates the kind and the URL and names what is
wrong; this module checks only what it parses itself (the refresh duration). Failures are
one ``error:`` line (``errors.reported``).
"""

from __future__ import annotations

import json
import re
import sys
from urllib.parse import quote

import click

from client.errors import InputError, reported
from client.registry_client import RegistryClient
from client.rest import JSON, registry_of, response_json
from client.show import render_table

KINDS = ("ollama", "oci", "hf")
MAX_REFRESH = 366 * 86400  # the registry refuses more
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d+[smhd])+")


def parse_duration(text: str) -> int:
    """Seconds in ``30s``, ``15m``, ``1h``, ``2d``, ``1h30m`` or plain ``3600``, at most
    366 days. ``InputError`` names the text otherwise."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    elif _DURATION.fullmatch(value):
        seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", value))
    else:
        raise InputError(f"--refresh {text!r} is not a duration like 30s, 15m, 1h, 2d "
                         "or plain seconds")
    if seconds > MAX_REFRESH:
        raise InputError(f"--refresh {text!r} is more than a year (at most 366d)")
    return seconds


def format_duration(seconds: int) -> str:
    """``1h``, ``15m``, ``1h30m``, ``2d``, ``0s``: the inverse of ``parse_duration``."""
    parts, rest = [], max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


def read_secret(stdin: bool) -> str | None:
    """The password or token given on stdin (its line ending stripped), or None without
    ``--password-stdin``: a secret is never taken from the command line."""
    if not stdin:
        return None
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise InputError("--password-stdin: no password on standard input")
    return secret


def mirror_request(kind: str, url: str, username: str | None, password: str | None,
                   refresh: str, verify_first: bool, keep_days: int | None) -> dict:
    """The ``PUT /api/v1/mirrors/NS`` body; ``InputError`` for what can be judged here
    (the kind, the duration, a URL missing for a kind without a default)."""
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise InputError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not url and kind != "ollama":
        raise InputError(f"give the upstream URL: --kind {kind} has no default "
                         "(only ollama: https://registry.ollama.ai)")
    if password and not username and kind != "hf":
        raise InputError("--password-stdin needs --username (only an hf token needs none)")
    body = {"kind": kind, "url": url, "username": username or None,
            "refresh_seconds": parse_duration(refresh), "verify_first": verify_first,
            "keep_days": keep_days}
    if password is not None:  # omitted: the registry keeps the stored one
        body["password"] = password
    return body


def _path(namespace: str) -> str:
    """The REST path of mirror ``namespace``: one name segment (the registry checks the
    rest), since a mirror is a whole namespace."""
    name = namespace.strip("/")
    if not name or "/" in name:
        raise InputError(f"a mirror is a whole namespace: one name segment, not {namespace!r}")
    return "/api/v1/mirrors/" + quote(name, safe="")


def describe(m: dict) -> str:
    """``mirror hub: oci https://... (refresh 1h, serve then verify, password set)``."""
    gate = "verify first" if m.get("verify_first") else "serve then verify"
    extra = [f"refresh {format_duration(m.get('refresh_seconds') or 0)}", gate]
    if m.get("username"):
        extra.append(f"user {m['username']}")
    extra.append("password set" if m.get("password_set") else "no password")
    if m.get("keep_days"):
        extra.append(f"keep {m['keep_days']}d")
    return f"mirror {m['namespace']}: {m['kind']} {m['url']} ({', '.join(extra)})"


def run_add(namespace: str, url: str, kind: str, username: str | None, password_stdin: bool,
            refresh: str, verify_first: bool, keep_days: int | None, location: str,
            insecure: bool, as_json: bool) -> None:
    with reported():
        path = _path(namespace)
        body = mirror_request(kind, url or "", username, read_secret(password_stdin),
                              refresh, verify_first, keep_days)
        registry = registry_of(location, insecure)
        content = json.dumps(body).encode()
        with RegistryClient(registry) as client:
            resp = client.request("PUT", path, what=f"add mirror {namespace}",
                                  content=lambda: content,
                                  headers={**JSON, "Content-Type": "application/json"})
            mirror = response_json(resp, "add mirror")
        click.echo(json.dumps(mirror, indent=2) if as_json else describe(mirror))


def _row(m: dict) -> list[str]:
    return [m["namespace"], m["kind"], m["url"],
            format_duration(m.get("refresh_seconds") or 0),
            "yes" if m.get("verify_first") else "no",
            "set" if m.get("password_set") else "-",
            f"{m['keep_days']}d" if m.get("keep_days") else "-"]


def run_ls(location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        registry = registry_of(location, insecure)
        with RegistryClient(registry) as client:
            resp = client.request("GET", "/api/v1/mirrors", what="list mirrors", headers=JSON)
            found = response_json(resp, "list mirrors").get("mirrors", [])
        if as_json:
            click.echo(json.dumps(found, indent=2))
        elif not found:
            click.echo(f"{registry.host}: no mirrors", err=True)
        else:
            click.echo(render_table(["NAMESPACE", "KIND", "URL", "REFRESH", "VERIFY-FIRST",
                                     "PASSWORD", "KEEP"], [_row(m) for m in found]))


def run_show(namespace: str, location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        registry = registry_of(location, insecure)
        with RegistryClient(registry) as client:
            resp = client.request("GET", _path(namespace), what=f"mirror {namespace}",
                                  headers=JSON)
            mirror = response_json(resp, f"mirror {namespace}")
        click.echo(json.dumps(mirror, indent=2) if as_json else describe(mirror))


def run_rm(namespace: str, location: str, insecure: bool) -> None:
    with reported():
        registry = registry_of(location, insecure)
        with RegistryClient(registry) as client:
            client.request("DELETE", _path(namespace), what=f"remove mirror {namespace}",
                           headers=JSON)
        click.echo(f"removed mirror {namespace} (what it cached stays, as ordinary "
                   "repositories)")
