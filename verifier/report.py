"""The result of one verification run: the ``Report``.

A report is the verdict on a model, passed or failed; it is never an exception. A failed
report has ``passed=False``, a ``failure`` code and a one-line human ``reason``; the figures
measured before the failure are kept (``None`` when not reached). ``log_tail`` holds the
last lines (about 4 KiB) of the backend's own log, for passed and failed runs alike, without
its routine per-tensor and per-layer detail (errors, warnings and the load summary stay).

Failure codes (``FAILURES``), all of them the model's fault:

- ``load``: not a model, or the backend refused to load it (bad header, tensor table, ...)
- ``crash``: the child died (killed by a signal, non-zero exit) or the backend raised
  while generating
- ``timeout``: the run exceeded ``Spec.timeout_s``; the child's process group was killed
- ``memory``: the child's resident set exceeded ``Spec.memory_limit_bytes``
- ``non_finite``: the model produced NaN or infinite logits
- ``no_tokens``: the model produced no token (end of sequence came first)
- ``throughput``: generation tokens/s below ``Spec.min_generation_tps``
- ``quality``: perplexity on the project's text above ``Spec.max_perplexity``, or not
  finite; a prompt check that did not match (or, judged by the registry, a perplexity
  ratio to the profile's reference above its limit)
- ``regression``: set by the registry, never the verifier: worse than the tag's previous
  ready version beyond the profile's thresholds, under ``regressions: {action: fail}``

Figures: ``load_s`` (backend load call), ``prompt_tokens`` and ``prompt_tps`` (prompt
evaluation, which yields the first token's logits), ``ttft_s`` (tokenization + prompt
evaluation + first token), ``generation_tps`` ((tokens_generated - 1) / time from the first
to the last token, so decode steps only; ``None`` with fewer than two tokens),
``tokens_generated``, ``peak_rss_bytes`` (the child's peak resident set, from ``wait4``),
``peak_gpu_bytes`` (its peak GPU memory, sampled through NVML, ``verifier.gpu``; ``None``
when not measured: no NVML, or nothing ran on a GPU),
``output`` (greedy text; invalid UTF-8 replaced) and ``output_sha256`` (hex sha256 of
``output`` encoded as UTF-8), ``wall_s`` (the whole ``verify`` call). With
``Spec.perplexity``: ``perplexity`` (None when it was not finite), ``perplexity_tokens``
(tokens scored), ``perplexity_s`` and ``perplexity_text_sha256`` (the text it was measured
on, ``verifier.quality``).

Profile and matrix (see ``verifier.verdict``): ``profile`` is ``Spec.profile`` as given
(name, hash, document); ``runs`` one object per configuration of ``Spec.runs`` that was
reached (``context``, ``kv_cache``, ``parallel``, ``prompt_tokens``, ``max_tokens``, then
``unsupported`` with the backend's reason, or ``prompt_tps``, ``generation_tps`` per
sequence, ``aggregate_generation_tps``, ``ttft_s``, ``peak_rss_bytes`` and
``peak_gpu_bytes`` of that run,
``tokens_generated``, ``output_sha256`` of sequence 0's token ids and ``seconds``);
``quality`` the perplexity figures again with ``text_sha256`` and ``prompts`` (``prompt``,
``chat``, ``expect``, ``output``, ``matched``, ``template``, ``unsupported``,
``seconds``). ``fit`` (the memory estimate checked against the runs, ``registry.formats.
fit``) is added by the worker, ``regressions`` by the registry.

Hardware: ``hardware`` describes the machine (``verifier.hardware``) and where the backend
ran the model (its ``placement``: llama.cpp's ``build``, ``gpu_offload`` and
``gpu_layers``; MLX's ``device``), with the machine's ``accelerator`` when that is a GPU
build or device (``verifier.capabilities``).

Sandbox: ``network_isolated`` is true when the child ran without network access (its own
network namespace, see ``verifier.sandbox``); ``sandbox`` is one line saying how, or why
isolation was not available ("not isolated: ..."). A report stored before these fields
existed loads with ``network_isolated=False`` and ``sandbox=None`` (unknown).

``to_dict()`` is JSON-safe; ``from_dict()`` ignores keys it does not know, so reports
stored by a newer version still load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

FAILURES = ("load", "crash", "timeout", "memory", "non_finite", "no_tokens", "throughput",
            "quality", "regression")


@dataclass
class Report:
    passed: bool
    failure: str | None = None
    reason: str | None = None
    backend: str | None = None
    backend_version: str | None = None
    hardware: dict = field(default_factory=dict)
    prompt: str | None = None
    load_s: float | None = None
    prompt_tokens: int | None = None
    prompt_tps: float | None = None
    generation_tps: float | None = None
    ttft_s: float | None = None
    tokens_generated: int | None = None
    peak_rss_bytes: int | None = None
    peak_gpu_bytes: int | None = None
    output: str | None = None
    output_sha256: str | None = None
    log_tail: str = ""
    wall_s: float | None = None
    network_isolated: bool = False
    sandbox: str | None = None
    perplexity: float | None = None
    perplexity_tokens: int | None = None
    perplexity_s: float | None = None
    perplexity_text_sha256: str | None = None
    profile: dict | None = None
    runs: list[dict] = field(default_factory=list)
    quality: dict | None = None
    fit: dict | None = None
    regressions: dict | None = None

    def __post_init__(self) -> None:
        if self.failure is not None and self.failure not in FAILURES:
            raise ValueError(f"unknown failure code {self.failure!r}")
        if self.passed != (self.failure is None):
            raise ValueError("a report passes exactly when it has no failure code")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary(self) -> str:
        """One line for people: the verdict and the headline figures."""
        if not self.passed:
            return f"failed ({self.failure}): {self.reason}"
        tps = f"{self.generation_tps:.1f} tokens/s" if self.generation_tps else "n/a tokens/s"
        return (f"passed: {self.backend} {self.backend_version}, {tps}, "
                f"{self.tokens_generated} tokens, load {self.load_s:.2f} s")
