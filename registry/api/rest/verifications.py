"""``GET /api/v1/verifications?reference=<ref>``: a model's verification records.

``ref`` is ``HOST[:PORT]/NAME[:TAG|@DIGEST]`` (this registry or another one) or, for this
registry, just ``NAME[:TAG|@DIGEST]``. The answer is ``ReferenceVerifications``: the
model's status, its live job and every run, newest first.

A remote model also has ``registry``, ``mediaType``, ``source`` (how it was asked for) and
``updated_at``; a remote tag names the model most recently notified under it. 404 when
nothing is known about the reference, 400 when it is malformed.

With auth on, the caller sees a local model's records if it may pull the repository, and
a remote model's if it is signed in (``remote_verifications_namespace`` unset) or may
pull from that namespace; anything else is answered 404 as if unknown.
"""

from __future__ import annotations

from typing import Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.access.permissions import PULL
from registry.api.guard import caller, may
from registry.api.oci.base import service
from registry.api.rest.common import operation
from registry.api.rest.schemas import Answer, Job, Verification, absent, query_param
from registry.errors import RequestInvalid


class ReferenceVerifications(Answer):
    reference: str
    location: Literal["local", "remote"]
    registry: str = absent()
    repository: str
    tag: str | None = absent()
    digest: str
    status: str | None
    reason: str | None = absent()
    job: Job | None = absent()
    verifications: list[Verification]


REFERENCE = {**query_param("reference", {"type": "string", "minLength": 1},
                           "HOST[:PORT]/NAME[:TAG|@DIGEST], or NAME[:TAG|@DIGEST] on this "
                           "registry."),
             "required": True, "example": "library/tiny:latest"}


@operation("verificationsByReference", "validation",
           "A local or remote model's status and every verification run",
           ReferenceVerifications, params={"reference": REFERENCE}, problems=(400, 404))
async def by_reference(request: Request) -> JSONResponse:
    reference = request.query_params.get("reference")
    if not reference:
        raise RequestInvalid("name the model: ?reference=HOST[:PORT]/NAME[:TAG|@DIGEST] "
                             "(or NAME[:TAG|@DIGEST] on this registry)")
    # The guard let in anyone: what they may see is decided here, before the lookup.
    def visible(repository: str, local: bool) -> bool:
        if local:
            return may(request, PULL, repository)
        # Remote records hold other registries' names and our network's errors.
        namespace = request.app.state.settings.remote_verifications_namespace
        if namespace:
            return may(request, PULL, namespace.strip("/"))
        identity = caller(request)
        return identity is None or not identity.anonymous

    body = await run_in_threadpool(service(request).remote.lookup, reference,
                                   request.headers.get("host"), visible)
    return JSONResponse(body)
