"""Retention: keep the newest N tags (or N ready ones) and protected tags, delete old
untagged manifests, keep what is needed, and say what is left for gc and when."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

from sqlalchemy import select, update

from registry.db.tables import blobs, deliveries, manifests, utcnow
from registry.maintenance import retention
from registry.maintenance.gc import collect
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, image_manifest, push_blob, push_image, sha256
from tests.support.verification import push_model, verify


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


# ---- protected tags and "keep the newest N ready" --------------------------------------

def test_protected_tags_are_never_deleted_and_do_not_count(client, service):
    for tag in ("main", "latest", "v1", "v2", "exp-a", "exp-b"):
        push_image(client, "team/app", tag)
    assert client.get("/api/v1/namespaces/team").json()["protected_tags"] == ["latest"]
    policy(client, "team", keep_tags=1)
    # The default protects "latest" only: it stays and exp-b is still "the newest 1".
    assert sorted(deleted(retention.apply(service, dry_run=True))) == [
        "team/app:exp-a", "team/app:main", "team/app:v1", "team/app:v2"]
    policy(client, "team", protected_tags=["latest", "main", "v*"])
    assert deleted(retention.apply(service, dry_run=True)) == ["team/app:exp-a"]
    report = retention.apply(service)
    assert deleted(report) == ["team/app:exp-a"]
    assert tags_of(client, "team/app") == ["exp-b", "latest", "main", "v1", "v2"]
    # [] protects nothing: only the newest tag is left.
    policy(client, "team", protected_tags=[])
    assert retention.apply(service).deleted and tags_of(client, "team/app") == ["exp-b"]


def test_protected_tags_are_checked(client):
    r = client.put("/api/v1/namespaces/team", json={"protected_tags": ["v*", "v*", "rel-[0-9]"]})
    assert r.status_code == 200 and r.json()["protected_tags"] == ["v*", "rel-[0-9]"]
    for body, fragment in [
        ({"protected_tags": None}, '"protected_tags"'),
        ({"protected_tags": "latest"}, '"protected_tags"'),
        ({"protected_tags": ["a b"]}, "is not a tag glob"),
        ({"protected_tags": ["x"] * 33}, "at most 32"),
    ]:
        r = client.put("/api/v1/namespaces/team", json=body)
        assert r.status_code == 400 and fragment in r.json()["detail"], (body, r.text)
    assert client.get("/api/v1/namespaces/team").json()["protected_tags"] == ["v*", "rel-[0-9]"]


def test_keep_ready_counts_ready_tags_and_keeps_those_being_verified(client, service):
    digests = {}
    for tag, passed in (("r1", True), ("r2", True), ("f3", False), ("f4", False)):
        digests[tag] = push_model(client, "team/llm", tag, variant=tag)
        verify(service, "team/llm", digests[tag], passed=passed, reason="load failed")
    digests["q5"] = push_model(client, "team/llm", "q5", variant="q5")  # still queued

    def dry(**rules) -> dict[str, str]:
        client.put("/api/v1/namespaces/team", json={"keep_tags": None, "keep_ready": None,
                                                    **rules})
        return {d.reference: d.reason for d in retention.apply(service, dry_run=True).deleted}

    # keep_tags alone counts failed tags: the two failures crowd both ready ones out.
    assert dry(keep_tags=2) == {"r2": "older than the newest 2 tags",
                                "r1": "older than the newest 2 tags",
                                "f3": "older than the newest 2 tags"}
    # keep_ready: failed tags do not count (and go); the queued one waits for its verdict.
    assert dry(keep_ready=2) == {"f4": "failed verification", "f3": "failed verification"}
    assert dry(keep_ready=1) == {"f4": "failed verification", "f3": "failed verification",
                                 "r1": "older than the newest 1 ready tags"}
    # Both: a tag either rule keeps stays.
    assert dry(keep_tags=2, keep_ready=1) == {
        "f3": "older than the newest 2 tags and failed verification",
        "r1": "older than the newest 2 tags and older than the newest 1 ready tags"}

    # A verdict that changes between listing and deleting keeps the tag: f3 is overridden.
    policy(client, "team", keep_tags=None, keep_ready=2)
    planned = retention.plan(service)
    service.verification.override("team/llm", digests["f3"], "root", "known good")
    report = retention.execute(service, planned)
    assert deleted(report) == ["team/llm:f4"]
    assert [d.target for d in report.skipped] == ["team/llm:f3"]
    assert tags_of(client, "team/llm") == ["f3", "q5", "r1", "r2"]


def served(client, name: str, tag: str) -> str | None:
    r = client.get(f"/v2/{name}/manifests/{tag}")
    return r.headers["Docker-Content-Digest"] if r.status_code == 200 else None


def test_keep_ready_counts_a_failed_push_whose_older_version_is_still_served(client, service):
    service.verification.set_policy("team", True, None)  # the gate on
    old = push_model(client, "team/llm", "old", variant="old")
    verify(service, "team/llm", old, passed=True)
    good = push_model(client, "team/llm", "v", variant="good")
    verify(service, "team/llm", good, passed=True)
    # v is pushed again with a build that fails: the gate still serves the older, ready one.
    bad = push_model(client, "team/llm", "v", variant="bad")
    verify(service, "team/llm", bad, passed=False, reason="load failed")
    # f failed and has nothing older to serve; w failed twice, so far.
    f = push_model(client, "team/llm", "f", variant="f")
    verify(service, "team/llm", f, passed=False, reason="load failed")
    w1 = push_model(client, "team/llm", "w", variant="w1")
    verify(service, "team/llm", w1, passed=False, reason="load failed")
    w2 = push_model(client, "team/llm", "w", variant="w2")
    verify(service, "team/llm", w2, passed=False, reason="load failed")
    assert served(client, "team/llm", "v") == good and served(client, "team/llm", "f") is None
    policy(client, "team", keep_ready=1)
    planned = retention.plan(service)
    assert {d.reference: d.reason for d in planned} == {
        "old": "older than the newest 1 ready tags", "f": "failed verification",
        "w": "failed verification"}
    # Before the deletion, an admin lets w's first push through: w now serves it, so
    # the re-check keeps the tag.
    service.verification.override("team/llm", w1, "root", "known good")
    report = retention.execute(service, planned)
    assert sorted(deleted(report)) == ["team/llm:f", "team/llm:old"]
    assert [d.target for d in report.skipped] == ["team/llm:w"]
    assert tags_of(client, "team/llm") == ["v", "w"]
    assert served(client, "team/llm", "v") == good and served(client, "team/llm", "w") == w1


def test_untagged_rule_keeps_what_the_gate_serves_for_a_kept_tag(client, service):
    service.verification.set_policy("team", True, None)  # the gate on
    good = push_model(client, "team/llm", "latest", variant="good")
    verify(service, "team/llm", good, passed=True)
    bad = push_model(client, "team/llm", "latest", variant="bad")
    verify(service, "team/llm", bad, passed=False, reason="load failed")
    lone, _ = untagged_image(client, "team/llm", "lone")
    age(service, good, bad, lone)
    policy(client, "team", untagged_days=7)
    # The ready push that `latest` still serves has no tag, and is old: it stays all
    # the same; a manifest nothing refers to goes.
    report = retention.apply(service)
    assert deleted(report) == [f"team/llm@{lone}"]
    assert has(client, "team/llm", good) and served(client, "team/llm", "latest") == good

    # The re-check on deletion: a manifest listed as unused that the gate serves for a
    # tag by then (an admin overrode it) is kept.
    again = push_model(client, "team/llm", "stable", variant="again")
    verify(service, "team/llm", again, passed=False, reason="load failed")
    worse = push_model(client, "team/llm", "stable", variant="worse")
    verify(service, "team/llm", worse, passed=False, reason="load failed")
    assert client.delete("/v2/team/llm/manifests/latest").status_code == 202
    age(service, again, worse, good)
    planned = retention.plan(service)

    def untagged(items) -> list[str]:  # verify() also stored a report (a referrer) for each
        return sorted(d.target for d in items if d.reason.startswith("untagged"))

    assert untagged(planned) == sorted([
        f"team/llm@{good}", f"team/llm@{bad}", f"team/llm@{again}"])
    service.verification.override("team/llm", again, "root", "known good")
    report = retention.execute(service, planned)
    assert untagged(report.deleted) == sorted([f"team/llm@{good}", f"team/llm@{bad}"])
    # ... and so is its verification report, which goes with it only.
    assert [d.target for d in report.skipped] == [f"team/llm@{again}", next(
        d.target for d in planned if d.reason == f"a referrer of {again}, which is deleted")]
    assert served(client, "team/llm", "stable") == again


# ---- what retention leaves to gc -----------------------------------------------------------

def linked(service, minutes_ago: dict[bytes, int]) -> dict[bytes, datetime]:
    """Set blobs' last use ``minutes_ago``; returns when each becomes collectable (1 h on)."""
    out = {}
    with service.db.write() as conn:
        for blob, minutes in minutes_ago.items():
            at = utcnow().replace(microsecond=0) - timedelta(minutes=minutes)
            conn.execute(update(blobs).where(blobs.c.digest == sha256(blob))
                         .values(last_linked_at=at))
            out[blob] = at + timedelta(hours=1)
    return out


