"""``/v2/<name>/referrers/<digest>`` with ``artifactType`` filtering."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import repo_name, service
from registry.manifests import OCI_INDEX


async def referrers(request: Request) -> JSONResponse:
    name, digest = repo_name(request), request.path_params["digest"]
    artifact_type = request.query_params.get("artifactType") or None
    index = await run_in_threadpool(service(request).manifests.referrers, name, digest,
                                    artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    return JSONResponse(index, media_type=OCI_INDEX, headers=headers)
