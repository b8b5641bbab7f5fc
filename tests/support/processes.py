"""Start and stop real server processes on loopback for tests and benchmarks.

Every server binds 127.0.0.1 on a free port and is stopped by PID. Used by
``tests/clients``, ``tests/deploy`` and ``bench/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port that was free a moment ago (bind to 0 and read it back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers (any status), or raise with the reason."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


@dataclass
class ServerProcess:
    """A running server: its process, loopback port and log file."""

    proc: subprocess.Popen
    port: int
    log_path: Path
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop by PID: SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)


def _spawn(cmd: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=REPO_ROOT, start_new_session=True)


def assay_command() -> list[str]:
    exe = Path(sys.executable).with_name("assay")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "registry.cli"]


def start_assay(data_dir: Path, *, port: int | None = None, env: dict | None = None,
                args: list[str] | None = None, timeout: float = 60.0) -> ServerProcess:
    """Run ``assay serve`` on 127.0.0.1 with its data under ``data_dir``.

    Protocol and client tests run with no verification workers and the readiness gate
    off (``ASSAY_WORKERS=0``, ``ASSAY_GATE=false``) unless ``env`` says otherwise: they
    test the wire, and ``tests/e2e`` tests verification with both on."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    full_env = {**os.environ, "ASSAY_WORKERS": "0", "ASSAY_GATE": "false", **(env or {})}
    cmd = [*assay_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), *(args or [])]
    log_path = data_dir / f"assay-{port}.log"
    proc = _spawn(cmd, log_path, full_env)
    server = ServerProcess(proc, port, log_path)
    try:
        wait_for_http(f"{server.url}/v2/", timeout, proc)
    except Exception:
        server.kill()
        raise RuntimeError(f"assay serve did not start:\n{server.log()[-4000:]}") from None
    return server


def start_distribution(root: Path, *, port: int | None = None, notifications: list | None = None,
                       timeout: float = 30.0, access_log: bool = False) -> ServerProcess:
    """Run Debian's CNCF Distribution 2.8 (``docker-registry``) with filesystem storage
    (blobs under ``root/data``); ``access_log`` writes every request to its log, which
    ``server.log()`` reads (to count what a client asked of it)."""
    import yaml

    exe = shutil.which("docker-registry")
    if exe is None:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": not access_log}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if notifications:
        config["notifications"] = {"endpoints": notifications}
    cfg = root / "config.yml"
    cfg.write_text(yaml.safe_dump(config))
    log_path = root / f"distribution-{port}.log"
    proc = _spawn([exe, "serve", str(cfg)], log_path)
    server = ServerProcess(proc, port, log_path)
    try:
        wait_for_http(f"{server.url}/v2/", timeout, proc)
    except Exception:
        server.kill()
        raise RuntimeError(f"docker-registry did not start:\n{server.log()[-4000:]}") from None
    return server
