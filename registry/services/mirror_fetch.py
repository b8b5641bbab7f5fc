"""Pull-through fetching for mirror namespaces (``MirrorFetchService``).

A pull of something a mirror namespace lacks is fetched from its upstream
(``registry.services.mirrors`` holds which); the rest of the registry then treats it like a
push: stored once, linked to the repository, counted against the namespace's quota, and
verified.

Manifests. A tag is looked up upstream (a HEAD of the manifest, not a download) when it
was never fetched or was last checked more than the mirror's ``refresh_seconds`` ago; an
unreachable upstream leaves the cached content served with a warning (``Served.warning``)
and a log line. A digest is immutable: never re-checked, never re-fetched. A manifest new to
the mirror is first kept in ``mirror_pending`` and served from there while its blobs are
fetched; once every blob it needs is stored it becomes an ordinary manifest (tag moved,
verification queued). A ``mirror_fill`` job fetches whatever blobs no client asked for,
so every mirrored model is verified even if its first pull stopped half-way.

Blobs. One process fetches a given blob at a time, whichever replica the pulls reach: it
holds a lease in ``mirror_fetches`` (renewed while bytes flow; a crashed fetcher's lease
lapses and the next pull takes over). The fetcher runs in a thread of its own: it writes the
bytes into an upload session and hands them to the client that started it as they arrive
(``Fetch.chunks``), holding back the last chunk until the digest is checked, so a client
never receives the whole of a blob that was refused. If that client leaves, the fetch goes
on for the cache. Every other pull of the blob waits until it is stored (``wait``) and is
then served from storage. An upstream that fails mid-transfer, or sends bytes that do not
match the digest, leaves nothing stored: the upload is discarded and the client's answer
is cut short.

A blob already stored for another repository is linked into a mirror repository only after
the upstream confirmed it holds that blob (a HEAD): naming a digest in an upstream
manifest is not enough to read another namespace's bytes.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from client.credentials import Credentials
from client.errors import ClientError, NotFoundError
from client.outbound import OutboundDenied
from client.ref import Registry
from client.registry_client import RegistryClient
from registry.db.queue import JobKind, JobQueue
from registry.db.tables import (
    as_utc,
    blobs,
    manifests,
    mirror_fetches,
    mirror_pending,
    mirror_tags,
    repository_blobs,
    utcnow,
)
from registry.digests import is_digest, parse_digest
from registry.errors import (
    BlobUnknown,
    ManifestBlobUnknown,
    ManifestUnknown,
    ModelNotReady,
    NotFound,
    RegistryError,
    RemoteUnavailable,
)
from registry.manifests import parse_manifest
from registry.services import quotas
from registry.services.common import Service, ensure_repo, repo_id, touch_blobs
from registry.services.manifests import ManifestService, StoredManifest
from registry.services.mirrors import Mirror, MirrorService
from registry.services.uploads import UploadService

log = logging.getLogger("assay.mirror")

FETCH_LEASE = timedelta(seconds=60)
# A first pull that did not fetch every blob: the rest is fetched this long after (a
# client pulling the model right now fetches them itself, streamed to it).
FILL_DELAY = timedelta(seconds=30)
QUEUE_CHUNKS = 8  # chunks a fetch may run ahead of its client (memory: 8 x 1 MiB)
CHUNK = 1 << 20
UNREACHABLE = "the upstream could not be reached; serving the cached copy"


@dataclass(frozen=True)
class Served:
    """A manifest to answer with, and the warning to attach (an unreachable upstream)."""

    manifest: StoredManifest
    warning: str | None = None


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


class MirrorFetchService(Service):
    def __init__(self, db, store, settings, *, mirrors: MirrorService,
                 manifests: ManifestService, uploads: UploadService, queue: JobQueue):
        super().__init__(db, store, settings)
        self.mirrors = mirrors
        self.manifests = manifests
        self.uploads = uploads
        self.queue = queue

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

    # ---- manifests -------------------------------------------------------------------
    def manifest(self, name: str, reference: str, base_url: str = "") -> Served:
        """What a pull of ``name:reference`` gets from mirror namespace ``name`` is in."""
        m = self.mirror(name)
        if is_digest(reference):
            parse_digest(reference)
            return Served(self._by_digest(m, name, reference))
        return self._by_tag(m, name, reference, base_url)

    def _by_digest(self, m: Mirror, name: str, digest: str) -> StoredManifest:
        try:
            return self.manifests.get(name, digest)
        except NotFound:
            pass
        pending = self._pending(name, digest)
        if pending is not None:
            return pending
        with self.client(m) as c:
            try:
                got = c.get_manifest(m.upstream_name(name), digest)
            except ClientError as exc:
                raise upstream_error(exc, m, f"{name}@{digest}") from None
        return self._keep(m, name, None, got.content, got.media_type, got.digest)

    def _by_tag(self, m: Mirror, name: str, tag: str, base_url: str) -> Served:
        state = self._tag_state(name, tag)
        now = utcnow()
        warning = None
        age = None if state is None else (now - as_utc(state.checked_at)).total_seconds()
        if age is not None and age < m.refresh_seconds:
            digest = state.digest
            self._pulled(name, tag, state, now)
        else:
            try:
                digest = self._refresh(m, name, tag)
            except RemoteUnavailable as exc:
                if state is None:
                    raise
                log.warning("mirror %s: %s: %s; serving %s:%s as cached (%s)", m.namespace,
                            m.url, exc.message, name, tag, state.digest)
                warning, digest = UNREACHABLE, state.digest
        if m.verify_first:
            try:
                return Served(self.manifests.get(name, tag, base_url), warning)
            except ModelNotReady:
                raise
            except NotFound:
                raise ModelNotReady(
                    f"model {name}:{tag} ({digest}) is being fetched from the upstream "
                    f"{m.url}: it is served once it passes verification", {
                        "status": "queued", "digest": digest}) from None
        try:
            return Served(self.manifests.get(name, digest), warning)
        except NotFound:
            pending = self._pending(name, digest)
            if pending is not None:
                return Served(pending, warning)
        return Served(self.manifests.get(name, tag, base_url), warning)

    def _refresh(self, m: Mirror, name: str, tag: str) -> str:
        """Ask the upstream what ``tag`` is now; fetch the manifest if it is new here.
        Returns its digest; RemoteUnavailable/ManifestUnknown from the upstream."""
        upstream = m.upstream_name(name)
        with self.client(m) as c:
            try:
                digest = c.manifest_digest(upstream, tag)
                known = digest is not None and self._known(name, digest)
                if not known:
                    got = c.get_manifest(upstream, digest or tag)
                    digest = got.digest
                    self._keep(m, name, tag, got.content, got.media_type, digest)
            except ClientError as exc:
                raise upstream_error(exc, m, f"{name}:{tag}") from None
        if known:
            self._retag(name, tag, digest)
        self._checked(name, tag, digest)
        return digest

    def _known(self, name: str, digest: str) -> bool:
        with self.db.read() as conn:
            rid = repo_id(conn, name)
            if rid is None:
                return False
            stored = conn.execute(select(manifests.c.id).where(
                manifests.c.repository_id == rid, manifests.c.digest == digest)).first()
            pending = conn.execute(select(mirror_pending.c.digest).where(
                mirror_pending.c.repository_id == rid, mirror_pending.c.digest == digest)
            ).first()
        return stored is not None or pending is not None

    def _retag(self, name: str, tag: str, digest: str) -> None:
        """Point ``tag`` at stored manifest ``digest`` (or its pending copy) again."""
        with self.db.write() as conn:
            rid = repo_id(conn, name)
            row = conn.execute(select(manifests.c.content, manifests.c.media_type).where(
                manifests.c.repository_id == rid, manifests.c.digest == digest)).first()
            if row is None:
                conn.execute(update(mirror_pending).where(
                    mirror_pending.c.repository_id == rid, mirror_pending.c.digest == digest
                ).values(tag=tag))
                return
        self.manifests.put(name, tag, row.content, row.media_type)

    def _keep(self, m: Mirror, name: str, tag: str | None, content: bytes,
              media_type: str, digest: str) -> StoredManifest:
        """Keep a manifest fetched from the upstream: stored at once if every blob it
        needs is here, else pending (served meanwhile) with a job to fetch the rest."""
        parsed = parse_manifest(content, media_type)  # refuses what is not a manifest
        now = utcnow()
        with self.db.write() as conn:
            rid = ensure_repo(self.db, conn, name)
            conn.execute(self.db.upsert(
                mirror_pending, ["repository_id", "digest"], {"tag": tag},
                repository_id=rid, digest=digest, tag=tag, media_type=parsed.media_type,
                content=content, fetched_at=now))
            delay = timedelta(0) if m.verify_first else FILL_DELAY
            self.queue.enqueue(conn, JobKind.MIRROR_FILL, {"repository": name, "digest": digest},
                               dedupe_key=f"{JobKind.MIRROR_FILL}:{name}:{digest}",
                               run_after=now + delay)
        self.promote(name)
        return StoredManifest(digest, parsed.media_type, content)

    def _pending(self, name: str, digest: str) -> StoredManifest | None:
        with self.db.read() as conn:
            row = conn.execute(select(mirror_pending.c.content, mirror_pending.c.media_type)
                               .where(mirror_pending.c.repository_id == repo_id(conn, name),
                                      mirror_pending.c.digest == digest)).first()
        return None if row is None else StoredManifest(digest, row.media_type, row.content)

    def promote(self, name: str) -> list[str]:
        """Store each pending manifest of ``name`` whose blobs and children are all here
        (tag moved, verification queued); returns their digests."""
        with self.db.read() as conn:
            rid = repo_id(conn, name)
            rows = conn.execute(select(mirror_pending).where(
                mirror_pending.c.repository_id == rid)
                .order_by(mirror_pending.c.fetched_at)).all() if rid else []
        done = []
        for row in rows:
            try:
                self.manifests.put(name, row.tag or row.digest, row.content, row.media_type)
            except ManifestBlobUnknown:
                continue
            with self.db.write() as conn:
                conn.execute(delete(mirror_pending).where(
                    mirror_pending.c.repository_id == rid,
                    mirror_pending.c.digest == row.digest))
            done.append(row.digest)
            log.info("mirror: stored %s@%s from the upstream", name, row.digest)
        return done

    # ---- tag freshness -----------------------------------------------------------------
    def _tag_state(self, name: str, tag: str):
        with self.db.read() as conn:
            return conn.execute(select(mirror_tags).where(
                mirror_tags.c.repository_id == repo_id(conn, name),
                mirror_tags.c.tag == tag)).first()

    def _checked(self, name: str, tag: str, digest: str) -> None:
        now = utcnow()
        with self.db.write() as conn:
            rid = ensure_repo(self.db, conn, name)
            conn.execute(self.db.upsert(
                mirror_tags, ["repository_id", "tag"],
                {"digest": digest, "checked_at": now, "pulled_at": now},
                repository_id=rid, tag=tag, digest=digest, checked_at=now, pulled_at=now))

    def _pulled(self, name: str, tag: str, state, now: datetime) -> None:
        # At most one write an hour per tag: retention needs the day, not the second.
        if (now - as_utc(state.pulled_at)).total_seconds() < 3600:
            return
        with self.db.write() as conn:
            conn.execute(update(mirror_tags).where(
                mirror_tags.c.repository_id == state.repository_id,
                mirror_tags.c.tag == tag).values(pulled_at=now))

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

    def adopt(self, name: str, digest: str) -> int | None:
        """Link a blob stored for another repository into ``name`` once the upstream
        confirms it holds it (same size); its size, or None (fetch it instead)."""
        size = self._stored_size(digest)
        if size is None:
            return None
        m = self.mirror(name)
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

    def start(self, name: str, digest: str) -> Fetch | None:
        """Start fetching blob ``digest`` of ``name`` from the upstream, unless another
        fetch of it is live (None: wait for that one)."""
        parse_digest(digest)
        m = self.mirror(name)
        token = self._claim(digest)
        if token is None:
            return None
        try:
            c = self.client(m)
            try:
                resp = c.send("GET", f"/v2/{m.upstream_name(name)}/blobs/{digest}",
                              stream=True, follow_redirects=True)
                if resp.status_code != 200:
                    resp.read()
                    resp.close()
                    if resp.status_code == 404:
                        raise BlobUnknown(f"blob {digest} is not in the upstream {m.url}")
                    raise RemoteUnavailable(f"the upstream {m.url} answered "
                                            f"{resp.status_code} for blob {digest}")
            except ClientError as exc:
                c.close()
                raise upstream_error(exc, m, f"{name}@{digest}") from None
            except BaseException:
                c.close()
                raise
        except BaseException:
            self._unclaim(digest, token)
            raise
        length = resp.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else self._declared(name, digest)

        def source() -> Iterator[bytes]:
            try:
                yield from self.uploads.store_stream(
                    name, digest, resp.iter_bytes(CHUNK), size=size,
                    progress=lambda: self._renew(digest, token))
            finally:
                resp.close()
                c.close()
            self.promote(name)

        fetch = Fetch(source(), lambda: self._unclaim(digest, token))
        fetch.size = size
        return fetch

    def fill(self, name: str, digest: str, wait_seconds: float = 3600.0) -> list[str]:
        """Fetch every blob pending manifest ``digest`` of ``name`` still needs, then store
        it. Returns what was stored (nothing if the manifest is no longer pending)."""
        pending = self._pending(name, digest)
        if pending is None:
            return []
        parsed = parse_manifest(pending.content, pending.media_type)
        for d in sorted({b.digest for b in parsed.blobs if not b.foreign}):
            self.wait_or_fetch(name, d, wait_seconds)
        return self.promote(name)

    def step(self, name: str, digest: str, *, stream: bool = False) -> int | Fetch | None:
        """One step of waiting for blob ``digest`` of ``name``: its size once readable;
        a ``Fetch`` this call started (with ``stream`` the caller reads its ``chunks``,
        else wait for its ``done`` and ask again); None while another process fetches
        it (ask again shortly)."""
        size = self.linked_size(name, digest)
        if size is not None:
            return size
        if self.fetching(digest):
            return None
        size = self.adopt(name, digest)
        if size is not None:
            return size
        fetch = self.start(name, digest)
        if fetch is not None and not stream:
            fetch.abandon()  # nobody streams it: it is fetched for the cache
        return fetch

    def wait_or_fetch(self, name: str, digest: str, wait_seconds: float) -> int:
        """Block until blob ``digest`` is readable from ``name`` (fetched here or by
        whoever is fetching it); its size. A failed fetch's error is raised."""
        deadline = time.monotonic() + wait_seconds
        while True:
            got = self.step(name, digest)
            if isinstance(got, int):
                return got
            if isinstance(got, Fetch):
                got.done.wait()
                got.raise_error()
                continue
            if time.monotonic() > deadline:
                raise RemoteUnavailable(f"blob {digest} is still being fetched; try again")
            time.sleep(0.25)
