"""Domain exceptions and the one table that maps them to OCI error codes.

Hierarchy::

    RegistryError                     (code, status, message, detail)
    ├── NotFound
    │   ├── BlobUnknown               BLOB_UNKNOWN          404
    │   ├── BlobUploadUnknown         BLOB_UPLOAD_UNKNOWN   404
    │   ├── ManifestUnknown           MANIFEST_UNKNOWN      404
    │   │   └── ModelNotReady         MANIFEST_UNKNOWN      404 (readiness gate: names why)
    │   ├── NameUnknown               NAME_UNKNOWN          404
    │   └── EntryUnknown              BLOB_UNKNOWN          404 (Hub API: no such file)
    ├── BlobUploadInvalid             BLOB_UPLOAD_INVALID   400
    │   ├── RangeInvalid              BLOB_UPLOAD_INVALID   416 (carries the current offset)
    │   └── BodyTimeout               BLOB_UPLOAD_INVALID   400 (a request body stalled)
    ├── DigestInvalid                 DIGEST_INVALID        400
    ├── ManifestInvalid               MANIFEST_INVALID      400
    │   └── ManifestTooLarge          MANIFEST_INVALID      413
    ├── ManifestBlobUnknown           MANIFEST_BLOB_UNKNOWN 400
    ├── NameInvalid                   NAME_INVALID          400
    ├── TagInvalid                    MANIFEST_INVALID      400
    ├── SizeInvalid                   SIZE_INVALID          400
    │   └── UploadTooLarge            SIZE_INVALID          413 (max_upload_bytes)
    ├── RangeNotSatisfiable           SIZE_INVALID          416 (blob GET)
    ├── PaginationInvalid             UNSUPPORTED           400
    ├── Unsupported                   UNSUPPORTED           405
    ├── RequestInvalid                UNSUPPORTED           400 (REST: a bad field)
    ├── NotAModel                     UNSUPPORTED           409 (REST: verify a non-model)
    ├── Conflict                      UNSUPPORTED           409 (REST: exists already)
    ├── PreconditionFailed            UNSUPPORTED           412 (Hub API: a stale parent commit)
    ├── Unauthorized                  UNAUTHORIZED          401 (no or bad credentials)
    ├── Denied                        DENIED                403 (credentials lack the right)
    │   └── QuotaExceeded             DENIED                403 (a namespace's storage quota)
    ├── HooksDisabled                 DENIED                403 (webhooks in: not configured)
    ├── BodyTooLarge                  SIZE_INVALID          413 (a REST body over its limit)
    ├── TooManyRequests               TOOMANYREQUESTS       429 (rate or session limit; Retry-After)
    ├── RemoteUnavailable             UNKNOWN               502 (another registry unreachable)
    └── StorageError                  UNKNOWN               500 (backend failure)

Codes are only those the OCI distribution spec lists. Handlers raise these;
``registry.api.errors`` renders them as ``{"errors": [{"code", "message", "detail"}]}``
(the Hugging Face Hub API with the Hub's own ``X-Error-Code`` values instead:
``registry.api.hf.errors``). Nothing else builds error bodies.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    code = "UNKNOWN"
    status = 500
    default_message = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None):
        self.message = message or self.default_message
        self.detail = detail
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        return {}


class NotFound(RegistryError):
    status = 404


class BlobUnknown(NotFound):
    code = "BLOB_UNKNOWN"
    default_message = "blob unknown to registry"


class BlobUploadUnknown(NotFound):
    code = "BLOB_UPLOAD_UNKNOWN"
    default_message = "blob upload unknown to registry"


class ManifestUnknown(NotFound):
    code = "MANIFEST_UNKNOWN"
    default_message = "manifest unknown"


class ModelNotReady(ManifestUnknown):
    """A tag whose model has no manifest that passed verification (the readiness gate).
    MANIFEST_UNKNOWN so every client reports it as "not found" with our message."""


class NameUnknown(NotFound):
    code = "NAME_UNKNOWN"
    default_message = "repository name not known to registry"


class EntryUnknown(NotFound):
    """A file that a model's revision does not hold (the Hub API's EntryNotFound)."""

    code = "BLOB_UNKNOWN"
    default_message = "no such file in this revision"


class BlobUploadInvalid(RegistryError):
    code = "BLOB_UPLOAD_INVALID"
    status = 400
    default_message = "blob upload invalid"


class RangeInvalid(BlobUploadInvalid):
    """A chunk that does not start where the upload stands (out of order or repeated)."""

    status = 416

    def __init__(self, message: str, *, offset: int, location: str | None = None):
        super().__init__(message, {"offset": offset})
        self.offset = offset
        self.location = location

    def headers(self) -> dict[str, str]:
        h = {"Range": f"0-{max(self.offset - 1, 0)}"}
        if self.location:
            h["Location"] = self.location
        return h


class BodyTimeout(BlobUploadInvalid):
    """No body bytes arrived for ``request_idle_timeout_seconds`` (a stalled client);
    the spec lists no timeout code, so it is an invalid upload (400)."""

    default_message = "the request body stalled"


class DigestInvalid(RegistryError):
    code = "DIGEST_INVALID"
    status = 400
    default_message = "provided digest did not match uploaded content"


class ManifestInvalid(RegistryError):
    code = "MANIFEST_INVALID"
    status = 400
    default_message = "manifest invalid"


class ManifestTooLarge(ManifestInvalid):
    status = 413


class ManifestBlobUnknown(RegistryError):
    code = "MANIFEST_BLOB_UNKNOWN"
    status = 400
    default_message = "manifest references a manifest or blob unknown to registry"


class NameInvalid(RegistryError):
    code = "NAME_INVALID"
    status = 400
    default_message = "invalid repository name"


class TagInvalid(RegistryError):
    code = "MANIFEST_INVALID"  # the spec's code list has no tag-specific code
    status = 400
    default_message = "invalid tag"


class SizeInvalid(RegistryError):
    code = "SIZE_INVALID"
    status = 400
    default_message = "provided length did not match content length"


class UploadTooLarge(SizeInvalid):
    """An upload session would grow past ``max_upload_bytes``."""

    status = 413
    default_message = "the upload exceeds the size limit"


class RangeNotSatisfiable(RegistryError):
    code = "SIZE_INVALID"  # the spec's code list has no range-specific code
    status = 416
    default_message = "requested range not satisfiable"

    def __init__(self, size: int):
        super().__init__(f"requested range not satisfiable for a blob of {size} bytes")
        self.size = size

    def headers(self) -> dict[str, str]:
        return {"Content-Range": f"bytes */{self.size}"}


class PaginationInvalid(RegistryError):
    code = "UNSUPPORTED"  # the spec's list has no pagination code (Distribution's isn't in it)
    status = 400
    default_message = "invalid number of results requested"


class Unsupported(RegistryError):
    code = "UNSUPPORTED"
    status = 405
    default_message = "the operation is unsupported"


class RequestInvalid(RegistryError):
    code = "UNSUPPORTED"
    status = 400
    default_message = "invalid request"


class NotAModel(RegistryError):
    code = "UNSUPPORTED"
    status = 409
    default_message = "not a model"


class Unauthorized(RegistryError):
    """No valid credentials. ``challenge`` is the ``WWW-Authenticate`` value that tells
    the client how to authenticate (a Bearer token realm for /v2/, Basic for /api/)."""

    code = "UNAUTHORIZED"
    status = 401
    default_message = "authentication required"

    def __init__(self, message: str | None = None, detail: Any = None, *,
                 challenge: str = 'Bearer realm="assay-hooks"'):
        super().__init__(message, detail)
        self.challenge = challenge

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge}


class Denied(RegistryError):
    """Valid credentials that do not allow this (a role or token scope is missing)."""

    code = "DENIED"
    status = 403
    default_message = "requested access to the resource is denied"


class QuotaExceeded(Denied):
    """A blob would take its namespace over its storage quota (registry.services.quotas).
    DENIED, as Harbor answers (goharbor/harbor#8797): docker then stops instead of
    retrying the push, and prints ``denied: <message>``."""

    default_message = "the namespace is over its storage quota"


class Conflict(RegistryError):
    code = "UNSUPPORTED"
    status = 409
    default_message = "conflict"


class PreconditionFailed(RegistryError):
    """A Hub commit whose ``parentCommit`` is no longer the branch's head."""

    code = "UNSUPPORTED"
    status = 412
    default_message = "the branch has moved since the parent commit"


class HooksDisabled(RegistryError):
    code = "DENIED"
    status = 403
    default_message = "webhook validation is not configured"


class BodyTooLarge(RegistryError):
    code = "SIZE_INVALID"
    status = 413
    default_message = "the body is too large"


class TooManyRequests(RegistryError):
    """A client over a request-rate or open-upload-session limit; ``retry_after`` seconds."""

    code = "TOOMANYREQUESTS"
    status = 429
    default_message = "too many requests"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0):
        self.retry_after = max(1, int(-(-retry_after // 1)))  # whole seconds, rounded up
        super().__init__(message, {"retry_after": self.retry_after})

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RemoteUnavailable(RegistryError):
    """A remote registry could not be asked (tag resolution at submit time)."""

    code = "UNKNOWN"
    status = 502
    default_message = "the remote registry could not be reached"


class StorageError(RegistryError):
    """A blob-store backend failed; raised at the storage boundary, never a raw boto/OS error."""

    code = "UNKNOWN"
    status = 500
    default_message = "storage backend error"
