"""How the worker runs the verifier on a model it has materialised, local or remote.

One place builds the verifier's ``Spec`` from the settings, the model's layout, the
namespace's policy, the verification profile that applies and the capabilities of the
worker that claimed the job (``verifier.capabilities.detect``, with the operator's
override), so a model in another registry is held to exactly the limits of one pushed here.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from registry.formats import fit
from registry.formats.classify import ModelFormat
from registry.profiles import Profile
from registry.services.policies import Policy
from registry.settings import Settings
from verifier import Report, Spec, verify
from verifier.spec import PromptSpec, RunSpec
from worker.materialize import LayoutUnsupported, Materializer

log = logging.getLogger(__name__)


def _floor(*values: float | None) -> float | None:
    """The strictest of the speed floors that are set (policy and profile)."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


def measurements(profile: Profile) -> dict:
    """The ``Spec`` fields a profile decides: what is measured and the limits on it."""
    limits, quality = profile.limits, profile.quality
    return {
        "perplexity": quality.perplexity,
        "max_perplexity": limits.max_perplexity if quality.perplexity else None,
        "runs": tuple(RunSpec(**run.model_dump()) for run in profile.runs),
        "prompts": tuple(PromptSpec(**check.model_dump()) for check in quality.prompts),
        "min_generation_tps": limits.min_generation_tps,
        "max_peak_memory_bytes": limits.max_peak_memory,
        "prompts_must_match": limits.prompts_must_match,
        "profile": profile.recorded(),
    }


def _positive(value) -> int | None:
    """A count or size from capabilities (an operator's override may hold anything)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if ok else None


def threads_for(settings: Settings, capabilities: dict | None = None) -> int:
    """``verify_threads``, else the cores the worker's capabilities report, else this
    machine's."""
    cores = _positive((capabilities or {}).get("cores"))
    return settings.verify_threads or cores or os.cpu_count() or 1


def memory_limit(settings: Settings, model: ModelFormat,
                 capabilities: dict | None = None) -> int:
    """The child's resident-set limit: ``verify_memory_bytes`` beyond the weights (they
    are mapped into the child and count as resident once touched), never more than the
    memory the worker's capabilities report."""
    limit = settings.verify_memory_bytes + sum(w.descriptor.size for w in model.weights)
    machine = _positive((capabilities or {}).get("memory_bytes"))
    return min(limit, machine) if machine else limit


def build_spec(settings: Settings, path: Path, model: ModelFormat, policy: Policy,
               profile: Profile, *, capabilities: dict | None = None) -> Spec:
    """The verifier's limits and measurements for ``model`` materialised at ``path``, on
    the worker whose ``capabilities`` are given (``None``: this machine, as detected by
    the verifier)."""
    fields = measurements(profile)
    return Spec(
        model_path=path,
        max_tokens=settings.verify_max_tokens,
        timeout_s=settings.verify_timeout_seconds,
        memory_limit_bytes=memory_limit(settings, model, capabilities),
        threads=threads_for(settings, capabilities),
        gpu_layers=settings.verify_gpu_layers,
        network_isolation=settings.verify_network_isolation,
        **{**fields, "min_generation_tps": _floor(policy.min_generation_tps,
                                                  fields["min_generation_tps"])},
    )


def gpu_fits(shape: fit.ModelShape, report: Report) -> dict | None:
    """For llama.cpp with every layer offloaded to a GPU of known memory (the report's
    ``hardware``): the GPU (``kind``, ``name``, ``memory_bytes``) and the largest context
    per KV type whose estimate fits in its memory (``fits``; ``calibrated: false``, see
    ``registry.formats.fit``). ``None`` otherwise: a CPU run, some layers left on the
    host, or Apple's unified memory, which the table's memory sizes already cover."""
    hardware = report.hardware or {}
    accelerator = hardware.get("accelerator") or {}
    memory, layers = accelerator.get("memory_bytes"), hardware.get("gpu_layers")
    if (report.backend != "llama.cpp" or not hardware.get("gpu_offload")
            or accelerator.get("kind") in (None, "none", "metal")
            or not isinstance(memory, int) or memory <= 0 or not isinstance(layers, int)
            or not (layers == -1 or layers > shape.n_layer)):  # n_layer + 1: the output too
        return None
    return {"kind": accelerator.get("kind"), "name": accelerator.get("name"),
            "memory_bytes": memory, "fits": fit.fits_in(shape, memory), "calibrated": False}


def fit_table(path: Path, report: Report) -> dict:
    """The memory estimate (``registry.formats.fit``) for the model at ``path`` on the
    report's backend, per context and K/V type, with every run's measured peak (host and,
    where measured, GPU) held against it (``checks``), and for a run offloaded to a GPU the
    contexts that fit in its memory (``accelerator``, ``gpu_fits``). A model whose header or
    config the estimate cannot read gets ``{"error": why}``: the estimate is information,
    never a verdict."""
    try:
        shape = fit.shape_from_mlx(path) if report.backend == "mlx" else \
            fit.shape_from_gguf(path)
        table = fit.table(shape, backend=report.backend)
        on_gpu = gpu_fits(shape, report)
        return {**table, **({"accelerator": on_gpu} if on_gpu else {}),
                "checks": fit.check(table, shape, report.runs, report.backend)}
    except Exception as exc:  # a model's header is untrusted input: anything may be wrong
        log.warning("no fit estimate for %s: %s", path, exc)
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def verify_model(settings: Settings, materializer: Materializer, model: ModelFormat,
                 policy: Policy, profile: Profile, cancel: threading.Event, *,
                 capabilities: dict | None = None) -> Report:
    """Materialise ``model`` and run the verifier on it under ``profile``, with the
    threads and memory of the worker whose ``capabilities`` are given (``build_spec``).
    A layout the materialiser cannot lay out is a failed verdict (``load``), as the
    verifier would give; infrastructure errors and ``verifier.Cancelled`` propagate."""
    try:
        with materializer.model(model) as path:
            spec = build_spec(settings, path, model, policy, profile, capabilities=capabilities)
            report = verify(spec, cancel=cancel)
            if report.backend is not None:
                report.fit = fit_table(path, report)
            return report
    except LayoutUnsupported as exc:
        return Report(passed=False, failure="load", reason=str(exc),
                      profile=profile.recorded())
