"""The memory a model needs at a context length and KV-cache type (pure: shapes in, bytes out).

``shape_from_gguf`` / ``shape_from_mlx`` read what the estimate needs from a GGUF header or an
MLX directory; ``estimate`` adds up what a process serving the model holds resident at its peak;
``table`` is the fit table (estimates per context and KV type, and "fits in N GiB up to context
C"); ``fits_in`` the largest context per KV type for one memory size (a GPU's); ``check``
holds the estimate against the peaks a verification measured.

On a GPU (llama.cpp offloading every layer) the same parts live in GPU memory instead: the
weights, K/V cache and compute buffers, with only the runtime and vocabulary left on the
host. ``check`` then holds the estimate against the host and GPU peaks added together. This
is not calibrated: a GPU backend reserves its whole compute buffer where the CPU touches
only part of it, and the driver's context takes memory of its own, so on a GPU the measured
figure is expected above the estimate by a few hundred MiB.

llama.cpp (llama-cpp-python 0.3.36), modelled as it allocates and touches memory, and calibrated
against its measured peak RSS (Gemma 3 270M Q4_K_M, x86-64 AVX2, Python 3.11): within 3% for
every configuration measured, contexts 2,048-32,768, all three KV types, 1 and 4 sequences,
128-token prompts and prompts filling the context, with and without flash attention and
full-size sliding-window caches:

- weights: the tensor data, memory-mapped and all of it touched, plus the copies llama.cpp
  makes of the tensors its CPU backend repacks (``repack_bytes``).
- KV cache: per layer ``cells x n_head_kv x (key_length x size(type_k) + value_length x
  size(type_v))``, sizes from ggml's block sizes (f16 2 bytes, q8_0 34/32, q4_0 18/32). The
  context is padded to 256 cells. ``parallel`` sequences share one unified cache of
  ``context`` cells. Sliding-window layers get ``min(n_ctx, pad256(window x parallel +
  n_ubatch))`` cells when ``swa_full`` is off, and the full ``n_ctx`` cells when it is on,
  which is the default of the library (llama-cpp-python never turns it off) and so of this
  module: measured, Gemma 3 at 8,192 takes 144 MiB of KV with it and 39 MiB without.
- compute: what the run touches of the compute buffer llama.cpp reserves (the reservation
  is ~n_ubatch x n_vocab x 4 bytes, 514 MiB for Gemma, but only the live activations are
  written): the logits rows and output buffer of each sequence, the activations of one
  micro-batch, the attention masks, without flash attention the K.Q matrix and its f16
  copy, the per-cell bookkeeping, and a fixed part (graph, scheduler, threads).
- overhead: Python with llama-cpp-python loaded (the verifier child's RSS before the model),
  and the model's host structures, mostly the vocabulary (measured ~150 bytes a token on
  synthetic GGUFs of 32k-262k tokens).

``estimate`` without ``prompt_tokens`` is the worst case, a context filled by long prompts
processed in micro-batches of ``n_ubatch`` (what the fit table reports); with the tokens of
a run it is that run's peak (what ``check`` compares with the measured one).

MLX (mlx-lm) is a rough estimate, documented as such: safetensors weights, KV cache as mlx-lm
grows it (256-token steps, rotating caches of the window size for sliding layers, 8- and 4-bit
quantized caches with group size 64) and a measured runtime base; its compute (activations,
logits) is not modelled.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from registry.formats.gguf_header import GGUFArray, GGUFHeader, read_gguf_header

MIB = 1 << 20
GIB = 1 << 30
CONTEXTS = (2048, 4096, 8192, 16384, 32768, 65536, 131072)
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
MEMORIES_GIB = (8, 16, 24, 32, 64)
BACKENDS = ("llama.cpp", "mlx")
MAX_CONTEXT = 1 << 20  # the fit limit for a model that states no training context

_KV_TYPES = {"f16": GGMLQuantizationType.F16, "q8_0": GGMLQuantizationType.Q8_0,
             "q4_0": GGMLQuantizationType.Q4_0}
_PAD = 256  # llama.cpp pads the context, and the sliding-window cache, to 256 cells

# Sliding-window layers are not in the GGUF: llama.cpp hard-codes the pattern per architecture
# (layer i slides unless i % n == n - 1: Gemma 2 alternates, Gemma 3 has every 6th layer
# global). Gemma 2 files may omit the window; llama.cpp then uses 4096. Any other
# architecture: every layer attends to the whole context.
_SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "cohere2": 4}
_DEFAULT_WINDOWS = {"gemma2": 4096}

# Calibration (llama-cpp-python 0.3.36, Python 3.11, Linux x86-64), from measured peak RSS.
_LLAMA_RUNTIME = 42 * MIB       # the verifier child with llama_cpp imported (41 MiB measured)
_LLAMA_MODEL_FIXED = 3 * MIB    # model host structures besides the vocabulary
_LLAMA_VOCAB_TOKEN = 160        # bytes per vocabulary entry (token texts, lookup tables)
_LLAMA_CONTEXT_FIXED = 8 * MIB  # graph and scheduler metadata, thread pool, first-use pages
_LLAMA_CELL = 80                # bytes of bookkeeping per KV cell, per cache
# Types the CPU backend repacks into interleaved copies for tensors used in matrix products
# whose row count is a multiple of 8 (as on x86-64 with AVX2; other CPUs repack less).
_REPACKED = {"Q4_0", "Q4_K", "IQ4_NL"}

_MLX_RUNTIME = 80 * MIB  # Python with mlx, mlx-lm and a tokenizer (a tiny model on Linux CPU)
# A Hugging Face fast tokenizer in memory, per byte of its tokenizer.json: Gemma 3's (262k
# tokens, 514k merges, 33 MB of JSON) holds about 450 MB resident once transformers has
# loaded it (measured on Linux: 78 MiB after the imports, 527 MiB with the tokenizer).
_TOKENIZER_RESIDENT_PER_JSON_BYTE = 14
_MLX_KV_GROUP = 64       # mlx-lm's default kv_group_size
_MLX_STEP = 256          # mlx-lm grows KV caches in steps of 256 tokens


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model.

    ``swa_layers[i]`` is True when layer i attends within ``sliding_window`` tokens (as the
    backend the shape was read for implements it). ``n_head_kv`` is one count for every layer
    or one per layer. ``weights_bytes`` is the tensor data; ``repack_bytes`` what llama.cpp
    copies of it into repacked CPU buffers. ``n_head``/``n_ff`` size the activations.
    """

    architecture: str
    n_layer: int
    n_head_kv: int | list[int]
    key_length: int
    value_length: int
    n_ctx_train: int | None
    sliding_window: int | None
    swa_layers: list[bool]
    n_embd: int
    n_vocab: int
    weights_bytes: int
    n_head: int = 0
    n_ff: int = 0
    repack_bytes: int = 0
    n_ubatch: int = 512
    tokenizer_bytes: int = 0  # MLX: the tokenizer's resident memory, estimated

    def head_kv(self, layer: int) -> int:
        return self.n_head_kv[layer] if isinstance(self.n_head_kv, list) else self.n_head_kv

    def is_swa(self, layer: int) -> bool:
        return bool(self.sliding_window) and layer < len(self.swa_layers) and self.swa_layers[layer]


