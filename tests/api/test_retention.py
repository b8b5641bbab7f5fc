"""Retention: keep the newest N tags, delete old untagged manifests, keep what is needed."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, update

from registry.db.tables import deliveries, manifests, utcnow
from registry.maintenance import retention
from registry.maintenance.gc import collect
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, image_manifest, push_blob, push_image, sha256


def policy(client, ns: str, **settings) -> None:
    r = client.put(f"/api/v1/namespaces/{ns}", json=settings)
    assert r.status_code == 200, r.text


def tags_of(client, name: str) -> list[str]:
    return sorted(client.get(f"/v2/{name}/tags/list").json()["tags"] or [])


def has(client, name: str, digest: str) -> bool:
    return client.head(f"/v2/{name}/manifests/{digest}").status_code == 200


def put_manifest(client, name: str, body: bytes, ref: str | None = None) -> str:
    ref = ref or sha256(body)
    r = client.put(f"/v2/{name}/manifests/{ref}", content=body,
                   headers={"Content-Type": json.loads(body)["mediaType"]})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def untagged_image(client, name: str, label: str, **extra) -> tuple[str, bytes]:
    config, layer = json.dumps({"label": label}).encode(), f"layer {label}".encode()
    push_blob(client, name, config)
    push_blob(client, name, layer)
    body = image_manifest(config, [layer], **extra)
    return put_manifest(client, name, body), body


def age(service, *digests: str, days: int = 30) -> None:
    with service.db.write() as conn:
        conn.execute(update(manifests).where(manifests.c.digest.in_(digests))
                     .values(created_at=utcnow() - timedelta(days=days)))


def deleted(report) -> list[str]:
    return [d.target for d in report.deleted]


def test_keeps_the_newest_n_tags_of_each_repository(client, service):
    digests = {t: push_image(client, "team/a", t)[0] for t in ("v1", "v2", "v3", "v4")}
    push_image(client, "team/b", "x1")
    push_image(client, "other/c", "old")
    push_image(client, "other/c", "new")
    service.events.create("https://hooks.example/assay", "s3cret")
    policy(client, "team", keep_tags=2)
    # v2 is pushed again: the newest now, so it is kept and v3 goes.
    push_image(client, "team/a", "v2")
    report = retention.apply(service)
    assert sorted(deleted(report)) == ["team/a:v1", "team/a:v3"]
    assert all(d.reason == "older than the newest 2 tags" for d in report.deleted)
    assert tags_of(client, "team/a") == ["v2", "v4"]
    assert tags_of(client, "team/b") == ["x1"]
    assert tags_of(client, "other/c") == ["new", "old"]  # no policy in "other"
    assert has(client, "team/a", digests["v1"])  # only the tag went (no untagged_days)
    entries = client.get("/api/v1/audit", params={"action": "delete"}).json()["entries"]
    assert sorted(e["target"] for e in entries) == ["team/a:v1", "team/a:v3"]
    # Webhooks hear of them as of any DELETE: one "delete" event each, in the outbox.
    with service.db.read() as conn:
        events = [json.loads(r.body) for r in conn.execute(
            select(deliveries.c.body).where(deliveries.c.action == "delete"))]
    targets = [event["target"] for body in events for event in body["events"]]
    assert sorted((t["repository"], t["tag"]) for t in targets) == [
        ("team/a", "v1"), ("team/a", "v3")]
    assert retention.apply(service).deleted == []  # nothing more to do


def test_deletes_old_untagged_manifests_and_keeps_young_and_tagged(client, service):
    old, _ = untagged_image(client, "team/app", "old")
    young, _ = untagged_image(client, "team/app", "young")
    tagged, _ = push_image(client, "team/app", "v1")
    other, _ = untagged_image(client, "other/app", "no policy")
    age(service, old, tagged, other)
    policy(client, "team", untagged_days=7)
    report = retention.apply(service)
    assert deleted(report) == [f"team/app@{old}"]
    assert report.deleted[0].reason == "untagged for more than 7 days"
    assert not has(client, "team/app", old)
    assert has(client, "team/app", young) and has(client, "team/app", tagged)
    assert has(client, "other/app", other)
    # Ages are measured from ``now``: eight days on, the young one goes too.
    later = retention.apply(service, now=utcnow() + timedelta(days=8))
    assert deleted(later) == [f"team/app@{young}"]
    # A tag deleted by keep_tags leaves an untagged manifest that the same run deletes.
    push_image(client, "team/app", "v2")
    policy(client, "team", keep_tags=1)
    assert deleted(retention.apply(service)) == ["team/app:v1", f"team/app@{tagged}"]
    # Their blobs are GC's: freed after retention.
    assert collect(service).blobs >= 2
    assert client.get("/v2/team/app/manifests/v2").status_code == 200


def test_index_children_are_kept_and_go_with_their_index(client, service):
    a, body_a = untagged_image(client, "team/multi", "amd64")
    b, body_b = untagged_image(client, "team/multi", "arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": a, "size": len(body_a)},
        {"mediaType": OCI_MANIFEST, "digest": b, "size": len(body_b)}]}).encode()
    idx = put_manifest(client, "team/multi", index, "latest")
    age(service, a, b, idx)
    policy(client, "team", untagged_days=1)
    assert retention.apply(service).deleted == []
    assert has(client, "team/multi", a) and has(client, "team/multi", b)
    # Untagged, the index goes first, then its old child; the young child stays (it
    # is judged by its own age once no index lists it).
    age(service, b, days=0)
    assert client.delete("/v2/team/multi/manifests/latest").status_code == 202
    report = retention.apply(service)
    assert deleted(report) == [f"team/multi@{idx}", f"team/multi@{a}"]
    assert not has(client, "team/multi", idx) and not has(client, "team/multi", a)
    assert has(client, "team/multi", b)


def test_referrers_go_with_their_subject_never_alone(client, service):
    subject, body = push_image(client, "team/model", "v1")
    subject_desc = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(body)}
    report_ref, _ = untagged_image(client, "team/model", "verification report",
                                   subject=subject_desc)
    dangling, _ = untagged_image(client, "team/model", "orphan", subject={
        "mediaType": OCI_MANIFEST, "digest": sha256(b"never pushed"), "size": 1})
    age(service, subject, report_ref, dangling)
    policy(client, "team", untagged_days=3)
    # The old, untagged referrer stays while its subject does; one whose subject was
    # never stored is judged by its age.
    assert deleted(retention.apply(service)) == [f"team/model@{dangling}"]
    assert has(client, "team/model", report_ref)
    # A young referrer of an old untagged subject goes with it, after it.
    young_ref, _ = untagged_image(client, "team/model", "fresh report", subject=subject_desc)
    assert client.delete("/v2/team/model/manifests/v1").status_code == 202
    report = retention.apply(service)
    assert deleted(report)[0] == f"team/model@{subject}"
    assert sorted(deleted(report)[1:]) == sorted([f"team/model@{report_ref}",
                                                  f"team/model@{young_ref}"])
    assert report.deleted[1].reason == f"a referrer of {subject}, which is deleted"
    r = client.get(f"/v2/team/model/referrers/{subject}")
    assert r.json()["manifests"] == []


def test_dry_run_lists_and_deletes_nothing(client, service):
    old, _ = untagged_image(client, "team/app", "old")
    for tag in ("v1", "v2"):
        push_image(client, "team/app", tag)
    age(service, old)
    policy(client, "team", keep_tags=1, untagged_days=7)
    dry = retention.apply(service, dry_run=True)
    assert dry.dry_run and sorted(deleted(dry)) == sorted(["team/app:v1",
                                                           f"team/app@{old}"])
    assert tags_of(client, "team/app") == ["v1", "v2"] and has(client, "team/app", old)
    assert client.get("/api/v1/audit", params={"action": "delete"}).json()["entries"] == []
    assert sorted(deleted(retention.apply(service))) == sorted(deleted(dry))


def test_what_changes_between_listing_and_deleting_is_kept(client, service):
    push_image(client, "team/app", "v1", layers=[b"first"])
    push_image(client, "team/app", "v2")
    lone, lone_body = untagged_image(client, "team/app", "lone")
    child, child_body = untagged_image(client, "team/app", "child")
    subject, _ = untagged_image(client, "team/app", "subject")
    age(service, lone, child, subject)
    policy(client, "team", keep_tags=1, untagged_days=7)
    planned = retention.plan(service)
    assert sorted(d.target for d in planned) == sorted([
        "team/app:v1", f"team/app@{lone}", f"team/app@{child}", f"team/app@{subject}"])
    # Meanwhile: v1 is pushed again, "lone" is tagged, "child" goes into a new index,
    # and "subject" gets a new referrer.
    v1, _ = push_image(client, "team/app", "v1", layers=[b"second"])
    put_manifest(client, "team/app", lone_body, "pinned")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": len(child_body)}]}).encode()
    put_manifest(client, "team/app", index)
    with service.db.read() as conn:
        size = len(conn.execute(select(manifests.c.content)
                                .where(manifests.c.digest == subject)).scalar())
    fresh_ref, _ = untagged_image(client, "team/app", "new referrer", subject={
        "mediaType": OCI_MANIFEST, "digest": subject, "size": size})
    report = retention.execute(service, planned)
    assert report.deleted == []
    assert sorted(d.target for d in report.skipped) == sorted(d.target for d in planned)
    assert report.summary() == "0 tag(s) and 0 manifest(s) deleted, 4 kept (changed since listed)"
    assert client.get("/v2/team/app/manifests/v1").headers["Docker-Content-Digest"] == v1
    assert all(has(client, "team/app", d) for d in (lone, child, subject, fresh_ref))
    assert client.get("/api/v1/audit", params={"action": "delete"}).json()["entries"] == []
