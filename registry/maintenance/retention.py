"""Retention: delete old tags and old untagged manifests by each namespace's policy.

A namespace's policy (``namespaces.keep_tags``, ``keep_ready``, ``untagged_days``: None
turns a rule off; ``protected_tags``, default ``["latest"]``; no row, no policy) applies
to every repository in it:

- ``protected_tags``: tags whose name matches one of these globs (fnmatch, case
  sensitive) are never deleted, and do not count in the two numbers below.
- ``keep_tags`` N: each repository keeps its N most recently pushed or moved tags
  (``tags.updated_at``).
- ``keep_ready`` N: each repository keeps its N most recently pushed or moved *ready*
  tags, and every tag still waiting for its verdict (queued or verifying: it may yet
  become ready). Ready means the gate serves something for it: its manifest (a model
  verified ready, a failed model an admin overrode, or content that is not a model:
  never verified), or, when that one failed, the newest ready (or overridden) manifest
  the tag pointed at before (``tag_history``, as ``ManifestService.get`` picks it).
  Failed tags (failed, and nothing older to serve) do not count: they are deleted unless
  another rule keeps them.
- Tags are deleted only when ``keep_tags`` or ``keep_ready`` is set, and then a tag is
  kept when any rule keeps it (protected, among the newest ``keep_tags``, or kept by
  ``keep_ready``); the others are deleted (the tag only: the manifest stays, untagged,
  for the rule below).
- ``untagged_days`` D: a manifest with no tag (after the rules above), created more than
  D days ago, is deleted, unless something kept needs it. Kept are: tagged manifests;
  the manifest the gate serves for a kept tag from its history (its own manifest failed
  or is still verifying); young ones; the children of a kept index; the referrers
  (manifests with a ``subject``) of a kept manifest. A referrer whose subject is stored
  goes with its subject and never on its own, whatever its age; one whose subject is
  not stored is judged by age.

A mirror namespace with ``keep_days`` D (``registry.services.mirrors``) adds one rule:
a tag nobody pulled for D days (``mirror_tags.pulled_at``; a tag never pulled through the
mirror counts from its last move) is deleted, and a manifest left untagged is deleted once
it is D days old unless the namespace's own ``untagged_days`` says otherwise. What goes is
the upstream's: the next pull fetches it again.

Every deletion goes through ``ManifestService.delete``, the path of a DELETE request,
so events (webhooks), model rows (cascade) and the audit log stay as they would be.
A run first lists what to delete (``plan``), then deletes it one item at a time
(``execute``), parents and subjects before their children and referrers. Each item is
re-checked in the transaction that deletes it, under the write lock: a tag pushed again
or moved (or whose verdict changed, when ``keep_ready`` judged it), a manifest tagged,
served for a tag from its history, pushed into a new index or given a new referrer
after the listing is kept (reported as skipped), and so are the children and referrers
whose deletion depended on it. Blobs are not deleted here: ``assay gc`` frees those no
manifest refers to any more, once the grace period after their last use has passed; the
report says how many blobs this run left unused and when gc may free them, and which
untagged manifests stay.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import NamedTuple

from sqlalchemy import and_, exists, or_, select

from registry.db.tables import (
    as_utc,
    blobs,
    manifest_references,
    manifests,
    mirror_tags,
    mirrors,
    namespaces,
    repositories,
    tag_history,
    tags,
    utcnow,
)
from registry.errors import ManifestUnknown, NameUnknown
from registry.maintenance.gc import Pending, duration
from registry.services import RegistryService
from registry.services.common import in_namespaces
from registry.services.manifests import gate_fallbacks, servable
from registry.services.quotas import human, namespace_of

READY, FAILED, PENDING = "ready", "failed", "pending"


def readiness(status: str | None, override_at: datetime | None, fallback: bool) -> str:
    """A tag as ``keep_ready`` sees it, by its manifest's ``status`` and ``override_at``
    and whether its history holds a ``fallback`` the gate serves instead: READY when the
    gate serves something for it (its manifest, or the fallback when that one failed),
    PENDING while its manifest is queued or verifying (it may yet become ready; kept
    whether or not the fallback is served meanwhile), else FAILED."""
    if servable(status, override_at):
        return READY
    if status == "failed":
        return READY if fallback else FAILED
    return PENDING


def _fallbacks(conn, rid: int, tag_rows) -> dict[str, int]:
    """The manifest (id) the gate serves from its history for each tag of ``tag_rows``
    (with ``status`` and ``override_at``) whose own manifest it does not serve."""
    return gate_fallbacks(conn, rid, {t.name for t in tag_rows
                                      if not servable(t.status, t.override_at)})


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
    # A tag judged by keep_ready: its manifest's readiness then (re-checked on delete).
    state: str | None = None

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
    now: datetime = field(default_factory=utcnow)
    grace: timedelta = timedelta(0)  # gc's grace period after a blob's last use
    # Blobs that no manifest uses any more once the deleted manifests are gone: `assay gc`
    # frees each at its last use + grace.
    freed: Pending = field(default_factory=Pending)
    # Manifests whose last tag this run deleted and that stay: those a later run deletes
    # (at their creation + the namespace's untagged_days), and those kept for good (no
    # untagged_days in their namespace).
    untagged_later: Pending = field(default_factory=Pending)
    untagged_kept: int = 0

    def summary(self) -> str:
        n_tags = sum(d.kind == "tag" for d in self.deleted)
        n_manifests = len(self.deleted) - n_tags
        verb = "would be deleted" if self.dry_run else "deleted"
        text = f"{n_tags} tag(s) and {n_manifests} manifest(s) {verb}"
        if self.skipped:
            text += f", {len(self.skipped)} kept (changed since listed)"
        return text

    def notes(self) -> list[str]:
        """What the deletions free, when, and what they leave stored."""
        dry = self.dry_run
        out = []
        if self.freed.count:
            out.append(f"{self.freed.count} blob(s) ({human(self.freed.bytes)}) "
                       + ("would no longer be used by any manifest: `assay gc` would free"
                          if dry else "no longer used by any manifest: `assay gc` then frees")
                       + f" them {self.freed.window(self.now)} (the {duration(self.grace)} "
                       "grace period after each blob's last use)")
        elif any(d.kind == "manifest" for d in self.deleted):
            out.append(("no blob would be freed" if dry else "no blob is freed")
                       + ": other manifests still use every blob of the deleted manifests")
        left = "would be left untagged and stay" if dry else "left untagged stay"
        if self.untagged_later.count:
            out.append(f"{self.untagged_later.count} manifest(s) {left} until they are older "
                       "than their namespace's --untagged-days: a later `assay retention` "
                       f"deletes them {self.untagged_later.window(self.now)}")
        if self.untagged_kept:
            out.append(f"{self.untagged_kept} manifest(s) {left} stored with their blobs: "
                       "their namespace has no --untagged-days (`assay namespace retention "
                       "NS --untagged-days D` deletes untagged manifests)")
        return out

    def to_json(self) -> dict:
        return {"dry_run": self.dry_run, "deleted": [d.to_json() for d in self.deleted],
                "skipped": [d.to_json() for d in self.skipped], "summary": self.summary(),
                "grace_seconds": self.grace.total_seconds(), "freed_blobs": self.freed.to_json(),
                "untagged": {"deleted_later": self.untagged_later.to_json(),
                             "kept": self.untagged_kept},
                "notes": self.notes()}


class _Changed(Exception):
    """The item no longer looks as listed: roll its deletion back and keep it."""


# ---- listing -----------------------------------------------------------------------------

def plan(svc: RegistryService, *, now: datetime | None = None) -> list[Deletion]:
    """What retention would delete now, in the order it must be deleted: every tag
    first, then manifests with indexes and subjects before their children and referrers."""
    now = now or utcnow()
    mirror_days = {m.namespace: m.keep_days for m in svc.mirrors.list() if m.keep_days}
    with svc.db.read() as conn:
        policies = conn.execute(
            select(namespaces.c.name, namespaces.c.keep_tags, namespaces.c.keep_ready,
                   namespaces.c.untagged_days, namespaces.c.protected_tags)
            .where(or_(namespaces.c.keep_tags.is_not(None),
                       namespaces.c.keep_ready.is_not(None),
                       namespaces.c.untagged_days.is_not(None)))
            .order_by(namespaces.c.name)).all()
        policies = {p.name: p for p in policies}
        for ns in mirror_days.keys() - policies.keys():
            policies[ns] = _NO_POLICY._replace(name=ns)
        out: list[Deletion] = []
        for policy in sorted(policies.values(), key=lambda p: p.name):
            repos = conn.execute(select(repositories.c.id, repositories.c.name)
                                 .where(in_namespaces(repositories.c.name, {policy.name}))
                                 .order_by(repositories.c.name)).all()
            for repo in repos:
                out += _plan_repository(conn, repo.id, repo.name, policy, now,
                                        mirror_days.get(namespace_of(repo.name)))
    return out


class _Policy(NamedTuple):
    name: str
    keep_tags: int | None
    keep_ready: int | None
    untagged_days: int | None
    protected_tags: str


_NO_POLICY = _Policy("", None, None, None, "[]")  # a mirror namespace without a policy


def _unpulled(conn, rid: int, name: str, tag_rows: list, keep_days: int,
              now: datetime) -> tuple[list, list[Deletion]]:
    """A mirror's tags (of those kept so far) that nobody pulled for ``keep_days``."""
    pulled = dict(conn.execute(select(mirror_tags.c.tag, mirror_tags.c.pulled_at)
                               .where(mirror_tags.c.repository_id == rid)).all())
    cutoff = now - timedelta(days=keep_days)
    doomed = [t for t in tag_rows
              if as_utc(pulled.get(t.name) or t.updated_at) < cutoff]
    reason = f"not pulled through the mirror for {keep_days} days"
    gone = {t.name for t in doomed}
    return ([t for t in tag_rows if t.name not in gone],
            [Deletion(name, t.name, "tag", reason, t.manifest_id, t.updated_at)
             for t in doomed])


