"""Verification under profiles, end to end on one ``assay serve`` with one worker, the gate
on and the built-in default profile (``ASSAY_DEFAULT_PROFILE=default``): the real Gemma 3
270M GGUF becomes ready under the default with a run matrix, perplexity, prompts and a fit
table held against every run's peak; the GGUF and its MLX copy (derived from the same GGUF)
side by side under one small profile, in REST and ``assay bench``; a copy with garbage
weights passes the smoke profile but fails the default on quality; a worse re-push of a tag
is flagged as a regression, and with ``action: fail`` the previous version stays served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from registry.profiles import DEFAULT_PROFILE, SMOKE_PROFILE
from tests.e2e.conftest import Harness
from tests.support.processes import ServerProcess
from tests.support.workers import digest_from_push, served_digest, tag_state

WAIT = "600"
# Fast enough for two verifications of Gemma in a test: one run, perplexity, no prompts.
# The side-by-side comparison, small: MLX's CPU backend on this machine is about 20 times
# slower than llama.cpp (its perplexity alone takes minutes).
SIDE_BY_SIDE_PROFILE = """
name: side-by-side
runs:
  - {context: 1024, kv_cache: f16, parallel: 1, prompt_tokens: 32, max_tokens: 8}
  - {context: 1024, kv_cache: q8_0, parallel: 1, prompt_tokens: 32, max_tokens: 8}
  - {context: 1024, kv_cache: f16, parallel: 2, prompt_tokens: 32, max_tokens: 8}
quality:
  prompts: [{prompt: "Q: What is the capital of France?\\nA:", expect: "(?i)paris",
             max_tokens: 8}]
