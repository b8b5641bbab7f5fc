"""llama.cpp through llama-cpp-python, for a single GGUF file (runs in the child).

Load: ``Llama(model_path, n_ctx, n_threads, n_threads_batch, n_gpu_layers, seed,
verbose=True)`` (``load_kwargs``); the model is memory-mapped (llama.cpp's default),
``logits_all=False``; with ``verbose`` llama.cpp logs to stderr, which the runner keeps the
tail of. ``n_gpu_layers`` is ``gpu_layers(spec)``: the spec's, else all layers on a build
that can offload to a GPU (CUDA, Metal, Vulkan, ROCm) and none on a CPU build. The contexts
made from the loaded model (runs, perplexity) keep llama.cpp's default of putting the K/V
cache and compute buffers where the layers are.

Generate: the prompt is tokenized with BOS (no chat template) and evaluated in one
``Llama.eval``; then greedy decoding, one ``Llama.eval([token])`` per token, the same calls
``Llama.generate`` makes, so tokens/s matches running llama-cpp-python directly. The next
token is the argmax of the last row of logits (what llama.cpp's greedy sampler picks), read
straight from the context (``llama_get_logits_ith``), and that row must be finite. It stops
at an end-of-generation token, after ``max_tokens``, or when the context is full.

Measure: one configuration of the run matrix, its sequences decoded together in a context of
its own, as llama.cpp's server batches requests. Answer: one prompt, raw or through the model's
chat template (rendered in Jinja's sandbox), answered greedily.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import time
from contextlib import contextmanager

from verifier import chat_template, quality
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

_LOAD_ERROR = "error loading model: "
_GENERIC = ("failed to load model", "failed to read tensor info")
_ERROR_WORDS = re.compile(
    r"error|invalid|corrupt|not within|wrong|unsupported|missing|failed|mismatch", re.IGNORECASE
)
_PREFIX = re.compile(r"^(?:[a-z_][a-z0-9_]*: )+")
# What ``verbose=True`` logs per tensor, per layer, per metadata key, per token and per
# graph node, its progress dots, and the configuration dumps around the load summary:
# over a thousand lines for a healthy model, which would push the lines that tell why a
# model failed out of the log tail. Error and warning lines never start like these.
_DETAIL = re.compile(
    r"^(?:\.+$|\.*(?:create_tensor: loading tensor |llama_graph_n_input_tensors: |repack: "
    r"|graph_reserve: |resolve_fused_ops: |set_abort_callback: |Model metadata: \{"
    r"|llama_model_loader: (?:- kv |- type |Dumping metadata)"
    r"|load_tensors: layer |llama_kv_cache: (?:layer |attn_rot_)"
    r"|load: (?:control|printing all EOG|  - |special tokens|token to piece)"
    r"|llama_context: (?:enumerating|backend_ptrs|(?!n_ctx\s)\w+\s+= )"
    r"|sched_reserve: (?!.*buffer size)))"
)
# The load summary kept from print_info's ~80 lines: what the model is and how big.
_SUMMARY = re.compile(r"^print_info: (?:file format|file type|file size|arch|model type"
                      r"|model params|general\.name|n_ctx_train|vocab type|n_vocab)\s+=")


def _clean(line: str) -> str:
    """Without the ``function_name: `` prefixes and runs of spaces."""
    return " ".join(_PREFIX.sub("", line.strip()).split())


def version() -> str:
    import llama_cpp

    return f"llama-cpp-python {llama_cpp.__version__}"


def gpu_layers(spec: Spec) -> int:
    """``n_gpu_layers`` for ``spec``: ``spec.gpu_layers`` when set, else -1 (all) when this
    build of llama.cpp can offload to a GPU, else 0."""
    if spec.gpu_layers is not None:
        return spec.gpu_layers
    import llama_cpp

    try:
        return -1 if llama_cpp.llama_supports_gpu_offload() else 0
    except Exception:  # noqa: BLE001 - a build without the call cannot offload either
        return 0


def placement(spec: Spec) -> dict:
    """The build, whether it can offload, and the layers it is asked to offload."""
    from verifier.capabilities import llama_cpp_backend

    found = llama_cpp_backend() or {}
    return {"build": found.get("build"), "gpu_offload": bool(found.get("gpu_offload")),
            "gpu_layers": gpu_layers(spec)}


def load_kwargs(spec: Spec) -> dict:
    """The arguments ``load`` gives ``llama_cpp.Llama``."""
    return {"model_path": str(spec.model_path), "n_ctx": spec.n_ctx,
            "n_threads": spec.threads, "n_threads_batch": spec.threads,
            "n_gpu_layers": gpu_layers(spec), "seed": spec.seed, "logits_all": False,
            "verbose": True}


def load(spec: Spec):
    from llama_cpp import Llama

    try:
        return Llama(**load_kwargs(spec))
    except Exception as exc:  # llama-cpp-python raises ValueError/RuntimeError; the log says why
        raise LoadError(f"{type(exc).__name__}: {exc}") from exc


def generate(llm, spec: Spec) -> Generation:
    import llama_cpp
    import numpy as np

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llm.n_vocab()
    n_ctx = llm.n_ctx()

    def last_logits():
        pointer = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(n_vocab,))

    start = time.perf_counter()
    prompt = llm.tokenize(spec.prompt.encode("utf-8"), add_bos=True, special=False)
    eval_start = time.perf_counter()
    llm.eval(prompt)
    logits = last_logits()
    finite = bool(np.isfinite(logits).all())
    token = int(logits.argmax())
    now = time.perf_counter()
    prompt_s = now - eval_start

    out: list[int] = []
    first_s = last_s = None
    stop = "length"
    non_finite_step = None if finite else 0
    if not finite:
        stop = "non_finite"
    else:
        while True:
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                stop = "eos"
                break
            out.append(token)
            last_s = now - start
            if first_s is None:
                first_s = last_s
            if len(out) >= spec.max_tokens or llm.n_tokens >= n_ctx:
                break
            llm.eval([token])
            logits = last_logits()
            if not np.isfinite(logits).all():
                stop, non_finite_step = "non_finite", len(out)
                break
            token = int(logits.argmax())
            now = time.perf_counter()

    text = llm.detokenize(out).decode("utf-8", errors="replace") if out else ""
    return Generation(
        prompt_tokens=len(prompt),
        prompt_s=prompt_s,
        first_s=first_s,
        last_s=last_s,
        tokens=len(out),
        output=text,
        stop=stop,
        non_finite_step=non_finite_step,
    )


def perplexity(llm, spec: Spec) -> quality.Perplexity:
    """Perplexity on the project's text (``verifier.quality``), in a context of its own
    (``quality.CHUNK`` tokens, one ``llama_decode`` per chunk with logits only for the
    scored half) from the loaded model's weights: the generation context is left as is."""
    import llama_cpp
    import numpy as np

    started = time.perf_counter()
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llm.n_vocab()
    tokens = llm.tokenize(quality.text().encode("utf-8"), add_bos=False, special=False)
    chunks = quality.chunks(tokens, llama_cpp.llama_vocab_bos(vocab))
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = quality.CHUNK
    params.n_seq_max = 1
    params.n_threads = params.n_threads_batch = spec.threads
    ctx = llama_cpp.llama_init_from_model(llm.model, params)
    if not ctx:
        raise RuntimeError("llama.cpp could not create a context for the perplexity run")
    batch = llama_cpp.llama_batch_init(quality.CHUNK, 0, 1)
    scores = quality.Accumulator()
    try:
        for chunk in chunks:
            first = quality.first_scored(chunk)
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = i >= first
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed during the perplexity run")
            for i in range(first, len(chunk) - 1):
                row = llama_cpp.llama_get_logits_ith(ctx, i)
                scores.add(np.ctypeslib.as_array(row, shape=(n_vocab,)), chunk[i + 1])
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return scores.result(len(chunks), time.perf_counter() - started)


