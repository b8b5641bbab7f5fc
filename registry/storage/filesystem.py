"""Filesystem blob store: blobs and uploads under one root directory.

Layout (see ``registry.storage``): ``blobs/<alg>/<2 hex>/<hex>``,
``quarantine/<alg>/<2 hex>/<hex>`` and ``uploads/<session>/data``. Upload data is
written at explicit offsets into one file; sealing truncates it to the agreed size and
fsyncs it (optional); commit renames it into place, which is atomic on POSIX: readers
see the whole blob or nothing. Quarantine is a rename too.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from registry.errors import BlobUnknown, BlobUploadUnknown, StorageError
from registry.storage import BlobStore, UploadWriter, blob_key, quarantine_key


@contextlib.contextmanager
def _translate():
    """Map OS errors to StorageError at the boundary (missing files are handled by callers)."""
    try:
        yield
    except (BlobUnknown, BlobUploadUnknown, StorageError):
        raise
    except OSError as exc:
        raise StorageError(f"filesystem storage: {exc.strerror or exc}") from exc


def _load_sync_file_range():
    """Linux's sync_file_range(2), to start writeback of a range without waiting for it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2
_IOV_MAX = 1024


def _mtime(entry: os.DirEntry) -> float | None:
    """An entry's mtime, or None if it vanished since it was listed (commit, cancel, GC)."""
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter(UploadWriter):
    """Writes one chunk at ``offset``.

    With ``fsync``, each batch's writeback starts as soon as it is written, but nothing
    waits for it here: durability is enforced once, at commit (fdatasync before the
    rename). A chunk lost to an OS crash before commit cannot become a corrupt blob:
    the in-process hash died with the process, so commit re-hashes what is on disk and
    refuses the upload with DIGEST_INVALID.
    """

    def __init__(self, path: Path, offset: int, fsync: bool):
        self._fsync = fsync
        with _translate():
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            size = os.fstat(fd).st_size
            if size < offset:
                os.close(fd)
                raise StorageError(
                    f"upload data is shorter ({size} bytes) than its recorded offset {offset}"
                )
            # Whatever lies beyond the recorded offset came from a request that failed.
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        self._fd: int | None = fd
        self._offset = offset
        self._pos = offset

    def write(self, data: bytes) -> None:
        self.writelines([data])

    def writelines(self, parts: list[bytes]) -> None:
        with _translate():
            for i in range(0, len(parts), _IOV_MAX):
                batch = parts[i:i + _IOV_MAX]
                total = sum(len(p) for p in batch)
                n = os.writev(self._fd, batch)
                if n < total:  # short write: finish it the slow way
                    rest = memoryview(b"".join(batch))[n:]
                    while rest:
                        rest = rest[os.write(self._fd, rest):]
                if self._fsync and _sync_file_range is not None:
                    # Start writing this range to disk now, so the fdatasync at close
                    # only waits for the tail instead of flushing the whole upload.
                    _sync_file_range(self._fd, self._pos, total, _SYNC_FILE_RANGE_WRITE)
                self._pos += total

    def close(self) -> None:
        if self._fd is not None:
            with _translate():
                os.close(self._fd)
            self._fd = None

    def abort(self) -> None:
        if self._fd is not None:
            with _translate():
                os.ftruncate(self._fd, self._offset)
                os.close(self._fd)
            self._fd = None


