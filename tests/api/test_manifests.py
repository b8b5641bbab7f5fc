"""Manifests (end-3, end-7, end-9): byte-for-byte storage, references, limits, delete."""

from __future__ import annotations

import hashlib
import json

from tests.support.oci import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    error_code,
    image_manifest,
    push_blob,
    push_image,
    sha256,
)

NAME = "team/image"


def test_put_and_get_by_tag_and_digest_byte_for_byte(client):
    digest, body = push_image(client, NAME, "v1")
    assert body.startswith(b"{\n")  # indented JSON: must come back unchanged
    for ref in ("v1", digest):
        r = client.get(f"/v2/{NAME}/manifests/{ref}", headers={"Accept": DOCKER_MANIFEST})
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest == sha256(body)
        assert r.headers["Content-Length"] == str(len(body))


def test_head_manifest(client):
    digest, body = push_image(client, NAME, "v1")
    r = client.head(f"/v2/{NAME}/manifests/v1")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(body))
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Type"] == OCI_MANIFEST
    assert r.content == b""


def test_put_response_headers(client):
    config, layer = b"{}", b"layer"
    push_blob(client, NAME, config)
    push_blob(client, NAME, layer)
    body = image_manifest(config, [layer])
    r = client.put(f"/v2/{NAME}/manifests/latest", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    assert r.headers["Location"] == f"http://registry.test/v2/{NAME}/manifests/{sha256(body)}"
    assert "OCI-Subject" not in r.headers


def test_docker_v2_manifest(client):
    digest, body = push_image(client, "library/app", "1.0", media_type=DOCKER_MANIFEST,
                              config_type="application/vnd.docker.container.image.v1+json")
    r = client.get("/v2/library/app/manifests/1.0")
    assert r.headers["Content-Type"] == DOCKER_MANIFEST and r.content == body


def test_manifest_blob_unknown(client):
    config = b"{}"
    push_blob(client, NAME, config)
    body = image_manifest(config, [b"never uploaded"])
    r = client.put(f"/v2/{NAME}/manifests/v1", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert sha256(b"never uploaded") in r.json()["errors"][0]["detail"]["missing"]
    # a blob from another repository does not count until it is mounted
    push_blob(client, "elsewhere", b"never uploaded")
    r = client.put(f"/v2/{NAME}/manifests/v1", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert client.get(f"/v2/{NAME}/manifests/v1").status_code == 404


def test_index_requires_child_manifests(client):
    child_digest, child = push_image(client, NAME, "amd64")
    missing = {"mediaType": OCI_MANIFEST, "digest": sha256(b"no such manifest"), "size": 10}
    present = {"mediaType": OCI_MANIFEST, "digest": child_digest, "size": len(child),
               "platform": {"os": "linux", "architecture": "amd64"}}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [present, missing]}
    r = client.put(f"/v2/{NAME}/manifests/multi", content=json.dumps(index),
                   headers={"Content-Type": OCI_INDEX})
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    index["manifests"] = [present]
    body = json.dumps(index).encode()
    r = client.put(f"/v2/{NAME}/manifests/multi", content=body,
                   headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201
    assert client.get(f"/v2/{NAME}/manifests/multi").content == body


def test_any_media_type_and_artifact_type_accepted(client):
    body = json.dumps({"whatever": True}).encode()
    r = client.put(f"/v2/{NAME}/manifests/odd", content=body,
                   headers={"Content-Type": "application/vnd.example.thing+json"})
    assert r.status_code == 201
    r = client.get(f"/v2/{NAME}/manifests/odd")
    assert r.headers["Content-Type"] == "application/vnd.example.thing+json"
    assert r.content == body
    empty = b"{}"
    push_blob(client, NAME, empty)
    art = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "artifactType": "application/vnd.example.model+json",
           "config": descriptor("application/vnd.oci.empty.v1+json", empty), "layers": []}
    r = client.put(f"/v2/{NAME}/manifests/art", content=json.dumps(art),
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201


def test_invalid_manifests(client):
    def put(body, ctype=OCI_MANIFEST, ref="bad"):
        return client.put(f"/v2/{NAME}/manifests/{ref}", content=body,
                          headers={"Content-Type": ctype})

    assert error_code(put(b"not json")) == "MANIFEST_INVALID"
    assert error_code(put(b"[1,2]")) == "MANIFEST_INVALID"
    assert error_code(put(b'{"schemaVersion":2,"layers":[]}')) == "MANIFEST_INVALID"
    bad_desc = {"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:1", "size": 1},
                "layers": []}
    assert error_code(put(json.dumps(bad_desc))) == "MANIFEST_INVALID"
    mismatch = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    assert error_code(put(json.dumps(mismatch))) == "MANIFEST_INVALID"
    r = put(b"{}", ref="bad tag!")
    assert r.status_code in (400, 404)


def test_manifest_size_limit(client, settings):
    body = b'{"pad": "' + b"x" * (settings.max_manifest_bytes + 1) + b'"}'
    r = client.put(f"/v2/{NAME}/manifests/huge", content=body,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and error_code(r) == "MANIFEST_INVALID"
    assert settings.max_manifest_bytes >= 4 * 1024 * 1024


def test_put_by_digest(client):
    config, layer = b'{"a":1}', b"l"
    push_blob(client, NAME, config)
    push_blob(client, NAME, layer)
    body = image_manifest(config, [layer])
    r = client.put(f"/v2/{NAME}/manifests/{sha256(b'other')}", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = client.put(f"/v2/{NAME}/manifests/{sha256(body)}", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    sha512 = "sha512:" + hashlib.sha512(body).hexdigest()
    r = client.put(f"/v2/{NAME}/manifests/{sha512}", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == sha512
    assert client.get(f"/v2/{NAME}/manifests/{sha512}").content == body
    assert client.get(f"/v2/{NAME}/tags/list").json()["tags"] == []


def test_unknown_manifest_and_repository(client):
    push_image(client, NAME, "v1")
    r = client.get(f"/v2/{NAME}/manifests/nope")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = client.get(f"/v2/{NAME}/manifests/{sha256(b'nope')}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = client.get("/v2/no/such/repo/manifests/v1")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"


def test_a_reference_that_is_no_tag_is_an_unknown_manifest(client):
    """As CNCF Distribution answers and the OCI conformance suite expects: 404, not 400."""
    push_image(client, NAME, "v1")
    for ref in (".INVALID_MANIFEST_NAME", "-x", "a" * 129):
        for method in ("GET", "HEAD"):
            r = client.request(method, f"/v2/{NAME}/manifests/{ref}")
            assert r.status_code == 404, (method, ref, r.status_code)
            if method == "GET":
                assert error_code(r) == "MANIFEST_UNKNOWN"
    r = client.put(f"/v2/{NAME}/manifests/.INVALID_MANIFEST_NAME", content=b"{}",
                   headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"  # never stored


def test_tag_moves(client):
    d1, _ = push_image(client, NAME, "latest", layers=[b"one"])
    d2, body2 = push_image(client, NAME, "latest", layers=[b"two"])
    assert d1 != d2
    assert client.get(f"/v2/{NAME}/manifests/latest").content == body2
    assert client.get(f"/v2/{NAME}/manifests/{d1}").status_code == 200


def test_delete_tag_then_manifest(client):
    digest, _ = push_image(client, NAME, "v1")
    client.put(f"/v2/{NAME}/manifests/v2", content=client.get(f"/v2/{NAME}/manifests/v1").content,
               headers={"Content-Type": OCI_MANIFEST})
    assert client.delete(f"/v2/{NAME}/manifests/v1").status_code == 202
    assert client.get(f"/v2/{NAME}/manifests/v1").status_code == 404
    assert client.get(f"/v2/{NAME}/manifests/{digest}").status_code == 200
    assert client.delete(f"/v2/{NAME}/manifests/{digest}").status_code == 202
    assert client.get(f"/v2/{NAME}/manifests/{digest}").status_code == 404
    assert client.get(f"/v2/{NAME}/manifests/v2").status_code == 404  # its tags went with it
    r = client.delete(f"/v2/{NAME}/manifests/{digest}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