def release(llm) -> None:
    """Free the load's own context (its K/V cache and compute buffers) once the smoke
    check, perplexity and prompts are done: each run of the matrix makes its own, and its
    peak memory must not carry this one. The weights stay loaded for the runs."""
    llm._ctx.close()  # llama-cpp-python has no public way to free only the context


def is_detail(line: str) -> bool:
    """True for a line of llama.cpp's verbose log that the report's log tail leaves out:
    per-tensor, per-layer, per-key and per-token lines, graph reservation debug output and
    configuration dumps. Kept: errors, warnings, the load summary (file format, type and
    size, architecture, model type and parameters, training context), the context size,
    buffer sizes, and anything this function does not know."""
    if line.startswith("print_info: "):
        return not _SUMMARY.match(line)
    return bool(_DETAIL.match(line))


def load_failure_reason(error: str, log: str) -> str:
    """The line of llama.cpp's log that says why the model did not load.

    llama-cpp-python's exception only says "Failed to load model from file". llama.cpp's
    loader logs ``error loading model: <why>``; when <why> is itself generic ("failed to load
    model from ...": the GGUF parser gave up), the parser's own ``gguf_*`` lines say why
    (e.g. "tensor 'blk.0.attn_q.weight' has invalid ggml type 99"). Metadata dump lines are
    never candidates, so a key such as ``unknown_token_id`` cannot be mistaken for an error.
    """
    lines = [line.strip() for line in log.splitlines()]
    loader = [_clean(line.split(_LOAD_ERROR, 1)[1]) for line in lines if _LOAD_ERROR in line]
    if loader and not any(g in loader[-1] for g in _GENERIC):
        return loader[-1]
    parser = [_clean(line) for line in lines
              if line.startswith("gguf_") and _ERROR_WORDS.search(line)]
    specific = [line for line in parser if not any(g in line for g in _GENERIC)]
    if specific:
        return specific[0]
    return loader[-1] if loader else error


