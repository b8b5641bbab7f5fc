"""MLX backend (mlx-lm on the CPU) on the generated tiny Llama model directories."""

from __future__ import annotations

import shutil

import mlx.core as mx
import pytest

from verifier import Spec, verify

# Slow: runs the verifier child, which loads a model (real or generated) for real.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("variant", ["mlx_model_dir", "mlx_model_dir_quantized",
                                     "mlx_model_dir_sharded"])
def test_generated_model_passes(request, variant):
    model_dir = request.getfixturevalue(variant)
    r = verify(Spec(model_path=model_dir, max_tokens=8))
    assert r.passed, f"{r.reason}\n{r.log_tail}"
    assert r.backend == "mlx"
    assert r.backend_version.startswith("mlx-lm ")
    # The fixture zeroes the special tokens' output rows: always max_tokens ordinary tokens.
    assert r.tokens_generated == 8
    assert r.prompt_tokens > 1 and r.prompt_tps > 0
    assert r.generation_tps > 0 and r.ttft_s > 0 and r.load_s > 0
    assert r.output and len(r.output_sha256) == 64
    assert r.peak_rss_bytes > 0


def test_output_is_deterministic(mlx_model_dir):
    first = verify(Spec(model_path=mlx_model_dir, max_tokens=8, backend="mlx"))
    second = verify(Spec(model_path=mlx_model_dir, max_tokens=8, threads=1))
    assert first.passed and second.passed
    assert first.output_sha256 == second.output_sha256


def test_nan_weights_fail_as_non_finite(mlx_model_dir, tmp_path):
    broken = shutil.copytree(mlx_model_dir, tmp_path / "nan-model")
    weights = mx.load(str(broken / "model.safetensors"))
    norm = weights["model.norm.weight"]
    weights["model.norm.weight"] = mx.full(norm.shape, float("nan"), dtype=norm.dtype)
    mx.save_safetensors(str(broken / "model.safetensors"), weights, metadata={"format": "mlx"})

    r = verify(Spec(model_path=broken, max_tokens=4))
    assert (r.passed, r.failure) == (False, "non_finite")
    assert r.reason == "non-finite logits (NaN or infinity) for the prompt"
    assert r.tokens_generated == 0


def test_directory_without_weights_fails_to_load(mlx_model_dir, tmp_path):
    bare = tmp_path / "no-weights"
    bare.mkdir()
    shutil.copy(mlx_model_dir / "config.json", bare)
    r = verify(Spec(model_path=bare))
    assert (r.passed, r.failure, r.backend) == (False, "load", "mlx")
    assert r.reason.startswith("did not load: FileNotFoundError: No safetensors found")
