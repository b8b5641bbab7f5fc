"""What to verify and under which limits: the ``Spec``.

A ``Spec`` is frozen and JSON-safe (``to_dict`` / ``from_dict``); the runner sends it to the
child process as JSON. Invalid values raise ``ValueError`` at construction, so a bad spec is
a caller error, never a failed model.

``backend="auto"`` picks by what the path is (``resolve_backend``):

- a file that starts with the GGUF magic -> ``llama.cpp`` (the name does not matter: the
  worker hands over content-addressed blobs without a ``.gguf`` suffix);
- a directory -> ``mlx`` (an MLX / safetensors model directory: ``config.json``,
  ``*.safetensors``, tokenizer files);
- anything else -> ``None`` (the runner fails the model: "not a model").
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

BACKENDS = ("llama.cpp", "mlx")
GGUF_MAGIC = b"GGUF"
DEFAULT_PROMPT = "The capital of France is"
GiB = 1024**3
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")


@dataclass(frozen=True)
class RunSpec:
    """One configuration of the run matrix: ``parallel`` sequences of ``prompt_tokens``
    each, decoded together in one context of ``context`` tokens with a K/V cache of type
    ``kv_cache``, each generating exactly ``max_tokens`` tokens (end of sequence ignored, as
    llama-bench does, so figures compare between models)."""

    context: int = 2048
    kv_cache: str = "f16"
    parallel: int = 1
    prompt_tokens: int = 128
    max_tokens: int = 32

    def __post_init__(self) -> None:
        if self.kv_cache not in KV_CACHE_TYPES:
            raise ValueError(f"kv_cache must be one of {', '.join(KV_CACHE_TYPES)}, "
                             f"not {self.kv_cache!r}")
        if min(self.context, self.parallel, self.prompt_tokens, self.max_tokens) < 1:
            raise ValueError("context, parallel, prompt_tokens and max_tokens must be >= 1")
        if self.parallel * (self.prompt_tokens + self.max_tokens) > self.context:
            raise ValueError("parallel x (prompt_tokens + max_tokens) must fit in context")


@dataclass(frozen=True)
class PromptSpec:
    """A prompt whose greedy answer (at most ``max_tokens``) must match ``expect``, a
    regular expression searched anywhere in it; ``chat`` renders the model's own chat
    template around it."""

    prompt: str
    expect: str
    chat: bool = False
    max_tokens: int = 32

    def __post_init__(self) -> None:
        if not self.prompt or not self.expect:
            raise ValueError("a prompt check needs a prompt and an expect pattern")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")

    def matches(self, answer: str) -> bool:
        """Whether ``answer`` passes: ``expect`` found anywhere in it."""
        return re.search(self.expect, answer) is not None


def _default_threads() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Spec:
    """One verification run.

    - ``model_path``: a GGUF file or an MLX model directory on local disk.
    - ``backend``: ``"auto"``, ``"llama.cpp"`` or ``"mlx"``.
    - ``prompt`` / ``max_tokens``: the fixed prompt, fed raw (no chat template), and how
      many tokens to generate greedily at most (generation also stops at end of sequence).
    - ``n_ctx``: context size for llama.cpp (prompt + ``max_tokens`` must fit); MLX sizes
      its cache itself.
    - ``threads``: compute threads (llama.cpp ``n_threads``/``n_threads_batch``; for both
      backends also ``OMP_NUM_THREADS`` and the BLAS thread variables). Default: all cores.
    - ``gpu_layers``: layers llama.cpp offloads to a GPU (``n_gpu_layers``; -1: all, 0:
      none); ``None``: all when the child's llama.cpp build can offload
      (``llama_supports_gpu_offload``), else none. MLX has nothing to offload: it runs on
      its default device (the GPU on Apple Silicon) and ignores it.
    - ``timeout_s``: hard wall-clock limit for the whole child (start, load, generation).
    - ``memory_limit_bytes``: limit on the child's resident set size, or ``None``.
    - ``min_generation_tps``: the throughput check; ``None`` means no check.
    - ``seed``: backend seed (greedy decoding does not depend on it; recorded for replay).
    - ``network_isolation``: run the child in a network namespace of its own where the OS
      allows it (``verifier.sandbox``); the report says whether it was.
    - ``perplexity``: after generating, measure perplexity on the project's English text
      (``verifier.quality``); ``max_perplexity``: the quality check (``None``: none).
    - ``runs``: the run matrix, measured after the smoke generation passed; each run must
      reach ``min_generation_tps`` per sequence too, and stay under
      ``max_peak_memory_bytes`` (its own peak; ``None``: no limit beyond the hard one).
    - ``prompts``: prompt checks, answered after the runs; with ``prompts_must_match`` a
      prompt whose answer does not match fails the model.
    - ``profile``: the profile this spec was made from (name, hash, document), copied into
      the report unread.
    """

    model_path: Path
    backend: str = "auto"
    prompt: str = DEFAULT_PROMPT
    max_tokens: int = 32
    n_ctx: int = 1024
    threads: int = field(default_factory=_default_threads)
    gpu_layers: int | None = None
    timeout_s: float = 300.0
    memory_limit_bytes: int | None = 8 * GiB
    min_generation_tps: float | None = None
    seed: int = 0
    network_isolation: bool = True
    perplexity: bool = False
    max_perplexity: float | None = None
    runs: tuple[RunSpec, ...] = ()
    prompts: tuple[PromptSpec, ...] = ()
    max_peak_memory_bytes: int | None = None
    prompts_must_match: bool = True
    profile: dict | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_path", Path(self.model_path))
        object.__setattr__(self, "runs", tuple(
            r if isinstance(r, RunSpec) else RunSpec(**r) for r in self.runs))
        object.__setattr__(self, "prompts", tuple(
            p if isinstance(p, PromptSpec) else PromptSpec(**p) for p in self.prompts))
        if self.backend not in ("auto", *BACKENDS):
            raise ValueError(f"backend must be 'auto', 'llama.cpp' or 'mlx', not {self.backend!r}")
        if not self.prompt:
            raise ValueError("prompt must not be empty")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.n_ctx < 1:
            raise ValueError("n_ctx must be >= 1")
        if self.threads < 1:
            raise ValueError("threads must be >= 1")
        if self.gpu_layers is not None and self.gpu_layers < -1:
            raise ValueError("gpu_layers must be -1 (all), 0 or more, or None (automatic)")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if self.memory_limit_bytes is not None and self.memory_limit_bytes <= 0:
            raise ValueError("memory_limit_bytes must be > 0 or None")
        if self.min_generation_tps is not None and self.min_generation_tps < 0:
            raise ValueError("min_generation_tps must be >= 0 or None")
        if self.max_perplexity is not None:
            if not self.max_perplexity > 0:
                raise ValueError("max_perplexity must be > 0 or None")
            if not self.perplexity:
                raise ValueError("max_perplexity needs perplexity=True")
        if self.max_peak_memory_bytes is not None and self.max_peak_memory_bytes <= 0:
            raise ValueError("max_peak_memory_bytes must be > 0 or None")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["model_path"] = str(self.model_path)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Spec:
        return cls(**data)


def resolve_backend(spec: Spec) -> str | None:
    """The backend to run ``spec`` with, or ``None`` when ``auto`` finds no model there.

    Raises ``ValueError`` when ``model_path`` does not exist (a caller error).
    """
    path = spec.model_path
    if not path.exists():
        raise ValueError(f"model path does not exist: {path}")
    if spec.backend != "auto":
        return spec.backend
    if path.is_dir():
        return "mlx"
    try:
        with open(path, "rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError:
        return None
    return "llama.cpp" if magic == GGUF_MAGIC else None
