"""Backends: the code that runs inside the child process.

Each backend is a module with the same three functions, called in this order by
``verifier.child``; the heavy imports (``llama_cpp``, ``mlx``) happen inside them, so
importing a backend module is cheap and never fails::

    version() -> str                          # imports the package; ImportError if missing
    placement(spec) -> dict                   # where the model will run (see below)
    load(spec) -> model                       # raises LoadError(reason) when it will not load
    generate(model, spec) -> Generation       # greedy, timed; may raise anything on a crash
    perplexity(model, spec) -> Perplexity     # verifier.quality's text; only if spec asks
    measure(model, spec, run) -> RunFigures    # one configuration of the run matrix
    answer(model, spec, prompt) -> Answer      # one prompt check, greedy
    release(model)                             # before the runs: free the load's context

``placement`` is recorded in the report's ``hardware``: llama.cpp's build (``cpu``,
``cuda``, ``metal``, ...; ``verifier.capabilities``), whether it can offload to a GPU
(``gpu_offload``) and the ``gpu_layers`` it is given (``n_gpu_layers``: -1 all, 0 none);
MLX's ``device`` (``gpu`` or ``cpu``).

Plus, for the parent, ``load_failure_reason(error, log) -> str``: the most telling line for
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
    """This backend cannot run this configuration (or prompt) for this model; ``str(exc)``
    is why. Reported next to the configuration, never a failure of the model."""


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


@dataclass
class RunFigures:
    """One configuration of the run matrix, measured (times from before tokenization)."""

    prompt_tokens: int  # per sequence
    prompt_s: float  # evaluating every sequence's prompt
    first_s: float  # until every sequence had its first token
    last_s: float  # until the last token of the last sequence
    tokens: list[int]  # tokens generated per sequence
    output_sha256: str  # sha256 of sequence 0's token ids, ",".join(str(id))
    non_finite: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Answer:
    """A prompt check's greedy answer; ``template`` says how the prompt was rendered:
    ``"gguf"``, ``"llama.cpp built-in: NAME"``, ``"tokenizer"``, or ``None`` (raw)."""

    text: str
    tokens: int
    template: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def run_prompt(text_tokens: list[int], n: int, sequence: int, bos: int | None) -> list[int]:
    """The prompt of sequence ``sequence`` of a run: ``n`` tokens of the project's text
    (``text_tokens``, tokenized without BOS) from offset ``sequence * n``, wrapping around,
    with BOS first when the model has one (then ``n - 1`` text tokens). Each sequence reads
    a different passage, so no prefix is shared between them."""
    body = n - 1 if bos is not None else n
    size = len(text_tokens)
    start = (sequence * n) % size
    picked = [text_tokens[(start + i) % size] for i in range(body)]
    return ([bos] if bos is not None else []) + picked


def check_run(run, kv_types, trained: int | None, source: str = "") -> None:
    """``Unsupported`` for a configuration no backend can run for this model: a K/V type
    outside ``kv_types``, a context beyond the training context ``trained`` (``source``
    says where that figure comes from), or sequences that do not fit the context."""
    if run.kv_cache not in kv_types:
        raise Unsupported(f"KV cache type {run.kv_cache!r} is not one of {', '.join(kv_types)}")
    if trained and run.context > trained:
        raise Unsupported(f"context {run.context} is beyond the model's training context "
                          f"{trained}{source}")
    needed = run.parallel * (run.prompt_tokens + run.max_tokens)
    if needed > run.context:
        raise Unsupported(f"{run.parallel} sequence(s) of {run.prompt_tokens} prompt and "
                          f"{run.max_tokens} generated tokens need {needed} cells, more than "
                          f"context {run.context}")
