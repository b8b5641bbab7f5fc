"""A result read against the registry's other results when it is recorded: the perplexity
ratio to the profile's reference model, and regressions against the tag's previous ready
version under the same profile, in REST, the referrer, webhooks, the gate and
``assay status``, on both stacks.

The reports are synthetic: a test plays the worker through the service layer (as
tests/api/test_verification.py does) and records verifier reports with chosen figures, so
every comparison is exact. The verifier's own measurements are tested with real models
elsewhere; what is under test here is only what the registry does with a report.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from registry.profiles import validate_profile
from tests.support.cli import assay
from tests.support.receiver import Receiver
from tests.support.rest import describe
from tests.support.verification import FakeWorker, push_model, report
from worker.deliver import Deliverer

TEXT = "1f" * 32  # the sha256 of the project's text, as the verifier records it
OTHER_TEXT = "2e" * 32
MIB = 2**20


def profile(**document) -> dict:
    """A report's ``profile``: the validated document with its name and hash."""
    return validate_profile(document).recorded()


def run(tps: float = 20.0, rss: int = 400 * MIB, **config) -> dict:
    """One run of the matrix as the verifier reports it (the default configuration)."""
    out = {"context": 2048, "kv_cache": "f16", "parallel": 1, "prompt_tokens": 128,
           "max_tokens": 32, "unsupported": None, "prompt_tps": 250.0,
           "generation_tps": tps, "aggregate_generation_tps": tps * config.get("parallel", 1),
           "ttft_s": 0.05, "peak_rss_bytes": rss, "tokens_generated": 32,
           "output_sha256": "cd" * 32, "seconds": 2.0}
    return out | config


def profiled(prof: dict, *, runs: list[dict] | None = None, perplexity: float | None = 30.0,
             text: str = TEXT, prompts: list[dict] | None = None, fit: dict | None = None,
             passed: bool = True, reason: str | None = None) -> dict:
    """A report measured under ``prof``, with the contract's new fields."""
    data = report(passed=passed, reason=reason)
    data.update(perplexity=perplexity, perplexity_text_sha256=text, profile=prof,
                runs=[run()] if runs is None else runs, fit=fit,
                quality={"perplexity": perplexity, "perplexity_tokens": 1024,
                         "perplexity_s": 3.0, "text_sha256": text,
                         "reference": (prof["document"]["quality"] or {}).get("reference"),
                         "reference_digest": None, "reference_perplexity": None,
                         "perplexity_ratio": None, "prompts": prompts or []})
    return data


def record(service, client, name: str, tag: str, data: dict, variant: str | None = None):
    """Push a model to ``name:tag`` and record ``data`` as its verification."""
    digest = push_model(client, name, tag, variant or tag)
    row = FakeWorker(service, name, digest).finish(data)
    return digest, row


def served(client, name: str, tag: str) -> str:
    r = client.get(f"/v2/{name}/manifests/{tag}")
    assert r.status_code == 200, r.text
    return r.headers["Docker-Content-Digest"]


def referrer_annotations(client, name: str, row: dict) -> dict:
    return client.get(f"/v2/{name}/manifests/{row['referrer']}").json()["annotations"]


@pytest.fixture
def gate(service):
    service.verification.set_policy("team", True, None)


# ------------------------------------------------------------------ reference ratio


