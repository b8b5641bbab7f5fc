"""Worker processes never outlive the ``assay serve`` that started them."""

from __future__ import annotations

import os
import time

import pytest

from tests.support.processes import start_assay


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") and _alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_workers_end_with_their_server(tmp_path, how):
    server = start_assay(tmp_path / "server", env={"ASSAY_WORKERS": "2"})
    try:
        deadline = time.monotonic() + 30
        while len(workers := children(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) >= 2, workers  # two workers (and multiprocessing's tracker)
    finally:
        if how == "SIGTERM":
            server.stop()  # graceful: the app's shutdown stops the pool
        else:
            server.kill()  # no shutdown at all: the kernel tells the workers
    assert gone(workers), f"worker processes {workers} outlived the server ({how})"
