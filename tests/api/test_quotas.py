"""Per-namespace storage quotas: usage, the check at commit and mount, the REST settings."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, insert, select

from registry.db.tables import blobs, repositories, repository_blobs, uploads, utcnow
from registry.services import quotas
from tests.support.oci import error_code, push_blob, push_image, sha256

A, B = b"a" * 100, b"b" * 50


def set_quota(client, ns: str, value) -> dict:
    r = client.put(f"/api/v1/namespaces/{ns}", json={"quota_bytes": value})
    assert r.status_code == 200, r.text
    return r.json()


def usage(client, ns: str) -> int:
    return client.get(f"/api/v1/namespaces/{ns}").json()["usage_bytes"]


def no_uploads_left(service) -> bool:
    with service.db.read() as conn:
        rows = conn.execute(select(func.count()).select_from(uploads)).scalar()
    return rows == 0 and list(service.store.iter_uploads()) == []


def refused(r, ns="team"):
    assert r.status_code == 403, r.text
    assert error_code(r) == "DENIED"
    err = r.json()["errors"][0]
    assert err["message"].startswith(f"namespace '{ns}' is over its storage quota: ")
    return err


def test_boundary_usage_equal_to_quota_allowed_one_byte_over_refused(client, service):
    set_quota(client, "team", 150)
    push_blob(client, "team/app", A)
    push_blob(client, "team/app", B)  # 100 + 50 == 150: allowed
    assert usage(client, "team") == 150
    r = client.post(f"/v2/team/app/blobs/uploads/?digest={sha256(b'c')}", content=b"c")
    err = refused(r)
    assert err["message"] == ("namespace 'team' is over its storage quota: 150B used + 1B "
                              "for this blob > 150B quota")
    assert err["detail"] == {"namespace": "team", "quota_bytes": 150, "usage_bytes": 150,
                             "blob_bytes": 1, "digest": sha256(b"c")}
    assert client.head(f"/v2/team/app/blobs/{sha256(b'c')}").status_code == 404
    assert no_uploads_left(service)
    # What was stored is untouched, and other namespaces are not limited.
    assert client.get(f"/v2/team/app/blobs/{sha256(A)}").content == A
    push_blob(client, "other/app", b"c")
    # Raising the quota lets the same blob in.
    set_quota(client, "team", 151)
    push_blob(client, "team/app", b"c")
    assert usage(client, "team") == 151


def test_shared_layer_counts_once_and_relinking_is_free(client, service):
    set_quota(client, "team", 150)
    push_blob(client, "team/one", A)
    push_blob(client, "team/two", A)  # the same layer in a second repository
    push_blob(client, "team/deep/three", B)
    assert usage(client, "team") == 150
    push_blob(client, "team/four", A)  # at the quota, but linked in the namespace already
    assert usage(client, "team") == 150
    # A namespace is a first segment: "teamx" is another namespace.
    push_blob(client, "teamx/app", b"x" * 500)
    assert usage(client, "team") == 150
    with service.db.read() as conn:
        assert quotas.usage(conn, "teamx") == 500


def test_chunked_upload_is_refused_at_commit_and_leaves_nothing(client, service):
    """A PATCH names no digest: its bytes may be a blob the namespace holds already
    (free), so the quota is checked when the final PUT names the digest."""
    set_quota(client, "team", 10)
    data = b"0123456789ab"
    loc = client.post("/v2/team/app/blobs/uploads/").headers["Location"]
    assert client.patch(loc, content=data[:6], headers={"Content-Range": "0-5"}
                        ).status_code == 202
    assert client.patch(loc, content=data[6:], headers={"Content-Range": "6-11"}
                        ).status_code == 202
    err = refused(client.put(loc, params={"digest": sha256(data)}))
    assert err["message"] == ("namespace 'team' is over its storage quota: 0B used + 12B "
                              "for this blob > 10B quota")
    assert no_uploads_left(service)
    assert client.get(loc).status_code == 404  # the session is gone
    assert usage(client, "team") == 0


def test_a_chunked_upload_of_a_blob_the_namespace_holds_passes_at_the_quota(client, service):
    """The Ollama and Docker clients upload a layer in PATCHes without trying a mount from
    another repository: in a full namespace, a layer it holds already still goes in."""
    push_blob(client, "team/one", A)
    set_quota(client, "team", len(A))
    loc = client.post("/v2/team/two/blobs/uploads/").headers["Location"]
    for start in range(0, len(A), 40):
        part = A[start:start + 40]
        r = client.patch(loc, content=part,
                         headers={"Content-Range": f"{start}-{start + len(part) - 1}"})
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
    assert client.put(loc, params={"digest": sha256(A)}).status_code == 201
    assert usage(client, "team") == len(A)
    assert no_uploads_left(service)


def _send_head_only(live_url: str, method: str, path: str, length: int):
    """Send a request's line and headers announcing ``length`` body bytes, and none of
    the body; return the answer (status, headers, body). A registry that waited for the
    body would never answer (the socket times out instead)."""
    url = urlsplit(live_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest(method, path)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_uploads_over_quota_are_refused_before_their_body_is_sent(live_url, client, service):
    """A monolithic POST and a final PUT that declare their length and name their digest
    are answered 403 before a byte of their body has been sent."""
    set_quota(client, "team", 100)
    push_blob(client, "team/app", b"s" * 60)
    over = 10 * 2**30
    status, _, body = _send_head_only(
        live_url, "POST", f"/v2/team/app/blobs/uploads/?digest={sha256(b'big')}", over)
    assert status == 403 and json.loads(body)["errors"][0]["message"] == (
        "namespace 'team' is over its storage quota: 60B used + 10.0GiB for this blob > "
        "100B quota")
    loc = client.post("/v2/team/app/blobs/uploads/").headers["Location"]
    loc = client.patch(loc, content=b"p" * 30).headers["Location"]
    path = f"{urlsplit(loc).path}?digest={sha256(b'p' * 41)}"
    status, _, body = _send_head_only(live_url, "PUT", path, 11)
    assert status == 403 and "60B used + 41B for this upload > 100B quota" in \
        json.loads(body)["errors"][0]["message"]
    assert no_uploads_left(service)
    assert usage(client, "team") == 60
    assert client.get(f"/v2/team/app/blobs/{sha256(b's' * 60)}").content == b"s" * 60


def test_a_blob_the_namespace_holds_needs_no_room(client):
    """A final PUT or monolithic POST names its digest: a blob the namespace holds
    already (in another repository) is accepted even at the quota."""
    push_blob(client, "team/one", A)
    set_quota(client, "team", 100)
    loc = client.post("/v2/team/two/blobs/uploads/").headers["Location"]
    assert client.put(loc, params={"digest": sha256(A)}, content=A).status_code == 201
    r = client.post(f"/v2/team/three/blobs/uploads/?digest={sha256(A)}", content=A)
    assert r.status_code == 201
    assert usage(client, "team") == 100


def test_push_check_counts_only_blobs_new_to_the_namespace(client, service):
    """POST /api/v1/repositories/<name>/push-check: what a push would add, refused with
    the namespace, usage, quota and the push's size when it does not fit."""
    push_blob(client, "team/app", A)
    blobs = [{"digest": sha256(A), "size": 100}, {"digest": sha256(B), "size": 50}]
    r = client.post("/api/v1/repositories/team/new/push-check", json={"blobs": blobs})
    assert r.status_code == 200, r.text
    assert r.json() == {"namespace": "team", "quota_bytes": None, "usage_bytes": None,
                        "push_bytes": 50}
    set_quota(client, "team", 150)
    r = client.post("/api/v1/repositories/team/new/push-check", json={"blobs": blobs})
    assert r.json() == {"namespace": "team", "quota_bytes": 150, "usage_bytes": 100,
                        "push_bytes": 50}
    blobs.append({"digest": sha256(b"c"), "size": 1})
    r = client.post("/api/v1/repositories/team/new/push-check", json={"blobs": blobs})
    assert r.status_code == 403 and r.json()["code"] == "DENIED"
    assert r.json()["detail"] == ("namespace 'team' is over its storage quota: 100B used + "
                                  "51B for this push > 150B quota")
    for bad in ({}, {"blobs": [{"digest": "sha256:x", "size": 1}]},
                {"blobs": [{"digest": sha256(A), "size": -1}]},
                {"blobs": [{"digest": sha256(A), "size": "1"}]},
                {"blobs": [{"digest": sha256(A), "size": 1}] * 1001}):
        r = client.post("/api/v1/repositories/team/new/push-check", json=bad)
        assert r.status_code == 400 and r.json()["code"] == "UNSUPPORTED", (bad, r.text)
    assert usage(client, "team") == 100  # asking stores nothing


