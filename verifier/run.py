"""``verify(spec) -> Report``: run a model in a child process under limits and judge it.

Contract:

- Returns a ``Report`` for every model, good or bad: a model that does not load, crashes,
  times out, outgrows the memory limit, yields non-finite logits or no tokens, or is too
  slow, gives ``passed=False`` with a failure code and a one-line reason (see
  ``verifier.report``). It never raises because of the model's content.
- Raises ``ValueError`` for caller errors (``model_path`` missing; invalid ``Spec`` values
  already raise when the ``Spec`` is built) and ``BackendUnavailable`` when the backend's
  package cannot be imported on this machine (an infrastructure error: retrying elsewhere
  may help, failing the model would be wrong). ``OSError`` from starting the child
  propagates likewise.

How the child runs (``python -P -m verifier.child``, see ``verifier.child``):

- no network: first thing, while still single-threaded, the child moves into a network
  namespace of its own (``verifier.sandbox``: ``unshare(CLONE_NEWNET)``, else unprivileged
  ``CLONE_NEWUSER | CLONE_NEWNET``); where the OS allows neither it runs anyway, and the
  report says so (``network_isolated=False`` and the reason in ``sandbox``) and a warning is
  logged;
- its own session and process group (``start_new_session``); on timeout, on the memory
  limit, when the parent is interrupted, and after every run, the whole group is killed
  with SIGKILL before the child is reaped, so nothing it started survives it;
- a scrubbed environment: only ``PATH``, ``HOME``, locale, ``TMPDIR``, library-path and
  GPU-selection variables (``CUDA_VISIBLE_DEVICES`` and its ROCm, Vulkan and SYCL
  counterparts) pass through (no credentials of the worker), plus the thread variables
  (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ...) set to
  ``spec.threads`` and ``HF_HUB_OFFLINE=1`` so nothing is fetched;
- the spec as JSON on stdin, progress events on a dedicated pipe, stdout and stderr merged
  into one log pipe of which the first 64 KiB and the last 256 KiB are kept (bounded memory
  however much a backend logs); the report carries the last ``LOG_TAIL_BYTES`` of it,
  without the lines the backend calls routine detail (``is_detail``).

Limits:

- time: ``spec.timeout_s`` of wall clock for the whole child, imports and load included;
- memory: the child's resident set size (``VmRSS``, which counts the pages of a
  memory-mapped model file as they are touched) is sampled every ``POLL_S`` seconds and the
  group is killed when it passes ``spec.memory_limit_bytes``; afterwards the kernel's peak
  (``ru_maxrss`` from ``wait4``) is checked too, so a spike between two samples still fails
  the model. ``RLIMIT_AS`` is deliberately not used: it limits address space, and
  llama.cpp's mmap of the whole file and MLX/BLAS reservations would fail healthy models.
  Without ``/proc`` (macOS) only the after-the-fact check applies;
- threads: ``spec.threads`` for the backend's own setting and the thread variables.

GPU: the backend says where the model runs (its ``placement``: llama.cpp's build and
``gpu_layers``, MLX's device), which the report's ``hardware`` records, with the machine's
accelerator (``verifier.capabilities.accelerator``) when the backend is a GPU build or
device. Where NVML is available (``verifier.gpu``) the child's GPU memory is sampled while
it runs: ``peak_gpu_bytes`` in the report, ``None`` when not measured. GPU memory is
reported, not limited: the memory limit is on the resident set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from verifier import capabilities, gpu, hardware
from verifier.backends import backend_module
from verifier.report import Report
from verifier.spec import Spec, resolve_backend
from verifier.verdict import BackendUnavailable, judge

__all__ = ["BackendUnavailable", "Cancelled", "log_tail", "verify"]

POLL_S = 0.02
LOG_TAIL_BYTES = 4096
LOG_HEAD_KEEP = 64 * 1024
LOG_TAIL_KEEP = 256 * 1024
LOG_LINE_MAX = 400
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_PASS_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE",
             "TMPDIR", "TZ", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "VIRTUAL_ENV",
             # which GPUs the worker was given: the child must not take others
             "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "HIP_VISIBLE_DEVICES",
             "ROCR_VISIBLE_DEVICES", "GGML_VK_VISIBLE_DEVICES", "ONEAPI_DEVICE_SELECTOR")
log = logging.getLogger(__name__)
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class Cancelled(Exception):
    """``verify`` was cancelled by its caller (the child was killed); no verdict."""


def verify(spec: Spec, cancel: threading.Event | None = None) -> Report:
    """Run ``spec.model_path`` with its backend in a child process and judge it.

    Setting ``cancel`` kills the child at once and raises ``Cancelled`` (a worker shutting
    down, or one that lost its job's lease): cancellation is never a verdict."""
    started = time.perf_counter()
    backend = resolve_backend(spec)
    base = {"backend": backend, "hardware": hardware.describe(spec.threads),
            "prompt": spec.prompt}
    if backend is None:
        report = Report(passed=False, failure="load", **base, reason=(
            f"not a model: {spec.model_path.name} is neither a GGUF file "
            "(no GGUF magic) nor a model directory"), sandbox="no child process was started")
    else:
        run = _run_child(dataclasses.replace(spec, backend=backend), cancel)
        if run.killed_for == "cancelled":
            raise Cancelled(f"verification of {spec.model_path} was cancelled")
        base["hardware"].update(_placed(run.placement))
        module = backend_module(backend)
        report = judge(spec, backend, run, base, log_tail(run.log, detail=module.is_detail),
                       module.load_failure_reason)
        report.peak_gpu_bytes = run.peak_gpu_bytes
    report.wall_s = time.perf_counter() - started
    return report


def _placed(placement: dict) -> dict:
    """The backend's placement for the report's ``hardware``, with the machine's
    accelerator when the backend runs on a GPU build or device."""
    gpu_build = placement.get("build") not in (None, "cpu") or placement.get("device") == "gpu"
    return {**placement, **({"accelerator": capabilities.accelerator()} if gpu_build else {})}


# ----------------------------------------------------------------------------- the child


@dataclass
class _Run:
    events: list[dict] = field(default_factory=list)
    log: str = ""
    returncode: int = 0
    killed_for: str | None = None  # "timeout" | "memory" | "cancelled"
    peak_rss_bytes: int = 0
    placement: dict = field(default_factory=dict)  # the backend's, from the ready event
    peak_gpu_bytes: int | None = None


class _LogKeeper:
    """Drains a pipe, keeping its first and last bytes."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def drain(self, pipe) -> None:
        while chunk := pipe.read1(65536):
            room = LOG_HEAD_KEEP - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            self.tail += chunk
            if len(self.tail) > 2 * LOG_TAIL_KEEP:
                cut = len(self.tail) - LOG_TAIL_KEEP
                self.dropped += cut
                del self.tail[:cut]

    def text(self) -> str:
        gap = f"\n[... {self.dropped} bytes of log skipped ...]\n" if self.dropped else ""
        return (self.head.decode("utf-8", "replace") + gap
                + self.tail.decode("utf-8", "replace"))


def _child_env(threads: int) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    inherited = os.environ.get("PYTHONPATH")
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + inherited if inherited else "")
    env.update(dict.fromkeys(_THREAD_ENV, str(threads)))
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    return env


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _exited(pid: int) -> bool:
    """True once the child has exited; it stays a zombie (unreaped) so its group id is safe."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _run_child(spec: Spec, cancel: threading.Event | None = None) -> _Run:
    run = _Run()
    events_r, events_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "verifier.child", "--result-fd", str(events_w)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=(events_w,), env=_child_env(spec.threads), start_new_session=True,
        )
    except BaseException:
        os.close(events_r)
        raise
    finally:
        os.close(events_w)

    sampler = gpu.GpuSampler.start(proc.pid)
    keeper = _LogKeeper()

    def read_events() -> None:
        with open(events_r, encoding="utf-8", errors="replace") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    run.events.append(json.loads(line))

    readers = [threading.Thread(target=keeper.drain, args=(proc.stdout,), daemon=True),
               threading.Thread(target=read_events, daemon=True)]
    for t in readers:
        t.start()

    deadline = time.monotonic() + spec.timeout_s
    limit = spec.memory_limit_bytes
    try:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(json.dumps(spec.to_dict()).encode())
            proc.stdin.close()
        while not _exited(proc.pid):
            rss = _rss_bytes(proc.pid)
            if rss is not None:
                run.peak_rss_bytes = max(run.peak_rss_bytes, rss)
            if limit is not None and rss is not None and rss > limit:
                run.killed_for = "memory"
                break
            left = deadline - time.monotonic()
            if left <= 0:
                run.killed_for = "timeout"
                break
            if cancel is not None and cancel.is_set():
                run.killed_for = "cancelled"
                break
            time.sleep(min(POLL_S, left))
    finally:
        _kill_group(proc.pid)  # the group's leader is not reaped yet: the id is still ours
        _, status, usage = os.wait4(proc.pid, 0)
        gpu_peak = sampler.stop() if sampler is not None else None
        proc.returncode = run.returncode = os.waitstatus_to_exitcode(status)
        for t in readers:
            t.join(timeout=5)
        with contextlib.suppress(OSError):
            proc.stdout.close()
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    run.peak_rss_bytes = max(run.peak_rss_bytes, usage.ru_maxrss * scale)
    run.log = keeper.text()
    ready = next((e for e in run.events if e.get("event") == "ready"), {})
    run.placement = ready.get("placement") if isinstance(ready.get("placement"), dict) else {}
    if gpu_peak is not None:
        run.peak_gpu_bytes = gpu_peak.bytes(gpu.offloaded(run.placement))
    return run


