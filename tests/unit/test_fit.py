"""registry.formats.fit: shapes from GGUF headers and MLX configs, the estimate's arithmetic,
the fit table and the checks against measured peaks. The calibration against real peaks is
tests/verifier/test_fit_measured.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from registry.formats import fit
from registry.formats.gguf_header import GGUFArray, GGUFHeader, TensorInfo
from tests.support.gguf_files import TINY_VOCAB, write_gguf

MIB = 1 << 20

GEMMA3 = {  # the real Gemma 3 270M header's attention keys
    "gemma3.block_count": 18,
    "gemma3.attention.head_count": 4,
    "gemma3.attention.head_count_kv": 1,
    "gemma3.attention.key_length": 256,
    "gemma3.attention.value_length": 256,
    "gemma3.attention.sliding_window": 512,
    "gemma3.feed_forward_length": 2048,
}


def header(arch: str, keys: dict, tensors: list[TensorInfo] = ()) -> GGUFHeader:
    metadata = {"general.architecture": arch, **{f"{arch}.{k}": v for k, v in keys.items()}}
    return GGUFHeader(3, metadata, list(tensors), 0, 0, 32)


def gemma(**changes) -> fit.ModelShape:
    shape = fit.ModelShape(
        architecture="gemma3", n_layer=18, n_head_kv=1, key_length=256, value_length=256,
        n_ctx_train=32768, sliding_window=512, swa_layers=fit.swa_layers_for("gemma3", 18),
        n_embd=640, n_vocab=262144, weights_bytes=246_587_904, n_head=4, n_ff=2048,
        repack_bytes=13_271_040)
    return dataclasses.replace(shape, **changes)


def test_gemma3_shape_from_a_gguf_file(tmp_path):
    path = write_gguf(tmp_path / "g.gguf", arch="gemma3", context_length=32768,
                      embedding_length=640, extra=GEMMA3)
    shape = fit.shape_from_gguf(path)
    assert (shape.architecture, shape.n_layer, shape.n_head_kv, shape.n_head) == (
        "gemma3", 18, 1, 4)
    assert (shape.key_length, shape.value_length, shape.n_embd, shape.n_ff) == (
        256, 256, 640, 2048)
    assert (shape.n_ctx_train, shape.sliding_window, shape.n_vocab) == (
        32768, 512, len(TINY_VOCAB))
    # llama.cpp's Gemma 3 pattern: every 6th layer attends globally
    assert [i for i, swa in enumerate(shape.swa_layers) if not swa] == [5, 11, 17]
    assert shape.weights_bytes == (len(TINY_VOCAB) * 64 + 64) * 4  # the tiny file's tensors
    assert shape.repack_bytes == 0


def test_sliding_window_patterns_by_architecture():
    g2 = fit.shape_from_header(header("gemma2", {"block_count": 4, "embedding_length": 64,
                                                 "attention.head_count": 4}))
    assert g2.sliding_window == 4096  # llama.cpp's default when the file has none
    assert g2.swa_layers == [True, False, True, False]
    llama = fit.shape_from_header(header("llama", {
        "block_count": 3, "embedding_length": 64, "attention.head_count": 4,
        "attention.sliding_window": 128}))
    assert llama.swa_layers == [False] * 3  # not a pattern llama.cpp knows: all global
    assert not any(llama.is_swa(i) for i in range(3))
    gemma3_no_window = fit.shape_from_header(header("gemma3", {
        "block_count": 6, "embedding_length": 64, "attention.head_count": 4}))
    assert gemma3_no_window.swa_layers == [False] * 6


def test_header_defaults_and_fallbacks():
    shape = fit.shape_from_header(header("llama", {
        "block_count": 2, "embedding_length": 64, "attention.head_count": 8,
        "attention.head_count_kv": GGUFArray("UINT32", 2), "vocab_size": 1000}))
    assert shape.n_head_kv == 8  # a per-layer array is not kept: full multi-head as a bound
    assert shape.key_length == shape.value_length == 8  # embedding / heads
    assert shape.n_ff == 256  # 4 x embedding
    assert shape.n_vocab == 1000
    assert shape.n_ctx_train is None


@pytest.mark.parametrize("keys, message", [
    ({"embedding_length": 64}, "block_count"),
    ({"block_count": 2}, "embedding_length"),
])
def test_header_missing_keys(keys, message):
    with pytest.raises(ValueError, match=message):
        fit.shape_from_header(header("llama", keys))


def test_header_without_an_architecture():
    with pytest.raises(ValueError, match="architecture"):
        fit.shape_from_header(GGUFHeader(3, {}, [], 0, 0, 32))


def test_repacked_tensors_are_q4_matrices_with_rows_in_eights():
    def t(name, shape, type_, nbytes):
        return TensorInfo(name, shape, type_, 0, nbytes)

    tensors = [t("blk.0.ffn_down.weight", (2048, 640), "Q4_K", 100),
               t("blk.0.attn_q.weight", (640, 1024), "Q4_0", 20),
               t("blk.0.attn_k.weight", (640, 4), "Q4_0", 3),       # 4 rows: not repacked
               t("token_embd.weight", (640, 262144), "Q4_0", 7),    # looked up, not multiplied
               t("blk.0.ffn_up.weight", (640, 2048), "Q5_0", 11),
               t("blk.0.attn_norm.weight", (640,), "F32", 1)]
    shape = fit.shape_from_header(header("llama", {"block_count": 1, "embedding_length": 640,
                                                   "attention.head_count": 4}, tensors))
    assert shape.repack_bytes == 120
    assert shape.weights_bytes == 142
    assert shape.n_vocab == 262144  # from token_embd when there is no vocabulary


def test_kv_cache_bytes_as_llama_cpp_allocates_them():
    shape = gemma()
    # 18 layers x 2048 cells x 256 (K) + 256 (V) f16 elements: the log's 6 + 30 MiB
    assert fit.estimate(shape, 2048, swa_full=True).kv_bytes == 36 * MIB
    assert fit.estimate(shape, 2048, "q8_0", swa_full=True).kv_bytes == 36 * MIB * 34 // 64
    assert fit.estimate(shape, 2048, "q4_0", swa_full=True).kv_bytes == 36 * MIB * 18 // 64
    # padded to 256 cells
    assert fit.estimate(shape, 3000, swa_full=True).kv_bytes == 18 * 3072 * 1024
    # one unified cache: parallel sequences share the context's cells
    assert fit.estimate(shape, 2048, parallel=4, swa_full=True).kv_bytes == 36 * MIB
    # without full-size sliding-window caches: 15 layers of pad256(512 + 512) cells
    assert fit.estimate(shape, 8192, swa_full=False).kv_bytes == (3 * 8192 + 15 * 1024) * 1024
    assert fit.estimate(shape, 8192, parallel=4, swa_full=False).kv_bytes == (
        (3 * 8192 + 15 * 2560) * 1024)
    assert fit.estimate(shape, 512, swa_full=False).kv_bytes == 18 * 512 * 1024
    per_layer = gemma(n_head_kv=[1] * 17 + [2], swa_layers=[False] * 18)
    assert fit.estimate(per_layer, 256).kv_bytes == (17 + 2) * 256 * 1024


def test_estimate_parts_and_what_changes_them():
    shape = gemma()
    e = fit.estimate(shape, 8192)
    assert e.total_bytes == e.weights_bytes + e.kv_bytes + e.compute_bytes + e.overhead_bytes
    assert e.weights_bytes == shape.weights_bytes + shape.repack_bytes
    assert e.to_dict()["total_bytes"] == e.total_bytes
    run = fit.estimate(shape, 8192, prompt_tokens=128, max_tokens=32)
    assert run.kv_bytes == e.kv_bytes  # the cache is allocated whole either way
    assert run.compute_bytes < e.compute_bytes  # a short prompt touches less than a full one
    assert fit.estimate(shape, 8192, flash_attn=False).compute_bytes > e.compute_bytes
    assert fit.estimate(shape, 8192, parallel=4).compute_bytes > e.compute_bytes
    totals = [fit.estimate(shape, c).total_bytes for c in (256, 2048, 8192, 32768)]
    assert totals == sorted(totals)
    for bad, message in [({"context": 0}, "context"), ({"kv_cache": "q5_1"}, "q5_1"),
                         ({"backend": "vllm"}, "vllm"), ({"parallel": 0}, "parallel")]:
        with pytest.raises(ValueError, match=message):
            fit.estimate(shape, **{"context": 2048, **bad})


def test_fits_are_exact_and_limited_by_the_training_context():
    shape = gemma()
    memory = 450 * MIB
    best = fit.max_context(shape, "f16", memory)
    assert best % 256 == 0
    assert fit.estimate(shape, best).total_bytes <= memory
    assert fit.estimate(shape, best + 1).total_bytes > memory
    assert fit.max_context(shape, "f16", 64 << 30) == 32768  # the training context
    assert fit.max_context(shape, "f16", 100 * MIB) is None  # not even the weights fit
    assert fit.max_context(gemma(n_ctx_train=1000), "f16", 64 << 30) == 1000
    assert fit.max_context(gemma(n_ctx_train=None), "q4_0", 1 << 30) > 32768
    small = fit.max_context(shape, "q4_0", memory)
    assert small > best  # a smaller cache fits more context


def test_table_lists_every_estimate_and_fit():
    shape = gemma()
    t = fit.table(shape, contexts=(2048, 8192), kv_types=("f16", "q4_0"), memories_gib=(1, 8))
    json.dumps(t)
    assert t["backend"] == "llama.cpp"
    assert [(e["context"], e["kv_cache"]) for e in t["estimates"]] == [
        (2048, "f16"), (8192, "f16"), (2048, "q4_0"), (8192, "q4_0")]
    assert set(t["estimates"][0]) == {"context", "kv_cache", "weights_bytes", "kv_bytes",
                                      "compute_bytes", "overhead_bytes", "total_bytes"}
    assert t["estimates"][0]["total_bytes"] == fit.estimate(shape, 2048).total_bytes
    assert t["fits"]["f16"]["1GiB"] == fit.max_context(shape, "f16", 1 << 30)
    assert t["fits"]["q4_0"]["8GiB"] == 32768
    default = fit.table(shape)
    assert len(default["estimates"]) == len(fit.CONTEXTS) * 3
    assert set(default["fits"]["q8_0"]) == {"8GiB", "16GiB", "24GiB", "32GiB", "64GiB"}


def test_check_holds_each_run_against_its_estimate():
    shape = gemma()
    t = fit.table(shape, contexts=(2048,))
    runs = [
        {"context": 2048, "kv_cache": "f16", "parallel": 1, "prompt_tokens": 128,
         "max_tokens": 32, "peak_rss_bytes": 400 * MIB, "unsupported": None},
        {"context": 4096, "kv_cache": "q8_0", "parallel": 4, "prompt_tokens": 128,
         "max_tokens": 32, "peak_rss_bytes": 390 * MIB, "unsupported": None},
        {"context": 2048, "kv_cache": "q4_0", "parallel": 1, "prompt_tokens": 128,
         "max_tokens": 32, "peak_rss_bytes": None, "unsupported": "no"},
        {"context": 2048, "kv_cache": "q5_1", "parallel": 1, "prompt_tokens": 128,
         "max_tokens": 32, "peak_rss_bytes": 400 * MIB, "unsupported": None},
    ]
    checks = fit.check(t, shape, runs, "llama.cpp")
    assert [c["run"] for c in checks] == [0, 1, 2, 3]
    first = checks[0]
    estimated = fit.estimate(shape, 2048, prompt_tokens=128, max_tokens=32).total_bytes
    assert first["estimated_bytes"] == estimated
    assert first["measured_bytes"] == 400 * MIB
    assert first["error"] == round((400 * MIB - estimated) / estimated, 4)
    assert first["table_bytes"] == t["estimates"][0]["total_bytes"]
    assert checks[1]["parallel"] == 4 and checks[1]["table_bytes"] is None
    assert checks[1]["estimated_bytes"] == fit.estimate(
        shape, 4096, "q8_0", 4, prompt_tokens=128, max_tokens=32).total_bytes
    q4_row = next(e for e in t["estimates"] if e["kv_cache"] == "q4_0")
    assert checks[2] == {"run": 2, "context": 2048, "kv_cache": "q4_0", "parallel": 1,
                         "estimated_bytes": None, "measured_bytes": None, "error": None,
                         "table_bytes": q4_row["total_bytes"]}
    assert checks[3]["estimated_bytes"] is checks[3]["error"] is None  # a type not modelled


GEMMA3_MLX = {  # the config of the MLX copy derived from the Gemma 3 270M GGUF
    "model_type": "gemma3_text", "hidden_size": 640, "num_hidden_layers": 18,
    "intermediate_size": 2048, "num_attention_heads": 4, "num_key_value_heads": 1,
    "head_dim": 256, "vocab_size": 262144, "sliding_window": 512,
    "sliding_window_pattern": 6, "max_position_embeddings": 32768,
}


def test_mlx_config_shapes():
    shape = fit.shape_from_config(GEMMA3_MLX, 500 * MIB)
    assert (shape.n_layer, shape.n_head_kv, shape.key_length, shape.n_ctx_train) == (
        18, 1, 256, 32768)
    assert [i for i, swa in enumerate(shape.swa_layers) if not swa] == [5, 11, 17]
    nested = fit.shape_from_config({"model_type": "gemma3", "text_config": GEMMA3_MLX}, 0)
    assert nested.swa_layers == shape.swa_layers
    typed = fit.shape_from_config({
        "model_type": "gpt_oss", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"]}, 0)
    assert typed.swa_layers == [True, False] and typed.key_length == 16
    plain = fit.shape_from_config({"model_type": "llama", "hidden_size": 64,
                                   "num_hidden_layers": 2, "num_attention_heads": 4,
                                   "num_key_value_heads": 2, "sliding_window": 4096}, 0)
    assert plain.swa_layers == [False, False] and plain.n_head_kv == 2


def test_mlx_estimate_is_weights_kv_and_a_runtime_base():
    shape = fit.shape_from_config(GEMMA3_MLX, 500 * MIB)
    e = fit.estimate(shape, 8192, backend="mlx")
    assert e.weights_bytes == 500 * MIB and e.compute_bytes == 0
    # global layers hold the whole context, sliding ones a rotating window of 512
    assert e.kv_bytes == (3 * 8192 + 15 * 512) * 512 * 2
    assert fit.estimate(shape, 8192, backend="mlx", prompt_tokens=100,
                        max_tokens=32).kv_bytes == 18 * 256 * 512 * 2  # grown in 256 steps
    q8 = fit.estimate(shape, 8192, "q8_0", backend="mlx").kv_bytes
    q4 = fit.estimate(shape, 8192, "q4_0", backend="mlx").kv_bytes
    assert q8 == (3 * 8192 + 15 * 512) * 512 * (1 + 4 / 64)
    assert q4 == (3 * 8192 + 15 * 512) * 512 * (0.5 + 4 / 64)
    assert fit.estimate(shape, 8192, parallel=2, backend="mlx").kv_bytes == 2 * e.kv_bytes
    assert fit.table(shape, contexts=(2048,), backend="mlx")["fits"]["f16"]["8GiB"] == 32768


# Each variant is a marked fixture (tests/conftest.py): the parameters carry its mark.
@pytest.mark.parametrize("variant", [
    pytest.param(name, marks=pytest.mark.slow)
    for name in ("mlx_model_dir", "mlx_model_dir_quantized", "mlx_model_dir_sharded")])
def test_shape_from_the_tiny_mlx_models(variant, request):
    directory = request.getfixturevalue(variant)
    shape = fit.shape_from_mlx(directory)
    config = json.loads((directory / "config.json").read_text())
    assert shape.architecture == "llama"
    assert (shape.n_layer, shape.n_head_kv, shape.key_length) == (
        config["num_hidden_layers"], config["num_key_value_heads"], config["head_dim"])
    assert shape.n_vocab == config["vocab_size"]
    assert shape.weights_bytes == sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    assert shape.weights_bytes > 0
    e = fit.estimate(shape, 512, backend="mlx", prompt_tokens=128, max_tokens=32)
    assert e.kv_bytes == 2 * 256 * 2 * (16 + 16) * 2  # layers x cells x heads x dims x bf16
