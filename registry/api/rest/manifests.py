"""``/api/v1/repositories/<name>/{tags/<tag>,manifests/<digest>}``: one manifest, its
sizes, its model card and its verification.

Body::

    {"repository": "team/gemma3", "tag": "270m",          # "tag" only when asked by tag
     "digest": "sha256:...", "mediaType": "...", "artifactType": "..." | null,
     "size": {"logical": <bytes of its blobs>, "unique": <bytes no other manifest uses>},
     "model": <ModelCard.to_json()> | null,                # null: not a model
     "status": "queued" | "verifying" | "ready" | "failed" | null,   # null: not a model
     "reason": <why it failed> | null,
     "verification": {"verdict", "reason", "backend", "backend_version", "hardware",
                      "figures": {"generation_tps", "prompt_tps", "ttft_s", "load_s",
                                  "peak_rss_bytes", "tokens_generated", "output", ...},
                      "log_tail", "referrer", "finished_at", ...} | null,  # the latest run
     "job": {"id", "status", "attempts", "max_attempts", "last_error"} | null,
     "override": {"by", "reason", "at"} | null,
     "served": "sha256:..." | null}                        # by tag: what a pull gets now

``POST .../verify`` queues a re-run (202, ``{"job", "digest"}``); ``GET
.../manifests/<digest>/verifications`` lists every run, newest first; ``POST
.../manifests/<digest>/override`` with ``{"reason": "...", "by": "..."}`` lets a model
that is not ready through the readiness gate (recorded).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry import jsontext
from registry.api.guard import caller
from registry.api.oci.base import absolute, read_limited, repo_name, service
from registry.digests import is_digest
from registry.errors import (
    BodyTooLarge,
    DigestInvalid,
    ModelNotReady,
    RequestInvalid,
    TagInvalid,
)
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
    })
    return body


def _describe_sync(svc, name: str, reference: str, base_url: str) -> dict:
    info = svc.models.describe(name, reference)
    body = manifest_json(info)
    state = svc.verification.state_of(name, info.digest)
    body.update(state)
    if info.tag is not None:
        try:
            body["served"] = svc.manifests.get(name, info.tag, base_url).digest
        except ModelNotReady:
            body["served"] = None
    return body


def _tag(request: Request) -> str:
    tag = request.path_params["reference"]
    if is_digest(tag):
        raise TagInvalid(f"{tag!r} is not a tag (use .../manifests/{tag} for a digest)")
    return tag


def _digest(request: Request) -> str:
    digest = request.path_params["reference"]
    if not is_digest(digest):
        raise DigestInvalid(f"{digest!r} is not a digest (use .../tags/{digest} for a tag)")
    return digest


async def by_tag(request: Request) -> JSONResponse:
    body = await run_in_threadpool(_describe_sync, service(request), repo_name(request),
                                   _tag(request), absolute(request, "/"))
    return JSONResponse(body)


async def by_digest(request: Request) -> JSONResponse:
    body = await run_in_threadpool(_describe_sync, service(request), repo_name(request),
                                   _digest(request), absolute(request, "/"))
    return JSONResponse(body)


async def verify_tag(request: Request) -> JSONResponse:
    result = await run_in_threadpool(service(request).verification.request,
                                     repo_name(request), _tag(request))
    return JSONResponse(result, status_code=202)


async def verify_digest(request: Request) -> JSONResponse:
    result = await run_in_threadpool(service(request).verification.request,
                                     repo_name(request), _digest(request))
    return JSONResponse(result, status_code=202)


async def verifications(request: Request) -> JSONResponse:
    runs = await run_in_threadpool(service(request).verification.history,
                                   repo_name(request), _digest(request))
    return JSONResponse({"verifications": runs})


MAX_JSON_BODY = 1024 * 1024


def _too_large(declared: int | None) -> BodyTooLarge:
    return BodyTooLarge(f"a JSON request body may be at most {MAX_JSON_BODY} bytes")


async def json_body(request: Request) -> dict:
    """The request's JSON object (``{}`` when empty), read up to ``MAX_JSON_BODY`` and
    parsed by ``registry.jsontext.loads``; anything else is ``RequestInvalid``."""
    raw = await read_limited(request, MAX_JSON_BODY, _too_large)
    try:
        body = jsontext.loads(raw or b"{}")
    except ValueError as exc:
        raise RequestInvalid(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestInvalid("the request body must be a JSON object")
    return body


async def override(request: Request) -> JSONResponse:
    body = await json_body(request)
    reason, by = body.get("reason"), body.get("by", "admin")
    identity = caller(request)
    if identity is not None:  # auth on: the override is by whoever is signed in
        by = identity.name or "anonymous"
    if not isinstance(reason, str) or not isinstance(by, str) or not by.strip():
        raise RequestInvalid('an override needs {"reason": "<why>", "by": "<who>"}')
    result = await run_in_threadpool(service(request).verification.override,
                                     repo_name(request), _digest(request), by.strip(), reason)
    return JSONResponse(result)
