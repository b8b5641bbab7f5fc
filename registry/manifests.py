"""Parsing pushed manifests into what the registry must know about them (pure).

The bytes are stored exactly as pushed; this module only extracts references (blobs and
child manifests that must exist), the subject (for referrers), the artifact type and
annotations. Unknown media types are accepted as opaque content with no references.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry import jsontext
from registry.digests import parse_digest
from registry.errors import DigestInvalid, ManifestInvalid

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

IMAGE_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
KNOWN_TYPES = IMAGE_TYPES | INDEX_TYPES | {OCI_ARTIFACT}


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    foreign: bool = False  # has "urls": content lives elsewhere, not required here
    annotations: dict | None = None  # e.g. org.opencontainers.image.title (file names)


@dataclass
class ParsedManifest:
    media_type: str
    blobs: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict | None = None


def _descriptor(obj, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ManifestInvalid(f"{where} is not a descriptor object")
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where} has no mediaType")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where} has an invalid size")
    try:
        parse_digest(digest)
    except DigestInvalid:
        raise ManifestInvalid(f"{where} has an invalid digest {digest!r}") from None
    annotations = obj.get("annotations")
    return Descriptor(media_type, digest, size, foreign=bool(obj.get("urls")),
                      annotations=annotations if isinstance(annotations, dict) else None)


def _descriptors(doc: dict, key: str, required: bool) -> list[Descriptor]:
    items = doc.get(key)
    if items is None:
        if required:
            raise ManifestInvalid(f"manifest has no {key!r}")
        return []
    if not isinstance(items, list):
        raise ManifestInvalid(f"{key!r} is not a list")
    return [_descriptor(d, f"{key}[{i}]") for i, d in enumerate(items)]


def parse_manifest(content: bytes, content_type: str | None) -> ParsedManifest:
    """Validate ``content`` as a manifest of ``content_type`` and extract its references.

    The media type is the Content-Type, or the document's ``mediaType`` when the header is
    absent. Raises ManifestInvalid for malformed JSON (or JSON that ``registry.jsontext``
    refuses: deep nesting, lone surrogates), a mediaType that contradicts the
    Content-Type, or bad descriptors in a known manifest type.
    """
    content_type = (content_type or "").split(";")[0].strip() or None
    try:
        doc = jsontext.loads(content)
    except ValueError as exc:
        if content_type and content_type not in KNOWN_TYPES:
            return ParsedManifest(content_type)  # opaque content of a type we don't know
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest is not a JSON object")

    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("mediaType is not a string")
    if content_type and declared and declared != content_type:
        raise ManifestInvalid(
            f"manifest mediaType {declared!r} does not match Content-Type {content_type!r}")
    media_type = content_type or declared
    if not media_type:
        # No header, no field: infer the OCI type from the shape, as clients do.
        if "manifests" in doc:
            media_type = OCI_INDEX
        elif "config" in doc and "layers" in doc:
            media_type = OCI_MANIFEST
        else:
            raise ManifestInvalid("manifest has no media type (no Content-Type, no mediaType)")

    parsed = ParsedManifest(media_type)
    if media_type not in KNOWN_TYPES:
        return parsed

    if media_type in IMAGE_TYPES:
        config = doc.get("config")
        if config is None:
            raise ManifestInvalid("image manifest has no 'config'")
        parsed.blobs = [_descriptor(config, "config"), *_descriptors(doc, "layers", True)]
    elif media_type in INDEX_TYPES:
        parsed.manifests = _descriptors(doc, "manifests", True)
    else:  # OCI artifact manifest (withdrawn from the spec, still pushed by old clients)
        parsed.blobs = _descriptors(doc, "blobs", False)

    if "subject" in doc and doc["subject"] is not None:
        parsed.subject = _descriptor(doc["subject"], "subject").digest
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestInvalid("artifactType is not a string")
    if not artifact_type and media_type in IMAGE_TYPES:
        artifact_type = doc["config"].get("mediaType")  # referrers spec: fall back to config
    parsed.artifact_type = artifact_type
    annotations = doc.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise ManifestInvalid("annotations is not an object")
    parsed.annotations = annotations or None
    return parsed