def test_reference_ratio_is_computed_and_shown(client, service):
    ref, _ = record(service, client, "team/gemma-f16", "v1",
                    profiled(profile(name="ref"), perplexity=20.0))
    prof = profile(name="q4", quality={"reference": "team/gemma-f16:v1"})
    digest, row = record(service, client, "team/gemma-q4", "v1",
                         profiled(prof, perplexity=25.0))
    assert row["verdict"] == "passed"
    q = describe(client, "team/gemma-q4", "v1")["verification"]["quality"]
    assert (q["reference"], q["reference_digest"], q["reference_perplexity"],
            q["perplexity_ratio"]) == ("team/gemma-f16:v1", ref, 20.0, 1.25)
    assert "reference_note" not in q
    # By digest too, and the referrer names the profile it was measured under.
    prof2 = profile(name="q4", quality={"reference": f"team/gemma-f16@{ref}"})
    _, row = record(service, client, "team/gemma-q4", "v2", profiled(prof2, perplexity=30.0))
    assert row["quality"]["perplexity_ratio"] == 1.5
    assert referrer_annotations(client, "team/gemma-q4", row)["dev.assay.profile"] == \
        f"q4@{prof2['sha256']}"
    v = describe(client, "team/gemma-q4", "v2")["verification"]
    assert v["profile"] == {"name": "q4", "sha256": prof2["sha256"]}
    assert v["runs"][0]["generation_tps"] == 20.0 and v["regressions"] is None


def test_a_reference_by_tag_is_the_version_a_pull_gets(client, service):
    """A newer push to the reference's tag, not verified yet, does not hide the ready one."""
    ref, _ = record(service, client, "team/ref", "v1", profiled(profile(), perplexity=20.0))
    model = FakeWorker(service, "team/model", push_model(client, "team/model", "v1"))
    push_model(client, "team/ref", "v1", "newer")
    row = model.finish(profiled(profile(quality={"reference": "team/ref:v1"}),
                                perplexity=30.0))
    assert (row["quality"]["reference_digest"], row["quality"]["perplexity_ratio"]) == \
        (ref, 1.5)


@pytest.mark.parametrize(("setup", "note"), [
    (None, "is not in this registry"),
    ("unverified", "has no passed verification yet"),
    ("failed", "has no passed verification yet"),
    ("other text", "no perplexity measured on the same text"),
    ("no perplexity", "no perplexity measured on the same text"),
])
def test_a_reference_without_a_usable_figure_is_a_note_not_a_failure(client, service, setup,
                                                                    note):
    model = FakeWorker(service, "team/model", push_model(client, "team/model", "v1"))
    if setup == "unverified":
        push_model(client, "team/ref", "v1")
    elif setup == "failed":
        record(service, client, "team/ref", "v1", report(passed=False, reason="bad"))
    elif setup is not None:
        record(service, client, "team/ref", "v1", profiled(
            profile(), text=OTHER_TEXT if setup == "other text" else TEXT,
            perplexity=None if setup == "no perplexity" else 20.0))
    prof = profile(quality={"reference": "team/ref:v1"}, limits={"max_perplexity_ratio": 1.1})
    row = model.finish(profiled(prof, perplexity=99.0))
    assert row["verdict"] == "passed", row["reason"]
    q = row["quality"]
    assert (q["perplexity_ratio"], q["reference_perplexity"]) == (None, None)
    assert note in q["reference_note"] and "team/ref:v1" in q["reference_note"]


def test_a_ratio_above_the_limit_fails_naming_limit_and_figure(client, service, gate):
    record(service, client, "team/ref", "v1", profiled(profile(), perplexity=20.0))
    prof = profile(quality={"reference": "team/ref:v1"}, limits={"max_perplexity_ratio": 1.1})
    digest, row = record(service, client, "team/model", "v1", profiled(prof, perplexity=25.0))
    assert row["verdict"] == "failed"
    assert row["reason"] == ("perplexity ratio 1.250 (perplexity 25.00 vs 20.00 of "
                             "team/ref:v1) is above the limit max_perplexity_ratio 1.1")
    body = describe(client, "team/model", "v1")
    assert (body["status"], body["served"]) == ("failed", None)
    assert referrer_annotations(client, "team/model", row)["dev.assay.verdict"] == "failed"
    # The stored report says why as the verifier's failures do.
    blob = _report(client, "team/model", row)
    assert (blob["passed"], blob["failure"]) == (False, "quality")


def _report(client, name: str, row: dict) -> dict:
    layer = client.get(f"/v2/{name}/manifests/{row['referrer']}").json()["layers"][0]
    return json.loads(client.get(f"/v2/{name}/blobs/{layer['digest']}").content)["report"]


