"""Hub commits, pure: the NDJSON body of ``POST /api/models/<repo>/commit/<rev>``, file
paths, and the ModelPack manifest a commit becomes.

The body is one JSON object per line, as ``huggingface_hub`` writes it
(``_commit_api._prepare_commit_payload``)::

    {"key": "header", "value": {"summary": ..., "description": ..., "parentCommit"?: ...}}
    {"key": "lfsFile", "value": {"path", "algo": "sha256", "oid": <64 hex>, "size"?}}
    {"key": "file", "value": {"path", "content": <base64>, "encoding": "base64"}}
    {"key": "deletedFile", "value": {"path"}}
    {"key": "deletedFolder", "value": {"path"}}

The header comes first and once; every other line is an operation, applied in order. A
copy is sent by the client as ``file`` or ``lfsFile`` (without ``size``), so there is no
copy operation. Anything else (an unknown key, a missing or mistyped field, bad base64,
a path that is absolute, has ``.``/``..``/empty components or a ``.git`` component, a
control character) is refused whole with RequestInvalid (400) before anything is
stored.

A commit's files become a ModelPack manifest (``application/vnd.cncf.model.manifest.v1+json``)
shaped like the one ``assay push`` makes of a model directory: one ``.raw`` layer per
file annotated with its path (``org.cncf.model.filepath``) and name
(``org.opencontainers.image.title``), weights as ``weight``, README/LICENSE and markdown
as ``doc``, everything else (config, tokenizer) as ``weight.config``; the config's
``modelfs.diffIds`` lists the layers. Layers are sorted by path, so the same files in
any order give the same layers. The commit's summary, description and time are the
manifest's annotations.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from registry.errors import EntryUnknown, RequestInvalid

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODELPACK_WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
MODELPACK_WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
MODELPACK_DOC = "application/vnd.cncf.model.doc.v1.raw"
FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
SUMMARY = "org.huggingface.commit.summary"
DESCRIPTION = "org.huggingface.commit.description"

# Fixed limits (no settings): an inline ``file`` is small by the preupload answer
# (``REGULAR_MAX``); the body carries it base64-encoded, next to many LFS lines.
REGULAR_MAX = 1 << 20          # preupload: files up to 1 MiB go inline, larger ones LFS
MAX_INLINE_FILE = 10 << 20     # one inline file, decoded
MAX_COMMIT_BODY = 64 << 20     # the whole NDJSON body
MAX_PATH = 1024

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".onnx",
                   ".npz", ".msgpack", ".h5")
DOC_PREFIXES = ("readme", "license", "licence", "notice", "copying", "use_policy")
_OID = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class Header:
    summary: str
    description: str
    parent_commit: str | None


@dataclass(frozen=True)
class LfsFile:
    path: str
    oid: str            # sha256 hex
    size: int | None    # None: a copy (the client does not send it)


@dataclass(frozen=True)
class InlineFile:
    path: str
    content: bytes


@dataclass(frozen=True)
class DeletedFile:
    path: str


@dataclass(frozen=True)
class DeletedFolder:
    path: str


Operation = LfsFile | InlineFile | DeletedFile | DeletedFolder


@dataclass(frozen=True)
class Commit:
    header: Header
    operations: list[Operation]


@dataclass(frozen=True)
class Entry:
    """A file of a commit: its blob."""

    digest: str
    size: int


def check_path(path: object, *, what: str = "file path") -> str:
    """A repository file path, refused (RequestInvalid) unless it is a relative POSIX path
    of non-empty components, none ``.``, ``..`` or ``.git``, without control characters
    or backslashes."""
    if not isinstance(path, str) or not path:
        raise RequestInvalid(f"{what} must be a non-empty string")
    if len(path) > MAX_PATH:
        raise RequestInvalid(f"{what} is longer than {MAX_PATH} characters")
    if _CONTROL.search(path):
        raise RequestInvalid(f"{what} {path[:80]!r} contains a control character or a "
                             "backslash")
    if path.startswith("/"):
        raise RequestInvalid(f"{what} {path[:80]!r} is absolute: paths are relative to the "
                             "repository")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise RequestInvalid(f"{what} {path[:80]!r} has an empty, '.' or '..' component")
        if part.lower() == ".git":
            raise RequestInvalid(f"{what} {path[:80]!r} is inside .git")
    return path


def _field(value: dict, key: str, kind: type, line: int, *, required: bool = True):
    got = value.get(key)
    if got is None and not required:
        return None
    if not isinstance(got, kind) or (kind is int and isinstance(got, bool)):
        raise RequestInvalid(f"commit line {line}: '{key}' must be a {kind.__name__}")
    return got


def _header(value: dict, line: int) -> Header:
    parent = _field(value, "parentCommit", str, line, required=False)
    return Header(_field(value, "summary", str, line, required=False) or "",
                  _field(value, "description", str, line, required=False) or "", parent)


def _lfs_file(value: dict, line: int) -> LfsFile:
    algo = value.get("algo", "sha256")
    if algo != "sha256":
        raise RequestInvalid(f"commit line {line}: LFS algo {str(algo)[:20]!r} is not "
                             "supported (only sha256)")
    oid = _field(value, "oid", str, line)
    if not _OID.fullmatch(oid):
        raise RequestInvalid(f"commit line {line}: LFS oid {oid[:80]!r} is not 64 lowercase "
                             "hex digits")
    size = _field(value, "size", int, line, required=False)
    if size is not None and size < 0:
        raise RequestInvalid(f"commit line {line}: size must not be negative")
    return LfsFile(check_path(value.get("path")), oid, size)


def _inline_file(value: dict, line: int) -> InlineFile:
    path = check_path(value.get("path"))
    encoding = value.get("encoding", "base64")
    if encoding != "base64":
        raise RequestInvalid(f"commit line {line}: encoding {str(encoding)[:20]!r} is not "
                             "supported (only base64)")
    text = _field(value, "content", str, line)
    too_large = RequestInvalid(f"commit line {line}: inline file {path!r} is larger than "
                               f"{MAX_INLINE_FILE} bytes: upload it through LFS")
    if len(text) > (MAX_INLINE_FILE // 3 + 1) * 4:  # before decoding it
        raise too_large
    try:
        content = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestInvalid(f"commit line {line}: the content of {path!r} is not valid "
                             "base64") from None
    if len(content) > MAX_INLINE_FILE:
        raise too_large
    return InlineFile(path, content)


_OPERATIONS = {
    "lfsFile": _lfs_file,
    "file": _inline_file,
    "deletedFile": lambda v, line: DeletedFile(check_path(v.get("path"))),
    "deletedFolder": lambda v, line: DeletedFolder(
        check_path(v.get("path").rstrip("/") if isinstance(v.get("path"), str)
                   else v.get("path"), what="folder path")),
}


def parse_commit(body: bytes) -> Commit:
    """The commit a body states; RequestInvalid (400) for anything malformed (see the
    module docstring)."""
    if len(body) > MAX_COMMIT_BODY:
        raise RequestInvalid(f"the commit body is larger than {MAX_COMMIT_BODY} bytes")
    header: Header | None = None
    operations: list[Operation] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise RequestInvalid(f"commit line {number} is not JSON") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise RequestInvalid(f"commit line {number} must be an object with 'key' and "
                                 "an object 'value'")
        key, value = item.get("key"), item["value"]
        if key == "header":
            if header is not None or operations:
                raise RequestInvalid(f"commit line {number}: the header must come first, "
                                     "once")
            header = _header(value, number)
        elif key in _OPERATIONS:
            if header is None:
                raise RequestInvalid("the commit's first line must be its header")
            operations.append(_OPERATIONS[key](value, number))
        else:
            raise RequestInvalid(f"commit line {number}: unknown operation "
                                 f"{str(key)[:40]!r} (known: header, "
                                 f"{', '.join(_OPERATIONS)})")
    if header is None:
        raise RequestInvalid("the commit body is empty: it needs a header line")
    return Commit(header, operations)


def apply(files: dict[str, Entry], operations: list[Operation],
          added: dict[str, Entry]) -> dict[str, Entry]:
    """The files after ``operations`` on ``files`` (path -> entry), in order; ``added``
    gives the entry of each added path. Deleting a path (or folder) that is not there
    raises EntryUnknown (404)."""
    out = dict(files)
    for op in operations:
        if isinstance(op, (LfsFile, InlineFile)):
            out[op.path] = added[op.path]
        elif isinstance(op, DeletedFile):
            if out.pop(op.path, None) is None:
                raise EntryUnknown(f"cannot delete {op.path!r}: no such file")
        else:
            prefix = op.path + "/"
            gone = [p for p in out if p.startswith(prefix)]
            if not gone:
                raise EntryUnknown(f"cannot delete folder {op.path!r}: no files in it")
            for p in gone:
                del out[p]
    return out


def media_type(path: str) -> str:
    """The ModelPack layer media type of a file, by its name (as ``assay push`` picks)."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(WEIGHT_SUFFIXES):
        return MODELPACK_WEIGHT
    if name.startswith(DOC_PREFIXES) or name.endswith((".md", ".rst")):
        return MODELPACK_DOC
    return MODELPACK_WEIGHT_CONFIG


