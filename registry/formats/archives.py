"""Finding a file inside an uncompressed tar layer by reading only tar headers.

ModelPack packs each file as ``...weight.v1.tar`` by default and Docker Model Runner
ships config files in a tar; the header readers then need the member's byte range in
the blob. ``tarfile`` reads the 512-byte headers and seeks over member data, so on a
ranged reader this costs a few small reads whatever the size of the weights.
"""

from __future__ import annotations

import posixpath
import tarfile
from typing import BinaryIO

MAX_MEMBERS = 256  # a layer holds one file, or a config directory


class ArchiveError(ValueError):
    """The layer is not a readable tar or lacks the file (one-line message)."""


def tar_member(f: BinaryIO, path: str) -> tuple[int, int]:
    """``(offset, size)`` in ``f`` (seekable, at byte 0) of the regular file ``path``:
    the member with that normalised name, else the first with that base name (a layer
    may hold ``model.safetensors`` under a directory prefix)."""
    want = posixpath.normpath(path)
    by_name = None
    try:
        with tarfile.open(fileobj=f, mode="r:") as tar:
            for _ in range(MAX_MEMBERS):
                info = tar.next()
                if info is None:
                    break
                if not info.isreg():
                    continue
                name = posixpath.normpath(info.name)
                if name == want:
                    return info.offset_data, info.size
                if by_name is None and posixpath.basename(name) == posixpath.basename(want):
                    by_name = info
    except tarfile.TarError as exc:
        raise ArchiveError(f"the layer holding {path} is not a readable tar: {exc}") from None
    if by_name is not None:
        return by_name.offset_data, by_name.size
    raise ArchiveError(f"the tar layer holding {path} has no such file")