def _tag_reason(policy, state: str) -> str:
    """Why a tag no rule keeps goes, in the terms of the rules that are set."""
    parts = []
    if policy.keep_tags is not None:
        parts.append(f"older than the newest {policy.keep_tags} tags")
    if policy.keep_ready is not None:
        parts.append("failed verification" if state == FAILED
                     else f"older than the newest {policy.keep_ready} ready tags")
    return " and ".join(parts)


def _plan_tags(name: str, tag_rows: list, fallbacks: dict[str, int],
               policy) -> tuple[list, list[Deletion]]:
    """The tags of one repository (newest first) that the policy keeps, and the
    deletions of the others (see the module docstring); ``fallbacks``: what the gate
    serves for a tag from its history (``_fallbacks``)."""
    if policy.keep_tags is None and policy.keep_ready is None:
        return tag_rows, []
    protected = json.loads(policy.protected_tags)
    candidates = [t for t in tag_rows if not any(fnmatchcase(t.name, p) for p in protected)]
    state = {t.name: readiness(t.status, t.override_at, t.name in fallbacks)
             for t in candidates}
    keep: set[str] = set()
    if policy.keep_tags is not None:
        keep.update(t.name for t in candidates[:policy.keep_tags])
    if policy.keep_ready is not None:
        ready = [t.name for t in candidates if state[t.name] == READY]
        keep.update(ready[:policy.keep_ready])
        keep.update(t.name for t in candidates if state[t.name] == PENDING)
    doomed = [t for t in candidates if t.name not in keep]
    judged = policy.keep_ready is not None  # the verdict decided: re-checked on delete
    deletions = [Deletion(name, t.name, "tag", _tag_reason(policy, state[t.name]),
                          t.manifest_id, t.updated_at,
                          state=state[t.name] if judged else None) for t in doomed]
    gone = {t.name for t in doomed}
    return [t for t in tag_rows if t.name not in gone], deletions


