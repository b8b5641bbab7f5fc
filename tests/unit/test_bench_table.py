"""``assay bench``'s table from verification JSON as the REST API gives it: rows are the
union of the models' configurations, a configuration a model lacks is "-", one its backend
cannot run is "unsupported", parallel runs show the aggregate too."""

from __future__ import annotations

import json

from client.bench import render, rows

RUN = {"context": 4096, "kv_cache": "f16", "parallel": 1, "prompt_tokens": 128,
       "max_tokens": 32, "unsupported": None, "generation_tps": 41.25,
       "aggregate_generation_tps": 41.25, "ttft_s": 0.2, "peak_rss_bytes": 400 * 2**20}
PARALLEL = {**RUN, "parallel": 4, "generation_tps": 15.0, "aggregate_generation_tps": 60.0}
Q8 = {**RUN, "kv_cache": "q8_0", "unsupported": "head_dim 16 is not divisible by 64"}


def model(ref: str, backend: str, runs: list[dict], perplexity: float | None) -> dict:
    return {"reference": ref, "digest": "sha256:" + "0" * 64, "status": "ready",
            "backend": backend, "profile": {"name": "default"}, "runs": runs, "fit": None,
            "quality": {"perplexity": perplexity, "prompts": [{"matched": True},
                                                              {"matched": False}]}}


def test_configurations_as_rows_models_as_columns():
    models = [model("r/gemma:gguf", "llama.cpp", [RUN, PARALLEL], 17.7079),
              model("r/gemma:mlx", "mlx", [RUN, Q8], 17.91)]
    assert [(r["kv_cache"], r["parallel"]) for r in rows(models)] == [
        ("f16", 1), ("f16", 4), ("q8_0", 1)]
    lines = render(models, as_json=False).splitlines()
    assert lines[0].split() == ["configuration", "r/gemma:gguf", "(llama.cpp)", "r/gemma:mlx",
                                "(mlx)"]
    assert "41.2 t/s, TTFT 200 ms, 400 MiB" in lines[1]
    assert "15.0 t/s (60.0 total)" in lines[2] and lines[2].rstrip().endswith("-")
    assert lines[3].rstrip().endswith("unsupported")
    assert lines[4].split()[1:] == ["17.708", "17.910"]
    assert lines[5].split()[2:] == ["1/2", "1/2"]


def test_json_carries_the_models_and_the_rows():
    models = [model("r/a:1", "llama.cpp", [RUN], None)]
    data = json.loads(render(models, as_json=True))
    assert data["models"] == models
    assert data["rows"][0]["runs"] == [RUN]
