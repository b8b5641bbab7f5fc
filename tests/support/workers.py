"""Helpers for the end-to-end tests: worker processes, ``/proc`` lookups, REST polling.

Every process here is started by the tests, in its own session, and stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import models
from tests.support.processes import REPO_ROOT, ServerProcess, assay_command

# Verification on: the e2e servers run with the readiness gate (start_assay defaults it off).
GATE_ON = {"ASSAY_GATE": "true"}
VERIFICATION_TYPE = "application/vnd.assay.verification.v1+json"
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


# ------------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after ``(comm)``: state, ppid, pgrp, session, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    """Live direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; return that, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------ workers


@dataclass
class WorkerProcess:
    """``assay worker -c 1`` (the pool parent) with its log; see ``Harness.worker``."""

    proc: subprocess.Popen
    log_path: Path
    offset: int  # where this process's lines start in the log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def worker_pid(self, timeout: float = 30.0) -> int:
        """The pool's worker process (multiprocessing spawn child, not the resource
        tracker), once it has started claiming."""
        def find():
            if self.proc.poll() is not None:
                raise AssertionError(f"assay worker exited with {self.proc.returncode}:\n"
                                     f"{self.log()[-3000:]}")
            for pid in children(self.pid):
                if "spawn_main" in cmdline(pid):
                    return pid
            return None

        pid = wait_until(find, timeout, "the pool's worker process")
        wait_until(lambda: " started" in self.log() or self.proc.poll() is not None,
                   timeout, "the worker's claim loop")
        return pid

    def verifier_children(self) -> list[int]:
        """Live ``verifier.child`` processes whose parent is one of this pool's workers."""
        found = []
        for worker in children(self.pid):
            found += [pid for pid in children(worker) if "verifier.child" in cmdline(pid)]
        return found

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the pool parent (it stops its workers gracefully); its exit code."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill_tree(self) -> list[int]:
        """SIGKILL the pool parent and every process below it, each by PID, except the
        verifier children (they must die by themselves). Returns the PIDs killed."""
        tree = [pid for pid in descendants(self.pid) if "verifier.child" not in cmdline(pid)]
        victims = [self.pid, *tree]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        return victims

    def stop(self) -> None:
        """Teardown: SIGTERM, then SIGKILL whatever is left of the tree, by PID."""
        tree = {pid: cmdline(pid) for pid in descendants(self.pid)}
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.terminate(timeout=30)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid, cmd in tree.items():
            if alive(pid) and cmdline(pid) == cmd:  # the same process, not a reused PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def start_worker(data_dir: Path, log_path: Path, env: dict | None = None) -> WorkerProcess:
    """``assay worker -c 1 --data-dir DATA_DIR`` in its own session."""
    full_env = {**os.environ, **GATE_ON, **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        offset = log.tell()
        proc = subprocess.Popen([*assay_command(), "worker", "-c", "1", "--data-dir",
                                 str(data_dir)], stdout=log, stderr=subprocess.STDOUT,
                                env=full_env, cwd=REPO_ROOT, start_new_session=True)
    return WorkerProcess(proc, log_path, offset)


# --------------------------------------------------------------------------- HTTP


def maps_model(pid: int) -> bool:
    """The Gemma blob is memory-mapped by ``pid`` (llama.cpp loads models with mmap)."""
    try:
        return models.GEMMA_SHA256 in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def running_job(server, name: str, tag: str, worker, timeout: float = 60.0) -> dict:
    """Wait until ``worker``'s verifier child is running the tag's job; the REST view."""
    def check():
        state = tag_state(server, name, tag)
        job = state.get("job") or {}
        busy = state["status"] == "verifying" and job.get("status") == "running" \
            and job.get("worker") and worker.verifier_children()
        return state if busy else None

    return wait_until(check, timeout, f"{name}:{tag} to be verifying in a verifier child",
                      interval=0.05)


def rest(server: ServerProcess, path: str) -> dict:
    resp = httpx.get(f"{server.url}/api/v1{path}", timeout=30)
    assert resp.status_code == 200, f"GET /api/v1{path}: {resp.status_code} {resp.text}"
    return resp.json()


def tag_state(server: ServerProcess, name: str, tag: str) -> dict:
    return rest(server, f"/repositories/{name}/tags/{tag}")


def wait_status(server: ServerProcess, name: str, tag: str, statuses: tuple[str, ...],
                timeout: float = 120.0) -> dict:
    """Poll the REST tag view until its status is one of ``statuses``; the view."""
    last: dict = {}

    def check():
        last.update(tag_state(server, name, tag))
        return dict(last) if last.get("status") in statuses else None

    try:
        return wait_until(check, timeout, f"{name}:{tag} to become {'|'.join(statuses)}",
                          interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last state: status={last.get('status')} "
                             f"reason={last.get('reason')} job={last.get('job')}") from None


def get_manifest(server: ServerProcess, name: str, reference: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v2/{name}/manifests/{reference}",
                     headers={"Accept": MANIFEST_ACCEPT}, timeout=30)


def served_digest(server: ServerProcess, name: str, tag: str) -> str:
    """The digest a pull by tag gets now (the manifest GET must succeed)."""
    resp = get_manifest(server, name, tag)
    assert resp.status_code == 200, f"GET manifest {name}:{tag}: {resp.status_code} {resp.text}"
    return resp.headers["Docker-Content-Digest"]


def oci_error(resp: httpx.Response) -> dict:
    """The single OCI error of a failed answer."""
    errors = resp.json()["errors"]
    assert len(errors) == 1, errors
    return errors[0]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI failed with exactly one ``error: ...`` line on stderr and no traceback."""
    assert proc.returncode != 0, proc
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def digest_from_push(stdout: str) -> str:
    """``pushed HOST/NAME:TAG@sha256:... (...)`` -> the digest."""
    assert "@sha256:" in stdout, stdout
    return stdout.split("@", 1)[1].split()[0]