def _plan_repository(conn, rid: int, name: str, policy, now: datetime,
                     keep_days: int | None = None) -> list[Deletion]:
    tag_rows = conn.execute(select(tags.c.name, tags.c.manifest_id, tags.c.updated_at,
                                   manifests.c.status, manifests.c.override_at)
                            .join(manifests, manifests.c.id == tags.c.manifest_id)
                            .where(tags.c.repository_id == rid)
                            .order_by(tags.c.updated_at.desc(), tags.c.name)).all()
    fallbacks = _fallbacks(conn, rid, tag_rows)
    tag_rows, out = _plan_tags(name, tag_rows, fallbacks, policy)
    if keep_days is not None:
        tag_rows, unpulled = _unpulled(conn, rid, name, tag_rows, keep_days, now)
        out += unpulled
    days = policy.untagged_days if policy.untagged_days is not None else keep_days
    if days is None:
        return out

    cutoff = now - timedelta(days=days)
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

    # What the kept tags serve: their manifests, or the gate's fallback from their history.
    tagged = {t.manifest_id for t in tag_rows}
    tagged.update(fallbacks[t.name] for t in tag_rows if t.name in fallbacks)
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
                  else f"untagged for more than {days} days")
        out.append(Deletion(name, m.digest, "manifest", reason, mid, m.created_at,
                            after[mid]))
    return out


