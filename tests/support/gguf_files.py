"""Small, valid GGUF files for tests, written by the ``gguf`` package's own writer.

``write_gguf(path, ...)`` writes a tiny model (a token embedding and an output norm, plus
whatever ``tensors`` adds) with a vocabulary, a chat template and a file type; every
argument can be left out to test what the registry makes of a sparse header.
``gguf_bytes(...)`` returns the same as bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gguf
import numpy as np

TINY_VOCAB = ["<pad>", "<s>", "</s>", *[f"tok{i}" for i in range(29)]]  # 32 tokens
TINY_EMBEDDING = 64
TINY_PARAMETERS = len(TINY_VOCAB) * TINY_EMBEDDING + TINY_EMBEDDING  # embedding + norm


def write_gguf(path: Path, *, arch: str = "llama", context_length: int | None = 2048,
               embedding_length: int | None = TINY_EMBEDDING, tokenizer: str | None = "gpt2",
               vocab: list[str] | None = TINY_VOCAB, chat_template: str | None = "{{ x }}",
               file_type: gguf.LlamaFileType | None = gguf.LlamaFileType.ALL_F32,
               tensors: dict[str, np.ndarray] | None = None, alignment: int | None = None,
               extra: dict[str, object] | None = None) -> Path:
    w = gguf.GGUFWriter(path, arch)
    if context_length is not None:
        w.add_context_length(context_length)
    if embedding_length is not None:
        w.add_embedding_length(embedding_length)
    if tokenizer is not None:
        w.add_tokenizer_model(tokenizer)
    if vocab is not None:
        w.add_token_list(vocab)
        w.add_token_scores([0.0] * len(vocab))
    if chat_template is not None:
        w.add_chat_template(chat_template)
    if file_type is not None:
        w.add_file_type(file_type)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value in (extra or {}).items():
        if isinstance(value, str):
            w.add_string(key, value)
        elif value >= 1 << 32:
            w.add_uint64(key, value)
        else:
            w.add_uint32(key, value)
    rng = np.random.default_rng(0)
    n_vocab = len(vocab or TINY_VOCAB)
    default = {
        "token_embd.weight": rng.standard_normal((n_vocab, TINY_EMBEDDING), dtype=np.float32),
        "output_norm.weight": np.ones(TINY_EMBEDDING, dtype=np.float32),
    }
    for name, array in {**default, **(tensors or {})}.items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def gguf_bytes(**kwargs) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = write_gguf(Path(d) / "model.gguf", **kwargs)
        return path.read_bytes()
