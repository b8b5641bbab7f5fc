"""Verification profiles per namespace over REST: set, read back with every default spelled
out and its sha256, the longest namespace prefix applies, delete falls back, every change
audited, bad documents and names are 400 problems naming what is wrong."""

from __future__ import annotations

import json

from registry.profiles import DEFAULT_PROFILE, SMOKE_PROFILE
from tests.support.cli import assay
from tests.support.rest import assert_problem

PROFILE = {"name": "team", "runs": [{"context": 4096, "kv_cache": "q8_0", "parallel": 2}],
           "quality": {"prompts": [{"prompt": "The capital of France is",
                                    "expect": "Paris"}]},
           "limits": {"max_peak_memory": "2GiB", "max_perplexity": 500}}


def applies(client, name: str) -> dict:
    r = client.get(f"/api/v1/profiles/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def test_profiles_crud_and_longest_prefix(client, service):
    r = client.get("/api/v1/profiles")
    assert r.status_code == 200
    # Without a namespace profile the ``default_profile`` setting's applies (the tests run
    # under the smoke profile, see tests/conftest.py).
    fallback = service.settings.profile
    assert fallback == SMOKE_PROFILE
    default = {"namespace": None, "sha256": fallback.sha256, "updated_at": None,
               "profile": fallback.to_json()}
    assert r.json() == {"profiles": [], "default": default}
    assert applies(client, "team/gemma3") == default

    r = client.put("/api/v1/profiles/team", json=PROFILE)
    assert r.status_code == 200, r.text
    team = r.json()
    assert team["namespace"] == "team" and team["sha256"].startswith("sha256:")
    assert team["profile"]["runs"] == [{"context": 4096, "kv_cache": "q8_0", "parallel": 2,
                                        "prompt_tokens": 128, "max_tokens": 32}]
    assert team["profile"]["limits"]["max_peak_memory"] == 2 * 1024**3
    assert team["profile"]["regressions"] == DEFAULT_PROFILE.to_json()["regressions"]
    # What was stored is what is read back, hash included.
    assert applies(client, "team") == team
    assert applies(client, "team/gemma3") == team
    assert applies(client, "teams/gemma3") == default  # a "/"-prefix, not a string one

    client.put("/api/v1/profiles/_", json={"name": "site"})
    client.put("/api/v1/profiles/team/sub", json={"name": "sub"})
    assert [p["namespace"] for p in client.get("/api/v1/profiles").json()["profiles"]] == [
        "", "team", "team/sub"]
    assert applies(client, "team/sub/deeper/model")["profile"]["name"] == "sub"
    assert applies(client, "other/x")["profile"]["name"] == "site"

    # Replacing a profile replaces it whole (no merge with the previous one).
    r = client.put("/api/v1/profiles/team", json={"name": "team2"})
    assert r.json()["profile"]["runs"] == DEFAULT_PROFILE.to_json()["runs"]

    assert client.delete("/api/v1/profiles/team/sub").json() == {"deleted": "team/sub"}
    assert applies(client, "team/sub/model")["profile"]["name"] == "team2"
    assert_problem(client.delete("/api/v1/profiles/team/sub"), 404)
    client.delete("/api/v1/profiles/team")
    client.delete("/api/v1/profiles/_")
    assert applies(client, "team/gemma3") == default

    actions = [e["action"] for e in service.audit.entries(limit=20)]
    assert actions.count("profile.set") == 4 and actions.count("profile.delete") == 3


def test_bad_profiles_are_400_problems_naming_the_field(client):
    for body, detail in [
        ({"runs": [{"kv_cache": "q5"}]},
         "invalid profile: runs[0].kv_cache: Input should be 'f16', 'q8_0' or 'q4_0'"),
        ({"limits": {"max_perplexity": "high"}},
         "invalid profile: limits.max_perplexity: Input should be a valid number"),
        ({"extra": 1}, "invalid profile: extra: unknown field"),
    ]:
        problem = assert_problem(client.put("/api/v1/profiles/team", json=body), 400)
        assert problem["detail"].startswith(detail), problem["detail"]
    assert_problem(client.put("/api/v1/profiles/team", content=b"[1]"), 400)
    assert_problem(client.put("/api/v1/profiles/Team", json={}), 400, "NAME_INVALID")
    assert client.get("/api/v1/profiles").json()["profiles"] == []


def test_profile_cli_sets_shows_and_removes(live_url, client, tmp_path):
    host = live_url.removeprefix("http://")
    reg = ("-r", host)

    yaml_file = tmp_path / "team.yaml"
    yaml_file.write_text("name: team\nruns:\n  - {context: 4096, kv_cache: q4_0}\n"
                         "limits: {max_peak_memory: 2GiB}\n")
    out = assay("profile", "set", "team", str(yaml_file), host)  # the earlier spelling
    assert out.startswith("profile team (namespace team), sha256:"), out
    assert "run: context 4096, kv q4_0, parallel 1" in out
    assert "limits: max_peak_memory 2147483648" in out
    shown = json.loads(assay("profile", "show", "team/gemma3", *reg, "--json"))
    assert shown["namespace"] == "team" and shown["profile"]["runs"][0]["kv_cache"] == "q4_0"

    json_file = tmp_path / "site.json"
    json_file.write_text(json.dumps({"name": "site"}))
    assay("profile", "set", "_", str(json_file), *reg)
    assert "profile site (namespace _)" in assay("profile", "show", "other/x", *reg)

    bad = tmp_path / "bad.yaml"
    bad.write_text("runs:\n  - {kv_cache: q5}\n")
    out = assay("profile", "set", "team", str(bad), *reg, code=1)
    assert "runs[0].kv_cache: Input should be 'f16', 'q8_0' or 'q4_0'" in out, out
    out = assay("profile", "set", "team", str(tmp_path / "missing.yaml"), *reg, code=1)
    assert "cannot read" in out and "missing.yaml" in out, out

    assert assay("profile", "rm", "team", *reg).strip() == "removed the profile of team"
    assert "profile site (namespace _)" in assay("profile", "show", "team/gemma3", *reg)
    assay("profile", "rm", "_", *reg)
    assert "the built-in default" in assay("profile", "show", "team", *reg)
    assert "error:" in assay("profile", "rm", "team", *reg, code=1)