# ---------------------------------------------------------------------- regressions


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def deliverer(service, settings):
    settings.outbound_allow = "127.0.0.1"  # the receiver listens on loopback
    d = Deliverer(service, worker_id="test-deliver@here:1:0")
    yield d
    d.close()


def subscribe(client, url: str, events: list[str]) -> None:
    r = client.post("/api/v1/webhooks", json={"url": url, "secret": "s3cret-0123456789ab",
                                              "events": events})
    assert r.status_code == 201, r.text


def test_a_worse_push_of_a_tag_is_a_regression_and_an_event(client, service, gate, receiver,
                                                           deliverer):
    subscribe(client, receiver.url, ["verification.succeeded", "verification.regressed"])
    prof = profile()
    v1, _ = record(service, client, "team/m", "latest",
                   profiled(prof, runs=[run(20.0, 400 * MIB)], perplexity=30.0), "v1")
    v2, row = record(service, client, "team/m", "latest",
                     profiled(prof, runs=[run(15.0, 460 * MIB)], perplexity=30.6), "v2")
    assert row["verdict"] == "passed"  # action warn: recorded, shown, sent; still served
    assert served(client, "team/m", "latest") == v2
    reg = describe(client, "team/m", "latest")["verification"]["regressions"]
    assert reg["previous"] == {"digest": v1, "tag": "latest"} and reg["action"] == "warn"
    assert reg["items"] == [
        {"metric": "generation_tps", "run": 0, "previous": 20.0, "current": 15.0,
         "change": -0.25, "threshold": 0.1},
        {"metric": "peak_rss_bytes", "run": 0, "previous": 400 * MIB, "current": 460 * MIB,
         "change": 0.15, "threshold": 0.1}]  # perplexity +2%: within its 5%
    assert referrer_annotations(client, "team/m", row)["dev.assay.regressed"] == "true"

    assert deliverer.drain() == ["delivered"] * 3
    events = receiver.events()
    assert [(e["action"], e["target"]["digest"]) for e in events] == [
        ("verification.succeeded", v1), ("verification.succeeded", v2),
        ("verification.regressed", v2)]
    event = events[-1]
    assert event["target"]["tags"] == ["latest"]
    v = event["verification"]
    assert (v["status"], v["verdict"], v["regressions"]) == ("ready", "passed", reg)
    assert v["profile"]["sha256"] == prof["sha256"] and "log_tail" not in v


def test_action_fail_keeps_serving_the_previous_version(client, service, gate):
    prof = profile(regressions={"action": "fail"})
    v1, _ = record(service, client, "team/m", "latest", profiled(prof, runs=[run(20.1)]), "v1")
    v2, row = record(service, client, "team/m", "latest", profiled(prof, runs=[run(15.0)]),
                     "v2")
    assert row["verdict"] == "failed"
    assert row["reason"] == (f"regressed against latest ({v1[:19]}…): run 0 generation "
                             "tokens/s 20.1 -> 15.0 (-25%, threshold 10%)")
    assert served(client, "team/m", "latest") == v1
    body = describe(client, "team/m", "latest")
    assert (body["digest"], body["status"], body["served"]) == (v2, "failed", v1)
    assert _report(client, "team/m", row)["failure"] == "regression"
    # The next push is compared with v1 (the previous *ready* version), not the failed v2.
    v3, row = record(service, client, "team/m", "latest", profiled(prof, runs=[run(19.0)]),
                     "v3")
    assert row["verdict"] == "passed" and row["regressions"]["previous"]["digest"] == v1
    assert row["regressions"]["items"] == [] and served(client, "team/m", "latest") == v3