# ----------------------------------------------------------------------------- the log


def log_tail(log: str, size: int = LOG_TAIL_BYTES,
             detail: Callable[[str], bool] | None = None) -> str:
    """The last ``size`` characters of ``log`` on whole lines, overlong lines shortened.

    ``detail`` (a backend's ``is_detail``) picks lines to leave out, so that what a person
    needs (errors, warnings, the load summary) is not pushed out by per-tensor noise; when
    it left any out, the tail starts with a line saying how many."""
    kept: list[tuple[str, int]] = []  # newest first, with the lines left out after each
    used = left_out = 0
    source = log if detail is not None else log[-16 * size:]
    for line in reversed(source.splitlines()):
        if detail is not None and detail(line):
            left_out += 1
            continue
        if len(line) > LOG_LINE_MAX:
            line = f"{line[:LOG_LINE_MAX]} [... {len(line) - LOG_LINE_MAX} more characters]"
        if used + len(line) > size:
            break
        kept.append((line, left_out))
        used += len(line) + 1
    note = ""
    while kept and kept[-1][1]:
        note = f"[{kept[-1][1]} lines of backend detail left out]"
        if used + len(note) <= size:
            break
        used -= len(kept.pop()[0]) + 1
    return "\n".join(([note] if note else []) + [line for line, _ in reversed(kept)])
