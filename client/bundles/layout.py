"""An OCI image layout inside a tar, written and read as a stream (pure: files, no network).

The layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md)::

    oci-layout             {"imageLayoutVersion": "1.0.0"}            first
    blobs/sha256/<hex>     every blob and every manifest, once
    index.json             the bundle's manifests (an OCI image index)  last

Every member is written with a fixed owner, mode and time (0), so the same content in the
same order makes the same tar. ``LayoutWriter`` writes into ``FILE.part`` and renames it
into place only when ``index.json`` is written: a failed export leaves no half file. A
blob is copied into the tar while it arrives (``add_stream``), hashed as it goes, its size
known from its descriptor; a mismatch fails the member and the export.

``LayoutReader`` reads a tar such as the writer makes (or skopeo's ``oci-archive:``) without
extracting it: every member is checked first (only the names above, plain files and
directories; no links, devices, sparse files, absolute or ``..`` paths, duplicates), then
blobs are read in place, by their offset in the tar. ``verify`` hashes every blob.
Compressed tars are refused (a blob must be readable at an offset).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from client.errors import ClientError, InputError, IntegrityError

BLOCK = 1024 * 1024
LAYOUT_VERSION = "1.0.0"
OCI_LAYOUT, INDEX_JSON = "oci-layout", "index.json"
MAX_JSON = 16 * 1024 * 1024  # index.json and manifests are read whole; never this large
_BLOB = re.compile(r"blobs/sha256/([a-f0-9]{64})")
_DIRECTORIES = {"", "blobs", "blobs/sha256"}


def blob_name(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[a-f0-9]{64}", hexpart):
        raise ClientError(f"{digest!r}: only sha256 digests can be carried in a bundle")
    return f"blobs/sha256/{hexpart}"


def _info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.uid, info.gid = size, 0, 0, 0
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    return info


class _Checked:
    """A file object over ``chunks`` that tarfile copies from: exactly ``size`` bytes whose
    sha256 must be ``digest``; the read that completes them checks it."""

    def __init__(self, chunks: Iterator[bytes | memoryview], digest: str, size: int,
                 what: str):
        self.chunks, self.digest, self.size, self.what = chunks, digest, size, what
        self.hash = hashlib.sha256()
        self.seen = 0
        self.pending = memoryview(b"")

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.seen if n < 0 else n
        out = bytearray()
        while len(out) < n:
            if not self.pending:
                # Copied out before the next chunk: a chunk may be a view of a reused buffer.
                chunk = next(self.chunks, None)
                if chunk is None:
                    break
                self.pending = memoryview(chunk)
            take = self.pending[:n - len(out)]
            out += take
            self.pending = self.pending[len(take):]
        self.seen += len(out)
        self.hash.update(out)
        if len(out) < n:
            raise IntegrityError(f"{self.what}: the data ended after {self.seen} of "
                                 f"{self.size} bytes")
        if self.seen >= self.size:
            self.check()
        return bytes(out)

    def check(self) -> None:
        """At the declared size: nothing more may follow, and the digest must match."""
        if self.seen > self.size or self.pending or any(len(c) for c in self.chunks):
            raise IntegrityError(f"{self.what}: more than the {self.size} bytes its "
                                 "descriptor declares")
        if "sha256:" + self.hash.hexdigest() != self.digest:
            raise IntegrityError(f"{self.what}: the bytes hash to sha256:"
                                 f"{self.hash.hexdigest()}, not {self.digest}")


class LayoutWriter:
    """Writes ``path`` (through ``path.part``). Use as a context manager: leaving it with
    an exception removes the part file; ``close(index)`` finishes the layout."""

    def __init__(self, path: Path):
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.written: dict[str, int] = {}  # digest -> size
        try:
            self.file = open(self.part, "wb")  # noqa: SIM115 - closed by close()/abort()
        except OSError as exc:
            raise InputError(f"cannot write {self.part}: {exc.strerror or exc}") from None
        self.tar = tarfile.open(fileobj=self.file, mode="w",  # noqa: SIM115 - as the file
                                format=tarfile.PAX_FORMAT, copybufsize=BLOCK)
        self._add_bytes(OCI_LAYOUT, json.dumps({"imageLayoutVersion": LAYOUT_VERSION})
                        .encode())
        for directory in ("blobs", "blobs/sha256"):
            self.tar.addfile(_info(directory, directory=True))

    def __enter__(self) -> LayoutWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.abort()

    def has(self, digest: str) -> bool:
        return digest in self.written

    def add_bytes(self, digest: str, data: bytes, what: str = "") -> None:
        """A small blob (a manifest, a config) held in memory; checked against
        ``digest``. Written once however often it is added."""
        self.add_stream(digest, len(data), iter([data]), what)

    def add_stream(self, digest: str, size: int, chunks: Iterator[bytes | memoryview],
                   what: str = "") -> None:
        """Copy blob ``digest`` of ``size`` bytes from ``chunks`` into the tar as they
        come; ``IntegrityError`` when they are not exactly those bytes."""
        if self.has(digest):
            return
        name = blob_name(digest)
        checked = _Checked(chunks, digest, size, what or digest)
        if size == 0:  # tarfile reads nothing for an empty member: check it here
            checked.check()
        self.tar.addfile(_info(name, size), checked)
        self.written[digest] = size

    def _add_bytes(self, name: str, data: bytes) -> None:
        self.tar.addfile(_info(name, len(data)), _Checked(iter([data]), "sha256:" +
                                                          hashlib.sha256(data).hexdigest(),
                                                          len(data), name))

    def close(self, index: dict) -> int:
        """Write ``index.json``, flush to disk and rename into place; the tar's size."""
        self._add_bytes(INDEX_JSON, json.dumps(index, indent=2).encode())
        self.tar.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.part, self.path)
        return self.path.stat().st_size

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.tar.close()
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.part.unlink()


