"""Build images and run their processes with buildah, where there is no Docker engine.

``buildah`` with chroot isolation runs a ``Dockerfile``'s ``RUN`` steps and the processes of
an image on the host's network (``--network host``): a server in a container binds the
host's loopback. Its storage lives in the per-machine test cache (``cache_dir()/buildah``),
apart from any other containers on the machine, so built images survive between runs.

The storage driver is overlay where the kernel mounts it (a container then costs nothing),
else vfs, which copies the image's whole root file system for every container
(``ASSAY_TEST_BUILDAH_DRIVER`` picks one).

A container's main process is a grandchild of ``buildah run``, which answers SIGTERM by
killing it outright: ``Container.stop`` signals the process itself, by its PID (chroot
isolation shares the host's PID namespace), so it shuts down as under ``docker stop``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.models import cache_dir
from tests.support.processes import REPO_ROOT


class BuildahError(RuntimeError):
    """A buildah command failed; the message holds its output."""


def require_tools(*names: str) -> None:
    """Raise with the install hint when a tool the image tests need is missing."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise BuildahError(f"{', '.join(missing)} not installed: run `sh scripts/system-deps.sh`"
                           f" (apt-get install {' '.join(missing)})")


def _driver(root: Path) -> str:
    chosen = os.environ.get("ASSAY_TEST_BUILDAH_DRIVER")
    if chosen:
        return chosen
    probe = subprocess.run(["buildah", "--root", str(root / "overlay"), "--runroot",
                            str(root / "run-overlay"), "--storage-driver", "overlay",
                            "images"], capture_output=True, text=True, timeout=60)
    return "overlay" if probe.returncode == 0 else "vfs"


@dataclass
class Buildah:
    """``buildah`` on a storage of its own (one per driver) under ``root``."""

    root: Path
    driver: str

    @classmethod
    def for_tests(cls) -> Buildah:
        require_tools("buildah")
        root = cache_dir() / "buildah"
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, _driver(root))

    def command(self, *args: str) -> list[str]:
        return ["buildah", "--root", str(self.root / self.driver), "--runroot",
                str(self.root / f"run-{self.driver}"), "--storage-driver", self.driver, *args]

    def __call__(self, *args: str, timeout: float = 120, input: str | None = None,
                 env: dict | None = None) -> str:
        """Run ``buildah ARGS``; its stdout, or BuildahError with the output."""
        proc = subprocess.run(self.command(*args), capture_output=True, text=True,
                              timeout=timeout, input=input, env=env, cwd=REPO_ROOT)
        if proc.returncode != 0:
            raise BuildahError(f"buildah {' '.join(args[:3])}... exited {proc.returncode}:\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    def image_exists(self, name: str) -> bool:
        return subprocess.run(self.command("inspect", "--type", "image", name),
                              capture_output=True, timeout=60).returncode == 0

    def image_names(self, repository: str) -> list[str]:
        """Every ``repository:tag`` stored (for pruning older builds)."""
        out = self("images", "--format", "{{.Name}}:{{.Tag}}", "--filter",
                   f"reference={repository}")
        return [line for line in out.split() if line.startswith(repository + ":")]

    def container(self, image: str, name: str) -> Container:
        """A new working container of ``image`` (an old one of the same name is removed)."""
        subprocess.run(self.command("rm", name), capture_output=True, timeout=60)
        self("from", "--pull=never", "--name", name, image, timeout=600)
        return Container(self, name)


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found = []
    for task in tasks:
        with contextlib.suppress(OSError):
            found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children")
                      .read_text().split()]
    return found


def _argv0(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except OSError:
        return ""


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    found, queue = set(), [pid]
    while queue:
        for child in _children(queue.pop()):
            if child not in found:
                found.add(child)
                queue.append(child)
    return found


def main_process(buildah_pid: int) -> int | None:
    """The container's process under ``buildah run`` (the first descendant that is not
    buildah's own chroot helper), or None while it is not started yet."""
    queue = [buildah_pid]
    while queue:
        pid = queue.pop(0)
        for child in _children(pid):
            if not os.path.basename(_argv0(child)).startswith("buildah"):
                return child
            queue.append(child)
    return None


@dataclass
class Running:
    """A process started in a container with ``buildah run`` (in the background)."""

    container: Container
    proc: subprocess.Popen
    log_path: Path
    pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The container's main process (its host PID), once it has started."""
        if not self.pids:
            deadline = time.monotonic() + 30
            while (found := main_process(self.proc.pid)) is None:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BuildahError(f"no process in {self.container.name}:\n{self.log()}")
                time.sleep(0.05)
            self.pids.append(found)
        return self.pids[0]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` is the container's process or one it started."""
        return pid == self.pid or pid in descendants(self.pid)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the container's process, as ``docker stop`` sends; SIGKILL to it and
        to ``buildah run`` if it has not exited after ``timeout`` seconds."""
        if self.proc.poll() is not None:
            return
        target = self.pid
        try:
            os.kill(target, signal.SIGTERM)
            self.proc.wait(timeout)
        except ProcessLookupError:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in (target, self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class Container:
    """A buildah working container; ``remove()`` it when done."""

    buildah: Buildah
    name: str
    running: list[Running] = field(default_factory=list)

    def _run_args(self, command: list[str], env: dict[str, str]) -> list[str]:
        flags = [f"--env={k}={v}" for k, v in env.items()]
        return self.buildah.command("run", "--isolation", "chroot", "--network", "host",
                                    *flags, self.name, "--", *command)

    def run(self, command: list[str], env: dict[str, str], *, input: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``command`` in the container to completion (``docker compose run``)."""
        return subprocess.run(self._run_args(command, env), capture_output=True, text=True,
                              input=input, timeout=timeout, cwd=REPO_ROOT)

    def start(self, command: list[str], env: dict[str, str], log_path: Path) -> Running:
        """Start ``command`` in the background (a service's process), logging to
        ``log_path``; ``stop()`` it, or ``remove()`` the container."""
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(self._run_args(command, env), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=REPO_ROOT, start_new_session=True)
        running = Running(self, proc, log_path)
        self.running.append(running)
        return running

    def remove(self) -> None:
        """Stop what runs in it, then ``buildah rm`` it (the image stays)."""
        for running in self.running:
            running.stop()
        self.buildah("rm", self.name, timeout=300)
