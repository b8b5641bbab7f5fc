"""Backends: the code that runs inside the child process.

Each backend is a module with the same three functions, called in this order by
``verifier.child``; the heavy imports (``llama_cpp``, ``mlx``) happen inside them, so
importing a backend module is cheap and never fails::

    version() -> str                          # imports the package; ImportError if missing
    load(spec) -> model                       # raises LoadError(reason) when it will not load
    generate(model, spec) -> Generation       # greedy, timed; may raise anything on a crash
    perplexity(model, spec) -> Perplexity     # verifier.quality's text; only if spec asks

plus, for the parent, ``load_failure_reason(error, log) -> str``: the most telling line for
a load failure, which for llama.cpp is in its log rather than in the Python exception; and
``is_detail(line) -> bool``: whether a line of the backend's log is routine detail (per
tensor, per layer, ...) that the report's log tail leaves out.

Timing rules (shared so that figures compare across backends): the clock starts before
tokenization; ``prompt_s`` is the prompt evaluation that yields the first token's logits;
``first_s`` / ``last_s`` are when the first / last generated token was known, relative to
that start. Nothing per token beyond reading the logits' finiteness and argmax.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from types import ModuleType

MODULES = {"llama.cpp": "verifier.backends.llama_cpp", "mlx": "verifier.backends.mlx"}


class LoadError(Exception):
    """The backend refused the model; ``str(exc)`` is the reason."""


class Unsupported(Exception):
    """This backend cannot run this configuration; str(exc) is why."""


@dataclass
class RunFigures:
    prompt_tokens: int  # per sequence
    prompt_s: float  # evaluating every sequence's prompt (all prompt tokens)
    first_s: float  # from start (before tokenization) until every sequence has its first token
    last_s: float  # from start until the last token of the last sequence
    tokens: list[int]  # tokens generated per sequence (== max_tokens unless non-finite)
    output_sha256: str  # sha256 of sequence 0's generated token ids, ",".join(str(id))
    non_finite: bool = False


@dataclass
class Answer:
    text: str
    tokens: int
    template: str | None  # "gguf" | "llama.cpp built-in: gemma" | "tokenizer" | None (raw)


def run_prompt(text_tokens: list[int], n: int, sequence: int, bos: int | None) -> list[int]:
    """The deterministic prompt of sequence ``sequence``: ``n`` tokens of the project's text
    (verifier.quality.text(), tokenized without BOS) starting at offset sequence*n (wrapping),
    BOS first when the model has one (then n-1 text tokens)."""
    count = n - 1 if bos is not None else n
    start = sequence * n
    size = len(text_tokens)
    body = [text_tokens[(start + i) % size] for i in range(count)]
    return [bos, *body] if bos is not None else body


@dataclass
class Generation:
    prompt_tokens: int
    prompt_s: float
    first_s: float | None  # None when no token was generated
    last_s: float | None
    tokens: int  # generated tokens, end-of-sequence not counted
    output: str
    stop: str  # "eos", "length" or "non_finite"
    non_finite_step: int | None = None  # 0 = the prompt's logits, k = after k tokens

    def to_dict(self) -> dict:
        return asdict(self)


def backend_module(name: str) -> ModuleType:
    return importlib.import_module(MODULES[name])