def test_quality_regressions_ratio_or_perplexity(client, service):
    """With a reference the ratio is compared; without one, the perplexity on the same
    text (and nothing across different texts)."""
    record(service, client, "team/ref", "v1", profiled(profile(), perplexity=20.0))
    prof = profile(quality={"reference": "team/ref:v1"})
    record(service, client, "team/m", "t", profiled(prof, perplexity=24.0), "v1")
    _, row = record(service, client, "team/m", "t", profiled(prof, perplexity=26.0), "v2")
    (item,) = row["regressions"]["items"]
    assert (item["metric"], item["run"], item["previous"], item["current"], item["threshold"]) \
        == ("perplexity_ratio", None, 1.2, 1.3, 0.05)

    plain = profile(name="plain")
    record(service, client, "team/p", "t", profiled(plain, perplexity=20.0), "v1")
    _, row = record(service, client, "team/p", "t", profiled(plain, perplexity=22.0), "v2")
    assert [i["metric"] for i in row["regressions"]["items"]] == ["perplexity"]
    _, row = record(service, client, "team/p", "t",
                    profiled(plain, perplexity=40.0, text=OTHER_TEXT), "v3")
    assert row["regressions"]["items"] == []


def test_no_comparison_under_another_profile_or_without_a_previous_version(client, service):
    a, b = profile(name="a"), profile(name="b")
    _, row = record(service, client, "team/m", "t", profiled(a, runs=[run(20.0)]), "v1")
    assert row["regressions"] is None  # the tag's first version
    _, row = record(service, client, "team/m", "t", profiled(b, runs=[run(5.0)]), "v2")
    assert row["regressions"] is None and row["verdict"] == "passed"
    # Under profile a again: compared with v1, the newest ready version measured under a.
    v3, row = record(service, client, "team/m", "t", profiled(a, runs=[run(5.0)]), "v3")
    assert row["regressions"]["items"][0]["metric"] == "generation_tps"
    # Another tag with no history of its own: nothing to compare with.
    _, row = record(service, client, "team/m", "other", profiled(a, runs=[run(1.0)]), "v4")
    assert row["regressions"] is None


def test_runs_compare_only_with_the_same_configuration(client, service):
    prof = profile()
    old = [run(20.0), run(20.0, context=4096), run(20.0), run(20.0)]
    new = [run(10.0), run(10.0, context=8192), run(10.0, unsupported="no q4_0 here",
                                                    generation_tps=None), run(19.0)]
    record(service, client, "team/m", "t", profiled(prof, runs=old), "v1")
    _, row = record(service, client, "team/m", "t", profiled(prof, runs=new), "v2")
    assert [(i["metric"], i["run"]) for i in row["regressions"]["items"]] == \
        [("generation_tps", 0)]


def test_reports_stored_before_profiles_still_render(client, service, live_url):
    new = ("profile", "runs", "quality", "fit", "regressions")
    old = {k: v for k, v in report(tps=33.0).items() if k not in new}  # as workers sent them
    digest, row = record(service, client, "team/old", "v1", old)
    v = describe(client, "team/old", "v1")["verification"]
    assert {k: v[k] for k in new} == dict.fromkeys(new)
    assert "dev.assay.profile" not in referrer_annotations(client, "team/old", row)
    # A profiled push after it is not compared with it (no profile to match).
    _, row = record(service, client, "team/old", "v1", profiled(profile()), "v2")
    assert row["regressions"] is None
    out = assay("status", f"{live_url.removeprefix('http://')}/team/old@{digest}")
    assert "generation 33.0 tokens/s" in out
    assert "profile" not in out and "regress" not in out


