"""Errors on the Hugging Face Hub API, in the Hub's own shape.

``huggingface_hub`` turns a failed response into its exceptions by the status and the
``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``,
``GatedRepo``), and shows ``X-Error-Message`` (or the body's ``error``) to the user. The
registry raises its usual ``registry.errors`` exceptions on these routes too; this module
only chooses the Hub's code for each (the one table, ``HUB_CODES``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.errors import (
    BlobUnknown,
    Denied,
    EntryUnknown,
    ManifestUnknown,
    NameUnknown,
    RegistryError,
    TagInvalid,
    Unauthorized,
)

HUB_API = "assay.hub"  # scope key set by the Hub routes: render errors the Hub's way

# Most specific first: ModelNotReady is a ManifestUnknown (the revision exists but may
# not be served yet; its message says why). An anonymous caller refused on a private
# model gets RepoNotFound, as on the Hub: the client then says "make sure you are
# authenticated" next to our message.
HUB_CODES: tuple[tuple[type[RegistryError], str], ...] = (
    (EntryUnknown, "EntryNotFound"),
    (BlobUnknown, "EntryNotFound"),  # a file whose blob went (quarantined by scrub)
    (ManifestUnknown, "RevisionNotFound"),
    (TagInvalid, "RevisionNotFound"),
    (NameUnknown, "RepoNotFound"),
    (Unauthorized, "RepoNotFound"),
)


def is_hub(request: Request) -> bool:
    return bool(request.scope.get(HUB_API))


def hub_code(exc: RegistryError, request: Request) -> str | None:
    """The Hub's ``X-Error-Code`` for ``exc``. Two depend on the request: wrong
    credentials are not "not found" (the client then shows our message, not "make sure
    you are authenticated"), and a download refused to a signed-in caller is
    ``GatedRepo`` (a refused upload stays a plain 403), which ``hf_hub_download``
    raises with our message instead of "an error happened while locating the file"."""
    if isinstance(exc, Unauthorized) and request.headers.get("authorization"):
        return None
    if isinstance(exc, Denied):
        return "GatedRepo" if request.method in ("GET", "HEAD") else None
    for cls, code in HUB_CODES:
        if isinstance(exc, cls):
            return code
    return None


def hub_error(status: int, message: str, headers: dict[str, str],
              code: str | None) -> JSONResponse:
    """``{"error": message}`` with the Hub's headers (``headers`` already carries the
    encoded ``X-Error-Message``)."""
    if code is not None:
        headers = {**headers, "X-Error-Code": code}
    return JSONResponse({"error": message}, status_code=status, headers=headers)
