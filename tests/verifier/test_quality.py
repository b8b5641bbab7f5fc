"""Perplexity on the project's English text, measured in the sandboxed child: sane and
reproducible for Gemma 3 270M, a quality failure for a copy whose weights were damaged
after quantization although the smoke check passes that copy, and the same method on MLX."""

from __future__ import annotations

import pytest

from verifier import Spec, quality, verify
from verifier.spec import RunSpec

LIMIT = 1000.0  # garbage weights score in the thousands; Gemma 3 270M scores under 60


def test_gemma_perplexity_is_sane_and_the_same_twice(gemma_gguf):
    """Reproducible: the same model on the same machine gives the same greedy output (the
    smoke check's and a run's, with a quantized cache and two sequences batched) and the
    same perplexity, twice."""
    run = RunSpec(context=1024, kv_cache="q8_0", parallel=2, prompt_tokens=64, max_tokens=16)
    spec = Spec(model_path=gemma_gguf, max_tokens=16, n_ctx=256, perplexity=True,
                max_perplexity=LIMIT, runs=(run,))
    first, second = verify(spec), verify(spec)
    for report in (first, second):
        assert report.passed, report.reason
        assert 5 < report.perplexity < 60, report.perplexity
        assert report.perplexity_tokens == 1020  # 4 chunks of 512, the second halves
        assert report.perplexity_text_sha256 == quality.text_sha256()
    assert second.perplexity == pytest.approx(first.perplexity, abs=1e-3)
    assert second.output_sha256 == first.output_sha256
    assert second.runs[0]["output_sha256"] == first.runs[0]["output_sha256"] is not None


def test_damaged_weights_pass_the_smoke_check_and_fail_on_quality(damaged_gguf):
    smoke = verify(Spec(model_path=damaged_gguf, max_tokens=16, n_ctx=256))
    assert smoke.passed, smoke.reason
    assert smoke.tokens_generated == 16  # it loads, decodes and its logits are finite

    report = verify(Spec(model_path=damaged_gguf, max_tokens=16, n_ctx=256, perplexity=True,
                         max_perplexity=LIMIT))
    assert not report.passed
    assert report.failure == "quality"
    assert report.perplexity > LIMIT
    assert report.reason == (f"perplexity {report.perplexity:.1f} is above the limit "
                             "max_perplexity 1000 (over 1020 tokens of the project's English text)")
    assert report.output_sha256 == smoke.output_sha256  # the smoke figures are kept


def test_mlx_perplexity_is_finite_and_the_same_twice(mlx_model_dir):
    spec = Spec(model_path=mlx_model_dir, max_tokens=8, perplexity=True)
    first, second = verify(spec), verify(spec)
    assert first.passed and second.passed, (first.reason, second.reason)
    assert first.backend == "mlx"
    assert first.perplexity is not None and first.perplexity > 1
    assert second.perplexity == pytest.approx(first.perplexity, abs=1e-3)
    assert first.perplexity_tokens > 0