def test_answers_with_the_new_fields_match_the_openapi_document(client, service):
    """The typed answer models document runs, quality, fit and regressions as stored."""
    doc = client.get("/api/v1/openapi.json").json()

    def check(answer: dict, schema: str) -> None:
        root = {"components": doc["components"], "$ref": f"#/components/schemas/{schema}"}
        jsonschema.Draft202012Validator(root).validate(answer)

    prof = profile(quality={"reference": "team/ref:v1"})
    record(service, client, "team/ref", "v1", profiled(profile(), perplexity=20.0))
    record(service, client, "team/m", "t", profiled(prof, runs=[run(20.0)]), "v1")
    digest, _ = record(service, client, "team/m", "t", profiled(
        prof, runs=[run(10.0), run(unsupported="no", generation_tps=None)],
        prompts=[{"prompt": "p", "chat": False, "expect": "x", "output": "y",
                  "matched": False, "template": None, "unsupported": None}],
        fit={"estimates": [], "fits": {}, "checks": []}), "v2")
    body = describe(client, "team/m", "t")
    assert body["verification"]["regressions"]["items"]
    check(body, "ManifestDetail")
    r = client.get(f"/api/v1/repositories/team/m/manifests/{digest}/verifications")
    check(r.json(), "VerificationList")


# ----------------------------------------------------------------------- assay status


def test_status_shows_profile_runs_quality_fit_and_regressions(client, service, live_url):
    host = live_url.removeprefix("http://")
    record(service, client, "team/ref", "v1", profiled(profile(), perplexity=20.0))
    prof = profile(name="team-default", quality={"reference": "team/ref:v1"})
    prompts = [{"prompt": "The capital of France is", "chat": False, "expect": "Paris",
                "output": " Paris.", "matched": True, "template": None, "unsupported": None},
               {"prompt": "Say hello.", "chat": True, "expect": "(?i)hello",
                "output": "Bonjour", "matched": False, "template": "gguf",
                "unsupported": None}]
    fit = {"estimates": [{"context": 2048, "kv_cache": "f16", "bytes": 380 * MIB}],
           "fits": {"f16": {"8GiB": 32768, "16GiB": 131072}, "q8_0": {"8GiB": 65536}},
           "checks": [{"run": 0, "estimate_bytes": 380 * MIB, "measured_bytes": 400 * MIB,
                       "error": -0.05}]}
    record(service, client, "team/m", "v1", profiled(prof, runs=[run(20.0)], perplexity=24.0),
           "v1")
    runs = [run(15.0), run(8.0, parallel=4, prompt_tokens=64, kv_cache="q8_0"),
            run(unsupported="MLX cannot batch with a quantized KV cache", kv_cache="q4_0",
                generation_tps=None, prompt_tps=None, peak_rss_bytes=None,
                aggregate_generation_tps=None, ttft_s=None)]
    digest, _ = record(service, client, "team/m", "v1",
                       profiled(prof, runs=runs, perplexity=24.0, prompts=prompts, fit=fit),
                       "v2")
    out = assay("status", f"{host}/team/m:v1")
    assert f"profile team-default ({prof['sha256'][:19]}" in out, out
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if "CONTEXT" in line)
    assert lines[head].split() == ["CONTEXT", "KV", "PARALLEL", "PROMPT/S", "GEN/S",
                                   "GEN/S(ALL)", "TTFT", "PEAK"]
    assert lines[head + 1].split() == ["2048", "f16", "1", "250.0", "15.0", "15.0", "0.05s",
                                       "400MiB"]
    assert lines[head + 2].split()[:6] == ["2048", "q8_0", "4", "250.0", "8.0", "32.0"]
    assert "unsupported: MLX cannot batch with a quantized KV cache" in lines[head + 3]
    assert "perplexity 24.00, 1.200x team/ref:v1 (20.00)" in out
    assert "prompts matched 1/2" in out and '"Say hello." expected /(?i)hello/' in out
    assert "fits f16: 8GiB up to context 32768, 16GiB up to context 131072" in out
    assert "estimate 380 MiB vs measured 400 MiB (-5.0%)" in out
    assert "regressed against v1" in out and "run 0 generation tokens/s 20.0 -> 15.0" in out
    state = json.loads(assay("status", f"{host}/team/m:v1", "--json"))
    v = state["verification"]
    assert state["digest"] == digest and v["runs"] == runs and v["fit"] == fit
    assert v["quality"]["prompts"] == prompts and v["regressions"]["items"]
