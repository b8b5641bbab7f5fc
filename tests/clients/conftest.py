"""Fixtures for the tests that run the ``assay`` CLI as a real subprocess."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.auth_registry import ASSAY, AuthRegistry, start_auth_registry, stop_auth_registry


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


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory) -> Iterator[AuthRegistry]:
    """One auth-on ``assay serve`` (see ``AuthRegistry``) shared by a module's tests."""
    registry = start_auth_registry(tmp_path_factory.mktemp("assay-auth") / "data")
    try:
        yield registry
    finally:
        stop_auth_registry(registry)
