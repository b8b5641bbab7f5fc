"""Tiny generated MLX model directories for tests (pytest plugin).

``make_mlx_model(directory)`` writes a small random Llama-architecture model in the layout of
docs/clients.md "MLX model directories": ``config.json``, ``model.safetensors`` (or
``model-0000i-of-0000N.safetensors`` plus ``model.safetensors.index.json``), a real byte-level
BPE ``tokenizer.json`` trained with the ``tokenizers`` package, ``tokenizer_config.json`` (with a
chat template), ``special_tokens_map.json`` and ``generation_config.json``. ``mlx_lm.load(dir)``
loads it and ``mlx_lm.generate`` runs it (random weights give random text). Nothing is
downloaded: everything is generated from a built-in text and a seed.

Output is deterministic: the same arguments give byte-identical files (weights come from a
NumPy generator seeded with ``seed``, not from MLX's random state). The rows of ``lm_head`` for
the special tokens are zero, so greedy decoding from random weights never emits ``<pad>``,
``<s>`` or ``</s>`` and always produces ``max_tokens`` ordinary tokens.

Fixtures (session scope, generated under ``tmp_path_factory``, never in the repo; read-only by
convention): ``mlx_model_dir`` (bfloat16, one file), ``mlx_model_dir_quantized`` (4-bit affine,
group size 32) and ``mlx_model_dir_sharded`` (two shards plus index).

MLX, mlx-lm and tokenizers come from the ``mlx`` extra (part of ``test``); imports are lazy so
this plugin costs nothing for tests that do not use it. A missing package fails the fixture with
the install hint; it is never skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Tests never reach a model hub: mlx_lm/transformers must only read the generated directories.
# Set before huggingface_hub is first imported (it reads these once).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN]  # ids 0, 1, 2
VOCAB_SIZE = 384  # 256 byte symbols + 3 specials + up to 125 merges
QUANTIZATION = {"group_size": 32, "bits": 4, "mode": "affine"}

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Built-in training text for the tokenizer (no downloads). Any change here changes the vocabulary.
_CORPUS = """\
hello world, hello there. hello again: the registry stores models as OCI artifacts.
A model is a set of layers; every layer is a blob addressed by its sha256 digest.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
Tokenizers split text into tokens, and the model predicts the next token from the last ones.
user: what is a manifest? assistant: a manifest lists the config and the layers of an image.
Push the weights once, pull them many times; shared layers are stored only once on disk.
Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 and symbols ! ? . , ; : - _ ( ) [ ] { } / \\ " ' # @.
The safetensors header describes each tensor: its name, dtype, shape and byte offsets.
"""


def _model_args(vocab_size: int) -> dict:
    return {
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab_size,
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "rope_traditional": False,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
    }


def train_tokenizer():
    """A deterministic byte-level BPE ``tokenizers.Tokenizer`` trained on the built-in text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = _CORPUS.splitlines() * 4
    tokenizer.train_from_iterator(lines, trainer=trainer, length=len(lines))
    bos_id = tokenizer.token_to_id(BOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return tokenizer


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _random_weights(model, seed: int, dtype, special_ids: list[int]) -> dict:
    """Deterministic parameters from NumPy: N(0, 0.02) matrices, ones for norm weights."""
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    rng = np.random.default_rng(seed)
    weights = {}
    for name, param in sorted(tree_flatten(model.parameters())):
        if name.endswith("norm.weight"):
            value = np.ones(param.shape, dtype=np.float32)
        else:
            value = rng.normal(0.0, 0.02, size=param.shape).astype(np.float32)
        if name == "lm_head.weight":
            value[special_ids] = 0.0
        weights[name] = mx.array(value).astype(dtype)
    return weights


def _split_shards(weights: dict, shards: int) -> list[dict]:
    """Split in name order into ``shards`` contiguous groups of roughly equal byte size."""
    names = sorted(weights)
    total = sum(weights[n].nbytes for n in names)
    groups: list[dict] = [{} for _ in range(shards)]
    done = 0
    for name in names:
        index = min(shards - 1, done * shards // total)
        groups[index][name] = weights[name]
        done += weights[name].nbytes
    if any(not g for g in groups):
        raise ValueError(f"cannot split {len(names)} tensors into {shards} non-empty shards")
    return groups


def make_mlx_model(
    directory: Path,
    *,
    seed: int = 0,
    quantize: bool = False,
    shards: int = 1,
    dtype: str = "bfloat16",
    model_args: dict | None = None,
) -> Path:
    """Write a tiny random Llama MLX model directory into ``directory`` and return it.

    ``quantize`` stores 4-bit affine weights (group size 32: U32 packed ``weight`` plus
    ``scales``/``biases``) and records ``quantization`` in ``config.json``. ``shards`` > 1 writes
    ``model-0000i-of-0000N.safetensors`` and ``model.safetensors.index.json``. ``dtype`` is the
    float dtype of the unquantized tensors (``bfloat16``, ``float16`` or ``float32``).
    ``model_args`` overrides the architecture's arguments (e.g. ``intermediate_size`` for a
    bigger file; ``vocab_size`` is the tokenizer's).
    """
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.models.llama import Model, ModelArgs

    if shards < 1:
        raise ValueError("shards must be >= 1")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer()
    tokenizer.save(str(directory / "tokenizer.json"))
    vocab_size = tokenizer.get_vocab_size()
    ids = {tok: tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS}

    args = {**_model_args(vocab_size), **(model_args or {}), "vocab_size": vocab_size}
    model = Model(ModelArgs.from_dict(args))
    mx_dtype = getattr(mx, dtype)
    model.load_weights(list(_random_weights(model, seed, mx_dtype, list(ids.values())).items()))

    config = {
        "architectures": ["LlamaForCausalLM"],
        **args,
        "hidden_act": "silu",
        "bos_token_id": ids[BOS_TOKEN],
        "eos_token_id": ids[EOS_TOKEN],
        "pad_token_id": ids[PAD_TOKEN],
        "torch_dtype": dtype,
    }
    if quantize:
        nn.quantize(
            model,
            group_size=QUANTIZATION["group_size"],
            bits=QUANTIZATION["bits"],
            mode=QUANTIZATION["mode"],
        )
        # What mlx_lm.convert writes: "quantization", mirrored as "quantization_config".
        config["quantization"] = dict(QUANTIZATION)
        config["quantization_config"] = dict(QUANTIZATION)

    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    metadata = {"format": "mlx"}
    if shards == 1:
        mx.save_safetensors(str(directory / "model.safetensors"), weights, metadata=metadata)
    else:
        weight_map = {}
        for i, group in enumerate(_split_shards(weights, shards), start=1):
            name = f"model-{i:05d}-of-{shards:05d}.safetensors"
            mx.save_safetensors(str(directory / name), group, metadata=metadata)
            weight_map.update(dict.fromkeys(group, name))
        index = {
            "metadata": {"total_size": sum(w.nbytes for w in weights.values())},
            "weight_map": dict(sorted(weight_map.items())),
        }
        _write_json(directory / "model.safetensors.index.json", index)

    _write_json(directory / "config.json", config)
    _write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS_TOKEN,
            "eos_token": EOS_TOKEN,
            "pad_token": PAD_TOKEN,
            "add_bos_token": True,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": args["max_position_embeddings"],
            "chat_template": CHAT_TEMPLATE,
        },
    )
    _write_json(
        directory / "special_tokens_map.json",
        {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN},
    )
    _write_json(
        directory / "generation_config.json",
        {
            "bos_token_id": ids[BOS_TOKEN],
            "eos_token_id": ids[EOS_TOKEN],
            "pad_token_id": ids[PAD_TOKEN],
            "do_sample": False,
        },
    )
    return directory


def _make_or_fail(directory: Path, **kwargs) -> Path:
    try:
        return make_mlx_model(directory, **kwargs)
    except ImportError as exc:
        pytest.fail(
            f"cannot generate the MLX test model ({exc}): pip install -e '.[test]' "
            "(the 'mlx' extra: mlx[cpu], mlx-lm, tokenizers)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def mlx_model_dir(tmp_path_factory) -> Path:
    """Tiny random Llama MLX model directory, bfloat16, single ``model.safetensors``."""
    return _make_or_fail(tmp_path_factory.mktemp("mlx-model") / "tiny-llama")


@pytest.fixture(scope="session")
def mlx_model_dir_quantized(tmp_path_factory) -> Path:
    """Same model quantized to 4 bits (affine, group size 32), single ``model.safetensors``."""
    return _make_or_fail(tmp_path_factory.mktemp("mlx-model") / "tiny-llama-4bit", quantize=True)


@pytest.fixture(scope="session")
def mlx_model_dir_sharded(tmp_path_factory) -> Path:
    """Same model in two shards plus ``model.safetensors.index.json``."""
    return _make_or_fail(tmp_path_factory.mktemp("mlx-model") / "tiny-llama-sharded", shards=2)
