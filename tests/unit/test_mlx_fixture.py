"""The generated MLX model directories (tests/support/mlx_models.py) are real, loadable models."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import mlx.core as mx
import mlx_lm
import pytest

from tests.support.mlx_models import BOS_TOKEN, EOS_TOKEN, QUANTIZATION, make_mlx_model

VARIANTS = ["mlx_model_dir", "mlx_model_dir_quantized", "mlx_model_dir_sharded"]
COMMON_FILES = {
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
}


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def all_tensors(directory: Path) -> dict[str, dict]:
    tensors = {}
    for path in sorted(directory.glob("model*.safetensors")):
        header = safetensors_header(path)
        assert header.pop("__metadata__") == {"format": "mlx"}
        assert not tensors.keys() & header.keys(), "a tensor is stored in two files"
        tensors.update(header)
    return tensors


# Each variant is a marked fixture (tests/conftest.py): the parameters carry its mark.
@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.slow) for name in VARIANTS])
def variant(request) -> Path:
    return request.getfixturevalue(request.param)


def test_plain_layout(mlx_model_dir):
    names = {p.name for p in mlx_model_dir.iterdir()}
    assert names == COMMON_FILES | {"model.safetensors"}
    config = json.loads((mlx_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["tie_word_embeddings"] is False
    assert "quantization" not in config
    tensors = all_tensors(mlx_model_dir)
    assert {t["dtype"] for t in tensors.values()} == {"BF16"}
    assert tensors["model.embed_tokens.weight"]["shape"] == [config["vocab_size"], 64]
    assert tensors["lm_head.weight"]["shape"] == [config["vocab_size"], 64]
    assert len([n for n in tensors if n.endswith("self_attn.q_proj.weight")]) == 2


def test_tokenizer_files(mlx_model_dir):
    tokenizer_json = json.loads((mlx_model_dir / "tokenizer.json").read_text())
    assert tokenizer_json["model"]["type"] == "BPE"
    assert tokenizer_json["pre_tokenizer"]["type"] == "ByteLevel"
    assert tokenizer_json["decoder"]["type"] == "ByteLevel"
    config = json.loads((mlx_model_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (config["bos_token"], config["eos_token"]) == (BOS_TOKEN, EOS_TOKEN)
    assert "messages" in config["chat_template"]
    special = json.loads((mlx_model_dir / "special_tokens_map.json").read_text())
    assert (special["bos_token"], special["eos_token"]) == (BOS_TOKEN, EOS_TOKEN)
    model_config = json.loads((mlx_model_dir / "config.json").read_text())
    generation = json.loads((mlx_model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == model_config["eos_token_id"]
    assert len(tokenizer_json["model"]["vocab"]) == model_config["vocab_size"]


def test_quantized_layout(mlx_model_dir_quantized):
    config = json.loads((mlx_model_dir_quantized / "config.json").read_text())
    assert config["quantization"]["bits"] == 4
    assert config["quantization"]["group_size"] == 32
    assert config["quantization"] == QUANTIZATION == config["quantization_config"]
    tensors = all_tensors(mlx_model_dir_quantized)
    packed = {n for n, t in tensors.items() if n.endswith(".weight") and t["dtype"] == "U32"}
    assert "model.layers.0.self_attn.q_proj.weight" in packed
    assert "lm_head.weight" in packed
    for name in packed:
        base = name.removesuffix(".weight")
        assert f"{base}.scales" in tensors and f"{base}.biases" in tensors
        # 4 bits: 8 values per uint32; one scale per group of 32 input values.
        rows, words = tensors[name]["shape"]
        assert tensors[f"{base}.scales"]["shape"] == [rows, words * 8 // 32]
    q_proj = tensors["model.layers.0.self_attn.q_proj.weight"]
    assert q_proj["shape"] == [64, 64 * 4 // 32]


def test_sharded_layout(mlx_model_dir_sharded, mlx_model_dir):
    names = {p.name for p in mlx_model_dir_sharded.iterdir()}
    shard_names = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    assert names == COMMON_FILES | shard_names | {"model.safetensors.index.json"}
    index = json.loads((mlx_model_dir_sharded / "model.safetensors.index.json").read_text())
    tensors = all_tensors(mlx_model_dir_sharded)
    assert set(index["weight_map"]) == set(tensors)
    assert set(index["weight_map"].values()) == shard_names
    for shard in shard_names:
        header = safetensors_header(mlx_model_dir_sharded / shard)
        stored = {n for n in header if n != "__metadata__"}
        assert stored == {n for n, f in index["weight_map"].items() if f == shard}
    assert index["metadata"]["total_size"] == sum(
        t["data_offsets"][1] - t["data_offsets"][0] for t in tensors.values()
    )
    # Same tensors (names, dtypes, shapes) as the single-file model.
    single = all_tensors(mlx_model_dir)
    assert {n: (t["dtype"], t["shape"]) for n, t in tensors.items()} == {
        n: (t["dtype"], t["shape"]) for n, t in single.items()
    }


def test_loads_and_generates(variant):
    model, tokenizer = mlx_lm.load(str(variant))
    ids = tokenizer.encode("hello world")
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hello world"

    logits = model(mx.array([ids]))
    assert logits.shape == (1, len(ids), model.args.vocab_size)
    assert mx.isfinite(logits).all().item()

    responses = list(mlx_lm.stream_generate(model, tokenizer, prompt="hello", max_tokens=8))
    assert responses[-1].generation_tokens == 8
    text = mlx_lm.generate(model, tokenizer, prompt="hello", max_tokens=8)
    assert isinstance(text, str) and text
    assert text == "".join(r.text for r in responses)


def test_chat_template(mlx_model_dir):
    _, tokenizer = mlx_lm.load(str(mlx_model_dir))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == f"{BOS_TOKEN}<|user|>\nhi{EOS_TOKEN}\n<|assistant|>\n"


def test_deterministic(tmp_path, mlx_model_dir_quantized):
    again = make_mlx_model(tmp_path / "again", quantize=True)
    for path in mlx_model_dir_quantized.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name
    other = make_mlx_model(tmp_path / "other", seed=1, quantize=True)
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()
