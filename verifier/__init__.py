"""The verifier: run a model in a sandboxed child process and report what it did.

A pure library (no web, database or queue imports)::

    from verifier import Spec, verify

    report = verify(Spec(model_path=Path("gemma.gguf"), max_tokens=32, timeout_s=120))
    report.passed, report.failure, report.reason, report.generation_tps, report.output

- ``verifier.spec``: ``Spec``, the run's inputs and limits, and backend auto-detection;
- ``verifier.run``: ``verify(spec) -> Report``, the child process, its limits, the verdict;
- ``verifier.report``: ``Report``, the figures and the verdict, JSON-safe;
- ``verifier.child``: the child's entry point (``python -m verifier.child``);
- ``verifier.backends``: llama.cpp (GGUF) and MLX (model directories), run in the child;
- ``verifier.hardware``: the machine's description for the report;
- ``verifier.gpu``: the child's GPU memory, sampled through NVML where it is installed.

``python -m verifier MODEL_PATH`` runs one verification and prints the report.
"""

from verifier.report import FAILURES, Report
from verifier.run import BackendUnavailable, Cancelled, verify
from verifier.spec import DEFAULT_PROMPT, Spec

__all__ = ["DEFAULT_PROMPT", "FAILURES", "BackendUnavailable", "Cancelled", "Report", "Spec",
           "verify"]
