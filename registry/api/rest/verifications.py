"""``GET /api/v1/verifications?reference=<ref>``: a model's verification records.

``ref`` is ``HOST[:PORT]/NAME[:TAG|@DIGEST]`` (this registry or another one) or, for this
registry, just ``NAME[:TAG|@DIGEST]``. Body::

    {"reference", "location": "local" | "remote", "repository", "tag", "digest",
     "status": "queued" | "verifying" | "ready" | "failed" | null, "reason",
     "job": {"id", "status", "attempts", ...} | null,
     "verifications": [{"verdict", "reason", "backend", "figures": {"generation_tps",
                        ...}, "finished_at", ...}, ...]}      # newest first

A remote model also has ``registry``, ``mediaType``, ``source`` (how it was asked for) and
``updated_at``; a remote tag names the model most recently notified under it. 404 when
nothing is known about the reference, 400 when it is malformed.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.access.permissions import PULL
from registry.api.access import may
from registry.api.oci.base import service
from registry.errors import NotFound, RequestInvalid


async def by_reference(request: Request) -> JSONResponse:
    reference = request.query_params.get("reference")
    if not reference:
        raise RequestInvalid("name the model: ?reference=HOST[:PORT]/NAME[:TAG|@DIGEST] "
                             "(or NAME[:TAG|@DIGEST] on this registry)")
    body = await run_in_threadpool(service(request).remote.lookup, reference,
                                   request.headers.get("host"))
    # The guard let in anyone; a local model's records need pull on its repository
    # (answered as if unknown, so names are not revealed).
    if body.get("location") == "local" and not may(request, PULL, body["repository"]):
        raise NotFound(f"nothing is known about {reference!r}")
    return JSONResponse(body)
