"""Outbound safety, probed as an attacker would, every target a listener on loopback.

Remote validation (``POST /api/v1/hooks/validate`` and the worker's pull), webhook
deliveries and the redirects and token realms they meet go only where the outbound
policy allows (``client.outbound``): by default no loopback, private,
link-local or metadata address for what a caller names, no loopback, link-local or
metadata address for webhooks. Each ``Listener`` counts every connection it accepts, so
"nothing left for a denied address" is asserted, not assumed. Credentials go only to
the registry they were given for.

Names that resolve to a loopback address need a DNS answer this machine cannot get from
a real resolver: ``resolve_to_loopback`` stands in for DNS, for those names only.
"""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from registry.db.tables import deliveries, jobs, remote_models, utcnow
from tests.support.hostile import Listener, Seen
from tests.support.oci import DOCKER_MANIFEST, push_image, sha256
from tests.support.processes import free_port

TOKEN = "outbound-hook-token-0123"
HOOK = "/api/v1/hooks/validate"
DIGEST = "sha256:" + "ab" * 32
OLLAMA_CONFIG = "application/vnd.docker.container.image.v1+json"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
EVIL_NAME = "internal.example.test"  # resolved to 127.0.0.1 by resolve_to_loopback


@pytest.fixture(autouse=True)
def hooks_on(settings):
    settings.hook_token = TOKEN
    settings.outbound_allow = None  # the defaults, unless a test opens something


@pytest.fixture
def canary():
    """An internal service nobody outside may reach: it must never see a connection."""
    with Listener() as listener:
        yield listener