# ---- the run matrix ---------------------------------------------------------------------

# ggml type ids (ggml.h's ``enum ggml_type``) of the KV cache types a run may ask for.
_KV_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}
_FLASH_ATTN_AUTO, _FLASH_ATTN_ENABLED = -1, 1  # llama.h's ``llama_flash_attn_type``
_UBATCH = 512  # llama.cpp's default n_ubatch: the compute buffer grows with it
_LOG_ERROR = 4  # ggml.h's GGML_LOG_LEVEL_ERROR (llama-cpp-python's _logger says 3: outdated)
# The ctypes callback llama.cpp was last given; referenced here so that it is never
# collected while llama.cpp may still call it (that would crash the process).
_log_callback = None


def measure(llm, spec: Spec, run: RunSpec) -> RunFigures:
    """One configuration of the run matrix, in a context of its own made from the loaded
    weights (freed before returning): ``run.context`` cells shared by the ``run.parallel``
    sequences (``n_seq_max``, ``kv_unified``: their tokens must fit together), K and V caches
    of type ``run.kv_cache``, flash attention on for a quantized V cache (llama.cpp refuses
    one without it) else llama.cpp's automatic choice (its default), sliding-window layers
    sized by their window (``swa_full`` off, as llama.cpp's server runs), ``n_batch`` holding
    every prompt at once, ``n_ubatch`` at most llama.cpp's default.

    Sequence ``s``'s prompt is ``run_prompt(text, run.prompt_tokens, s, bos)``; all prompts go
    into one ``llama_decode`` (logits for each one's last token), then each step decodes one
    token per sequence in one batch, greedily, for exactly ``run.max_tokens`` tokens each (end
    of generation ignored, as llama-bench does); a logits row that is not finite stops the
    run (``non_finite``). The clock starts once the context is made, before tokenizing.

    Raises ``Unsupported`` for an unknown KV cache type, a context beyond the training
    context, tokens that do not fit the context, or a context llama.cpp will not create (the
    reason from its log when it gives one).
    """
    import llama_cpp

    _check_run(llm, run)
    ctx = _run_context(llm.model, spec, run)
    batch = llama_cpp.llama_batch_init(run.parallel * run.prompt_tokens, 0, 1)
    try:
        start = time.perf_counter()
        text = llm.tokenize(quality.text().encode("utf-8"), add_bos=False, special=False)
        bos = _bos(llm.model)
        prompts = [run_prompt(text, run.prompt_tokens, s, bos) for s in range(run.parallel)]
        return _decode_run(llm, ctx, batch, prompts, run.max_tokens, start)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def _check_run(llm, run: RunSpec) -> None:
    import llama_cpp

    check_run(run, _KV_TYPES, llama_cpp.llama_model_n_ctx_train(llm.model))


