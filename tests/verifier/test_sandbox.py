"""Network isolation of the verification child (``verifier.sandbox``), for real.

A TCP server listens on 127.0.0.1 in the test process. A probe child, started the way the
runner starts ``verifier.child`` (same interpreter flags, scrubbed environment, own
session) and calling the same ``isolate_network()`` first thing, tries to connect to it:
without the sandbox it gets through (so the check can fail), with it the connection is
refused by the kernel and the server never sees it. Then a real Gemma verification must
report ``network_isolated``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from verifier import Report, Spec, verify
from verifier import sandbox as sandbox_mod
from verifier.run import _child_env

# Slow: runs the verifier child, which loads a model (real or generated) for real.
pytestmark = pytest.mark.slow

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="network namespaces are Linux-only")

PROBE = r"""
import ctypes, encodings.idna, json, os, socket, sys
from verifier.sandbox import isolate_network
port, isolate, as_uid = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
if as_uid >= 0:  # drop root (after the imports: the interpreter may be root's own) to
    os.setgroups([])  # take the unprivileged path, CLONE_NEWUSER
    os.setgid(as_uid)
    os.setuid(as_uid)
result = {"uid": os.getuid()}
if isolate:
    iso = isolate_network()
    result.update(network_isolated=iso.network_isolated, detail=iso.detail)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        result["reply"] = s.recv(16).decode()
    result["connected"] = True
except OSError as exc:
    result.update(connected=False, error=f"{type(exc).__name__}: {exc}")
print(json.dumps(result))
"""


class Server:
    """A TCP server on 127.0.0.1 that answers "hello" and counts its connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.sendall(b"hello")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def probe(port: int, isolate: bool, as_uid: int = -1) -> dict:
    """Run PROBE as the verifier runs its child: ``-P``, the child's env, own session."""
    proc = subprocess.run(
        [sys.executable, "-P", "-c", PROBE, str(port), "1" if isolate else "0", str(as_uid)],
        env=_child_env(1), start_new_session=True, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_without_the_sandbox_the_probe_reaches_the_server(server):
    result = probe(server.port, isolate=False)
    assert result["connected"] is True, result
    assert result["reply"] == "hello"
    assert server.accepted == 1


@linux_only
def test_the_sandbox_cuts_the_child_off_loopback(server):
    result = probe(server.port, isolate=True)
    assert result["network_isolated"] is True, result
    assert result["connected"] is False, result
    assert "unreachable" in result["error"].lower(), result
    assert server.accepted == 0
    # The parent is untouched: it still reaches its own server.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        assert s.recv(16) == b"hello"


@linux_only
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged uid")
def test_unprivileged_child_isolates_with_a_user_namespace(server):
    nobody = 65534
    result = probe(server.port, isolate=True, as_uid=nobody)
    if not result["network_isolated"]:
        pytest.skip(f"unprivileged user namespaces are not available here: {result['detail']}")
    assert "CLONE_NEWUSER" in result["detail"], result
    assert result["uid"] == nobody
    assert result["connected"] is False, result
    assert server.accepted == 0


def test_when_unshare_is_refused_isolation_says_why(monkeypatch):
    """No real unshare here (it would isolate the test process): both attempts refused."""
    def refuse(flags):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(sandbox_mod, "_unshare", refuse)
    monkeypatch.setattr(sandbox_mod.sys, "platform", "linux")
    iso = sandbox_mod.isolate_network()
    assert iso.network_isolated is False
    assert iso.detail == ("not isolated: unshare(CLONE_NEWNET): Operation not permitted; "
                          "unshare(CLONE_NEWUSER|CLONE_NEWNET): Operation not permitted")
    monkeypatch.setattr(sandbox_mod.sys, "platform", "darwin")
    assert sandbox_mod.isolate_network().detail == \
        "not isolated: no network namespaces on darwin"


@linux_only
def test_gemma_verification_reports_network_isolation(gemma_report):
    assert gemma_report.passed, gemma_report.reason
    assert gemma_report.network_isolated is True
    assert "network namespace" in gemma_report.sandbox
    data = json.loads(json.dumps(gemma_report.to_dict()))
    assert data["network_isolated"] is True and data["sandbox"] == gemma_report.sandbox
    assert Report.from_dict(data) == gemma_report


def test_isolation_turned_off_is_reported_not_silent(gemma_gguf):
    report = verify(Spec(model_path=gemma_gguf, max_tokens=2, n_ctx=64,
                         network_isolation=False))
    assert report.passed, report.reason
    assert report.network_isolated is False
    assert report.sandbox == "not isolated: turned off (Spec.network_isolation=False)"


def test_reports_stored_before_the_sandbox_fields_still_load():
    old = {"passed": True, "backend": "llama.cpp"}
    report = Report.from_dict(old)
    assert (report.network_isolated, report.sandbox) == (False, None)
