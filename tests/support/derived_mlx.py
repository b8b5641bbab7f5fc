"""Gemma 3 270M as an MLX model directory, derived from the real GGUF (pytest plugin).

``derived_mlx_path()`` turns the Q4_K_M GGUF of ``tests.support.models`` into a directory that
``mlx_lm.load`` reads, so llama.cpp and MLX can be compared on the same weights. It is derived
once per machine into the test cache (``cache_dir()``, never the repo), in a directory named by
the GGUF's sha256 and ``CONVERTER_VERSION``; bump the version whenever the output changes. The
directory is written under a temporary name and renamed into place while holding the same file
lock ``models.py`` uses (``locked``), so concurrent test processes derive it once and never see
half of it.
Usable outside pytest (benchmarks); ``derived_mlx`` is the session fixture.

What the derivation does (``derive``):

- weights: every tensor dequantized with ``gguf.quants.dequantize`` (already in Hugging Face's
  (out, in) order), renamed to the Hugging Face Gemma 3 text names (``hf_name``), every
  ``*norm.weight`` minus 1 (llama.cpp's converter stores Gemma's norms as 1 + w, mlx-lm adds
  the 1 itself), saved as one ``model.safetensors`` in ``DTYPE``. No ``lm_head``: the
  embeddings are tied, as in the GGUF.
- ``config.json`` (``gemma3_text``) from the GGUF header, plus what llama.cpp hardcodes for
  gemma3 and the header does not carry: local RoPE base 10000, every 6th layer global.
- ``tokenizer.json``: the GGUF's sentencepiece vocabulary as a ``tokenizers`` BPE model with
  byte fallback (``tokenizer``). Control tokens are special added tokens, user-defined ones
  (newline and space runs, HTML tags) plain added tokens matched whole, as llama.cpp matches
  them. The merges are every split of a normal token into two normal tokens, ranked by the
  merged token's score, which is how llama.cpp's sentencepiece tokenizer picks its next merge.
  (Tokens in the text that look like control tokens are matched as special, as llama.cpp does
  with ``special=True``; nothing else differs on the project's English text.)
- ``tokenizer_config.json`` (BOS added, Gemma's chat template), ``special_tokens_map.json``,
  ``generation_config.json`` (stops at ``<eos>`` and ``<end_of_turn>``), ``derived.json``
  (provenance; written last, its presence marks a complete directory).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.models import GEMMA_SHA256, cache_dir, gemma_gguf_path, locked

CONVERTER_VERSION = 1
DTYPE = "bfloat16"
MANIFEST = "derived.json"
ARCH = "gemma3"
# Not in a gemma3 GGUF header: llama.cpp hardcodes them for the architecture.
ROPE_LOCAL_BASE_FREQ = 10000.0
SLIDING_WINDOW_PATTERN = 6
END_OF_TURN = "<end_of_turn>"

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4

# blk.N.<gguf> -> model.layers.N.<hf>
LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight",
             "output_norm.weight": "model.norm.weight"}

# Gemma 3's chat template, text only: a system message is folded into the first user turn,
# roles must alternate, the assistant's turns are the "model" role.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] | trim }}"
    "{%- else -%}"
    "{%- for item in message['content'] if item['type'] == 'text' -%}"
    "{{ item['text'] | trim }}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def derived_mlx_path() -> Path:
    """Return the cached MLX directory derived from the Gemma GGUF, deriving it first if needed.

    The directory is complete whenever this returns (its manifest matches this converter and
    GGUF); a stale or partial one left by an older converter or a crash is replaced. Raises
    ``RuntimeError`` when the GGUF cannot be provided (see ``gemma_gguf_path``). Read-only.
    """
    gguf_path = gemma_gguf_path()
    manifest = {"gguf_sha256": GEMMA_SHA256, "converter_version": CONVERTER_VERSION,
                "dtype": DTYPE}
    target = cache_dir() / f"gemma-3-270m-mlx-{GEMMA_SHA256[:16]}-v{CONVERTER_VERSION}"
    if _complete(target, manifest):
        return target
    with locked(target.with_name(target.name + ".lock")):
        if _complete(target, manifest):
            return target
        # Under the lock no other process is deriving: anything here is a crashed run's.
        for stale in [target, *target.parent.glob(f".{target.name}.*.partial")]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            derive(gguf_path, tmp, DTYPE)
            _write_json(tmp / MANIFEST, manifest)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _complete(directory: Path, manifest: dict) -> bool:
    try:
        return json.loads((directory / MANIFEST).read_text()) == manifest
    except (OSError, ValueError):
        return False


def derive(gguf_path: Path, out: Path, dtype: str = DTYPE) -> None:
    """Write an MLX model directory for the Gemma 3 GGUF ``gguf_path`` into ``out`` (created).

    ``dtype`` is the safetensors dtype: ``bfloat16``, ``float16`` or ``float32``. Raises
    ``ValueError`` for a GGUF that is not a gemma3 model with a sentencepiece vocabulary.
    Writes no manifest: caching is the caller's business.
    """
    import gguf
    import mlx.core as mx

    reader = gguf.GGUFReader(gguf_path)
    if _field(reader, "general.architecture") != ARCH:
        raise ValueError(f"{gguf_path} is not a {ARCH} model")
    if _field(reader, "tokenizer.ggml.model") != "llama":
        raise ValueError(f"{gguf_path} has no sentencepiece ('llama') vocabulary")
    if _field(reader, "tokenizer.ggml.add_space_prefix", False):
        raise ValueError(f"{gguf_path} asks for a space prefix, which Gemma 3 does not use")
    out.mkdir(parents=True)
    mx.save_safetensors(str(out / "model.safetensors"), weights(reader, dtype),
                        metadata={"format": "mlx"})
    cfg = config(reader)
    cfg["torch_dtype"] = dtype
    _write_json(out / "config.json", cfg)
    tokenizer(reader).save(str(out / "tokenizer.json"))
    specials = special_tokens(reader)
    _write_json(out / "special_tokens_map.json", specials)
    _write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", True)),
        "add_eos_token": bool(_field(reader, "tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": cfg["max_position_embeddings"],
        "chat_template": CHAT_TEMPLATE,
    })
    _write_json(out / "generation_config.json", {
        "bos_token_id": cfg["bos_token_id"],
        "eos_token_id": cfg["eos_token_id"],
        "pad_token_id": cfg["pad_token_id"],
    })


def config(reader) -> dict:
    """The Hugging Face ``gemma3_text`` config for the GGUF behind ``reader``."""
    def key(name):
        return _field(reader, f"{ARCH}.{name}")

    layers = key("block_count")
    tokens = _tokens(reader)
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "hidden_size": key("embedding_length"),
        "intermediate_size": key("feed_forward_length"),
        "num_hidden_layers": layers,
        "num_attention_heads": key("attention.head_count"),
        "num_key_value_heads": key("attention.head_count_kv"),
        "head_dim": key("attention.key_length"),
        # llama.cpp scales queries by 1/sqrt(key_length) for every gemma3 size but 27B.
        "query_pre_attn_scalar": key("attention.key_length"),
        "rms_norm_eps": key("attention.layer_norm_rms_epsilon"),
        "rope_theta": key("rope.freq_base"),
        "rope_local_base_freq": ROPE_LOCAL_BASE_FREQ,
        "rope_scaling": None,
        "sliding_window": key("attention.sliding_window"),
        "sliding_window_pattern": SLIDING_WINDOW_PATTERN,
        "layer_types": ["full_attention" if (i + 1) % SLIDING_WINDOW_PATTERN == 0
                        else "sliding_attention" for i in range(layers)],
        "max_position_embeddings": key("context_length"),
        "vocab_size": len(tokens),
        "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors),
        "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _eos_ids(reader, tokens),
        "pad_token_id": _field(reader, "tokenizer.ggml.padding_token_id"),
    }


def hf_name(name: str) -> str:
    """The Hugging Face Gemma 3 text name of the GGUF tensor ``name``; ``KeyError`` if unknown."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    blk, index, base, kind = name.split(".")
    if blk != "blk":
        raise KeyError(name)
    return f"model.layers.{index}.{LAYER_NAMES[base]}.{kind}"


