"""Retention: delete old tags and old untagged manifests by each namespace's policy.

A namespace's policy (``namespaces.keep_tags``, ``namespaces.untagged_days``; None keeps
everything; no row, no policy) applies to every repository in it:

- ``keep_tags`` N: each repository keeps its N most recently pushed or moved tags
  (``tags.updated_at``); older tags are deleted (the tag only: the manifest stays,
  untagged, for the rule below).
- ``untagged_days`` D: a manifest with no tag (after the rule above), created more than
  D days ago, is deleted, unless something kept needs it. Kept are: tagged manifests;
  young ones; the children of a kept index; the referrers (manifests with a ``subject``)
  of a kept manifest. A referrer whose subject is stored goes with its subject and
  never on its own, whatever its age; one whose subject is not stored is judged by age.

Every deletion goes through ``ManifestService.delete``, the path of a DELETE request,
so events (webhooks), model rows (cascade) and the audit log stay as they would be.
A run first lists what to delete (``plan``), then deletes it one item at a time
(``execute``), parents and subjects before their children and referrers. Each item is
re-checked in the transaction that deletes it, under the write lock: a tag pushed again
or moved, a manifest tagged, pushed into a new index or given a new referrer after the
listing is kept (reported as skipped), and so are the children and referrers whose
deletion depended on it. Blobs are not deleted here: ``assay gc`` frees those no manifest
refers to any more, so run ``assay retention`` first and ``assay gc`` after it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, or_, select

from registry.db.tables import (
    as_utc,
    manifest_references,
    manifests,
    namespaces,
    repositories,
    tags,
    utcnow,
)
from registry.errors import ManifestUnknown, NameUnknown
from registry.services import RegistryService
from registry.services.common import in_namespaces


@dataclass(frozen=True)
class Deletion:
    """One tag or manifest to delete, and what it looked like when listed."""

    repository: str
    reference: str  # the tag's name, or the manifest's digest
    kind: str  # "tag" | "manifest"
    reason: str
    manifest_id: int  # the tag's manifest, or the manifest itself
    seen_at: datetime  # the tag's updated_at, or the manifest's created_at
    # Manifests (ids) of this repository that must be deleted before this one may be:
    # the indexes listing it and its subject.
    after: tuple[int, ...] = ()

    @property
    def target(self) -> str:
        sep = ":" if self.kind == "tag" else "@"
        return f"{self.repository}{sep}{self.reference}"

    def to_json(self) -> dict:
        return {"repository": self.repository, "kind": self.kind,
                "reference": self.reference, "reason": self.reason}


@dataclass
class RetentionReport:
    dry_run: bool
    deleted: list[Deletion] = field(default_factory=list)  # or would be, in a dry run
    skipped: list[Deletion] = field(default_factory=list)  # changed since listed: kept

    def summary(self) -> str:
        n_tags = sum(d.kind == "tag" for d in self.deleted)
        n_manifests = len(self.deleted) - n_tags
        verb = "would be deleted" if self.dry_run else "deleted"
        text = f"{n_tags} tag(s) and {n_manifests} manifest(s) {verb}"
        if self.skipped:
            text += f", {len(self.skipped)} kept (changed since listed)"
        return text

    def to_json(self) -> dict:
        return {"dry_run": self.dry_run, "deleted": [d.to_json() for d in self.deleted],
                "skipped": [d.to_json() for d in self.skipped], "summary": self.summary()}


class _Changed(Exception):
    """The item no longer looks as listed: roll its deletion back and keep it."""


# ---- listing -----------------------------------------------------------------------------

def plan(svc: RegistryService, *, now: datetime | None = None) -> list[Deletion]:
    """What retention would delete now, in the order it must be deleted: every tag
    first, then manifests with indexes and subjects before their children and referrers."""
    now = now or utcnow()
    with svc.db.read() as conn:
        policies = conn.execute(
            select(namespaces.c.name, namespaces.c.keep_tags, namespaces.c.untagged_days)
            .where(or_(namespaces.c.keep_tags.is_not(None),
                       namespaces.c.untagged_days.is_not(None)))
            .order_by(namespaces.c.name)).all()
        out: list[Deletion] = []
        for policy in policies:
            repos = conn.execute(select(repositories.c.id, repositories.c.name)
                                 .where(in_namespaces(repositories.c.name, {policy.name}))
                                 .order_by(repositories.c.name)).all()
            for repo in repos:
                out += _plan_repository(conn, repo.id, repo.name, policy, now)
    return out


def _plan_repository(conn, rid: int, name: str, policy, now: datetime) -> list[Deletion]:
    tag_rows = conn.execute(select(tags.c.name, tags.c.manifest_id, tags.c.updated_at)
                            .where(tags.c.repository_id == rid)
                            .order_by(tags.c.updated_at.desc(), tags.c.name)).all()
    out: list[Deletion] = []
    if policy.keep_tags is not None:
        old = tag_rows[policy.keep_tags:]
        tag_rows = tag_rows[:policy.keep_tags]
        out += [Deletion(name, t.name, "tag", f"older than the newest {policy.keep_tags} "
                         "tags", t.manifest_id, t.updated_at) for t in old]
    if policy.untagged_days is None:
        return out

    cutoff = now - timedelta(days=policy.untagged_days)
    rows = conn.execute(select(manifests.c.id, manifests.c.digest, manifests.c.created_at,
                               manifests.c.subject_digest)
                        .where(manifests.c.repository_id == rid)).all()
    by_digest = {m.digest: m for m in rows}
    # Edges to what a manifest keeps alive: its children (an index's manifests) and
    # its referrers.
    needs: dict[int, list[int]] = defaultdict(list)
    parents: dict[int, list[int]] = defaultdict(list)
    for parent_id, child in conn.execute(
            select(manifest_references.c.manifest_id, manifest_references.c.digest)
            .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
            # Any kind: a child listed as a blob too is recorded once, as a blob.
            .where(manifests.c.repository_id == rid)):
        if child in by_digest:
            needs[parent_id].append(by_digest[child].id)
            parents[by_digest[child].id].append(parent_id)
    for m in rows:
        if m.subject_digest in by_digest:
            needs[by_digest[m.subject_digest].id].append(m.id)

    tagged = {t.manifest_id for t in tag_rows}
    roots = [m.id for m in rows if m.id in tagged or (
        as_utc(m.created_at) >= cutoff and m.subject_digest not in by_digest)]
    kept: set[int] = set()
    while roots:
        mid = roots.pop()
        if mid not in kept:
            kept.add(mid)
            roots += needs.get(mid, [])

    by_id = {m.id: m for m in rows}
    doomed = {m.id for m in rows if m.id not in kept}
    # What must be deleted before a doomed manifest: the indexes listing it and its
    # subject (all doomed too, or it would have been kept).
    after: dict[int, tuple[int, ...]] = {}
    for mid in doomed:
        first = set(parents.get(mid, []))
        if by_id[mid].subject_digest in by_digest:
            first.add(by_digest[by_id[mid].subject_digest].id)
        after[mid] = tuple(sorted(first))
    ordered: list[int] = []
    seen: set[int] = set()

    def visit(mid: int) -> None:  # depth-first: what must go first goes first
        if mid in seen:
            return
        seen.add(mid)
        for first in after[mid]:
            visit(first)
        ordered.append(mid)

    for mid in sorted(doomed, key=lambda i: (as_utc(by_id[i].created_at), i)):
        visit(mid)
    for mid in ordered:
        m = by_id[mid]
        # Only referrers can be doomed young: anything else young is a root above.
        reason = (f"a referrer of {m.subject_digest}, which is deleted"
                  if m.subject_digest in by_digest
                  else f"untagged for more than {policy.untagged_days} days")
        out.append(Deletion(name, m.digest, "manifest", reason, mid, m.created_at,
                            after[mid]))
    return out


# ---- deleting ----------------------------------------------------------------------------

def _unchanged(conn, rid: int, item: Deletion, planned: set[int]) -> None:
    """Raise _Changed unless ``item`` still is what was listed. Runs in the deleting
    transaction, under the write lock (SQLite's, or PostgreSQL's row locks below)."""
    if item.kind == "tag":
        row = conn.execute(select(tags.c.manifest_id, tags.c.updated_at)
                           .where(tags.c.repository_id == rid, tags.c.name == item.reference)
                           .with_for_update()).first()
        if (row is None or row.manifest_id != item.manifest_id
                or as_utc(row.updated_at) != as_utc(item.seen_at)):
            raise _Changed
        return
    row = conn.execute(select(manifests.c.id, manifests.c.subject_digest)
                       .where(manifests.c.repository_id == rid,
                              manifests.c.digest == item.reference)
                       .with_for_update()).first()
    if row is None or row.id != item.manifest_id:
        raise _Changed
    parent = manifests.alias("parent")
    referrer = manifests.alias("referrer")
    subject = manifests.alias("subject")
    blocked = conn.execute(select(
        # tagged since
        exists().where(tags.c.manifest_id == row.id),
        # listed by an index still stored (a new one, or one kept this run)
        exists().where(manifest_references.c.digest == item.reference,
                       manifest_references.c.manifest_id == parent.c.id,
                       parent.c.repository_id == rid),
        # its subject is still stored
        exists().where(subject.c.repository_id == rid,
                       subject.c.digest == row.subject_digest),
        # a referrer pushed after the listing (listed ones go after it)
        exists().where(referrer.c.repository_id == rid,
                       referrer.c.subject_digest == item.reference,
                       referrer.c.id.not_in(planned or {-1})),
    )).one()
    if any(blocked):
        raise _Changed


def execute(svc: RegistryService, planned: list[Deletion], *,
            dry_run: bool = False) -> RetentionReport:
    """Delete the items of ``plan`` in order, each re-checked as it is deleted."""
    report = RetentionReport(dry_run=dry_run)
    if dry_run:
        report.deleted = list(planned)
        return report
    planned_ids = {d.manifest_id for d in planned if d.kind == "manifest"}
    kept: set[int] = set()
    for item in planned:
        if item.kind == "manifest" and kept.intersection(item.after):
            report.skipped.append(item)  # what it goes with was kept: so is it
            kept.add(item.manifest_id)
            continue
        try:
            svc.manifests.delete(item.repository, item.reference, guard=lambda conn, rid,
                                 item=item: _unchanged(conn, rid, item, planned_ids))
        except (_Changed, ManifestUnknown, NameUnknown):
            report.skipped.append(item)
            if item.kind == "manifest":
                kept.add(item.manifest_id)
        else:
            report.deleted.append(item)
    return report


def apply(svc: RegistryService, *, dry_run: bool = False,
          now: datetime | None = None) -> RetentionReport:
    """Apply every namespace's retention policy; with ``dry_run`` only list what would
    be deleted. ``now`` (default: the current time) is what ages are measured from."""
    return execute(svc, plan(svc, now=now), dry_run=dry_run)
