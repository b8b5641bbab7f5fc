"""Uploads through the Hugging Face Hub API: repositories, git-LFS objects, commits, refs.

The classic (git-LFS) path of ``huggingface_hub`` (``HF_HUB_DISABLE_XET=1``, or a client
without ``hf_xet``)::

    create_repo   -> the repository row (409 if it exists)
    preupload     -> which files go inline ("regular", up to 1 MiB) and which through LFS
    LFS batch     -> for each object: nothing to do if its blob is already linked to THIS
                     repository, else an upload action (PUT) and a verify action
    LFS PUT       -> the bytes, streamed into a blob (``UploadService.upload_whole``:
                     digest checked, upload limit, quota before a byte is read)
    commit        -> NDJSON (``registry.formats.hub_commit``) -> a ModelPack manifest of
                     the branch head's whole-blob files plus the commit's, stored with
                     ``ManifestService.put`` tagged with the branch: audited, evented and
                     queued for verification like any push

Only ``basic`` transfer is offered, never ``xet`` or ``multipart``. An object counts as
present only when its blob is linked to the repository: knowing a hash must not let a
client claim bytes it cannot read (the bytes are uploaded again, and stored once).

The LFS PUT is sent without ``Authorization`` by ``huggingface_hub``: with access control
on, the handler signs its ``href`` for the caller (``registry.access.tokens.sign_upload``).

A branch is an OCI tag; its head is the manifest the tag points at, read without the
gate (a commit builds on the head, verified or not; ``main`` falls back to ``latest``)
by ``HubService.resolve(..., gate=False)``. The head's whole-blob files
(``HubService.files``) are carried over; generated ones (README.md, Modelfile) are not,
and a head with archive layers (tar members) is refused rather than dropped. A commit id
is the first 40 hex digits of a manifest's sha256 digest (``hub.commit_id``). A
``parentCommit`` that is not the head's id is refused with PreconditionFailed (412); the
check and the tag move are two transactions, so two commits racing on one branch may
both pass it (the later one wins the tag).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
from sqlalchemy import select

from registry.db.tables import (
    blobs,
    manifests,
    repositories,
    repository_blobs,
    tags,
    utcnow,
)
from registry.digests import check_name, check_tag
from registry.errors import (
    Conflict,
    EntryUnknown,
    ManifestTooLarge,
    ManifestUnknown,
    PreconditionFailed,
    RequestInvalid,
    SizeInvalid,
)
from registry.formats import hub_commit as hc
from registry.formats.classify import classify
from registry.manifests import parse_manifest
from registry.services import audit
from registry.services.common import Service, repo_id, require_repo
from registry.services.hub import COMMIT, HubService, Revision, commit_id
from registry.services.manifests import ManifestService
from registry.services.uploads import UploadService

_FULL_HEX = re.compile(r"[0-9a-f]{64}")
MAIN = "main"


def _valid_object(o) -> bool:
    return (isinstance(o, dict) and isinstance(o.get("oid"), str)
            and _FULL_HEX.fullmatch(o["oid"]) is not None and isinstance(o.get("size"), int)
            and not isinstance(o["size"], bool) and o["size"] >= 0)


# A commit without a parentCommit is rebuilt on a branch that moved under it, this often.
MAX_REBASES = 5
# Files added, changed or deleted by one commit: a manifest of this many layers still fits
# the default manifest limit, and each inline file is a stored blob.
MAX_OPERATIONS = 10_000
# How long a batch answer's upload URL stays good: huggingface_hub asks for all of them
# first and then uploads five at a time, so the last may start hours later.
UPLOAD_URL_SECONDS = 24 * 3600
LATEST = "latest"


class _HeadMoved(Exception):
    """The branch's head changed between reading it and storing the commit."""


def target_tag(branch: str, head: Revision | None) -> str:
    """The tag a commit to ``branch`` moves: the tag its head was read through. ``main``
    with no tag of that name is ``latest``, for reading and for committing alike, so the
    Hub's default branch and the OCI default tag (what ``ollama pull team/m`` gets) stay
    one."""
    if head is not None and head.branch:
        return head.branch
    return LATEST if branch == MAIN else branch