def _bos(model) -> int | None:
    """The BOS token when the model's vocabulary starts its input with one."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(model)
    bos = llama_cpp.llama_vocab_bos(vocab)
    return bos if bos >= 0 and llama_cpp.llama_vocab_get_add_bos(vocab) else None


def _run_context(model, spec: Spec, run: RunSpec):
    import llama_cpp

    params = llama_cpp.llama_context_default_params()
    params.n_ctx = run.context
    params.n_seq_max = run.parallel
    params.kv_unified = True
    params.swa_full = False
    params.n_batch = run.parallel * run.prompt_tokens
    params.n_ubatch = min(params.n_batch, _UBATCH)
    params.type_k = params.type_v = _KV_TYPES[run.kv_cache]
    params.flash_attn_type = _FLASH_ATTN_AUTO if run.kv_cache == "f16" else _FLASH_ATTN_ENABLED
    params.n_threads = params.n_threads_batch = spec.threads
    with _llama_log() as log:
        ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:  # llama.cpp says why in its log only
        errors = [_clean(text) for level, text in log if level == _LOG_ERROR and text.strip()]
        raise Unsupported(f"llama.cpp could not create a context of {run.context} tokens with a "
                          f"{run.kv_cache} KV cache for {run.parallel} sequence(s)"
                          + (f": {errors[-1]}" if errors else ""))
    return ctx


@contextmanager
def _llama_log():
    """llama.cpp's log while the block runs, as a list of ``(level, text)``; every message
    still goes on to llama-cpp-python's own logger (stderr when verbose), which is put back
    afterwards."""
    global _log_callback
    import llama_cpp
    from llama_cpp import _logger

    messages: list[tuple[int, str]] = []

    def record(level, text, user_data):
        messages.append((level, text.decode("utf-8", errors="replace")))
        _logger.llama_log_callback(level, text, user_data)

    _log_callback = llama_cpp.llama_log_callback(record)
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    try:
        yield messages
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def _decode_run(llm, ctx, batch, prompts: list[list[int]], max_tokens: int,
                start: float) -> RunFigures:
    eval_start = time.perf_counter()
    batch.n_tokens = 0
    rows = []  # each sequence's last prompt token: the row its first logits are in
    for seq, prompt in enumerate(prompts):
        for pos, token in enumerate(prompt):
            row = _add(batch, token, pos, seq, pos == len(prompt) - 1)
        rows.append(row)
    positions = [len(prompt) for prompt in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    prompt_s = first_s = last_s = None
    non_finite = False
    _decode(ctx, batch)
    while True:
        step = _next_tokens(llm, ctx, rows)
        now = time.perf_counter()
        if prompt_s is None:
            prompt_s, first_s = now - eval_start, now - start
        if step is None:
            non_finite = True
            break
        for tokens, token in zip(out, step, strict=True):
            tokens.append(token)
        last_s = now - start
        if len(out[0]) >= max_tokens:
            break
        batch.n_tokens = 0
        rows = [_add(batch, token, positions[seq], seq, True) for seq, token in enumerate(step)]
        positions = [pos + 1 for pos in positions]
        _decode(ctx, batch)
    return RunFigures(
        prompt_tokens=len(prompts[0]),
        prompt_s=prompt_s,
        first_s=first_s,
        last_s=first_s if last_s is None else last_s,
        tokens=[len(tokens) for tokens in out],
        output_sha256=hashlib.sha256(",".join(map(str, out[0])).encode()).hexdigest(),
        non_finite=non_finite,
    )


def _add(batch, token: int, pos: int, seq: int, logits: bool) -> int:
    """Appends one token of sequence ``seq`` to ``batch``; returns its row."""
    i = batch.n_tokens
    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
    batch.seq_id[i][0] = seq
    batch.logits[i] = logits
    batch.n_tokens = i + 1
    return i


def _decode(ctx, batch) -> None:
    import llama_cpp

    status = llama_cpp.llama_decode(ctx, batch)
    if status != 0:
        raise RuntimeError(f"llama_decode returned {status} for {batch.n_tokens} tokens")


def _next_tokens(llm, ctx, rows: list[int]) -> list[int] | None:
    """The argmax of each row of logits, or None when a row is not finite."""
    import llama_cpp
    import numpy as np

    n_vocab = llm.n_vocab()
    tokens = []
    for row in rows:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,))
        if not np.isfinite(logits).all():
            return None
        tokens.append(int(logits.argmax()))
    return tokens


# ---- prompts ----------------------------------------------------------------------------

# Architectures for which llama.cpp's built-in chat formats hold one that fits every model
# of the architecture, by the built-in's name: every Gemma generation uses the
# ``<start_of_turn>`` format llama.cpp calls "gemma". An architecture shared by models with
# different formats (``llama``: Llama 2, Llama 3, Mistral...; ``phi3``: Phi 3 and Phi 4) has
# no entry, because a guess would render the wrong format.
def answer(llm, spec: Spec, prompt: PromptSpec) -> Answer:
    """The greedy answer to ``prompt`` in the load's context: up to ``prompt.max_tokens``
    tokens, stopping at an end-of-generation token. Raw: tokenized with BOS, as ``generate``
    does. Chat: the GGUF's ``tokenizer.chat_template`` (``verifier.chat_template``), tokenized
    with special tokens and no BOS added (the template writes its own). Only the model's
    own template counts: a guess by architecture would measure llama.cpp's format, not the
    model. Raises ``Unsupported`` when the model has no template, its template fails, or
    the prompt does not fit the context."""
    import llama_cpp

    template = None
    if not prompt.chat:
        tokens = llm.tokenize(prompt.prompt.encode("utf-8"), add_bos=True, special=False)
    else:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        source = llama_cpp.llama_model_chat_template(llm.model, None)
        if not source:
            raise Unsupported("the model has no chat template of its own (a base model?)")
        rendered = chat_template.render(
            source.decode("utf-8", errors="replace"), prompt.prompt,
            _token_text(vocab, llama_cpp.llama_vocab_bos(vocab)),
            _token_text(vocab, llama_cpp.llama_vocab_eos(vocab)))
        tokens = llm.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
        template = "gguf"
    if len(tokens) >= llm.n_ctx():
        raise Unsupported(f"the prompt's {len(tokens)} tokens do not fit the context of "
                          f"{llm.n_ctx()}")
    out = _greedy(llm, tokens, prompt.max_tokens)
    text = llm.detokenize(out).decode("utf-8", errors="replace") if out else ""
    return Answer(text=text, tokens=len(out), template=template)


def _token_text(vocab, token: int) -> str:
    import llama_cpp

    text = llama_cpp.llama_vocab_get_text(vocab, token) if token >= 0 else b""
    return text.decode("utf-8", errors="replace")


def _greedy(llm, tokens: list[int], max_tokens: int) -> list[int]:
    """Greedy tokens after ``tokens``, from an empty context, until end of generation,
    ``max_tokens`` or a full context."""
    import llama_cpp
    import numpy as np

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab, n_ctx = llm.n_vocab(), llm.n_ctx()
    llm.reset()
    llm.eval(tokens)
    out: list[int] = []
    while len(out) < max_tokens:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                       shape=(n_vocab,))
        token = int(logits.argmax())
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        out.append(token)
        if len(out) >= max_tokens or llm.n_tokens >= n_ctx:
            break
        llm.eval([token])
    return out