def weight_format(paths: list[str]) -> str | None:
    """``safetensors`` or ``gguf`` (GGUF wins, as in classification), None for neither."""
    lower = [p.lower() for p in paths]
    if any(p.endswith(".gguf") for p in lower):
        return "gguf"
    if any(p.endswith(".safetensors") for p in lower):
        return "safetensors"
    return None


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def config_bytes(files: dict[str, Entry], name: str, created: str) -> bytes:
    """The ModelPack config of a commit's files (the shape of ``assay push``'s)."""
    inner: dict = {}
    fmt = weight_format(list(files))
    if fmt:
        inner["format"] = fmt
    return _json({
        "descriptor": {"createdAt": created, "name": name},
        "modelfs": {"type": "layers", "diffIds": [files[p].digest for p in sorted(files)]},
        "config": inner,
    })


def manifest_bytes(files: dict[str, Entry], config: bytes, config_digest: str,
                   header: Header, created: str) -> bytes:
    """The ModelPack manifest of a commit: its files as layers sorted by path."""
    layers = [{"mediaType": media_type(p), "digest": files[p].digest, "size": files[p].size,
               "annotations": {FILEPATH: p, TITLE: p.rsplit("/", 1)[-1]}}
              for p in sorted(files)]
    annotations = {CREATED: created}
    if header.summary:
        annotations[SUMMARY] = header.summary
    if header.description:
        annotations[DESCRIPTION] = header.description
    return _json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": MODELPACK_ARTIFACT,
        "config": {"mediaType": MODELPACK_CONFIG, "digest": config_digest,
                   "size": len(config)},
        "layers": layers, "annotations": annotations,
    })
