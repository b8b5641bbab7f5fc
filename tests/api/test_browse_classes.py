"""Browsing by hardware class (``?class=`` on ``/api/v1/models``, ``.../tags`` and the
web listing ``/-/models``), on both stacks: with it the figures, the filters on them and
the sorts by them are those of the latest verification on that class, not the latest of
any; a model with no result on the class has no figures; a name that is no class name is
a 400 naming the parameter.

Two models of a profile that requires ``cpu`` and ``apple``, each verified on both through
the service layer (no worker runs), in an order that makes the latest of any differ from
each class's:

==========  ==================  ==================  ==============
model       cpu                 apple               latest of any
==========  ==================  ==================  ==============
team/a:v1   20 tok/s, 1 GiB     80 tok/s, 2 GiB     apple
team/b:v1   60 tok/s, 3 GiB     30 tok/s, 1 GiB     cpu
==========  ==================  ==================  ==============
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from registry.profiles import parse_profile
from tests.support.rest import assert_problem
from tests.support.verification import manifest_id, push_model, report
from tests.support.web import text_of

GiB = 1024**3
PROFILE = "name: fleet\nclasses: {required: [cpu, apple]}\n"
FIGURES = {"team/a": [("cpu", 20.0, GiB, 12.0), ("apple", 80.0, 2 * GiB, 14.0)],
           "team/b": [("apple", 30.0, GiB, 16.0), ("cpu", 60.0, 3 * GiB, 11.0)]}


def _record(service, name: str, digest: str, hw_class: str, tps: float, rss: int,
            perplexity: float) -> None:
    target = service.verification.target(manifest_id(service, name, digest), digest,
                                         hw_class)
    assert target.hw_class == hw_class and target.classes.required == ["cpu", "apple"]
    data = {**report(tps=tps), "peak_rss_bytes": rss, "perplexity": perplexity}
    # As a worker of the class does: its job claimed, the result recorded, the job done.
    job = service.queue.claim(f"w-{hw_class}", ["verify"], [hw_class])
    assert job.payload["digest"] == digest, job
    service.verification.record(target, data, job_id=job.id, worker=f"w-{hw_class}",
                                started_at=datetime.now(UTC))
    assert service.queue.complete(job.id, f"w-{hw_class}")


@pytest.fixture
def fleet(client, service) -> dict[str, str]:
    service.classes.set("cpu", {"accelerator": "none"})
    service.classes.set("apple", {"os": "darwin"})
    service.profiles.set("team", parse_profile(PROFILE))
    digests = {}
    for name, results in FIGURES.items():
        digests[name] = push_model(client, name, "v1", name)
        for hw_class, tps, rss, perplexity in results:
            _record(service, name, digests[name], hw_class, tps, rss, perplexity)
    return digests


def models(client, **params) -> dict[str, dict]:
    r = client.get("/api/v1/models", params=params)
    assert r.status_code == 200, r.text
    return {row["repository"]: row for row in r.json()["models"]}


def test_figures_are_the_classes_latest(client, fleet):
    latest = models(client)
    assert {n: row["tokens_per_s"] for n, row in latest.items()} == \
        {"team/a": 80.0, "team/b": 60.0}
    assert {n: row["status"] for n, row in latest.items()} == \
        {"team/a": "ready", "team/b": "ready"}
    for hw_class, expected in (("cpu", {"team/a": (20.0, GiB, 12.0),
                                        "team/b": (60.0, 3 * GiB, 11.0)}),
                               ("apple", {"team/a": (80.0, 2 * GiB, 14.0),
                                          "team/b": (30.0, GiB, 16.0)})):
        rows = models(client, **{"class": hw_class})
        assert {n: (r["tokens_per_s"], r["peak_rss_bytes"], r["perplexity"])
                for n, r in rows.items()} == expected
        assert all(r["verdict"] == "passed" and r["backend"] == "llama.cpp"
                   for r in rows.values())


def test_filters_and_sorts_read_the_class(client, fleet):
    assert set(models(client, min_tokens_per_s=50)) == {"team/a", "team/b"}
    assert set(models(client, **{"class": "apple", "min_tokens_per_s": 50})) == {"team/a"}
    assert set(models(client, **{"class": "cpu", "min_tokens_per_s": 50})) == {"team/b"}
    assert set(models(client, **{"class": "cpu", "max_memory_mb": 1024})) == {"team/a"}
    assert set(models(client, **{"class": "apple", "max_perplexity": 15})) == {"team/a"}
    order = list(models(client, **{"class": "cpu", "sort": "-tokens_per_s"}))
    assert order == ["team/b", "team/a"]
    order = list(models(client, **{"class": "apple", "sort": "-tokens_per_s"}))
    assert order == ["team/a", "team/b"]
    # One repository's tags take it too.
    r = client.get("/api/v1/repositories/team/a/tags",
                   params={"class": "cpu", "min_tokens_per_s": 10})
    assert r.status_code == 200, r.text
    assert [(t["tag"], t["tokens_per_s"]) for t in r.json()["tags"]] == [("v1", 20.0)]


def test_a_class_without_results_has_no_figures(client, fleet):
    rows = models(client, **{"class": "cuda"})
    assert set(rows) == {"team/a", "team/b"}
    assert all((r["verdict"], r["tokens_per_s"], r["peak_rss_bytes"], r["verified_at"]) ==
               (None, None, None, None) for r in rows.values())
    assert models(client, **{"class": "cuda", "min_tokens_per_s": 0}) == {}


@pytest.mark.parametrize("value", ["Apple", "", "-cpu", "a" * 65, "cpu gpu", "ç"])
def test_a_bad_class_name_is_a_400_naming_it(client, fleet, value):
    for url in ("/api/v1/models", "/api/v1/repositories/team/a/tags"):
        body = assert_problem(client.get(url, params={"class": value}), 400)
        assert body["detail"].startswith("class must be a hardware class name"), body


def test_class_given_twice_is_a_400(client, fleet):
    body = assert_problem(client.get("/api/v1/models?class=cpu&class=apple"), 400)
    assert "class" in body["detail"]


def test_the_parameter_is_documented(client):
    doc = client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/models", "/api/v1/repositories/{name}/tags"):
        params = {p["name"]: p for p in doc["paths"][path]["get"]["parameters"]}
        assert params["class"]["in"] == "query"
        assert params["class"]["schema"]["pattern"] == "^[a-z0-9][a-z0-9_-]{0,63}$"
        assert "hardware class" in params["class"]["description"]


def test_the_web_listing_filters_by_class(client, fleet):
    r = client.get("/-/models", params={"class": "apple", "min_tokens_per_s": "50"})
    assert r.status_code == 200, r.text[-2000:]
    text = text_of(r.text)
    assert "team/a:v1" in text and "team/b:v1" not in text
    assert "Figures measured on hardware class apple" in text
    assert 'id="f-class" name="class" value="apple"' in r.text
    # An empty field is no filter; a bad name is the page with REST's message.
    r = client.get("/-/models", params={"class": "", "min_tokens_per_s": "50"})
    assert r.status_code == 200 and "team/b:v1" in text_of(r.text)
    r = client.get("/-/models", params={"class": "Apple"})
    assert r.status_code == 400
    assert "class must be a hardware class name" in text_of(r.text)
