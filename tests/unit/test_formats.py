"""registry.formats.classify: which manifests are models, and where their weights are."""

from __future__ import annotations

import json

import pytest

from registry.formats.classify import classify
from registry.manifests import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, parse_manifest


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def layer(n: int, media_type: str, path: str | None = None, key: str = "filepath",
          **annotations) -> dict:
    d = {"mediaType": media_type, "digest": digest(n), "size": 100 + n}
    if path is not None:
        annotations[{"filepath": "org.cncf.model.filepath",
                     "title": "org.opencontainers.image.title"}[key]] = path
    if annotations:
        d["annotations"] = annotations
    return d


def manifest(config_type: str, layers: list[dict], media_type: str = OCI_MANIFEST,
             **extra):
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": config_type, "digest": digest(0), "size": 2},
           "layers": layers, **extra}
    return parse_manifest(json.dumps(doc).encode(), media_type)


def summary(fmt) -> tuple:
    return (fmt.kind, fmt.weight_format,
            [(f.path, f.descriptor.digest, f.archive) for f in fmt.weights],
            fmt.config and (fmt.config.path, fmt.config.descriptor.digest, fmt.config.archive))


def test_descriptor_annotations_are_parsed():
    p = manifest("application/x", [layer(1, "a/b", "model.gguf", key="title"), layer(2, "a/b")])
    assert p.blobs[1].annotations == {"org.opencontainers.image.title": "model.gguf"}
    assert p.blobs[0].annotations is None and p.blobs[2].annotations is None


def test_ollama():
    p = manifest("application/vnd.docker.container.image.v1+json", [
        layer(1, "application/vnd.ollama.image.model"),
        layer(2, "application/vnd.ollama.image.projector"),
        layer(3, "application/vnd.ollama.image.template"),
        layer(4, "application/vnd.ollama.image.params"),
    ], DOCKER_MANIFEST)
    assert summary(classify(p)) == ("ollama", "gguf", [("model.gguf", digest(1), None)], None)


def test_docker_gguf_shards():
    p = manifest("application/vnd.docker.ai.model.config.v0.1+json", [
        layer(1, "application/vnd.docker.ai.gguf.v3"),
        layer(2, "application/vnd.docker.ai.gguf.v3"),
        layer(3, "application/vnd.docker.ai.mmproj"),
        layer(4, "application/vnd.docker.ai.license"),
    ], artifactType="application/vnd.docker.ai.model.config.v0.1+json")
    fmt = classify(p)
    assert (fmt.kind, fmt.weight_format) == ("docker", "gguf")
    assert [f.descriptor.digest for f in fmt.weights] == [digest(1), digest(2)]


def test_docker_safetensors_with_config_file_or_archive():
    files = manifest("application/vnd.docker.ai.model.config.v0.2+json", [
        layer(1, "application/vnd.docker.ai.safetensors", "model.safetensors"),
        layer(2, "application/vnd.docker.ai.model.file", "config.json"),
        layer(3, "application/vnd.docker.ai.model.file", "tokenizer.json"),
    ])
    assert summary(classify(files)) == (
        "docker", "safetensors", [("model.safetensors", digest(1), None)],
        ("config.json", digest(2), None))
    archive = manifest("application/vnd.docker.ai.model.config.v0.1+json", [
        layer(1, "application/vnd.docker.ai.safetensors"),
        layer(2, "application/vnd.docker.ai.vllm.config.tar"),
    ])
    assert summary(classify(archive))[3] == ("config.json", digest(2), "tar")


MODELPACK = {"artifactType": "application/vnd.cncf.model.manifest.v1+json"}
MP_CONFIG = "application/vnd.cncf.model.config.v1+json"


