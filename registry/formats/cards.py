"""Model cards: what a model is, read from its weights' headers without loading them.

- GGUF: the header's metadata and tensor table (``gguf_header``).
- safetensors / MLX: each ``*.safetensors`` file's JSON header (an 8-byte little-endian
  length, then JSON: ``{"name": {"dtype", "shape", "data_offsets"}, "__metadata__"}``)
  plus ``config.json``; MLX-quantized weights (a ``U32`` ``<module>.weight`` with sibling
  ``<module>.scales`` / ``.biases``) count the unpacked elements, not the packed words,
  and their scales and biases are not parameters.

The readers never raise for bad content: a corrupt or truncated file gives a card whose
``error`` is one readable line (verification fails such a model later). I/O errors from
the file objects do propagate.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

from registry import jsontext
from registry.formats.gguf_header import GGUFHeader, GGUFHeaderError, read_gguf_header

MAX_SAFETENSORS_HEADER = 100 << 20
MAX_JSON_FILE = 16 << 20       # config.json, tokenizer_config.json
MAX_TEXT = 255                 # names stored in SQL columns
MAX_ERROR = 1000
MAX_INT = (1 << 63) - 1        # SQL BIGINT

# MLX's defaults when config.json says "quantized" without saying how.
MLX_DEFAULT_BITS = 4
MLX_DEFAULT_GROUP_SIZE = 64

SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}

CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


@dataclass
class ModelCard:
    """What the registry knows about a model. Every field but ``format`` may be unknown."""

    format: str                              # "gguf" | "safetensors"
    architecture: str | None = None          # "gemma3", "LlamaForCausalLM"
    parameter_count: int | None = None
    parameter_label: str | None = None       # Ollama's model_type, e.g. "268.10M"
    quantization: str | None = None          # "Q4_K_M", "F16", "4-bit g64"
    context_length: int | None = None
    embedding_length: int | None = None
    chat_template: bool | None = None
    tokenizer_model: str | None = None       # GGUF tokenizer.ggml.model, e.g. "llama"
    dtypes: list[str] | None = None          # sorted tensor types / dtypes
    quantization_bits: int | None = None
    quantization_group_size: int | None = None
    error: str | None = None                 # why the weights could not be read

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with every field (unknown ones are null)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> ModelCard:
        """The inverse of ``to_json`` (also accepts JSON text); unknown keys are ignored."""
        if isinstance(data, str | bytes):
            data = json.loads(data)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class FileSource:
    """One file of a model directory: ``open()`` gives a fresh binary file positioned at
    the file's first byte (the caller closes it); ``size`` is its length in bytes."""

    open: Callable[[], BinaryIO]
    size: int


class SafetensorsHeaderError(ValueError):
    """A safetensors header that is malformed or does not fit its file (one-line message)."""


@dataclass(frozen=True)
class SafetensorsTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]


def parameter_label(n: int | None) -> str | None:
    """Ollama's rounded parameter count (its ``model_type``): "268.10M", "7.2B", "125M".

    Two decimals for millions, one for billions, none when the value is whole; this is
    ``format.HumanNumber`` in Ollama, so labels match what ``ollama create`` writes.
    """
    if n is None:
        return None
    for scale, unit, decimals in ((1e9, "B", 1), (1e6, "M", 2)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == math.floor(value) else \
                f"{value:.{decimals}f}{unit}"
    if n >= 1000:
        return f"{n / 1000:.0f}K"
    return str(n)


def _one_line(message: str) -> str:
    line = " ".join(str(message).split())
    return line if len(line) <= MAX_ERROR else line[:MAX_ERROR - 3] + "..."


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_TEXT]


