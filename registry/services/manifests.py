"""Manifests: store byte for byte, resolve by tag or digest, delete, list referrers."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, select

from registry.db import Database
from registry.db.queue import JobQueue
from registry.db.tables import (
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    tag_history,
    tags,
    utcnow,
)
from registry.digests import check_tag, digest_bytes, is_digest, parse_digest
from registry.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestTooLarge,
    ManifestUnknown,
    ModelNotReady,
    NameUnknown,
)
from registry.formats.classify import classify
from registry.manifests import OCI_INDEX, ParsedManifest, parse_manifest
from registry.services import audit, class_jobs
from registry.services.common import Service, ensure_repo, repo_id, require_repo, touch_blobs
from registry.services.events import EventService
from registry.services.mirrors import MirrorService
from registry.services.models import ModelService
from registry.services.policies import PolicyService
from registry.services.profiles import ProfileService
from registry.settings import Settings
from registry.storage import BlobStore


@dataclass(slots=True)
class StoredManifest:
    digest: str
    media_type: str
    content: bytes


@dataclass
class PutResult:
    digest: str
    subject: str | None


_COLS = (manifests.c.digest, manifests.c.media_type, manifests.c.content,
         manifests.c.status, manifests.c.override_at, manifests.c.status_reason)
# What the gate may serve from a tag's history (its fallback): a manifest the tag pointed
# at that is ready or let through by an admin override; the newest (first in this order).
_FALLBACK = (manifests.c.status == "ready") | manifests.c.override_at.is_not(None)
_NEWEST_FIRST = (tag_history.c.pushed_at.desc(), manifests.c.id.desc())
_NEWEST_SERVABLE = (
    select(*_COLS)
    .select_from(tag_history.join(manifests, manifests.c.id == tag_history.c.manifest_id)
                 .join(repositories, repositories.c.id == tag_history.c.repository_id))
    .where(repositories.c.name == bindparam("name"), tag_history.c.tag == bindparam("ref"),
           _FALLBACK)
    .order_by(*_NEWEST_FIRST).limit(1))
_BY_TAG = (select(*_COLS)
           .select_from(tags.join(manifests, manifests.c.id == tags.c.manifest_id)
                        .join(repositories, repositories.c.id == tags.c.repository_id))
           .where(repositories.c.name == bindparam("name"), tags.c.name == bindparam("ref")))
_BY_DIGEST = (select(*_COLS)
              .select_from(manifests.join(repositories,
                                          repositories.c.id == manifests.c.repository_id))
              .where(repositories.c.name == bindparam("name"),
                     manifests.c.digest == bindparam("ref")))


def servable(status: str | None, override_at: datetime | None) -> bool:
    """Whether the gate serves a tag's own manifest: verified ready, a failure an admin
    overrode, or not a model (never verified)."""
    return status is None or status == "ready" or override_at is not None


def gate_fallbacks(conn: Connection, rid: int, tag_names: Collection[str]) -> dict[str, int]:
    """For each of ``tag_names`` in repository ``rid`` that has one, the id of the
    manifest the gate serves for the tag while the tag's own manifest may not be served
    (failed, queued or verifying): the newest servable one in the tag's history, as
    ``ManifestService.get`` picks it."""
    out: dict[str, int] = {}
    if not tag_names:
        return out
    for tag, mid in conn.execute(
            select(tag_history.c.tag, tag_history.c.manifest_id)
            .join(manifests, manifests.c.id == tag_history.c.manifest_id)
            .where(tag_history.c.repository_id == rid,
                   tag_history.c.tag.in_(sorted(tag_names)), _FALLBACK)
            .order_by(tag_history.c.tag, *_NEWEST_FIRST)):
        out.setdefault(tag, mid)
    return out


class ManifestService(Service):
    def __init__(self, db: Database, store: BlobStore, settings: Settings, *,
                 models: ModelService, queue: JobQueue, policies: PolicyService,
                 events: EventService, mirrors: MirrorService, profiles: ProfileService):
        super().__init__(db, store, settings)
        self.models = models
        self.queue = queue  # model PUTs enqueue their verification in the same transaction
        self.policies = policies  # the readiness gate, per namespace
        self.events = events  # webhooks: in the outbox with the change itself
        self.mirrors = mirrors  # a mirror that serves first and verifies after is ungated
        self.profiles = profiles  # the hardware classes a pushed model is verified on

    def gated(self, name: str) -> bool:
        return self.policies.gated(name) and not self.mirrors.serves_unverified(name)

    def get(self, name: str, reference: str, base_url: str = "") -> StoredManifest:
        """The manifest ``reference`` (tag or digest) of repository ``name``.

        By tag, the readiness gate applies to models: the tag's manifest if it is ready
        (or overridden, or not a model), else the newest ready manifest the tag pointed
        at, else ModelNotReady naming the state and ``base_url``'s REST page for it.
        By digest there is no gate (workers, referrers and ``inspect`` read by digest).
        One indexed query on the hot path; errors and gated tags cost more.
        """
        by_digest = is_digest(reference)
        if by_digest:
            parse_digest(reference)
        with self.db.read() as conn:
            row = conn.execute(_BY_DIGEST if by_digest else _BY_TAG,
                               {"name": name, "ref": reference}).first()
            if row is None:
                if repo_id(conn, name) is None:
                    raise NameUnknown(f"repository {name!r} is not known to this registry")
                raise ManifestUnknown(f"manifest {reference!r} is not in repository {name!r}",
                                      {"reference": reference})
            if not by_digest and not servable(row.status, row.override_at) and self.gated(name):
                older = conn.execute(_NEWEST_SERVABLE, {"name": name, "ref": reference}
                                     ).first()
                if older is None:
                    raise self._not_ready(name, reference, row, base_url)
                row = older
        return StoredManifest(row[0], row[1], row[2])

    @staticmethod
    def _not_ready(name: str, tag: str, row, base_url: str) -> ModelNotReady:
        url = f"{base_url.rstrip('/')}/api/v1/repositories/{name}/tags/{tag}"
        if row.status == "failed":
            why = f"failed verification ({row.status_reason})" if row.status_reason \
                else "failed verification"
            text = f"model {name}:{tag} ({row.digest}) {why}; it is not served. See {url}"
        else:
            text = (f"model {name}:{tag} ({row.digest}) is {row.status}: it is served once "
                    f"it passes verification. See {url}")
        return ModelNotReady(text, {"status": row.status, "digest": row.digest, "url": url})

    def put(self, name: str, reference: str, content: bytes,
            content_type: str | None, *, own: bool = False,
            guard: Callable[[Connection, int], None] | None = None) -> PutResult:
        """Store a manifest exactly as pushed and point tag ``reference`` at it.

        Every blob it refers to must be readable from ``name`` and every child manifest
        stored in ``name`` (else MANIFEST_BLOB_UNKNOWN); the subject need not exist.
        A new model manifest gets its model card once stored (never failing the push).

        Events: ``push`` when the manifest is new to the repository, unless ``own`` (an
        artifact the registry writes itself, such as a verification referrer, which its
        own ``verification.*`` event announces); ``tag`` when tag ``reference`` now
        points at it and did not before, with the digest it pointed at (``previous``,
        None for a new tag).

        ``guard(conn, repository_id)`` runs inside the storing transaction, under the
        write lock, before the tag moves: raising aborts the put with nothing stored (a
        Hub commit checks there that its branch has not moved since it read the head).
        """
        if len(content) > self.settings.max_manifest_bytes:
            raise ManifestTooLarge(
                f"manifest is {len(content)} bytes; the limit is "
                f"{self.settings.max_manifest_bytes}")
        tag = None
        if is_digest(reference):
            algorithm, _ = parse_digest(reference)
            digest = digest_bytes(content, algorithm)
            if digest != reference:
                raise DigestInvalid(f"manifest has digest {digest}, not {reference}",
                                    {"expected": reference, "actual": digest})
        else:
            tag = check_tag(reference)
            digest = digest_bytes(content)
        parsed = parse_manifest(content, content_type)
        now = utcnow()
        with self.db.write() as conn:
            rid, mid, created = self._store(conn, name, digest, content, parsed, now)
            if guard is not None:
                guard(conn, rid)
            moved, previous = (self._tag(conn, rid, tag, mid, now) if tag is not None
                               else (False, None))
            if created or tag is not None:
                audit.record(conn, "push", f"{name}:{tag}" if tag else f"{name}@{digest}",
                             digest=digest, media_type=parsed.media_type, new=created)
            # Webhooks: in the outbox with the change itself.
            target = {"mediaType": parsed.media_type, "digest": digest,
                      "size": len(content), "tag": tag}
            if created and not own:
                self.events.emit(conn, "push", name, target)
            if moved:
                self.events.emit(conn, "tag", name, {**target, "previous": previous})
        if created:
            # After the commit: reading weight headers from storage must not hold the
            # write lock, and must never fail the push.
            self.models.record(mid, digest, parsed)
        return PutResult(digest, parsed.subject)

    def _store(self, conn: Connection, name: str, digest: str, content: bytes,
               parsed: ParsedManifest, now: datetime) -> tuple[int, int, bool]:
        """The ids of repository ``name`` (created if need be) and of the manifest's row,
        and whether that row was created now (with its references and, for a model, its
        verification job)."""
        blob_refs = sorted({d.digest for d in parsed.blobs if not d.foreign})
        child_refs = sorted({d.digest for d in parsed.manifests})
        rid = ensure_repo(self.db, conn, name)
        # Lock the blob rows first: GC either deleted a blob already (it is not
        # alive) or cannot delete it until we commit, and then sees it referenced.
        alive = touch_blobs(conn, blob_refs)
        missing = self._missing(conn, rid, blob_refs, child_refs)
        missing += [d for d in blob_refs if d not in alive and d not in missing]
        if missing:
            raise ManifestBlobUnknown(
                f"manifest refers to {len(missing)} blob(s) or manifest(s) not in "
                f"repository {name!r}: {', '.join(missing[:5])}", {"missing": missing})
        mid = conn.execute(select(manifests.c.id).where(
            manifests.c.repository_id == rid, manifests.c.digest == digest)).scalar()
        if mid is not None:
            return rid, mid, False
        # A model is queued for verification in this same transaction: no model is ever
        # stored without the job that will run it.
        is_model = classify(parsed) is not None
        mid = conn.execute(manifests.insert().values(
            repository_id=rid, digest=digest, media_type=parsed.media_type,
            artifact_type=parsed.artifact_type, subject_digest=parsed.subject,
            annotations=json.dumps(parsed.annotations) if parsed.annotations else None,
            content=content, size=len(content), created_at=now,
            status="queued" if is_model else None,
            status_changed_at=now if is_model else None,
        ).returning(manifests.c.id)).scalar_one()
        if is_model:
            classes = self.profiles.applies(name, conn).profile.classes
            class_jobs.enqueue(self.queue, conn, mid, digest, classes)
        refs = [{"manifest_id": mid, "digest": d, "kind": "blob"} for d in blob_refs]
        refs += [{"manifest_id": mid, "digest": d, "kind": "manifest"}
                 for d in child_refs if d not in blob_refs]
        if refs:
            conn.execute(manifest_references.insert(), refs)
        return rid, mid, True

    def _tag(self, conn: Connection, rid: int, tag: str, mid: int,
             now: datetime) -> tuple[bool, str | None]:
        """Point ``tag`` of repository ``rid`` at manifest ``mid`` and record it in the
        tag's history. Returns whether the tag pointed elsewhere (or nowhere) before, and
        the digest it pointed at (None for a new tag)."""
        before = conn.execute(select(tags.c.manifest_id, manifests.c.digest)
                              .join(manifests, manifests.c.id == tags.c.manifest_id)
                              .where(tags.c.repository_id == rid, tags.c.name == tag)).first()
        conn.execute(self.db.upsert(
            tags, ["repository_id", "name"], {"manifest_id": mid, "updated_at": now},
            repository_id=rid, name=tag, manifest_id=mid, updated_at=now))
        conn.execute(self.db.upsert(
            tag_history, ["repository_id", "tag", "manifest_id"], {"pushed_at": now},
            repository_id=rid, tag=tag, manifest_id=mid, pushed_at=now))
        if before is None:
            return True, None
        return before.manifest_id != mid, before.digest

    @staticmethod
    def _missing(conn, rid: int, blob_refs: list[str], child_refs: list[str]) -> list[str]:
        have: set[str] = set()
        if blob_refs:
            have |= set(conn.execute(select(repository_blobs.c.digest).where(
                repository_blobs.c.repository_id == rid,
                repository_blobs.c.digest.in_(blob_refs))).scalars())
        if child_refs:
            have |= set(conn.execute(select(manifests.c.digest).where(
                manifests.c.repository_id == rid, manifests.c.digest.in_(child_refs))).scalars())
        return [d for d in blob_refs + child_refs if d not in have]

    def delete(self, name: str, reference: str, *,
               guard: Callable[[Connection, int], None] | None = None) -> None:
        """Delete a manifest by digest (with its tags), or only a tag by tag name.

        ``guard(conn, repository_id)`` runs first inside the deleting transaction, under
        the write lock: raising aborts the delete with nothing changed (retention uses it
        to re-check that nothing was pushed or tagged since it made its list).
        """
        with self.db.write() as conn:
            rid = require_repo(conn, name)
            if guard is not None:
                guard(conn, rid)
            self._delete(conn, rid, name, reference)

    def delete_repository(self, name: str) -> list[dict]:
        """Delete repository ``name``: each of its manifests as ``delete(name, digest)``
        would (its tags with it; one audit entry and one ``delete`` event each), then the
        repository itself (its blob links and upload sessions), in one transaction.
        Returns what went, newest first: ``[{"digest", "tags"}]``. Its blobs are freed
        by GC like any others no manifest refers to.
        """
        with self.db.write() as conn:
            rid = require_repo(conn, name)
            # Locked until the end: a push into the repository commits before (and its
            # manifest is listed here) or waits and then fails, its repository gone; none
            # is swept away by the cascade without its audit entry and event.
            conn.execute(select(repositories.c.id).where(repositories.c.id == rid)
                         .with_for_update())
            rows = conn.execute(select(manifests.c.id, manifests.c.digest)
                                .where(manifests.c.repository_id == rid)
                                .order_by(manifests.c.created_at.desc(),
                                          manifests.c.id.desc())).all()
            tagged: dict[int, list[str]] = {}
            for mid, tag in conn.execute(select(tags.c.manifest_id, tags.c.name)
                                         .where(tags.c.repository_id == rid)
                                         .order_by(tags.c.name)):
                tagged.setdefault(mid, []).append(tag)
            for row in rows:
                self._delete(conn, rid, name, row.digest)
            conn.execute(delete(repositories).where(repositories.c.id == rid))
        return [{"digest": row.digest, "tags": tagged.get(row.id, [])} for row in rows]

    def _delete(self, conn: Connection, rid: int, name: str, reference: str) -> None:
        """Delete in ``conn``: a manifest by digest (with its tags) or a tag by name; its
        audit entry and its ``delete`` event in the same transaction."""
        deleted = self._event_target(conn, rid, reference)
        if is_digest(reference):
            parse_digest(reference)
            # Its tags go with it (cascade); so does their history, as when a tag is
            # deleted by name: a later push to the tag starts afresh.
            tagged = select(tags.c.name).join(manifests, manifests.c.id == tags.c.manifest_id
                                              ).where(manifests.c.repository_id == rid,
                                                      manifests.c.digest == reference)
            conn.execute(delete(tag_history).where(tag_history.c.repository_id == rid,
                                                   tag_history.c.tag.in_(tagged)))
            gone = conn.execute(delete(manifests).where(
                manifests.c.repository_id == rid, manifests.c.digest == reference))
        else:
            gone = conn.execute(delete(tags).where(
                tags.c.repository_id == rid, tags.c.name == check_tag(reference)))
            conn.execute(delete(tag_history).where(
                tag_history.c.repository_id == rid, tag_history.c.tag == reference))
        if gone.rowcount == 0:
            raise ManifestUnknown(f"manifest {reference!r} is not in repository {name!r}",
                                  {"reference": reference})
        audit.record(conn, "delete", f"{name}@{reference}" if is_digest(reference)
                     else f"{name}:{reference}")
        if deleted is not None:
            self.events.emit(conn, "delete", name, deleted)

    @staticmethod
    def _event_target(conn, rid: int, reference: str) -> dict | None:
        """The manifest a digest or tag of repository ``rid`` names, as a webhook target."""
        cols = (manifests.c.media_type, manifests.c.digest, manifests.c.size)
        if is_digest(reference):
            tag = None
            row = conn.execute(select(*cols).where(manifests.c.repository_id == rid,
                                                   manifests.c.digest == reference)).first()
        else:
            tag = reference
            row = conn.execute(select(*cols).select_from(
                manifests.join(tags, tags.c.manifest_id == manifests.c.id))
                .where(tags.c.repository_id == rid, tags.c.name == reference)).first()
        if row is None:
            return None
        return {"mediaType": row.media_type, "digest": row.digest, "size": row.size, "tag": tag}

    def referrers(self, name: str, digest: str, artifact_type: str | None) -> dict:
        """The OCI image index of manifests in ``name`` whose subject is ``digest``."""
        parse_digest(digest)
        q = (select(manifests.c.digest, manifests.c.media_type, manifests.c.size,
                    manifests.c.artifact_type, manifests.c.annotations)
             .join(repositories, repositories.c.id == manifests.c.repository_id)
             .where(repositories.c.name == name, manifests.c.subject_digest == digest)
             .order_by(manifests.c.created_at, manifests.c.id))
        if artifact_type:
            q = q.where(manifests.c.artifact_type == artifact_type)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        descriptors = []
        for r in rows:
            d = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
            if r.artifact_type:
                d["artifactType"] = r.artifact_type
            if r.annotations:
                d["annotations"] = json.loads(r.annotations)
            descriptors.append(d)
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
