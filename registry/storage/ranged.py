"""Read part of a stored blob through a file object, fetching only the bytes asked for.

Header readers (GGUF, safetensors, tar) want ``read``/``seek`` on a file. ``open_blob``
gives them one over the window ``[start, start + size)`` of a blob:

- filesystem store: the blob file itself, read with ``pread`` (no copy, no mmap);
- any other store (S3): every ``read(n)`` is one ranged GET of exactly those ``n`` bytes,
  so a reader that asks for growing chunks downloads little more than the header and
  never the whole weights.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

from registry.errors import BlobUnknown, StorageError
from registry.storage import BlobStore
from registry.storage.filesystem import FilesystemBlobStore


class BlobWindow(io.RawIOBase):
    """A read-only, seekable file over ``size`` bytes served by ``fetch(offset, n)``
    (offsets relative to the window)."""

    def __init__(self, fetch: Callable[[int, int], bytes], size: int,
                 close: Callable[[], None] | None = None):
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._pos = 0
        self._on_close = close

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._fetch(self._pos, n)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed and self._on_close is not None:
            self._on_close()
        super().close()


def open_blob(store: BlobStore, digest: str, start: int, size: int) -> BlobWindow:
    """A file over bytes ``[start, start + size)`` of blob ``digest`` (close it after use).

    Raises BlobUnknown if the blob is not stored (filesystem: now; S3: on first read).
    """
    if isinstance(store, FilesystemBlobStore):
        try:
            fd = os.open(store.blob_path(digest), os.O_RDONLY)
        except FileNotFoundError:
            raise BlobUnknown(f"blob {digest} is not stored") from None
        except OSError as exc:
            raise StorageError(f"filesystem storage: {exc.strerror or exc}") from exc
        return BlobWindow(lambda offset, n: os.pread(fd, n, start + offset), size,
                          close=lambda: os.close(fd))

    def fetch(offset: int, n: int) -> bytes:
        return b"".join(store.open(digest, start + offset, n, chunk_size=max(n, 1)))

    return BlobWindow(fetch, size)
