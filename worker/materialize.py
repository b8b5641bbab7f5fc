"""Model files on local disk for the verifier, from whichever blob store holds them.

- Filesystem store: blobs are read **in place**. A single-file GGUF is handed over as its
  blob path (no copy, no link); a model directory (safetensors, sharded GGUF) is a fresh
  work directory of hard links to the blobs, named by their ``org.cncf.model.filepath``
  (symbolic links when the cache is on another filesystem).
- S3: each blob is downloaded once into ``<model cache>/blobs/sha256/<hex>`` (digest
  checked, renamed into place atomically) and reused across jobs; the cache is an LRU
  bounded by ``model_cache_bytes`` (least recently used first, by mtime, which every use
  touches). A job works on hard links to cache entries, so an eviction by another worker
  never pulls a file from under a running verification.

Layers that are tar archives (ModelPack ``.tar`` / ``.tar+gzip``, Docker's config tar) are
unpacked into the work directory; ``tar+zstd`` is refused (``LayoutUnsupported``).

Errors: ``LayoutUnsupported`` says the model cannot be verified as pushed (a permanent
failure of the model); ``MaterializeError`` is an infrastructure failure (store down,
disk full: retry the job).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from registry.formats.classify import GGUF, ModelFile, ModelFormat
from registry.storage import BlobStore
from registry.storage.filesystem import FilesystemBlobStore


class MaterializeError(Exception):
    """The files could not be made available (an infrastructure failure: retry)."""


class LayoutUnsupported(Exception):
    """The model's layers cannot be turned into files the verifier can run."""


class Materializer:
    def __init__(self, store: BlobStore, cache_root: Path, cache_bytes: int):
        self.store = store
        self.root = Path(cache_root)
        self.cache_bytes = cache_bytes
        self.in_place = isinstance(store, FilesystemBlobStore)
        self._swept = False

    # ---- one blob ------------------------------------------------------------------------
    def blob(self, digest: str, size: int) -> Path:
        """A local path holding blob ``digest`` (in place, or in the LRU cache)."""
        if self.in_place:
            path = self.store.blob_path(digest)
            if not path.is_file():
                raise MaterializeError(f"blob {digest} is missing from the store")
            return path
        algorithm, _, hexdigest = digest.partition(":")
        cached = self.root / "blobs" / algorithm / hexdigest
        try:
            if cached.stat().st_size == size:
                os.utime(cached)  # most recently used
                return cached
        except FileNotFoundError:
            pass
        self._make_room(size)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{hexdigest}.{uuid.uuid4().hex}")
        try:
            h = hashlib.new(algorithm)
            with open(tmp, "wb") as out:
                for chunk in self.store.open(digest, 0, size):
                    h.update(chunk)
                    out.write(chunk)
            if f"{algorithm}:{h.hexdigest()}" != digest:
                raise MaterializeError(f"blob {digest} read back with another digest")
            os.replace(tmp, cached)
        except MaterializeError:
            raise
        except Exception as exc:
            raise MaterializeError(f"could not fetch blob {digest}: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return cached

    def _make_room(self, incoming: int) -> None:
        base = self.root / "blobs"
        if not base.is_dir():
            return
        entries = []
        for path in base.glob("*/*"):
            if path.name.startswith("."):  # another worker's download in progress
                continue
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                entries.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total + incoming <= self.cache_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # jobs hold hard links: their files stay
            total -= size

    # ---- one model -----------------------------------------------------------------------
    @contextlib.contextmanager
    def model(self, fmt: ModelFormat) -> Iterator[Path]:
        """The path to hand the verifier: a GGUF file, or a model directory. Work
        directories are removed afterwards."""
        weights = fmt.weights
        if (self.in_place and fmt.weight_format == GGUF and len(weights) == 1
                and weights[0].archive is None):
            d = weights[0].descriptor
            yield self.blob(d.digest, d.size)
            return
        self._sweep_work()
        work = self.root / "work" / f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            try:
                work.mkdir(parents=True)
                files = weights if fmt.weight_format == GGUF else (fmt.files or weights)
                unpacked: set[str] = set()
                for f in files:  # llama.cpp needs only the shards; MLX the whole directory
                    self._place(f, work, unpacked)
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                # Two layers claim clashing paths ("config" and "config/x.json"): the
                # model's layout, not the machine, is at fault.
                raise LayoutUnsupported(f"the model's file paths collide: {exc}") from None
            except OSError as exc:
                raise MaterializeError(f"could not prepare the model files: {exc}") from exc
            yield _target(work, weights[0].path) if fmt.weight_format == GGUF else work
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _sweep_work(self) -> None:
        """Remove work directories of worker processes that died (SIGKILL skips the
        ``finally`` that removes them); the pid in the name says whose they are."""
        if self._swept:
            return
        self._swept = True
        with contextlib.suppress(FileNotFoundError):
            for entry in (self.root / "work").iterdir():
                pid = entry.name.split("-", 1)[0]
                if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                    shutil.rmtree(entry, ignore_errors=True)

    def _place(self, f: ModelFile, work: Path, unpacked: set[str]) -> None:
        d = f.descriptor
        if f.archive is not None and d.digest in unpacked:
            return
        source = self.blob(d.digest, d.size)
        if f.archive is None:
            target = _target(work, f.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                return
            for _ in range(3):
                try:
                    os.link(source, target)
                    return
                except FileNotFoundError:  # evicted by another worker meanwhile: fetch again
                    source = self.blob(d.digest, d.size)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
                    # Another filesystem (or no hard links here): a symbolic link, which
                    # only the in-place store may use, as its blobs are never evicted.
                    if not self.in_place:
                        raise MaterializeError(f"cannot link {source} into {work}: {exc}") \
                            from exc
                    os.symlink(source, target)
                    return
            raise MaterializeError(f"blob {d.digest} keeps being evicted from the cache")
        if f.archive not in ("tar", "tar+gzip"):
            raise LayoutUnsupported(f"{f.path} is in a {f.archive} layer, which the worker "
                                    "cannot unpack")
        unpacked.add(d.digest)
        try:
            with tarfile.open(source, "r:gz" if f.archive == "tar+gzip" else "r:") as tar:
                tar.extractall(work, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise LayoutUnsupported(f"cannot unpack the layer holding {f.path}: {exc}") \
                from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _target(root: Path, relpath: str) -> Path:
    norm = posixpath.normpath(relpath)
    if norm.startswith(("/", "../")) or norm in ("..", "."):
        raise LayoutUnsupported(f"refusing the file path {relpath!r}")
    return root.joinpath(*norm.split("/"))
