"""The files of a Hub commit: the file view of any model manifest, and the files made up
for it (``README.md``, Ollama's ``Modelfile``).

By manifest kind (``registry.formats.classify``):

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

Only blobs that are stored and not quarantined (``assay scrub``) are files: a layer
``/v2/`` would answer BLOB_UNKNOWN for is left out, as an absent one is. A generated
``Modelfile`` reads each distinct small layer once, at most MAX_SMALL_LAYER each and
MAX_PARTS_BYTES in all, so a manifest naming one license blob thousands of times makes
one ``LICENSE`` line, not thousands; it and the README are made only when a listing or
that very file is asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from registry.db.tables import blobs, manifests, models, verifications
from registry.errors import EntryUnknown, RequestInvalid
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
from registry.services.common import Service
from registry.storage.ranged import open_blob

if TYPE_CHECKING:
    from registry.services.hub import Revision

log = logging.getLogger("assay.hub")

README = "README.md"
MODELFILE = "Modelfile"
MAX_TAR_MEMBERS = 1024
MAX_SMALL_LAYER = 1024 * 1024   # Ollama template/system/params/messages/license layers
MAX_PARTS_BYTES = 1024 * 1024  # all of them together, for one generated Modelfile
MAX_README = 1024 * 1024        # a model's own README read for its front matter
OLLAMA = "application/vnd.ollama.image."
OLLAMA_NAMES = {"template": "template", "system": "system", "params": "params.json",
                "license": "LICENSE", "messages": "messages.json",
                "adapter": "adapter.gguf", "projector": "mmproj.gguf"}
DOCKER_NAMES = {"application/vnd.docker.ai.license": "LICENSE",
                "application/vnd.docker.ai.chat.template.jinja": "template.jinja",
                "application/vnd.docker.ai.mmproj": "mmproj.gguf"}
LFS_SPEC = "https://git-lfs.github.com/spec/v1"


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


class _Lru:
    """A small thread-safe LRU map (content-addressed values: never stale)."""

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


class HubFiles(Service):
    """The file view of commits (the base of ``HubService``)."""

    def __init__(self, db, store, settings):
        super().__init__(db, store, settings)
        self._tars = _Lru()      # blob digest -> [(name, offset, size)]
        self._parts = _Lru(64)   # manifest digest -> Ollama parts (<= MAX_PARTS_BYTES each)

    def files(self, rev: Revision, base_url: str = "", *, only: str | None = None
              ) -> list[HubFile]:
        """Every file of a commit, in manifest order (README.md and Modelfile last when
        generated). Blocking (reads tar headers and small layers): run in a thread.
        ``only``: the caller wants that one path (README.md and Modelfile are generated
        only for a listing or for themselves)."""
        parsed = parse_manifest(rev.content, rev.media_type)
        fmt = classify(parsed)
        layers = _layers(parsed)
        out: dict[str, HubFile] = {}
        sizes = self._sizes([d.digest for d in layers])
        if fmt is not None and fmt.kind == "ollama":
            self._ollama_files(rev, layers, sizes, out, only in (None, MODELFILE))
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
                                     .where(blobs.c.digest.in_(set(digests)),
                                            blobs.c.quarantined_at.is_(None))).all())

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
                      out: dict[str, HubFile], modelfile: bool) -> None:
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
        if weights is not None and modelfile:
            parts = self._ollama_parts(rev.digest, layers, sizes)
            content = render_modelfile_for(weights, adapters, parts)
            out.setdefault(MODELFILE, HubFile(MODELFILE, len(content), content=content))

    def _ollama_parts(self, digest: str, layers, sizes: dict[str, int]) -> OllamaParts:
        cached = self._parts.get(digest)
        if cached is not None:
            return cached
        text: dict[str, str] = {}
        licenses = []
        seen, budget = set(), MAX_PARTS_BYTES
        for d in layers:
            kind = d.media_type[len(OLLAMA):] if d.media_type.startswith(OLLAMA) else None
            if kind not in ("template", "system", "params", "messages", "license") \
                    or d.digest in seen or (kind != "license" and kind in text):
                continue
            seen.add(d.digest)
            size = sizes.get(d.digest)
            if size is None:
                continue
            if size > min(MAX_SMALL_LAYER, budget):
                log.info("Modelfile of %s: skipping a %d-byte %s layer (%d bytes of the "
                         "small layers' budget left)", digest, size, kind, budget)
                continue
            budget -= size
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


__all__ = ["MODELFILE", "README", "HubFile", "HubFiles", "check_path", "git_blob_id",
           "lfs_pointer"]
