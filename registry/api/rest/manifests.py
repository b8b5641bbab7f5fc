"""``/api/v1/repositories/<name>/{tags/<tag>,manifests/<digest>}``: one manifest, its
sizes, its model card and its verification.

The answer is ``ManifestDetail`` (below): ``model`` and ``status`` are null when the
manifest is not a model, ``verification`` is the latest run, ``served`` (by tag) is what a
pull gets now. While a verification job is live, ``job.ahead`` says how many queued jobs
go before it and ``workers`` whether any worker is there to run it
(``registry.services.workers``).

``POST .../verify`` queues a re-run (202, ``{"job", "digest"}``); ``GET
.../manifests/<digest>/verifications`` lists every run, newest first; ``POST
.../manifests/<digest>/override`` with ``{"reason": "...", "by": "..."}`` lets a model
that is not ready through the readiness gate (recorded); ``POST
.../manifests/<digest>/adopt`` with ``{"referrer": "sha256:..."}`` records the results
artifact that came with the model from another assay instead of verifying it again
(``registry.services.adoption``: who may, and what is checked).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.guard import caller
from registry.api.oci.base import absolute, repo_name, service
from registry.api.rest.common import operation, read_body
from registry.api.rest.schemas import (
    DIGEST,
    DIGEST_PATTERN,
    TAG,
    Answer,
    Body,
    Format,
    Job,
    ModelStatus,
    Verification,
    WorkerPresence,
    absent,
)
from registry.digests import is_digest
from registry.errors import DigestInvalid, ModelNotReady, RequestInvalid, TagInvalid
from registry.services.models import ManifestInfo


class ModelCard(Answer):
    format: Format
    architecture: str | None = absent()
    parameter_count: int | None = absent()
    parameter_label: str | None = absent()
    quantization: str | None = absent()
    context_length: int | None = absent()
    embedding_length: int | None = absent()
    chat_template: bool | None = absent()
    tokenizer_model: str | None = absent()
    dtypes: list[str] | None = absent()
    quantization_bits: int | None = absent()
    quantization_group_size: int | None = absent()
    error: str | None = absent("Why the weights could not be read.")


class Override(Answer):
    by: str
    reason: str
    at: datetime | None


class Sizes(Answer):
    logical: int
    unique: int = Field(description="Bytes no other manifest refers to.")


class ManifestDetail(Answer):
    """One manifest, its sizes, model card, status and verification."""

    repository: str
    tag: str = absent("Only when asked by tag.")
    digest: str
    mediaType: str  # the OCI field's name
    artifactType: str | None
    size: Sizes
    model: ModelCard | None
    status: ModelStatus | None
    reason: str | None
    status_changed_at: datetime | None
    override: Override | None
    verification: Verification | None
    job: Job | None
    workers: WorkerPresence = absent("While the job is queued or running: the workers "
                                     "that could run it.")
    served: str | None = absent("By tag only: the digest a pull gets now (null: nothing "
                                "passes the gate).")


class VerificationList(Answer):
    verifications: list[Verification]


class VerifyAccepted(Answer):
    job: int
    digest: str


class OverrideRequest(Body):
    reason: str = Field(json_schema_extra={"minLength": 1, "pattern": r"\S"})
    by: str = Field("admin", json_schema_extra={"minLength": 1, "pattern": r"\S"},
                    description="Who lets it through; with auth on, whoever is signed in.")


class OverrideResult(Answer):
    digest: str
    by: str
    reason: str


class AdoptRequest(Body):
    referrer: str = Field(json_schema_extra={"pattern": DIGEST_PATTERN},
                          description="Digest of the results artifact (a referrer of the "
                                      "model, artifactType "
                                      "application/vnd.assay.verification.v1+json).")


class AdoptResult(Answer):
    digest: str
    referrer: str
    status: ModelStatus
    verification: Verification
    cancelled_job: int | None = Field(description="The queued verify job finished unrun.")
    running_job: int | None = Field(description="A verify job a worker had already "
                                                "started: its result will follow.")


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


def describe(svc, name: str, reference: str, base_url: str) -> dict:
    """The ``ManifestDetail`` of ``reference`` (tag or digest) in ``name`` (blocking: run
    it in a thread). Also the web interface's model page data."""
    info = svc.models.describe(name, reference)
    body = manifest_json(info)
    state = svc.verification.state_of(name, info.digest)
    svc.workers.explain(state)
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


_READ = dict(tag="manifests", answer=ManifestDetail, problems=(400, 404))
_VERIFY = dict(tag="verification", answer=VerifyAccepted, status=202, answer_text="Queued",
               problems=(400, 404, 409))


@operation("getTag", summary="A tagged manifest: model card, status, latest verification",
           params={"reference": TAG}, **_READ)
async def by_tag(request: Request) -> JSONResponse:
    body = await run_in_threadpool(describe, service(request), repo_name(request),
                                   _tag(request), absolute(request, "/"))
    return JSONResponse(body)


@operation("getManifest", summary="The same, by digest", params={"reference": DIGEST},
           **_READ)
async def by_digest(request: Request) -> JSONResponse:
    body = await run_in_threadpool(describe, service(request), repo_name(request),
                                   _digest(request), absolute(request, "/"))
    return JSONResponse(body)


@operation("verifyTag", summary="Queue a (re-)verification of the tagged model",
           params={"reference": TAG}, **_VERIFY)
async def verify_tag(request: Request) -> JSONResponse:
    result = await run_in_threadpool(service(request).verification.request,
                                     repo_name(request), _tag(request))
    return JSONResponse(result, status_code=202)


@operation("verifyManifest", summary="Queue a (re-)verification of a model by digest",
           params={"reference": DIGEST}, **_VERIFY)
async def verify_digest(request: Request) -> JSONResponse:
    result = await run_in_threadpool(service(request).verification.request,
                                     repo_name(request), _digest(request))
    return JSONResponse(result, status_code=202)


@operation("listManifestVerifications", "verification",
           "Every verification run of a manifest, newest first", VerificationList,
           params={"reference": DIGEST}, problems=(400, 404))
async def verifications(request: Request) -> JSONResponse:
    runs = await run_in_threadpool(service(request).verification.history,
                                   repo_name(request), _digest(request))
    return JSONResponse({"verifications": runs})


@operation("overrideManifest", "verification",
           "Let a model that is not ready through the readiness gate (recorded)",
           OverrideResult, body=OverrideRequest, params={"reference": DIGEST},
           problems=(400, 404, 409))
async def override(request: Request) -> JSONResponse:
    body = await read_body(request, OverrideRequest)
    by = body.by
    identity = caller(request)
    if identity is not None:  # auth on: the override is by whoever is signed in
        by = identity.name or "anonymous"
    if not by.strip():
        raise RequestInvalid('an override needs {"reason": "<why>", "by": "<who>"}')
    result = await run_in_threadpool(service(request).verification.override,
                                     repo_name(request), _digest(request), by.strip(),
                                     body.reason)
    return JSONResponse(result)


@operation("adoptManifestResults", "verification",
           "Record the verification results that came with a model from another assay",
           AdoptResult, body=AdoptRequest, params={"reference": DIGEST},
           problems=(400, 404, 409))
async def adopt(request: Request) -> JSONResponse:
    body = await read_body(request, AdoptRequest)
    if not is_digest(body.referrer):
        raise DigestInvalid(f"{body.referrer!r} is not a digest")
    result = await run_in_threadpool(service(request).adoption.adopt, repo_name(request),
                                     _digest(request), body.referrer)
    return JSONResponse(result)
