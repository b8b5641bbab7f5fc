"""registry.formats.archives: locating a file inside a tar layer from its headers."""

from __future__ import annotations

import io
import tarfile

import pytest

from registry.formats.archives import ArchiveError, tar_member


def make_tar(files: dict[str, bytes], fmt=tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def member(data: bytes, path: str) -> bytes:
    start, size = tar_member(io.BytesIO(data), path)
    return data[start:start + size]


def test_exact_name_then_base_name():
    long_dir = "d" * 150  # a name longer than ustar's 100 bytes: a pax header first
    data = make_tar({"README.md": b"readme", f"{long_dir}/config.json": b"{nested}",
                     "config.json": b"{top}", "./model.safetensors": b"weights"})
    assert member(data, "config.json") == b"{top}"
    assert member(data, "model.safetensors") == b"weights"
    assert member(make_tar({f"{long_dir}/config.json": b"{n}"}), "config.json") == b"{n}"


def test_missing_file_and_not_a_tar():
    with pytest.raises(ArchiveError, match="has no such file"):
        tar_member(io.BytesIO(make_tar({"a.txt": b"a"})), "config.json")
    with pytest.raises(ArchiveError, match="not a readable tar"):
        tar_member(io.BytesIO(b"GGUF" + b"\1" * 2000), "model.gguf")
