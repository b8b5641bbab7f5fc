"""``POST /api/v1/hooks/validate``: verification on request, from other systems' webhooks.

The body is one of (see ``registry.services.remote``):

- a CNCF Distribution notification envelope ``{"events": [{"action": "push", "target":
  {"mediaType", "digest", "repository", "url", "tag"}, "request": {"host"}, ...}]}``, as
  Distribution's ``notifications.endpoints`` send it;
- a CloudEvent (JSON structured mode, a batch, or binary mode with ``ce-*`` headers) whose
  ``data`` is a reference, ``{"reference": ...}``, or a Distribution-like target;
- ``{"reference": "HOST[:PORT]/NAME[:TAG|@DIGEST]"}``.

Authentication, checked in constant time, either of:

- ``Authorization: Bearer <ASSAY_HOOK_TOKEN>`` (what a Distribution registry can send:
  ``headers: {Authorization: ["Bearer <token>"]}`` in its endpoint configuration);
- ``X-Assay-Signature: sha256=<hex HMAC-SHA256 of the raw body keyed with
  ASSAY_HOOK_SECRET>``.

With neither configured every request is refused (403, saying how to configure); a missing
or wrong credential is a 401, sent before the body is read unless a signature has to be
checked against it. The answer is 202 ``{"format", "queued": [...], "ignored":
[...]}``: each queued item names its job (and, for another registry's model, its
``remote_model`` and canonical ``reference``); each ignored one says why (a pull, a blob, an
index, not a model ...). A malformed body is a 400.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import Field, RootModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry import jsontext
from registry.api.oci.base import read_limited, service
from registry.api.rest.common import operation
from registry.api.rest.schemas import Answer
from registry.errors import (
    BodyTooLarge,
    HooksDisabled,
    RequestInvalid,
    Unauthorized,
)
from registry.services.remote import parse_payload

MAX_BODY = 1024 * 1024
SIGNATURE_HEADER = "x-assay-signature"
HOW = ("set ASSAY_HOOK_TOKEN (sent as 'Authorization: Bearer <token>') or ASSAY_HOOK_SECRET "
       "(sent as 'X-Assay-Signature: sha256=<hex HMAC-SHA256 of the body>')")


# Documentation only: ``registry.services.remote.parse_payload`` reads the body.
class HookPayload(RootModel[dict[str, Any] | list[Any]]):
    """An envelope, a CloudEvent or a batch of them, or a reference."""


class ValidateResult(Answer):
    format: str = Field(description="How the body was read.")
    queued: list[dict[str, Any]]
    ignored: list[dict[str, Any]]


def check_configured(settings) -> None:
    if not settings.hook_token and not settings.hook_secret:
        raise HooksDisabled(f"webhook validation is disabled on this registry: {HOW}")


def authenticate(settings, headers) -> str:
    """What the headers alone can settle, before any of the body is read: ``"token"`` when
    the bearer token matches, ``"signature"`` when only ``check_signature`` on the body can
    tell (a signature is sent and a secret configured), else ``Unauthorized`` (or
    ``HooksDisabled``). Comparisons are constant-time (``hmac.compare_digest``)."""
    check_configured(settings)
    scheme, _, token = (headers.get("authorization") or "").strip().partition(" ")
    signature = (headers.get(SIGNATURE_HEADER) or "").strip()
    if not token and not signature:
        raise Unauthorized(f"missing credentials: {HOW.replace('set ', 'send the ', 1)}")
    if token and scheme.lower() == "bearer" and settings.hook_token and hmac.compare_digest(
            token.strip().encode(), settings.hook_token.encode()):
        return "token"
    if signature and settings.hook_secret:
        return "signature"
    raise _invalid_credentials()


def check_signature(settings, headers, body: bytes) -> None:
    """``Unauthorized`` unless ``X-Assay-Signature`` is the HMAC of exactly ``body``."""
    signature = (headers.get(SIGNATURE_HEADER) or "").strip()
    expected = "sha256=" + hmac.new(settings.hook_secret.encode(), body,
                                    hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
        raise _invalid_credentials()


def _invalid_credentials() -> Unauthorized:
    return Unauthorized("invalid credentials: the bearer token or the X-Assay-Signature "
                        "does not match this registry's ASSAY_HOOK_TOKEN / ASSAY_HOOK_SECRET")


def _too_large(_declared: int | None) -> BodyTooLarge:
    return BodyTooLarge(f"a hook body may be at most {MAX_BODY} bytes")


@operation(
    "validateFromWebhook", "validation",
    "Verify the models a webhook names (here or in another registry)", ValidateResult,
    status=202, answer_text="Queued", body=HookPayload, problems=(400, 401, 403, 413),
    description="The body is a CNCF Distribution notification envelope, a CloudEvent, or "
                "{\"reference\": \"HOST/NAME[:TAG|@DIGEST]\"}. Authenticated with "
                "'Authorization: Bearer <ASSAY_HOOK_TOKEN>' or 'X-Assay-Signature: "
                "sha256=<HMAC-SHA256 of the body keyed with ASSAY_HOOK_SECRET>'; 403 when "
                "neither is configured.")
async def validate(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    # Only a signature needs the body: anyone else is refused before it is read.
    credential = authenticate(settings, request.headers)
    body = await read_limited(request, MAX_BODY, _too_large)
    if credential == "signature":
        check_signature(settings, request.headers, body)
    try:
        doc = jsontext.loads(body)
    except ValueError as exc:
        if "ce-specversion" not in request.headers:
            raise RequestInvalid(f"the body is not JSON: {exc}") from None
        try:  # a binary-mode CloudEvent may carry its data as text: the reference
            doc = body.decode()
        except UnicodeDecodeError:
            raise RequestInvalid("the CloudEvent's data is not UTF-8 text") from None
    payload = parse_payload(doc, dict(request.headers))
    result = await run_in_threadpool(service(request).remote.submit, payload,
                                     request.headers.get("host"))
    return JSONResponse({"format": payload.format, **result}, status_code=202)
