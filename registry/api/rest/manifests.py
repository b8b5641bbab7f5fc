"""``/api/v1/repositories/<name>/{tags/<tag>,manifests/<digest>}``: one manifest, its
sizes and its model card.

Body::

    {"repository": "team/gemma3", "tag": "270m",          # "tag" only when asked by tag
     "digest": "sha256:...", "mediaType": "...", "artifactType": "..." | null,
     "size": {"logical": <bytes of its blobs>, "unique": <bytes no other manifest uses>},
     "model": <ModelCard.to_json()> | null,                # null: not a model
     "status": null, "verification": null}                 # filled by verification
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import quick_read, repo_name, service
from registry.digests import is_digest
from registry.errors import DigestInvalid, TagInvalid
from registry.services.models import ManifestInfo


def manifest_json(info: ManifestInfo) -> dict:
    body: dict = {"repository": info.repository}
    if info.tag is not None:
        body["tag"] = info.tag
    body.update({
        "digest": info.digest,
        "mediaType": info.media_type,
        "artifactType": info.artifact_type,
        "size": {"logical": info.logical_size, "unique": info.unique_size},
        "model": info.model.to_json() if info.model else None,
        "status": None,
        "verification": None,
    })
    return body


async def _describe(request: Request) -> JSONResponse:
    info = await quick_read(request, service(request).models.describe, repo_name(request),
                            request.path_params["reference"])
    return JSONResponse(manifest_json(info))


async def by_tag(request: Request) -> JSONResponse:
    tag = request.path_params["reference"]
    if is_digest(tag):
        raise TagInvalid(f"{tag!r} is not a tag (use .../manifests/{tag} for a digest)")
    return await _describe(request)


async def by_digest(request: Request) -> JSONResponse:
    digest = request.path_params["reference"]
    if not is_digest(digest):
        raise DigestInvalid(f"{digest!r} is not a digest (use .../tags/{digest} for a tag)")
    return await _describe(request)