def weights(reader, dtype: str = DTYPE) -> dict:
    """Every tensor of ``reader`` dequantized, renamed (``hf_name``), its norms shifted back by
    -1 in float32, then cast to ``dtype``: ``{name: mx.array}``."""
    import mlx.core as mx
    import numpy as np
    from gguf.quants import dequantize

    out = {}
    for tensor in reader.tensors:
        value = dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
        if tensor.name.endswith("norm.weight"):
            value = value - 1.0
        cast = out[hf_name(tensor.name)] = mx.array(value).astype(getattr(mx, dtype))
        mx.eval(cast)  # drop the float32 copy now, not at save time
    return out


def tokenizer(reader):
    """The GGUF's sentencepiece vocabulary as a ``tokenizers.Tokenizer`` that encodes text to
    the ids llama.cpp gives it (with ``special`` parsing for the control tokens), adds BOS
    through its post-processor and decodes back to the text."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    tokens = _tokens(reader)
    types = _field(reader, "tokenizer.ggml.token_type")
    bos = tokens[_field(reader, "tokenizer.ggml.bos_token_id")]
    unk = tokens[_field(reader, "tokenizer.ggml.unknown_token_id")]
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = _merges(tokens, types, _field(reader, "tokenizer.ggml.scores"))
    model = models.BPE(vocab=vocab, merges=merges, unk_token=unk,
                       fuse_unk=True, byte_fallback=True)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, vocab[bos])])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t, kind in zip(tokens, types, strict=True) if kind == CONTROL])
    tok.add_tokens([AddedToken(t, normalized=False, special=False)
                    for t, kind in zip(tokens, types, strict=True) if kind == USER_DEFINED])
    return tok


def _merges(tokens: list[str], types: list[int], scores: list[float]) -> list[tuple[str, str]]:
    """Every (left, right) of normal tokens whose concatenation is a normal token, best first.

    llama.cpp's sentencepiece tokenizer merges the adjacent pair whose result scores highest
    (the leftmost on a tie), so a pair ranks by its merged token's score, then by its id.
    """
    normal = {t: i for i, (t, kind) in enumerate(zip(tokens, types, strict=True))
              if kind == NORMAL}
    ranked = []
    for token, index in normal.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in normal and right in normal:
                ranked.append((-scores[index], index, normal[left], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def special_tokens(reader) -> dict:
    """``bos_token``/``eos_token``/``unk_token``/``pad_token`` as the GGUF names them."""
    tokens = _tokens(reader)
    keys = {"bos_token": "bos_token_id", "eos_token": "eos_token_id",
            "unk_token": "unknown_token_id", "pad_token": "padding_token_id"}
    return {name: tokens[_field(reader, f"tokenizer.ggml.{key}")] for name, key in keys.items()}


def _eos_ids(reader, tokens: list[str]) -> list[int]:
    """The GGUF's EOS plus ``<end_of_turn>``, where llama.cpp also stops a Gemma model."""
    ids = [_field(reader, "tokenizer.ggml.eos_token_id")]
    if END_OF_TURN in tokens:
        ids.append(tokens.index(END_OF_TURN))
    return ids


def _tokens(reader) -> list[str]:
    # Decoded from the raw parts: ``contents()`` is much slower on 262,144 strings.
    field = reader.fields["tokenizer.ggml.tokens"]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def _field(reader, name: str, default=None):
    field = reader.fields.get(name)
    return default if field is None else field.contents()


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def derived_mlx() -> Path:
    """The MLX directory derived from Gemma 3 270M Q4_K_M (``derived_mlx_path``). Read-only."""
    try:
        return derived_mlx_path()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
