"""registry.manifests: what is extracted from a pushed manifest."""

import json

import pytest

from registry.errors import ManifestInvalid
from registry.manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    parse_manifest,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def desc(digest, media_type="application/octet-stream", **kw):
    return {"mediaType": media_type, "digest": digest, "size": 10, **kw}


def test_image_manifest_references_subject_and_type():
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": desc(D1, "application/vnd.example.config+json"),
           "layers": [desc(D2), desc(D3, urls=["https://example.com/x"])],
           "subject": desc(D3, OCI_MANIFEST), "annotations": {"a": "b"}}
    p = parse_manifest(json.dumps(doc).encode(), OCI_MANIFEST)
    assert [d.digest for d in p.blobs] == [D1, D2, D3]
    assert [d.foreign for d in p.blobs] == [False, False, True]
    assert p.subject == D3
    assert p.artifact_type == "application/vnd.example.config+json"
    assert p.annotations == {"a": "b"}


def test_artifact_type_wins_over_config_type():
    doc = {"schemaVersion": 2, "artifactType": "application/x.model",
           "config": desc(D1, "application/vnd.oci.empty.v1+json"), "layers": []}
    assert parse_manifest(json.dumps(doc).encode(), OCI_MANIFEST).artifact_type == \
        "application/x.model"


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_index_children(media_type):
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "manifests": [desc(D1, OCI_MANIFEST), desc(D2, OCI_MANIFEST)]}
    p = parse_manifest(json.dumps(doc).encode(), media_type)
    assert [d.digest for d in p.manifests] == [D1, D2] and p.blobs == []


def test_media_type_from_body_or_shape():
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": desc(D1), "layers": []}
    assert parse_manifest(json.dumps(doc).encode(), None).media_type == DOCKER_MANIFEST
    doc = {"schemaVersion": 2, "config": desc(D1), "layers": []}
    assert parse_manifest(json.dumps(doc).encode(), "").media_type == OCI_MANIFEST
    doc = {"schemaVersion": 2, "manifests": []}
    assert parse_manifest(json.dumps(doc).encode(), None).media_type == OCI_INDEX


def test_unknown_types_are_opaque():
    p = parse_manifest(b"\x00binary", "application/x.custom")
    assert p.media_type == "application/x.custom" and p.blobs == []
    p = parse_manifest(b'{"config": 5}', "application/x.custom+json")
    assert p.blobs == []


@pytest.mark.parametrize("body,ctype", [
    (b"{", OCI_MANIFEST),
    (b'"string"', OCI_MANIFEST),
    (b"{}", None),
    (json.dumps({"mediaType": OCI_INDEX, "manifests": []}).encode(), OCI_MANIFEST),
    (json.dumps({"config": desc(D1)}).encode(), OCI_MANIFEST),
    (json.dumps({"config": desc(D1), "layers": {}}).encode(), OCI_MANIFEST),
    (json.dumps({"config": desc("sha256:x"), "layers": []}).encode(), OCI_MANIFEST),
    (json.dumps({"config": {**desc(D1), "size": -1}, "layers": []}).encode(), OCI_MANIFEST),
    (json.dumps({"config": {**desc(D1), "size": True}, "layers": []}).encode(), OCI_MANIFEST),
    (json.dumps({"config": desc(D1), "layers": [], "subject": "x"}).encode(), OCI_MANIFEST),
    (json.dumps({"config": desc(D1), "layers": [], "artifactType": 3}).encode(), OCI_MANIFEST),
    (json.dumps({"manifests": "x"}).encode(), OCI_INDEX),
])
def test_invalid(body, ctype):
    with pytest.raises(ManifestInvalid):
        parse_manifest(body, ctype)
