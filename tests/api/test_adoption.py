"""Adopting carried verification results (``POST .../manifests/<digest>/adopt``): a model
verified in one repository is carried with its results artifact into another, as ``assay
import`` carries a bundle, and recorded there without a run; what is refused, and a job a
worker already started. Who may adopt is in the permission matrix (namespace admin).
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from registry.db.tables import deliveries, verifications
from tests.support.oci import push_blob, sha256
from tests.support.rest import assert_problem, describe
from tests.support.verification import FakeWorker, push_model, report

VERIFICATION_TYPE = "application/vnd.assay.verification.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SRC, DST = "site-a/tiny", "site-b/tiny"


def profiled(service, name: str, passed: bool = True) -> dict:
    """A worker's report measured under the profile that applies to ``name``."""
    data = report(passed, None if passed else "does not load")
    data["profile"] = service.profiles.applies(name).profile.recorded()
    return data


def copy_manifest(client, src: str, dst: str, digest: str, tag: str | None = None) -> None:
    """Carry a manifest and its blobs from ``src`` to ``dst`` byte for byte."""
    r = client.get(f"/v2/{src}/manifests/{digest}")
    assert r.status_code == 200, r.text
    doc = r.json()
    for d in [doc["config"], *doc["layers"]]:
        blob = client.get(f"/v2/{src}/blobs/{d['digest']}")
        assert push_blob(client, dst, blob.content) == d["digest"]
    put = client.put(f"/v2/{dst}/manifests/{tag or digest}", content=r.content,
                     headers={"Content-Type": r.headers["content-type"]})
    assert put.status_code == 201, put.text


def carried(client, service, passed: bool = True) -> tuple[str, str]:
    """A model verified in SRC, then pushed to DST with its results artifact (queued
    there): ``(model digest, referrer digest)``."""
    digest = push_model(client, SRC, "v1")
    row = FakeWorker(service, SRC, digest).finish(profiled(service, SRC, passed))
    copy_manifest(client, SRC, DST, digest, "v1")
    copy_manifest(client, SRC, DST, row["referrer"])
    assert describe(client, DST, "v1")["status"] == "queued"
    return digest, row["referrer"]


def adopt(client, digest: str, referrer: str, name: str = DST):
    return client.post(f"/api/v1/repositories/{name}/manifests/{digest}/adopt",
                       json={"referrer": referrer})


def test_adopted_results_make_the_model_ready_without_a_run(client, service):
    digest, referrer = carried(client, service)
    service.events.create("https://ci.example.com/hooks", "s3cret")
    r = adopt(client, digest, referrer)
    assert r.status_code == 200, r.text
    body = r.json()
    with service.db.read() as conn:
        sent = [json.loads(b)["events"][0] for b in
                conn.execute(select(deliveries.c.body).order_by(deliveries.c.id)).scalars()]
    assert [(e["action"], e["target"]["digest"]) for e in sent] == \
        [("verification.succeeded", digest)]
    assert (body["status"], body["referrer"], body["running_job"]) == ("ready", referrer, None)
    assert body["cancelled_job"] is not None

    state = describe(client, DST, "v1")
    assert (state["status"], state["served"]) == ("ready", digest)
    v = state["verification"]
    assert (v["verdict"], v["referrer"], v["worker"]) == ("passed", referrer, None)
    assert v["imported"]["referrer"] == referrer and v["imported"]["at"]
    assert v["figures"]["generation_tps"] == 42.5
    # The queued job is finished unrun: no worker will claim it.
    assert state["job"]["id"] == body["cancelled_job"] and state["job"]["status"] == "done"
    assert service.queue.claim("test-claimer", ["verify"]) is None
    entry = service.audit.entries(action="adopt")[0]
    assert entry["target"] == f"{DST}@{digest}"
    assert entry["detail"]["referrer"] == referrer and entry["detail"]["verdict"] == "passed"
    # Nothing new was published: the carried artifact is the model's only result.
    refs = client.get(f"/v2/{DST}/referrers/{digest}").json()["manifests"]
    assert [m["digest"] for m in refs] == [referrer]