def _count(value: Any) -> int | None:
    """A non-negative integer that fits a SQL BIGINT, else None (hostile headers)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        return None
    return value


def error_card(fmt: str, message: str) -> ModelCard:
    return ModelCard(fmt, error=_one_line(message))


# ---- GGUF ---------------------------------------------------------------------------

def gguf_card(header: GGUFHeader, extra: Sequence[GGUFHeader] = ()) -> ModelCard:
    """The card of a GGUF model; ``extra`` are the headers of its further split shards."""
    meta = header.metadata
    params = header.parameter_count + sum(h.parameter_count for h in extra)
    dtypes = {t.type for h in (header, *extra) for t in h.tensors}
    return ModelCard(
        "gguf",
        architecture=_text(header.architecture),
        parameter_count=_count(params),
        parameter_label=parameter_label(_count(params)),
        quantization=_text(header.file_type),
        context_length=_count(header.arch_value("context_length")),
        embedding_length=_count(header.arch_value("embedding_length")),
        # Named templates are stored as tokenizer.chat_template.<name>.
        chat_template=any(k == "tokenizer.chat_template" or
                          k.startswith("tokenizer.chat_template.") for k in meta),
        tokenizer_model=_text(meta.get("tokenizer.ggml.model")),
        dtypes=sorted(dtypes) or None,
    )


def read_gguf_card(f: BinaryIO, size: int) -> ModelCard:
    """The card of the GGUF file ``f`` (at byte 0, ``size`` bytes long). Reads only the
    header; a malformed or truncated file gives a card with ``error`` set."""
    try:
        return gguf_card(read_gguf_header(f, size))
    except GGUFHeaderError as exc:
        return error_card("gguf", str(exc))


def read_gguf_files(files: Mapping[str, FileSource]) -> ModelCard:
    """The card of a GGUF model stored as one file or as split shards (in order: the
    first holds the metadata, every shard's tensors count)."""
    if not files:
        return error_card("gguf", "the manifest has no GGUF file")
    headers = []
    for path, source in files.items():
        with source.open() as f:
            try:
                headers.append(read_gguf_header(f, source.size))
            except GGUFHeaderError as exc:
                prefix = f"{path}: " if len(files) > 1 else ""
                return error_card("gguf", f"{prefix}{exc}")
    return gguf_card(headers[0], headers[1:])


# ---- safetensors ----------------------------------------------------------------------

def _read_exactly(f: BinaryIO, n: int) -> bytes:
    parts, remaining = [], n
    while remaining:
        data = f.read(remaining)
        if not data:
            break
        parts.append(data)
        remaining -= len(data)
    return b"".join(parts)


def read_safetensors_header(f: BinaryIO, size: int) -> list[SafetensorsTensor]:
    """The tensors declared by the safetensors file ``f`` (``size`` bytes), checked
    against the file: offsets inside the data section, byte counts matching dtype x shape.
    Raises SafetensorsHeaderError."""
    if size < 8:
        raise SafetensorsHeaderError(f"not a safetensors file: only {size} bytes")
    raw = _read_exactly(f, 8)
    if len(raw) < 8:
        raise SafetensorsHeaderError("truncated: the file ends inside the header length")
    (n,) = struct.unpack("<Q", raw)
    if n > MAX_SAFETENSORS_HEADER:
        raise SafetensorsHeaderError(
            f"header length {n} exceeds the limit of {MAX_SAFETENSORS_HEADER >> 20} MiB; "
            "not a safetensors file or corrupt")
    if 8 + n > size:
        raise SafetensorsHeaderError(
            f"truncated: the header ends at byte {8 + n} but the file has {size}")
    text = _read_exactly(f, n)
    if len(text) < n:
        raise SafetensorsHeaderError("truncated: the file ends inside the header")
    try:
        doc = jsontext.loads(text, allow_inf_nan=True)  # a model file: untrusted
    except (ValueError, UnicodeDecodeError):
        raise SafetensorsHeaderError("the header is not valid JSON") from None
    if not isinstance(doc, dict):
        raise SafetensorsHeaderError("the header is not a JSON object")
    data_size = size - 8 - n
    tensors = []
    for name, info in doc.items():
        if name == "__metadata__":
            continue
        tensors.append(_tensor(name, info, data_size, 8 + n))
    return tensors


def _tensor(name: str, info: Any, data_size: int, data_start: int) -> SafetensorsTensor:
    if not isinstance(info, dict):
        raise SafetensorsHeaderError(f"tensor {name!r} is not described by an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str):
        raise SafetensorsHeaderError(f"tensor {name!r} has no dtype")
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise SafetensorsHeaderError(f"tensor {name!r} has an invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise SafetensorsHeaderError(f"tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if end > data_size:
        raise SafetensorsHeaderError(
            f"truncated: tensor {name!r} ends at byte {data_start + end} but the file has "
            f"{data_start + data_size}")
    itemsize = SAFETENSORS_DTYPE_BYTES.get(dtype)
    if itemsize is not None and math.prod(shape) * itemsize != end - begin:
        raise SafetensorsHeaderError(
            f"tensor {name!r} has {end - begin} bytes of data but {dtype} x {shape} "
            f"needs {math.prod(shape) * itemsize}")
    return SafetensorsTensor(name, dtype, tuple(shape))


def _read_json(source: FileSource, path: str) -> dict:
    if source.size > MAX_JSON_FILE:
        raise SafetensorsHeaderError(f"{path} is larger than {MAX_JSON_FILE >> 20} MiB")
    with source.open() as f:
        data = _read_exactly(f, source.size)
    try:
        doc = jsontext.loads(data, allow_inf_nan=True)  # a model file: untrusted
    except (ValueError, UnicodeDecodeError):
        raise SafetensorsHeaderError(f"{path} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise SafetensorsHeaderError(f"{path} is not a JSON object")
    return doc


def _quantization(config: dict) -> dict | None:
    q = config.get("quantization")
    if not isinstance(q, dict):
        q = config.get("quantization_config")
    return q if isinstance(q, dict) else None


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


def _parameter_count(tensors: dict[str, SafetensorsTensor], quant: dict | None) -> int:
    """Elements over all tensors, MLX-quantized weights unpacked, their scales and biases
    left out. The bits come from the module's own entry in ``quantization`` (mixed
    precision), else the global one, else MLX's default."""
    quant = quant or {}
    quantized = {name[:-len(".weight")] for name, t in tensors.items()
                 if name.endswith(".weight") and t.dtype == "U32"
                 and f"{name[:-len('.weight')]}.scales" in tensors}
    total = 0
    for name, t in tensors.items():
        module, _, leaf = name.rpartition(".")
        if module not in quantized:
            total += math.prod(t.shape)
        elif leaf == "weight" and t.shape:
            own = quant.get(module)
            bits = (_positive(own.get("bits")) if isinstance(own, dict) else None) \
                or _positive(quant.get("bits")) or MLX_DEFAULT_BITS
            total += math.prod(t.shape[:-1]) * (t.shape[-1] * 32 // bits)
        # scales and biases of a quantized module are not parameters
    return total


def _quantization_label(quant: dict | None, tensors: dict[str, SafetensorsTensor]
                        ) -> tuple[str | None, int | None, int | None]:
    if quant is not None:
        bits = _positive(quant.get("bits"))
        group = _positive(quant.get("group_size"))
        method = quant.get("quant_method") if isinstance(quant.get("quant_method"), str) \
            else None
        label = " ".join(p for p in (
            method if method and method != "mlx" else None,
            f"{bits}-bit" if bits else None,
            f"g{group}" if group else None) if p)
        return _text(label) or "quantized", bits, group
    # Unquantized: the dtype that holds most of the elements, e.g. "BF16".
    counts: dict[str, int] = {}
    for t in tensors.values():
        counts[t.dtype] = counts.get(t.dtype, 0) + math.prod(t.shape)
    return (_text(max(counts, key=counts.__getitem__)) if counts else None), None, None


def _first(config: dict, *keys: str) -> Any:
    """A value from config.json, or from its ``text_config`` (multimodal models)."""
    for scope in (config, config.get("text_config")):
        if isinstance(scope, dict):
            for key in keys:
                if scope.get(key) is not None:
                    return scope[key]
    return None


def read_safetensors_card(files: Mapping[str, FileSource]) -> ModelCard:
    """The card of a safetensors / MLX model directory given as ``path -> FileSource``.

    Reads every ``*.safetensors`` header (the weights, possibly sharded), ``config.json``
    (architecture, context and embedding length, quantization) and, when present,
    ``tokenizer_config.json`` (chat template, tokenizer class). Never raises for bad
    content: the card's ``error`` says what is wrong.
    """
    weights = sorted(p for p in files if p.lower().endswith(".safetensors"))
    if not weights:
        return error_card("safetensors", "the model has no .safetensors file")
    tensors: dict[str, SafetensorsTensor] = {}
    for path in weights:
        source = files[path]
        try:
            with source.open() as f:
                for t in read_safetensors_header(f, source.size):
                    tensors[t.name] = t
        except SafetensorsHeaderError as exc:
            return error_card("safetensors", f"{path}: {exc}")

    config: dict = {}
    try:
        if "config.json" in files:
            config = _read_json(files["config.json"], "config.json")
    except SafetensorsHeaderError as exc:
        return error_card("safetensors", str(exc))
    tokenizer_config: dict | None = None
    if "tokenizer_config.json" in files:
        try:
            tokenizer_config = _read_json(files["tokenizer_config.json"],
                                          "tokenizer_config.json")
        except SafetensorsHeaderError:
            tokenizer_config = None  # optional: a broken one does not make the model unreadable

    quant = _quantization(config)
    label, bits, group = _quantization_label(quant, tensors)
    params = _count(_parameter_count(tensors, quant))
    architectures = config.get("architectures")
    architecture = (architectures[0] if isinstance(architectures, list) and architectures
                    else config.get("model_type"))
    chat_template = None
    if any(name in files for name in CHAT_TEMPLATE_FILES):
        chat_template = True
    elif tokenizer_config is not None:
        chat_template = bool(tokenizer_config.get("chat_template"))
    return ModelCard(
        "safetensors",
        architecture=_text(architecture),
        parameter_count=params,
        parameter_label=parameter_label(params),
        quantization=label,
        context_length=_count(_first(config, "max_position_embeddings", "n_positions",
                                     "max_sequence_length")),
        embedding_length=_count(_first(config, "hidden_size", "d_model", "n_embd")),
        chat_template=chat_template,
        tokenizer_model=_text(tokenizer_config.get("tokenizer_class"))
        if tokenizer_config else None,
        dtypes=sorted({t.dtype for t in tensors.values()}) or None,
        quantization_bits=bits,
        quantization_group_size=group,
    )


class LocalCards:
    """The cards of model files on this machine: the ``client.layouts.CardReader`` that
    ``assay push`` hands to the client. Raises ``OSError`` when a file cannot be read.
    ``checked=False``: a card with an error does not stop the push (``--unchecked``)."""

    def __init__(self, checked: bool = True):
        self.checked = checked

    def gguf(self, path: Path) -> ModelCard:
        with open(path, "rb") as f:
            return read_gguf_card(f, path.stat().st_size)

    def directory(self, files: Sequence[tuple[str, Path]]) -> ModelCard:
        return read_safetensors_card({
            rel: FileSource(open=lambda p=path: open(p, "rb"),  # noqa: SIM115 (caller closes)
                            size=path.stat().st_size)
            for rel, path in files})
