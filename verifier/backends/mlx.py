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

Measure: one configuration of the run matrix with mlx-lm's quantized KV cache (one sequence)
or its batched generation (several). Answer: one prompt, raw or through the tokenizer's chat
template, answered greedily.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from verifier import quality
from verifier.backends import (
    Answer,
    Generation,
    LoadError,
    RunFigures,
    Unsupported,
    check_run,
    run_prompt,
)
from verifier.spec import PromptSpec, RunSpec, Spec

# mlx-lm's KV cache quantization (``generate_step``'s ``kv_bits``) for each KV cache type,
# in groups of mlx-lm's default size along each head's dimension.
_KV_BITS = {"f16": None, "q8_0": 8, "q4_0": 4}
_KV_GROUP = 64


def version() -> str:
    import mlx.core as mx
    import mlx_lm

    return f"mlx-lm {mlx_lm.__version__}, mlx {mx.__version__}"


def placement(spec: Spec) -> dict:
    """MLX's default device: ``gpu`` (Metal, on Apple Silicon) or ``cpu``; there are no
    layers to offload, so ``spec.gpu_layers`` does not apply."""
    from verifier.capabilities import mlx_backend

    return {"device": (mlx_backend() or {}).get("device")}


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
    from an empty cache; the scored half's logits are read as float32. For architectures
    whose output is the plain (or tied) projection of the last hidden state
    (``_PLAIN_HEAD``), only the scored half is projected: the vocabulary projection is most
    of the work for a small model with a large vocabulary."""
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
        logits = _scored_logits(model, mx.array(chunk)[None], first, len(chunk) - 1)
        rows = np.array(logits.astype(mx.float32))
        for i, row in enumerate(rows):
            scores.add(row, chunk[first + i + 1])
    return scores.result(len(chunks), time.perf_counter() - started)


# mlx-lm model modules whose ``Model.__call__`` is ``self.model(...)`` followed by the tied
# embedding's ``as_linear`` or ``lm_head``, with nothing after it (no soft-capping).
_PLAIN_HEAD = {"mlx_lm.models.gemma3_text", "mlx_lm.models.llama", "mlx_lm.models.qwen2",
               "mlx_lm.models.qwen3"}


def _scored_logits(model, inputs, first: int, end: int):
    """The logits of positions ``first`` to ``end`` (exclusive) of one sequence."""
    if type(model).__module__ not in _PLAIN_HEAD:
        return model(inputs)[0, first:end]
    hidden = model.model(inputs)[:, first:end]
    if getattr(model, "tie_word_embeddings", False) or not hasattr(model, "lm_head"):
        return model.model.embed_tokens.as_linear(hidden)[0]
    return model.lm_head(hidden)[0]


def measure(loaded, spec: Spec, run: RunSpec) -> RunFigures:
    """One configuration of the run matrix. Sequence ``s``'s prompt is
    ``run_prompt(text, run.prompt_tokens, s, bos)`` of the project's text; each sequence gets
    exactly ``run.max_tokens`` greedy tokens (end of sequence ignored); a step whose
    log-probabilities are not finite ends that sequence (``non_finite``). One sequence:
    ``generate_step`` (the prompt prefilled, then one token per step), its KV cache quantized
    from the first token for q8_0 / q4_0 (``kv_bits`` 8 / 4, groups of 64). Several:
    mlx-lm's ``BatchGenerator``, every prompt prefilled in one batch and one token per
    sequence per step. The clock starts before the text is tokenized.

    ``run.context`` sizes nothing here (mlx-lm grows its caches as tokens come): it bounds the
    run, whose sequences' tokens must fit it together as in llama.cpp's shared context, and
    must not exceed the model's ``max_position_embeddings``. Raises ``Unsupported`` for those,
    for a quantized KV cache when a head's dimension is not a multiple of the group size, and
    for a quantized KV cache with several sequences (mlx-lm's batched caches refuse one:
    "QuantizedKVCache does not yet support batching"), and for what mlx-lm has not
    implemented (``NotImplementedError``: a sliding-window layer's rotating cache cannot be
    quantized, so Gemma 3 runs no q8_0 / q4_0 cache on MLX).
    """
    import mlx.core as mx

    model, tokenizer = loaded
    _check_run(_config(spec.model_path), run)
    start = time.perf_counter()
    text = tokenizer.encode(quality.text(), add_special_tokens=False)
    bos = _bos(tokenizer)
    prompts = [run_prompt(text, run.prompt_tokens, s, bos) for s in range(run.parallel)]
    eval_start = time.perf_counter()
    try:
        if run.parallel == 1:
            tokens, times, checks = _single(model, prompts[0], run)
        else:
            tokens, times, checks = _batched(model, prompts, run)
    except NotImplementedError as exc:  # e.g. "RotatingKVCache Quantization NYI"
        raise Unsupported(f"mlx-lm cannot run this configuration for this model: {exc}") \
            from None
    non_finite = False
    for i, sequence in enumerate(checks):  # read once, at the end: no sync point per step
        bad = next((step for step, check in enumerate(sequence) if not check.item()), None)
        if bad is not None:
            tokens[i], non_finite = tokens[i][:bad], True
    first_s = max(t[0] for t in times) - start  # every sequence has its first token
    last_s = max(t[len(seq) - 1] if seq else t[0] for t, seq in zip(times, tokens, strict=True))
    mx.clear_cache()
    return RunFigures(
        prompt_tokens=len(prompts[0]),
        prompt_s=first_s - (eval_start - start),
        first_s=first_s,
        last_s=last_s - start,
        tokens=[len(seq) for seq in tokens],
        output_sha256=hashlib.sha256(",".join(map(str, tokens[0])).encode()).hexdigest(),
        non_finite=non_finite,
    )


def _config(model_path) -> dict:
    """The model's ``config.json``, with a multimodal model's ``text_config`` on top."""
    config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    return {**config, **config.get("text_config", {})}


def _check_run(config: dict, run: RunSpec) -> None:
    check_run(run, _KV_BITS, config.get("max_position_embeddings"),
              " (max_position_embeddings)")
    if _KV_BITS[run.kv_cache] is None:
        return
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    if head_dim % _KV_GROUP:
        raise Unsupported(f"mlx-lm quantizes the KV cache in groups of {_KV_GROUP} values along "
                          f"each head: head_dim {head_dim} is not a multiple of {_KV_GROUP}")
    if run.parallel > 1:
        raise Unsupported("mlx-lm's batched generation does not support a quantized KV cache")


def _bos(tokenizer) -> int | None:
    """The BOS token when the tokenizer starts its input with one."""
    bos = tokenizer.bos_token_id
    return bos if bos is not None and tokenizer.encode("a")[:1] == [bos] else None


def _single(model, prompt: list[int], run: RunSpec):
    """One sequence: its tokens, when each was known, and lazy finiteness checks."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    tokens, times, checks = [], [], []
    for token, logprobs in generate_step(
            mx.array(prompt), model, max_tokens=run.max_tokens,
            kv_bits=_KV_BITS[run.kv_cache], kv_group_size=_KV_GROUP, quantized_kv_start=0):
        times.append(time.perf_counter())
        check = mx.isfinite(logprobs).all()
        mx.async_eval(check)
        checks.append(check)
        tokens.append(token)
    return [tokens], [times], [checks]


