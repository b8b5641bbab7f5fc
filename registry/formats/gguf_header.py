"""A streaming, bounded GGUF header reader.

``gguf.GGUFReader`` memory-maps the file and materialises every metadata value, which
takes ~9 s for a 262k-token vocabulary: too slow for a push. This reader walks the header
with ``read()`` calls of growing size (256 KiB, doubling to 8 MiB), so on a ranged blob
store it fetches little more than the header itself, and it never touches tensor data.

Layout (GGUF v2/v3, little-endian)::

    magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
    kv_count x   (key string, value type u32, value)
    tensor_count x (name string, n_dims u32, dims u64 x n_dims, type u32, offset u64)
    padding to ``general.alignment`` (default 32), then the tensor data

where a string is a u64 length and UTF-8 bytes. Scalar and string values are kept;
arrays are skipped and recorded as ``GGUFArray(element type, length)`` (the vocabulary
``tokenizer.ggml.tokens`` is therefore only a count).

Hostile input is bounded (see the ``MAX_*`` constants) and every violation raises
``GGUFHeaderError`` with a one-line message: not a GGUF file, unsupported version,
truncated header, absurd lengths, unknown types, or a tensor table that does not fit the
file ("truncated: tensor 'x' ends at byte N but the file has M"). Every length and count
is checked against its limit before anything is read or allocated for it, so the work is
bounded by the header bytes actually present (at most ``MAX_HEADER_BYTES``) and, for the
costlier items, by ``MAX_TENSORS`` and ``MAX_NESTED``; the memory kept is bounded by
``MAX_KEPT``. The worst header within these limits parses in a few seconds. Values are
never interpreted: a chat template is a string like any other, never rendered.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
SUPPORTED_VERSIONS = (2, 3)

MAX_STRING = 1 << 20          # chat templates are ~10-50 KB; names are short
MAX_ARRAY = 1 << 24           # vocabularies are ~32k-262k entries
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 16         # the largest real models have a few thousand tensors
MAX_DIMS = 8
MAX_ARRAY_DEPTH = 4           # arrays of arrays are legal; deeper nesting is not seen
MAX_NESTED = 1 << 16          # arrays inside arrays, over the whole header
MAX_KEPT = 16 << 20           # bytes of keys and string values kept in ``metadata``
MAX_HEADER_BYTES = 256 << 20  # real headers are a few MB (a 262k vocabulary is ~6 MB)

FIRST_READ = 256 << 10
MAX_READ = 8 << 20

_SCALARS = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class GGUFHeaderError(ValueError):
    """The bytes are not a well-formed GGUF header; the message is one readable line."""


@dataclass(frozen=True)
class GGUFArray:
    """An array value whose contents were skipped."""

    element_type: str  # a GGUFValueType name, e.g. "STRING"
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: the first dimension is the contiguous one
    type: str               # a GGMLQuantizationType name, e.g. "Q4_K"
    offset: int             # relative to the start of the data section
    nbytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    header_size: int   # bytes from the magic to the end of the tensor table
    data_offset: int   # where tensor data starts: header_size rounded up to the alignment
    alignment: int

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    @property
    def parameter_count(self) -> int:
        """Elements over all tensors (what Ollama reports as the parameter count)."""
        return sum(t.n_elements for t in self.tensors)

    def arch_value(self, key: str) -> Any:
        """``<architecture>.<key>``, e.g. ``arch_value("context_length")``."""
        return self.metadata.get(f"{self.architecture}.{key}") if self.architecture else None

    @property
    def file_type(self) -> str | None:
        """``general.file_type`` as llama.cpp names it ("Q4_K_M", "F16", "BF16"), else
        the tensor type holding the most elements (files written without a file type)."""
        ftype = self.metadata.get("general.file_type")
        if isinstance(ftype, int) and not isinstance(ftype, bool):
            try:
                name = LlamaFileType(ftype & ~LlamaFileType.GUESSED).name
            except ValueError:
                return f"unknown file type {ftype}"
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.type] = counts.get(t.type, 0) + t.n_elements
        return max(counts, key=counts.__getitem__) if counts else None


class _Cursor:
    """Sequential little-endian reads over a file object, buffered in growing chunks.

    Never reads past ``limit`` (the smaller of the file size and MAX_HEADER_BYTES).
    """

    def __init__(self, f: BinaryIO, file_size: int):
        self.f = f
        self.file_size = file_size
        self.limit = min(file_size, MAX_HEADER_BYTES)
        self.buf = b""
        self.i = 0       # read position in buf
        self.base = 0    # file offset of buf[0]
        self.chunk = FIRST_READ
        self.kept = 0    # bytes of strings kept (MAX_KEPT)
        self.nested = 0  # arrays seen inside arrays (MAX_NESTED)

    @property
    def pos(self) -> int:
        return self.base + self.i

    def need(self, n: int) -> None:
        """Make ``n`` bytes available at ``self.i`` or raise a truncation error."""
        while len(self.buf) - self.i < n:
            end = self.base + len(self.buf)
            want = min(max(n - (len(self.buf) - self.i), self.chunk), self.limit - end)
            if want <= 0:
                if self.limit < self.file_size:
                    raise GGUFHeaderError(
                        f"header is larger than the limit of {MAX_HEADER_BYTES >> 20} MiB")
                raise GGUFHeaderError(
                    f"truncated: the header needs more than the file's {self.file_size} bytes "
                    f"(stopped at byte {self.pos})")
            data = self.f.read(want)
            if not data:
                raise GGUFHeaderError(
                    f"truncated: the file ends at byte {end} inside the header, but its "
                    f"size was given as {self.file_size}")
            self.chunk = min(self.chunk * 2, MAX_READ)
            self.buf = self.buf[self.i:] + data
            self.base += self.i
            self.i = 0

    def unpack(self, fmt: struct.Struct):
        if len(self.buf) - self.i < fmt.size:
            self.need(fmt.size)
        (value,) = fmt.unpack_from(self.buf, self.i)
        self.i += fmt.size
        return value

    def skip(self, n: int) -> None:
        while n > 0:
            if self.i >= len(self.buf):
                self.need(1)
            step = min(n, len(self.buf) - self.i)
            self.i += step
            n -= step

    def string(self, what: str) -> str:
        n = self.unpack(_U64)
        if n > MAX_STRING:
            raise GGUFHeaderError(
                f"{what} has a string length of {n} bytes (limit {MAX_STRING}); "
                "the header is corrupt")
        if len(self.buf) - self.i < n:
            self.need(n)
        self.kept += n
        if self.kept > MAX_KEPT:
            raise GGUFHeaderError(
                f"{what}: the header's keys and strings exceed {MAX_KEPT >> 20} MiB")
        raw = self.buf[self.i:self.i + n]
        self.i += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int, what: str) -> None:
        """Skip ``count`` strings (a vocabulary): the hot loop of a header walk.

        The cursor lives in locals and is synced with ``self`` only around ``need``
        (which may replace the buffer): 262k Gemma tokens in ~25 ms instead of ~100.
        """
        unpack = _U64.unpack_from
        buf, i = self.buf, self.i
        end = len(buf)
        for _ in range(count):
            if end - i < 8:
                self.i = i
                self.need(8)
                buf, i = self.buf, self.i
                end = len(buf)
            (n,) = unpack(buf, i)
            i += 8
            if n > MAX_STRING:
                self.i = i
                raise GGUFHeaderError(
                    f"{what} holds a string of {n} bytes (limit {MAX_STRING}); "
                    "the header is corrupt")
            if end - i < n:
                self.i = i
                self.need(n)
                buf, i = self.buf, self.i
                end = len(buf)
            i += n
        self.i = i


def _value_type(raw: int, what: str) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise GGUFHeaderError(f"{what} has an unknown value type {raw}") from None


def _skip_array(cur: _Cursor, what: str, depth: int) -> GGUFArray:
    etype = _value_type(cur.unpack(_U32), f"array {what}")
    count = cur.unpack(_U64)
    if count > MAX_ARRAY:
        raise GGUFHeaderError(
            f"array {what} claims {count} elements (limit {MAX_ARRAY}); the header is corrupt")
    if etype == GGUFValueType.STRING:
        cur.skip_strings(count, f"array {what}")
    elif etype == GGUFValueType.ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise GGUFHeaderError(f"array {what} nests arrays deeper than {MAX_ARRAY_DEPTH}")
        cur.nested += count
        if cur.nested > MAX_NESTED:
            raise GGUFHeaderError(
                f"array {what} nests more than {MAX_NESTED} arrays; the header is corrupt")
        for _ in range(count):
            _skip_array(cur, what, depth + 1)
    else:
        cur.skip(count * _SCALARS[etype].size)
    return GGUFArray(etype.name, count)


def _value(cur: _Cursor, vtype: GGUFValueType, key: str) -> Any:
    if vtype == GGUFValueType.STRING:
        return cur.string(f"key {key!r}")
    if vtype == GGUFValueType.ARRAY:
        return _skip_array(cur, repr(key), 1)
    return cur.unpack(_SCALARS[vtype])


def _tensor(cur: _Cursor, index: int) -> TensorInfo:
    name = cur.string(f"tensor #{index}'s name")
    n_dims = cur.unpack(_U32)
    if n_dims > MAX_DIMS:
        raise GGUFHeaderError(f"tensor {name!r} has {n_dims} dimensions (limit {MAX_DIMS})")
    shape = tuple(cur.unpack(_U64) for _ in range(n_dims))
    if any(d >= 1 << 63 for d in shape) or math.prod(shape) >= 1 << 63:
        raise GGUFHeaderError(f"tensor {name!r} has an impossible shape {list(shape)}")
    raw_type = cur.unpack(_U32)
    offset = cur.unpack(_U64)
    try:
        qtype = GGMLQuantizationType(raw_type)
        block, type_size = GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError):
        raise GGUFHeaderError(f"tensor {name!r} has an unknown type {raw_type}") from None
    if shape and shape[0] % block:
        raise GGUFHeaderError(
            f"tensor {name!r} of type {qtype.name} has a first dimension of {shape[0]}, "
            f"not a multiple of its block size {block}")
    return TensorInfo(name, shape, qtype.name, offset, math.prod(shape) // block * type_size)


def read_gguf_header(f: BinaryIO, file_size: int) -> GGUFHeader:
    """Parse the GGUF header of ``f`` (positioned at byte 0; ``file_size`` bytes long).

    Reads only the header, sequentially, with ``f.read``. Raises GGUFHeaderError for
    anything that is not a well-formed GGUF v2/v3 little-endian file of that size,
    including tensors that overlap, are misaligned or extend past the end of the file.
    """
    cur = _Cursor(f, file_size)
    if file_size < 4:
        raise GGUFHeaderError(f"not a GGUF file: only {file_size} bytes")
    cur.need(4)
    magic = cur.buf[:4]
    if magic != MAGIC:
        raise GGUFHeaderError(f"not a GGUF file (starts with {magic!r}, not b'GGUF')")
    cur.i = 4
    version = cur.unpack(_U32)
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and struct.unpack(">I", struct.pack("<I", version))[0] in (
                2, 3):
            raise GGUFHeaderError("big-endian GGUF files are not supported")
        raise GGUFHeaderError(f"unsupported GGUF version {version} (supported: 2, 3)")
    tensor_count = cur.unpack(_U64)
    kv_count = cur.unpack(_U64)
    if tensor_count > MAX_TENSORS:
        raise GGUFHeaderError(f"header claims {tensor_count} tensors (limit {MAX_TENSORS})")
    if kv_count > MAX_KV:
        raise GGUFHeaderError(f"header claims {kv_count} metadata keys (limit {MAX_KV})")

    metadata: dict[str, Any] = {}
    for i in range(kv_count):
        key = cur.string(f"metadata key #{i}")
        vtype = _value_type(cur.unpack(_U32), f"key {key!r}")
        if key in metadata:
            raise GGUFHeaderError(f"duplicate metadata key {key!r}")
        metadata[key] = _value(cur, vtype, key)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0
            or alignment & (alignment - 1)):
        raise GGUFHeaderError(f"general.alignment {alignment!r} is not a power of two")

    tensors = [_tensor(cur, i) for i in range(tensor_count)]
    header_size = cur.pos
    data_offset = -(-header_size // alignment) * alignment
    _check_layout(tensors, alignment, data_offset, file_size)
    return GGUFHeader(version, metadata, tensors, header_size, data_offset, alignment)


def _check_layout(tensors: list[TensorInfo], alignment: int, data_offset: int,
                  file_size: int) -> None:
    names: set[str] = set()
    for t in tensors:
        if t.name in names:
            raise GGUFHeaderError(f"duplicate tensor name {t.name!r}")
        names.add(t.name)
        if t.offset % alignment:
            raise GGUFHeaderError(
                f"tensor {t.name!r} has offset {t.offset}, not a multiple of the "
                f"alignment {alignment}; the tensor table is corrupt")
        end = data_offset + t.offset + t.nbytes
        if end > file_size:
            raise GGUFHeaderError(
                f"truncated: tensor {t.name!r} ends at byte {end} but the file has "
                f"{file_size}")
    previous = None
    for t in sorted(tensors, key=lambda t: (t.offset, t.nbytes)):
        if previous is not None and t.offset < previous.offset + previous.nbytes:
            raise GGUFHeaderError(
                f"tensor {t.name!r} overlaps tensor {previous.name!r}; "
                "the tensor table is corrupt")
        previous = t
