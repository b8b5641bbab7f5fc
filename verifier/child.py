"""The verification child process: ``python -m verifier.child --result-fd N``.

Started only by ``verifier.run``. Reads the ``Spec`` (``backend`` already resolved) as JSON on
stdin, runs the backend, and writes its progress as JSON lines to file descriptor ``N``;
everything else it or the backend prints goes to stdout/stderr, which the parent keeps as
the log. Events, in order::

    {"event": "sandbox", "network_isolated": true, "detail": "network namespace (...)"}
    {"event": "ready", "backend_version": "llama-cpp-python 0.3.36",
     "placement": {"build": "cuda", "gpu_offload": true, "gpu_layers": -1}}  # see backends
    {"event": "loaded", "load_s": 0.41}
    {"event": "done", "generation": {...}}            # verifier.backends.Generation
    {"event": "perplexity", "perplexity": {...}}      # verifier.quality.Perplexity, if asked
    {"event": "prompt", "index": 0, "result": {...}, "seconds": 0.4}  # backends.Answer
    {"event": "run", "index": 0, "result": {...}, "peak_rss_bytes": N,  # RunFigures, per run
     "peak_gpu_bytes": N}                                 # null unless measured (verifier.gpu)
    {"event": "error", "stage": "import" | "load" | "generate" | "perplexity" | "prompt"
     | "run", "error": "Type: message"}

A prompt or run the backend cannot serve carries ``"unsupported": reason`` instead of
``result``. The order fails fast: the smoke generation first, and nothing after it when it
yielded no token or a non-finite logit; then perplexity (nothing after it when it is not
finite or above ``spec.max_perplexity``); then the prompts (nothing after the first that
does not match, when they must); then the runs, each with its own peak resident set (the
load's own context freed first) and, where NVML can read it, its own peak GPU memory.

Before it opens the model or imports a backend, while it is still single-threaded, the child
reads its spec and leaves the network (``verifier.sandbox``, unless ``spec.network_isolation``
is off); ``sandbox`` says whether that worked. ``error`` replaces the events after it.
After the last event the process leaves with ``os._exit(0)``: no interpreter teardown, so a
backend destructor that crashes at exit cannot turn a finished run into a crash. A run cut
short by a signal sends no last event.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import traceback
from typing import NoReturn

from verifier import gpu
from verifier.backends import LoadError, Unsupported, backend_module
from verifier.sandbox import Isolation, isolate_network
from verifier.spec import PromptSpec, Spec


def _no_core_dumps() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the process that started it dies (a worker killed
    with SIGKILL cannot kill its child's group; without this the model would run on)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m verifier.child")
    parser.add_argument("--result-fd", type=int, required=True)
    args = parser.parse_args(argv)
    spec = Spec.from_dict(json.load(sys.stdin))
    isolation = (isolate_network() if spec.network_isolation else
                 Isolation(False, "not isolated: turned off (Spec.network_isolation=False)"))
    _die_with_parent()
    _no_core_dumps()
    events = os.fdopen(args.result_fd, "w", buffering=1, encoding="utf-8")

    def emit(event: str, **fields) -> None:
        events.write(json.dumps({"event": event, **fields}) + "\n")
        events.flush()

    def leave() -> NoReturn:
        sys.stdout.flush()
        sys.stderr.flush()
        events.close()
        os._exit(0)

    emit("sandbox", network_isolated=isolation.network_isolated, detail=isolation.detail)
    backend = backend_module(spec.backend)
    try:
        version = backend.version()
        placement = backend.placement(spec)
    except Exception as exc:  # missing or broken package: the machine's problem, not the model's
        traceback.print_exc()
        emit("error", stage="import", error=_describe(exc))
        leave()
    emit("ready", backend_version=version, placement=placement)

    started = time.perf_counter()
    try:
        model = backend.load(spec)
    except LoadError as exc:
        emit("error", stage="load", error=str(exc))
        leave()
    emit("loaded", load_s=time.perf_counter() - started)

    def run(stage: str, call):
        """``call()``, or the stage's error event and the end of the child."""
        try:
            return call()
        except Exception as exc:
            traceback.print_exc()
            emit("error", stage=stage, error=_describe(exc))
            leave()

    generation = run("generate", lambda: backend.generate(model, spec))
    emit("done", generation=generation.to_dict())
    if generation.non_finite_step is not None or generation.tokens == 0:
        leave()  # the smoke check failed: nothing after it could pass
    if spec.perplexity:
        measured = run("perplexity", lambda: backend.perplexity(model, spec))
        emit("perplexity", perplexity=measured.to_dict())
        if not _acceptable(measured.value, spec.max_perplexity):
            leave()
    for index, prompt in enumerate(spec.prompts):
        begun = time.perf_counter()
        answer = run("prompt", lambda p=prompt: _attempt(lambda: backend.answer(model, spec, p)))
        emit("prompt", index=index, seconds=time.perf_counter() - begun, **answer)
        if spec.prompts_must_match and not _matches(prompt, answer):
            leave()
    if spec.runs:
        run("run", lambda: backend.release(model))
    on_gpu = gpu.offloaded(placement)
    for index, config in enumerate(spec.runs):
        _reset_peak()
        sampler = gpu.GpuSampler.start(os.getpid())
        figures = run("run", lambda c=config: _attempt(lambda: backend.measure(model, spec, c)))
        gpu_peak = sampler.stop().bytes(on_gpu) if sampler is not None else None
        emit("run", index=index, peak_rss_bytes=_peak(), peak_gpu_bytes=gpu_peak, **figures)
    leave()


def _attempt(call) -> dict:
    """``{"result": ...}`` from ``call()``, or ``{"unsupported": reason}``."""
    try:
        return {"result": call().to_dict()}
    except Unsupported as exc:
        return {"unsupported": str(exc) or "not supported by this backend"}


def _acceptable(perplexity: float, limit: float | None) -> bool:
    return math.isfinite(perplexity) and (limit is None or perplexity <= limit)


def _matches(prompt: PromptSpec, answer: dict) -> bool:
    """Unsupported (no chat template) is not a mismatch: the parent reports it."""
    result = answer.get("result")
    return result is None or prompt.matches(result["text"])


def _reset_peak() -> None:
    """Linux: reset the peak resident set (``VmHWM``) to the current one, so each run's
    peak is its own; elsewhere the peak stays the process's so far."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak() -> int | None:
    """The peak resident set since ``_reset_peak``, in bytes (None without /proc)."""
    with contextlib.suppress(OSError, ValueError, IndexError), \
            open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


if __name__ == "__main__":
    main()
