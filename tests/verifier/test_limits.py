"""The limits and the checks that are not about the file: time, memory, crashes, speed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.support.procfs import session_members, verifier_children
from verifier import Spec, verify

# Slow: runs the verifier child, which loads a model (real or generated) for real.
pytestmark = pytest.mark.slow


def run_in_thread(spec: Spec):
    """Start ``verify(spec)`` in a thread; return (thread, result holder)."""
    result = {}

    def target():
        result["report"] = verify(spec)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def wait_for_child(thread: threading.Thread, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        children = verifier_children()
        if children:
            return children[0]
        time.sleep(0.005)
    pytest.fail("the verifier child never showed up")


def wait_until_loaded(pid: int, timeout: float = 60) -> None:
    """Until the child holds Gemma's weights (resident set over 200 MiB): it has imported
    its backend and installed Python's fault handler long before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            pytest.fail("the verifier child went away before it loaded the model")
        rss_kib = next((int(line.split()[1]) for line in status.splitlines()
                        if line.startswith("VmRSS:")), 0)
        if rss_kib > 200 * 1024:
            return
        time.sleep(0.01)
    pytest.fail("the verifier child never loaded the model")


def test_timeout_kills_the_child_and_its_group(gemma_gguf):
    # 1,000 tokens take Gemma many seconds even on a fast machine: the limit always hits first.
    spec = Spec(model_path=gemma_gguf, max_tokens=1000, n_ctx=1100, timeout_s=2.0)
    thread, result = run_in_thread(spec)
    pid = wait_for_child(thread)
    thread.join(timeout=60)
    r = result["report"]
    assert (r.passed, r.failure) == (False, "timeout")
    assert r.reason.startswith("timed out after 2 s while ")
    assert 2.0 <= r.wall_s < 10
    assert not os.path.exists(f"/proc/{pid}")  # killed and reaped
    assert session_members(pid) == []  # nothing it started is left either
    assert verifier_children() == []


def test_memory_limit(gemma_gguf):
    r = verify(Spec(model_path=gemma_gguf, memory_limit_bytes=40 * 2**20))
    assert (r.passed, r.failure) == (False, "memory")
    assert r.reason.startswith("exceeded the memory limit while ")
    assert "> limit 40 MiB" in r.reason
    assert r.peak_rss_bytes > 40 * 2**20
    assert verifier_children() == []


def test_memory_limit_counts_the_model(gemma_gguf, gemma_report):
    # A limit between "Python with llama.cpp loaded" and "Gemma running" fails the model:
    # the mapped weights count as they are touched.
    limit = gemma_report.peak_rss_bytes - 60 * 2**20
    r = verify(Spec(model_path=gemma_gguf, max_tokens=16, n_ctx=256, memory_limit_bytes=limit))
    assert (r.passed, r.failure) == (False, "memory")


def test_crash_by_signal_is_a_failed_report(gemma_gguf):
    spec = Spec(model_path=gemma_gguf, max_tokens=1000, n_ctx=1100, timeout_s=120)
    thread, result = run_in_thread(spec)
    pid = wait_for_child(thread)
    wait_until_loaded(pid)  # a signal before the fault handler is installed logs nothing
    os.kill(pid, signal.SIGSEGV)
    thread.join(timeout=60)
    r = result["report"]
    assert (r.passed, r.failure) == (False, "crash")
    assert r.reason.startswith("crashed while ")
    assert "killed by SIGSEGV" in r.reason
    assert "Fatal Python error: Segmentation fault" in r.log_tail
    assert verifier_children() == []


def test_throughput_below_the_minimum(gemma_gguf):
    r = verify(Spec(model_path=gemma_gguf, max_tokens=4, n_ctx=256, min_generation_tps=1e9))
    assert (r.passed, r.failure) == (False, "throughput")
    assert r.reason.startswith("generation ")
    assert r.reason.endswith(" tokens/s is below the minimum 1e+09 tokens/s")
    assert r.generation_tps > 0 and r.output  # the figures are kept


def test_throughput_at_or_above_the_minimum(gemma_gguf):
    r = verify(Spec(model_path=gemma_gguf, max_tokens=4, n_ctx=256, min_generation_tps=0.01))
    assert r.passed, r.reason