class FilesystemBlobStore(BlobStore):
    def __init__(self, root: Path, fsync: bool = True):
        self.root = Path(root)
        self.fsync = fsync
        with _translate():
            (self.root / "blobs").mkdir(parents=True, exist_ok=True)
            (self.root / "uploads").mkdir(parents=True, exist_ok=True)

    def ping(self) -> None:
        for path in (self.root, self.root / "blobs", self.root / "uploads"):
            if not path.is_dir():
                raise StorageError(f"filesystem storage: {path} is not a directory")
            if not os.access(path, os.W_OK | os.X_OK):
                raise StorageError(f"filesystem storage: {path} is not writable")

    # ---- paths -------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def _upload_dir(self, session: str) -> Path:
        # Session ids are generated by us (uuid4 hex); refuse anything else so a
        # crafted id can never point outside the uploads directory.
        if not session or not session.replace("-", "").isalnum():
            raise BlobUploadUnknown(f"invalid upload session {session!r}")
        return self.root / "uploads" / session

    def _upload_file(self, session: str) -> Path:
        return self._upload_dir(session) / "data"

    # ---- committed blobs -----------------------------------------------------
    def stat(self, digest: str) -> int | None:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"filesystem storage: {exc}") from exc

    def open(self, digest: str, offset: int = 0, length: int | None = None,
             chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            f = open(self.blob_path(digest), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise BlobUnknown(f"blob {digest} is not stored") from None
        except OSError as exc:
            raise StorageError(f"filesystem storage: {exc}") from exc
        return self._read(f, offset, length, chunk_size)

    @staticmethod
    def _read(f, offset: int, length: int | None, chunk_size: int) -> Iterator[bytes]:
        with f, _translate():
            f.seek(offset)
            remaining = length if length is not None else -1
            while remaining != 0:
                n = chunk_size if remaining < 0 else min(chunk_size, remaining)
                data = f.read(n)
                if not data:
                    if remaining > 0:
                        raise StorageError("blob is shorter than expected")
                    return
                remaining -= len(data) if remaining > 0 else 0
                yield data

    def delete(self, digest: str) -> None:
        with _translate(), contextlib.suppress(FileNotFoundError):
            self.blob_path(digest).unlink()

    def quarantine(self, digest: str) -> bool:
        src, dst = self.blob_path(digest), self.root / quarantine_key(digest)
        with _translate():
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(src, dst)  # atomic: the blob is served whole or not at all
            except FileNotFoundError:
                return False
            if self.fsync:
                _fsync_dir(src.parent)
                _fsync_dir(dst.parent)
        return True

    def iter_blobs(self) -> Iterator[tuple[str, float]]:
        base = self.root / "blobs"
        with _translate():
            for alg_dir in sorted(base.iterdir()):
                for prefix in sorted(alg_dir.iterdir()):
                    for entry in os.scandir(prefix):
                        if entry.name.startswith("."):
                            continue
                        mtime = _mtime(entry)
                        if mtime is not None:
                            yield f"{alg_dir.name}:{entry.name}", mtime

    # ---- uploads -------------------------------------------------------------
    def begin_upload(self, session: str) -> None:
        with _translate():
            d = self._upload_dir(session)
            d.mkdir(parents=True, exist_ok=True)
            self._upload_file(session).touch()

    def upload_writer(self, session: str, offset: int) -> UploadWriter:
        path = self._upload_file(session)
        if not path.parent.exists():
            raise BlobUploadUnknown(f"upload {session} has no stored data")
        return _FileWriter(path, offset, self.fsync)

    def read_upload(self, session: str, size: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            f = open(self._upload_file(session), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise BlobUploadUnknown(f"upload {session} has no stored data") from None
        return self._read(f, 0, size, chunk_size)

    def seal_upload(self, session: str, size: int) -> None:
        try:
            f = open(self._upload_file(session), "r+b")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise BlobUploadUnknown(f"upload {session} has no stored data") from None
        with f, _translate():
            actual = os.fstat(f.fileno()).st_size
            if actual < size:
                raise StorageError(f"upload {session} holds {actual} bytes, fewer than {size}")
            if actual != size:
                f.truncate(size)
            if self.fsync:  # the bytes are on disk before the blob can become visible
                os.fdatasync(f.fileno())

    def commit_upload(self, session: str, size: int, digest: str) -> bool:
        src = self._upload_file(session)
        dst = self.blob_path(digest)
        with _translate():
            if not src.exists():
                raise BlobUploadUnknown(f"upload {session} has no stored data")
            if dst.exists():
                self.cancel_upload(session)
                return False
            if src.stat().st_size != size:
                self.seal_upload(session, size)  # a caller that skipped seal_upload
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)  # atomic; concurrent commits of equal content are harmless
            if self.fsync:
                _fsync_dir(dst.parent)
            shutil.rmtree(self._upload_dir(session), ignore_errors=True)
            return True

    def cancel_upload(self, session: str) -> None:
        shutil.rmtree(self._upload_dir(session), ignore_errors=True)

    def iter_uploads(self) -> Iterator[tuple[str, float]]:
        with _translate():
            for entry in os.scandir(self.root / "uploads"):
                mtime = _mtime(entry)
                if mtime is not None:
                    yield entry.name, mtime
