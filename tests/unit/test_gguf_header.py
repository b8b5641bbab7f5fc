"""registry.formats.gguf_header: a streaming, bounded reader of GGUF headers."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import time
import tracemalloc

import gguf
import numpy as np
import pytest

from registry.formats.cards import read_gguf_card
from registry.formats.gguf_header import (
    MAX_ARRAY,
    MAX_KEPT,
    MAX_KV,
    MAX_NESTED,
    MAX_STRING,
    MAX_TENSORS,
    GGUFArray,
    GGUFHeaderError,
    read_gguf_header,
)
from tests.support.gguf_files import (
    HOSTILE_HEADERS,
    TINY_PARAMETERS,
    TINY_VOCAB,
    gguf_array,
    gguf_bytes,
    hostile_file,
    write_gguf,
)

try:  # the property test needs hypothesis (installed in the dev venv)
    import hypothesis
except ImportError:  # pragma: no cover
    hypothesis = None
from tests.support.models import GEMMA_SIZE

T = gguf.GGUFValueType


def parse(data: bytes, size: int | None = None):
    return read_gguf_header(io.BytesIO(data), len(data) if size is None else size)


# ---- hand-built headers, for what no writer would produce ---------------------------

def s(text: str | bytes, length: int | None = None) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw) if length is None else length) + raw


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", vtype) + payload


def tensor(name: str, dims: list[int], ggml_type: int = 0, offset: int = 0) -> bytes:
    return (s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
            + struct.pack("<IQ", ggml_type, offset))


def header(kvs: list[bytes] = (), tensors: list[bytes] = (), version: int = 3,
           n_tensors: int | None = None, n_kv: int | None = None) -> bytes:
    return (b"GGUF" + struct.pack("<IQQ", version,
                                  len(tensors) if n_tensors is None else n_tensors,
                                  len(kvs) if n_kv is None else n_kv)
            + b"".join(kvs) + b"".join(tensors))


def with_data(head: bytes, data_bytes: int, alignment: int = 32) -> bytes:
    pad = -len(head) % alignment
    return head + b"\0" * (pad + data_bytes)


# ---- well-formed files -------------------------------------------------------------------

def test_small_file_written_by_gguf_writer(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", file_type=gguf.LlamaFileType.MOSTLY_F16,
                      tensors={"blk.0.ffn.weight": np.zeros((8, 32), dtype=np.float16)})
    with open(path, "rb") as f:
        h = read_gguf_header(f, path.stat().st_size)
    assert h.version == 3
    assert h.architecture == "llama"
    assert h.metadata["llama.context_length"] == 2048
    assert h.metadata["tokenizer.chat_template"] == "{{ x }}"
    assert h.metadata["tokenizer.ggml.tokens"] == GGUFArray("STRING", len(TINY_VOCAB))
    assert h.metadata["tokenizer.ggml.scores"] == GGUFArray("FLOAT32", len(TINY_VOCAB))
    assert h.file_type == "F16"
    assert h.parameter_count == TINY_PARAMETERS + 8 * 32
    # Cross-check every tensor against the gguf package's own reader.
    reader = gguf.GGUFReader(path)
    assert reader.data_offset == h.data_offset
    assert [(t.name, tuple(int(d) for d in t.shape), t.tensor_type.name,
             int(t.data_offset), int(t.n_bytes)) for t in reader.tensors] == \
        [(t.name, t.shape, t.type, h.data_offset + t.offset, t.nbytes) for t in h.tensors]


def test_version_2_and_custom_alignment():
    data = bytearray(gguf_bytes(alignment=64))
    data[4:8] = struct.pack("<I", 2)
    h = parse(bytes(data))
    assert (h.version, h.alignment, h.data_offset % 64) == (2, 64, 0)


def test_file_type_falls_back_to_the_dominant_tensor_type():
    assert parse(gguf_bytes(file_type=None)).file_type == "F32"


def test_gemma_header_is_exact_and_fast(gemma_gguf):
    size = gemma_gguf.stat().st_size
    assert size == GEMMA_SIZE
    start = time.perf_counter()
    with open(gemma_gguf, "rb") as f:
        h = read_gguf_header(f, size)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"parsing the Gemma header took {elapsed:.2f} s"
    assert h.architecture == "gemma3"
    assert h.parameter_count == 268_098_176
    assert h.file_type == "Q4_K_M"
    assert h.metadata["gemma3.context_length"] == 32768
    assert h.metadata["tokenizer.ggml.tokens"] == GGUFArray("STRING", 262_144)
    assert len(h.tensors) == 236
    assert h.data_offset == 6_525_120
    last = max(h.tensors, key=lambda t: t.offset)
    assert h.data_offset + last.offset + last.nbytes == size


class CountingReader(io.RawIOBase):
    def __init__(self, f):
        self.f, self.bytes, self.calls = f, 0, 0

    def readable(self):
        return True

    def read(self, n=-1):
        data = self.f.read(n)
        self.bytes += len(data)
        self.calls += 1
        return data


def test_reads_only_the_header_in_a_few_growing_chunks(gemma_gguf):
    with open(gemma_gguf, "rb") as f:
        counting = CountingReader(f)
        h = read_gguf_header(counting, GEMMA_SIZE)
    assert counting.bytes < h.data_offset + 8 * 1024 * 1024 < GEMMA_SIZE // 10
    assert counting.calls <= 8


# ---- corrupt and hostile input ---------------------------------------------------------

def test_random_bytes_are_not_a_gguf_file():
    data = np.random.default_rng(1).bytes(4096)
    with pytest.raises(GGUFHeaderError, match="not a GGUF file"):
        parse(data)
    with pytest.raises(GGUFHeaderError, match="not a GGUF file"):
        parse(b"GG")


@pytest.mark.parametrize("version, message", [
    (1, "unsupported GGUF version 1"),
    (4, "unsupported GGUF version 4"),
    (0x03000000, "big-endian"),
])
def test_unsupported_versions(version, message):
    with pytest.raises(GGUFHeaderError, match=message):
        parse(with_data(header(version=version), 0))


def test_absurd_string_length():
    data = with_data(header([s("general.architecture", length=1 << 40)]), 0)
    with pytest.raises(GGUFHeaderError, match="string length of 1099511627776 bytes"):
        parse(data)
    value = kv("general.name", T.STRING, s("x", length=MAX_STRING + 1))
    with pytest.raises(GGUFHeaderError, match="'general.name'"):
        parse(with_data(header([value]), 0))


def test_long_strings_within_the_limit_are_kept():
    template = "{% x %}" * 7000  # ~49 KB, like a large chat template
    h = parse(with_data(header([kv("tokenizer.chat_template", T.STRING, s(template))]), 0))
    assert h.metadata["tokenizer.chat_template"] == template


def test_absurd_counts():
    with pytest.raises(GGUFHeaderError, match="metadata keys"):
        parse(with_data(header(n_kv=MAX_KV + 1), 0))
    with pytest.raises(GGUFHeaderError, match="tensors"):
        parse(with_data(header(n_tensors=MAX_TENSORS + 1), 0))
    array = kv("tokenizer.ggml.tokens", T.ARRAY, struct.pack("<IQ", T.STRING, MAX_ARRAY + 1))
    with pytest.raises(GGUFHeaderError, match="claims 16777217 elements"):
        parse(with_data(header([array]), 0))
    vocab = kv("tokenizer.ggml.tokens", T.ARRAY,
               struct.pack("<IQ", T.STRING, 2) + s("a") + s("b", length=1 << 50))
    with pytest.raises(GGUFHeaderError, match="holds a string of"):
        parse(with_data(header([vocab]), 0))


def test_unknown_types_and_bad_tensors():
    with pytest.raises(GGUFHeaderError, match="unknown value type 99"):
        parse(with_data(header([kv("a", 99, b"")]), 0))
    with pytest.raises(GGUFHeaderError, match="9 dimensions"):
        parse(with_data(header(tensors=[tensor("t", [1] * 9)]), 4))
    with pytest.raises(GGUFHeaderError, match="unknown type 77"):
        parse(with_data(header(tensors=[tensor("t", [4], 77)]), 16))
    q4k = gguf.GGMLQuantizationType.Q4_K
    with pytest.raises(GGUFHeaderError, match="not a multiple of its block size 256"):
        parse(with_data(header(tensors=[tensor("t", [100], q4k)]), 1000))
    with pytest.raises(GGUFHeaderError, match="duplicate tensor name 't'"):
        parse(with_data(header(tensors=[tensor("t", [8]), tensor("t", [8], 0, 32)]), 64))
    with pytest.raises(GGUFHeaderError, match="duplicate metadata key"):
        parse(with_data(header([kv("a", T.UINT8, b"\1"), kv("a", T.UINT8, b"\2")]), 0))
    bad_alignment = kv("general.alignment", T.UINT32, struct.pack("<I", 48))
    with pytest.raises(GGUFHeaderError, match="not a power of two"):
        parse(with_data(header([bad_alignment]), 0))


def test_header_cut_short():
    data = gguf_bytes()
    with pytest.raises(GGUFHeaderError, match="truncated"):
        parse(data[:200])
    # The stream ends before the size it was announced with.
    with pytest.raises(GGUFHeaderError, match="truncated: the file ends at byte 200"):
        read_gguf_header(io.BytesIO(data[:200]), len(data))


def test_truncated_copy_of_gemma(gemma_gguf, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(gemma_gguf, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(10 << 20))
    with open(cut, "rb") as f, pytest.raises(GGUFHeaderError) as err:
        read_gguf_header(f, 10 << 20)
    message = str(err.value)
    assert message.startswith("truncated: tensor 'token_embd.weight' ends at byte ")
    assert message.endswith(f"but the file has {10 << 20}")


@pytest.fixture(scope="module")
def gemma_head(gemma_gguf) -> tuple[bytes, int]:
    """The Gemma header (up to the data section) and its data offset."""
    with open(gemma_gguf, "rb") as f:
        data_offset = read_gguf_header(f, GEMMA_SIZE).data_offset
        f.seek(0)
        return f.read(data_offset), data_offset


def patched_gemma(tmp_path, head: bytes, name: str, patch) -> str:
    """A full-size (sparse) copy of Gemma whose tensor ``name`` entry is patched."""
    raw = name.encode()
    at = head.index(struct.pack("<Q", len(raw)) + raw) + 8 + len(raw)
    buf = bytearray(head)
    patch(buf, at)  # ``at`` is the entry's n_dims field
    path = tmp_path / "patched.gguf"
    with open(path, "wb") as f:
        f.write(buf)
        f.truncate(GEMMA_SIZE)
    return str(path)


def _set(fmt: str, rel: int | None, value: int | None):
    def patch(buf: bytearray, at: int) -> None:
        n_dims = struct.unpack_from("<I", buf, at)[0]
        fields = {"n_dims": at, "dim0": at + 4, "dim1": at + 12,
                  "type": at + 4 + 8 * n_dims, "offset": at + 8 + 8 * n_dims}
        pos = fields[fmt]
        old = struct.unpack_from("<I" if fmt in ("n_dims", "type") else "<Q", buf, pos)[0]
        new = value if rel is None else old + rel
        struct.pack_into("<I" if fmt in ("n_dims", "type") else "<Q", buf, pos, new)
    return patch


@pytest.mark.parametrize("field, rel, value, message", [
    ("offset", 1, None, "tensor 'blk.0.attn_k.weight' has offset 178260481, not a multiple "
                        "of the alignment 32"),
    ("offset", None, 1 << 40, "truncated: tensor 'blk.0.attn_k.weight' ends at byte "),
    ("dim1", None, 1 << 40, "truncated: tensor 'blk.0.attn_k.weight' ends at byte "),
    ("offset", None, 0, "overlaps tensor 'output_norm.weight'"),
    ("type", None, 999, "tensor 'blk.0.attn_k.weight' has an unknown type 999"),
    ("n_dims", None, 100, "tensor 'blk.0.attn_k.weight' has 100 dimensions"),
])
def test_bogus_tensor_table_in_gemma(gemma_head, tmp_path, field, rel, value, message):
    head, _ = gemma_head
    path = patched_gemma(tmp_path, head, "blk.0.attn_k.weight", _set(field, rel, value))
    with open(path, "rb") as f, pytest.raises(GGUFHeaderError) as err:
        read_gguf_header(f, os.path.getsize(path))
    assert message in str(err.value)


def test_unpatched_sparse_copy_parses(gemma_head, tmp_path):
    head, data_offset = gemma_head
    path = patched_gemma(tmp_path, head, "blk.0.attn_k.weight", lambda buf, at: None)
    with open(path, "rb") as f:
        assert read_gguf_header(f, GEMMA_SIZE).data_offset == data_offset


# ---- hostile headers: absurd sizes fail fast, with bounded work ---------------

@pytest.mark.parametrize("name", sorted(HOSTILE_HEADERS))
def test_hostile_headers_fail_fast_with_a_clean_error(name):
    data = hostile_file(name)
    start = time.perf_counter()
    with pytest.raises(GGUFHeaderError) as err:
        parse(data)
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert "\n" not in message and len(message) < 300, message
    # The card reader turns it into the card's error, never an exception.
    card = read_gguf_card(io.BytesIO(data), len(data))
    assert card.format == "gguf" and card.error == message


def test_a_huge_claimed_string_is_never_allocated():
    # The claimed length is checked before anything is read: no 2**60-byte buffer.
    tracemalloc.start()
    try:
        with pytest.raises(GGUFHeaderError, match="string length of 1152921504606846976"):
            parse(hostile_file("huge string value", 1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_nested_arrays_are_bounded_over_the_whole_header():
    def nested(count: int) -> bytes:  # ``count`` arrays, each of ``count`` empty arrays
        inner = gguf_array(T.UINT8, 0)
        return gguf_array(T.ARRAY, count, gguf_array(T.ARRAY, count, inner * count) * count)

    ok = int(MAX_NESTED ** 0.5) - 1  # count + count**2 arrays nested: just under the limit
    h = parse(with_data(header([kv("x", T.ARRAY, nested(ok))]), 0))
    assert h.metadata["x"] == GGUFArray("ARRAY", ok)
    start = time.perf_counter()
    with pytest.raises(GGUFHeaderError, match=f"nests more than {MAX_NESTED} arrays"):
        parse(with_data(header([kv("x", T.ARRAY, nested(ok + 2))]), 0))
    assert time.perf_counter() - start < 1.0


def test_kept_strings_are_bounded():
    big = "x" * MAX_STRING
    n = MAX_KEPT // MAX_STRING + 1
    kvs = [kv(f"k{i}", T.STRING, s(big)) for i in range(n)]
    with pytest.raises(GGUFHeaderError, match="keys and strings exceed 16 MiB"):
        parse(with_data(header(kvs), 0))


@pytest.mark.slow  # builds and parses the largest tensor table allowed
def test_the_largest_tensor_table_allowed_parses_quickly():
    tensors = [tensor(f"t{i}", [8], 0, 32 * i) for i in range(MAX_TENSORS)]
    data = with_data(header(tensors=tensors), 32 * MAX_TENSORS)
    start = time.perf_counter()
    assert len(parse(data).tensors) == MAX_TENSORS
    assert time.perf_counter() - start < 3.0


def test_impossible_shape_product():
    with pytest.raises(GGUFHeaderError, match="impossible shape"):
        parse(with_data(header(tensors=[tensor("t", [1 << 32, 1 << 32])]), 0))


# ---- property: any mutation or truncation of a valid header fails cleanly and fast ----

SMALL = gguf_bytes(vocab=TINY_VOCAB[:8], tensors={"t": np.ones(32, dtype=np.float32)})
SMALL_HEADER = parse(SMALL).header_size


def _mutate(data: bytes, cut: int | None, edits: list[tuple[int, int, int]]) -> bytes:
    """Overwrite 1, 4 or 8 bytes at each position (in the header), then maybe truncate."""
    buf = bytearray(data)
    for pos, width, value in edits:
        pos %= SMALL_HEADER
        chunk = (value % (1 << (8 * width))).to_bytes(width, "little")
        buf[pos:pos + width] = chunk
    return bytes(buf[:cut] if cut is not None else buf)


def _check_clean(data: bytes, size: int) -> None:
    start = time.perf_counter()
    with contextlib.suppress(GGUFHeaderError):  # anything else fails the test
        read_gguf_header(io.BytesIO(data), size)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"took {elapsed:.2f} s"


if hypothesis is not None:
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    _EDIT = st.tuples(st.integers(0, SMALL_HEADER - 1), st.sampled_from([1, 4, 8]),
                      st.one_of(st.integers(0, 255), st.integers(0, 1 << 64),
                                st.sampled_from([0, 1, 1 << 31, 1 << 60, (1 << 64) - 1])))

    @pytest.mark.slow  # hypothesis: hundreds of mutated headers
    @hsettings(max_examples=400, deadline=None,
               suppress_health_check=[HealthCheck.too_slow])
    @given(cut=st.one_of(st.none(), st.integers(0, len(SMALL))),
           edits=st.lists(_EDIT, max_size=4),
           lie_about_size=st.booleans())
    def test_mutated_or_truncated_headers_fail_cleanly_and_fast(cut, edits, lie_about_size):
        data = _mutate(SMALL, cut, edits)
        # Either the size is the real one, or the stream ends before the size it claims.
        _check_clean(data, len(SMALL) if lie_about_size else len(data))
else:  # pragma: no cover
    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_mutated_or_truncated_headers_fail_cleanly_and_fast():
        pass


def test_every_truncation_of_a_small_file_fails_cleanly():
    for cut in range(len(SMALL)):
        if cut >= SMALL_HEADER + 1:
            break
        with pytest.raises(GGUFHeaderError):
            parse(SMALL[:cut])
