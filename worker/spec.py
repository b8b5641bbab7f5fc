"""How the worker runs the verifier on a model it has materialised, local or remote.

One place builds the verifier's ``Spec`` from the settings, the model's layout, the
namespace's policy and the verification profile that applies, so a model in another
registry is held to exactly the limits of one pushed here.
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


def build_spec(settings: Settings, path: Path, model: ModelFormat, policy: Policy,
               profile: Profile) -> Spec:
    """The verifier's limits and measurements for ``model`` materialised at ``path``."""
    fields = measurements(profile)
    return Spec(
        model_path=path,
        max_tokens=settings.verify_max_tokens,
        timeout_s=settings.verify_timeout_seconds,
        # The weights are mapped into the child and count as resident once touched: the
        # limit is what it may use beyond them.
        memory_limit_bytes=settings.verify_memory_bytes
        + sum(w.descriptor.size for w in model.weights),
        threads=settings.verify_threads or os.cpu_count() or 1,
        network_isolation=settings.verify_network_isolation,
        **{**fields, "min_generation_tps": _floor(policy.min_generation_tps,
                                                  fields["min_generation_tps"])},
    )


def fit_table(path: Path, report: Report) -> dict:
    """The memory estimate (``registry.formats.fit``) for the model at ``path`` on the
    report's backend, per context and K/V type, with every run's measured peak held against
    it (``checks``). A model whose header or config the estimate cannot read gets
    ``{"error": why}``: the estimate is information, never a verdict."""
    try:
        shape = fit.shape_from_mlx(path) if report.backend == "mlx" else \
            fit.shape_from_gguf(path)
        table = fit.table(shape, backend=report.backend)
        return {**table, "checks": fit.check(table, shape, report.runs, report.backend)}
    except Exception as exc:  # a model's header is untrusted input: anything may be wrong
        log.warning("no fit estimate for %s: %s", path, exc)
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def verify_model(settings: Settings, materializer: Materializer, model: ModelFormat,
                 policy: Policy, profile: Profile, cancel: threading.Event) -> Report:
    """Materialise ``model`` and run the verifier on it under ``profile``. A layout the
    materialiser cannot lay out is a failed verdict (``load``), as the verifier would
    give; infrastructure errors and ``verifier.Cancelled`` propagate."""
    try:
        with materializer.model(model) as path:
            report = verify(build_spec(settings, path, model, policy, profile), cancel=cancel)
            if report.backend is not None:
                report.fit = fit_table(path, report)
            return report
    except LayoutUnsupported as exc:
        return Report(passed=False, failure="load", reason=str(exc),
                      profile=profile.recorded())