def test_retention_and_gc_say_what_waits_for_the_grace_period(client, service, settings):
    settings.gc_grace_seconds = 3600
    old, _ = push_image(client, "team/app", "v1", layers=[b"old layer"], config=b'{"v": 1}')
    push_image(client, "team/app", "v2", layers=[b"new layer"])
    policy(client, "team", keep_tags=1)
    report = retention.apply(service)
    assert report.summary() == "1 tag(s) and 0 manifest(s) deleted"
    assert report.notes() == [
        "1 manifest(s) left untagged stay stored with their blobs: their namespace has no "
        "--untagged-days (`assay namespace retention NS --untagged-days D` deletes "
        "untagged manifests)"]

    policy(client, "team", untagged_days=7)
    config = b'{"v": 1}'
    later = linked(service, {b"old layer": 10, config: 20})
    age(service, old)
    dry = retention.apply(service, dry_run=True)
    report = retention.apply(service)
    assert deleted(report) == deleted(dry) == [f"team/app@{old}"]
    window = (rf"from {later[config]:%Y-%m-%d %H:%M:%S} UTC \(in (39m\d+s|40m)\) "
              rf"to {later[b'old layer']:%Y-%m-%d %H:%M:%S} UTC \(in (49m\d+s|50m)\)")
    (note,) = report.notes()
    assert re.fullmatch(r"2 blob\(s\) \(17B\) no longer used by any manifest: `assay gc` "
                        rf"then frees them {window} \(the 1h grace period after each "
                        r"blob's last use\)", note), note
    (note,) = dry.notes()
    assert re.fullmatch(r"2 blob\(s\) \(17B\) would no longer be used by any manifest: "
                        rf"`assay gc` would free them {window} .*", note), note
    assert report.to_json()["freed_blobs"]["count"] == 2

    # gc frees nothing yet, and says what waits, and until when; --dry-run says the same.
    upload = client.post("/v2/team/app/blobs/uploads/").headers["Location"]
    client.patch(upload, content=b"half", headers={"Content-Range": "0-3"})
    for gc_report in (collect(service, dry_run=True), collect(service)):
        lines = gc_report.lines()
        assert lines[0].endswith("0 blob(s), 0 bytes; 0 orphaned object(s); 0 expired "
                                 "upload(s); 0 unused repository link(s)")
        assert re.fullmatch(r"waiting: 2 unreferenced blob\(s\) \(17B\) inside the 1h grace "
                            rf"period after their last use; `assay gc` frees them {window}",
                            lines[1]), lines[1]
        assert re.fullmatch(r"waiting: 1 open upload session\(s\) \(4B received\), in "
                            r"progress or abandoned; unless their clients send more they "
                            r"expire at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in .+\), and "
                            r"`assay gc` removes them then", lines[2]), lines[2]
    settings.gc_grace_seconds = 0
    done = collect(service)
    assert (done.blobs, done.bytes) == (2, 17)
    assert done.lines()[1].startswith("waiting: 1 open upload session(s)")
    assert len(done.lines()) == 2


def test_retention_says_when_the_manifests_it_untagged_go(client, service):
    old, _ = push_image(client, "team/app", "v1")
    push_image(client, "team/app", "v2")
    policy(client, "team", keep_tags=1, untagged_days=7)
    with service.db.read() as conn:
        created = conn.execute(select(manifests.c.created_at)
                               .where(manifests.c.digest == old)).scalar_one()
    when = created.replace(tzinfo=None) + timedelta(days=7)
    for report, left in ((retention.apply(service, dry_run=True),
                          "would be left untagged and stay"),
                         (retention.apply(service), "left untagged stay")):
        assert deleted(report) == ["team/app:v1"]
        (note,) = report.notes()
        assert re.fullmatch(
            rf"1 manifest\(s\) {left} until they are older than their namespace's "
            r"--untagged-days: a later `assay retention` deletes them at "
            rf"{when:%Y-%m-%d %H:%M:%S} UTC \(in (7d|6d23h)\)", note), note
