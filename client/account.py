"""``assay login|logout``, ``assay key add|ls|rm`` and ``assay token add|ls|rm``: the
signed-in user's side of access control, over the registry's HTTP APIs.

``login`` checks the credentials before it stores them (``credentials.save``): ``GET /v2/``
through the client's auth flow (a token from the realm with them, or Basic), then assay's
``GET /api/v1/me`` to say who they belong to. Keys and tokens are assay's REST API
(``/api/v1/keys``, ``/api/v1/tokens``) with the stored credentials (or the environment's).
REGISTRY is ``HOST[:PORT]`` (loopback over plain HTTP). Failures are one ``error:`` line.

A secret shown once (a new token, a generated webhook secret; ``print_secret``) is
alone on stdout, so that ``$(...)`` captures it; what it is and "save it now" go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from client import credentials as store
from client.auth import AuthError
from client.errors import ClientError, InputError, reported
from client.registry_client import RegistryClient
from client.rest import JSON, registry_of, response_json
from client.show import render_table

DEFAULT_OLLAMA_KEY = "~/.ollama/id_ed25519.pub"
SHOWN_ONCE = "save it now: it is shown only once"


def print_secret(secret: str, what: str) -> None:
    """``secret`` alone on stdout; ``what`` it is and the shown-once warning on stderr."""
    click.echo(f"{what}; {SHOWN_ONCE}", err=True)
    click.echo(secret)


def token_summary(token: dict, owner: str | None = None) -> str:
    """``token 3 "laptop" of alice (pull,push; expires never)``: a new token, in words."""
    of = f" of {owner}" if owner else ""
    expires = (token.get("expires_at") or "never")[:19]
    return (f"token {token.get('id')} {json.dumps(token.get('name'))}{of} "
            f"({','.join(token.get('scopes') or [])}; expires {expires})")


# ---------------------------------------------------------------------- login / logout

def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InputError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise InputError("give the password with --password-stdin")
    return click.prompt("Password", hide_input=True)


def _read_username(username: str | None) -> str:
    if username:
        return username
    if not sys.stdin.isatty():
        raise InputError("give the user name with -u USER")
    return click.prompt("Username")


def run_login(location: str, username: str | None, password_stdin: bool,
              insecure: bool) -> None:
    with reported():
        registry = registry_of(location, insecure)
        user = _read_username(username)
        creds = store.Credentials(user, _read_password(password_stdin), "login")
        with RegistryClient(registry, credentials=creds, attempts=2) as client:
            try:
                client.request("GET", "/v2/", what=f"log in to {registry.host}")
                me = client.rest("/api/v1/me")
            except AuthError as exc:
                said = f": {exc.detail}" if exc.detail else ""
                raise ClientError(f"{registry.host} refused the credentials of {user}"
                                  f"{said}") from None
            challenged = client.auth.stats["challenge"] > 0
        if isinstance(me, dict) and me.get("auth") is False and not challenged:
            click.echo(f"note: {registry.host} does not check credentials (authentication "
                       "is off); storing them anyway", err=True)
        path = store.save(registry.host, creds, registry.scheme)
        who = me.get("name") if isinstance(me, dict) and me.get("name") else user
        click.echo(f"logged in to {registry.host} as {who} (credentials in {path})")
        if store.from_env() is not None:
            click.echo("note: ASSAY_TOKEN or ASSAY_USERNAME/ASSAY_PASSWORD are set and "
                       "take precedence over the stored credentials", err=True)


def run_logout(location: str, insecure: bool) -> None:
    with reported():
        registry = registry_of(location, insecure)
        if store.remove(registry.host):
            click.echo(f"logged out of {registry.host}")
        else:
            click.echo(f"not logged in to {registry.host}", err=True)
        if store.from_env() is not None:
            click.echo("note: credentials from ASSAY_TOKEN or ASSAY_USERNAME/ASSAY_PASSWORD "
                       "still apply", err=True)


# ---------------------------------------------------------------------- REST helpers

def _call(location: str, insecure: bool, method: str, path: str, what: str, *,
          ok: tuple[int, ...] = (200,), body: dict | None = None) -> object:
    registry = registry_of(location, insecure)
    content = json.dumps(body).encode() if body is not None else None
    headers = {**JSON, **({"Content-Type": "application/json"} if content else {})}
    with RegistryClient(registry) as client:
        if client.auth.credentials is None:
            raise ClientError(f"not logged in to {registry.host}: run assay login "
                              f"{registry.host} (or set ASSAY_TOKEN)")
        resp = client.request(method, path, what=what, ok=ok, headers=headers,
                              content=(lambda: content) if content else None)
        return response_json(resp, what)


def _print(value, as_json: bool, text: str | None) -> None:
    if as_json:
        click.echo(json.dumps(value, indent=2))
    elif text:
        click.echo(text)


# ---------------------------------------------------------------------- Ollama keys

def run_key_add(pubkey_file: str | None, location: str, insecure: bool,
                as_json: bool) -> None:
    with reported():
        path = Path(pubkey_file or DEFAULT_OLLAMA_KEY).expanduser()
        try:
            key = path.read_text().strip()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not key or "PRIVATE KEY" in key:
            raise InputError(f"{path} is not a public key (give the .pub file)")
        added = _call(location, insecure, "POST", "/api/v1/keys", "add key", ok=(201,),
                      body={"public_key": key})
        _print(added, as_json, f"key {added.get('id')}: {added.get('fingerprint')} "
                               f"{added.get('comment') or ''}".rstrip())


def run_key_ls(location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        keys = _call(location, insecure, "GET", "/api/v1/keys", "list keys").get("keys", [])
        if not keys and not as_json:
            click.echo("no keys", err=True)
            return
        _print(keys, as_json, render_table(
            ["ID", "FINGERPRINT", "COMMENT", "ADDED"],
            [[str(k["id"]), k.get("fingerprint") or "", k.get("comment") or "",
              (k.get("created_at") or "")[:19]] for k in keys]))


def run_key_rm(key_id: int, location: str, insecure: bool) -> None:
    with reported():
        _call(location, insecure, "DELETE", f"/api/v1/keys/{key_id}", f"remove key {key_id}")
        click.echo(f"removed key {key_id}")


# ---------------------------------------------------------------------- access tokens

def run_token_add(name: str, scopes: tuple[str, ...], expires_days: float | None,
                  location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        body: dict = {"name": name}
        if scopes:
            body["scopes"] = list(scopes)
        if expires_days is not None:
            body["expires_in_days"] = expires_days
        created = _call(location, insecure, "POST", "/api/v1/tokens", f"create token {name}",
                        ok=(201,), body=body)
        if as_json:
            _print(created, True, None)
            click.echo(SHOWN_ONCE, err=True)
        else:
            print_secret(created.get("token"), token_summary(created))


def run_token_ls(location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        tokens = _call(location, insecure, "GET", "/api/v1/tokens",
                       "list tokens").get("tokens", [])
        if not tokens and not as_json:
            click.echo("no tokens", err=True)
            return
        _print(tokens, as_json, render_table(
            ["ID", "NAME", "PREFIX", "SCOPES", "EXPIRES", "LAST USED"],
            [[str(t["id"]), t.get("name") or "", f"{t.get('prefix')}…",
              ",".join(t.get("scopes") or []),
              "revoked" if t.get("revoked") else (t.get("expires_at") or "never")[:19],
              (t.get("last_used_at") or "-")[:19]] for t in tokens]))


def run_token_rm(token_id: int, location: str, insecure: bool) -> None:
    with reported():
        _call(location, insecure, "DELETE", f"/api/v1/tokens/{token_id}",
              f"revoke token {token_id}")
        click.echo(f"revoked token {token_id}")
