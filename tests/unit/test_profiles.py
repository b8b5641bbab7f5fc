"""registry.profiles: profile documents in YAML or JSON, validated with an error naming the
bad field, identified by the sha256 of their canonical JSON; hostile documents are refused
quickly."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import ValidationError

from registry.errors import RequestInvalid
from registry.profiles import DEFAULT_PROFILE, SMOKE_PROFILE, parse_profile
from registry.settings import Settings

FULL = """
name: team-default
runs:
  - {context: 2048, kv_cache: f16, parallel: 1, prompt_tokens: 128, max_tokens: 32}
  - {context: 4096, kv_cache: q8_0, parallel: 4, prompt_tokens: 64, max_tokens: 32}
quality:
  reference: team/gemma3-f16:v1
  prompts:
    - {prompt: "The capital of France is", expect: "Paris"}
    - {prompt: "Say hello.", chat: true, expect: "(?i)hello"}
limits: {min_generation_tps: 5, max_peak_memory: 4GiB, max_perplexity: 1000,
         max_perplexity_ratio: 1.5}
regressions: {generation_tps: 0.2, action: fail}
"""


def test_a_full_profile_in_yaml_and_the_same_in_json_are_one_profile():
    profile = parse_profile(FULL)
    assert [(r.context, r.kv_cache, r.parallel) for r in profile.runs] == [
        (2048, "f16", 1), (4096, "q8_0", 4)]
    assert profile.limits.max_peak_memory == 4 * 1024**3
    assert profile.quality.prompts[1].chat is True
    assert profile.regressions.action == "fail" and profile.regressions.memory == 0.10
    again = parse_profile(json.dumps(profile.to_json(), indent=1).encode())
    assert again == profile and again.sha256 == profile.sha256


def test_defaults_spelled_out_or_not_have_one_hash():
    assert parse_profile("").sha256 == parse_profile("{}").sha256 == DEFAULT_PROFILE.sha256
    spelled = parse_profile(json.dumps({"runs": [{"context": r.context, "kv_cache": r.kv_cache,
                                                  "parallel": r.parallel}
                                                 for r in DEFAULT_PROFILE.runs]}))
    assert spelled.sha256 == DEFAULT_PROFILE.sha256
    assert parse_profile("runs: []").sha256 != DEFAULT_PROFILE.sha256
    assert parse_profile("name: other").sha256 != DEFAULT_PROFILE.sha256
    assert DEFAULT_PROFILE.sha256.startswith("sha256:") and len(DEFAULT_PROFILE.sha256) == 71


@pytest.mark.parametrize(("text", "message"), [
    ("runs:\n  - {kv_cache: q5}\n",
     "runs[0].kv_cache: Input should be 'f16', 'q8_0' or 'q4_0'"),
    ("runs: [{context: 128, parallel: 4, prompt_tokens: 64}]",
     "runs[0]: parallel x (prompt_tokens + max_tokens) = 384 tokens does not fit in a "
     "context of 128"),
    ("runs: {context: 4096}", "runs: Input should be a valid list"),
    ("limits: {max_perplexity: -1}", "limits.max_perplexity: Input should be greater than 0"),
    ("limits: {max_perplexity: .nan}", "limits.max_perplexity: Input should be a finite"),
    ("limits: {max_peak_memory: lots}", "limits.max_peak_memory: could not parse"),
    ("quality: {prompts: [{prompt: hi, expect: '(('}]}",
     "quality.prompts[0].expect: not a regular expression"),
    ("quality: {prompts: [{prompt: hi}]}", "quality.prompts[0].expect: Field required"),
    ("regressions: {action: maybe}", "regressions.action: Input should be 'warn' or 'fail'"),
    ("bogus: 1", "bogus: unknown field"),
    ("name: 'x y'", "name: String should match pattern"),
])
def test_a_bad_field_is_named(text, message):
    with pytest.raises(RequestInvalid) as err:
        parse_profile(text)
    assert f"invalid profile: {message}" in str(err.value)


@pytest.mark.parametrize(("text", "message"), [
    ("a: [", "a profile must be YAML or JSON: expected the node content"),
    ("[1, 2]", "a profile must be a mapping"),
    ("just words", "a profile must be a mapping"),
    ("null", "a profile must be a mapping"),
    ("# only a comment", "a profile must be a mapping"),
    (b"\xff\xfe", "a profile must be UTF-8 text"),
    ("x" * (64 * 1024 + 1), "a profile may be at most 65536 bytes"),
])
def test_what_is_not_a_profile_document_says_so(text, message):
    with pytest.raises(RequestInvalid, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        parse_profile(text)


@pytest.mark.parametrize("text", [
    # Nested aliases: a few hundred bytes that name billions of nodes.
    "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
    "[" * 30000,
    "{" * 30000,
])
def test_hostile_documents_are_refused_quickly(text):
    start = time.monotonic()
    with pytest.raises(RequestInvalid):
        parse_profile(text)
    assert time.monotonic() - start < 5


def test_the_default_profile_setting_names_a_builtin_or_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSAY_DEFAULT_PROFILE", raising=False)
    assert Settings(data_dir=tmp_path).profile == DEFAULT_PROFILE
    assert Settings(data_dir=tmp_path, default_profile="smoke").profile == SMOKE_PROFILE
    assert SMOKE_PROFILE.runs == [] and not SMOKE_PROFILE.quality.perplexity
    path = tmp_path / "team.yaml"
    path.write_text("name: team\nruns: []\nquality: {prompts: []}\n")
    assert Settings(data_dir=tmp_path, default_profile=str(path)).profile.name == "team"
    with pytest.raises(ValidationError, match="not a built-in profile .* nor a readable"):
        Settings(data_dir=tmp_path, default_profile="defualt")
    path.write_text("runs: [{kv_cache: q5}]")
    with pytest.raises(ValidationError, match=r"runs\[0\]\.kv_cache"):
        Settings(data_dir=tmp_path, default_profile=str(path))