# ---- deleting ----------------------------------------------------------------------------

def _unchanged(conn, rid: int, item: Deletion, planned: set[int]) -> None:
    """Raise _Changed unless ``item`` still is what was listed. Runs in the deleting
    transaction, under the write lock (SQLite's, or PostgreSQL's row locks below)."""
    if item.kind == "tag":
        row = conn.execute(select(tags.c.name, tags.c.manifest_id, tags.c.updated_at,
                                  manifests.c.status, manifests.c.override_at)
                           .join(manifests, manifests.c.id == tags.c.manifest_id)
                           .where(tags.c.repository_id == rid, tags.c.name == item.reference)
                           .with_for_update(of=tags)).first()
        if (row is None or row.manifest_id != item.manifest_id
                or as_utc(row.updated_at) != as_utc(item.seen_at)
                or (item.state is not None and item.state != readiness(
                    row.status, row.override_at, bool(_fallbacks(conn, rid, [row]))))):
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
    if any(blocked) or _served_from_history(conn, rid, row.id):
        raise _Changed


def _served_from_history(conn, rid: int, mid: int) -> bool:
    """Whether the gate serves manifest ``mid`` for a tag of repository ``rid`` that
    points elsewhere (the tag's own manifest failed or is still verifying)."""
    tag_rows = conn.execute(
        select(tags.c.name, manifests.c.status, manifests.c.override_at)
        .join(manifests, manifests.c.id == tags.c.manifest_id)
        .join(tag_history, and_(tag_history.c.repository_id == tags.c.repository_id,
                                tag_history.c.tag == tags.c.name))
        .where(tags.c.repository_id == rid, tag_history.c.manifest_id == mid)).all()
    return mid in _fallbacks(conn, rid, tag_rows).values()


def execute(svc: RegistryService, planned: list[Deletion], *,
            dry_run: bool = False) -> RetentionReport:
    """Delete the items of ``plan`` in order, each re-checked as it is deleted; the
    report also says which blobs that leaves unused and which manifests untagged."""
    report = RetentionReport(dry_run=dry_run,
                             grace=timedelta(seconds=svc.settings.gc_grace_seconds))
    planned_ids = {d.manifest_id for d in planned if d.kind == "manifest"}
    with svc.db.read() as conn:
        digests = _blob_refs(conn, planned_ids)
    if dry_run:
        report.deleted = list(planned)
    else:
        _delete_in_order(svc, planned, planned_ids, report)
    _aftermath(svc, report, digests)
    return report


