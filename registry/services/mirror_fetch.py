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

Blobs: ``registry.services.mirror_blobs`` (the base class).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from client.errors import ClientError
from registry.db.queue import JobKind, JobQueue
from registry.db.tables import (
    as_utc,
    manifests,
    mirror_pending,
    mirror_tags,
    tags,
    utcnow,
)
from registry.digests import check_tag, is_digest, parse_digest
from registry.errors import (
    ManifestBlobUnknown,
    ManifestUnknown,
    ModelNotReady,
    NotFound,
    RegistryError,
    RemoteUnavailable,
    TagInvalid,
)
from registry.manifests import parse_manifest
from registry.services.common import ensure_repo, repo_id
from registry.services.hub import COMMIT
from registry.services.manifests import ManifestService, StoredManifest
from registry.services.mirror_blobs import MirrorBlobService, upstream_error
from registry.services.mirror_hub import HubUpstream
from registry.services.mirrors import Mirror, MirrorService
from registry.services.uploads import UploadService

log = logging.getLogger("assay.mirror")

# A first pull that did not fetch every blob: the rest is fetched this long after (a
# client pulling the model right now fetches them itself, streamed to it).
FILL_DELAY = timedelta(seconds=30)
UNREACHABLE = "the upstream could not be reached; serving the cached copy"


SMALL_CONFIG = 4 << 20


def _small_config(content: bytes) -> str | None:
    """The digest of a manifest's config blob, if it has one of at most SMALL_CONFIG."""
    try:
        config = json.loads(content).get("config")
        digest, size = config["digest"], config["size"]
    except (ValueError, AttributeError, KeyError, TypeError):
        return None
    if isinstance(digest, str) and isinstance(size, int) and 0 <= size <= SMALL_CONFIG:
        return digest
    return None


@dataclass(frozen=True)
class Served:
    """A manifest to answer with, and the warning to attach (an unreachable upstream)."""

    manifest: StoredManifest
    warning: str | None = None


class MirrorFetchService(MirrorBlobService):
    def __init__(self, db, store, settings, *, mirrors: MirrorService,
                 manifests: ManifestService, uploads: UploadService, queue: JobQueue):
        super().__init__(db, store, settings, mirrors=mirrors, uploads=uploads)
        self.manifests = manifests
        self.queue = queue
        self.hub = HubUpstream(self)  # kind hf: whole revisions from a Hub's API

    # ---- manifests -------------------------------------------------------------------
    def manifest(self, name: str, reference: str, base_url: str = "") -> Served:
        """What a pull of ``name:reference`` gets from mirror namespace ``name`` is in."""
        m = self.mirror(name)
        if is_digest(reference):
            parse_digest(reference)
            if m.kind == "hf":
                return Served(self.manifests.get(name, reference))
            return Served(self._by_digest(m, name, reference))
        if m.kind == "hf":
            self.hub.ensure(m, name, reference)
            return Served(self.manifests.get(name, reference, base_url))
        return self._by_tag(m, name, reference, base_url)

    def ensure(self, name: str, revision: str) -> None:
        """Make ``revision`` of mirror repository ``name`` servable from storage, blobs
        and all, for readers that cannot wait on a blob (the Hub API serves files from
        storage): a tag or branch is fetched (``main`` means tag ``main``, else
        ``latest``, as on the Hub API) and its blobs fetched before returning. A commit
        id or digest is not fetched. ModelNotReady while a verify-first mirror holds it."""
        m = self.mirror(name)
        if COMMIT.fullmatch(revision) or is_digest(revision):
            return  # a commit: immutable, served as stored (or not found)
        try:
            check_tag(revision)
        except TagInvalid:
            return
        if m.kind == "hf":
            self.hub.ensure(m, name, revision)
            return
        for tag in [revision, "latest"] if revision == "main" else [revision]:
            try:
                served = self.manifest(name, tag)
            except ModelNotReady:
                raise
            except ManifestUnknown:
                continue
            self.fill(name, served.manifest.digest)
            return

    def fresh(self, m: Mirror, state) -> bool:
        """Whether a mirrored tag's last check (its ``mirror_tags`` row) is recent enough."""
        return (utcnow() - as_utc(state.checked_at)).total_seconds() < m.refresh_seconds

    def _known_tag(self, name: str, tag: str) -> bool:
        with self.db.read() as conn:
            return conn.execute(select(tags.c.name).where(
                tags.c.repository_id == repo_id(conn, name), tags.c.name == tag)
            ).first() is not None

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
        # A fresh check counts only while its manifest is still here (a delete or
        # retention may have evicted it): else the upstream is asked again.
        if state is not None and self.fresh(m, state) and self._known(name, state.digest):
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
        if len(content) > self.settings.max_manifest_bytes:
            raise RemoteUnavailable(f"the upstream {m.url} sent a manifest of {len(content)} "
                                    f"bytes for {name}; the limit is "
                                    f"{self.settings.max_manifest_bytes}")
        try:
            parsed = parse_manifest(content, media_type)
        except RegistryError as exc:  # the upstream's fault, not the client's request
            raise RemoteUnavailable(f"the upstream {m.url} sent an invalid manifest for "
                                    f"{name}: {exc.message}") from None
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
        config = _small_config(content)
        if config is not None:
            # Fetched with the manifest: clients that read only the layers (assay pull,
            # a Hub client) would otherwise leave the manifest pending until the fill job.
            try:
                self.wait_or_fetch(name, config, 60.0)
            except RegistryError as exc:
                log.warning("mirror %s: fetching the config of %s@%s: %s", m.namespace, name,
                            digest, exc.message)
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