def test_modelpack_safetensors_directory():
    p = manifest(MP_CONFIG, [
        layer(1, "application/vnd.cncf.model.weight.v1.raw", "model-00001-of-00002.safetensors"),
        layer(2, "application/vnd.cncf.model.weight.v1.tar", "model-00002-of-00002.safetensors"),
        layer(3, "application/vnd.cncf.model.weight.config.v1.raw", "config.json"),
        layer(4, "application/vnd.cncf.model.weight.config.v1.raw", "tokenizer_config.json"),
        layer(5, "application/vnd.cncf.model.doc.v1.raw", "README.md"),
        layer(6, "application/vnd.cncf.model.weight.v1.raw", "model.safetensors.index.json"),
    ], **MODELPACK)
    fmt = classify(p)
    assert summary(fmt) == ("modelpack", "safetensors", [
        ("model-00001-of-00002.safetensors", digest(1), None),
        ("model-00002-of-00002.safetensors", digest(2), "tar")],
        ("config.json", digest(3), None))
    assert {f.path for f in fmt.files} >= {"tokenizer_config.json", "README.md"}


def test_modelpack_by_config_type_gguf_and_compressed_layers():
    p = manifest(MP_CONFIG, [
        layer(1, "application/vnd.cncf.model.weight.v1.tar+zstd", "qwen-q4_k_m.gguf"),
        layer(2, "application/vnd.cncf.model.weight.v1.raw", "mmproj-qwen-f16.gguf"),
    ])
    assert summary(classify(p)) == ("modelpack", "gguf",
                                    [("qwen-q4_k_m.gguf", digest(1), "tar+zstd")], None)


def test_modelpack_with_unsupported_weights_is_not_a_model_we_read():
    p = manifest(MP_CONFIG, [layer(1, "application/vnd.cncf.model.weight.v1.raw",
                                   "pytorch_model.bin")], **MODELPACK)
    assert classify(p) is None


def test_plain_oci_artifacts_with_weight_files():
    oras = manifest("application/vnd.oci.empty.v1+json", [
        layer(1, "application/vnd.oci.image.layer.v1.tar", "gemma.gguf", key="title")],
        artifactType="application/vnd.example.model")
    # oras calls every file ".tar"; the blob is the file itself.
    assert summary(classify(oras)) == ("oci", "gguf", [("gemma.gguf", digest(1), None)], None)
    by_type = manifest("application/vnd.oci.image.config.v1+json", [
        layer(1, "application/x-safetensors"), layer(2, "text/plain", "config.json",
                                                     key="title")])
    assert summary(classify(by_type)) == (
        "oci", "safetensors", [("layer-0.safetensors", digest(1), None)],
        ("config.json", digest(2), None))


def test_artifact_manifest_blobs_are_layers():
    doc = {"mediaType": "application/vnd.oci.artifact.manifest.v1+json",
           "artifactType": "application/x", "blobs": [layer(1, "a/b", "m.gguf", key="title")]}
    p = parse_manifest(json.dumps(doc).encode(), None)
    assert classify(p).kind == "oci"


@pytest.mark.parametrize("parsed", [
    manifest("application/vnd.oci.image.config.v1+json", [
        layer(1, "application/vnd.oci.image.layer.v1.tar+gzip"),
        layer(2, "application/vnd.oci.image.layer.v1.tar+gzip")]),
    manifest("application/vnd.dev.cosign.simplesigning.v1+json", [
        layer(1, "application/vnd.dev.cosign.simplesigning.v1+json")],
        subject={"mediaType": OCI_MANIFEST, "digest": digest(9), "size": 10}),
    manifest("application/vnd.oci.empty.v1+json", [
        layer(1, "application/spdx+json", "sbom.spdx.json", key="title")],
        artifactType="application/spdx+json"),
    manifest("application/vnd.oci.empty.v1+json", [
        layer(1, "text/plain", "README.md", key="title")]),
    manifest("application/vnd.oci.empty.v1+json", []),
    parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest(1), "size": 5}]}).encode(), OCI_INDEX),
    parse_manifest(b"opaque", "application/x-unknown"),
], ids=["container-image", "signature", "sbom", "plain-artifact", "empty", "index", "opaque"])
def test_non_models(parsed):
    assert classify(parsed) is None
