"""``/v2/<name>/manifests/<reference>``: GET, HEAD, PUT, DELETE."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from registry.api.oci import mirrored
from registry.api.oci.base import (
    absolute,
    empty,
    mirror_of,
    quick_read,
    read_limited,
    repo_name,
    service,
)
from registry.errors import ManifestTooLarge, ManifestUnknown, TagInvalid


async def get_manifest(request: Request) -> Response:
    """Serve the stored bytes whatever the Accept header says (Ollama parses any type).

    A reference that cannot be a tag names no manifest: 404 MANIFEST_UNKNOWN, as CNCF
    Distribution answers and the OCI conformance tests expect (a PUT to it stays a 400)."""
    reference = request.path_params["reference"]
    try:
        name = repo_name(request)
    except TagInvalid:
        raise ManifestUnknown(f"manifest {reference[:200]!r} is not in repository "
                              f"{request.path_params['name'][:255]!r}: it is not a valid "
                              "tag or digest", {"reference": reference[:200]}) from None
    if await mirror_of(request, name) is not None:
        return await mirrored.manifest(request, name, reference)
    m = await quick_read(request, service(request).manifests.get, name, reference,
                         absolute(request, "/"))
    headers = {"Content-Type": m.media_type, "Docker-Content-Digest": m.digest,
               "ETag": f'"{m.digest}"', "Content-Length": str(len(m.content))}
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return Response(m.content, headers=headers)


def _too_large(limit: int):
    def error(declared: int | None) -> ManifestTooLarge:
        if declared is not None:
            return ManifestTooLarge(f"manifest is {declared} bytes; the limit is {limit}")
        return ManifestTooLarge(f"manifest exceeds the limit of {limit} bytes")
    return error


async def put_manifest(request: Request) -> Response:
    name, reference = repo_name(request), request.path_params["reference"]
    svc = service(request)
    limit = svc.settings.max_manifest_bytes
    content = await read_limited(request, limit, _too_large(limit))
    result = await run_in_threadpool(svc.manifests.put, name, reference, content,
                                     request.headers.get("content-type"))
    headers = {"Location": absolute(request, f"/v2/{name}/manifests/{result.digest}"),
               "Docker-Content-Digest": result.digest}
    if result.subject:
        headers["OCI-Subject"] = result.subject
    return empty(201, headers)


async def delete_manifest(request: Request) -> Response:
    name, reference = repo_name(request), request.path_params["reference"]
    await run_in_threadpool(service(request).manifests.delete, name, reference)
    return empty(202, {})
