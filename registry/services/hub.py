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

Files (``files``), by manifest kind (``registry.formats.classify``):

- ModelPack, Docker, plain OCI (oras): every layer with a path keeps it (Docker's
  unnamed GGUFs are ``<repository's last segment>.gguf``, or ``-0000i-of-0000n`` shards,
  its license ``LICENSE`` and template ``template.jinja``, as ``assay pull`` names
  them). A layer that is
  an uncompressed tar (ModelPack ``...tar``, Docker's config archive) shows the regular
  files inside it, served from within the blob (a tar holding one file shows it under
  the layer's path). Compressed archive layers are left out (logged): serving them would
  mean decompressing.
- Ollama: the model layer as ``<repository's last segment>.gguf``; template ->
  ``template``, system -> ``system``, params -> ``params.json``, license -> ``LICENSE``,
  messages -> ``messages.json``, adapter -> ``adapter.gguf``, projector -> ``mmproj.gguf``,
  and a generated ``Modelfile`` (``registry.formats.hub_readme``).
- ``README.md``: the model's own when a layer has that path, else generated from the
  card and the latest verification (models only).

A whole-blob file is a git-LFS file: its LFS oid is the blob's sha256 and its ETag that
hex. A generated file's ETag is its git blob id (sha1 of ``blob <size>\\0<bytes>``). A
file inside a tar layer gets ``<blob hex>-<offset>-<size>`` (hashing it would mean
reading it). Tar listings and Ollama's small layers are cached in process (content
addressed: immutable); a generated README is made on each call from the verification
state as it stands.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select

from registry.db.tables import (
    as_utc,
    blobs,
    manifest_references,
    manifests,
    models,
    repositories,
    tag_history,
    tags,
    verifications,
)
from registry.digests import check_tag
from registry.errors import (
    EntryUnknown,
    ManifestUnknown,
    ModelNotReady,
    RequestInvalid,
    TagInvalid,
)
from registry.formats.cards import ModelCard
from registry.formats.classify import (
    DOCKER_GGUF,
    FILEPATH,
    SAFETENSORS,
    TITLE,
    ModelFormat,
    classify,
)
from registry.formats.hub_readme import (
    OllamaParts,
    ReadmeFacts,
    Verification,
    front_matter,
    render_modelfile_for,
    render_readme,
)
from registry.manifests import IMAGE_TYPES, ParsedManifest, parse_manifest
from registry.services.common import Service, repo_id, require_repo
from registry.services.manifests import ManifestService, gate_fallbacks, servable
from registry.storage.ranged import open_blob

log = logging.getLogger("assay.hub")

COMMIT = re.compile(r"[0-9a-f]{40}")
_FULL = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
README = "README.md"
MODELFILE = "Modelfile"
MAX_TAR_MEMBERS = 1024
MAX_SMALL_LAYER = 1024 * 1024   # Ollama template/system/params/messages/license layers
MAX_README = 1024 * 1024        # a model's own README read for its front matter
OLLAMA = "application/vnd.ollama.image."
OLLAMA_NAMES = {"template": "template", "system": "system", "params": "params.json",
                "license": "LICENSE", "messages": "messages.json",
                "adapter": "adapter.gguf", "projector": "mmproj.gguf"}
DOCKER_NAMES = {"application/vnd.docker.ai.license": "LICENSE",
                "application/vnd.docker.ai.chat.template.jinja": "template.jinja",
                "application/vnd.docker.ai.mmproj": "mmproj.gguf"}
LFS_SPEC = "https://git-lfs.github.com/spec/v1"


def commit_id(digest: str) -> str:
    """The commit id of a manifest: the first 40 hex digits of its sha256 digest."""
    return digest.split(":", 1)[-1][:40]


def git_blob_id(content: bytes) -> str:
    """Git's object id of a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256_hex: str, size: int) -> bytes:
    """The git-LFS pointer file that stands for a large file in git."""
    return f"version {LFS_SPEC}\noid sha256:{sha256_hex}\nsize {size}\n".encode()


def check_path(path: str) -> str:
    """A file path in a repository as the client names it; RequestInvalid for anything
    that could step outside one (``..``, absolute, empty segments, backslash, NUL)."""
    parts = path.split("/")
    if (not path or "\\" in path or "\x00" in path or path.startswith("/")
            or any(p in ("", ".", "..") for p in parts) or len(path) > 4096):
        raise RequestInvalid(f"invalid file path {path[:200]!r}: paths are relative, "
                             "with no '.', '..' or empty segments")
    return path


def _clean(path: str | None) -> str | None:
    """A stored path normalised for the file view, or None when it is not a safe one."""
    if not path or "\\" in path or "\x00" in path:
        return None
    norm = posixpath.normpath(path.lstrip("/"))
    if norm in (".", "") or norm.startswith("../") or norm == "..":
        return None
    return norm


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
class HubFile:
    """One file of a commit. ``blob`` holds its bytes (None: generated, in ``content``);
    ``offset`` is where it starts inside the blob when it is a tar member."""

    path: str
    size: int
    blob: str | None = None
    offset: int | None = None
    content: bytes | None = None

    @property
    def lfs(self) -> bool:
        return self.blob is not None and self.offset is None

    @property
    def sha256(self) -> str | None:
        """The LFS oid (the blob's sha256 hex) of an LFS file."""
        return self.blob.split(":", 1)[1] if self.lfs else None

    @property
    def pointer(self) -> bytes | None:
        return lfs_pointer(self.sha256, self.size) if self.lfs else None

    @property
    def oid(self) -> str:
        """The git object id the tree lists: of the LFS pointer for an LFS file, of the
        bytes for a generated one, of the member's identity for a tar member."""
        if self.lfs:
            return git_blob_id(self.pointer)
        if self.content is not None:
            return git_blob_id(self.content)
        return hashlib.sha1(self.etag.encode()).hexdigest()

    @property
    def etag(self) -> str:
        """The ETag value, unquoted."""
        if self.lfs:
            return self.sha256
        if self.content is not None:
            return git_blob_id(self.content)
        return f"{self.blob.split(':', 1)[1]}-{self.offset}-{self.size}"


@dataclass(frozen=True)
class Commit:
    """One entry of a branch's history."""

    commit: str
    digest: str
    date: datetime
    status: str | None


class _Lru:
    def __init__(self, size: int = 512):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


_COLS = (manifests.c.id, manifests.c.digest, manifests.c.media_type, manifests.c.content,
         manifests.c.created_at, manifests.c.status)


class HubService(Service):
    def __init__(self, db, store, settings, *, manifests: ManifestService):
        super().__init__(db, store, settings)
        self.manifests = manifests
        self._tars = _Lru()      # blob digest -> [(name, offset, size)]
        self._parts = _Lru()     # manifest digest -> Ollama parts

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
            q = q.where(manifests.c.digest == prefix) if len(prefix) == 71 else \
                q.where(manifests.c.digest.startswith(prefix, autoescape=True))
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
        """The history of a branch (every manifest its tag pointed at, newest first), or
        the one commit a commit id names. The revision must resolve (gate included)."""
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
        return [Commit(commit_id(d), d, as_utc(at), status) for d, at, status in rows]

    def used_storage(self, rev: Revision) -> int:
        with self.db.read() as conn:
            return int(conn.execute(
                select(func.coalesce(func.sum(blobs.c.size), 0))
                .select_from(manifest_references.join(
                    blobs, blobs.c.digest == manifest_references.c.digest))
                .where(manifest_references.c.manifest_id == rev.manifest_id)).scalar_one())

    # ---- files -------------------------------------------------------------------------
    def files(self, rev: Revision, base_url: str = "", *, only: str | None = None
              ) -> list[HubFile]:
        """Every file of a commit, in manifest order (README.md and Modelfile last when
        generated). Blocking (reads tar headers and small layers): run in a thread.
        ``only``: the caller wants that one path (a README is generated only for it)."""
        parsed = parse_manifest(rev.content, rev.media_type)
        fmt = classify(parsed)
        layers = _layers(parsed)
        out: dict[str, HubFile] = {}
        sizes = self._sizes([d.digest for d in layers])
        if fmt is not None and fmt.kind == "ollama":
            self._ollama_files(rev, layers, sizes, out)
        else:
            self._layer_files(rev, fmt, layers, sizes, out)
        if fmt is not None and README not in out and only in (None, README):
            content = self.readme(rev, fmt, base_url)
            out[README] = HubFile(README, len(content), content=content)
        return list(out.values())

    def file(self, rev: Revision, path: str, base_url: str = "") -> HubFile:
        """The file ``path`` of a commit; EntryUnknown when it has none."""
        check_path(path)
        for f in self.files(rev, base_url, only=path):
            if f.path == path:
                return f
        raise EntryUnknown(f"{path!r} is not a file of {rev.repository} at commit "
                           f"{rev.commit} ({rev.digest})", {"path": path})

    def open(self, f: HubFile, start: int, length: int) -> Iterator[bytes]:
        """The bytes ``[start, start + length)`` of a file, in chunks (blocking)."""
        if f.content is not None:
            return iter([f.content[start:start + length]])
        return self.store.open(f.blob, (f.offset or 0) + start, length,
                               self.settings.read_chunk_bytes)

    def _sizes(self, digests: list[str]) -> dict[str, int]:
        with self.db.read() as conn:
            return dict(conn.execute(select(blobs.c.digest, blobs.c.size)
                                     .where(blobs.c.digest.in_(set(digests)))).all())

    def _layer_files(self, rev: Revision, fmt: ModelFormat | None, layers,
                     sizes: dict[str, int], out: dict[str, HubFile]) -> None:
        known = fmt.files + fmt.weights if fmt else []
        archives = {f.descriptor.digest: f.archive for f in known}
        docker_ggufs = [d.digest for d in layers if d.media_type == DOCKER_GGUF]
        stem = rev.repository.rsplit("/", 1)[-1]
        for d in layers:
            size = sizes.get(d.digest)
            if size is None:
                continue
            path = _clean(_annotated(d))
            archive = archives.get(d.digest)
            if path is None and d.media_type == DOCKER_GGUF:  # as ``assay pull`` names them
                n, i = len(docker_ggufs), docker_ggufs.index(d.digest) + 1
                path = f"{stem}.gguf" if n == 1 else f"{stem}-{i:05d}-of-{n:05d}.gguf"
            elif path is None and d.media_type in DOCKER_NAMES:
                path = DOCKER_NAMES[d.media_type]
            elif archive is None and path is None:
                path = next((_clean(f.path) for f in known if f.descriptor.digest == d.digest),
                            None)
            if archive == "tar":
                for member in self._tar_files(d.digest, size, path):
                    out.setdefault(member.path, member)
            elif archive is not None:
                log.info("leaving %s (%s) out of the Hub's file view: a compressed "
                         "archive", path or d.digest, archive)
            elif path is not None:
                out.setdefault(path, HubFile(path, size, d.digest))

    def _tar_files(self, digest: str, size: int, path: str | None) -> list[HubFile]:
        members = self._tars.get(digest)
        if members is None:
            try:
                with open_blob(self.store, digest, 0, size) as f:
                    members = self._tars.put(digest, _tar_members(f))
            except Exception as exc:
                log.warning("cannot list the tar layer %s: %s", digest, exc)
                return []
        if len(members) == 1 and path is not None:
            _, offset, length = members[0]
            return [HubFile(path, length, digest, offset)]
        return [HubFile(name, length, digest, offset) for name, offset, length in members]

    def _ollama_files(self, rev: Revision, layers, sizes: dict[str, int],
                      out: dict[str, HubFile]) -> None:
        stem = rev.repository.rsplit("/", 1)[-1]
        weights, adapters, counts = None, [], {}
        for d in layers:
            kind = d.media_type[len(OLLAMA):] if d.media_type.startswith(OLLAMA) else None
            size = sizes.get(d.digest)
            if kind is None or size is None:
                continue
            n = counts[kind] = counts.get(kind, 0) + 1
            if kind == "model":
                path = _clean(_annotated(d)) or (f"{stem}.gguf" if n == 1
                                                 else f"{stem}-{n}.gguf")
                weights = weights or path
            elif kind in OLLAMA_NAMES:
                path = _nth(OLLAMA_NAMES[kind], n)
                if kind == "adapter":
                    adapters.append(path)
            else:
                continue
            out.setdefault(path, HubFile(path, size, d.digest))
        if weights is not None:
            parts = self._ollama_parts(rev.digest, layers, sizes)
            content = render_modelfile_for(weights, adapters, parts)
            out.setdefault(MODELFILE, HubFile(MODELFILE, len(content), content=content))

    def _ollama_parts(self, digest: str, layers, sizes: dict[str, int]) -> OllamaParts:
        cached = self._parts.get(digest)
        if cached is not None:
            return cached
        text: dict[str, str] = {}
        licenses = []
        for d in layers:
            kind = d.media_type[len(OLLAMA):] if d.media_type.startswith(OLLAMA) else None
            if kind not in ("template", "system", "params", "messages", "license"):
                continue
            size = sizes.get(d.digest, 0)
            if size > MAX_SMALL_LAYER:
                log.info("Modelfile of %s: skipping a %d-byte %s layer", digest, size, kind)
                continue
            value = b"".join(self.store.open(d.digest, 0, size)).decode("utf-8", "replace")
            if kind == "license":
                licenses.append(value)
            else:
                text.setdefault(kind, value)
        parts = OllamaParts(template=text.get("template"), system=text.get("system"),
                            params=_json(text.get("params"), dict),
                            messages=_json(text.get("messages"), list),
                            licenses=tuple(licenses))
        return self._parts.put(digest, parts)

    # ---- README and card data -------------------------------------------------------
    def _facts(self, rev: Revision, fmt: ModelFormat, base_url: str) -> ReadmeFacts:
        v = verifications.c
        with self.db.read() as conn:
            card = conn.execute(select(models.c.card)
                                .where(models.c.manifest_id == rev.manifest_id)).scalar()
            status, reason = conn.execute(
                select(manifests.c.status, manifests.c.status_reason)
                .where(manifests.c.id == rev.manifest_id)).one()
            last = conn.execute(
                select(v.id, v.verdict, v.backend, v.backend_version, v.generation_tps,
                       v.report, v.perplexity, v.reason)
                .where(v.manifest_id == rev.manifest_id).order_by(v.id.desc()).limit(1)).first()
        model = ModelCard.from_json(card) if card else None
        verification = None
        if last is not None:
            rss = _json(last.report, dict, limit=None) or {}
            peak = rss.get("peak_rss_bytes")
            verification = Verification(
                last.verdict, last.backend, last.backend_version, last.generation_tps,
                peak if isinstance(peak, int) else None, last.perplexity, last.reason)
        mlx = fmt.weight_format == SAFETENSORS and model is not None \
            and model.quantization_bits is not None
        return ReadmeFacts(rev.repository, rev.digest, rev.commit, fmt.kind, fmt.weight_format,
                           model, status, reason, verification, base_url.rstrip("/"), mlx)

    def readme(self, rev: Revision, fmt: ModelFormat, base_url: str = "") -> bytes:
        """The generated README.md of a model commit (blocking)."""
        return render_readme(self._facts(rev, fmt, base_url))

    def card_data(self, rev: Revision, files: list[HubFile], base_url: str = "") -> dict:
        """``cardData``: the front matter of the README.md the commit serves (its own,
        or the generated one); {} when there is none."""
        readme = next((f for f in files if f.path == README), None)
        if readme is None:
            return {}
        if readme.content is not None:
            data = front_matter(readme.content)
        elif readme.size > MAX_README:
            return {}
        else:
            data = front_matter(b"".join(self.open(readme, 0, readme.size)))
        # JSON-safe (YAML dates and the like become text).
        return json.loads(json.dumps(data or {}, default=str))


def _revision(name: str, row) -> Revision:
    return Revision(name, row.digest, commit_id(row.digest), row.media_type,
                    bytes(row.content), row.id, as_utc(row.created_at), row.status)


def _nth(name: str, n: int) -> str:
    """``template``, ``template-2``; ``params.json``, ``params-2.json``."""
    if n == 1:
        return name
    stem, dot, ext = name.partition(".")
    return f"{stem}-{n}{dot}{ext}"


def _layers(parsed: ParsedManifest):
    return parsed.blobs[1:] if parsed.media_type in IMAGE_TYPES else list(parsed.blobs)


def _annotated(d) -> str | None:
    a = d.annotations or {}
    path = a.get(FILEPATH) or a.get(TITLE)
    return path if isinstance(path, str) and path else None


def _json(text: str | None, kind: type, limit: int | None = MAX_SMALL_LAYER):
    if text is None or (limit is not None and len(text) > limit):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, kind) else None


def _tar_members(f) -> list[tuple[str, int, int]]:
    """``(path, offset, size)`` of each regular file of an uncompressed tar, in order;
    unsafe names are skipped."""
    out = []
    try:
        with tarfile.open(fileobj=f, mode="r:") as tar:
            for _ in range(MAX_TAR_MEMBERS):
                info = tar.next()
                if info is None:
                    break
                path = _clean(info.name)
                if info.isreg() and path is not None:
                    out.append((path, info.offset_data, info.size))
    except tarfile.TarError as exc:
        raise ValueError(f"not a readable tar: {exc}") from None
    return out


__all__ = ["COMMIT", "Commit", "HubFile", "HubService", "Revision", "check_path",
           "commit_id", "git_blob_id", "lfs_pointer"]
