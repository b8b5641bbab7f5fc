"""The readiness gate and the verification REST API, in process, on both stacks.

No worker process runs here: a test plays the worker through the service layer (claim the
job, ``start``, ``record`` a verifier report, complete the job), so every state of the
lifecycle (queued -> verifying -> ready | failed) is reached deterministically.

The API suite's settings have the gate off; these tests switch it on with a namespace
policy for ``gated`` (the ``gate`` fixture) and push under ``gated/...``.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from registry.db.tables import jobs, manifests
from tests.support.oci import DOCKER_MANIFEST, error_code, push_image
from tests.support.rest import assert_problem, describe
from tests.support.verification import WORKER, FakeWorker, manifest_id, push_model, report, verify

VERIFICATION_TYPE = "application/vnd.assay.verification.v1+json"
BASE = "http://registry.test"


@pytest.fixture
def gate(service):
    """The readiness gate on for every repository under ``gated``."""
    service.verification.set_policy("gated", True, None)


def verify_jobs(service) -> list:
    with service.db.read() as conn:
        return conn.execute(select(jobs).where(jobs.c.kind == "verify")
                            .order_by(jobs.c.id)).all()


def pull(client, name: str, tag: str, method: str = "GET"):
    return client.request(method, f"/v2/{name}/manifests/{tag}")


def served(client, name: str, tag: str) -> str:
    r = pull(client, name, tag)
    assert r.status_code == 200, r.text
    return r.headers["Docker-Content-Digest"]


# ---------------------------------------------------------------- PUT: status and job


def test_model_put_queues_exactly_one_verify_job(client, service):
    digest = push_model(client, "team/tiny", "v1")
    mid = manifest_id(service, "team/tiny", digest)
    live = [j for j in verify_jobs(service) if j.status in ("queued", "running")]
    assert len(live) == 1
    # Keyed by row and content: SQLite may hand a deleted manifest's id to a new one.
    assert (live[0].dedupe_key, json.loads(live[0].payload)) == \
        (f"verify:{mid}:{digest}", {"manifest_id": mid, "digest": digest})
    assert service.queue.find(f"verify:{mid}:{digest}").id == live[0].id
    body = describe(client, "team/tiny", "v1")
    assert body["status"] == "queued" and body["job"]["id"] == live[0].id

    # The same manifest again (same tag, another tag, by digest): no second job.
    assert push_model(client, "team/tiny", "v1") == digest
    assert push_model(client, "team/tiny", "again") == digest
    content = pull(client, "team/tiny", digest).content
    r = client.put(f"/v2/team/tiny/manifests/{digest}", content=content,
                   headers={"Content-Type": DOCKER_MANIFEST})
    assert r.status_code == 201, r.text
    assert len(verify_jobs(service)) == 1


def test_repush_of_a_verified_model_is_not_verified_again(client, service, gate):
    digest = push_model(client, "gated/tiny", "v1")
    verify(service, "gated/tiny", digest)
    assert push_model(client, "gated/tiny", "v1") == digest
    assert push_model(client, "gated/tiny", "stable") == digest
    assert [j.status for j in verify_jobs(service)] == ["done"]
    assert describe(client, "gated/tiny", "stable")["status"] == "ready"
    assert served(client, "gated/tiny", "stable") == digest


def test_non_model_has_no_status_no_job_and_is_never_gated(client, service, gate):
    digest, _ = push_image(client, "gated/app", "v1")
    body = describe(client, "gated/app", "v1")
    assert (body["status"], body["job"], body["verification"], body["served"]) == \
        (None, None, None, digest)
    assert verify_jobs(service) == []
    assert served(client, "gated/app", "v1") == digest


# ------------------------------------------------------------------- the gate by tag


def test_queued_model_is_gated_by_tag_not_by_digest(client, service, gate):
    digest = push_model(client, "gated/tiny", "v1")
    r = pull(client, "gated/tiny", "v1")
    assert r.status_code == 404
    assert error_code(r) == "MANIFEST_UNKNOWN"
    message = r.json()["errors"][0]["message"]
    assert "queued" in message and digest in message
    assert f"{BASE}/api/v1/repositories/gated/tiny/tags/v1" in message
    assert r.json()["errors"][0]["detail"]["status"] == "queued"
    assert pull(client, "gated/tiny", "v1", "HEAD").status_code == 404

    for method in ("GET", "HEAD"):
        r = pull(client, "gated/tiny", digest, method)
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
    # REST says why; nothing is served yet.
    body = describe(client, "gated/tiny", "v1")
    assert (body["status"], body["served"], body["verification"]) == ("queued", None, None)


def test_worker_lifecycle_to_ready_with_referrer(client, service, gate):
    name = "gated/tiny"
    digest = push_model(client, name, "v1")
    w = FakeWorker(service, name, digest)

    body = describe(client, name, "v1")
    assert body["status"] == "verifying"
    assert (body["job"]["status"], body["job"]["worker"], body["job"]["attempts"]) == \
        ("running", WORKER, 1)
    r = pull(client, name, "v1")
    assert r.status_code == 404 and "verifying" in r.json()["errors"][0]["message"]

    data = report(tps=42.5)
    row = w.finish(data)
    assert row["verdict"] == "passed" and row["referrer"].startswith("sha256:")

    assert served(client, name, "v1") == digest
    assert pull(client, name, "v1", "HEAD").status_code == 200
    body = describe(client, name, "v1")
    assert (body["status"], body["reason"], body["served"], body["override"]) == \
        ("ready", None, digest, None)
    assert body["job"]["status"] == "done" and body["job"]["id"] == w.job.id
    v = body["verification"]
    assert (v["verdict"], v["reason"], v["backend"], v["backend_version"], v["worker"]) == \
        ("passed", None, "llama.cpp", "0.3.16", WORKER)
    assert v["hardware"] == data["hardware"]
    assert v["figures"]["generation_tps"] == 42.5
    assert v["figures"]["prompt_tps"] == 300.0 and v["figures"]["ttft_s"] == 0.05
    assert v["figures"]["tokens_generated"] == 32 and v["figures"]["output"] == "hi there"
    assert v["log_tail"] == data["log_tail"]
    assert v["started_at"] and v["finished_at"]
    assert v["referrer"] == row["referrer"]

    # The result travels as an OCI referrer of the model manifest.
    r = client.get(f"/v2/{name}/referrers/{digest}")
    assert r.status_code == 200, r.text
    refs = r.json()["manifests"]
    assert len(refs) == 1
    ref = refs[0]
    assert ref["artifactType"] == VERIFICATION_TYPE and ref["digest"] == row["referrer"]
    assert ref["annotations"]["dev.assay.verdict"] == "passed"
    assert ref["annotations"]["dev.assay.generation_tps"] == "42.50"
    r = client.get(f"/v2/{name}/referrers/{digest}",
                   params={"artifactType": VERIFICATION_TYPE})
    assert [m["digest"] for m in r.json()["manifests"]] == [row["referrer"]]
    r = client.get(f"/v2/{name}/referrers/{digest}",
                   params={"artifactType": "application/x-other"})
    assert r.json()["manifests"] == []

    artifact = client.get(f"/v2/{name}/manifests/{row['referrer']}")
    assert artifact.status_code == 200
    doc = artifact.json()
    assert doc["artifactType"] == VERIFICATION_TYPE
    assert doc["subject"]["digest"] == digest
    layer = doc["layers"][0]
    assert layer["mediaType"] == VERIFICATION_TYPE
    blob = client.get(f"/v2/{name}/blobs/{layer['digest']}")
    assert blob.status_code == 200 and len(blob.content) == layer["size"]
    assert json.loads(blob.content) == {"subject": digest, "repository": name,
                                        "report": data}
    # The referrer is not a model: no job, no status of its own.
    assert len(verify_jobs(service)) == 1
    assert describe(client, name, row["referrer"])["status"] is None


def test_v2_verifying_keeps_serving_v1(client, service, gate):
    name = "gated/tiny"
    v1 = push_model(client, name, "latest", "v1")
    verify(service, name, v1)
    v2 = push_model(client, name, "latest", "v2")
    assert served(client, name, "latest") == v1
    r = pull(client, name, "latest", "HEAD")
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == v1
    body = describe(client, name, "latest")
    assert (body["digest"], body["status"], body["served"]) == (v2, "queued", v1)

    w = FakeWorker(service, name, v2)
    assert served(client, name, "latest") == v1
    assert describe(client, name, "latest")["status"] == "verifying"
    w.finish(report())
    assert served(client, name, "latest") == v2
    body = describe(client, name, "latest")
    assert (body["digest"], body["status"], body["served"]) == (v2, "ready", v2)


def test_failed_v2_keeps_serving_v1(client, service, gate):
    name = "gated/tiny"
    v1 = push_model(client, name, "latest", "v1")
    verify(service, name, v1)
    v2 = push_model(client, name, "latest", "v2")
    verify(service, name, v2, passed=False, reason="tensor table is bogus")
    assert served(client, name, "latest") == v1
    body = describe(client, name, "latest")
    assert (body["digest"], body["status"], body["reason"], body["served"]) == \
        (v2, "failed", "tensor table is bogus", v1)
    assert body["verification"]["verdict"] == "failed"
    assert body["verification"]["log_tail"] == "error loading model\n"
    # Pushing the good v1 back onto the tag serves it (and queues nothing: it is known).
    assert push_model(client, name, "latest", "v1") == v1
    assert served(client, name, "latest") == v1
    assert describe(client, name, "latest")["digest"] == v1
    assert [j.status for j in verify_jobs(service)] == ["done", "done"]


def test_failed_model_with_nothing_ready_then_override(client, service, gate):
    name = "gated/broken"
    digest = push_model(client, name, "v1")
    verify(service, name, digest, passed=False, reason="does not load")
    r = pull(client, name, "v1")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    message = r.json()["errors"][0]["message"]
    assert "failed verification (does not load)" in message
    assert f"{BASE}/api/v1/repositories/{name}/tags/v1" in message
    assert pull(client, name, digest).status_code == 200
    assert describe(client, name, "v1")["served"] is None

    r = client.post(f"/api/v1/repositories/{name}/manifests/{digest}/override",
                    json={"reason": "known quirk of the tokenizer", "by": "alice"})
    assert r.status_code == 200, r.text
    assert r.json() == {"digest": digest, "by": "alice",
                        "reason": "known quirk of the tokenizer"}
    assert served(client, name, "v1") == digest
    body = describe(client, name, "v1")
    # The override is recorded; the verdict is not rewritten.
    assert (body["status"], body["reason"], body["served"]) == \
        ("failed", "does not load", digest)
    assert body["override"]["by"] == "alice"
    assert body["override"]["reason"] == "known quirk of the tokenizer"
    assert body["override"]["at"]


def test_override_of_a_queued_model_lets_it_through(client, service, gate):
    name = "gated/tiny"
    digest = push_model(client, name, "v1")
    r = client.post(f"/api/v1/repositories/{name}/manifests/{digest}/override",
                    json={"reason": "urgent"})
    assert r.status_code == 200 and r.json()["by"] == "admin"
    assert served(client, name, "v1") == digest


def test_override_errors(client, service, gate):
    name = "gated/tiny"
    digest = push_model(client, name, "v1")
    url = f"/api/v1/repositories/{name}/manifests/{digest}/override"
    for body in ({}, {"by": "alice"}, {"reason": "   ", "by": "alice"},
                 {"reason": 5, "by": "alice"}, {"reason": "x", "by": ""},
                 {"reason": "x", "by": 7}):
        assert_problem(client.post(url, json=body), 400)
    assert_problem(client.post(url, content=b"not json"), 400)
    assert_problem(client.post(url, content=b"[1, 2]"), 400)
    # Nothing was recorded by the refused requests.
    assert describe(client, name, "v1")["override"] is None
    assert pull(client, name, "v1").status_code == 404

    # By tag is not an override route; unknown digests and repositories are 404.
    assert_problem(client.post(f"/api/v1/repositories/{name}/manifests/v1/override",
                               json={"reason": "x"}), 400, "DIGEST_INVALID")
    other = "sha256:" + "0" * 64
    assert_problem(client.post(f"/api/v1/repositories/{name}/manifests/{other}/override",
                               json={"reason": "x"}), 404, "MANIFEST_UNKNOWN")
    assert_problem(client.post(f"/api/v1/repositories/gated/nope/manifests/{digest}/override",
                               json={"reason": "x"}), 404, "NAME_UNKNOWN")

    image, _ = push_image(client, "gated/app", "v1")
    body = assert_problem(client.post(
        f"/api/v1/repositories/gated/app/manifests/{image}/override",
        json={"reason": "x", "by": "alice"}), 409)
    assert "not a model" in body["detail"]
    assert_problem(client.post("/api/v1/repositories/gated/app/tags/v1/verify"), 409)
    assert_problem(client.post(f"/api/v1/repositories/gated/app/manifests/{image}/verify"),
                   409)
    assert verify_jobs(service)[0].status == "queued" and len(verify_jobs(service)) == 1


# ---------------------------------------------------------------------- re-verify


def test_verify_is_idempotent_while_queued_and_new_after_done(client, service, gate):
    name = "gated/tiny"
    digest = push_model(client, name, "v1")
    first = verify_jobs(service)[0].id
    url = f"/api/v1/repositories/{name}/tags/v1/verify"
    r = client.post(url)
    assert r.status_code == 202, r.text
    assert r.json() == {"job": first, "digest": digest}
    assert client.post(url).json()["job"] == first
    assert client.post(f"/api/v1/repositories/{name}/manifests/{digest}/verify"
                       ).json() == {"job": first, "digest": digest}

    w = FakeWorker(service, name, digest)
    assert client.post(url).json()["job"] == first  # running: still the same job
    w.finish(report())
    r = client.post(url)
    assert r.status_code == 202
    second = r.json()["job"]
    assert second != first
    assert client.post(url).json()["job"] == second
    assert [j.status for j in verify_jobs(service)] == ["done", "queued"]


def test_reverify_failed_model_goes_back_to_queued(client, service, gate):
    name = "gated/tiny"
    digest = push_model(client, name, "v1")
    verify(service, name, digest, passed=False, reason="crashed")
    assert describe(client, name, "v1")["status"] == "failed"
    r = client.post(f"/api/v1/repositories/{name}/tags/v1/verify")
    assert r.status_code == 202
    body = describe(client, name, "v1")
    assert (body["status"], body["job"]["id"], body["job"]["status"]) == \
        ("queued", r.json()["job"], "queued")
    # The last run's verdict stays visible while the new one waits.
    assert body["verification"]["verdict"] == "failed"
    r = pull(client, name, "v1")
    assert r.status_code == 404 and "queued" in r.json()["errors"][0]["message"]
    verify(service, name, digest)
    assert served(client, name, "v1") == digest


def test_reverify_ready_model_keeps_it_ready_and_served(client, service, gate):
    name = "gated/tiny"
    digest = push_model(client, name, "v1")
    verify(service, name, digest, tps=10.0)
    r = client.post(f"/api/v1/repositories/{name}/tags/v1/verify")
    assert r.status_code == 202
    body = describe(client, name, "v1")
    assert (body["status"], body["served"], body["job"]["status"]) == \
        ("ready", digest, "queued")
    w = FakeWorker(service, name, digest)
    body = describe(client, name, "v1")
    assert (body["status"], body["served"], body["job"]["status"]) == \
        ("ready", digest, "running")
    assert served(client, name, "v1") == digest
    w.finish(report(tps=20.0))
    body = describe(client, name, "v1")
    assert body["status"] == "ready" and body["verification"]["figures"]["generation_tps"] == 20
    # Each run pushed its own referrer.
    refs = client.get(f"/v2/{name}/referrers/{digest}").json()["manifests"]
    assert len(refs) == 2 and {r["artifactType"] for r in refs} == {VERIFICATION_TYPE}


def test_verify_errors(client, service, gate):
    push_model(client, "gated/tiny", "v1")
    assert_problem(client.post("/api/v1/repositories/gated/tiny/tags/v9/verify"), 404,
                   "MANIFEST_UNKNOWN")
    assert_problem(client.post("/api/v1/repositories/gated/nope/tags/v1/verify"), 404,
                   "NAME_UNKNOWN")
    assert_problem(client.post("/api/v1/repositories/gated/tiny/manifests/v1/verify"), 400,
                   "DIGEST_INVALID")
    assert len(verify_jobs(service)) == 1


def test_verifications_list_newest_first(client, service, gate):
    name = "gated/tiny"
    digest = push_model(client, name, "v1")
    url = f"/api/v1/repositories/{name}/manifests/{digest}/verifications"
    r = client.get(url)
    assert r.status_code == 200 and r.json() == {"verifications": []}
    first = verify(service, name, digest, passed=False, reason="timed out")
    client.post(f"/api/v1/repositories/{name}/tags/v1/verify")
    second = verify(service, name, digest, tps=33.0)
    runs = client.get(url).json()["verifications"]
    assert [v["id"] for v in runs] == [second["id"], first["id"]]
    assert [(v["verdict"], v["reason"]) for v in runs] == \
        [("passed", None), ("failed", "timed out")]
    assert runs[0]["figures"]["generation_tps"] == 33.0
    assert runs[1]["figures"]["generation_tps"] is None
    assert runs[0]["referrer"] != runs[1]["referrer"]
    assert runs == [second, first]
    assert_problem(client.get(f"/api/v1/repositories/{name}/manifests/v1/verifications"),
                   400, "DIGEST_INVALID")


# -------------------------------------------------------------------------- policies


def test_gate_off_per_namespace(client, service, gate):
    r = client.put("/api/v1/policies/gated/open", json={"gate": False})
    assert r.status_code == 200, r.text
    assert r.json() == {"namespace": "gated/open", "gate": False, "min_generation_tps": None}
    open_digest = push_model(client, "gated/open/tiny", "v1")
    closed = push_model(client, "gated/closed", "v1")
    assert served(client, "gated/open/tiny", "v1") == open_digest
    assert describe(client, "gated/open/tiny", "v1")["served"] == open_digest
    assert pull(client, "gated/closed", "v1").status_code == 404
    assert describe(client, "gated/closed", "v1")["digest"] == closed
    # Both are still queued for verification: the gate only decides what a tag serves.
    assert describe(client, "gated/open/tiny", "v1")["status"] == "queued"
    # The gate follows the policy at pull time: switch it on and the model is hidden.
    client.put("/api/v1/policies/gated/open", json={"gate": True})
    assert pull(client, "gated/open/tiny", "v1").status_code == 404
    assert client.delete("/api/v1/policies/gated/open").status_code == 200
    assert pull(client, "gated/open/tiny", "v1").status_code == 404  # "gated" applies
    client.delete("/api/v1/policies/gated")
    assert served(client, "gated/open/tiny", "v1") == open_digest  # the suite's default


def test_policies_crud_and_longest_prefix(client, service):
    r = client.get("/api/v1/policies")
    assert r.status_code == 200
    assert r.json() == {"policies": [], "default": {"namespace": None, "gate": False,
                                                    "min_generation_tps": None}}
    assert client.put("/api/v1/policies/team", json={"gate": True}).status_code == 200
    r = client.put("/api/v1/policies/team/sub", json={"gate": False,
                                                      "min_generation_tps": 12.5})
    assert r.json() == {"namespace": "team/sub", "gate": False, "min_generation_tps": 12.5}
    r = client.put("/api/v1/policies/_", json={"min_generation_tps": 1})
    assert r.json() == {"namespace": "", "gate": True, "min_generation_tps": 1}

    listed = client.get("/api/v1/policies").json()
    assert [p["namespace"] for p in listed["policies"]] == ["", "team", "team/sub"]
    assert listed["default"]["gate"] is False

    def applies(name: str) -> dict:
        r = client.get(f"/api/v1/policies/{name}")
        assert r.status_code == 200, r.text
        return r.json()

    assert applies("team")["namespace"] == "team"
    assert applies("team/gemma")["namespace"] == "team"
    assert applies("team/sub") == {"namespace": "team/sub", "gate": False,
                                   "min_generation_tps": 12.5}
    assert applies("team/sub/deeper/model")["namespace"] == "team/sub"
    assert applies("team/subway")["namespace"] == "team"  # a "/"-prefix, not a string one
    assert applies("teams/x")["namespace"] == ""
    assert applies("_")["namespace"] == ""

    # Update in place.
    r = client.put("/api/v1/policies/team", json={"gate": False, "min_generation_tps": 3})
    assert r.json() == {"namespace": "team", "gate": False, "min_generation_tps": 3}
    assert applies("team/gemma") == r.json()

    r = client.delete("/api/v1/policies/team/sub")
    assert r.status_code == 200 and r.json() == {"deleted": "team/sub"}
    assert applies("team/sub/deeper/model")["namespace"] == "team"
    assert_problem(client.delete("/api/v1/policies/team/sub"), 404)
    client.delete("/api/v1/policies/_")
    client.delete("/api/v1/policies/team")
    assert applies("team/gemma") == {"namespace": None, "gate": False,
                                     "min_generation_tps": None}
    assert client.get("/api/v1/policies").json()["policies"] == []


def test_policy_floor_reaches_the_worker_target(client, service):
    client.put("/api/v1/policies/team", json={"gate": True, "min_generation_tps": 7.5})
    digest = push_model(client, "team/sub/tiny", "v1")
    target = service.verification.target(manifest_id(service, "team/sub/tiny", digest))
    assert (target.policy.namespace, target.policy.gate, target.policy.min_generation_tps) \
        == ("team", True, 7.5)
    assert target.model.weight_format == "gguf"


@pytest.mark.parametrize("body", [
    b'{"gate": "yes"}', b'{"gate": 1}', b'{"gate": null}',
    b'{"min_generation_tps": "5"}', b'{"min_generation_tps": true}',
    b'{"min_generation_tps": -1}', b'{"min_generation_tps": NaN}',
    b'{"min_generation_tps": [5]}', b"not json", b"[true]", b'"gate"',
])
def test_bad_policy_bodies_are_problem_json(client, body):
    assert_problem(client.put("/api/v1/policies/team", content=body), 400, "UNSUPPORTED")
    assert client.get("/api/v1/policies").json()["policies"] == []


def test_infinite_speed_floor_is_refused(client):
    # 1e999 is valid JSON that parses to float("inf"); it passes ``x >= 0`` and cannot be
    # rendered back as JSON.
    c = TestClient(client.app, base_url=BASE, raise_server_exceptions=False)
    r = c.put("/api/v1/policies/team", content=b'{"gate": true, "min_generation_tps": 1e999}')
    assert_problem(r, 400, "UNSUPPORTED")
    r = c.get("/api/v1/policies")
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------- tag deletion


def test_deleting_a_tag_forgets_its_history(client, service, gate):
    name = "gated/tiny"
    v1 = push_model(client, name, "latest", "v1")
    verify(service, name, v1)
    assert served(client, name, "latest") == v1
    assert client.delete(f"/v2/{name}/manifests/latest").status_code == 202
    r = pull(client, name, "latest")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    # A new, unverified model under the same tag name: no fallback to the old v1.
    v2 = push_model(client, name, "latest", "v2")
    r = pull(client, name, "latest")
    assert r.status_code == 404, r.headers.get("Docker-Content-Digest")
    assert "queued" in r.json()["errors"][0]["message"]
    assert describe(client, name, "latest")["served"] is None
    assert pull(client, name, v1).status_code == 200  # still there by digest
    verify(service, name, v2)
    assert served(client, name, "latest") == v2


def test_deleting_the_ready_manifest_stops_the_fallback(client, service, gate):
    name = "gated/tiny"
    v1 = push_model(client, name, "latest", "v1")
    verify(service, name, v1)
    push_model(client, name, "latest", "v2")
    assert served(client, name, "latest") == v1
    assert client.delete(f"/v2/{name}/manifests/{v1}").status_code == 202
    r = pull(client, name, "latest")
    assert r.status_code == 404 and "queued" in r.json()["errors"][0]["message"]


def test_history_is_per_tag(client, service, gate):
    name = "gated/tiny"
    v1 = push_model(client, name, "stable", "v1")
    verify(service, name, v1)
    push_model(client, name, "edge", "v2")
    # "edge" never pointed at v1: nothing to fall back to.
    assert pull(client, name, "edge").status_code == 404
    assert served(client, name, "stable") == v1


def test_manifest_deleted_while_verifying_records_nothing(client, service, gate):
    name = "gated/tiny"
    digest = push_model(client, name, "v1")
    w = FakeWorker(service, name, digest)
    assert client.delete(f"/v2/{name}/manifests/{digest}").status_code == 202
    assert service.verification.target(w.mid) is None
    # SQLite reuses the deleted manifest's id for the next row (the verification
    # artifact ``record`` publishes): the result must not land on that other manifest.
    row = service.verification.record(w.target, report(), job_id=w.job.id, worker=WORKER,
                                      started_at=w.started)
    with service.db.read() as conn:
        statuses = conn.execute(select(manifests.c.digest, manifests.c.artifact_type,
                                       manifests.c.status)).all()
    assert [s for s in statuses if s.status is not None] == []
    assert row == {}


def test_a_result_never_lands_on_a_model_pushed_after_its_subject_was_deleted(
        client, service, gate):
    name = "gated/tiny"
    a = push_model(client, name, "a", "model a")
    w = FakeWorker(service, name, a)
    assert client.delete(f"/v2/{name}/manifests/{a}").status_code == 202
    b = push_model(client, name, "b", "model b")  # never verified
    mid_b = manifest_id(service, name, b)
    w.finish(report())
    r = pull(client, name, "b")
    assert r.status_code == 404, f"{b} was served by tag without ever being verified"
    body = describe(client, name, "b")
    assert (body["status"], body["verification"]) == ("queued", None)
    # B's own verification is still to come.
    job = service.queue.find(f"verify:{mid_b}:{b}")
    assert job is not None and job.status == "queued"


def test_deleting_the_tagged_manifest_forgets_the_tag(client, service, gate):
    # Deleting a manifest deletes its tags; a tag deleted that way must not keep the
    # history that DELETE by tag forgets (test_deleting_a_tag_forgets_its_history).
    name = "gated/tiny"
    v1 = push_model(client, name, "latest", "v1")
    verify(service, name, v1)
    v2 = push_model(client, name, "latest", "v2")
    assert client.delete(f"/v2/{name}/manifests/{v2}").status_code == 202
    assert pull(client, name, "latest").status_code == 404
    push_model(client, name, "latest", "v3")
    r = pull(client, name, "latest")
    assert r.status_code == 404, f"the deleted tag came back serving {v1}"
