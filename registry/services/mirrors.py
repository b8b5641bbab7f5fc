"""Mirror namespaces: which namespaces mirror which upstream registry (``MirrorService``).

A mirror is a namespace (a repository name's first segment) bound to an upstream:

- ``ollama``: Ollama's registry protocol (OCI Distribution with Ollama's media types and
  blob redirects); default upstream ``https://registry.ollama.ai``;
- ``oci``: any OCI Distribution registry;
- ``hf``: a Hugging Face Hub endpoint (its HTTP API).

Names map by prefix: the URL's path is the upstream's name prefix. With ``team`` a mirror
of ``https://huggingface.co/google``, ``team/gemma-3`` is ``google/gemma-3``. An
``ollama`` mirror without a prefix maps as Ollama names models: with ``mirror`` a mirror of
``https://registry.ollama.ai``, ``mirror/gemma3`` and ``mirror/library/gemma3`` are both
``library/gemma3`` (``Mirror.upstream_name``). Fetching is
``registry.services.mirror_fetch``'s; this module only keeps the configuration.

The upstream's password (or token) is sealed with the registry's secret
(``registry.secretbox``) and never returned: the JSON says only whether one is set.
Lookups on the pull path are cached for ``CACHE_SECONDS`` per process, so a change
reaches every replica within that time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, select

from registry.db.tables import isoformat, mirrors, utcnow
from registry.digests import check_name
from registry.errors import NameInvalid, NotFound, RequestInvalid
from registry.secretbox import SecretBox
from registry.services import audit
from registry.services.common import Service

KINDS = ("ollama", "oci", "hf")
OLLAMA_LIBRARY = "https://registry.ollama.ai"
DEFAULT_REFRESH = 3600
CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Mirror:
    """A mirror namespace's configuration (never its password)."""

    namespace: str
    kind: str
    url: str
    username: str | None
    has_password: bool
    refresh_seconds: int
    verify_first: bool
    keep_days: int | None
    created_at: datetime
    updated_at: datetime

    @property
    def base_url(self) -> str:
        """``scheme://host[:port]`` of the upstream."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def prefix(self) -> str:
        """The upstream's name prefix ("" for none)."""
        return urlsplit(self.url).path.strip("/")

    def upstream_name(self, name: str) -> str:
        """The upstream's name for local repository ``name`` (which is in this mirror).

        An ``ollama`` mirror without a prefix names models as Ollama does: a bare model
        is in ``library`` (``mirror/gemma3`` is ``library/gemma3``; the Ollama client
        accepts exactly one namespace, so ``HOST/mirror/gemma3:270m`` is how it pulls
        through a mirror), and ``mirror/library/gemma3`` is the same model for clients
        that take longer names."""
        rest = name[len(self.namespace) + 1:]
        if self.prefix:
            return f"{self.prefix}/{rest}"
        if self.kind == "ollama" and "/" not in rest:
            return f"library/{rest}"
        return rest

    def to_json(self) -> dict:
        return {"namespace": self.namespace, "kind": self.kind, "url": self.url,
                "username": self.username, "password_set": self.has_password,
                "refresh_seconds": self.refresh_seconds, "verify_first": self.verify_first,
                "keep_days": self.keep_days, "created_at": isoformat(self.created_at),
                "updated_at": isoformat(self.updated_at)}


def _mirror(row) -> Mirror:
    return Mirror(row.namespace, row.kind, row.url, row.username, bool(row.password),
                  row.refresh_seconds, bool(row.verify_first), row.keep_days,
                  row.created_at, row.updated_at)


