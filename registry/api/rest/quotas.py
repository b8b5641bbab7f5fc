"""``POST /api/v1/repositories/<name>/push-check``: would this push fit the quota?

A client about to push lists the blobs it will send (``{"blobs": [{"digest", "size"},
...]}``); the answer counts those the namespace does not hold yet (``push_bytes``) against
the room its quota leaves. Over it: 403 DENIED naming the namespace, its usage, its quota
and the push's size, before a byte is uploaded. Within it (or with no quota):
``PushCheck``. Guarded like a push, so it also tells a caller who may not push, and why.

Advisory: every blob is still checked when it is committed or mounted
(``registry.services.quotas``), so a client that skips this, or pushes in parallel with
another, cannot pass the quota.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import repo_name, service
from registry.api.rest.common import operation, read_body
from registry.api.rest.schemas import DIGEST_PATTERN, MAX_INT64, Answer, Body

MAX_PUSH_BLOBS = 1000


class PushBlob(Body):
    model_config = ConfigDict(extra="forbid")

    digest: str = Field(pattern=DIGEST_PATTERN)
    size: int = Field(ge=0, le=MAX_INT64)


class PushCheckRequest(Body):
    model_config = ConfigDict(extra="forbid")

    blobs: list[PushBlob] = Field(max_length=MAX_PUSH_BLOBS,
                                  description="Every blob the push will reference.")


class PushCheck(Answer):
    namespace: str
    quota_bytes: int | None = Field(description="Null: the namespace has no quota.")
    usage_bytes: int | None = Field(description="Null when there is no quota (not counted).")
    push_bytes: int = Field(description="Bytes of the listed blobs the namespace does not "
                                        "hold yet: what the push would add.")


@operation("checkPush", "storage", "Whether a push of these blobs fits the namespace's quota",
           PushCheck, body=PushCheckRequest, problems=(400, 403))
async def check_push(request: Request) -> JSONResponse:
    name = repo_name(request)
    body = await read_body(request, PushCheckRequest)
    blobs = {b.digest: b.size for b in body.blobs}
    answer = await run_in_threadpool(service(request).uploads.check_push, name, blobs)
    return JSONResponse(answer)