def _member_name(member: tarfile.TarInfo, tar_path: Path) -> str:
    """The member's name in the layout, or a ``ClientError`` saying why it is refused."""
    raw = member.name
    pure = PurePosixPath(raw)
    if not raw or "\\" in raw or "\x00" in raw or pure.is_absolute() or ".." in pure.parts:
        raise ClientError(f"{tar_path}: refusing the member {raw!r}: its path leaves the "
                          "layout")
    name = "/".join(p for p in pure.parts if p != ".")
    if member.issym() or member.islnk():
        raise ClientError(f"{tar_path}: refusing the link {raw!r}: a bundle holds files only")
    if member.isdir():
        if name not in _DIRECTORIES:
            raise ClientError(f"{tar_path}: unexpected directory {raw!r} (not an OCI layout "
                              "made by assay export)")
        return name
    if not member.isfile() or member.issparse():
        raise ClientError(f"{tar_path}: refusing {raw!r}: not a plain file")
    if name not in (OCI_LAYOUT, INDEX_JSON) and not _BLOB.fullmatch(name):
        raise ClientError(f"{tar_path}: unexpected member {raw!r} (an OCI layout holds "
                          "oci-layout, index.json and blobs/sha256/<hex>)")
    return name


class LayoutReader:
    """A layout tar opened for reading (see the module's text). Thread-safe reads: every
    read is a ``pread`` at the blob's offset."""

    def __init__(self, path: Path):
        self.path = path
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(path, "r:") as tar:
                for member in tar:
                    name = _member_name(member, path)
                    if member.isdir():
                        continue
                    if name in self.members:
                        raise ClientError(f"{path}: {name!r} appears twice")
                    self.members[name] = member
            self.fd = os.open(path, os.O_RDONLY)
        except tarfile.ReadError as exc:
            raise ClientError(f"{path}: not an uncompressed tar ({exc}); a bundle is "
                              "what assay export writes") from None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        for required in (OCI_LAYOUT, INDEX_JSON):
            if required not in self.members:
                raise ClientError(f"{path}: not an OCI image layout: no {required}")
        version = self.json(OCI_LAYOUT).get("imageLayoutVersion")
        if version != LAYOUT_VERSION:
            raise ClientError(f"{path}: unsupported imageLayoutVersion {version!r}")

    def __enter__(self) -> LayoutReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def blob_digests(self) -> list[str]:
        return ["sha256:" + name.rsplit("/", 1)[1] for name in self.members
                if name.startswith("blobs/")]

    def size(self, digest: str) -> int | None:
        member = self.members.get(blob_name(digest))
        return None if member is None else member.size

    def chunks(self, name: str, offset: int = 0, length: int | None = None,
               on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes]:
        """The bytes ``[offset, offset+length)`` of member ``name``, in blocks."""
        member = self.members[name]
        length = member.size - offset if length is None else length
        if offset < 0 or length < 0 or offset + length > member.size:
            raise ClientError(f"{self.path}: {name}: range outside the member")
        position = member.offset_data + offset
        while length:
            block = os.pread(self.fd, min(BLOCK, length), position)
            if not block:
                raise ClientError(f"{self.path}: the tar ends inside {name}")
            position += len(block)
            length -= len(block)
            if on_bytes:
                on_bytes(len(block))
            yield block

    def read(self, name: str, limit: int = MAX_JSON) -> bytes:
        member = self.members.get(name)
        if member is None:
            raise ClientError(f"{self.path}: no {name}")
        if member.size > limit:
            raise ClientError(f"{self.path}: {name} is {member.size} bytes, more than the "
                              f"{limit} a bundle's JSON may take")
        return b"".join(self.chunks(name))

    def json(self, name: str) -> dict:
        try:
            doc = json.loads(self.read(name))
        except (ValueError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict):
            raise ClientError(f"{self.path}: {name} is not a JSON object")
        return doc

    def blob(self, digest: str, limit: int = MAX_JSON) -> bytes:
        """A small blob (a manifest), checked against its digest."""
        data = self.read(blob_name(digest), limit)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"{self.path}: {digest} does not match its content")
        return data

    def verify(self, digests: list[str],
               on_bytes: Callable[[int], None] | None = None) -> None:
        """Hash every blob of ``digests``: ``IntegrityError`` names the first that does
        not match (a tampered or damaged bundle)."""
        for digest in digests:
            h = hashlib.sha256()
            for block in self.chunks(blob_name(digest), on_bytes=on_bytes):
                h.update(block)
            if "sha256:" + h.hexdigest() != digest:
                raise IntegrityError(f"{self.path}: blob {digest} is damaged or was changed "
                                     f"(its bytes hash to sha256:{h.hexdigest()}); nothing "
                                     "was pushed")