@pytest.fixture
def resolve_to_loopback(monkeypatch):
    """DNS stand-in: ``EVIL_NAME`` resolves to 127.0.0.1; every other name as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.lower().rstrip(".") == EVIL_NAME:
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def worker(settings, client):
    from worker.pool import Worker

    w = Worker(settings, name="outbound-test")
    yield w
    w.close()


def validate(client, body: dict, headers: dict | None = None):
    return client.post(HOOK, content=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json",
                                "Authorization": f"Bearer {TOKEN}", **(headers or {})})


def run_one(worker) -> str:
    from worker.remote import run_remote_job

    job = worker.queue.claim(worker.worker_id, ["verify_remote"])
    assert job is not None, "no verify_remote job"
    return run_remote_job(worker, job)


def nothing_queued(service) -> bool:
    with service.db.read() as conn:
        return (conn.execute(select(func.count()).select_from(remote_models)).scalar_one()
                == 0 and conn.execute(select(func.count()).select_from(jobs).where(
                    jobs.c.kind == "verify_remote")).scalar_one() == 0)


def detail_without(body: dict, *texts: str) -> str:
    detail = body["detail"]
    for text in texts:
        detail = detail.replace(text, "<ref>")
    return detail


def ollama_manifest(model: bytes) -> bytes:
    config = json.dumps({"model_format": "gguf", "model_family": "llama"}).encode()
    return json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": OLLAMA_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OLLAMA_MODEL, "digest": sha256(model), "size": len(model)}],
    }).encode()


# ------------------------------------------------------------------ remote validation


def test_references_to_internal_addresses_never_connect(client, service, canary):
    port = canary.port
    refs = [f"127.0.0.1:{port}/team/m:v1", f"localhost:{port}/team/m:v1",
            f"http://127.0.0.1:{port}/team/m@{DIGEST}", f"[::1]:{port}/team/m:v1",
            f"[::ffff:127.0.0.1]:{port}/team/m:v1", "169.254.169.254/latest/meta:v1",
            "10.0.0.1:5000/team/m:v1", "0.0.0.0:5000/team/m:v1"]
    details = set()
    for ref in refs:
        r = validate(client, {"reference": ref})
        assert r.status_code == 502, (ref, r.text)
        details.add(detail_without(r.json(), ref.removeprefix("http://")))
    assert len(details) == 1, details  # one answer whatever the address
    assert "ASSAY_OUTBOUND_ALLOW" in details.pop()

    # A Distribution envelope's target.url and request.host name the registry too.
    event = {"id": "e1", "action": "push",
             "target": {"mediaType": DOCKER_MANIFEST, "digest": DIGEST, "repository": "team/m",
                        "url": f"http://127.0.0.1:{port}/v2/team/m/manifests/{DIGEST}"},
             "request": {"host": f"127.0.0.1:{port}"}}
    r = validate(client, {"events": [event]})
    assert r.status_code == 202, r.text
    (ignored,) = r.json()["ignored"]
    assert "cannot reach" in ignored["reason"] and r.json()["queued"] == []
    assert canary.hits == 0 and nothing_queued(service)


def test_a_host_header_does_not_make_the_registry_pull_from_itself(client, service, live_url):
    myself = live_url.removeprefix("http://")
    push_image(client, "team/m", "v1")
    r = validate(client, {"reference": f"{myself}/team/m:v1"},
                 headers={"Host": "someone-else.example"})
    assert r.status_code == 502, r.text
    assert nothing_queued(service)


def test_names_are_judged_on_the_addresses_they_resolve_to(client, service, worker, canary,
                                                           resolve_to_loopback):
    by_tag = f"{EVIL_NAME}:{canary.port}/team/m:v1"
    r = validate(client, {"reference": by_tag})
    assert r.status_code == 502 and "cannot reach" in r.json()["detail"], r.text

    # By digest nothing is fetched at submit time: the worker's connection is refused.
    by_digest = f"http://{EVIL_NAME}:{canary.port}/team/m@{DIGEST}"
    assert validate(client, {"reference": by_digest}).status_code == 202
    assert run_one(worker) == "failed"
    r = client.get("/api/v1/verifications", params={"reference": by_digest[7:]})
    body = r.json()
    assert body["status"] == "failed" and "outbound policy" in body["reason"], body
    assert "127.0.0.1" not in json.dumps(body)  # where it resolved stays in the log
    assert canary.hits == 0


@pytest.mark.slow  # real outbound connections to local listeners, with their timeouts
def test_failures_read_alike_so_ports_cannot_be_mapped(client, settings):
    """Closed, silent, redirecting and failing ports (allowed here, as an operator would
    allow an internal registry) all give the caller one answer."""
    settings.outbound_allow = "127.0.0.1"
    closed = free_port()
    with Listener() as silent, \
            Listener(lambda s: (307, {"Location": "https://example.com/"}, b"")) as moved, \
            Listener(lambda s: (500, {}, b"internal details")) as failing:
        details = set()
        for port in (closed, silent.port, moved.port, failing.port):
            ref = f"127.0.0.1:{port}/team/m:v1"
            r = validate(client, {"reference": ref})
            assert r.status_code == 502, r.text
            details.add(detail_without(r.json(), ref))
        assert silent.hits and moved.hits and failing.hits  # they were really asked
    assert len(details) == 1, details
    text = details.pop()
    for leak in ("refused", "closed", "307", "500", "internal details"):
        assert leak not in text


@pytest.mark.slow  # real outbound connections to local listeners, with their timeouts
def test_redirects_are_judged_on_every_hop(client, settings, worker, canary):
    """An allowed registry that redirects a blob download to an internal address: the
    hop is refused before it connects, and the model fails without retries."""
    model = b"GGUF" + bytes(60)
    manifest = ollama_manifest(model)

    def registry(seen: Seen):
        if seen.path == "/v2/":
            return 200, {"Content-Type": "application/json"}, b"{}"
        if "/manifests/" in seen.path:
            return 200, {"Content-Type": DOCKER_MANIFEST,
                         "Docker-Content-Digest": sha256(manifest)}, manifest
        return 307, {"Location": f"{canary.url}/blob"}, b""

    with Listener(registry) as upstream:
        settings.outbound_allow = upstream.host_port
        ref = f"{upstream.host_port}/team/m@{sha256(manifest)}"
        assert validate(client, {"reference": ref}).status_code == 202
        assert run_one(worker) == "failed"
        assert any("/blobs/" in s.path for s in upstream.requests)
    body = client.get("/api/v1/verifications", params={"reference": ref}).json()
    assert body["status"] == "failed" and "outbound policy" in body["reason"], body
    assert body["job"]["attempts"] == 1
    assert canary.hits == 0


# ------------------------------------------------------------------ credentials


def challenge(header: str):
    def answer(seen: Seen):
        return 401, {"WWW-Authenticate": header, "Content-Type": "application/json"}, \
            b'{"errors": [{"code": "UNAUTHORIZED", "message": "log in"}]}'
    return answer


@pytest.mark.slow  # real outbound connections to local listeners, with their timeouts
def test_environment_credentials_go_only_to_the_registry_they_name(client, settings,
                                                                   monkeypatch):
    monkeypatch.setenv("ASSAY_TOKEN", "assay_pat_worker_secret")
    monkeypatch.delenv("ASSAY_REGISTRY", raising=False)
    monkeypatch.setenv("ASSAY_CONFIG_DIR", "/nonexistent-assay-config")
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent-docker-config")
    with Listener(challenge('Basic realm="registry"')) as stranger:
        settings.outbound_allow = stranger.host_port
        r = validate(client, {"reference": f"{stranger.host_port}/cred/leak:t"})
        assert r.status_code == 502, r.text
        assert stranger.requests and stranger.authorizations() == []

    # Bound to a registry by ASSAY_REGISTRY, they go there, and only there.
    with Listener(challenge('Basic realm="registry"')) as bound:
        settings.outbound_allow = bound.host_port
        monkeypatch.setenv("ASSAY_REGISTRY", bound.host_port)
        validate(client, {"reference": f"{bound.host_port}/cred/ok:t"})
        assert bound.authorizations(), "the bound registry got no credentials"


def test_a_realm_on_another_port_gets_no_credentials(client, settings, monkeypatch):
    monkeypatch.setenv("ASSAY_TOKEN", "assay_pat_worker_secret")
    with Listener(challenge("Basic")) as realm:
        bearer = f'Bearer realm="http://127.0.0.1:{realm.port}/token",service="x"'
        with Listener(challenge(bearer)) as upstream:
            monkeypatch.setenv("ASSAY_REGISTRY", upstream.host_port)
            settings.outbound_allow = f"{upstream.host_port},{realm.host_port}"
            r = validate(client, {"reference": f"{upstream.host_port}/cred/leak:t"})
            assert r.status_code == 502, r.text
            assert realm.requests, "the realm was never asked (the test proves nothing)"
            assert realm.authorizations() == [] and upstream.authorizations() == []


# ------------------------------------------------------------------ webhooks


def subscribe(client, url: str):
    return client.post("/api/v1/webhooks", json={"url": url, "secret": "s" * 20})


def test_webhook_urls_at_internal_addresses_are_refused(client):
    for url in ("http://127.0.0.1:9/x", "http://localhost:9/x", "http://[::1]:9/x",
                "http://169.254.169.254/latest/meta-data", "http://[fd00:ec2::254]/",
                "http://0.0.0.0:9/x"):
        r = subscribe(client, url)
        assert r.status_code == 400 and "ASSAY_OUTBOUND_ALLOW" in r.json()["detail"], r.text
    assert subscribe(client, "http://10.1.2.3:8080/ci").status_code == 201  # private: fine


def test_webhook_deliveries_never_reach_a_name_that_resolves_inside(client, service, settings,
                                                                    canary,
                                                                    resolve_to_loopback):
    from registry.db.queue import JobQueue
    from worker.deliver import Deliverer

    offset = [timedelta(0)]

    def clock():
        return utcnow() + offset[0]

    queue = JobQueue(service.db, lease_seconds=60, backoff_base=1, backoff_max=1, clock=clock)
    hook = subscribe(client, f"http://{EVIL_NAME}:{canary.port}/x").json()
    push_image(client, "team/m", "v1")
    deliverer = Deliverer(service, queue=queue, clock=clock,
                          worker_id="outbound-test-deliver@here:1:0")
    try:
        outcomes = deliverer.drain(limit=3)
    finally:
        deliverer.close()
    assert outcomes and set(outcomes) == {"pending"}, outcomes
    with service.db.read() as conn:
        rows = conn.execute(select(deliveries).where(
            deliveries.c.webhook_id == hook["id"])).all()
    assert len(rows) == len(outcomes)
    for row in rows:
        assert "not an allowed destination" in row.last_error, row.last_error
    assert canary.hits == 0

    # Opened by the operator, the same subscriber is delivered to.
    settings.outbound_allow = f"{EVIL_NAME}:{canary.port}"
    offset[0] = timedelta(hours=1)
    deliverer = Deliverer(service, queue=queue, clock=clock,
                          worker_id="outbound-test-deliver@here:1:1")
    try:
        deliverer.drain(limit=3)
    finally:
        deliverer.close()
    assert canary.hits >= 1