def test_adopted_failure_fails_the_model(client, service):
    digest, referrer = carried(client, service, passed=False)
    body = adopt(client, digest, referrer).json()
    assert body["status"] == "failed"
    state = describe(client, DST, "v1")
    assert (state["status"], state["reason"]) == ("failed", "does not load")


def test_another_profile_is_a_conflict_and_the_model_is_verified(client, service):
    digest, referrer = carried(client, service)
    r = client.put("/api/v1/profiles/site-b", json={"name": "stricter"})
    assert r.status_code == 200, r.text
    problem = assert_problem(adopt(client, digest, referrer), 409)
    assert "profile differs" in problem["detail"] and "stricter" in problem["detail"]
    state = describe(client, DST, "v1")
    assert (state["status"], state["job"]["status"], state["verification"]) == \
        ("queued", "queued", None)


def test_what_is_not_a_carried_result_is_refused(client, service):
    digest, referrer = carried(client, service)
    # Not a digest, no referrer, unknown artifact, unknown repository.
    assert_problem(adopt(client, digest, "v1"), 400)
    assert_problem(client.post(f"/api/v1/repositories/{DST}/manifests/{digest}/adopt",
                               json={}), 400)
    assert_problem(adopt(client, digest, "sha256:" + "0" * 64), 404)
    assert_problem(adopt(client, digest, referrer, name="site-c/none"), 404)
    # The model itself is no results artifact of itself; a results artifact is no model.
    assert_problem(adopt(client, digest, digest), 400)
    assert_problem(adopt(client, referrer, referrer), 409)

    # An artifact that claims the right type and subject but whose report is of another
    # model (or no report at all) is refused.
    other = push_model(client, DST, "v2", variant="other")
    for layer in (json.dumps({"subject": other, "report": {"passed": True}}).encode(),
                  b"not json"):
        forged = forge(client, digest, layer)
        assert "does not hold a verification report" in \
            assert_problem(adopt(client, digest, forged), 400)["detail"]
    assert describe(client, DST, "v1")["status"] == "queued"


def test_a_report_is_judged_under_this_registrys_profile(client, service):
    """A report that claims the right profile sha256 with another document is judged,
    and stored, with the document that sha256 stands for here."""
    digest = push_model(client, DST, "v1")
    data = profiled(service, DST)
    applied = data["profile"]
    data["profile"] = {**applied, "document": {"regressions": {"action": "warn"}}}
    layer = json.dumps({"subject": digest, "report": data}).encode()
    assert adopt(client, digest, forge(client, digest, layer)).status_code == 200
    with service.db.read() as conn:
        stored = conn.execute(select(verifications.c.report)).scalar_one()
    assert json.loads(stored)["profile"] == applied


def forge(client, subject: str, layer: bytes) -> str:
    """Push a manifest of the results type with ``subject`` and one ``layer``."""
    config = push_blob(client, DST, b"{}")
    model = client.get(f"/v2/{DST}/manifests/{subject}")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": VERIFICATION_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config,
                   "size": 2},
        "layers": [{"mediaType": VERIFICATION_TYPE, "digest": push_blob(client, DST, layer),
                    "size": len(layer)}],
        "subject": {"mediaType": model.headers["content-type"], "digest": subject,
                    "size": len(model.content)}}).encode()
    digest = sha256(manifest)
    r = client.put(f"/v2/{DST}/manifests/{digest}", content=manifest,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return digest


@pytest.mark.parametrize("late_verdict", [True, False])
def test_a_started_run_is_left_to_finish_and_its_verdict_stands(client, service,
                                                                late_verdict):
    digest, referrer = carried(client, service)
    worker = FakeWorker(service, DST, digest)  # claimed before the adopt
    body = adopt(client, digest, referrer).json()
    assert (body["status"], body["cancelled_job"], body["running_job"]) == \
        ("ready", None, worker.job.id)
    worker.finish(profiled(service, DST, late_verdict))
    state = describe(client, DST, "v1")
    assert state["status"] == ("ready" if late_verdict else "failed")
    runs = client.get(f"/api/v1/repositories/{DST}/manifests/{digest}/verifications").json()
    assert [("imported" in v, v["verdict"]) for v in runs["verifications"]] == \
        [(False, "passed" if late_verdict else "failed"), (True, "passed")]
