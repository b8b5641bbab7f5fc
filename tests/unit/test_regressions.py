"""registry.services.regressions' pure rules (reports in, items and verdicts out) and
client.results' rendering of them, on synthetic reports: thresholds are strict, a missing
or unsupported figure is never a regression, and a report that failed keeps its reason."""

from __future__ import annotations

import pytest

from client.results import describe_regression, fit_lines, quality_lines, run_lines
from registry.errors import RegistryError
from registry.services.regressions import (
    apply_ratio,
    compare,
    parse_reference,
    regression_reason,
    thresholds,
)

LIMITS = {"generation_tps": 0.10, "memory": 0.10, "perplexity_ratio": 0.05}


def run(tps=20.0, rss=1000, **config) -> dict:
    return {"context": 2048, "kv_cache": "f16", "parallel": 1, "prompt_tokens": 128,
            "max_tokens": 32, "unsupported": None, "generation_tps": tps,
            "peak_rss_bytes": rss} | config


def rep(runs=(), ppl=None, ratio=None, text="t") -> dict:
    return {"runs": list(runs), "perplexity": ppl, "perplexity_text_sha256": text,
            "quality": {"perplexity": ppl, "text_sha256": text, "perplexity_ratio": ratio}}


@pytest.mark.parametrize(("old", "new", "metrics"), [
    (run(20.0), run(18.0), []),                       # -10%: not beyond 10%
    (run(20.0), run(17.9), ["generation_tps"]),
    (run(20.0), run(40.0), []),                       # faster is never a regression
    (run(rss=1000), run(rss=1100), []),
    (run(rss=1000), run(rss=1101), ["peak_rss_bytes"]),
    (run(rss=1000), run(rss=500), []),
    (run(tps=None), run(tps=1.0), []),                # a figure missing on either side
    (run(tps=0.0), run(tps=1.0), []),
    (run(20.0), run(1.0, parallel=2), []),            # another configuration
    (run(20.0), run(1.0, unsupported="no"), []),
])
def test_runs(old, new, metrics):
    assert [i["metric"] for i in compare(rep([old]), rep([new]), LIMITS)] == metrics


def test_runs_pair_by_index_and_extra_runs_are_not_compared():
    items = compare(rep([run(), run()]), rep([run(), run(1.0), run(1.0)]), LIMITS)
    assert [(i["metric"], i["run"], i["change"]) for i in items] == \
        [("generation_tps", 1, -0.95)]


def test_quality_prefers_the_ratio_and_needs_the_same_text():
    assert compare(rep(ppl=10, ratio=1.0), rep(ppl=10, ratio=1.06), LIMITS)[0]["metric"] \
        == "perplexity_ratio"
    assert compare(rep(ppl=10, ratio=1.0), rep(ppl=99, ratio=1.04), LIMITS) == []
    assert [i["metric"] for i in compare(rep(ppl=10), rep(ppl=10.6), LIMITS)] == \
        ["perplexity"]
    assert compare(rep(ppl=10), rep(ppl=99, text="other"), LIMITS) == []
    assert compare(rep(ppl=10), rep(ppl=None), LIMITS) == []
    # A reference on one side only: perplexities on the same text still compare.
    assert [i["metric"] for i in compare(rep(ppl=10, ratio=1.0), rep(ppl=11), LIMITS)] == \
        ["perplexity"]


def test_thresholds_default_and_action():
    assert thresholds({}) == (LIMITS, "warn")
    assert thresholds({"regressions": {"memory": 0.5, "action": "fail"}}) == \
        ({**LIMITS, "memory": 0.5}, "fail")


@pytest.mark.parametrize(("text", "parsed"), [
    ("team/gemma-f16:v1", ("team/gemma-f16", "v1")),
    ("team/gemma-f16", ("team/gemma-f16", "latest")),
    ("team/m@sha256:" + "a" * 64, ("team/m", "sha256:" + "a" * 64)),
])
def test_parse_reference(text, parsed):
    assert parse_reference(text) == parsed


@pytest.mark.parametrize("text", ["Team/x:v1", "team/x:bad tag", "team/x@sha256:12", ":v1"])
def test_parse_reference_refuses(text):
    with pytest.raises(RegistryError):
        parse_reference(text)


def profiled(passed=True, ppl=30.0, limit=None) -> dict:
    return {"passed": passed, "failure": None if passed else "load",
            "reason": None if passed else "bad header", "perplexity": ppl,
            "quality": {"perplexity": ppl},
            "profile": {"sha256": "sha256:x", "document": {
                "limits": {"max_perplexity_ratio": limit}}}}


def test_ratio_limit_fails_only_a_passed_report_and_keeps_the_first_reason():
    ok = profiled(limit=2.0)
    apply_ratio(ok, "r:v1", ("sha256:r", 20.0), None)
    assert (ok["passed"], ok["quality"]["perplexity_ratio"]) == (True, 1.5)
    over = profiled(limit=1.2)
    apply_ratio(over, "r:v1", ("sha256:r", 20.0), None)
    assert (over["passed"], over["failure"]) == (False, "quality")
    assert "max_perplexity_ratio 1.2" in over["reason"] and "1.500" in over["reason"]
    failed = profiled(passed=False, limit=1.2)
    apply_ratio(failed, "r:v1", ("sha256:r", 20.0), None)
    assert (failed["failure"], failed["reason"]) == ("load", "bad header")


def test_no_ratio_leaves_a_note():
    mine = profiled(ppl=None)
    apply_ratio(mine, "r:v1", ("sha256:r", 20.0), None)
    assert mine["quality"]["perplexity_ratio"] is None
    assert "no perplexity" in mine["quality"]["reference_note"]
    zero = profiled()
    apply_ratio(zero, "r:v1", ("sha256:r", 0.0), None)
    assert zero["quality"]["perplexity_ratio"] is None and zero["passed"]


def test_wording():
    item = {"metric": "peak_rss_bytes", "run": 2, "previous": 100 * 2**20,
            "current": 150 * 2**20, "change": 0.5, "threshold": 0.1}
    assert describe_regression(item) == \
        "run 2 peak memory 100 MiB -> 150 MiB (+50%, threshold 10%)"
    reason = regression_reason({"previous": {"tag": "v1", "digest": "sha256:" + "ab" * 32},
                                "items": [item, item], "action": "fail"})
    assert reason == ("regressed against v1 (sha256:abababababab…): run 2 peak memory "
                      "100 MiB -> 150 MiB (+50%, threshold 10%); and 1 more")


def test_rendering_tolerates_missing_and_unknown_shapes():
    assert run_lines([{"context": 2048}])[1].split() == ["2048", "-", "-", "-", "-", "-",
                                                         "-", "-"]
    assert quality_lines({"perplexity": None, "reference": "r:v1"}) == \
        ["  quality: perplexity -; no ratio to r:v1: unknown"]
    assert fit_lines({"fits": [1, 2], "checks": [{"estimate_bytes": 2**20}]}) == \
        ["  fits: [1, 2]", "  fit: estimate 1 MiB vs measured ?"]
    assert fit_lines({"fits": {"f16": {"8GiB": 0}}}) == ["  fits f16: 8GiB does not fit"]
