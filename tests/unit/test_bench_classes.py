"""``assay bench`` with results per hardware class: a model whose profile names classes
gets a column per class (the same configurations as rows), a class without a result says
why under the table, ``--json`` names the columns; models without classes are unchanged
(``test_bench_table``)."""

from __future__ import annotations

import json

from client.bench import columns, render, rows
from tests.unit.test_bench_table import RUN, model

Q8 = {**RUN, "kv_cache": "q8_0", "generation_tps": 30.0, "aggregate_generation_tps": 30.0}
WAIT = "waiting for a worker of class cuda; none has been seen for 2h"


def classed(ref: str) -> dict:
    """A model as ``collect`` makes it from status JSON with ``verification.classes``."""
    entry = model(ref, "mlx", [RUN], 17.91)
    entry["classes"] = {
        "cpu": {"required": True, "status": "passed", "reason": None, "waiting": None,
                "job": None, "backend": "llama.cpp", "runs": [RUN, Q8],
                "quality": {"perplexity": 17.7079, "prompts": [{"matched": True}]}},
        "apple": {"required": True, "status": "passed", "reason": None, "waiting": None,
                  "job": None, "backend": "mlx",
                  "runs": [{**RUN, "generation_tps": 88.0, "peak_rss_bytes": 350 * 2**20}],
                  "quality": {"perplexity": 17.91, "prompts": []}},
        "cuda": {"required": False, "status": "queued", "reason": None, "waiting": WAIT,
                 "job": {"id": 3, "status": "queued"}, "backend": None, "runs": [],
                 "quality": None},
    }
    return entry


def test_a_column_per_class_beside_a_model_without_classes():
    models = [classed("r/gemma:v2"), model("r/gemma:v1", "llama.cpp", [RUN], 17.7)]
    assert [(c["reference"], c["class"]) for c in columns(models)] == [
        ("r/gemma:v2", "cpu"), ("r/gemma:v2", "apple"), ("r/gemma:v2", "cuda"),
        ("r/gemma:v1", None)]
    lines = render(models, as_json=False).splitlines()
    header = lines[0]
    for label in ("r/gemma:v2 on cpu (llama.cpp)", "r/gemma:v2 on apple (mlx)",
                  "r/gemma:v2 on cuda (queued)", "r/gemma:v1 (llama.cpp)"):
        assert label in header
    # Each cell sits under its column's header.
    assert lines[1][header.index("r/gemma:v2 on cpu"):].startswith("41.2 t/s")
    assert lines[1][header.index("r/gemma:v2 on apple"):].startswith("88.0 t/s, TTFT 200 ms,"
                                                                      " 350 MiB")
    assert lines[1][header.index("r/gemma:v2 on cuda"):].startswith("-")
    assert lines[1][header.index("r/gemma:v1 (llama.cpp)"):].startswith("41.2 t/s")
    assert lines[2].startswith("ctx 4096, q8_0 KV") and \
        lines[2][header.index("r/gemma:v2 on cpu"):].startswith("30.0 t/s")
    assert lines[3].split()[1:] == ["17.708", "17.910", "-", "17.700"]
    assert lines[-1] == f"r/gemma:v2 on cuda: queued, nothing measured ({WAIT})"


def test_a_failed_or_unsupported_class_says_why():
    m = classed("r/m:v1")
    m["classes"]["apple"].update(status="unsupported", runs=[], quality=None, backend=None,
                                 reason="no worker of class apple has mlx")
    m["classes"]["cpu"].update(status="failed", reason="generation 3.1 tokens/s is below 5")
    out = render([m], as_json=False).splitlines()
    assert "r/m:v1 on cpu: failed (generation 3.1 tokens/s is below 5)" in out
    assert "r/m:v1 on apple: unsupported, nothing measured (no worker of class apple has " \
           "mlx)" in out


def test_json_names_the_columns_the_rows_follow():
    models = [classed("r/gemma:v2")]
    data = json.loads(render(models, as_json=True))
    assert data["models"] == models
    assert data["columns"] == [{"reference": "r/gemma:v2", "class": c}
                               for c in ("cpu", "apple", "cuda")]
    assert [len(r["runs"]) for r in data["rows"]] == [3, 3]
    assert data["rows"][1]["runs"] == [Q8, None, None]
    assert rows(models)[0]["runs"][1]["generation_tps"] == 88.0
    # Without classes the output has no columns: as before.
    assert "columns" not in json.loads(render([model("r/a:1", "mlx", [RUN], None)], True))


def test_collect_reads_each_class_from_the_status_json(monkeypatch):
    from client import bench
    from tests.unit.test_status_classes import REF, STATE

    monkeypatch.setattr(bench, "fetch_state", lambda client, ref: STATE)
    entry = bench.collect(None, REF)
    assert list(entry["classes"]) == ["cpu", "apple", "cuda"]
    cpu, cuda = entry["classes"]["cpu"], entry["classes"]["cuda"]
    assert (cpu["backend"], [r["kv_cache"] for r in cpu["runs"]]) == ("llama.cpp",
                                                                      ["f16", "q8_0"])
    assert (cuda["status"], cuda["runs"], cuda["waiting"]) == ("queued", [], STATE[
        "verification"]["classes"]["cuda"]["waiting"])
    lines = bench.render([entry], as_json=False).splitlines()
    assert "127.0.0.1:5000/team/gemma3:270m on apple (mlx)" in lines[0]
    assert lines[2].startswith("ctx 8192, q8_0 KV, x4") and "unsupported" in lines[2]
