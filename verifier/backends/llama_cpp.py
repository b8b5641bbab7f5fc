"""llama.cpp through llama-cpp-python, for a single GGUF file (runs in the child).

Load: ``Llama(model_path, n_ctx, n_threads, n_threads_batch, seed, verbose=True)``; the
model is memory-mapped (llama.cpp's default), ``logits_all=False``; with ``verbose`` llama.cpp
logs to stderr, which the runner keeps the tail of.

Generate: the prompt is tokenized with BOS (no chat template) and evaluated in one
``Llama.eval``; then greedy decoding, one ``Llama.eval([token])`` per token, the same calls
``Llama.generate`` makes, so tokens/s matches running llama-cpp-python directly. The next
token is the argmax of the last row of logits (what llama.cpp's greedy sampler picks), read
straight from the context (``llama_get_logits_ith``), and that row must be finite. It stops
at an end-of-generation token, after ``max_tokens``, or when the context is full.
"""

from __future__ import annotations

import re
import time

from verifier import quality
from verifier.backends import Generation, LoadError
from verifier.spec import Spec

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


def load(spec: Spec):
    from llama_cpp import Llama

    try:
        return Llama(
            model_path=str(spec.model_path),
            n_ctx=spec.n_ctx,
            n_threads=spec.threads,
            n_threads_batch=spec.threads,
            seed=spec.seed,
            logits_all=False,
            verbose=True,
        )
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