def test_monolithic_uploads_are_refused(client, service):
    set_quota(client, "team", 10)
    data = b"eleven byte"
    refused(client.post(f"/v2/team/app/blobs/uploads/?digest={sha256(data)}", content=data))
    # POST then one PUT carrying the whole body.
    loc = client.post("/v2/team/app/blobs/uploads/").headers["Location"]
    refused(client.put(loc, params={"digest": sha256(data)}, content=data))
    assert no_uploads_left(service)
    assert usage(client, "team") == 0


def test_mount_is_refused_over_quota_and_allowed_within(client, service):
    digest = push_blob(client, "other/src", A)
    set_quota(client, "team", 99)
    r = client.post(f"/v2/team/app/blobs/uploads/?mount={digest}&from=other/src")
    refused(r)
    assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 404
    assert usage(client, "team") == 0 and no_uploads_left(service)
    set_quota(client, "team", 100)
    r = client.post(f"/v2/team/app/blobs/uploads/?mount={digest}&from=other/src")
    assert r.status_code == 201, r.text
    assert usage(client, "team") == 100


def test_manifests_still_push_when_at_quota(client):
    """Only blobs count: a manifest over blobs already in the namespace is fine."""
    digest, _ = push_image(client, "team/app", "v1", layers=[A], config=B)
    set_quota(client, "team", 150)
    r = client.put("/v2/team/app/manifests/v2", content=client.get(
        f"/v2/team/app/manifests/{digest}").content,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201
    assert usage(client, "team") == 150


def test_rest_reports_and_clears_quota_and_audits(client, service):
    info = client.get("/api/v1/namespaces/team").json()
    assert info["quota_bytes"] is None and info["usage_bytes"] == 0
    assert set_quota(client, "team", 10 * 2**30)["quota_bytes"] == 10 * 2**30
    info = set_quota(client, "team", None)
    assert info["quota_bytes"] is None
    push_blob(client, "team/app", b"x" * 1000)  # unlimited again
    entries = client.get("/api/v1/audit", params={"action": "namespace.quota"}).json()
    assert [e["detail"] for e in entries["entries"]] == [
        {"unlimited": True}, {"quota_bytes": 10 * 2**30}]


@pytest.mark.parametrize("body", [
    {"quota_bytes": -1}, {"quota_bytes": "10GiB"}, {"quota_bytes": 1.5},
    {"quota_bytes": True}, {"quota_bytes": 2**63}, {"keep_tags": 0}, {"keep_tags": "3"},
    {"untagged_days": -2}, {"untagged_days": 36501}, {"anonymous_pull": None}, {},
    {"quota_bytes": 5, "keep_tags": -1}, {"quota_bytes": 5, "colour": "red"},
])
def test_bad_settings_are_problem_json_and_change_nothing(client, body):
    client.put("/api/v1/namespaces/team", json={"quota_bytes": 100, "keep_tags": 3})
    before = client.get("/api/v1/namespaces/team").json()
    r = client.put("/api/v1/namespaces/team", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["status"] == 400 and r.json()["detail"]
    assert client.get("/api/v1/namespaces/team").json() == before


def test_usage_query_is_cheap_on_thousands_of_rows(client, service):
    """3,000 repositories' worth of links across two namespaces: usage is exact and a
    commit-time check stays in the milliseconds."""
    now = utcnow()
    with service.db.write() as conn:
        conn.execute(insert(repositories), [
            {"name": f"{ns}/r{i}", "created_at": now} for ns in ("big", "bigger")
            for i in range(1500)])
        conn.execute(insert(blobs), [
            {"digest": sha256(str(i).encode()), "size": i + 1, "created_at": now,
             "last_linked_at": now} for i in range(3000)])
        ids = dict(conn.execute(select(repositories.c.name, repositories.c.id)).all())
        # Every repository of "big" links blob i and blob i+1 (shared with a neighbour):
        # 1,501 distinct blobs; "bigger" links blobs 1500..2999 once each.
        rows = [{"repository_id": ids[f"big/r{i}"], "digest": sha256(str(j).encode()),
                 "created_at": now} for i in range(1500) for j in (i, i + 1)]
        rows += [{"repository_id": ids[f"bigger/r{i}"],
                  "digest": sha256(str(1500 + i).encode()), "created_at": now}
                 for i in range(1500)]
        conn.execute(insert(repository_blobs), rows)
    expected_big = sum(range(1, 1502))
    with service.db.read() as conn:
        started = time.perf_counter()
        assert quotas.usage(conn, "big") == expected_big
        assert quotas.usage(conn, "bigger") == sum(range(1501, 3001))
        elapsed = time.perf_counter() - started
    assert elapsed < 2.0, elapsed  # generous for a loaded CI machine; ~10 ms here
    set_quota(client, "big", expected_big)
    refused(client.post(f"/v2/big/r0/blobs/uploads/?digest={sha256(b'new')}",
                        content=b"new"), ns="big")


def test_parallel_commits_cannot_pass_the_quota_together(live_url, client, service):
    """Six uploads into one namespace commit at the same moment (as docker's parallel
    layer pushes do), with room for two: exactly two get in, on PostgreSQL too."""
    set_quota(client, "team", 2 * 1000 + 500)
    blobs_ = [os.urandom(1000) for _ in range(6)]
    ready = threading.Barrier(len(blobs_), timeout=30)
    results: list = [None] * len(blobs_)

    def push(i: int) -> None:
        with httpx.Client(base_url=live_url, timeout=30) as http:
            location = http.post(f"/v2/team/p{i}/blobs/uploads/").headers["Location"]
            r = http.patch(location, content=blobs_[i],
                           headers={"Content-Type": "application/octet-stream"})
            location = r.headers["Location"]
            ready.wait()
            sep = "&" if "?" in location else "?"
            results[i] = http.put(f"{location}{sep}digest={sha256(blobs_[i])}")

    threads = [threading.Thread(target=push, args=(i,)) for i in range(len(blobs_))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 201, 403, 403, 403, 403], [r.text for r in results]
    assert all(error_code(r) == "DENIED" for r in results if r.status_code == 403)
    assert usage(client, "team") == 2000
    assert no_uploads_left(service)