def _batched(model, prompts: list[list[int]], run: RunSpec):
    """Every sequence in one batch: per sequence, its tokens, when each was known, and lazy
    finiteness checks."""
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator

    n = len(prompts)
    generator = BatchGenerator(model, max_tokens=run.max_tokens, completion_batch_size=n,
                               prefill_batch_size=n)
    try:
        uids = generator.insert(prompts)
        index = {uid: i for i, uid in enumerate(uids)}
        tokens, times, checks = ([[] for _ in prompts] for _ in range(3))
        while responses := generator.next_generated():
            now = time.perf_counter()
            for response in responses:
                i = index[response.uid]
                check = mx.isfinite(response.logprobs).all()
                mx.async_eval(check)
                tokens[i].append(response.token)
                times[i].append(now)
                checks[i].append(check)
    finally:
        generator.close()
    return tokens, times, checks


def answer(loaded, spec: Spec, prompt: PromptSpec) -> Answer:
    """The greedy answer to ``prompt``: up to ``prompt.max_tokens`` tokens, stopping at one of
    the tokenizer's EOS ids. Raw: encoded with the tokenizer's special tokens, as ``generate``
    does. Chat: the tokenizer's chat template (``apply_chat_template``, which transformers
    renders in Jinja's sandbox) for one user message with the assistant's turn opened,
    encoded without adding special tokens (the template writes its own). Raises
    ``Unsupported`` when the tokenizer has no chat template or its template fails."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    model, tokenizer = loaded
    template = None
    if not prompt.chat:
        tokens = tokenizer.encode(prompt.prompt)
    elif not tokenizer.has_chat_template:
        raise Unsupported("the model has no chat template")
    else:
        try:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt.prompt}], add_generation_prompt=True,
                tokenize=False)
        except Exception as exc:  # anything a template can raise: it is the model's content
            why = " ".join(str(exc).split())[:300]
            raise Unsupported(f"the chat template failed: {type(exc).__name__}: {why}") from None
        tokens = tokenizer.encode(rendered, add_special_tokens=False)
        template = "tokenizer"
    eos = set(tokenizer.eos_token_ids)
    out: list[int] = []
    for token, _ in generate_step(mx.array(tokens), model, max_tokens=prompt.max_tokens):
        if token in eos:
            break
        out.append(token)
    return Answer(text=tokenizer.decode(out) if out else "", tokens=len(out), template=template)


def release(loaded) -> None:
    """Return MLX's cached buffers before the runs, so each run's peak is its own."""
    import mlx.core as mx

    mx.clear_cache()


def load_failure_reason(error: str, log: str) -> str:
    """mlx-lm's exception says why; its log adds nothing more specific."""
    return error


def is_detail(line: str) -> bool:
    """mlx-lm logs little (no per-tensor lines): the log tail keeps every line."""
    return False