def _delete_in_order(svc: RegistryService, planned: list[Deletion], planned_ids: set[int],
                     report: RetentionReport) -> None:
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


def apply(svc: RegistryService, *, dry_run: bool = False,
          now: datetime | None = None) -> RetentionReport:
    """Apply every namespace's retention policy; with ``dry_run`` only list what would
    be deleted. ``now`` (default: the current time) is what ages are measured from."""
    return execute(svc, plan(svc, now=now), dry_run=dry_run)


# ---- what a run leaves behind ------------------------------------------------------------

_CHUNK = 500  # ids or digests per IN (...)


def _chunks(items) -> list[list]:
    items = sorted(items)
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _blob_refs(conn, manifest_ids: set[int]) -> list[str]:
    """Every digest the manifests ``manifest_ids`` refer to."""
    found: set[str] = set()
    for chunk in _chunks(manifest_ids):
        found.update(conn.execute(select(manifest_references.c.digest).where(
            manifest_references.c.manifest_id.in_(chunk))).scalars())
    return sorted(found)


def _unused_blobs(conn, digests: list[str], ignoring: set[int]) -> list:
    """(size, last_linked_at) of the stored blobs among ``digests`` that no manifest
    refers to, the manifests ``ignoring`` (about to be deleted) aside."""
    out = []
    for chunk in _chunks(digests):
        users: dict[str, set[int]] = defaultdict(set)
        for mid, digest in conn.execute(
                select(manifest_references.c.manifest_id, manifest_references.c.digest)
                .where(manifest_references.c.digest.in_(chunk))):
            users[digest].add(mid)
        unused = [d for d in chunk if users[d] <= ignoring]
        if unused:
            out += conn.execute(select(blobs.c.size, blobs.c.last_linked_at)
                                .where(blobs.c.digest.in_(unused))).all()
    return out


def _aftermath(svc: RegistryService, report: RetentionReport, digests: list[str]) -> None:
    """Fill in the blobs the deleted manifests leave unused (``freed``: removable by gc
    at their last use + the grace period) and the manifests left untagged."""
    deleted_ids = {d.manifest_id for d in report.deleted if d.kind == "manifest"}
    with svc.db.read() as conn:
        # After a real run the deleted manifests' references are gone already.
        for size, linked in _unused_blobs(conn, digests,
                                          deleted_ids if report.dry_run else set()):
            report.freed.add(size, as_utc(linked) + report.grace)
        _left_untagged(conn, report, deleted_ids)


def _left_untagged(conn, report: RetentionReport, deleted_ids: set[int]) -> None:
    """Count the manifests whose every tag went (or would go) and that stay: deleted by a
    later run at creation + their namespace's untagged_days, or kept for good."""
    gone_tags = {(d.repository, d.reference) for d in report.deleted if d.kind == "tag"}
    candidates = {d.manifest_id for d in report.deleted if d.kind == "tag"} - deleted_ids
    if not candidates:
        return
    days = dict(conn.execute(select(namespaces.c.name, namespaces.c.untagged_days)).all())
    for ns, keep_days in conn.execute(select(mirrors.c.namespace, mirrors.c.keep_days)):
        if days.get(ns) is None:
            days[ns] = keep_days  # a mirror's keep_days rule, where no policy says
    for chunk in _chunks(candidates):
        tagged = {mid for mid, repo, tag in conn.execute(
            select(tags.c.manifest_id, repositories.c.name, tags.c.name)
            .join(repositories, repositories.c.id == tags.c.repository_id)
            .where(tags.c.manifest_id.in_(chunk))) if (repo, tag) not in gone_tags}
        for mid, repo, created in conn.execute(
                select(manifests.c.id, repositories.c.name, manifests.c.created_at)
                .join(repositories, repositories.c.id == manifests.c.repository_id)
                .where(manifests.c.id.in_(chunk))):
            if mid in tagged:
                continue
            limit = days.get(namespace_of(repo))
            if limit is None:
                report.untagged_kept += 1
            else:
                report.untagged_later.add(0, as_utc(created) + timedelta(days=limit))
