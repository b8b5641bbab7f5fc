"""Blobs of mirror namespaces: fetched from the upstream once, streamed while stored
(``MirrorBlobService``, the base of ``registry.services.mirror_fetch.MirrorFetchService``).

One process fetches a given blob at a time, whichever replica the pulls reach: it holds a
lease in ``mirror_fetches`` (renewed while bytes flow; a crashed fetcher's lease lapses and
the next pull takes over). The fetcher runs in a thread of its own (``Fetch``): it writes
the bytes into an upload session and hands them to the client that started it as they
arrive, holding back the last chunk until the digest is checked, so a client never receives
the whole of a blob that was refused. If that client leaves, the fetch goes on for the
cache. Every other pull of the blob waits until it is stored (``step``) and is then served
from storage. An upstream that fails mid-transfer, or sends bytes that do not match the
digest, leaves nothing stored: the upload is discarded and the client's answer is cut short.

A blob already stored for another repository is linked into a mirror repository only after
the upstream confirmed it holds that blob (a HEAD, or the size a Hub listed for the file):
naming a digest in an upstream manifest is not enough to read another namespace's bytes.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update

from client.credentials import Credentials
from client.errors import ClientError, NotFoundError
from client.outbound import OutboundDenied
from client.ref import Registry
from client.registry_client import RegistryClient
from registry.db.tables import (
    as_utc,
    blobs,
    mirror_fetches,
    mirror_pending,
    repository_blobs,
    utcnow,
)
from registry.digests import parse_digest
from registry.errors import (
    BlobUnknown,
    ManifestUnknown,
    NotFound,
    RegistryError,
    RemoteUnavailable,
    UploadTooLarge,
)
from registry.manifests import parse_manifest
from registry.services import quotas
from registry.services.common import Service, ensure_repo, repo_id, touch_blobs
from registry.services.mirrors import Mirror, MirrorService
from registry.services.uploads import UploadService

log = logging.getLogger("assay.mirror")

FETCH_LEASE = timedelta(seconds=60)
QUEUE_CHUNKS = 8  # chunks a fetch may run ahead of its client (memory: 8 x 1 MiB)
CHUNK = 1 << 20


@dataclass(frozen=True)
class Opened:
    """An upstream body being read: its chunks, its size if known, what closes it."""

    chunks: Iterator[bytes]
    size: int | None
    close: Callable[[], None]


@dataclass(frozen=True)
class Source:
    """Where a blob's bytes come from when not the upstream's ``/v2/`` (a Hub file): a
    function opening it, and the size the upstream declared."""

    open: Callable[[], Opened]
    size: int | None


def upstream_error(exc: Exception, m: Mirror, what: str) -> RegistryError:
    """A client failure talking to ``m``'s upstream as the registry's error."""
    if isinstance(exc, NotFoundError):
        return ManifestUnknown(f"{what} is not in the upstream {m.url}")
    if isinstance(exc, OutboundDenied):
        log.warning("mirror %s: %s", m.namespace, exc)
        return RemoteUnavailable(f"the outbound policy does not allow the upstream {m.url} "
                                 "(the operator can allow it with ASSAY_OUTBOUND_ALLOW)")
    return RemoteUnavailable(f"{what}: the upstream {m.url} failed: {str(exc)[:300]}")


class Fetch:
    """One blob streaming from an upstream into storage, in a thread of its own.

    ``chunks()`` gives the bytes to the client that started it, as they are stored (the
    last one only once the blob is committed); closing it early lets the fetch finish for
    the cache. ``done`` is set when the thread ends; ``error`` says why it failed."""

    def __init__(self, source: Iterator[bytes], release):
        self._source = source
        self._release = release
        self._queue: queue.Queue = queue.Queue(QUEUE_CHUNKS)
        self._abandoned = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.size: int | None = None  # the blob's size, when the upstream said
        self._thread = threading.Thread(target=self._run, daemon=True, name="mirror-fetch")
        self._thread.start()

    def _put(self, item) -> None:
        while not self._abandoned.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            for chunk in self._source:
                self._put(chunk)
        except BaseException as exc:  # noqa: BLE001 - reported to the consumer and the log
            self.error = exc
            log.warning("mirror fetch failed: %s", exc)
        finally:
            self._release()
            self.done.set()
            self._put(None)

    def chunks(self) -> Iterator[bytes]:
        try:
            while (item := self._queue.get()) is not None:
                yield item
            self.raise_error()
        finally:
            self._abandoned.set()

    def abandon(self) -> None:
        self._abandoned.set()

    def raise_error(self) -> None:
        """Raise why the fetch failed, if it did (after ``done``)."""
        if isinstance(self.error, RegistryError):
            raise self.error
        if self.error is not None:
            raise RemoteUnavailable(f"the upstream transfer failed: {self.error}")


class MirrorBlobService(Service):
    def __init__(self, db, store, settings, *, mirrors: MirrorService,
                 uploads: UploadService):
        super().__init__(db, store, settings)
        self.mirrors = mirrors
        self.uploads = uploads

    # ---- the upstream ----------------------------------------------------------------
    def client(self, m: Mirror, *, attempts: int = 2) -> RegistryClient:
        username, password = self.mirrors.credentials(m.namespace)
        creds = (Credentials(username, password or "", source=f"mirror {m.namespace}")
                 if username else None)
        scheme, _, host = m.base_url.partition("://")
        return RegistryClient(Registry(host, scheme), credentials=creds, attempts=attempts,
                              backoff=0.2, timeout=60.0, policy=self.settings.caller_policy)

    def mirror(self, name: str) -> Mirror:
        m = self.mirrors.of(name)
        if m is None:
            raise NotFound(f"repository {name!r} is not in a mirror namespace")
        return m

    def promote(self, name: str) -> list[str]:
        """Store what waited for blobs that are now here (the manifest side's)."""
        raise NotImplementedError

    # ---- blobs -------------------------------------------------------------------------
    def blob_size(self, name: str, digest: str) -> int:
        """The size of a blob of ``name`` not stored yet: from a pending manifest's
        descriptor, else from a HEAD of the upstream. BlobUnknown if neither has it."""
        parse_digest(digest)
        size = self._declared(name, digest)
        if size is not None:
            return size
        m = self.mirror(name)
        with self.client(m) as c:
            try:
                size = c.blob_size(m.upstream_name(name), digest)
            except ClientError as exc:
                raise upstream_error(exc, m, f"{name}@{digest}") from None
        if size is None:
            raise BlobUnknown(f"blob {digest} is not in {name} nor in its upstream {m.url}")
        return size

    def _declared(self, name: str, digest: str) -> int | None:
        with self.db.read() as conn:
            rows = conn.execute(select(mirror_pending.c.content, mirror_pending.c.media_type)
                                .where(mirror_pending.c.repository_id == repo_id(conn, name))
                                ).all()
        for row in rows:
            if digest.encode() not in row.content:
                continue
            for d in parse_manifest(row.content, row.media_type).blobs:
                if d.digest == digest:
                    return d.size
        return None

    def linked_size(self, name: str, digest: str) -> int | None:
        """The size of blob ``digest`` if ``name`` may read it now."""
        with self.db.read() as conn:
            return conn.execute(
                select(blobs.c.size).join(repository_blobs,
                                          repository_blobs.c.digest == blobs.c.digest)
                .where(repository_blobs.c.repository_id == repo_id(conn, name),
                       blobs.c.digest == digest, blobs.c.quarantined_at.is_(None))).scalar()

    def _stored_size(self, digest: str) -> int | None:
        with self.db.read() as conn:
            return conn.execute(select(blobs.c.size).where(
                blobs.c.digest == digest, blobs.c.quarantined_at.is_(None))).scalar()

    def adopt(self, name: str, digest: str, upstream: int | None = None) -> int | None:
        """Link a blob stored for another repository into ``name`` once the upstream
        confirms it holds it with the same size (a HEAD, unless the upstream already
        said: ``upstream``); its size, or None (fetch it instead)."""
        size = self._stored_size(digest)
        if size is None:
            return None
        m = self.mirror(name)
        if upstream is None and m.kind != "hf":
            with self.client(m, attempts=1) as c:
                try:
                    upstream = c.blob_size(m.upstream_name(name), digest)
                except ClientError:
                    return None
        if upstream != size:
            return None
        with self.db.write() as conn:
            if not touch_blobs(conn, [digest]):
                return None
            quotas.check(conn, name, digest, size, lock=True)
            rid = ensure_repo(self.db, conn, name)
            conn.execute(self.db.insert_ignore(repository_blobs, repository_id=rid,
                                               digest=digest, created_at=utcnow()))
        self.promote(name)
        return size

    def _claim(self, key: str) -> str | None:
        """The fetch lease of ``key`` for this caller (its token), or None if another
        fetch holds a live one."""
        token, now = secrets.token_hex(8), utcnow()
        with self.db.write() as conn:
            # RETURNING, not rowcount: a driver may report -1 for an INSERT that did
            # nothing.
            if conn.execute(self.db.insert_ignore(
                    mirror_fetches, key=key, owner=token, lease_until=now + FETCH_LEASE)
                    .returning(mirror_fetches.c.key)).first() is not None:
                return token
            taken = conn.execute(update(mirror_fetches).where(
                mirror_fetches.c.key == key, mirror_fetches.c.lease_until < now)
                .values(owner=token, lease_until=now + FETCH_LEASE)
                .returning(mirror_fetches.c.key)).first()
        return token if taken is not None else None

    def _renew(self, key: str, token: str) -> None:
        with self.db.write() as conn:
            conn.execute(update(mirror_fetches).where(
                mirror_fetches.c.key == key, mirror_fetches.c.owner == token)
                .values(lease_until=utcnow() + FETCH_LEASE))

    def _unclaim(self, key: str, token: str) -> None:
        try:
            with self.db.write() as conn:
                conn.execute(delete(mirror_fetches).where(
                    mirror_fetches.c.key == key, mirror_fetches.c.owner == token))
        except Exception:  # noqa: BLE001 - the lease lapses by itself
            log.exception("mirror: releasing the fetch lease of %s failed", key)

    def fetching(self, digest: str) -> bool:
        """Whether some process holds a live fetch lease on blob ``digest``."""
        with self.db.read() as conn:
            until = conn.execute(select(mirror_fetches.c.lease_until).where(
                mirror_fetches.c.key == digest)).scalar()
        return until is not None and as_utc(until) > utcnow()

    def _open_v2(self, name: str, digest: str) -> Opened:
        """GET blob ``digest`` of ``name``'s upstream (redirects followed, each checked by
        the outbound policy): the streaming response and what closes it."""
        m = self.mirror(name)
        if m.kind == "hf":
            raise BlobUnknown(f"blob {digest} is not in {name} (an hf mirror fetches whole "
                              "revisions: pull a tag or branch first)")
        c = self.client(m)
        try:
            resp = c.send("GET", f"/v2/{m.upstream_name(name)}/blobs/{digest}", stream=True,
                          follow_redirects=True)
            if resp.status_code != 200:
                resp.read()
                resp.close()
                if resp.status_code == 404:
                    raise BlobUnknown(f"blob {digest} is not in the upstream {m.url}")
                raise RemoteUnavailable(f"the upstream {m.url} answered {resp.status_code} "
                                        f"for blob {digest}")
        except ClientError as exc:
            c.close()
            raise upstream_error(exc, m, f"{name}@{digest}") from None
        except BaseException:
            c.close()
            raise
        length = resp.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else self._declared(name, digest)

        def close() -> None:
            resp.close()
            c.close()
        return Opened(resp.iter_bytes(CHUNK), size, close)

    def start(self, name: str, digest: str, source: Source | None = None) -> Fetch | None:
        """Start fetching blob ``digest`` of ``name`` from the upstream (``source``, by
        default the upstream's ``/v2/`` blob), unless another fetch of it is live (None:
        wait for that one)."""
        parse_digest(digest)
        token = self._claim(digest)
        if token is None:
            return None
        try:
            opened = source.open() if source is not None else self._open_v2(name, digest)
        except BaseException:
            self._unclaim(digest, token)
            raise
        if opened.size is not None:
            try:  # refused before the answer starts, not by a cut-off stream
                cap = self.settings.max_upload_bytes
                if opened.size > cap:
                    raise UploadTooLarge(f"blob {digest} is {opened.size} bytes; the upload "
                                         f"limit is {cap} bytes", {"limit": cap})
                self.uploads.check_push(name, {digest: opened.size})
            except BaseException:
                opened.close()
                self._unclaim(digest, token)
                raise

        def chunks() -> Iterator[bytes]:
            try:
                yield from self.uploads.store_stream(
                    name, digest, opened.chunks, size=opened.size,
                    progress=lambda: self._renew(digest, token))
            finally:
                opened.close()
            self.promote(name)

        fetch = Fetch(chunks(), lambda: self._unclaim(digest, token))
        fetch.size = opened.size
        return fetch

    def step(self, name: str, digest: str, *, stream: bool = False,
             source: Source | None = None) -> int | Fetch | None:
        """One step of waiting for blob ``digest`` of ``name``: its size once readable;
        a ``Fetch`` this call started (with ``stream`` the caller reads its ``chunks``,
        else wait for its ``done`` and ask again); None while another process fetches
        it (ask again shortly). ``source``: where the bytes come from, if not the
        upstream's ``/v2/`` blob."""
        size = self.linked_size(name, digest)
        if size is not None:
            return size
        if self.fetching(digest):
            return None
        size = self.adopt(name, digest, None if source is None else source.size)
        if size is not None:
            return size
        fetch = self.start(name, digest, source)
        if fetch is not None and not stream:
            fetch.abandon()  # nobody streams it: it is fetched for the cache
        return fetch

    def wait_or_fetch(self, name: str, digest: str, wait_seconds: float,
                      source: Source | None = None) -> int:
        """Block until blob ``digest`` is readable from ``name`` (fetched here or by
        whoever is fetching it); its size. A failed fetch's error is raised."""
        deadline = time.monotonic() + wait_seconds
        while True:
            got = self.step(name, digest, source=source)
            if isinstance(got, int):
                return got
            if isinstance(got, Fetch):
                got.done.wait()
                got.raise_error()
                continue
            if time.monotonic() > deadline:
                raise RemoteUnavailable(f"blob {digest} is still being fetched; try again")
            time.sleep(0.25)
