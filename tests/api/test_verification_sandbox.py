"""The verifier's sandbox in the REST verification object, on both stacks: ``network_isolated``
and ``sandbox`` as the worker's report recorded them, null for runs recorded before reports
carried them; and the OpenAPI document describing both.
"""

from __future__ import annotations

from tests.support.rest import describe
from tests.support.verification import FakeWorker, push_model, report

NAME = "team/tiny"
ISOLATED = "network namespace (unshare CLONE_NEWNET)"


def runs(client, digest: str) -> list[dict]:
    r = client.get(f"/api/v1/repositories/{NAME}/manifests/{digest}/verifications")
    assert r.status_code == 200, r.text
    return r.json()["verifications"]


def test_verification_object_carries_the_sandbox(client, service):
    digest = push_model(client, NAME, "v1")
    FakeWorker(service, NAME, digest).finish(
        report() | {"network_isolated": True, "sandbox": ISOLATED})
    (run,) = runs(client, digest)
    assert (run["network_isolated"], run["sandbox"]) == (True, ISOLATED)
    latest = describe(client, NAME, "v1")["verification"]
    assert (latest["network_isolated"], latest["sandbox"]) == (True, ISOLATED)

    client.post(f"/api/v1/repositories/{NAME}/tags/v1/verify")
    refused = "not isolated: unshare(CLONE_NEWNET) failed: Operation not permitted"
    FakeWorker(service, NAME, digest).finish(
        report() | {"network_isolated": False, "sandbox": refused})
    assert (runs(client, digest)[0]["network_isolated"], runs(client, digest)[0]["sandbox"]) \
        == (False, refused)


def test_runs_recorded_before_the_sandbox_fields_show_null(client, service):
    digest = push_model(client, NAME, "v1")
    older = {k: v for k, v in report().items() if k not in ("network_isolated", "sandbox")}
    FakeWorker(service, NAME, digest).finish(older)
    (run,) = runs(client, digest)
    assert run["network_isolated"] is None and run["sandbox"] is None


def test_openapi_documents_the_sandbox_fields(client):
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]["Verification"]
    assert {"network_isolated", "sandbox"} <= set(schema["required"])
    types = {k: {s.get("type") for s in schema["properties"][k]["anyOf"]}
             for k in ("network_isolated", "sandbox")}
    assert types == {"network_isolated": {"boolean", "null"}, "sandbox": {"string", "null"}}
