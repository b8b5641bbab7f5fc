"""Fixtures for the end-to-end tests: real ``assay serve`` / ``assay worker`` processes with
verification on, the ``assay`` CLI, and broken copies of the real Gemma GGUF.

- ``harness``: starts servers and worker processes for one test and stops every one of
  them by PID afterwards (SIGTERM, then SIGKILL); a failed test gets their log tails.
- ``verify_server``: one ``assay serve`` per module with one worker and the gate on.
- ``truncated_gguf`` / ``bogus_type_gguf``: the first half of Gemma, and Gemma with one
  tensor's type set to 99 in its tensor table (four bytes patched in place, so llama.cpp
  really parses the file and refuses that tensor).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, start_assay
from tests.support.workers import GATE_ON, WorkerProcess, start_worker

ASSAY = Path(sys.executable).with_name("assay")
LOG_TAIL_CHARS = 6000
BOGUS_TENSOR = "blk.0.attn_q.weight"


def _tail(text: str) -> str:
    if len(text) > LOG_TAIL_CHARS:
        text = "...\n" + text[-LOG_TAIL_CHARS:]
    return text or "(empty log)"


class Harness:
    """Processes of one test: ``server(env)`` and ``worker(server, env)``."""

    def __init__(self, root: Path):
        self.root = root
        self.servers: list[ServerProcess] = []
        self.workers: list[WorkerProcess] = []

    def server(self, env: dict | None = None) -> ServerProcess:
        """``assay serve`` with the gate on and, unless ``env`` says otherwise, one worker."""
        data = self.root / f"server-{len(self.servers)}"
        try:
            server = start_assay(data, env={"ASSAY_WORKERS": "1", **GATE_ON, **(env or {})})
        except Exception as exc:
            pytest.fail(f"could not start assay serve: {exc}", pytrace=False)
        self.servers.append(server)
        return server

    def worker(self, server: ServerProcess, env: dict | None = None) -> WorkerProcess:
        """``assay worker -c 1`` on ``server``'s data directory (database and blobs)."""
        data = server.log_path.parent
        log = data / f"worker-{len(self.workers)}.log"
        worker = start_worker(data, log, env)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for server in self.servers:
            server.stop()

    def logs(self) -> list[tuple[str, str]]:
        sections = [(f"assay serve log (pid {s.pid})", _tail(s.log())) for s in self.servers]
        sections += [(f"assay worker log (pid {w.pid})", _tail(w.log())) for w in self.workers]
        return sections


@pytest.fixture
def harness(tmp_path) -> Iterator[Harness]:
    h = Harness(tmp_path / "procs")
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def verify_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """One ``assay serve`` for a module: one verification worker, readiness gate on."""
    h = Harness(tmp_path_factory.mktemp("e2e-module"))
    server = h.server()
    try:
        yield server
    finally:
        exit_code = server.proc.poll()
        h.close()
        if exit_code is not None:
            pytest.fail(f"assay serve (pid {server.pid}) exited with {exit_code} during the "
                        f"tests:\n{_tail(server.log())}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the logs of the test's servers and workers to its failure report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", None) or {}
    for value in funcargs.values():
        if isinstance(value, Harness):
            report.sections.extend(value.logs())
        elif isinstance(value, ServerProcess):
            report.sections.append((f"assay serve log (pid {value.pid})", _tail(value.log())))


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="session")
def cli(tmp_path_factory):
    """``cli(*args, ok=True, timeout=300)`` runs ``assay``; with ``ok`` it must exit 0."""
    cache = tmp_path_factory.mktemp("assay-client-cache")

    def run(*args, env: dict | None = None, ok: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "ASSAY_CACHE_DIR": str(cache), **(env or {})}
        proc = subprocess.run([str(ASSAY), *map(str, args)], capture_output=True, text=True,
                              env=full_env, timeout=timeout)
        if ok:
            assert proc.returncode == 0, f"assay {' '.join(map(str, args))} failed " \
                f"({proc.returncode}):\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        return proc

    return run


# ---------------------------------------------------------------------- broken models


# ``broken_dir`` and ``truncated_gguf`` come from tests/support/models.py.


def _tensor_type_offset(path: Path, name: str) -> int:
    """Byte offset of the ``type`` field of tensor ``name`` in a GGUF's tensor table.

    A tensor info is: u64 name length, name, u32 n_dims, u64 dims[n_dims], u32 type, u64
    offset. The table follows the metadata, within the first few MiB for Gemma."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024 * 1024)
    needle = struct.pack("<Q", len(name)) + name.encode()
    at = head.find(needle)
    assert at > 0 and head.find(needle, at + 1) == -1, f"tensor {name} not found once"
    pos = at + len(needle)
    (n_dims,) = struct.unpack_from("<I", head, pos)
    assert 1 <= n_dims <= 4, n_dims
    pos += 4 + 8 * n_dims
    (ggml_type,) = struct.unpack_from("<I", head, pos)
    assert ggml_type < 64, ggml_type  # a real ggml type (Q5_0 for Gemma's q projection)
    return pos


@pytest.fixture(scope="session")
def bogus_type_gguf(gemma_gguf, broken_dir) -> Path:
    """Gemma whose tensor table gives ``blk.0.attn_q.weight`` the ggml type 99."""
    target = Path(shutil.copyfile(gemma_gguf, broken_dir / "bogus-type.gguf"))
    offset = _tensor_type_offset(target, BOGUS_TENSOR)
    with open(target, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<I", 99))
    return target