def check_url(url: str, kind: str) -> str:
    """An upstream URL as stored: http(s), a host, no credentials, query or fragment; its
    path a valid repository-name prefix. ``RequestInvalid`` says what is wrong."""
    if not url and kind == "ollama":
        return OLLAMA_LIBRARY
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise RequestInvalid(f"url {url[:200]!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestInvalid(f"url {url[:200]!r} must be http:// or https:// and name a host")
    if parts.username is not None or parts.password is not None:
        raise RequestInvalid("url must not carry credentials: give username and password")
    if parts.query or parts.fragment:
        raise RequestInvalid("url must not have a query or fragment")
    prefix = parts.path.strip("/")
    if prefix:
        try:
            check_name(prefix)
        except NameInvalid:
            raise RequestInvalid(f"the url's path {prefix[:200]!r} is not a repository "
                                 "name prefix") from None
    path = f"/{prefix}" if prefix else ""
    return f"{parts.scheme}://{parts.netloc}{path}"


def check_namespace(namespace: str) -> str:
    namespace = namespace.strip("/")
    try:
        check_name(namespace)
    except NameInvalid:
        raise RequestInvalid(f"namespace {namespace[:200]!r} is not a valid name") from None
    if "/" in namespace or namespace == "_":
        raise RequestInvalid("a mirror is a whole namespace: one name segment, not "
                             f"{namespace[:200]!r}")
    return namespace


class MirrorService(Service):
    def __init__(self, *args):
        super().__init__(*args)
        self._cache: dict[str, Mirror] | None = None
        self._cached_at = 0.0
        self._lock = threading.Lock()

    @property
    def box(self) -> SecretBox:
        return SecretBox.from_settings(self.settings)

    # ---- lookups on the pull path -------------------------------------------------------
    def _all(self) -> dict[str, Mirror]:
        with self._lock:
            if self._cache is None or time.monotonic() - self._cached_at > CACHE_SECONDS:
                with self.db.read() as conn:
                    rows = conn.execute(select(mirrors)).all()
                self._cache = {r.namespace: _mirror(r) for r in rows}
                self._cached_at = time.monotonic()
            return self._cache

    def forget(self) -> None:
        """Drop this process's cache (after a change made here)."""
        with self._lock:
            self._cache = None

    def peek(self, name: str) -> tuple[bool, Mirror | None]:
        """``(True, the mirror name is in or None)`` from this process's cache while it is
        fresh; ``(False, None)`` when answering needs the database (``of``)."""
        with self._lock:
            if self._cache is None or time.monotonic() - self._cached_at > CACHE_SECONDS:
                return False, None
            return True, self._cache.get(name.split("/", 1)[0])

    def of(self, name: str) -> Mirror | None:
        """The mirror repository ``name`` is in, if any."""
        mirrors_now = self._all()
        if not mirrors_now:
            return None
        return mirrors_now.get(name.split("/", 1)[0])

    def serves_unverified(self, name: str) -> bool:
        """Whether ``name`` is in a mirror that serves before verification (the gate
        does not hold its pulls; a failure is flagged, not hidden)."""
        m = self.of(name)
        return m is not None and not m.verify_first

    def credentials(self, namespace: str) -> tuple[str | None, str | None]:
        """The upstream's username and password, opened."""
        with self.db.read() as conn:
            row = conn.execute(select(mirrors.c.username, mirrors.c.password)
                               .where(mirrors.c.namespace == namespace)).first()
        if row is None:
            return None, None
        return row.username, self.box.open(row.password) if row.password else None

    # ---- administration ------------------------------------------------------------------
    def list(self) -> list[Mirror]:
        with self.db.read() as conn:
            rows = conn.execute(select(mirrors).order_by(mirrors.c.namespace)).all()
        return [_mirror(r) for r in rows]

    def get(self, namespace: str) -> Mirror:
        with self.db.read() as conn:
            row = conn.execute(select(mirrors).where(
                mirrors.c.namespace == namespace.strip("/"))).first()
        if row is None:
            raise NotFound(f"namespace {namespace[:200]!r} is not a mirror")
        return _mirror(row)

    def set(self, namespace: str, *, kind: str, url: str = "", username: str | None = None,
            password: str | None = None, refresh_seconds: int = DEFAULT_REFRESH,
            verify_first: bool = False, keep_days: int | None = None) -> Mirror:
        """Create or replace the mirror of ``namespace``. ``password`` None keeps the one
        stored (if the username is unchanged); "" removes it."""
        namespace = check_namespace(namespace)
        if kind not in KINDS:
            raise RequestInvalid(f"kind must be one of {', '.join(KINDS)}, not {kind[:40]!r}")
        url = check_url(url, kind)
        if not 0 <= refresh_seconds <= 366 * 86400:
            raise RequestInvalid("refresh_seconds must be between 0 and a year")
        if keep_days is not None and not 1 <= keep_days <= 36500:
            raise RequestInvalid("keep_days must be between 1 and 36500")
        username = username or None
        if password and username is None and kind != "hf":
            raise RequestInvalid("a password needs a username (an hf token needs none)")
        now = utcnow()
        with self.db.write() as conn:
            old = conn.execute(select(mirrors).where(mirrors.c.namespace == namespace)
                               ).first()
            if password is None and old is not None and old.username == username:
                sealed = old.password
            else:
                sealed = self.box.seal(password) if password else None
            values = dict(kind=kind, url=url, username=username, password=sealed,
                          refresh_seconds=refresh_seconds, verify_first=verify_first,
                          keep_days=keep_days, updated_at=now)
            conn.execute(self.db.upsert(mirrors, ["namespace"], values, namespace=namespace,
                                        created_at=now, **values))
            audit.record(conn, "mirror.set", namespace, kind=kind, url=url,
                         username=username, password_set=bool(sealed),
                         refresh_seconds=refresh_seconds, verify_first=verify_first,
                         keep_days=keep_days)
        self.forget()
        return self.get(namespace)

    def delete(self, namespace: str) -> None:
        """Stop mirroring ``namespace``; what it cached stays (as ordinary repositories)."""
        with self.db.write() as conn:
            done = conn.execute(delete(mirrors).where(
                mirrors.c.namespace == namespace.strip("/")))
            if not done.rowcount:
                raise NotFound(f"namespace {namespace[:200]!r} is not a mirror")
            audit.record(conn, "mirror.delete", namespace.strip("/"))
        self.forget()
