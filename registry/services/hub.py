"""The Hugging Face Hub's view of the store: commits, revisions and the files of a manifest.

Commits. A manifest is a commit; its **commit id** is the first 40 hex digits of its
sha256 digest (``commit_id``). A commit id resolves to the manifest of the repository
whose digest starts with it; a full ``sha256:<64 hex>`` digest (or the 64 hex alone) is
accepted too. A commit is never gated, as a digest is not on ``/v2/``.

Branches. A branch is an OCI tag. By branch the readiness gate applies exactly as to a
pull by tag (``ManifestService.get``): the tag's manifest once ready, else the newest
ready one the tag pointed at, else ModelNotReady whose message says verifying or failed.
``main`` is the tag ``main`` when there is one, else ``latest``. A branch's history
(``commits``) is the tag's history, newest first. ``resolve(..., gate=False)`` reads the
tags table as it stands (the upload side's base for a new commit).


The files of a commit are ``registry.services.hub_files`` (``HubFiles``, this service's
base).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select

from registry.db.tables import (
    as_utc,
    blobs,
    manifest_references,
    manifests,
    repositories,
    tag_history,
    tags,
)
from registry.digests import check_tag
from registry.errors import ManifestUnknown, ModelNotReady, TagInvalid
from registry.services.common import repo_id, require_repo
from registry.services.hub_files import HubFile, HubFiles, check_path, git_blob_id, lfs_pointer
from registry.services.manifests import ManifestService, gate_fallbacks, servable

COMMIT = re.compile(r"[0-9a-f]{40}")
_FULL = re.compile(r"(?:sha256:)?([0-9a-f]{64})")


def commit_id(digest: str) -> str:
    """The commit id of a manifest: the first 40 hex digits of its sha256 digest."""
    return digest.split(":", 1)[-1][:40]


@dataclass(frozen=True)
class Revision:
    """A commit: one manifest of a repository, and how it was asked for."""

    repository: str
    digest: str
    commit: str
    media_type: str
    content: bytes
    manifest_id: int
    created_at: datetime
    status: str | None          # verification status (None: not a model)
    branch: str | None = None   # the tag it was resolved through (None: by commit)


@dataclass(frozen=True)
class Commit:
    """One entry of a branch's history."""

    commit: str
    digest: str
    date: datetime
    status: str | None


_COLS = (manifests.c.id, manifests.c.digest, manifests.c.media_type, manifests.c.content,
         manifests.c.created_at, manifests.c.status)


