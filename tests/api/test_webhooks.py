"""Outgoing webhooks on both stacks: subscriptions over REST, events in the outbox in the
change's own transaction, and delivery to a real HTTP receiver on loopback.

No worker process runs here: a test drives the delivery loop (``worker.deliver``) step by
step in-process, with its own job queue whose clock the test moves, so retries, backoff
and dead-lettering are reached deterministically and fast.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from registry.app import create_app
from registry.db.queue import JobQueue
from registry.db.tables import deliveries, jobs, manifests, secrets, utcnow, webhooks
from registry.secretbox import SecretUnreadable
from registry.services import RegistryService
from registry.settings import Settings
from tests.support.cli import assay
from tests.support.oci import OCI_MANIFEST, image_manifest, push_blob, push_image
from tests.support.processes import free_port
from tests.support.receiver import Receiver
from tests.support.rest import assert_problem
from tests.support.verification import FakeWorker, push_model, report
from worker.deliver import Deliverer

SECRET = "s3cret-0123456789abcdef"
EVENTS_TYPE = "application/vnd.docker.distribution.events.v1+json"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self):
        self.offset = timedelta(0)

    def __call__(self):
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def loopback_subscribers(settings):
    """The receivers here listen on loopback, which webhooks may not reach by default:
    opened as an operator whose CI server shares the registry's machine would."""
    settings.outbound_allow = "127.0.0.1"


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def clock():
    return Clock()


def make_deliverer(service, clock) -> Deliverer:
    """Backoff 1 s, 2 s, 4 s (cap) on the test's clock."""
    queue = JobQueue(service.db, lease_seconds=60, backoff_base=1.0, backoff_max=4.0,
                     clock=clock)
    return Deliverer(service, queue=queue, clock=clock, worker_id="test-deliver@here:1:0")


@pytest.fixture
def deliverer(service, clock):
    d = make_deliverer(service, clock)
    yield d
    d.close()


