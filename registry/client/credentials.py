"""Where the client's credentials come from, and ``assay login``'s store.

``lookup(host)`` answers the first of, in order:

1. ``ASSAY_TOKEN``: a personal access token (sent as ``Basic <ASSAY_USERNAME or
   "token">:<token>``, which assay and most token-auth registries accept);
2. ``ASSAY_USERNAME`` and ``ASSAY_PASSWORD``;
3. the entry ``assay login`` wrote for ``host`` in ``$ASSAY_CONFIG_DIR/auth.json``
   (default ``$XDG_CONFIG_HOME/assay/`` else ``~/.config/assay/``)::

       {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"}}}

4. Docker's ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``): an
   ``auths`` entry for the host (keys as ``docker login`` writes them, with or without a
   scheme) with a base64 ``auth`` field or ``username``/``password``. Credential helpers
   (``credsStore``, ``credHelpers``) are not run.

The environment applies to every registry (it is how CI, and the worker verifying a
model in another registry, are configured); the files are per ``HOST[:PORT]``. The store
is written atomically (a temporary file renamed over it) with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from registry.client.errors import ClientError

AUTH_FILE = "auth.json"


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str  # a password or a personal access token
    source: str = "auth.json"  # where they came from, for messages

    def basic(self) -> str:
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __repr__(self) -> str:  # never the secret, even in a traceback
        return f"Credentials({self.username!r}, source={self.source!r})"


def config_dir() -> Path:
    configured = os.environ.get("ASSAY_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "assay"


def auth_file() -> Path:
    return config_dir() / AUTH_FILE


def docker_config_file() -> Path:
    configured = os.environ.get("DOCKER_CONFIG")
    base = Path(configured).expanduser() if configured else Path.home() / ".docker"
    return base / "config.json"


def _read_auths(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    return auths if isinstance(auths, dict) else {}


def _decode(entry: object, source: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, secret = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return Credentials(user, secret, source) if sep else None
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return Credentials(user, secret, source)
    return None


def _docker_key(key: str) -> str:
    """``https://host:port/v1/`` -> ``host:port`` (docker login's keys for old registries)."""
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.split("/", 1)[0]


def from_env() -> Credentials | None:
    token = os.environ.get("ASSAY_TOKEN")
    if token:
        return Credentials(os.environ.get("ASSAY_USERNAME") or "token", token, "ASSAY_TOKEN")
    user, password = os.environ.get("ASSAY_USERNAME"), os.environ.get("ASSAY_PASSWORD")
    if user and password:
        return Credentials(user, password, "ASSAY_USERNAME/ASSAY_PASSWORD")
    return None


def stored(host: str) -> Credentials | None:
    """What ``assay login`` stored for ``host``."""
    return _decode(_read_auths(auth_file()).get(host), str(auth_file()))


def from_docker(host: str) -> Credentials | None:
    path = docker_config_file()
    with contextlib.suppress(ClientError):  # a broken Docker config is not ours to report
        for key, entry in _read_auths(path).items():
            if _docker_key(str(key)) == host and (found := _decode(entry, str(path))):
                return found
    return None


def lookup(host: str) -> Credentials | None:
    """The credentials for ``host`` (``HOST[:PORT]``), or None: see the module docstring."""
    return from_env() or stored(host) or from_docker(host)


def _write(auths: dict) -> None:
    path = auth_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".auth-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)  # mkstemp makes it 0600 already; say so anyway
        with os.fdopen(fd, "w") as f:
            json.dump({"auths": auths}, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save(host: str, credentials: Credentials) -> Path:
    auths = _read_auths(auth_file())
    raw = f"{credentials.username}:{credentials.secret}".encode()
    auths[host] = {"auth": base64.b64encode(raw).decode()}
    _write(auths)
    return auth_file()


def remove(host: str) -> bool:
    """Forget ``host``; False when nothing was stored for it."""
    auths = _read_auths(auth_file())
    if host not in auths:
        return False
    del auths[host]
    _write(auths)
    return True
