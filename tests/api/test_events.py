"""What each change writes into the webhook outbox: a client's push, a tag set or moved
(with the digest it pointed at before), and nothing for the registry's own artifacts."""

from __future__ import annotations

import json

from sqlalchemy import select

from registry.db.tables import deliveries
from tests.support.oci import OCI_MANIFEST, push_image
from tests.support.verification import push_model, verify


def events(service) -> list[dict]:
    """Every event in the outbox, oldest first."""
    with service.db.read() as conn:
        bodies = conn.execute(select(deliveries.c.body).order_by(deliveries.c.id)).scalars()
        return [json.loads(body)["events"][0] for body in bodies]


def summary(event: dict) -> tuple:
    t = event["target"]
    return (event["action"], t.get("tag"), t["digest"], t.get("previous", "-"))


def put_by_tag(client, name: str, tag: str, digest: str) -> None:
    content = client.get(f"/v2/{name}/manifests/{digest}").content
    r = client.put(f"/v2/{name}/manifests/{tag}", content=content,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text


def test_tag_events_name_the_digest_the_tag_pointed_at_before(client, service):
    service.events.create("https://ci.example.com/hooks", "s3cret")
    d1, _ = push_image(client, "team/app", "v1")
    d2, _ = push_image(client, "team/app", "v1", layers=[b"another layer"])  # v1 moves
    put_by_tag(client, "team/app", "stable", d1)   # an existing manifest, a new tag
    put_by_tag(client, "team/app", "stable", d2)   # an existing manifest, the tag moves
    put_by_tag(client, "team/app", "stable", d2)   # nothing changes: no event
    assert [summary(e) for e in events(service)] == [
        ("push", "v1", d1, "-"), ("tag", "v1", d1, None),
        ("push", "v1", d2, "-"), ("tag", "v1", d2, d1),
        ("tag", "stable", d1, None),
        ("tag", "stable", d2, d1),
    ]


def test_the_registrys_own_verification_referrer_is_not_a_push(client, service):
    service.events.create("https://ci.example.com/hooks", "s3cret")
    model = push_model(client, "team/tiny", "v1")
    row = verify(service, "team/tiny", model)
    referrers = client.get(f"/v2/team/tiny/referrers/{model}").json()["manifests"]
    assert [r["digest"] for r in referrers] == [row["referrer"]]
    assert [summary(e) for e in events(service)] == [
        ("push", "v1", model, "-"), ("tag", "v1", model, None),
        ("verification.started", None, model, "-"),
        ("verification.succeeded", None, model, "-"),
    ]
