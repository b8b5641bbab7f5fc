"""registry.formats.cards: model cards from GGUF and safetensors headers, never raising."""

from __future__ import annotations

import io
import json
import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

from registry.formats.cards import (
    FileSource,
    ModelCard,
    parameter_label,
    read_gguf_card,
    read_gguf_files,
    read_safetensors_card,
)
from tests.support.gguf_files import TINY_PARAMETERS, gguf_bytes, write_gguf


def source(path: Path) -> FileSource:
    return FileSource(lambda: open(path, "rb"), path.stat().st_size)


def directory(path: Path) -> dict[str, FileSource]:
    return {p.relative_to(path).as_posix(): source(p) for p in sorted(path.rglob("*"))
            if p.is_file()}


def card_of(data: bytes) -> ModelCard:
    return read_gguf_card(io.BytesIO(data), len(data))


@pytest.mark.parametrize("n, label", [
    (0, "0"), (999, "999"), (1500, "2K"), (1_000_000, "1M"), (125_000_000, "125M"),
    (268_098_176, "268.10M"), (500_550_000, "500.55M"), (1_000_000_000, "1B"),
    (2_850_000_000, "2.9B"), (7_240_000_000, "7.2B"), (8_030_261_248, "8.0B"),
])
def test_parameter_label_is_ollamas(n, label):
    assert parameter_label(n) == label


def test_card_json_round_trip():
    card = ModelCard("safetensors", architecture="x", dtypes=["BF16", "U32"], error=None)
    assert ModelCard.from_json(card.to_json()) == card
    assert ModelCard.from_json(json.dumps({**card.to_json(), "new_field": 1})) == card
    assert set(card.to_json()) == {
        "format", "architecture", "parameter_count", "parameter_label", "quantization",
        "context_length", "embedding_length", "chat_template", "tokenizer_model", "dtypes",
        "quantization_bits", "quantization_group_size", "error"}


# ---- GGUF ------------------------------------------------------------------------------

def test_gemma_card(gemma_gguf):
    start = time.perf_counter()
    with open(gemma_gguf, "rb") as f:
        card = read_gguf_card(f, gemma_gguf.stat().st_size)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"the Gemma card took {elapsed:.2f} s"
    assert card == ModelCard(
        "gguf", architecture="gemma3", parameter_count=268_098_176, parameter_label="268.10M",
        quantization="Q4_K_M", context_length=32768, embedding_length=640,
        chat_template=False, tokenizer_model="llama",
        dtypes=["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"])


def test_small_gguf_card():
    card = card_of(gguf_bytes(arch="qwen2", file_type=gguf.LlamaFileType.MOSTLY_Q8_0))
    assert (card.architecture, card.parameter_count, card.quantization, card.context_length,
            card.embedding_length, card.chat_template, card.tokenizer_model, card.error) == \
        ("qwen2", TINY_PARAMETERS, "Q8_0", 2048, 64, True, "gpt2", None)


def test_sparse_gguf_header_gives_a_sparse_card():
    card = card_of(gguf_bytes(context_length=None, embedding_length=None, tokenizer=None,
                              vocab=None, chat_template=None, file_type=None))
    assert (card.architecture, card.context_length, card.embedding_length, card.chat_template,
            card.tokenizer_model, card.quantization, card.error) == \
        ("llama", None, None, False, None, "F32", None)


def test_hostile_values_do_not_reach_sql_columns():
    assert len(card_of(gguf_bytes(arch="a" * 5000)).architecture) == 255
    # A u64 beyond SQL's BIGINT is dropped rather than stored.
    huge = gguf_bytes(context_length=None, extra={"llama.context_length": (1 << 64) - 1})
    assert card_of(huge).context_length is None


@pytest.mark.parametrize("data, message", [
    (b"", "not a GGUF file"),
    (b"PK\x03\x04" + b"\0" * 100, "not a GGUF file"),
    (gguf_bytes()[:-100], "truncated: tensor 'output_norm.weight' ends at byte"),
])
def test_bad_gguf_gives_an_error_card(data, message):
    card = card_of(data)
    assert card.format == "gguf" and card.architecture is None
    assert message in card.error and "\n" not in card.error


def test_split_gguf_counts_every_shard(tmp_path):
    first = write_gguf(tmp_path / "m-00001-of-00002.gguf")
    second = write_gguf(tmp_path / "m-00002-of-00002.gguf", vocab=None, chat_template=None,
                        tensors={"blk.1.w": np.zeros((4, 32), dtype=np.float32)})
    card = read_gguf_files({p.name: source(p) for p in (first, second)})
    assert card.parameter_count == 2 * TINY_PARAMETERS + 4 * 32
    assert card.chat_template is True
    with open(second, "r+b") as f:
        f.truncate(100)
    card = read_gguf_files({p.name: source(p) for p in (first, second)})
    assert card.error.startswith("m-00002-of-00002.gguf: truncated")


# ---- safetensors -------------------------------------------------------------------------

LLAMA_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "hidden_size": 64, "max_position_embeddings": 4096}


def write_model(path: Path, tensors: dict[str, np.ndarray], config: dict | None = None,
                name: str = "model.safetensors", **files: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / name))
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    for file_name, text in files.items():
        (path / file_name.replace("__", ".")).write_text(text)
    return path