"""
REGRESSION_PROFILE = """
name: regressions
runs: [{context: 2048, kv_cache: f16, parallel: 1, prompt_tokens: 64, max_tokens: 16}]
quality: {prompts: []}
regressions: {action: fail}
"""


@pytest.fixture(scope="module")
def profile_server(tmp_path_factory) -> Iterator[ServerProcess]:
    h = Harness(tmp_path_factory.mktemp("e2e-profiles"))
    try:
        yield h.server({"ASSAY_DEFAULT_PROFILE": "default"})
    finally:
        h.close()


def _ready(cli, ref: str) -> dict:
    status = cli("status", ref, "--wait", "--timeout", WAIT, "-q", ok=False)
    assert status.returncode == 0, status.stdout + status.stderr
    return json.loads(cli("status", ref, "--json").stdout)


def test_gemma_passes_the_default_profile(profile_server, cli, gemma_gguf):
    server = profile_server
    ref = f"{server.host_port}/team/gemma3:q4_k_m"
    cli("push", gemma_gguf, ref, "-q")
    v = _ready(cli, ref)["verification"]
    assert v["profile"] == {"name": "default", "sha256": DEFAULT_PROFILE.sha256}, v
    quality = v["quality"]
    assert 5 < quality["perplexity"] < 60, quality
    assert [p["matched"] for p in quality["prompts"]] == [True, True], quality["prompts"]
    assert len(v["runs"]) == len(DEFAULT_PROFILE.runs), v["runs"]
    for run in v["runs"]:
        assert run["unsupported"] is None, run
        assert run["generation_tps"] > 0 and run["ttft_s"] > 0, run
        assert run["peak_rss_bytes"] > 200 * 2**20, run
    parallel = v["runs"][2]
    assert parallel["parallel"] == 4
    assert parallel["aggregate_generation_tps"] == pytest.approx(
        4 * parallel["generation_tps"])
    fit = v["fit"]
    assert fit["fits"]["f16"]["8GiB"] == 32768, fit["fits"]  # the training context
    assert [c["run"] for c in fit["checks"]] == [0, 1, 2], fit["checks"]
    assert all(abs(c["error"]) < 0.10 for c in fit["checks"]), fit["checks"]
    shown = cli("status", ref).stdout
    assert "perplexity" in shown and "fits" in shown, shown


@pytest.mark.timeout(1200)  # MLX's CPU backend: a few minutes for this model's perplexity
def test_llama_cpp_and_mlx_side_by_side_on_the_same_weights(
        profile_server, cli, gemma_gguf, derived_mlx, tmp_path):
    """The GGUF and its MLX copy under one profile: the same configurations on both
    engines; the MLX copy's perplexity within 2% of the GGUF's (bfloat16 weights against
    llama.cpp's quantized matmuls: 17.56 against 17.71 measured)."""
    server = profile_server
    profile = tmp_path / "side.yaml"
    profile.write_text(SIDE_BY_SIDE_PROFILE)
    cli("profile", "set", "side", profile, server.host_port)
    gguf_ref = f"{server.host_port}/side/gemma3:q4_k_m"
    mlx_ref = f"{server.host_port}/side/gemma3:mlx"
    cli("push", gemma_gguf, gguf_ref, "-q")
    cli("push", derived_mlx, mlx_ref, "-q")
    gguf, mlx = (_ready(cli, ref)["verification"] for ref in (gguf_ref, mlx_ref))
    assert (gguf["backend"], mlx["backend"]) == ("llama.cpp", "mlx")
    assert mlx["quality"]["perplexity"] == pytest.approx(gguf["quality"]["perplexity"],
                                                         rel=0.02)
    f16, q8, batched = mlx["runs"]
    assert f16["generation_tps"] > 0 and batched["aggregate_generation_tps"] > 0, mlx["runs"]
    # Gemma 3's sliding-window layers keep a rotating cache, which mlx-lm cannot quantize
    assert "RotatingKVCache" in q8["unsupported"], q8
    assert gguf["runs"][1]["unsupported"] is None, gguf["runs"]

    table = cli("bench", gguf_ref, mlx_ref).stdout
    lines = table.splitlines()
    assert "(llama.cpp)" in lines[0] and "(mlx)" in lines[0], table
    assert lines[1].startswith("ctx 1024, f16 KV, x1"), table
    assert lines[1].count("t/s") == 2, table  # both engines measured the configuration
    assert lines[2].rstrip().endswith("unsupported"), table
    assert any(line.startswith("perplexity") for line in lines), table
    data = json.loads(cli("bench", "--json", gguf_ref, mlx_ref).stdout)
    assert [m["backend"] for m in data["models"]] == ["llama.cpp", "mlx"]


def test_garbage_weights_pass_the_smoke_profile_and_fail_the_default(
        profile_server, cli, damaged_gguf, tmp_path):
    server = profile_server
    smoke = tmp_path / "smoke.json"
    smoke.write_text(json.dumps(SMOKE_PROFILE.to_json()))
    cli("profile", "set", "smoke", smoke, server.host_port)
    smoke_ref = f"{server.host_port}/smoke/damaged:v1"
    cli("push", damaged_gguf, smoke_ref, "-q")
    state = _ready(cli, smoke_ref)
    assert state["verification"]["profile"]["name"] == "smoke"

    ref = f"{server.host_port}/team/damaged:v1"
    digest = digest_from_push(cli("push", damaged_gguf, ref, "-q").stdout)
    status = cli("status", ref, "--wait", "--timeout", WAIT, "-q", ok=False)
    assert status.returncode == 1, status.stdout + status.stderr
    state = tag_state(server, "team/damaged", "v1")
    assert (state["digest"], state["status"]) == (digest, "failed")
    assert state["reason"].startswith("perplexity "), state["reason"]
    assert "above the limit max_perplexity 1000" in state["reason"]
    assert state["verification"]["quality"]["perplexity"] > 1000


def test_a_worse_repush_is_a_regression_and_fail_keeps_the_previous_version(
        profile_server, cli, gemma_gguf, worse_gguf, tmp_path):
    server = profile_server
    profile = tmp_path / "regressions.yaml"
    profile.write_text(REGRESSION_PROFILE)
    cli("profile", "set", "reg", profile, server.host_port)
    ref = f"{server.host_port}/reg/gemma3:v1"
    good = digest_from_push(cli("push", gemma_gguf, ref, "-q").stdout)
    first = _ready(cli, ref)["verification"]
    assert first["regressions"] is None  # nothing before it

    worse = digest_from_push(cli("push", worse_gguf, ref, "-q").stdout)
    status = cli("status", ref, "--wait", "--timeout", WAIT, "-q", ok=False)
    assert status.returncode == 1, status.stdout + status.stderr
    state = tag_state(server, "reg/gemma3", "v1")
    assert (state["digest"], state["status"]) == (worse, "failed")
    regressions = state["verification"]["regressions"]
    assert regressions["previous"]["digest"] == good, regressions
    metrics = {item["metric"] for item in regressions["items"]}
    assert "perplexity" in metrics or "perplexity_ratio" in metrics, regressions
    assert state["reason"].startswith("regressed against"), state["reason"]
    assert served_digest(server, "reg/gemma3", "v1") == good  # the previous version
    shown = cli("status", ref, ok=False).stdout
    assert "regress" in shown, shown
