"""``assay status``'s results per hardware class, from status JSON shaped as the REST API
gives it (``verification.classes``): one row per class and run configuration with
generation tokens/s and peak memory, each class's status with its reason or what it waits
for, and per class who verified it; a model without classes prints as it always did, and
``--json`` prints the JSON as it came."""

from __future__ import annotations

import copy
import json

from client.class_matrix import HEADER, note, table_lines
from client.ref import parse_reference
from client.status import report, summary

MIB = 2**20
DIGEST = "sha256:" + "e7" * 32
REF = parse_reference("127.0.0.1:5000/team/gemma3:270m")
WAIT = "waiting for a worker of class cuda; none has been seen for 2h"


def run(context: int, kv: str, parallel: int, tps: float, rss: int, **extra) -> dict:
    return {"context": context, "kv_cache": kv, "parallel": parallel, "prompt_tokens": 128,
            "max_tokens": 32, "unsupported": None, "prompt_tps": 250.0,
            "generation_tps": tps,
            "aggregate_generation_tps": None if tps is None else tps * parallel,
            "ttft_s": 0.05, "peak_rss_bytes": rss, **extra}


def verification(hw_class: str | None, backend: str, runs: list[dict] | None,
                 verdict: str = "passed", reason: str | None = None, tps: float = 40.0,
                 perplexity: float | None = 17.71) -> dict:
    return {"id": 7, "verdict": verdict, "class": hw_class, "reason": reason,
            "backend": backend, "backend_version": "1.0",
            "hardware": {"cpu_model": "Test CPU", "threads": 4},
            "figures": {"generation_tps": tps, "peak_rss_bytes": 300 * MIB},
            "profile": {"name": "fleet", "sha256": "ab" * 32}, "runs": runs,
            "quality": None if perplexity is None else {"perplexity": perplexity,
                                                        "prompts": []},
            "fit": None, "regressions": None, "finished_at": "2026-12-04T20:00:00+00:00"}


CPU = verification("cpu", "llama.cpp", [run(2048, "f16", 1, 41.25, 400 * MIB),
                                         run(8192, "q8_0", 4, 12.0, 612 * MIB)])
APPLE = verification("apple", "mlx", [
    run(2048, "f16", 1, 88.0, 350 * MIB),
    run(8192, "q8_0", 4, None, None, unsupported="mlx has no q8_0 K/V cache")])
STATE = {
    "digest": DIGEST, "status": "ready", "reason": None, "override": None,
    "job": None, "served": DIGEST,
    "verification": {**APPLE, "classes": {
        "cpu": {"required": True, "status": "passed", "reason": None, "job": None,
                "verification": CPU},
        "apple": {"required": True, "status": "passed", "reason": None, "job": None,
                  "verification": APPLE},
        "cuda": {"required": False, "status": "queued", "reason": None, "waiting": WAIT,
                 "job": {"id": 9, "status": "queued", "class": "cuda"},
                 "verification": None},
    }},
}


def lines() -> list[str]:
    return summary(REF, STATE)


def test_one_row_per_class_and_configuration_with_speed_and_memory():
    out = lines()
    header = next(i for i, line in enumerate(out) if line.split() == HEADER)
    rows = [line.split() for line in out[header + 1:header + 6]]
    assert rows[0] == ["cpu", "required", "passed", "llama.cpp", "2048", "f16", "1", "41.2",
                       "400MiB"]
    assert rows[1] == ["cpu", "required", "passed", "llama.cpp", "8192", "q8_0", "4", "12.0",
                       "612MiB"]
    assert rows[2] == ["apple", "required", "passed", "mlx", "2048", "f16", "1", "88.0",
                       "350MiB"]
    assert " ".join(rows[3]) == ("apple required passed mlx 8192 q8_0 4 unsupported: mlx has "
                                 "no q8_0 K/V cache")
    assert " ".join(rows[4]) == f"cuda optional queued - {WAIT}"
    # The columns line up: every row's configuration starts under CONTEXT.
    at = out[header].index("CONTEXT")
    assert all(out[header + i][at:].startswith(c) for i, c in ((1, "2048"), (3, "2048")))
    assert "  hardware classes: required cpu, apple; optional cuda" in out


def test_each_measured_class_says_who_verified_it_and_its_quality():
    out = "\n".join(lines())
    assert out.count("  profile fleet (") == 1
    assert "  on cpu:\n    verified by llama.cpp 1.0 on Test CPU (4 threads)" in out
    assert "  on apple:\n    verified by mlx 1.0" in out
    assert "    quality: perplexity 17.71" in out
    assert "tokens/s, peak RSS" not in out  # the figures are the matrix's
    assert "on cuda:" not in out  # no result yet
    # The latest result of any class is not printed a second time above the matrix.
    assert out.count("verified by") == 2


def test_failed_unsupported_not_measured_and_running_classes_say_why():
    state = copy.deepcopy(STATE)
    classes = state["verification"]["classes"]
    classes["cpu"].update(status="failed", reason="generation 3.1 tokens/s is below 5",
                          verification=verification("cpu", "llama.cpp", [
                              run(2048, "f16", 1, 3.1, 400 * MIB)], verdict="failed"))
    classes["apple"].update(status="unsupported", reason="no worker of class apple has mlx",
                            verification=verification("apple", None, None,
                                                      verdict="unsupported", tps=None))
    classes["apple"]["verification"]["figures"] = {"generation_tps": None,
                                                   "peak_rss_bytes": None}
    classes["cuda"] = {"required": False, "status": "not_measured",
                       "reason": "no worker of class cuda took it within 24h", "job": None,
                       "verification": None}
    classes["rocm"] = {"required": False, "status": "running", "reason": None,
                       "job": {"id": 11, "status": "running", "worker": "w-rocm@box:1:0"},
                       "verification": None}
    rows = [" ".join(line.split()) for line in summary(REF, state)]
    assert "cpu required failed llama.cpp 2048 f16 1 3.1 400MiB" in rows
    assert "cpu required failed llama.cpp generation 3.1 tokens/s is below 5" in rows
    assert "apple required unsupported - - - - - -" in rows
    assert "apple required unsupported - no worker of class apple has mlx" in rows
    assert "cuda optional not measured - no worker of class cuda took it within 24h" in rows
    assert "rocm optional running - running on w-rocm@box:1:0" in rows


def test_a_class_never_queued_and_one_without_a_run_matrix():
    entry = {"required": True, "status": "none", "reason": None, "job": None,
             "verification": None}
    assert "assay verify" in note(entry)
    old = {"required": True, "status": "passed", "reason": None, "job": None,
           "verification": verification("cpu", "llama.cpp", None, tps=33.0)}
    table = [" ".join(line.split()) for line in table_lines({"cpu": old, "new": entry})]
    assert table[1] == "cpu required passed llama.cpp - - - 33.0 300MiB"
    assert table[2].startswith("new required not queued - added to the profile")


def test_a_model_without_classes_prints_as_before():
    plain = {**STATE, "verification": {**CPU, "class": None}}
    out = summary(REF, plain)
    assert out[0] == f"127.0.0.1:5000/team/gemma3@{DIGEST}: ready"
    assert out[1].startswith("  verified by llama.cpp 1.0 on Test CPU (4 threads)")
    assert out[2] == "  generation 40.0 tokens/s, peak RSS 300 MiB"
    assert not any(line.split() == HEADER for line in out)
    assert any(line.split()[:3] == ["CONTEXT", "KV", "PARALLEL"] for line in out)


def test_json_is_the_registry_answer_as_is(capsys):
    assert report(REF, STATE, as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == STATE