def test_float16_model(tmp_path):
    model = write_model(tmp_path / "m", {
        "model.embed_tokens.weight": np.zeros((100, 64), dtype=np.float16),
        "model.norm.weight": np.zeros(64, dtype=np.float32),
    }, LLAMA_CONFIG, tokenizer_config__json=json.dumps(
        {"chat_template": "{{ m }}", "tokenizer_class": "PreTrainedTokenizerFast"}))
    card = read_safetensors_card(directory(model))
    assert card == ModelCard(
        "safetensors", architecture="LlamaForCausalLM", parameter_count=6464,
        parameter_label="6K", quantization="F16", context_length=4096, embedding_length=64,
        chat_template=True, tokenizer_model="PreTrainedTokenizerFast",
        dtypes=["F16", "F32"])


def test_mlx_quantized_model_counts_unpacked_weights(tmp_path):
    out_f, in_f, bits, group = 128, 256, 4, 64
    model = write_model(tmp_path / "q", {
        "model.layers.0.mlp.up_proj.weight": np.zeros((out_f, in_f * bits // 32), np.uint32),
        "model.layers.0.mlp.up_proj.scales": np.zeros((out_f, in_f // group), np.float16),
        "model.layers.0.mlp.up_proj.biases": np.zeros((out_f, in_f // group), np.float16),
        # mixed precision: this module is 8-bit (its own entry in "quantization")
        "lm_head.weight": np.zeros((out_f, in_f * 8 // 32), np.uint32),
        "lm_head.scales": np.zeros((out_f, in_f // group), np.float16),
        "lm_head.biases": np.zeros((out_f, in_f // group), np.float16),
        "model.norm.weight": np.zeros(in_f, np.float16),
    }, {**LLAMA_CONFIG, "quantization": {"group_size": group, "bits": bits,
                                         "lm_head": {"group_size": group, "bits": 8}}},
        chat_template__jinja="{{ m }}")
    card = read_safetensors_card(directory(model))
    assert card.parameter_count == 2 * out_f * in_f + in_f
    assert (card.quantization, card.quantization_bits, card.quantization_group_size) == \
        ("4-bit g64", 4, 64)
    assert card.dtypes == ["F16", "U32"]
    assert card.chat_template is True and card.error is None


def test_hf_quantization_config(tmp_path):
    model = write_model(tmp_path / "g", {"w": np.zeros((4, 4), np.int32)}, {
        "model_type": "qwen2", "text_config": {"hidden_size": 32, "max_position_embeddings": 8},
        "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128}})
    card = read_safetensors_card(directory(model))
    assert (card.architecture, card.quantization, card.embedding_length, card.context_length,
            card.chat_template) == ("qwen2", "gptq 4-bit g128", 32, 8, None)


def test_sharded_model_sums_shards(tmp_path):
    model = write_model(tmp_path / "s", {"a": np.zeros((10, 10), np.float32)}, LLAMA_CONFIG,
                        name="model-00001-of-00002.safetensors")
    write_model(model, {"b": np.zeros((5,), np.float32)}, name="model-00002-of-00002.safetensors")
    (model / "model.safetensors.index.json").write_text("{}")
    assert read_safetensors_card(directory(model)).parameter_count == 105


def raw_safetensors(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


@pytest.mark.parametrize("content, message", [
    (b"abc", "not a safetensors file"),
    (raw_safetensors(b"{}", length=1 << 40), "exceeds the limit of 100 MiB"),
    (raw_safetensors(b"{}", length=500), "truncated: the header ends at byte 508"),
    (raw_safetensors(b"not json"), "not valid JSON"),
    (raw_safetensors(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"), "not valid JSON"),
    (raw_safetensors(b'{"a\\ud800": 1}'), "not valid JSON"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
     "truncated: tensor 'w' ends at byte"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8),
     "has 8 bytes of data but F32 x [4] needs 16"),
    (raw_safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}),
     "invalid shape"),
])
def test_bad_safetensors_give_an_error_card(tmp_path, content, message):
    (tmp_path / "model.safetensors").write_bytes(content)
    card = read_safetensors_card(directory(tmp_path))
    assert card.format == "safetensors"
    assert card.error.startswith("model.safetensors: ") and message in card.error


def test_model_without_weights_or_with_bad_config(tmp_path):
    assert "no .safetensors file" in read_safetensors_card({}).error
    model = write_model(tmp_path / "c", {"w": np.zeros(2, np.float32)})
    for hostile in ("{broken", '{"a":' + "[" * 5000 + "]" * 5000 + "}", '{"x": "\\udc00"}'):
        (model / "config.json").write_text(hostile)
        assert read_safetensors_card(directory(model)).error == "config.json is not valid JSON"


def test_real_mlx_models(mlx_model_dir, mlx_model_dir_quantized):
    plain = read_safetensors_card(directory(mlx_model_dir))
    quantized = read_safetensors_card(directory(mlx_model_dir_quantized))
    assert plain.error is None and quantized.error is None
    assert plain.architecture == quantized.architecture == "LlamaForCausalLM"
    assert plain.quantization == "BF16"
    assert (quantized.quantization, quantized.quantization_bits,
            quantized.quantization_group_size) == ("4-bit g32", 4, 32)
    # Unpacking the 4-bit words gives back exactly the unquantized model's parameters.
    assert quantized.parameter_count == plain.parameter_count > 0
    assert quantized.chat_template is True
    assert "U32" in quantized.dtypes and plain.dtypes == ["BF16"]
