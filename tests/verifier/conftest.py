"""Shared inputs for the verifier tests: one real Gemma run, broken GGUFs, child lookup.

The broken models are made from the real Gemma file so that llama.cpp really parses them:
``truncated_gguf`` is its first half; ``bogus_type_gguf`` / ``bogus_shape_gguf`` are full
copies whose tensor table is edited in place with the ``gguf`` package's reader (one
tensor's type set to 99, which does not exist; one tensor's two dimensions swapped, same
element count, so only the shape check can catch it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gguf
import pytest

from verifier import Report, Spec, verify

BOGUS_TENSOR = "blk.0.attn_q.weight"


@pytest.fixture(scope="session")
def gemma_report(gemma_gguf) -> Report:
    """One verification of Gemma 3 270M, shared by the tests that only read its report."""
    return verify(Spec(model_path=gemma_gguf, max_tokens=16, n_ctx=256))


def _edit_tensor(path: Path, edit) -> Path:
    reader = gguf.GGUFReader(path, "r+")
    (tensor,) = [t for t in reader.tensors if t.name == BOGUS_TENSOR]
    edit(tensor.field.parts)  # parts: name length, name, n_dims, dims, type, offset
    reader.data.flush()
    del reader
    return path


# ``broken_dir`` and ``truncated_gguf`` come from tests/support/models.py.


@pytest.fixture(scope="session")
def bogus_type_gguf(gemma_gguf, broken_dir) -> Path:
    target = shutil.copyfile(gemma_gguf, broken_dir / "bogus-type.gguf")

    def edit(parts):
        parts[4][0] = 99

    return _edit_tensor(Path(target), edit)


@pytest.fixture(scope="session")
def bogus_shape_gguf(gemma_gguf, broken_dir) -> Path:
    target = shutil.copyfile(gemma_gguf, broken_dir / "bogus-shape.gguf")

    def edit(parts):
        dims = parts[3]
        assert dims[0] != dims[1]
        dims[0], dims[1] = dims[1], dims[0]

    return _edit_tensor(Path(target), edit)
