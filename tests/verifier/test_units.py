"""Spec, Report and log handling, without running a backend."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from verifier import FAILURES, Report, Spec, verify
from verifier.backends import llama_cpp
from verifier.run import LOG_TAIL_BYTES, log_tail
from verifier.spec import resolve_backend


def test_spec_defaults(tmp_path):
    spec = Spec(model_path=str(tmp_path / "m.gguf"))
    assert spec.model_path == tmp_path / "m.gguf"
    assert spec.backend == "auto" and spec.prompt == "The capital of France is"
    assert spec.max_tokens == 32 and spec.timeout_s == 300 and spec.seed == 0
    assert spec.threads >= 1 and spec.memory_limit_bytes == 8 * 2**30
    assert spec.min_generation_tps is None
    assert Spec.from_dict(spec.to_dict()) == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.max_tokens = 3


@pytest.mark.parametrize("bad", [
    {"backend": "onnx"}, {"max_tokens": 0}, {"threads": 0}, {"timeout_s": 0},
    {"memory_limit_bytes": 0}, {"min_generation_tps": -1}, {"prompt": ""}, {"n_ctx": 0},
])
def test_spec_rejects_bad_values(tmp_path, bad):
    with pytest.raises(ValueError):
        Spec(model_path=tmp_path, **bad)


def test_resolve_backend(tmp_path):
    gguf_blob = tmp_path / "sha256-abc"  # blobs have no .gguf suffix
    gguf_blob.write_bytes(b"GGUF\x03\x00\x00\x00")
    text = tmp_path / "model.gguf"
    text.write_text("not really")
    assert resolve_backend(Spec(model_path=gguf_blob)) == "llama.cpp"
    assert resolve_backend(Spec(model_path=tmp_path)) == "mlx"
    assert resolve_backend(Spec(model_path=text)) is None
    assert resolve_backend(Spec(model_path=text, backend="llama.cpp")) == "llama.cpp"


def test_missing_path_is_a_caller_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        verify(Spec(model_path=tmp_path / "nope.gguf"))


def test_report_verdict_is_consistent():
    assert "timeout" in FAILURES
    with pytest.raises(ValueError):
        Report(passed=True, failure="crash")
    with pytest.raises(ValueError):
        Report(passed=False)
    with pytest.raises(ValueError):
        Report(passed=False, failure="bored")
    failed = Report(passed=False, failure="timeout", reason="timed out after 1 s while loading")
    assert failed.summary() == "failed (timeout): timed out after 1 s while loading"


def test_log_tail_is_bounded_and_starts_on_a_line():
    log = "".join(f"line {i}\n" for i in range(5000)) + "x" * 10_000 + "\nlast line\n"
    tail = log_tail(log, 1024)
    assert len(tail) <= 1024
    assert tail.endswith("last line")
    assert "[... 9600 more characters]" in tail
    assert tail.startswith("line ")


# A real llama.cpp log (Gemma 3 270M loaded verbosely, then the child killed by SIGSEGV while
# generating), its per-tensor runs shortened to 40 and 60 lines and its paths shortened.
CRASH_LOG = Path(__file__).with_name("llama_cpp_crash.log")


def test_log_tail_leaves_out_llama_cpp_detail_and_keeps_what_explains_a_failure():
    log = CRASH_LOG.read_text()
    tail = log_tail(log, detail=llama_cpp.is_detail)
    assert len(tail) <= LOG_TAIL_BYTES
    lines = tail.splitlines()
    assert re.fullmatch(r"\[\d+ lines of backend detail left out\]", lines[0])
    for wanted in ("print_info: file size   = 235.16 MiB", "print_info: arch ",
                   "print_info: model type            = 270M",
                   "print_info: model params          = 268.10 M",
                   "print_info: n_ctx_train           = 32768",
                   "llama_context: n_ctx                 = 1280",
                   "n_ctx_seq (1280) < n_ctx_train (32768)",  # a warning
                   "sched_reserve:        CPU compute buffer size =   514.50 MiB",
                   "Fatal Python error: Segmentation fault",
                   'llama_cpp.py", line 98 in generate'):
        assert any(wanted in line for line in lines), wanted
    for noise in ("create_tensor: loading tensor", "llama_graph_n_input_tensors:",
                  "llama_model_loader: - kv", "load_tensors: layer", "llama_kv_cache: layer",
                  "repack: repack tensor", "graph_reserve:", "print_info: n_embd ",
                  "Model metadata: {"):
        assert not any(noise in line for line in lines), noise
    # Without the filter the same budget holds little but graph debug lines.
    assert "model params" not in log_tail(log)


def test_llama_cpp_detail_never_swallows_an_error_line():
    for line in ("gguf_init_from_reader: tensor 'blk.0.attn_q.weight' has invalid ggml type "
                 "99. should be in [0, 43)",
                 "llama_model_load: error loading model: tensor 'token_embd.weight' data is "
                 "not within the file bounds, model is corrupted or incomplete",
                 "llama_model_load_from_file_impl: failed to load model",
                 "/src/ggml.c:1234: GGML_ASSERT(ne % 2 == 0) failed",
                 "llama_context: n_ctx_seq (1024) < n_ctx_train (32768) -- the full capacity "
                 "of the model will not be utilized"):
        assert not llama_cpp.is_detail(line), line
    # A metadata key that reads like an error is still metadata.
    assert llama_cpp.is_detail("llama_model_loader: - kv  40: tokenizer.ggml.unknown_token_id "
                               "u32 = 3")


def test_log_tail_counts_what_it_left_out_within_its_budget():
    log = "\n".join(f"keep {i}\nnoise\nnoise" for i in range(300))
    tail = log_tail(log, 256, detail=lambda line: line == "noise")
    lines = tail.splitlines()
    assert len(tail) <= 256 and lines[-1] == "keep 299" and "noise" not in lines
    # The note counts the lines left out between the first line shown and the end.
    first = int(lines[1].split()[1])
    assert lines[0] == f"[{2 * (300 - first)} lines of backend detail left out]"


def test_load_failure_reason_skips_metadata_that_looks_like_errors():
    log = "\n".join([
        "llama_model_loader: - kv  40: tokenizer.ggml.unknown_token_id u32 = 3",
        "llama_model_loader: - kv  41: general.missing_bits str = none",
        "llama_model_load: error loading model: tensor 'x' data is not within the file bounds",
        "llama_model_load_from_file_impl: failed to load model",
    ])
    assert llama_cpp.load_failure_reason("ValueError: Failed", log) == (
        "tensor 'x' data is not within the file bounds")


def test_load_failure_reason_prefers_the_parser_line():
    log = "\n".join([
        "gguf_init_from_reader: tensor 'w' has invalid ggml type 99. should be in [0, 43)",
        "gguf_init_from_reader: failed to read tensor info",
        "llama_model_load: error loading model: llama_model_loader: failed to load model from m",
        "llama_model_load_from_file_impl: failed to load model",
    ])
    assert llama_cpp.load_failure_reason("ValueError: Failed", log) == (
        "tensor 'w' has invalid ggml type 99. should be in [0, 43)")


def test_load_failure_reason_falls_back_to_the_exception():
    assert llama_cpp.load_failure_reason("ValueError: Failed", "nothing useful\n") == (
        "ValueError: Failed")


def test_max_perplexity_needs_perplexity_and_a_positive_limit():
    with pytest.raises(ValueError, match="max_perplexity needs perplexity=True"):
        Spec(model_path="m.gguf", max_perplexity=100)
    with pytest.raises(ValueError, match="max_perplexity must be > 0"):
        Spec(model_path="m.gguf", perplexity=True, max_perplexity=0)


def test_perplexity_chunks_start_with_bos_and_score_their_second_half():
    from verifier import quality

    tokens = list(range(10, 10 + 2 * quality.CHUNK + 7))
    chunks = quality.chunks(tokens, bos=1)
    assert len(chunks) == 2 and all(len(c) == quality.CHUNK and c[0] == 1 for c in chunks)
    assert chunks[1][1:] == tokens[quality.CHUNK + 1:2 * quality.CHUNK]
    assert quality.first_scored(chunks[0]) == quality.CHUNK // 2
    assert quality.chunks([5, 6, 7], bos=1) == [[1, 6, 7]]  # shorter than a chunk: one


def test_perplexity_of_a_uniform_guess_is_the_vocabulary_size_and_nan_is_infinite():
    from verifier import quality

    scores = quality.Accumulator()
    for token in range(4):
        scores.add([0.0] * 8, token)
    assert scores.result(1, 0.0).value == pytest.approx(8.0)
    scores.add([float("nan")] * 8, 0)
    assert scores.result(1, 0.0).value == float("inf")
