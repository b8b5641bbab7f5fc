"""MLX through mlx-lm, for an MLX / safetensors model directory (runs in the child).

Load: ``mlx_lm.load(dir)`` (weights evaluated, not lazy). Nothing is fetched from a model
hub: the runner starts the child with ``HF_HUB_OFFLINE=1`` and remote code stays disabled.

Generate: the prompt is encoded with the tokenizer's own special tokens (no chat template)
and run through ``mlx_lm.generate.generate_step`` with its default greedy sampler (argmax
of the log-probabilities). Finiteness is checked on the log-probabilities of every step
(NaN or +inf logits make every log-probability NaN, -inf logits make theirs -inf); the
checks are evaluated asynchronously and read once at the end, so they add no sync point.
Stops at one of the tokenizer's EOS ids or after ``max_tokens``. On Linux this is MLX's CPU
backend; the thread count reaches it only through ``OMP_NUM_THREADS`` and the BLAS variables.
"""

from __future__ import annotations

import time

from verifier import quality
from verifier.backends import Generation, LoadError
from verifier.spec import Spec


def version() -> str:
    import mlx.core as mx
    import mlx_lm

    return f"mlx-lm {mlx_lm.__version__}, mlx {mx.__version__}"


def load(spec: Spec):
    import mlx.core as mx
    import mlx_lm

    mx.random.seed(spec.seed)
    try:
        return mlx_lm.load(str(spec.model_path))
    except Exception as exc:  # mlx-lm raises ValueError, FileNotFoundError, KeyError, ...
        raise LoadError(f"{type(exc).__name__}: {exc}") from exc


def generate(loaded, spec: Spec) -> Generation:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    model, tokenizer = loaded
    eos = set(tokenizer.eos_token_ids)
    start = time.perf_counter()
    prompt = tokenizer.encode(spec.prompt)
    eval_start = time.perf_counter()
    out: list[int] = []
    times: list[float] = []  # when each step's token was known, from ``start``
    checks = []
    stop = "length"
    for token, logprobs in generate_step(mx.array(prompt), model, max_tokens=spec.max_tokens):
        times.append(time.perf_counter() - start)
        check = mx.isfinite(logprobs).all()
        mx.async_eval(check)
        checks.append(check)
        if token in eos:
            stop = "eos"
            break
        out.append(token)
    prompt_s = (times[0] if times else time.perf_counter() - start) - (eval_start - start)

    non_finite_step = next((i for i, c in enumerate(checks) if not c.item()), None)
    if non_finite_step is not None:
        stop = "non_finite"
        out = out[:non_finite_step]
    return Generation(
        prompt_tokens=len(prompt),
        prompt_s=prompt_s,
        first_s=times[0] if out else None,
        last_s=times[len(out) - 1] if out else None,
        tokens=len(out),
        output=tokenizer.decode(out) if out else "",
        stop=stop,
        non_finite_step=non_finite_step,
    )


def perplexity(loaded, spec: Spec) -> quality.Perplexity:
    """Perplexity on the project's text (``verifier.quality``): one forward pass per chunk
    from an empty cache; the scored half's logits are read as float32."""
    import mlx.core as mx
    import numpy as np

    model, tokenizer = loaded
    started = time.perf_counter()
    tokens = tokenizer.encode(quality.text(), add_special_tokens=False)
    bos = tokenizer.bos_token_id
    chunks = quality.chunks(tokens, tokens[0] if bos is None else bos)
    scores = quality.Accumulator()
    for chunk in chunks:
        first = quality.first_scored(chunk)
        logits = model(mx.array(chunk)[None])[0, first:len(chunk) - 1].astype(mx.float32)
        rows = np.array(logits)
        for i, row in enumerate(rows):
            scores.add(row, chunk[first + i + 1])
    return scores.result(len(chunks), time.perf_counter() - started)


def load_failure_reason(error: str, log: str) -> str:
    """mlx-lm's exception says why; its log adds nothing more specific."""
    return error


def is_detail(line: str) -> bool:
    """mlx-lm logs little (no per-tensor lines): the log tail keeps every line."""
    return False
