"""Blob uploads (end-4a/4b/5/6/13): monolithic, chunked, streamed, mount, cancel."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from tests.support.oci import error_code, push_blob, sha256

NAME = "team/model"


def start(client, name=NAME):
    r = client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    assert loc.startswith("http://registry.test/v2/"), "Location must be absolute"
    assert r.headers["Docker-Upload-UUID"] in loc
    return loc


def stored(client, name, digest) -> bytes:
    r = client.get(f"/v2/{name}/blobs/{digest}")
    assert r.status_code == 200, r.text
    return r.content


def test_post_then_put_monolithic(client):
    data = os.urandom(300_000)
    loc = start(client)
    r = client.put(loc, params={"digest": sha256(data)}, content=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert r.headers["Location"] == f"http://registry.test/v2/{NAME}/blobs/{sha256(data)}"
    assert stored(client, NAME, sha256(data)) == data


def test_single_post_with_digest(client):
    data = b"x" * 1000
    r = client.post(f"/v2/{NAME}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
    assert r.status_code == 201
    assert r.headers["Location"].endswith(f"/v2/{NAME}/blobs/{sha256(data)}")
    assert stored(client, NAME, sha256(data)) == data


def test_empty_blob_monolithic(client):
    r = client.post(f"/v2/{NAME}/blobs/uploads/", params={"digest": sha256(b"")}, content=b"")
    assert r.status_code == 201
    h = client.head(f"/v2/{NAME}/blobs/{sha256(b'')}")
    assert h.status_code == 200 and h.headers["Content-Length"] == "0"


@pytest.mark.parametrize("prefix", ["", "bytes "])
def test_chunked_upload(client, prefix):
    data = os.urandom(250_000)
    parts = [data[:100_000], data[100_000:200_000], data[200_000:]]
    loc, offset = start(client), 0
    for part in parts:
        end = offset + len(part) - 1
        r = client.patch(loc, content=part, headers={
            "Content-Range": f"{prefix}{offset}-{end}", "Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{end}"
        loc = r.headers["Location"]
        assert loc.startswith("http://")
        offset = end + 1
    r = client.get(loc)
    assert r.status_code == 204 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = client.put(loc, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert stored(client, NAME, sha256(data)) == data


def test_out_of_order_and_repeated_chunks_are_416(client):
    data = os.urandom(2000)
    loc = start(client)
    r = client.patch(loc, content=data[:1000], headers={"Content-Range": "0-999"})
    assert r.status_code == 202
    # repeated chunk
    r = client.patch(loc, content=data[:1000], headers={"Content-Range": "0-999"})
    assert r.status_code == 416
    assert r.headers["Range"] == "0-999"
    assert error_code(r) == "BLOB_UPLOAD_INVALID"
    # gap
    r = client.patch(loc, content=data[1500:], headers={"Content-Range": "1500-1999"})
    assert r.status_code == 416
    # the session is intact and completes
    r = client.patch(loc, content=data[1000:], headers={"Content-Range": "1000-1999"})
    assert r.status_code == 202
    r = client.put(loc, params={"digest": sha256(data)})
    assert r.status_code == 201
    assert stored(client, NAME, sha256(data)) == data


def test_content_range_length_mismatch(client):
    loc = start(client)
    r = client.patch(loc, content=b"abc", headers={"Content-Range": "0-9"})
    assert r.status_code == 400 and error_code(r) == "SIZE_INVALID"
    r = client.patch(loc, content=b"abc", headers={"Content-Range": "nonsense"})
    assert r.status_code == 400 and error_code(r) == "BLOB_UPLOAD_INVALID"
    assert client.get(loc).headers["Range"] == "0-0"


def test_streamed_patch_without_content_range(client):
    data = os.urandom(5 * 1024 * 1024 + 17)

    def gen():
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    loc = start(client)
    r = client.patch(loc, content=gen())
    assert r.status_code == 202
    r = client.put(r.headers["Location"], params={"digest": sha256(data)})
    assert r.status_code == 201
    assert stored(client, NAME, sha256(data)) == data


def test_put_with_final_chunk(client):
    data = os.urandom(3000)
    loc = start(client)
    r = client.patch(loc, content=data[:1000], headers={"Content-Range": "0-999"})
    r = client.put(r.headers["Location"], params={"digest": sha256(data)}, content=data[1000:],
                   headers={"Content-Range": "1000-2999"})
    assert r.status_code == 201, r.text
    assert stored(client, NAME, sha256(data)) == data


def test_sha512_digest(client):
    data = os.urandom(10_000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    loc = start(client)
    client.patch(loc, content=data[:4000], headers={"Content-Range": "0-3999"})
    r = client.put(loc, params={"digest": digest}, content=data[4000:])
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert stored(client, NAME, digest) == data
    r = client.post(f"/v2/{NAME}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201


def test_digest_mismatch_leaves_no_trace(client, service):
    loc = start(client)
    client.patch(loc, content=b"hello", headers={"Content-Range": "0-4"})
    r = client.put(loc, params={"digest": sha256(b"other")})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert client.get(loc).status_code == 404
    assert list(service.store.iter_uploads()) == []
    assert client.head(f"/v2/{NAME}/blobs/{sha256(b'hello')}").status_code == 404
    r = client.post(f"/v2/{NAME}/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"y")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert list(service.store.iter_uploads()) == []


def test_final_put_needs_valid_digest(client):
    loc = start(client)
    assert error_code(client.put(loc)) == "DIGEST_INVALID"
    assert error_code(client.put(loc, params={"digest": "sha256:zz"})) == "DIGEST_INVALID"
    assert error_code(client.put(loc, params={"digest": "md5:abc"})) == "DIGEST_INVALID"


def test_cancel_upload(client, service):
    loc = start(client)
    client.patch(loc, content=b"partial", headers={"Content-Range": "0-6"})
    r = client.delete(loc)
    assert r.status_code == 204
    assert client.get(loc).status_code == 404
    assert error_code(client.patch(loc, content=b"x")) == "BLOB_UPLOAD_UNKNOWN"
    assert list(service.store.iter_uploads()) == []


def test_unknown_session_and_wrong_repository(client):
    r = client.get(f"/v2/{NAME}/blobs/uploads/0123456789abcdef")
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    loc = start(client)
    other = loc.replace(f"/v2/{NAME}/", "/v2/other/")
    assert client.get(other).status_code == 404


def test_mount_from_other_repository(client, service):
    data = os.urandom(4096)
    digest = push_blob(client, "src/repo", data)
    before = sorted(service.store.iter_blobs())
    r = client.post("/v2/dst/repo/blobs/uploads/", params={"mount": digest, "from": "src/repo"})
    assert r.status_code == 201
    assert r.headers["Location"].endswith(f"/v2/dst/repo/blobs/{digest}")
    assert r.headers["Docker-Content-Digest"] == digest
    assert stored(client, "dst/repo", digest) == data
    assert sorted(service.store.iter_blobs()) == before  # no new bytes


def test_mount_that_cannot_mount_opens_a_session(client):
    digest = sha256(b"never pushed")
    r = client.post("/v2/dst/repo/blobs/uploads/", params={"mount": digest, "from": "src/repo"})
    assert r.status_code == 202
    assert "/v2/dst/repo/blobs/uploads/" in r.headers["Location"]


def test_empty_post_with_digest_is_a_probe(client):
    data = b"tensor bytes"
    digest = push_blob(client, "a/one", data)
    probe = {"X-Content-Length": str(len(data)), "Content-Length": "0"}
    # Stored, but not readable from a/two: a probe without `from` opens a session
    # (it must not link blobs of other repositories).
    r = client.post("/v2/a/two/blobs/uploads/", params={"digest": digest}, headers=probe)
    assert r.status_code == 202
    r = client.post("/v2/a/two/blobs/uploads/", params={"digest": digest, "from": "a/one"},
                    headers=probe)
    assert r.status_code == 201
    r = client.post("/v2/a/two/blobs/uploads/", params={"digest": digest}, headers=probe)
    assert r.status_code == 201  # now linked in a/two
    r = client.post("/v2/a/two/blobs/uploads/", params={"digest": sha256(b"missing")},
                    headers={"Content-Length": "0"})
    assert r.status_code == 202 and r.headers["Location"].startswith("http://")


def test_unknown_query_parameters_are_ignored(client):
    data = b"etag check"
    loc = start(client)
    client.patch(loc, content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
    r = client.put(loc, params={"digest": sha256(data), "etag": "abc-1", "foo": "bar"})
    assert r.status_code == 201


def test_second_push_of_same_content_stores_one_copy(client, service):
    data = os.urandom(20_000)
    digests = {push_blob(client, f"repo{i}", data) for i in range(3)}
    assert digests == {sha256(data)}
    assert [d for d, _ in service.store.iter_blobs()] == [sha256(data)]


def test_concurrent_uploads_of_same_content(client, service):
    data = os.urandom(2 * 1024 * 1024)
    results = []

    def push(i):
        results.append(client.post(f"/v2/c{i}/blobs/uploads/", params={"digest": sha256(data)},
                                   content=data).status_code)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201] * 4
    assert [d for d, _ in service.store.iter_blobs()] == [sha256(data)]
    for i in range(4):
        assert stored(client, f"c{i}", sha256(data)) == data


def test_invalid_repository_name(client):
    r = client.post("/v2/Bad_Name/blobs/uploads/")
    assert r.status_code == 400 and error_code(r) == "NAME_INVALID"
    r = client.post("/v2/a/%2e%2e/b/blobs/uploads/")
    assert r.status_code == 400 and error_code(r) == "NAME_INVALID"
    r = client.post("/v2/a//b/blobs/uploads/")
    assert r.status_code == 400 and error_code(r) == "NAME_INVALID"
