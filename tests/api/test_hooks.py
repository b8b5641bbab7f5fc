"""Validation on request: ``POST /api/v1/hooks/validate`` and ``GET /api/v1/verifications``,
in process, on both stacks.

The three payload formats (Distribution envelopes as Debian's docker-registry really sends
them, CloudEvents, plain references), authentication, what is queued and what ignored,
local references (re-verified here) and remote ones (a ``remote_models`` row and a
``verify_remote`` job in one transaction). "Another registry" is this same app served by
uvicorn on a loopback port (``live_url``): its host differs from the test client's
``registry.test``. The worker's side (``worker.remote``) runs in process on it too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
from datetime import UTC, datetime
from functools import cache

import pytest
from sqlalchemy import select

from registry.db.tables import deliveries, jobs, remote_models, verifications
from tests.support.gguf_files import gguf_bytes
from tests.support.model_artifacts import push_ollama
from tests.support.oci import push_image
from tests.support.processes import free_port
from tests.support.verification import report, verify

TOKEN = "hook-token-0123456789"
SECRET = "hook-secret-abcdef"
HOOK = "/api/v1/hooks/validate"
PROBLEM = "application/problem+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EVENTS_TYPE = "application/vnd.docker.distribution.events.v1+json"
DIGEST = "sha256:" + "ab" * 32
DEEP_JSON = b'{"a":' + b"[" * 5000
OTHER = "sha256:" + "cd" * 32
REMOTE = "peer.example.com:5000"
WORKER = "hooks-test-worker@here:1:0"


@pytest.fixture(autouse=True)
def hook_credentials(settings):
    """Both credentials configured (tests that want fewer clear them on the app's
    settings, which the endpoint reads per request)."""
    settings.hook_token = TOKEN
    settings.hook_secret = SECRET
    # The "remote" registries here are this one and closed ports, on loopback: opened
    # as an operator would (tests/api/test_outbound.py covers the default policy).
    settings.outbound_allow = "127.0.0.1"


@cache
def model_bytes() -> bytes:
    return gguf_bytes()


def auth() -> dict:
    return {"Authorization": f"Bearer {TOKEN}"}


def post(client, body, headers: dict | None = None, raw: bytes | None = None):
    content = raw if raw is not None else json.dumps(body).encode()
    return client.post(HOOK, content=content,
                       headers={"Content-Type": "application/json", **auth(),
                                **(headers or {})})


def problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM, r.headers
    body = r.json()
    assert body["status"] == status and body["detail"], body
    return body


def distribution_event(action: str = "push", *, host: str = REMOTE, repository="team/gemma",
                       digest: str = DIGEST, tag: str | None = "v1",
                       media_type: str = DOCKER_MANIFEST, kind: str = "manifests") -> dict:
    """One event as Distribution 2.8 sends it (captured from Debian's docker-registry)."""
    target = {"mediaType": media_type, "size": 409, "digest": digest, "length": 409,
              "repository": repository,
              "url": f"http://{host}/v2/{repository}/{kind}/{digest}"}
    if tag:
        target["tag"] = tag
    return {"id": f"ev-{action}-{kind}-{digest[7:15]}", "timestamp": "2026-11-25T04:29:27Z",
            "action": action, "target": target,
            "request": {"id": "r1", "addr": "127.0.0.1:44498", "host": host, "method": "PUT",
                        "useragent": "assay-client/0.1"},
            "actor": {}, "source": {"addr": "vm:5000", "instanceID": "i-1"}}


def envelope(*events) -> dict:
    return {"events": list(events)}


def cloudevent(data, type_: str = "io.cncf.distribution.manifest.pushed", **extra) -> dict:
    return {"specversion": "1.0", "id": "ce-1", "source": "/registry/peer", "type": type_,
            "datacontenttype": "application/json", "data": data, **extra}


def remote_rows(service) -> list:
    with service.db.read() as conn:
        return conn.execute(select(remote_models).order_by(remote_models.c.id)).all()


def jobs_of(service, kind: str) -> list:
    with service.db.read() as conn:
        return conn.execute(select(jobs).where(jobs.c.kind == kind)
                            .order_by(jobs.c.id)).all()


def lookup(client, reference: str, status: int = 200) -> dict:
    r = client.get("/api/v1/verifications", params={"reference": reference})
    if status != 200:
        return problem(r, status)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------- authentication


def test_refused_with_instructions_when_no_credentials_are_configured(client):
    client.app.state.settings.hook_token = None
    client.app.state.settings.hook_secret = None
    body = problem(post(client, {"reference": f"{REMOTE}/team/gemma@{DIGEST}"}), 403)
    assert "ASSAY_HOOK_TOKEN" in body["detail"] and "ASSAY_HOOK_SECRET" in body["detail"]
    assert body["code"] == "DENIED"


@pytest.mark.parametrize("headers", [
    {"Authorization": ""},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": "", "X-Assay-Signature": "sha256=" + "0" * 64},
    {"Authorization": "", "X-Assay-Signature": "not-a-signature"},
])
def test_missing_or_wrong_credentials_are_401(client, service, headers):
    r = post(client, {"reference": f"{REMOTE}/team/gemma@{DIGEST}"}, headers)
    body = problem(r, 401)
    assert body["code"] == "UNAUTHORIZED"
    assert r.headers["www-authenticate"].startswith("Bearer ")
    assert remote_rows(service) == [] and jobs_of(service, "verify_remote") == []


def test_token_and_signature_each_authenticate(client, service):
    raw = json.dumps({"reference": f"{REMOTE}/team/gemma@{DIGEST}"}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert post(client, None, raw=raw).status_code == 202
    r = post(client, None, {"Authorization": "", "X-Assay-Signature": signature}, raw=raw)
    assert r.status_code == 202, r.text
    # The signature covers the exact bytes: the same JSON re-serialised does not match.
    r = post(client, None, {"Authorization": "", "X-Assay-Signature": signature},
             raw=raw.replace(b": ", b":"))
    problem(r, 401)


def _status_line_of_unfinished_request(url: str, headers: bytes, body_start: bytes) -> bytes:
    """Send a hook request's headers and the start of a body that never ends; the status
    line that comes back within 5 s."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST " + HOOK.encode() + b" HTTP/1.1\r\nHost: peer\r\n" + headers
                  + b"\r\n" + body_start)
        return s.recv(4096).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("credentials", [
    b"", b"Authorization: Bearer wrong-token\r\n", f"Authorization: Basic {TOKEN}\r\n".encode(),
])
@pytest.mark.parametrize("framing,body_start", [
    (b"Content-Length: 1000\r\n", b'{"reference": '),
    (b"Transfer-Encoding: chunked\r\n", b'e\r\n{"reference": \r\n'),
])
def test_credentials_are_refused_before_the_body_is_read(live_url, credentials, framing,
                                                          body_start):
    """Only a signature needs the body: without one, a wrong or missing credential is a
    401 while the body is still on its way."""
    line = _status_line_of_unfinished_request(live_url, credentials + framing, body_start)
    assert line == b"HTTP/1.1 401 Unauthorized"


def test_only_the_configured_credential_is_accepted(client):
    client.app.state.settings.hook_secret = None
    raw = json.dumps({"reference": f"{REMOTE}/team/gemma@{DIGEST}"}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    problem(post(client, None, {"Authorization": "", "X-Assay-Signature": signature},
                 raw=raw), 401)
    client.app.state.settings.hook_secret = SECRET
    client.app.state.settings.hook_token = None
    problem(post(client, None, raw=raw), 401)
    assert post(client, None, {"Authorization": "", "X-Assay-Signature": signature},
                raw=raw).status_code == 202


# ------------------------------------------------------------------ Distribution format


def test_distribution_envelope_queues_the_manifest_push_and_ignores_the_rest(client, service):
    body = envelope(
        distribution_event(kind="blobs", media_type="application/octet-stream",
                           digest=OTHER, tag=None),
        distribution_event(),
        distribution_event("pull"),
        distribution_event(media_type=OCI_INDEX, digest=OTHER),
        distribution_event(media_type="application/vnd.docker.distribution.manifest.v1"
                                      "+prettyjws", digest=OTHER),
        distribution_event("delete"),
    )
    r = post(client, body, {"Content-Type": EVENTS_TYPE})
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["format"] == "distribution"
    (queued,) = out["queued"]
    assert queued["location"] == "remote" and queued["source"] == "distribution"
    assert queued["reference"] == f"{REMOTE}/team/gemma@{DIGEST}"
    assert (queued["registry"], queued["repository"], queued["tag"], queued["digest"]) == (
        REMOTE, "team/gemma", "v1", DIGEST)
    reasons = [i["reason"] for i in out["ignored"]]
    assert len(reasons) == 5, out["ignored"]
    assert "blob" in reasons[0]
    assert "'pull'" in reasons[1] and "only pushes" in reasons[1]
    assert "index" in reasons[2]
    assert "cannot hold a model" in reasons[3]
    assert "'delete'" in reasons[4]
    assert all(i["event"].startswith("ev-") for i in out["ignored"])

    (row,) = remote_rows(service)
    assert (row.reference, row.registry, row.repository, row.tag, row.digest, row.status,
            row.source, row.media_type, row.content) == (
        f"{REMOTE}/team/gemma@{DIGEST}", REMOTE, "team/gemma", "v1", DIGEST, "queued",
        "distribution", DOCKER_MANIFEST, None)
    (job,) = jobs_of(service, "verify_remote")
    assert json.loads(job.payload) == {"remote_model_id": row.id, "scheme": "http"}
    assert job.id == queued["job"] and queued["remote_model"] == row.id
    assert job.status == "queued"


def test_same_reference_twice_while_queued_is_one_job(client, service):
    body = envelope(distribution_event())
    first = post(client, body).json()["queued"][0]
    # A second notification (another tag of the same manifest) reuses the live job.
    second = post(client, envelope(distribution_event(tag="latest"))).json()["queued"][0]
    plain = post(client, {"reference": f"{REMOTE}/team/gemma@{DIGEST}"}).json()["queued"][0]
    assert first["job"] == second["job"] == plain["job"]
    assert len(jobs_of(service, "verify_remote")) == 1
    (row,) = remote_rows(service)
    assert row.tag == "latest" and row.source == "plain"


def test_row_and_job_are_one_transaction(client, service, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("queue down")

    monkeypatch.setattr(service.queue, "enqueue", broken)
    with pytest.raises(RuntimeError, match="queue down"):  # (TestClient re-raises the 500)
        post(client, envelope(distribution_event()))
    assert remote_rows(service) == []  # the row was rolled back with the failed enqueue


def test_malformed_events_are_ignored_not_refused(client, service):
    """Distribution retries a refused envelope forever: a bad event is ignored instead."""
    no_host = distribution_event()
    no_host["target"].pop("url")
    no_host["request"] = {}
    bad_digest = distribution_event(digest="sha256:nothex")
    no_target = {"id": "x", "action": "push"}
    r = post(client, envelope(no_host, bad_digest, no_target, "not an object"))
    assert r.status_code == 202, r.text
    reasons = [i["reason"] for i in r.json()["ignored"]]
    assert "no registry host" in reasons[0]
    assert "malformed reference" in reasons[1]
    assert "no target" in reasons[2]
    assert "not an event" in reasons[3]
    assert r.json()["queued"] == [] and remote_rows(service) == []


def test_distribution_event_for_this_registry_reverifies_the_local_model(client, service):
    digest = push_ollama(client, "team/tiny", "v1", model_bytes())
    (first,) = jobs_of(service, "verify")
    verify(service, "team/tiny", digest)  # its first run is done
    event = distribution_event(host="registry.test", repository="team/tiny", digest=digest)
    out = post(client, envelope(event)).json()
    (queued,) = out["queued"]
    assert (queued["location"], queued["repository"], queued["digest"]) == (
        "local", "team/tiny", digest)
    second = jobs_of(service, "verify")[-1]
    assert second.id == queued["job"] != first.id and second.status == "queued"
    assert remote_rows(service) == []


# ------------------------------------------------------------------ CloudEvents format


def test_cloudevent_with_a_reference(client, service):
    out = post(client, cloudevent({"reference": f"{REMOTE}/team/gemma@{DIGEST}"}),
               {"Content-Type": "application/cloudevents+json"}).json()
    assert out["format"] == "cloudevents"
    (queued,) = out["queued"]
    assert queued["event"] == "ce-1" and queued["source"] == "cloudevents"
    assert remote_rows(service)[0].source == "cloudevents"


def test_cloudevent_with_a_distribution_like_target(client, service):
    event = distribution_event(repository="team/other")
    out = post(client, cloudevent({"action": "push", "target": event["target"]})).json()
    assert out["queued"][0]["reference"] == f"{REMOTE}/team/other@{DIGEST}"
    out = post(client, cloudevent(event["target"], id="ce-2")).json()  # the target alone
    assert out["queued"][0]["job"] == jobs_of(service, "verify_remote")[0].id


def test_cloudevent_data_forms(client, service):
    ref = f"{REMOTE}/team/gemma@{DIGEST}"
    encoded = base64.b64encode(json.dumps({"reference": ref}).encode()).decode()
    forms = [
        cloudevent(ref),                                          # a string
        cloudevent(json.dumps({"reference": ref})),               # JSON text
        {**cloudevent(None), "data_base64": encoded},             # base64
        {**cloudevent(None), "subject": ref},                     # the subject
        cloudevent(envelope(distribution_event())),               # a whole envelope
    ]
    for body in forms:
        out = post(client, body).json()
        assert [q.get("digest") for q in out["queued"]] == [DIGEST], (body, out)
    assert len(jobs_of(service, "verify_remote")) == 1


def test_cloudevent_binary_mode(client, service):
    r = post(client, {"reference": f"{REMOTE}/team/gemma@{DIGEST}"},
             {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/ci",
              "ce-type": "com.example.model.published"})
    assert r.status_code == 202, r.text
    assert r.json()["format"] == "cloudevents" and r.json()["queued"][0]["event"] == "b-1"
    # Binary mode with the reference itself as text data.
    r = post(client, None, {"Content-Type": "text/plain", "ce-specversion": "1.0",
                            "ce-id": "b-2", "ce-source": "/ci", "ce-type": "published"},
             raw=f"{REMOTE}/team/gemma@{DIGEST}".encode())
    assert r.status_code == 202, r.text
    assert r.json()["queued"][0]["job"] == jobs_of(service, "verify_remote")[0].id


def test_cloudevent_batch_and_non_push_types(client, service):
    batch = [
        cloudevent({"reference": f"{REMOTE}/team/gemma@{DIGEST}"}),
        cloudevent({"reference": f"{REMOTE}/team/gemma@{OTHER}"},
                   type_="io.cncf.distribution.manifest.pulled", id="ce-pulled"),
        {"specversion": "1.0", "id": "ce-bad"},
        cloudevent({"nothing": "here"}, id="ce-empty"),
    ]
    r = post(client, batch, {"Content-Type": "application/cloudevents-batch+json"})
    assert r.status_code == 202, r.text
    out = r.json()
    assert len(out["queued"]) == 1
    ignored = {i["event"]: i["reason"] for i in out["ignored"]}
    assert "is not a push" in ignored["ce-pulled"]
    assert "source, type missing" in ignored["ce-bad"]
    assert "no reference" in ignored["ce-empty"]


@pytest.mark.parametrize("body", [
    {"specversion": "1.0", "id": "x", "type": "t"},               # no source
    {"specversion": "0.3", "id": "x", "source": "s", "type": "t", "data": "a/b"},
    cloudevent({"nothing": "here"}),
    cloudevent("Not A Reference"),
])
def test_malformed_single_cloudevent_is_400(client, service, body):
    problem(post(client, body), 400)
    assert remote_rows(service) == []


# ------------------------------------------------------------------------ plain format


def test_plain_local_references(client, service):
    digest = push_ollama(client, "team/tiny", "v1", model_bytes())
    verify(service, "team/tiny", digest)
    for ref in ("registry.test/team/tiny:v1", f"registry.test/team/tiny@{digest}",
                "team/tiny:v1", "http://registry.test/team/tiny:v1"):
        out = post(client, {"reference": ref}).json()
        (queued,) = out["queued"]
        assert (queued["location"], queued["digest"]) == ("local", digest), (ref, out)
    assert len([j for j in jobs_of(service, "verify") if j.status == "queued"]) == 1
    assert remote_rows(service) == []


def test_public_url_counts_as_this_registry(client, service):
    client.app.state.settings.public_url = "https://models.example.com"
    digest = push_ollama(client, "team/tiny", "v1", model_bytes())
    out = post(client, {"reference": "models.example.com/team/tiny:v1"}).json()
    assert out["queued"][0]["location"] == "local" and out["queued"][0]["digest"] == digest
    out = post(client, {"reference": "models.example.com:443/team/tiny:v1"}).json()
    assert out["queued"][0]["location"] == "local"


def test_plain_local_errors(client, service):
    push_image(client, "team/image", "v1")
    assert problem(post(client, {"reference": "team/nothing:v1"}), 404)["code"] == \
        "NAME_UNKNOWN"
    push_ollama(client, "team/tiny", "v1", model_bytes())
    problem(post(client, {"reference": "team/tiny:v2"}), 404)
    assert "not a model" in problem(post(client, {"reference": "team/image:v1"}), 409)[
        "detail"]


def test_plain_remote_by_tag_is_resolved_to_its_digest(client, service, live_url):
    peer = live_url.removeprefix("http://")
    digest = push_ollama(client, "team/tiny", "v1", model_bytes())
    out = post(client, {"reference": f"{peer}/team/tiny:v1"}).json()
    (queued,) = out["queued"]
    assert queued["location"] == "remote"
    assert queued["reference"] == f"{peer}/team/tiny@{digest}" and queued["tag"] == "v1"
    (row,) = remote_rows(service)
    assert row.digest == digest and row.content is not None
    assert "sha256:" + hashlib.sha256(row.content).hexdigest() == digest
    assert row.media_type == DOCKER_MANIFEST


def test_plain_remote_errors(client, service, live_url):
    peer = live_url.removeprefix("http://")
    push_image(client, "team/image", "v1")
    assert "not a model" in problem(post(client, {"reference": f"{peer}/team/image:v1"}),
                                    409)["detail"]
    problem(post(client, {"reference": f"{peer}/team/nothing:v1"}), 404)
    closed = f"127.0.0.1:{free_port()}"
    body = problem(post(client, {"reference": f"{closed}/team/tiny:v1"}), 502)
    assert closed in body["detail"]
    assert remote_rows(service) == []


@pytest.mark.parametrize("raw", [
    b"not json", b'"a string"', b"{}", b'{"events": "x"}', b'{"reference": 5}',
    b'{"reference": "Peer.example.com:5000/Team/X"}', b'{"reference": "team/x:bad tag"}',
    b'{"reference": "peer.example.com:99999/team/x"}', b"\xff\xfe",
    DEEP_JSON, b'{"reference": "peer.example.com/team/x:a\\ud800"}',
])
def test_malformed_bodies_are_400(client, service, raw):
    problem(post(client, None, raw=raw), 400)
    assert remote_rows(service) == []


@pytest.mark.parametrize("data", ["[" * 3000, '{"reference": "peer.example.com/x:a\\udc00"}'])
def test_hostile_json_in_cloudevent_data_is_400(client, service, data):
    """JSON text inside an event (structured or binary mode) is parsed as strictly as
    the body: deep nesting and lone surrogates are a 400, never a 500."""
    body = problem(post(client, cloudevent(data)), 400)
    assert "not valid JSON" in body["detail"], body
    binary = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/ci", "ce-type": "t"}
    body = problem(post(client, None, binary, raw=data.encode()), 400)
    assert "not valid JSON" in body["detail"], body
    assert remote_rows(service) == []


def test_oversized_body_is_refused(client):
    problem(post(client, None, raw=b"{" + b" " * (1024 * 1024) + b"}"), 413)


# ------------------------------------------------------------------------ the records


def test_verifications_of_a_remote_reference(client, service):
    ref = f"{REMOTE}/team/gemma"
    lookup(client, f"{ref}:v1", 404)
    post(client, envelope(distribution_event()))
    for text in (f"{ref}:v1", f"{ref}@{DIGEST}", f"{ref}:v1@{DIGEST}",
                 f"http://{ref}:v1"):
        body = lookup(client, text)
        assert (body["location"], body["reference"], body["status"], body["tag"],
                body["verifications"]) == ("remote", f"{ref}@{DIGEST}", "queued", "v1", []), \
            (text, body)
        assert body["job"]["status"] == "queued"
    lookup(client, f"{ref}:v2", 404)
    lookup(client, f"{ref}@{OTHER}", 404)
    lookup(client, "other.example.com/team/gemma:v1", 404)

    # Two runs, recorded as the worker does: newest first, with their figures.
    row = remote_rows(service)[0]
    for passed, tps in ((False, None), (True, 31.5)):
        job = service.queue.claim(WORKER, ["verify_remote"])
        target = service.remote.target(row.id)
        service.remote.start(row.id)
        assert lookup(client, f"{ref}:v1")["status"] == "verifying"
        data = report(passed, None if passed else "llama.cpp could not load it",
                      tps or 1.0)
        result = service.remote.finish(target, job_id=job.id, worker=WORKER, report=data,
                                       started_at=datetime.now(UTC))
        assert result["verdict"] == ("passed" if passed else "failed")
        if not passed:  # the next run is asked for again
            post(client, {"reference": f"{ref}@{DIGEST}"})
    body = lookup(client, f"{ref}:v1")
    assert body["status"] == "ready" and body["reason"] is None
    first, second = body["verifications"]
    assert first["verdict"] == "passed" and first["figures"]["generation_tps"] == 31.5
    assert second["verdict"] == "failed" and second["reason"] == "llama.cpp could not load it"
    assert body["job"]["status"] == "done"
    with service.db.read() as conn:
        rows = conn.execute(select(verifications)).all()
    assert {(r.manifest_id, r.remote_model_id) for r in rows} == {(None, row.id)}


def test_remote_results_go_out_as_webhook_events(client, service):
    hook = service.events.create("http://receiver.example.com/hook", "s" * 20,
                                 ["verification.succeeded", "verification.failed"])
    post(client, envelope(distribution_event()))
    job = service.queue.claim(WORKER, ["verify_remote"])
    target = service.remote.target(remote_rows(service)[0].id)
    service.remote.finish(target, job_id=job.id, worker=WORKER, report=report(True),
                          started_at=datetime.now(UTC))
    with service.db.read() as conn:
        (delivery,) = conn.execute(select(deliveries).where(
            deliveries.c.webhook_id == hook["id"])).all()
    assert delivery.action == "verification.succeeded"
    (event,) = json.loads(delivery.body)["events"]
    assert event["target"]["repository"] == "team/gemma"
    assert event["target"]["digest"] == DIGEST
    assert event["verification"]["reference"] == f"{REMOTE}/team/gemma@{DIGEST}"
    assert event["verification"]["verdict"] == "passed"


def test_verifications_of_a_local_reference(client, service):
    digest = push_ollama(client, "team/tiny", "v1", model_bytes())
    assert lookup(client, "team/tiny:v1")["status"] == "queued"
    verify(service, "team/tiny", digest, passed=False, reason="bad")
    service.verification.request("team/tiny", digest)
    verify(service, "team/tiny", digest, tps=12.5)
    for text in ("team/tiny:v1", f"team/tiny@{digest}", "registry.test/team/tiny:v1"):
        body = lookup(client, text)
        assert (body["location"], body["digest"], body["status"]) == (
            "local", digest, "ready"), text
        assert [v["verdict"] for v in body["verifications"]] == ["passed", "failed"]
        assert body["verifications"][0]["figures"]["generation_tps"] == 12.5
    lookup(client, "team/tiny:v2", 404)
    lookup(client, "team/none:v1", 404)


@pytest.mark.parametrize("query", ["", "?reference=", "?reference=Team/X",
                                   "?reference=team/x:bad%20tag",
                                   "?reference=team/x@sha256:short"])
def test_verifications_bad_references_are_400(client, query):
    problem(client.get(f"/api/v1/verifications{query}"), 400)


# ------------------------------------------------------------------ the worker's side


@pytest.fixture
def worker(settings, client):
    from worker.pool import Worker

    w = Worker(settings, name="hooks-test")
    yield w
    w.close()


def run_one(worker) -> str:
    from worker.remote import run_remote_job

    job = worker.queue.claim(worker.worker_id, ["verify_remote"])
    assert job is not None, "no verify_remote job"
    return run_remote_job(worker, job)


def test_worker_pulls_a_remote_model_and_records_the_verdict(client, service, live_url,
                                                             worker):
    peer = live_url.removeprefix("http://")
    digest = push_ollama(client, "team/tiny", "v1", model_bytes())
    post(client, {"reference": f"{peer}/team/tiny@{digest}"})  # by digest: no content yet
    # The tiny test GGUF has no transformer blocks: llama.cpp refuses it, a real verdict.
    assert run_one(worker) == "failed"
    body = lookup(client, f"{peer}/team/tiny@{digest}")
    assert body["status"] == "failed" and body["reason"]
    (run,) = body["verifications"]
    assert run["verdict"] == "failed" and run["backend"] == "llama.cpp", run
    assert body["job"]["status"] == "done"
    row = remote_rows(service)[0]
    assert row.content is not None and row.media_type == DOCKER_MANIFEST
    # The GGUF is in the worker's model cache, under its digest.
    model = "sha256:" + hashlib.sha256(model_bytes()).hexdigest()
    cached = worker.settings.model_cache_root / "blobs" / "sha256" / model[7:]
    assert cached.read_bytes() == model_bytes()


def test_worker_marks_a_remote_non_model(client, service, live_url, worker):
    peer = live_url.removeprefix("http://")
    digest, _ = push_image(client, "team/image", "v1")
    post(client, {"reference": f"{peer}/team/image@{digest}"})
    assert run_one(worker) == "not a model"
    body = lookup(client, f"{peer}/team/image@{digest}")
    assert (body["status"], body["reason"], body["verifications"]) == (
        "failed", "not a model", [])


@pytest.mark.slow  # waits out the worker's retry backoff
def test_worker_retries_an_unreachable_registry_and_fails_a_missing_model(
        client, service, live_url, worker):
    closed = f"127.0.0.1:{free_port()}"
    post(client, {"reference": f"{closed}/team/tiny@{DIGEST}"})
    assert run_one(worker) == "retry"
    body = lookup(client, f"{closed}/team/tiny@{DIGEST}")
    assert body["status"] == "queued" and "will retry" in body["reason"], body
    assert body["job"]["status"] == "queued" and body["job"]["attempts"] == 1

    peer = live_url.removeprefix("http://")
    post(client, {"reference": f"{peer}/team/gone@{OTHER}"})
    with service.db.write() as conn:  # let the retry wait; claim the other one
        conn.execute(jobs.update().where(jobs.c.status == "queued",
                                         jobs.c.attempts == 1)
                     .values(run_after=datetime(2999, 1, 1, tzinfo=UTC)))
    assert run_one(worker) == "failed"
    body = lookup(client, f"{peer}/team/gone@{OTHER}")
    assert body["status"] == "failed" and "cannot pull" in body["reason"], body
    assert body["job"]["status"] == "done"
