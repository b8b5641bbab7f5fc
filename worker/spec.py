"""How the worker runs the verifier on a model it has materialised, local or remote.

One place builds the verifier's ``Spec`` from the settings, the model's layout and the
namespace's policy, so a model in another registry is held to exactly the limits of one
pushed here.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from registry.formats.classify import ModelFormat
from registry.services.policies import Policy
from registry.settings import Settings
from verifier import Report, Spec, verify
from worker.materialize import LayoutUnsupported, Materializer


def build_spec(settings: Settings, path: Path, model: ModelFormat, policy: Policy) -> Spec:
    """The verifier's limits for ``model`` materialised at ``path``."""
    return Spec(
        model_path=path,
        max_tokens=settings.verify_max_tokens,
        timeout_s=settings.verify_timeout_seconds,
        # The weights are mapped into the child and count as resident once touched: the
        # limit is what it may use beyond them.
        memory_limit_bytes=settings.verify_memory_bytes
        + sum(w.descriptor.size for w in model.weights),
        threads=settings.verify_threads or os.cpu_count() or 1,
        min_generation_tps=policy.min_generation_tps,
        network_isolation=settings.verify_network_isolation,
    )


def verify_model(settings: Settings, materializer: Materializer, model: ModelFormat,
                 policy: Policy, cancel: threading.Event) -> Report:
    """Materialise ``model`` and run the verifier on it. A layout the materialiser cannot
    lay out is a failed verdict (``load``), as the verifier would give; infrastructure
    errors and ``verifier.Cancelled`` propagate."""
    try:
        with materializer.model(model) as path:
            return verify(build_spec(settings, path, model, policy), cancel=cancel)
    except LayoutUnsupported as exc:
        return Report(passed=False, failure="load", reason=str(exc))
