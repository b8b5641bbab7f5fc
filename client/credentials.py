"""Where the client's credentials come from, and ``assay login``'s store.

``lookup(host, scheme)`` answers the first of, in order:

1. ``ASSAY_TOKEN``: a personal access token (sent as ``Basic <ASSAY_USERNAME or
   "token">:<token>``, which assay and most token-auth registries accept);
2. ``ASSAY_USERNAME`` and ``ASSAY_PASSWORD``;
3. the entry ``assay login`` wrote for ``host`` in ``$ASSAY_CONFIG_DIR/auth.json``
   (default ``$XDG_CONFIG_HOME/assay/`` else ``~/.config/assay/``)::

       {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>",
                                     "scheme": "http"}}}

4. Docker's ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``): an
   ``auths`` entry for the host (keys as ``docker login`` writes them, with or without a
   scheme) with a base64 ``auth`` field or ``username``/``password``. Credential helpers
   (``credsStore``, ``credHelpers``) are not run.

Every credential is bound to the registry it was given for, and ``lookup`` returns it for
that registry only:

- the files' entries to their ``HOST[:PORT]`` key and their scheme (``scheme`` as
  ``assay login`` recorded it, a Docker key's ``https://``/``http://`` prefix; an entry
  without one: HTTPS, or plain HTTP for a loopback host as the client speaks to it);
- the environment to ``$ASSAY_REGISTRY`` (``[SCHEME://]HOST[:PORT]``) when it is set.
  When it is not, an *ambient* lookup (``ambient=True``: the CLI, whose user names the
  registry on the command line) gives them to the registry the command names; a process
  that connects where *others* say (a worker pulling a model a webhook named) looks up
  with ``ambient=False`` and sends environment credentials nowhere but ``$ASSAY_REGISTRY``.

The store is written atomically (a temporary file renamed over it) with mode 0600.
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

from client.errors import ClientError
from client.ref import default_scheme

AUTH_FILE = "auth.json"


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str  # a password or a personal access token
    source: str = "auth.json"  # where they came from, for messages
    scheme: str | None = None  # the scheme they were given for (None: any)

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


def _decode(entry: object, source: str, scheme: str | None) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("scheme"), str) and entry["scheme"] in ("http", "https"):
        scheme = entry["scheme"]
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, secret = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return Credentials(user, secret, source, scheme) if sep else None
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return Credentials(user, secret, source, scheme)
    return None


def _split_key(key: str) -> tuple[str | None, str]:
    """``https://host:port/v1/`` -> (``https``, ``host:port``): docker login's keys."""
    scheme = None
    for prefix in ("https", "http"):
        if key.lower().startswith(f"{prefix}://"):
            scheme, key = prefix, key[len(prefix) + 3:]
    return scheme, key.split("/", 1)[0].lower()


def _same(host: str, scheme: str | None, key_host: str, key_scheme: str | None) -> bool:
    """Whether a credential given for ``key_scheme://key_host`` may go to
    ``scheme://host`` (a None scheme: the default the client would use)."""
    if host.lower() != key_host:
        return False
    wanted = scheme or default_scheme(host)
    return wanted == (key_scheme or default_scheme(key_host))


def from_env(host: str | None = None, scheme: str | None = None, *,
             ambient: bool = True) -> Credentials | None:
    """The environment's credentials for ``scheme://host`` (None: whatever they are),
    bound as the module docstring says."""
    token = os.environ.get("ASSAY_TOKEN")
    user, password = os.environ.get("ASSAY_USERNAME"), os.environ.get("ASSAY_PASSWORD")
    if token:
        found = Credentials(user or "token", token, "ASSAY_TOKEN")
    elif user and password:
        found = Credentials(user, password, "ASSAY_USERNAME/ASSAY_PASSWORD")
    else:
        return None
    bound = (os.environ.get("ASSAY_REGISTRY") or "").strip().rstrip("/")
    if host is None:
        return found
    if bound:
        bound_scheme, bound_host = _split_key(bound)
        return found if _same(host, scheme, bound_host, bound_scheme) else None
    return found if ambient else None


def stored(host: str, scheme: str | None = None) -> Credentials | None:
    """What ``assay login`` stored for ``host``, if it may go over ``scheme``."""
    found = _decode(_read_auths(auth_file()).get(host), str(auth_file()), None)
    if found is not None and _same(host, scheme, host.lower(), found.scheme):
        return found
    return None


def from_docker(host: str, scheme: str | None = None) -> Credentials | None:
    path = docker_config_file()
    with contextlib.suppress(ClientError):  # a broken Docker config is not ours to report
        for key, entry in _read_auths(path).items():
            key_scheme, key_host = _split_key(str(key))
            if (found := _decode(entry, str(path), key_scheme)) and \
                    _same(host, scheme, key_host, found.scheme):
                return found
    return None


def lookup(host: str, scheme: str | None = None, *,
           ambient: bool = True) -> Credentials | None:
    """The credentials for ``scheme://host`` (``HOST[:PORT]``; a None scheme: the one the
    client defaults to), or None: see the module docstring."""
    return (from_env(host, scheme, ambient=ambient) or stored(host, scheme)
            or from_docker(host, scheme))


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


def save(host: str, credentials: Credentials, scheme: str | None = None) -> Path:
    """Store ``credentials`` for ``host``, bound to ``scheme`` (None: the default one)."""
    auths = _read_auths(auth_file())
    raw = f"{credentials.username}:{credentials.secret}".encode()
    auths[host] = {"auth": base64.b64encode(raw).decode(),
                   "scheme": scheme or default_scheme(host)}
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