@dataclass(frozen=True)
class Estimate:
    """Bytes by part; ``total_bytes`` is their sum (computed)."""

    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    total_bytes: int = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "total_bytes", self.weights_bytes + self.kv_bytes
                           + self.compute_bytes + self.overhead_bytes)

    def to_dict(self) -> dict:
        return asdict(self)


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def swa_layers_for(architecture: str, n_layer: int) -> list[bool]:
    """llama.cpp's sliding-window layers for ``architecture`` (all False when it has none)."""
    n = _SWA_PATTERNS.get(architecture)
    return [bool(n) and i % n < n - 1 for i in range(n_layer)]


def _repack_bytes(header: GGUFHeader) -> int:
    return sum(t.nbytes for t in header.tensors
               if t.type in _REPACKED and len(t.shape) == 2 and t.shape[1] % 8 == 0
               and t.name != "token_embd.weight")


def shape_from_header(header: GGUFHeader) -> ModelShape:
    """The shape of a GGUF model from its parsed header; ValueError when a key it needs
    (architecture, block count, head counts or embedding length) is missing.

    Arrays are not kept by the header reader, so a per-layer ``head_count_kv`` array is
    read as ``head_count`` (full multi-head attention: an upper bound), and a per-layer
    ``feed_forward_length`` as 4 x the embedding length."""
    arch = header.architecture
    if not arch:
        raise ValueError("the GGUF header has no general.architecture")

    def need(key: str) -> int:
        value = _int(header.arch_value(key))
        if value is None:
            raise ValueError(f"the GGUF header has no integer {arch}.{key}")
        return value

    n_layer, n_embd = need("block_count"), need("embedding_length")
    n_head = _int(header.arch_value("attention.head_count")) or 0
    raw_kv = header.arch_value("attention.head_count_kv")
    n_head_kv = _int(raw_kv) if not isinstance(raw_kv, GGUFArray) else None
    if n_head_kv is None:
        n_head_kv = n_head or need("attention.head_count_kv")
    key_length = _int(header.arch_value("attention.key_length")) or (
        n_embd // n_head if n_head else need("attention.key_length"))
    value_length = _int(header.arch_value("attention.value_length")) or key_length
    window = _int(header.arch_value("attention.sliding_window")) or _DEFAULT_WINDOWS.get(arch)
    n_vocab = _int(header.arch_value("vocab_size"))
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    if n_vocab is None and isinstance(tokens, GGUFArray):
        n_vocab = tokens.length
    if n_vocab is None:
        embd = next((t for t in header.tensors if t.name == "token_embd.weight"), None)
        n_vocab = embd.shape[1] if embd is not None and len(embd.shape) == 2 else 0
    return ModelShape(
        architecture=arch, n_layer=n_layer, n_head_kv=n_head_kv, key_length=key_length,
        value_length=value_length, n_ctx_train=_int(header.arch_value("context_length")),
        sliding_window=window, swa_layers=swa_layers_for(arch, n_layer) if window else
        [False] * n_layer, n_embd=n_embd, n_vocab=n_vocab,
        weights_bytes=sum(t.nbytes for t in header.tensors), n_head=n_head,
        n_ff=_int(header.arch_value("feed_forward_length")) or 4 * n_embd,
        repack_bytes=_repack_bytes(header))


def shape_from_gguf(path) -> ModelShape:
    """The shape of the GGUF file at ``path`` (reads only its header)."""
    with open(path, "rb") as f:
        return shape_from_header(read_gguf_header(f, os.fstat(f.fileno()).st_size))


def shape_from_config(config: dict, weights_bytes: int) -> ModelShape:
    """The shape of a Hugging Face / MLX ``config.json`` (a multimodal config's
    ``text_config`` is what generates text). Sliding layers are those mlx-lm gives rotating
    caches: ``layer_types`` entries ``"sliding_attention"``, else Gemma 3 / Cohere 2's
    ``sliding_window_pattern`` (every n-th layer global)."""
    cfg = {**config, **config.get("text_config", {})}
    model_type = str(cfg.get("model_type", ""))
    n_layer, n_embd = int(cfg["num_hidden_layers"]), int(cfg["hidden_size"])
    n_head = int(cfg.get("num_attention_heads") or 0)
    n_head_kv = cfg.get("num_key_value_heads") or n_head
    head_dim = int(cfg.get("head_dim") or (n_embd // n_head if n_head else 0))
    window = _int(cfg.get("sliding_window"))
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == n_layer:
        swa = [t == "sliding_attention" for t in layer_types]
    elif model_type.startswith(("gemma3", "cohere2")) or "sliding_window_pattern" in cfg:
        n = int(cfg.get("sliding_window_pattern") or (4 if model_type == "cohere2" else 6))
        swa = [i % n != n - 1 for i in range(n_layer)]
    else:
        swa = [False] * n_layer
    if not window:
        swa = [False] * n_layer
    return ModelShape(
        architecture=model_type, n_layer=n_layer,
        n_head_kv=[int(h) for h in n_head_kv] if isinstance(n_head_kv, list) else int(n_head_kv),
        key_length=head_dim, value_length=head_dim,
        n_ctx_train=_int(cfg.get("max_position_embeddings")), sliding_window=window,
        swa_layers=swa, n_embd=n_embd, n_vocab=int(cfg.get("vocab_size") or 0),
        weights_bytes=weights_bytes, n_head=n_head,
        n_ff=int(cfg.get("intermediate_size") or 4 * n_embd))


def shape_from_mlx(directory) -> ModelShape:
    """The shape of an MLX model directory: ``config.json`` and the sizes of its
    ``*.safetensors`` files."""
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    weights = sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    tokenizer = directory / "tokenizer.json"
    resident = (tokenizer.stat().st_size * _TOKENIZER_RESIDENT_PER_JSON_BYTE
                if tokenizer.is_file() else 0)
    return dataclasses.replace(shape_from_config(config, weights), tokenizer_bytes=resident)


def _pad(n: int, to: int = _PAD) -> int:
    return -(-n // to) * to


def _row_bytes(kv_cache: str, n: int) -> int:
    """ggml_row_size: bytes of ``n`` elements of the KV type."""
    block, size = GGML_QUANT_SIZES[_KV_TYPES[kv_cache]]
    return -(-n // block) * size


def _check_args(context: int, kv_cache: str, parallel: int, backend: str) -> None:
    if context < 1 or parallel < 1:
        raise ValueError("context and parallel must be >= 1")
    if kv_cache not in _KV_TYPES:
        raise ValueError(f"unknown KV cache type {kv_cache!r} (one of {', '.join(_KV_TYPES)})")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")


def estimate(shape: ModelShape, context: int, kv_cache: str = "f16", parallel: int = 1,
             backend: str = "llama.cpp", *, prompt_tokens: int | None = None,
             max_tokens: int = 0, flash_attn: bool = True, swa_full: bool = False) -> Estimate:
    """Peak resident memory of a process serving ``shape`` with a ``context``-token KV cache
    of type ``kv_cache`` shared by ``parallel`` sequences.

    Without ``prompt_tokens``: the worst case, every cell in use and a full micro-batch
    being evaluated. With them: a run that evaluates ``prompt_tokens`` per sequence in one
    batch and generates ``max_tokens`` per sequence. ``flash_attn`` (llama.cpp; what its
    automatic setting picks on CPU, and needed for a quantized V cache) and ``swa_full``
    (full-size sliding-window caches: llama-cpp-python's ``Llama`` keeps llama.cpp's
    library default; llama.cpp's server and the verifier's runs turn it off) are the
    context's settings."""
    _check_args(context, kv_cache, parallel, backend)
    if backend == "mlx":
        return _estimate_mlx(shape, context, kv_cache, parallel, prompt_tokens, max_tokens)
    n_ctx = _pad(context)
    n_swa = (n_ctx if swa_full else
             min(n_ctx, _pad((shape.sliding_window or 0) * parallel + shape.n_ubatch)))
    any_swa = any(shape.is_swa(i) for i in range(shape.n_layer))
    kv = 0
    for layer in range(shape.n_layer):
        n_kv = shape.head_kv(layer)
        cells = n_swa if shape.is_swa(layer) else n_ctx
        kv += cells * (_row_bytes(kv_cache, n_kv * shape.key_length)
                       + _row_bytes(kv_cache, n_kv * shape.value_length))
    if prompt_tokens is None:
        used, batch = n_ctx, shape.n_ubatch
    else:
        used = min(n_ctx, _pad(parallel * (prompt_tokens + max_tokens)))
        batch = max(1, min(shape.n_ubatch, parallel * prompt_tokens))
    compute = _llama_compute(shape, used, min(used, n_swa) if any_swa else 0, batch, parallel,
                             flash_attn)
    compute += _LLAMA_CELL * (n_ctx + (n_swa if any_swa else 0))
    overhead = _LLAMA_RUNTIME + _LLAMA_MODEL_FIXED + _LLAMA_VOCAB_TOKEN * shape.n_vocab
    return Estimate(shape.weights_bytes + shape.repack_bytes, kv, compute, overhead)


def _llama_compute(shape: ModelShape, n_kv: int, n_kv_swa: int, batch: int, parallel: int,
                   flash_attn: bool) -> int:
    """The touched part of the compute and output buffers for one micro-batch of ``batch``
    tokens over ``n_kv`` used cells (``n_kv_swa`` in the sliding-window cache, 0: none)."""
    outputs = 2 * parallel * shape.n_vocab * 4  # logits: the graph's result and the copy out
    n_q = (shape.n_head or shape.head_kv(0)) * shape.key_length
    # The largest activations alive at once: FFN gate and up, query and attention output,
    # the residual stream and its norm (f32), per token of the micro-batch.
    activations = batch * 4 * (2 * shape.n_ff + 2 * n_q + 2 * shape.n_embd)
    mask_bytes = 2 if flash_attn else 4  # an f16 mask with flash attention, else f32
    masks = batch * mask_bytes * (n_kv + n_kv_swa)
    # Without flash attention the full K.Q matrix (f32, softmax in place) is materialised,
    # plus its f16 copy in the CPU backend's work buffer for the product with V.
    kq = 0 if flash_attn else batch * max(n_kv, n_kv_swa) * (shape.n_head or 1) * (4 + 2)
    return _LLAMA_CONTEXT_FIXED + outputs + activations + masks + kq


def _estimate_mlx(shape: ModelShape, context: int, kv_cache: str, parallel: int,
                  prompt_tokens: int | None, max_tokens: int) -> Estimate:
    """Rough: weights + KV cache as mlx-lm allocates it + runtime base and the tokenizer
    (calibrated on one model: Gemma 3 270M, within 3% of its measured runs); no compute."""
    tokens = context if prompt_tokens is None else min(context, prompt_tokens + max_tokens)
    full = _pad(tokens, _MLX_STEP)
    bits = {"f16": 16, "q8_0": 8, "q4_0": 4}[kv_cache]
    # A quantized cache stores ``bits`` per element plus an f16 scale and bias per group.
    per_element = 2.0 if bits == 16 else bits / 8 + 4 / _MLX_KV_GROUP
    kv = 0.0
    for layer in range(shape.n_layer):
        cells = min(full, shape.sliding_window) if shape.is_swa(layer) else full
        kv += (parallel * cells * shape.head_kv(layer)
               * (shape.key_length + shape.value_length) * per_element)
    return Estimate(shape.weights_bytes, math.ceil(kv), 0,
                    _MLX_RUNTIME + shape.tokenizer_bytes)


def max_context(shape: ModelShape, kv_cache: str, memory_bytes: int,
                backend: str = "llama.cpp", parallel: int = 1,
                swa_full: bool = False) -> int | None:
    """The largest context whose worst-case estimate fits in ``memory_bytes``, at most the
    training context (``MAX_CONTEXT`` when the model states none); None if none fits.

    llama.cpp's memory changes only every 256 tokens (the padding), so the answer is a
    multiple of 256 or the limit itself."""
    limit = shape.n_ctx_train or MAX_CONTEXT

    def fits(context: int) -> bool:
        return estimate(shape, context, kv_cache, parallel, backend,
                        swa_full=swa_full).total_bytes <= memory_bytes

    if fits(limit):
        return limit
    low, high = 0, (limit - 1) // _PAD  # multiples of 256 below the limit
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid * _PAD):
            low = mid
        else:
            high = mid - 1
    return low * _PAD or None  # a context under 256 takes as much as 256


def table(shape: ModelShape, contexts=CONTEXTS, kv_types=KV_CACHE_TYPES,
          memories_gib=MEMORIES_GIB, backend: str = "llama.cpp", swa_full: bool = False) -> dict:
    """The fit table (JSON): the worst-case ``estimate`` for each KV type and context, and
    per KV type the largest context that fits in each memory size ("8GiB": 32768 or null).
    One sequence; llama.cpp with flash attention and, unless ``swa_full``, sliding-window
    caches sized by their window, as llama.cpp's server allocates them and the verifier's
    runs do (llama-cpp-python's ``Llama`` allocates them full-size: ``swa_full=True``)."""
    estimates = [{"context": c, "kv_cache": kv,
                  **estimate(shape, c, kv, 1, backend, swa_full=swa_full).to_dict()}
                 for kv in kv_types for c in contexts]
    fits = {kv: {f"{m}GiB": max_context(shape, kv, m * GIB, backend, swa_full=swa_full)
                 for m in memories_gib}
            for kv in kv_types}
    return {"backend": backend, "estimates": estimates, "fits": fits}


def fits_in(shape: ModelShape, memory_bytes: int, kv_types=KV_CACHE_TYPES,
            backend: str = "llama.cpp", swa_full: bool = False) -> dict:
    """The largest context that fits in ``memory_bytes`` for each KV type (``max_context``),
    e.g. the memory of the GPU a model is offloaded to."""
    return {kv: max_context(shape, kv, memory_bytes, backend, swa_full=swa_full)
            for kv in kv_types}


def check(fit_table: dict, shape: ModelShape, runs: list[dict], backend: str,
          swa_full: bool = False) -> list[dict]:
    """The estimate for each run of a verification report held against its measured peak.

    ``runs`` are the report's run dicts (``context``, ``kv_cache``, ``parallel``,
    ``prompt_tokens``, ``max_tokens``, ``peak_rss_bytes``, ``unsupported``). Each check has
    the estimate for that run's own tokens (``estimated_bytes``), the measured peak, the
    relative ``error`` (measured - estimated) / estimated, and ``table_bytes``: the fit
    table's worst case for the same context and KV type (null when the table has no such
    row or the run has several sequences). A run that measured its GPU memory
    (``peak_gpu_bytes``) has ``measured_gpu_bytes`` too, and its ``measured_bytes`` is host
    and GPU together (see the module docstring). A run that was unsupported, has no peak or
    a configuration the estimate does not model keeps its place with null figures."""
    rows = {(e["context"], e["kv_cache"]): e["total_bytes"]
            for e in fit_table.get("estimates", ())}
    checks = []
    for i, run in enumerate(runs):
        context, kv_cache = int(run["context"]), str(run["kv_cache"])
        parallel = int(run.get("parallel") or 1)
        measured, on_gpu = run.get("peak_rss_bytes"), run.get("peak_gpu_bytes")
        if measured is not None and on_gpu is not None:
            measured += on_gpu
        estimated = None
        if not run.get("unsupported"):
            try:
                estimated = estimate(shape, context, kv_cache, parallel, backend,
                                     prompt_tokens=int(run.get("prompt_tokens") or 1),
                                     max_tokens=int(run.get("max_tokens") or 0),
                                     swa_full=swa_full).total_bytes
            except ValueError:  # a KV type or size this module does not model
                estimated = None
        if estimated is None:
            measured = None
        error = None if measured is None else round((measured - estimated) / estimated, 4)
        checks.append({"run": i, "context": context, "kv_cache": kv_cache, "parallel": parallel,
                       "estimated_bytes": estimated, "measured_bytes": measured, "error": error,
                       "table_bytes": rows.get((context, kv_cache)) if parallel == 1 else None})
        if on_gpu is not None:
            checks[-1]["measured_gpu_bytes"] = None if measured is None else on_gpu
    return checks
