"""llama.cpp backend, on the real Gemma 3 270M GGUF and on GGUFs broken in known ways."""

from __future__ import annotations

import hashlib
import json

import pytest

from verifier import Report, Spec, verify
from verifier.spec import DEFAULT_PROMPT

# Slow: runs the verifier child, which loads a model (real or generated) for real.
pytestmark = pytest.mark.slow


def test_gemma_passes_with_plausible_figures(gemma_report):
    r = gemma_report
    assert r.passed, r.reason
    assert (r.failure, r.reason) == (None, None)
    assert r.backend == "llama.cpp"
    assert r.backend_version.startswith("llama-cpp-python 0.3.")
    assert r.prompt == DEFAULT_PROMPT
    assert 0 < r.load_s < 120
    assert r.prompt_tokens == 6  # <bos> The capital of France is
    assert r.prompt_tps > 0
    assert r.generation_tps > 0
    assert 0 < r.ttft_s < 120
    assert r.tokens_generated == 16  # Gemma does not stop within 16 tokens on this prompt
    assert "France" in r.output or "Paris" in r.output
    assert r.output_sha256 == hashlib.sha256(r.output.encode()).hexdigest()
    # The model is mapped, so its pages count once touched: > 100 MiB, well under the limit.
    assert 100 * 2**20 < r.peak_rss_bytes < 4 * 2**30
    assert 0 < r.wall_s < 300 and r.wall_s > r.load_s
    assert "llama" in r.log_tail and len(r.log_tail.encode()) <= 4096 + 64


def test_log_tail_keeps_the_load_summary_not_per_tensor_lines(gemma_report):
    tail = gemma_report.log_tail
    for wanted in ("print_info: file size", "print_info: model type", "print_info: model params",
                   "print_info: n_ctx_train", "llama_context: n_ctx ", "compute buffer size"):
        assert wanted in tail, wanted
    for noise in ("create_tensor: loading tensor", "llama_graph_n_input_tensors",
                  "llama_model_loader: - kv", "load_tensors: layer "):
        assert noise not in tail, noise
    assert tail.startswith("[") and "lines of backend detail left out]" in tail.splitlines()[0]


def test_report_carries_the_hardware(gemma_report):
    hw = gemma_report.hardware
    assert hw["cpu_model"]
    assert hw["cores"] >= 1 and 1 <= hw["cores_available"] <= hw["cores"]
    assert hw["threads"] >= 1
    assert hw["memory_bytes"] > 0


def test_report_round_trips_through_json(gemma_report):
    data = json.loads(json.dumps(gemma_report.to_dict()))
    assert Report.from_dict(data) == gemma_report
    assert Report.from_dict({**data, "added_later": 1}) == gemma_report


def test_greedy_output_is_deterministic(gemma_gguf, gemma_report):
    again = verify(Spec(model_path=gemma_gguf, max_tokens=16, n_ctx=256, threads=1))
    assert again.passed, again.reason
    assert again.hardware["threads"] == 1
    assert again.output_sha256 == gemma_report.output_sha256
    assert again.output == gemma_report.output


def test_truncated_gguf_fails_to_load(truncated_gguf):
    r = verify(Spec(model_path=truncated_gguf))
    assert not r.passed
    assert r.failure == "load"
    assert r.reason == ("did not load: tensor 'token_embd.weight' data is not within the file "
                        "bounds, model is corrupted or incomplete")
    assert r.backend == "llama.cpp" and r.backend_version
    assert r.tokens_generated is None and r.output is None
    assert "failed to load model" in r.log_tail
    assert ("llama_model_load: error loading model: tensor 'token_embd.weight' data is not "
            "within the file bounds") in r.log_tail


def test_tensor_of_unknown_type_fails_to_load(bogus_type_gguf):
    r = verify(Spec(model_path=bogus_type_gguf))
    assert (r.passed, r.failure) == (False, "load")
    assert r.reason.startswith(
        "did not load: tensor 'blk.0.attn_q.weight' has invalid ggml type 99")
    assert "gguf_init_from_reader: tensor 'blk.0.attn_q.weight' has invalid ggml type 99" \
        in r.log_tail


def test_tensor_with_wrong_shape_fails_to_load(bogus_shape_gguf):
    r = verify(Spec(model_path=bogus_shape_gguf))
    assert (r.passed, r.failure) == (False, "load")
    assert r.reason.startswith("did not load: tensor 'blk.0.attn_q.weight' has wrong shape")
    assert "has wrong shape" in r.log_tail


def test_a_file_that_is_not_a_model(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello, I am not a model\n")
    auto = verify(Spec(model_path=junk))
    assert (auto.passed, auto.failure, auto.backend) == (False, "load", None)
    assert auto.reason.startswith("not a model: notes.txt is neither a GGUF file")

    forced = verify(Spec(model_path=junk, backend="llama.cpp"))
    assert (forced.passed, forced.failure) == (False, "load")
    assert forced.reason == "did not load: invalid magic characters: 'hell', expected 'GGUF'"


def test_an_empty_gguf_named_file(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    r = verify(Spec(model_path=empty, backend="llama.cpp"))
    assert (r.passed, r.failure) == (False, "load")
    assert r.reason.startswith("did not load: ")