class HubService(HubFiles):
    def __init__(self, db, store, settings, *, manifests: ManifestService):
        super().__init__(db, store, settings)
        self.manifests = manifests

    # ---- revisions -------------------------------------------------------------------
    def resolve(self, name: str, revision: str, base_url: str = "", *,
                gate: bool = True) -> Revision:
        """The commit ``revision`` (branch, commit id or digest) names in ``name``.

        NameUnknown for an unknown repository; ManifestUnknown for an unknown revision;
        ModelNotReady when the gate serves nothing for a branch (``gate=False``: the
        tag's manifest as it stands, verified or not)."""
        full = _FULL.fullmatch(revision)
        if COMMIT.fullmatch(revision) or full:
            prefix = "sha256:" + (full.group(1) if full else revision)
            return self._by_digest_prefix(name, prefix, revision)
        try:
            check_tag(revision)
        except TagInvalid:
            raise ManifestUnknown(f"revision {revision[:200]!r} is neither a branch (tag) "
                                  "nor a 40-hex commit id", {"reference": revision}) from None
        branches = [revision, "latest"] if revision == "main" else [revision]
        for branch in branches:
            try:
                return self._by_branch(name, branch, base_url, gate)
            except ModelNotReady:
                raise
            except ManifestUnknown:
                continue
        also = " (nor 'latest', which 'main' stands for when there is no tag 'main')" \
            if revision == "main" else ""
        raise ManifestUnknown(f"revision {revision!r} is not a branch (tag){also} or commit "
                              f"of repository {name!r}", {"reference": revision})

    def _by_branch(self, name: str, branch: str, base_url: str, gate: bool) -> Revision:
        if gate:
            digest = self.manifests.get(name, branch, base_url).digest
            rev = self._by_digest_prefix(name, digest, digest)
        else:
            with self.db.read() as conn:
                row = conn.execute(
                    select(*_COLS).select_from(
                        tags.join(manifests, manifests.c.id == tags.c.manifest_id)
                        .join(repositories, repositories.c.id == tags.c.repository_id))
                    .where(repositories.c.name == name, tags.c.name == branch)).first()
                if row is None:
                    require_repo(conn, name)
                    raise ManifestUnknown(f"no branch {branch!r}")
            rev = _revision(name, row)
        return replace(rev, branch=branch)

    def _by_digest_prefix(self, name: str, prefix: str, revision: str) -> Revision:
        with self.db.read() as conn:
            rid = require_repo(conn, name)
            q = select(*_COLS).where(manifests.c.repository_id == rid)
            # A range, not LIKE: an index on the digest serves it under any collation
            # (digests are lowercase hex, so every extension of the prefix sorts below
            # prefix + "g").
            q = q.where(manifests.c.digest == prefix) if len(prefix) == 71 else \
                q.where(manifests.c.digest >= prefix, manifests.c.digest < prefix + "g")
            row = conn.execute(q.order_by(manifests.c.id).limit(1)).first()
        if row is None:
            raise ManifestUnknown(f"revision {revision!r} is not a commit of repository "
                                  f"{name!r}", {"reference": revision})
        return _revision(name, row)

    def repository_created(self, name: str) -> datetime:
        with self.db.read() as conn:
            created = conn.execute(select(repositories.c.created_at)
                                   .where(repositories.c.name == name)).scalar()
        return as_utc(created) if created else None

    def refs(self, name: str) -> list[tuple[str, str]]:
        """Every tag of ``name`` (a branch each) with the commit a download by it gets
        now: the tag's own, or the one the readiness gate serves instead; a tag the gate
        serves nothing for shows its own (downloading by the branch says why not)."""
        with self.db.read() as conn:
            rid = require_repo(conn, name)
            rows = conn.execute(select(tags.c.name, manifests.c.digest, manifests.c.status,
                                       manifests.c.override_at)
                                .join(manifests, manifests.c.id == tags.c.manifest_id)
                                .where(tags.c.repository_id == rid)
                                .order_by(tags.c.name)).all()
            waiting = {r.name for r in rows if not servable(r.status, r.override_at)}
            instead = {}
            if waiting and self.manifests.gated(name):
                ids = gate_fallbacks(conn, rid, waiting)
                if ids:
                    instead = dict(conn.execute(
                        select(manifests.c.id, manifests.c.digest)
                        .where(manifests.c.id.in_(set(ids.values())))).all())
                    instead = {tag: instead[mid] for tag, mid in ids.items()}
        return [(r.name, commit_id(instead.get(r.name, r.digest))) for r in rows]

    def commits(self, name: str, revision: str, base_url: str = "") -> list[Commit]:
        """The history of a branch (the manifests its tag pointed at, newest first), or
        the one commit a commit id names. The revision must resolve (gate included), and a
        branch's history starts at the commit it serves, as git's log of a branch starts
        at its head: versions pushed after it and not yet servable are not in it."""
        rev = self.resolve(name, revision, base_url)
        if rev.branch is None:
            return [Commit(rev.commit, rev.digest, rev.created_at, rev.status)]
        with self.db.read() as conn:
            rid = repo_id(conn, name)
            rows = conn.execute(
                select(manifests.c.digest, tag_history.c.pushed_at, manifests.c.status)
                .join(manifests, manifests.c.id == tag_history.c.manifest_id)
                .where(tag_history.c.repository_id == rid, tag_history.c.tag == rev.branch)
                .order_by(tag_history.c.pushed_at.desc(), manifests.c.id.desc())).all()
        head = next((i for i, r in enumerate(rows) if r.digest == rev.digest), 0)
        return [Commit(commit_id(d), d, as_utc(at), status) for d, at, status in rows[head:]]

    def used_storage(self, rev: Revision) -> int:
        with self.db.read() as conn:
            return int(conn.execute(
                select(func.coalesce(func.sum(blobs.c.size), 0))
                .select_from(manifest_references.join(
                    blobs, blobs.c.digest == manifest_references.c.digest))
                .where(manifest_references.c.manifest_id == rev.manifest_id)).scalar_one())


def _revision(name: str, row) -> Revision:
    return Revision(name, row.digest, commit_id(row.digest), row.media_type,
                    bytes(row.content), row.id, as_utc(row.created_at), row.status)


__all__ = ["COMMIT", "Commit", "HubFile", "HubService", "Revision", "check_path",
           "commit_id", "git_blob_id", "lfs_pointer"]
