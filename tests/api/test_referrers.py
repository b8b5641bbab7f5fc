"""Referrers (end-12a/12b) and the OCI-Subject header on manifest PUT."""

from __future__ import annotations

import json

from tests.support.oci import OCI_INDEX, OCI_MANIFEST, descriptor, push_blob, push_image, sha256

NAME = "team/model"
EMPTY = b"{}"


def push_referrer(client, subject_digest, subject_size, artifact_type, payload, annotations=None):
    push_blob(client, NAME, EMPTY)
    push_blob(client, NAME, payload)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
           "config": descriptor("application/vnd.oci.empty.v1+json", EMPTY),
           "layers": [descriptor("application/json", payload)],
           "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest,
                       "size": subject_size}}
    if annotations:
        doc["annotations"] = annotations
    body = json.dumps(doc).encode()
    r = client.put(f"/v2/{NAME}/manifests/{sha256(body)}", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == subject_digest
    return sha256(body), len(body)


def test_referrers_and_filter(client):
    subject, body = push_image(client, NAME, "v1")
    sig, sig_size = push_referrer(client, subject, len(body), "application/vnd.example.sig",
                                  b'{"sig":1}', {"org.example": "yes"})
    rep, _ = push_referrer(client, subject, len(body),
                           "application/vnd.assay.verification.v1+json", b'{"ok":true}')
    r = client.get(f"/v2/{NAME}/referrers/{subject}")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith(OCI_INDEX)
    index = r.json()
    assert index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {sig, rep}
    assert by_digest[sig] == {"mediaType": OCI_MANIFEST, "digest": sig, "size": sig_size,
                              "artifactType": "application/vnd.example.sig",
                              "annotations": {"org.example": "yes"}}
    assert "OCI-Filters-Applied" not in r.headers

    r = client.get(f"/v2/{NAME}/referrers/{subject}",
                   params={"artifactType": "application/vnd.assay.verification.v1+json"})
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [rep]


def test_referrers_of_unknown_subject_is_empty(client):
    r = client.get(f"/v2/{NAME}/referrers/{sha256(b'nothing')}")
    assert r.status_code == 200 and r.json()["manifests"] == []


def test_subject_need_not_exist(client):
    ghost = sha256(b"pushed later")
    digest, _ = push_referrer(client, ghost, 100, "application/vnd.example.sbom", b"{}")
    r = client.get(f"/v2/{NAME}/referrers/{ghost}")
    assert [m["digest"] for m in r.json()["manifests"]] == [digest]


def test_image_manifest_without_artifact_type_uses_config_type(client):
    subject, body = push_image(client, NAME, "v1")
    push_blob(client, NAME, b'{"cfg":1}')
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor("application/vnd.example.config+json", b'{"cfg":1}'),
           "layers": [], "subject": descriptor(OCI_MANIFEST, body)}
    client.put(f"/v2/{NAME}/manifests/ref", content=json.dumps(doc),
               headers={"Content-Type": OCI_MANIFEST})
    r = client.get(f"/v2/{NAME}/referrers/{subject}")
    assert r.json()["manifests"][0]["artifactType"] == "application/vnd.example.config+json"