def subscribe(client, url: str, secret: str = SECRET, **fields) -> dict:
    r = client.post("/api/v1/webhooks", json={"url": url, "secret": secret, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def outbox(service) -> list:
    with service.db.read() as conn:
        return conn.execute(select(deliveries).order_by(deliveries.c.id)).all()


def deliver_jobs(service) -> list:
    with service.db.read() as conn:
        return conn.execute(select(jobs).where(jobs.c.kind == "deliver")
                            .order_by(jobs.c.id)).all()


def log(client, webhook_id: int, **params) -> list[dict]:
    r = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return r.json()["deliveries"]


def actions(service, webhook_id: int | None = None) -> list[tuple]:
    """(action, repository, tag, digest) of every outbox row, oldest first."""
    out = []
    for row in outbox(service):
        if webhook_id is None or row.webhook_id == webhook_id:
            t = json.loads(row.body)["events"][0]["target"]
            out.append((row.action, t["repository"], t.get("tag"), t["digest"]))
    return out


# ------------------------------------------------------------------- subscriptions


def test_subscription_crud_and_secret_never_returned(client):
    hook = subscribe(client, "https://ci.example.com/hooks/assay?x=1",
                     events=["verification.succeeded", "push", "push"], repository="team/*")
    assert set(hook) == {"id", "url", "events", "repository", "active", "secret",
                         "created_at", "deliveries"}
    assert (hook["url"], hook["events"], hook["repository"], hook["active"]) == \
        ("https://ci.example.com/hooks/assay?x=1", ["push", "verification.succeeded"],
         "team/*", True)
    assert hook["secret"] == "****" + SECRET[-4:] and SECRET not in json.dumps(hook)
    assert hook["deliveries"] == {"pending": 0, "delivered": 0, "dead": 0}

    every = subscribe(client, "http://127.0.0.1:9/x", secret="short")
    assert (every["events"], every["repository"], every["secret"]) == ([], None, "****")

    r = client.get("/api/v1/webhooks")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert [h["id"] for h in r.json()["webhooks"]] == [hook["id"], every["id"]]
    assert SECRET not in r.text and "short" not in r.text
    r = client.get(f"/api/v1/webhooks/{hook['id']}")
    assert r.status_code == 200 and r.json() == hook

    r = client.delete(f"/api/v1/webhooks/{hook['id']}")
    assert r.status_code == 200 and r.json() == {"deleted": hook["id"]}
    assert_problem(client.get(f"/api/v1/webhooks/{hook['id']}"), 404)
    assert_problem(client.delete(f"/api/v1/webhooks/{hook['id']}"), 404)
    assert_problem(client.get(f"/api/v1/webhooks/{hook['id']}/deliveries"), 404)
    assert_problem(client.get("/api/v1/webhooks/99999999999999999999"), 404)
    assert [h["id"] for h in client.get("/api/v1/webhooks").json()["webhooks"]] == \
        [every["id"]]


@pytest.mark.parametrize("body, fragment", [
    ({"secret": SECRET}, "url"),
    ({"url": "ftp://example.com/x", "secret": SECRET}, "http"),
    ({"url": "http:///nohost", "secret": SECRET}, "host"),
    ({"url": "http://example.com:99999/", "secret": SECRET}, "url"),
    ({"url": 42, "secret": SECRET}, "url"),
    ({"url": "http://example.com/\x00", "secret": SECRET}, "url"),
    ({"url": "http://example.com/"}, "secret"),
    ({"url": "http://example.com/", "secret": ""}, "secret"),
    ({"url": "http://example.com/", "secret": "x" * 256}, "secret"),
    ({"url": "http://example.com/", "secret": SECRET, "events": ["pull"]}, "pull"),
    ({"url": "http://example.com/", "secret": SECRET, "events": "push"}, "events"),
    ({"url": "http://example.com/", "secret": SECRET, "events": [1]}, "events"),
    ({"url": "http://example.com/", "secret": SECRET, "repository": 7}, "repository"),
    ({"url": "http://example.com/", "secret": SECRET, "event": ["push"]}, "event"),
    ([1, 2], "object"),
])
def test_bad_subscriptions_are_problem_json(client, body, fragment):
    r = client.post("/api/v1/webhooks", json=body)
    problem = assert_problem(r, 400, "UNSUPPORTED")
    assert fragment in problem["detail"], problem
    assert client.get("/api/v1/webhooks").json() == {"webhooks": []}


def test_not_json_and_bad_pages(client):
    assert_problem(client.post("/api/v1/webhooks", content=b"{nope"), 400)
    hook = subscribe(client, "http://127.0.0.1:9/x")
    for query in ("n=-1", "n=x", "n=%D9%A3", "last=abc", "last="):
        assert_problem(client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?{query}"), 400)
    assert_problem(client.post(f"/api/v1/webhooks/{hook['id']}/deliveries/5/redeliver"), 404)
    assert_problem(client.get(f"/api/v1/webhooks/{hook['id']}/deliveries/5"), 404)


# ------------------------------------------------------------------------- the outbox


def test_push_writes_outbox_rows_and_jobs_with_the_change(client, service, receiver):
    hook = subscribe(client, receiver.url)
    digest, body = push_image(client, "team/app", "v1")
    rows = outbox(service)
    assert [(r.webhook_id, r.action, r.status, r.attempts) for r in rows] == \
        [(hook["id"], "push", "pending", 0), (hook["id"], "tag", "pending", 0)]
    assert rows[0].event_id != rows[1].event_id
    queued = deliver_jobs(service)
    assert [(j.status, json.loads(j.payload)) for j in queued] == \
        [("queued", {"delivery_id": rows[0].id}), ("queued", {"delivery_id": rows[1].id})]
    assert queued[0].max_attempts == service.settings.webhook_max_attempts
    event = json.loads(rows[0].body)["events"][0]
    assert event["target"] == {
        "mediaType": OCI_MANIFEST, "digest": digest, "size": len(body), "length": len(body),
        "repository": "team/app", "tag": "v1",
        "url": f"http://127.0.0.1:5000/v2/team/app/manifests/{digest}"}
    # Nothing is sent by the registry itself: delivery is the worker's job.
    assert receiver.received == []
    assert client.get(f"/api/v1/webhooks/{hook['id']}").json()["deliveries"] == \
        {"pending": 2, "delivered": 0, "dead": 0}


def test_a_rolled_back_change_leaves_no_delivery(client, service, receiver, monkeypatch):
    subscribe(client, receiver.url)
    # The manifest PUT fails after its events were written: all of it is rolled back.
    config, layer = b'{"rollback": 1}', b"rollback layer"
    for blob in (config, layer):
        push_blob(client, "team/rollback", blob)
    real_emit = service.events.emit

    def emit_then_fail(conn, *args, **kwargs):
        ids = real_emit(conn, *args, **kwargs)
        assert ids and deliver_jobs(service) == []  # not visible outside the transaction
        raise RuntimeError("the change fails after its events were written")

    monkeypatch.setattr(service.events, "emit", emit_then_fail)
    with pytest.raises(RuntimeError):
        service.manifests.put("team/rollback", "v1", image_manifest(config, [layer]),
                              OCI_MANIFEST)
    monkeypatch.undo()
    with service.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(manifests)).scalar() == 0
    assert outbox(service) == [] and deliver_jobs(service) == []

    # The same at the service boundary: an emit inside a transaction that rolls back.
    with pytest.raises(ZeroDivisionError), service.db.write() as conn:
        assert service.events.emit(conn, "push", "team/x", {"digest": "sha256:" + "0" * 64})
        1 / 0  # noqa: B018
    assert outbox(service) == [] and deliver_jobs(service) == []


def test_events_for_push_tag_move_and_delete(client, service):
    hook = subscribe(client, "http://127.0.0.1:9/x")
    d1, _ = push_image(client, "team/app", "v1")
    push_image(client, "team/app", "v1")                    # the same again: no event
    d2, _ = push_image(client, "team/app", "v1", layers=[b"another layer"])  # tag moves
    r = client.put("/v2/team/app/manifests/stable", headers={"Content-Type": OCI_MANIFEST},
                   content=client.get(f"/v2/team/app/manifests/{d1}").content)
    assert r.status_code == 201                             # a new tag: no new manifest
    assert client.delete("/v2/team/app/manifests/stable").status_code == 202
    assert client.delete(f"/v2/team/app/manifests/{d2}").status_code == 202
    assert actions(service, hook["id"]) == [
        ("push", "team/app", "v1", d1), ("tag", "team/app", "v1", d1),
        ("push", "team/app", "v1", d2), ("tag", "team/app", "v1", d2),
        ("tag", "team/app", "stable", d1),
        ("delete", "team/app", "stable", d1),
        ("delete", "team/app", None, d2),
    ]
    # A failed delete writes nothing.
    assert client.delete(f"/v2/team/app/manifests/{d2}").status_code == 404
    assert len(outbox(service)) == 7


def test_event_filter_and_repository_glob(client, service, receiver, deliverer):
    base = receiver.url
    team_push = subscribe(client, base + "/a", events=["push"], repository="team/*")
    tags_only = subscribe(client, base + "/b", events=["tag"])
    other_all = subscribe(client, base + "/c", repository="other")
    deletes = subscribe(client, base + "/d", events=["delete"], repository="team/?pp")
    d1, _ = push_image(client, "team/app", "v1")
    d2, _ = push_image(client, "other", "v1")
    push_image(client, "teams/app", "v1")
    assert client.delete("/v2/team/app/manifests/v1").status_code == 202
    assert actions(service, team_push["id"]) == [("push", "team/app", "v1", d1)]
    assert actions(service, tags_only["id"]) == [
        ("tag", "team/app", "v1", d1), ("tag", "other", "v1", d2),
        ("tag", "teams/app", "v1", actions(service, tags_only["id"])[2][3])]
    assert actions(service, other_all["id"]) == [("push", "other", "v1", d2),
                                                 ("tag", "other", "v1", d2)]
    assert actions(service, deletes["id"]) == [("delete", "team/app", "v1", d1)]

    assert deliverer.drain() == ["delivered"] * 7
    by_path: dict[str, list[str]] = {}
    for r in receiver.received:
        by_path.setdefault(r.path, []).append(r.event["action"])
    assert by_path == {"/hook/a": ["push"], "/hook/b": ["tag"] * 3,
                       "/hook/c": ["push", "tag"], "/hook/d": ["delete"]}


# ------------------------------------------------------------------------- delivery


def test_delivery_is_signed_and_distribution_shaped(client, service, receiver, deliverer):
    hook = subscribe(client, receiver.url, events=["push"])
    digest, body = push_image(client, "team/app", "v1")
    (row,) = outbox(service)
    assert deliverer.drain() == ["delivered"]
    (got,) = receiver.received
    assert got.path == "/hook"
    assert got.headers["content-type"] == EVENTS_TYPE
    # The signature is the HMAC-SHA256 of the raw body with the subscription's secret.
    expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-assay-signature"] == f"sha256={expected}"
    assert got.signature_ok(SECRET) and not got.signature_ok(SECRET + "x")
    assert got.body == row.body.encode()  # the outbox row is exactly what is sent
    assert got.headers["x-assay-event"] == row.event_id
    assert got.headers["x-assay-delivery"] == str(row.id)
    assert got.headers["x-assay-action"] == "push"

    envelope = got.json
    assert list(envelope) == ["events"] and len(envelope["events"]) == 1
    event = envelope["events"][0]
    assert set(event) == {"id", "timestamp", "action", "target", "source"}
    assert event["id"] == row.event_id and event["action"] == "push"
    assert TIMESTAMP.match(event["timestamp"]), event["timestamp"]
    assert event["target"] == {
        "mediaType": OCI_MANIFEST, "digest": digest, "size": len(body), "length": len(body),
        "repository": "team/app", "tag": "v1",
        "url": f"http://127.0.0.1:5000/v2/team/app/manifests/{digest}"}
    assert set(event["source"]) == {"addr", "instanceID"}
    assert event["source"]["addr"].endswith(":5000")

    (entry,) = log(client, hook["id"])
    assert entry["status"] == "delivered" and entry["attempts"] == 1
    assert entry["last_status_code"] == 204 and entry["last_error"] is None
    assert entry["delivered_at"] and entry["last_attempt_at"]
    assert entry["target"] == {"repository": "team/app", "digest": digest, "tag": "v1"}
    assert deliver_jobs(service)[0].status == "done"
    assert deliverer.drain() == []  # delivered once


def test_public_url_is_the_targets_base(settings, receiver):
    settings.public_url = "https://models.example.com/"
    with TestClient(create_app(settings, run_migrations=False)) as c:
        subscribe(c, receiver.url)
        digest, _ = push_image(c, "team/app", "v1")
        (row, _) = outbox(c.app.state.registry)
    assert json.loads(row.body)["events"][0]["target"]["url"] == \
        f"https://models.example.com/v2/team/app/manifests/{digest}"


def test_retries_with_backoff_then_dead_then_redeliver(client, service, receiver, deliverer,
                                                       clock):
    service.settings.webhook_max_attempts = 3
    hook = subscribe(client, receiver.url, events=["push"])
    push_image(client, "team/app", "v1")
    receiver.status = 500
    assert deliverer.drain() == ["pending"]
    (job,) = deliver_jobs(service)
    assert job.status == "queued" and job.attempts == 1
    (entry,) = log(client, hook["id"])
    assert (entry["status"], entry["attempts"], entry["last_status_code"]) == \
        ("pending", 1, 500)
    assert entry["last_error"] == "HTTP 500 Internal Server Error: answer 500"
    assert deliverer.drain() == []  # not due yet: backing off
    clock.advance(1.1)               # backoff 1 s after the first attempt
    assert deliverer.drain() == ["pending"]
    clock.advance(1.1)               # 2 s after the second: not yet
    assert deliverer.drain() == []
    clock.advance(1.0)
    assert deliverer.drain() == ["dead"]
    clock.advance(3600)
    assert deliverer.drain() == []   # dead-lettered: never tried again
    (entry,) = log(client, hook["id"])
    assert (entry["status"], entry["attempts"], entry["last_status_code"]) == ("dead", 3, 500)
    (job,) = deliver_jobs(service)
    assert (job.status, job.attempts) == ("failed", 3)
    assert len(receiver.received) == 3
    assert len({r.headers["x-assay-event"] for r in receiver.received}) == 1
    assert client.get(f"/api/v1/webhooks/{hook['id']}").json()["deliveries"] == \
        {"pending": 0, "delivered": 0, "dead": 1}

    # The receiver is fixed; a person redelivers the dead one by hand.
    receiver.status = 200
    r = client.post(f"/api/v1/webhooks/{hook['id']}/deliveries/{entry['id']}/redeliver")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending" and r.json()["job"] != job.id
    assert deliverer.drain() == ["delivered"]
    (entry,) = log(client, hook["id"])
    assert (entry["status"], entry["attempts"], entry["last_status_code"],
            entry["last_error"]) == ("delivered", 4, 200, None)
    assert len({r.headers["x-assay-event"] for r in receiver.received}) == 1


@pytest.mark.slow  # waits out the delivery retry backoff
def test_receiver_down_comes_back_and_gets_every_event_once(client, service, deliverer,
                                                           clock):
    port = free_port()  # nothing listens here yet
    receiver = Receiver(port=port)
    hook = subscribe(client, receiver.url)
    digests = [push_image(client, f"team/app{i}", "v1")[0] for i in range(3)]
    assert deliverer.drain() == ["pending"] * 6
    for entry in log(client, hook["id"]):
        assert entry["status"] == "pending" and entry["last_status_code"] is None
        assert entry["last_error"].startswith("ConnectError"), entry["last_error"]
    clock.advance(1.1)
    assert deliverer.drain() == ["pending"] * 6  # still down
    receiver.start()
    try:
        clock.advance(2.1)
        assert deliverer.drain() == ["delivered"] * 6
        clock.advance(3600)
        assert deliverer.drain() == []
        ids = [r.headers["x-assay-event"] for r in receiver.received]
        assert len(ids) == 6 and len(set(ids)) == 6
        assert sorted(ids) == sorted(row.event_id for row in outbox(service))
        assert sorted((r.event["action"], r.event["target"]["digest"])
                      for r in receiver.received) == \
            sorted((a, d) for d in digests for a in ("push", "tag"))
        assert {e["attempts"] for e in log(client, hook["id"])} == {3}
    finally:
        receiver.stop()


def test_outbox_survives_a_restart_between_commit_and_delivery(settings, receiver, clock):
    with TestClient(create_app(settings, run_migrations=False)) as first:
        hook = subscribe(first, receiver.url, events=["push"])
        digest, _ = push_image(first, "team/app", "v1")
    # The registry is gone (its engine disposed) before anything was delivered.
    assert receiver.received == []
    with TestClient(create_app(settings, run_migrations=False)) as second:
        service = second.app.state.registry
        d = make_deliverer(service, clock)
        try:
            assert d.drain() == ["delivered"]
        finally:
            d.close()
        (got,) = receiver.received
        assert got.signature_ok(SECRET)
        assert (got.event["action"], got.event["target"]["digest"]) == ("push", digest)
        (entry,) = log(second, hook["id"])
        assert entry["status"] == "delivered"


def test_unsubscribing_drops_queued_deliveries(client, service, receiver, deliverer):
    hook = subscribe(client, receiver.url)
    push_image(client, "team/app", "v1")
    assert client.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 200
    assert deliverer.drain() == ["skipped", "skipped"]
    assert receiver.received == [] and outbox(service) == []


def test_delivery_log_pages_newest_first_and_shows_the_body(client, service, receiver,
                                                          deliverer):
    hook = subscribe(client, receiver.url, events=["push"])
    for i in range(5):
        push_image(client, f"team/app{i}", "v1")
    receiver.status = 202
    deliverer.drain()
    r = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?n=2")
    page = r.json()["deliveries"]
    ids = [row.id for row in outbox(service)]
    assert [e["id"] for e in page] == ids[::-1][:2]
    assert r.headers["link"] == \
        f'</api/v1/webhooks/{hook["id"]}/deliveries?n=2&last={ids[3]}>; rel="next"'
    rest = log(client, hook["id"], n=10, last=ids[3])
    assert [e["id"] for e in rest] == ids[::-1][2:]
    assert "link" not in client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").headers
    assert {(e["status"], e["last_status_code"]) for e in log(client, hook["id"])} == \
        {("delivered", 202)}

    one = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{ids[0]}").json()
    assert one["body"].encode() == receiver.received[0].body
    # Another subscription's delivery is not found under this one.
    other = subscribe(client, receiver.url)
    assert_problem(client.get(f"/api/v1/webhooks/{other['id']}/deliveries/{ids[0]}"), 404)


# ---------------------------------------------------------------------- verification


def test_verification_events_carry_the_figures(client, service, receiver, deliverer):
    hook = subscribe(client, receiver.url, events=["verification.started",
                                                   "verification.succeeded",
                                                   "verification.failed"])
    good = push_model(client, "team/tiny", "v1")
    worker = FakeWorker(service, "team/tiny", good)
    worker.finish(report(passed=True, tps=42.5))
    bad = push_model(client, "team/tiny", "v2", variant="v2")
    worker = FakeWorker(service, "team/tiny", bad)
    worker.finish(report(passed=False, reason="llama_model_load: tensor type 99"))

    assert deliverer.drain() == ["delivered"] * 4
    events = receiver.events()
    assert [(e["action"], e["target"]["digest"]) for e in events] == [
        ("verification.started", good), ("verification.succeeded", good),
        ("verification.started", bad), ("verification.failed", bad)]
    assert all(r.signature_ok(SECRET) for r in receiver.received)
    started, passed, _, failed = events
    assert started["verification"] == {"status": "verifying", "verdict": None,
                                       "reason": None, "figures": None}
    assert started["target"]["tags"] == ["v1"] and started["target"]["repository"] == \
        "team/tiny"
    v = passed["verification"]
    assert (v["status"], v["verdict"], v["reason"], v["backend"]) == \
        ("ready", "passed", None, "llama.cpp")
    assert v["figures"]["generation_tps"] == 42.5 and v["figures"]["tokens_generated"] == 32
    assert v["referrer"] and "log_tail" not in v
    v = failed["verification"]
    assert (v["status"], v["verdict"], v["reason"]) == \
        ("failed", "failed", "llama_model_load: tensor type 99")
    assert [e["action"] for e in log(client, hook["id"])][::-1] == \
        [e["action"] for e in events]


def test_abandoned_verification_is_a_failed_event(client, service, receiver, deliverer):
    subscribe(client, receiver.url, events=["verification.failed"])
    digest = push_model(client, "team/tiny", "v1")
    worker = FakeWorker(service, "team/tiny", digest)
    service.verification.abandon(worker.target, "blob store unreachable")
    assert deliverer.drain() == ["delivered"]
    (event,) = receiver.events()
    assert event["verification"] == {
        "status": "failed", "verdict": None, "figures": None,
        "reason": "verification could not run: blob store unreachable"}


# ---------------------------------------------------------------- secrets at rest


def stored_secret(service, webhook_id: int) -> str:
    with service.db.read() as conn:
        return conn.execute(select(webhooks.c.secret)
                            .where(webhooks.c.id == webhook_id)).scalar_one()


def with_key(service, key: str) -> RegistryService:
    """Another process on the same database and store, with ``ASSAY_SECRETS_KEY=key``."""
    settings = service.settings.model_copy(update={"secrets_key": key})
    return RegistryService(service.db, service.store, settings)


def test_secret_is_sealed_at_rest_and_deliveries_still_signed(client, service, settings,
                                                             receiver, deliverer):
    hook = subscribe(client, receiver.url, events=["push"])
    stored = stored_secret(service, hook["id"])
    assert SECRET not in stored and stored.startswith("sealed:v1:")
    # No key configured: one generated into the data directory, readable by its owner only.
    key_file = settings.data_dir / "secrets.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    with service.db.read() as conn:  # and not into the database
        assert key_file.read_text().strip() not in json.dumps(
            [list(map(str, r)) for r in conn.execute(select(secrets)).all()])
    assert client.get(f"/api/v1/webhooks/{hook['id']}").json()["secret"] == "****" + SECRET[-4:]

    push_image(client, "team/app", "v1")
    assert deliverer.drain() == ["delivered"]
    (got,) = receiver.received
    assert got.signature_ok(SECRET)


def test_a_process_with_another_key_fails_the_delivery_clearly(client, service, receiver,
                                                              deliverer, clock):
    hook = subscribe(client, receiver.url, events=["push"])
    push_image(client, "team/app", "v1")
    stranger = make_deliverer(with_key(service, Fernet.generate_key().decode()), clock)
    try:
        assert stranger.drain() == ["pending"]  # a failed attempt, retried with backoff
        assert stranger.drain() == []
    finally:
        stranger.close()
    assert receiver.received == []  # nothing sent, above all not unsigned
    (entry,) = log(client, hook["id"])
    assert entry["status"] == "pending" and entry["last_status_code"] is None
    assert entry["last_error"].startswith(f"webhook {hook['id']}: a stored secret does not "
                                          "open with ASSAY_SECRETS_KEY"), entry["last_error"]
    assert "same ASSAY_SECRETS_KEY" in entry["last_error"]
    # Listing still works there, without the secret's tail; a process with the key delivers.
    other = TestClient(create_app(service.settings.model_copy(
        update={"secrets_key": Fernet.generate_key().decode()}), run_migrations=False))
    with other:
        assert other.get(f"/api/v1/webhooks/{hook['id']}").json()["secret"] == "****"
    clock.advance(1.1)
    assert deliverer.drain() == ["delivered"]
    assert receiver.received[0].signature_ok(SECRET)


def test_a_bad_key_stops_the_process_at_start(settings):
    for bad in ("not-a-key", Fernet.generate_key().decode() + ",short"):
        with pytest.raises(ValidationError, match="openssl rand -base64 32"):
            Settings(data_dir=settings.data_dir, secrets_key=bad)
    assert Settings(data_dir=settings.data_dir, secrets_key="").secrets_key is None


def test_a_secret_stored_before_sealing_works_and_gets_sealed(client, service, receiver,
                                                              deliverer):
    hook = subscribe(client, receiver.url, events=["push"])
    with service.db.write() as conn:  # as the code before sealing stored it
        conn.execute(update(webhooks).where(webhooks.c.id == hook["id"]).values(secret=SECRET))
    assert client.get(f"/api/v1/webhooks/{hook['id']}").json()["secret"] == "****" + SECRET[-4:]
    push_image(client, "team/app", "v1")
    assert deliverer.drain() == ["delivered"]
    assert receiver.received[-1].signature_ok(SECRET)

    # The delivery loop seals such secrets when it starts.
    deliverer.stop.set()
    deliverer.run()
    stored = stored_secret(service, hook["id"])
    assert stored.startswith("sealed:v1:") and SECRET not in stored
    assert service.events.reseal_secrets() == 0
    push_image(client, "team/app", "v2")
    fresh = make_deliverer(service, Clock())
    try:
        assert fresh.drain() == ["delivered"]
    finally:
        fresh.close()
    assert receiver.received[-1].signature_ok(SECRET)


def test_key_rotation_reseals_and_a_wrong_key_reseals_nothing(client, service, receiver):
    hook = subscribe(client, receiver.url)
    sealed = stored_secret(service, hook["id"])
    old = (service.settings.data_dir / "secrets.key").read_text().strip()
    new = Fernet.generate_key().decode()
    # A stranger's key opens nothing, so it seals nothing either.
    legacy = subscribe(client, receiver.url + "/legacy")
    with service.db.write() as conn:
        conn.execute(update(webhooks).where(webhooks.c.id == legacy["id"])
                     .values(secret=SECRET))
    with pytest.raises(SecretUnreadable, match=f"webhook {hook['id']}: "):
        with_key(service, new).events.reseal_secrets()
    assert stored_secret(service, legacy["id"]) == SECRET
    # "NEW,OLD": the first seals, both open; every secret moves to the new key.
    rotated = with_key(service, f"{new},{old}")
    assert rotated.events.reseal_secrets() == 2
    assert stored_secret(service, hook["id"]) != sealed
    only_new = with_key(service, new).events
    for wid in (hook["id"], legacy["id"]):
        assert only_new.box.open(stored_secret(service, wid)) == SECRET


# ------------------------------------------------------------------------------ CLI


def test_webhook_cli(live_url, client, receiver, deliverer):
    host = live_url.removeprefix("http://")
    reg = ("-r", host)

    # A generated secret is alone on stdout (for $(...)); what it is and the shown-once
    # warning are on stderr.
    secret = assay("webhook", "add", receiver.url, *reg, "--event", "push",
                   stream="stdout").strip()
    assert len(secret) == 64
    said = assay("webhook", "add", receiver.url + "/other", *reg, stream="stderr")
    assert said.splitlines() == [
        f"webhook 2: {receiver.url}/other (events: all)",
        "the secret of its X-Assay-Signature; save it now: it is shown only once"]
    assert assay("webhook", "rm", "2", *reg).strip() == "removed webhook 2"
    hooks = json.loads(assay("webhook", "ls", *reg, "--json"))
    assert [(h["id"], h["events"], h["repository"]) for h in hooks] == [(1, ["push"], None)]
    assert secret not in json.dumps(hooks)
    shown = assay("webhook", "show", "1", *reg)
    assert shown.splitlines()[:3] == ["webhook 1", f"  url        {receiver.url}",
                                      "  events     push"], shown
    assert json.loads(assay("webhook", "show", "1", *reg, "--json"))["id"] == 1

    push_image(client, "team/app", "v1")
    assert deliverer.drain() == ["delivered"]
    assert receiver.received[0].signature_ok(secret)
    table = assay("webhook", "deliveries", "1", *reg)
    assert table.splitlines()[0].split()[:4] == ["ID", "ACTION", "TARGET", "STATUS"]
    assert "push" in table and "team/app:v1" in table and "delivered" in table, table
    (entry,) = log(client, 1)
    out = assay("webhook", "redeliver", "1", str(entry["id"]), *reg)
    assert out.strip() == f"queued delivery {entry['id']} of webhook 1 again"
    assert deliverer.drain() == ["delivered"]
    assert len(receiver.received) == 2

    # The earlier spelling, the registry as the last argument, still works.
    assert json.loads(assay("webhook", "ls", host, "--json"))[0]["id"] == 1
    out = assay("webhook", "rm", "1", host)
    assert out.strip() == "removed webhook 1"
    assert json.loads(assay("webhook", "ls", *reg, "--json")) == []
    for args, code, text in [
            (["rm", "1", *reg], 1, "webhook 1 is not known"),
            (["add", "ftp://x", *reg, "--secret", "k"], 1, "http:// or https://"),
            (["add", receiver.url, *reg, "--event", "pull"], 2, "pull"),
            (["ls", "-r", f"{host}/team/app"], 1, "without a repository"),
            (["ls", host, "-r", "127.0.0.1:1"], 2, "two registries given")]:
        lines = assay("webhook", *args, code=code).splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], lines
