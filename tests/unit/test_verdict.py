"""The verdict on a child's events (``verifier.verdict.judge``), from event lists written
here as the child writes them: the order of checks, and reasons that name the run, the
limit and the measured figure. The real child and backends are exercised in
tests/verifier."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from verifier.spec import PromptSpec, RunSpec, Spec
from verifier.verdict import judge

GEN = {"prompt_tokens": 6, "prompt_s": 0.1, "first_s": 0.12, "last_s": 1.12, "tokens": 11,
       "output": " Paris.", "stop": "length", "non_finite_step": None}
FIGURES = {"prompt_tokens": 128, "prompt_s": 0.5, "first_s": 0.6, "last_s": 2.6,
           "tokens": [32], "output_sha256": "ab" * 32, "non_finite": False}
RUNS = (RunSpec(context=4096), RunSpec(context=4096, kv_cache="q8_0", parallel=2))
PROMPTS = (PromptSpec(prompt="The capital of France is", expect="(?i)paris"),
           PromptSpec(prompt="Hi", expect="hello", chat=True))


@dataclass
class ChildRun:
    events: list[dict] = field(default_factory=list)
    log: str = ""
    returncode: int = 0
    killed_for: str | None = None
    peak_rss_bytes: int = 500 * 2**20


def spec(**kwargs) -> Spec:
    return Spec(model_path=Path("/nonexistent/model.gguf"), runs=RUNS, prompts=PROMPTS,
                **kwargs)


def events(*extra: dict) -> list[dict]:
    return [{"event": "sandbox", "network_isolated": True, "detail": "test"},
            {"event": "ready", "backend_version": "x 1"}, {"event": "loaded", "load_s": 0.2},
            {"event": "done", "generation": GEN}, *extra]


def answered(index: int, text: str) -> dict:
    return {"event": "prompt", "index": index, "seconds": 0.3,
            "result": {"text": text, "tokens": 3, "template": None}}


def measured(index: int, tokens: list[int], peak: int = 400 * 2**20) -> dict:
    return {"event": "run", "index": index, "peak_rss_bytes": peak,
            "result": {**FIGURES, "tokens": tokens}}


def verdict(the_spec: Spec, child: ChildRun):
    return judge(the_spec, "llama.cpp", child, {"backend": "llama.cpp"}, "",
                 lambda error, log: error)


def test_a_complete_run_passes_with_the_matrix_and_the_prompts():
    unsupported = {"event": "prompt", "index": 1, "seconds": 0.0,
                   "unsupported": "the model has no chat template"}
    child = ChildRun(events(answered(0, " Paris."), unsupported, measured(0, [32]),
                            measured(1, [32, 32])))
    report = verdict(spec(), child)
    assert report.passed, report.reason
    first, second = report.runs
    assert first["generation_tps"] == first["aggregate_generation_tps"] == 31 / 2.0
    assert second["aggregate_generation_tps"] == 62 / 2.0
    assert second["generation_tps"] == 31 / 2.0  # per sequence
    assert second["prompt_tps"] == 2 * 128 / 0.5
    assert (second["ttft_s"], second["peak_rss_bytes"]) == (0.6, 400 * 2**20)
    assert [p["matched"] for p in report.quality["prompts"]] == [True, None]
    assert report.quality["prompts"][1]["unsupported"] == "the model has no chat template"


def test_an_unsupported_configuration_is_reported_not_failed():
    child = ChildRun(events(answered(0, "Paris"), answered(1, "hello"), measured(0, [32]),
                            {"event": "run", "index": 1, "peak_rss_bytes": None,
                             "unsupported": "no quantized KV cache with parallel sequences"}))
    report = verdict(spec(), child)
    assert report.passed
    assert report.runs[1]["unsupported"].startswith("no quantized")
    assert report.runs[1]["generation_tps"] is None


def test_a_prompt_that_does_not_match_fails_with_what_it_answered():
    report = verdict(spec(), ChildRun(events(answered(0, " Lyon, of course"))))
    assert (report.passed, report.failure) == (False, "quality")
    assert report.reason == ("prompt 1 'The capital of France is' did not match /(?i)paris/: "
                             "answered ' Lyon, of course'")
    lenient = verdict(spec(prompts_must_match=False),
                      ChildRun(events(answered(0, "Lyon"), answered(1, "hi"),
                                      measured(0, [32]), measured(1, [32, 32]))))
    assert lenient.passed and lenient.quality["prompts"][0]["matched"] is False


def test_each_run_is_held_to_the_speed_floor_and_the_memory_limit():
    child = ChildRun(events(answered(0, "Paris"), answered(1, "hello"), measured(0, [32]),
                            measured(1, [20, 20], peak=3 * 2**30)))
    smoke = verdict(spec(min_generation_tps=12.0), child)  # the smoke check: 10 tokens/s
    assert (smoke.failure, smoke.reason) == (
        "throughput", "generation 10.0 tokens/s is below the minimum 12 tokens/s")
    slow = verdict(spec(min_generation_tps=9.6), child)
    assert (slow.failure, slow.reason) == (
        "throughput", "run 2 (context 4096, q8_0 KV, parallel 2): generation 9.5 tokens/s "
                      "is below the minimum 9.6 tokens/s")
    big = verdict(spec(max_peak_memory_bytes=2**30), child)
    assert (big.failure, big.reason) == (
        "memory", "run 2 (context 4096, q8_0 KV, parallel 2): peak memory 3,072 MiB is above "
                  "the limit max_peak_memory 1,024 MiB")


def test_a_child_that_dies_in_a_run_names_the_run():
    crashed = ChildRun(events(answered(0, "Paris"), answered(1, "hello"), measured(0, [32])),
                       returncode=-11)
    report = verdict(spec(), crashed)
    assert report.failure == "crash"
    assert report.reason == ("crashed while measuring run 2 (context 4096, q8_0 KV, "
                             "parallel 2): killed by SIGSEGV")
    assert len(report.runs) == 1  # the figures measured before the crash are kept
    quiet = ChildRun(events(answered(0, "Paris"), answered(1, "hello"), measured(0, [32])))
    assert verdict(spec(), quiet).reason == ("stopped before measuring run 2 (context 4096, "
                                             "q8_0 KV, parallel 2)")