def _unmoved(branch: str, target: str, head: Revision | None):
    """A ``ManifestService.put`` guard: the tags the head was read through still point
    where they did (``target``; and for ``main`` read through ``latest``, ``main`` still
    absent), else _HeadMoved, which aborts the put."""
    expect: dict[str, str | None] = {branch: None}
    expect[target] = head.digest if head is not None else None

    def guard(conn, rid: int) -> None:
        now = dict(conn.execute(
            select(tags.c.name, manifests.c.digest)
            .join(manifests, manifests.c.id == tags.c.manifest_id)
            .where(tags.c.repository_id == rid, tags.c.name.in_(sorted(expect)))).all())
        if any(now.get(tag) != digest for tag, digest in expect.items()):
            raise _HeadMoved()

    return guard


def branch_name(revision: str) -> str:
    """A revision a commit may go to: a branch (an OCI tag), not a commit id (nor a name
    that would always be read as one: 40 or 64 hex digits)."""
    if COMMIT.fullmatch(revision) or _FULL_HEX.fullmatch(revision):
        raise RequestInvalid(f"{revision!r} is a commit id: commits go to a branch, and "
                             "a branch may not be named like one")
    return check_tag(revision)


class HubCommitService(Service):
    def __init__(self, db, store, settings, *, uploads: UploadService,
                 manifests: ManifestService, hub: HubService):
        super().__init__(db, store, settings)
        self.uploads = uploads
        self.manifests = manifests
        self.hub = hub

    # ---- repositories -------------------------------------------------------
    def create_repo(self, name: str) -> None:
        """Create repository ``name`` (audited); Conflict (409) if it exists."""
        check_name(name)
        with self.db.write() as conn:
            if repo_id(conn, name) is not None:
                raise Conflict(f"repository {name!r} already exists")
            conn.execute(repositories.insert().values(name=name, created_at=utcnow()))
            audit.record(conn, "repository.create", name, api="hub")

    def delete_repo(self, name: str) -> list[dict]:
        """Delete repository ``name`` as ``DELETE /api/v1/repositories/<name>`` does (one
        audit entry per manifest), plus one entry for the repository."""
        deleted = self.manifests.delete_repository(check_name(name))
        with self.db.write() as conn:
            audit.record(conn, "repository.delete", name, api="hub", manifests=len(deleted))
        return deleted

    def _require(self, name: str) -> int:
        with self.db.read() as conn:
            return require_repo(conn, name)

    # ---- preupload and LFS --------------------------------------------------
    def preupload(self, name: str, revision: str, files: object) -> list[dict]:
        """For each ``{"path", "size", "sample"}``: ``uploadMode`` ``regular`` (inline in
        the commit) up to ``REGULAR_MAX`` bytes, else ``lfs``; nothing is ignored."""
        branch_name(revision)
        self._require(name)
        if not isinstance(files, list):
            raise RequestInvalid("preupload needs 'files': a list of {path, size, sample}")
        out = []
        for f in files:
            if not isinstance(f, dict):
                raise RequestInvalid("each preupload file must be an object")
            path = hc.check_path(f.get("path"))
            size = f.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise RequestInvalid(f"preupload file {path!r}: size must be an integer")
            mode = "regular" if size <= hc.REGULAR_MAX else "lfs"
            out.append({"path": path, "uploadMode": mode, "shouldIgnore": False})
        return out

    def _linked(self, rid: int, digests: list[str]) -> dict[str, int]:
        """Of ``digests``, those linked to repository ``rid``, with their sizes."""
        if not digests:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(
                select(blobs.c.digest, blobs.c.size)
                .join(repository_blobs, repository_blobs.c.digest == blobs.c.digest)
                .where(repository_blobs.c.repository_id == rid,
                       blobs.c.digest.in_(sorted(set(digests))),
                       blobs.c.quarantined_at.is_(None)))
            return {r.digest: r.size for r in rows}

    def lfs_batch(self, name: str, body: dict, href, verify_href: str) -> dict:
        """The git-LFS batch answer for an upload. ``href(oid, size)`` is where to PUT an
        object. Malformed objects and objects over the upload limit get a per-object
        error; the objects to upload must fit the namespace's quota together
        (QuotaExceeded otherwise, before a byte is sent)."""
        if body.get("operation") != "upload":
            raise RequestInvalid("only the LFS 'upload' operation is served here; files "
                                 "are downloaded from /<repo>/resolve/<revision>/<path>")
        transfers = body.get("transfers")
        if transfers is not None and (not isinstance(transfers, list)
                                      or "basic" not in transfers):
            raise RequestInvalid("this registry offers only the 'basic' LFS transfer (not "
                                 "xet or multipart): upload with HF_HUB_DISABLE_XET=1")
        if body.get("hash_algo", "sha256") != "sha256":
            raise RequestInvalid("only sha256 LFS objects are supported")
        objects = body.get("objects")
        if not isinstance(objects, list):
            raise RequestInvalid("the LFS batch needs 'objects': a list of {oid, size}")
        rid = self._require(name)
        good = [_valid_object(o) for o in objects]
        linked = self._linked(rid, [f"sha256:{o['oid']}"
                                    for o, ok in zip(objects, good, strict=True) if ok])
        cap = self.settings.max_upload_bytes
        answers, wanted = [], {}
        for o, ok in zip(objects, good, strict=True):
            answers.append(self._batch_object(o, ok, linked, cap, href, verify_href))
            if "actions" in answers[-1]:
                wanted[f"sha256:{o['oid']}"] = o["size"]
        if wanted:
            self.uploads.check_push(name, wanted)
        return {"transfer": "basic", "objects": answers, "hash_algo": "sha256"}

    @staticmethod
    def _batch_object(o, good: bool, linked: dict[str, int], cap: int, href,
                      verify_href: str) -> dict:
        if not good:
            oid = o.get("oid") if isinstance(o, dict) else None
            size = o.get("size") if isinstance(o, dict) else None
            return {"oid": oid if isinstance(oid, str) else "",
                    "size": size if isinstance(size, int) else 0,
                    "error": {"code": 422, "message": "an LFS object needs 'oid' (64 "
                              "lowercase hex digits of its sha256) and 'size' (bytes)"}}
        oid, size = o["oid"], o["size"]
        have = linked.get(f"sha256:{oid}")
        if have == size:
            return {"oid": oid, "size": size}
        if size > cap:
            return {"oid": oid, "size": size,
                    "error": {"code": 413, "message": f"{size} bytes exceed the upload "
                              f"limit of {cap} bytes"}}
        return {"oid": oid, "size": size, "authenticated": True,
                "actions": {"upload": {"href": href(oid, size),
                                       "expires_in": UPLOAD_URL_SECONDS},
                            "verify": {"href": verify_href,
                                       "expires_in": UPLOAD_URL_SECONDS}}}

    async def lfs_put(self, name: str, oid: str, size: int, body: AsyncIterator[bytes],
                      length: int | None, owner: str | None) -> None:
        """Store an LFS object: exactly ``size`` bytes whose sha256 is ``oid``
        (DigestInvalid / SizeInvalid otherwise, nothing kept)."""
        if not _FULL_HEX.fullmatch(oid):
            raise RequestInvalid(f"LFS oid {oid[:80]!r} is not 64 lowercase hex digits")
        if length is not None and length != size:
            raise SizeInvalid(f"Content-Length {length} is not the object's size {size}")
        await anyio.to_thread.run_sync(self._require, name)
        await self.uploads.upload_whole(name, f"sha256:{oid}", body, size, owner)

    def lfs_verify(self, name: str, body: dict) -> None:
        """EntryUnknown (404) unless object ``oid`` of ``size`` bytes is linked to
        ``name``."""
        oid, size = body.get("oid"), body.get("size")
        if not isinstance(oid, str) or not _FULL_HEX.fullmatch(oid) or not isinstance(size,
                                                                                      int):
            raise RequestInvalid("verify needs 'oid' (64 hex digits) and 'size'")
        rid = self._require(name)
        have = self._linked(rid, [f"sha256:{oid}"]).get(f"sha256:{oid}")
        if have != size:
            raise EntryUnknown(f"LFS object {oid} ({size} bytes) is not stored in repository "
                               f"{name!r}" + (f" (it has {have} bytes)" if have is not None
                                              else ": upload it first"))

    # ---- revisions -------------------------------------------------------
    def _head(self, name: str, revision: str) -> Revision | None:
        """What ``revision`` names as it stands (no gate), None for an empty branch;
        NameUnknown for an unknown repository."""
        try:
            return self.hub.resolve(name, revision, gate=False)
        except ManifestUnknown:
            with self.db.read() as conn:
                require_repo(conn, name)
            return None

    # ---- commits ------------------------------------------------------------
    def commit(self, name: str, revision: str, body: bytes, owner: str | None = None) -> str:
        """Apply an NDJSON commit to branch ``revision``; returns the new commit id. The
        tag it moves is ``target_tag`` (``main`` without such a tag is ``latest``).

        Everything is checked before anything is stored: the body (at most
        ``MAX_OPERATIONS`` operations), ``parentCommit`` (PreconditionFailed), that every
        ``lfsFile`` is linked to ``name`` with its size (RequestInvalid), deletions
        (EntryUnknown), the manifest's size and the quota of the inline files, which are
        stored as ``owner``'s uploads. A refused commit stores nothing.

        The branch moves only if its head is still the one the commit was built on
        (checked in the manifest's own transaction): a commit that names its
        ``parentCommit`` is refused otherwise (PreconditionFailed); one that does not is
        rebuilt on the new head, as git would rebase it, so two uploads racing on one
        branch both land and neither loses the other's files.
        """
        branch = branch_name(revision)
        parsed = hc.parse_commit(body)
        if len(parsed.operations) > MAX_OPERATIONS:
            raise RequestInvalid(f"a commit may change at most {MAX_OPERATIONS} files, not "
                                 f"{len(parsed.operations)}: split it into several commits")
        for _ in range(MAX_REBASES):
            try:
                return self._commit_once(name, branch, parsed, owner)
            except _HeadMoved:
                if parsed.header.parent_commit is not None:
                    raise PreconditionFailed(
                        f"parentCommit {parsed.header.parent_commit[:80]} is no longer the "
                        f"head of {branch!r}: another commit landed first; fetch and "
                        "retry") from None
        raise PreconditionFailed(f"branch {branch!r} kept moving under this commit "
                                 f"({MAX_REBASES} tries): retry")

    def _commit_once(self, name: str, branch: str, parsed: hc.Commit,
                     owner: str | None) -> str:
        head = self._head(name, branch)
        parent = parsed.header.parent_commit
        if parent is not None and (head is None or commit_id(head.digest) != parent.lower()):
            now = commit_id(head.digest) if head is not None else "none (an empty branch)"
            raise PreconditionFailed(f"parentCommit {parent[:80]} is not the head of "
                                     f"{branch!r} (it is {now}): fetch and retry")
        base = {} if head is None else self._base(head)
        files = hc.apply(base, parsed.operations, self._added(name, parsed.operations))
        # Build (and size-check) the manifest before a byte is stored.
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        config = hc.config_bytes(files, name.rsplit("/", 1)[-1], created)
        config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
        manifest = hc.manifest_bytes(files, config, config_digest, parsed.header, created)
        if len(manifest) > self.settings.max_manifest_bytes:
            raise ManifestTooLarge(
                f"a commit of {len(files)} files makes a manifest of {len(manifest)} "
                f"bytes; the limit is {self.settings.max_manifest_bytes}: keep fewer files "
                "per model")
        inline = {f"sha256:{hashlib.sha256(op.content).hexdigest()}": op.content
                  for op in parsed.operations if isinstance(op, hc.InlineFile)}
        if inline:
            self.uploads.check_push(name, {d: len(c) for d, c in inline.items()})
        for content in inline.values():
            self.uploads.put_bytes(name, content, owner=owner, quota=True)
        self.uploads.put_bytes(name, config, owner=owner)
        target = target_tag(branch, head)
        result = self.manifests.put(name, target, manifest, hc.OCI_MANIFEST,
                                    guard=_unmoved(branch, target, head))
        return commit_id(result.digest)

    def _base(self, head: Revision) -> dict[str, hc.Entry]:
        """The head's files a commit keeps: all of them, as whole-blob files. A head
        whose layers are not all such files is refused (RequestInvalid) rather than
        have some dropped: an index, archive layers (their files cannot be carried into
        a ModelPack of whole files), layers without a file path, or paths a commit may
        not write."""
        parsed = parse_manifest(head.content, head.media_type)
        if parsed.manifests:
            raise RequestInvalid(f"the head of this branch ({head.commit}) is an index of "
                                 "several manifests, which a Hub commit cannot build on")
        found = classify(parsed)
        if found is not None and any(f.archive for f in found.files + found.weights):
            raise RequestInvalid(
                f"the head of this branch ({head.commit}) keeps files inside archive "
                "layers, which a Hub commit cannot carry over: commit to a new branch, "
                "or push the whole model with assay push / oras")
        kept = {f.path: hc.Entry(f.blob, f.size) for f in self.hub.files(head)
                if f.lfs and _safe(f.path)}
        carried = {e.digest for e in kept.values()}
        config = json.loads(head.content).get("config")
        config_digest = config.get("digest") if isinstance(config, dict) else None
        lost = [d for d in parsed.blobs if d.digest not in carried
                and d.digest != config_digest and not d.foreign]
        if lost:
            raise RequestInvalid(
                f"the head of this branch ({head.commit}) has {len(lost)} layer(s) without "
                "a file path a Hub commit can keep (e.g. " + lost[0].digest + "): commit "
                "to a new branch, or push the whole model with assay push / oras")
        return kept

    def _added(self, name: str, operations: list) -> dict[str, hc.Entry]:
        """The entry of each added path; every LFS object must be linked to ``name``
        with the size the commit states."""
        lfs = [op for op in operations if isinstance(op, hc.LfsFile)]
        linked = self._linked(self._require(name), [f"sha256:{op.oid}" for op in lfs])
        added: dict[str, hc.Entry] = {}
        for op in operations:
            if isinstance(op, hc.InlineFile):
                digest = f"sha256:{hashlib.sha256(op.content).hexdigest()}"
                added[op.path] = hc.Entry(digest, len(op.content))
            elif isinstance(op, hc.LfsFile):
                have = linked.get(f"sha256:{op.oid}")
                if have is None:
                    raise RequestInvalid(f"LFS object {op.oid} of {op.path!r} is not stored "
                                         f"in repository {name!r}: upload it first (LFS "
                                         "batch, then PUT)")
                if op.size is not None and op.size != have:
                    raise RequestInvalid(f"{op.path!r}: LFS object {op.oid} has {have} "
                                         f"bytes, not {op.size}")
                added[op.path] = hc.Entry(f"sha256:{op.oid}", have)
        return added

    # ---- branches and tags --------------------------------------------------
    def create_ref(self, name: str, ref: str, starting_point: str | None, *,
                   kind: str = "branch") -> str:
        """Point new tag ``ref`` at the manifest ``starting_point`` names (default:
        ``main``'s head), through ``ManifestService.put`` (audited, evented). Conflict
        (409) if the tag exists; ManifestUnknown if the starting point does not."""
        ref = branch_name(ref)
        with self.db.read() as conn:
            rid = require_repo(conn, name)
            if conn.execute(select(tags.c.name).where(tags.c.repository_id == rid,
                                                      tags.c.name == ref)).first():
                raise Conflict(f"{kind} {ref!r} already exists in {name!r}")
        start = starting_point or MAIN
        rev = self.hub.resolve(name, start, gate=False)

        def still_absent(conn, rid: int) -> None:  # two racing creations: one wins
            if conn.execute(select(tags.c.name).where(tags.c.repository_id == rid,
                                                      tags.c.name == ref)).first():
                raise Conflict(f"{kind} {ref!r} already exists in {name!r}")

        self.manifests.put(name, ref, rev.content, rev.media_type, guard=still_absent)
        return rev.commit

    def delete_ref(self, name: str, ref: str) -> None:
        """Delete tag ``ref`` (a branch or a tag); ManifestUnknown if there is none."""
        self.manifests.delete(name, check_tag(ref))


def _safe(path: str) -> bool:
    try:
        hc.check_path(path)
    except RequestInvalid:
        return False
    return True
