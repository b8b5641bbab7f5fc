"""Fixtures for the tests that run the ``assay`` CLI as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ASSAY = Path(sys.executable).with_name("assay")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """The client's blob-location cache, kept out of the real home directory."""
    return tmp_path_factory.mktemp("assay-client-cache")


@pytest.fixture(scope="module")
def cli(cache_dir):
    """``cli(*args, cwd=None, env=None, ok=True)`` runs ``assay``; with ``ok`` it must exit 0."""

    def run(*args: str, cwd: Path | None = None, env: dict | None = None,
            ok: bool = True) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "ASSAY_CACHE_DIR": str(cache_dir), **(env or {})}
        proc = subprocess.run([str(ASSAY), *map(str, args)], capture_output=True, text=True,
                              cwd=cwd, env=full_env, timeout=300)
        if ok:
            assert proc.returncode == 0, f"assay {' '.join(map(str, args))} failed:\n" \
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        return proc

    return run
