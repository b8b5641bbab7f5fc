"""Blob HEAD/GET/DELETE (end-2, end-10): exact lengths, Location, Range."""

from __future__ import annotations

import os

import pytest

from tests.support.oci import error_code, push_blob, sha256

NAME = "team/blobs"


@pytest.fixture
def blob(client):
    data = os.urandom(3 * 1024 * 1024 + 5)
    return push_blob(client, NAME, data), data


def test_head_exact_length_and_digest(client, blob):
    digest, data = blob
    r = client.head(f"/v2/{NAME}/blobs/{digest}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.content == b""


def test_get_carries_location(client, blob):
    digest, data = blob
    r = client.get(f"/v2/{NAME}/blobs/{digest}", follow_redirects=False)
    assert r.status_code == 200
    assert r.headers["Location"] == f"http://registry.test/v2/{NAME}/blobs/{digest}"
    assert r.content == data
    assert r.headers["Content-Length"] == str(len(data))


@pytest.mark.parametrize("header,start,end", [
    ("bytes=0-0", 0, 0),
    ("bytes=10-1048585", 10, 1048585),
    ("bytes=3145000-", 3145000, None),
    ("bytes=-100", -100, None),
    ("bytes=100-99999999999", 100, None),
])
def test_range_get(client, blob, header, start, end):
    digest, data = blob
    r = client.get(f"/v2/{NAME}/blobs/{digest}", headers={"Range": header})
    assert r.status_code == 206
    expected = data[start:] if end is None else data[start:end + 1]
    assert r.content == expected
    first = start if start >= 0 else len(data) + start
    assert r.headers["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    assert r.headers["Content-Length"] == str(len(expected))


def test_unsatisfiable_range(client, blob):
    digest, data = blob
    r = client.get(f"/v2/{NAME}/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"


def test_unknown_blob(client, blob):
    r = client.get(f"/v2/{NAME}/blobs/{sha256(b'nope')}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    r = client.head(f"/v2/{NAME}/blobs/{sha256(b'nope')}")
    assert r.status_code == 404
    r = client.get(f"/v2/{NAME}/blobs/sha256:not-hex")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


def test_blob_is_scoped_to_its_repository(client, blob):
    digest, _ = blob
    assert client.head(f"/v2/other/repo/blobs/{digest}").status_code == 404


def test_delete_blob(client, blob, service):
    digest, _ = blob
    r = client.delete(f"/v2/{NAME}/blobs/{digest}")
    assert r.status_code == 202
    assert client.head(f"/v2/{NAME}/blobs/{digest}").status_code == 404
    r = client.delete(f"/v2/{NAME}/blobs/{digest}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
