"""An OCI Distribution client on httpx: manifests, blobs (push with skip/mount/chunked upload),
tags, catalog, and assay's REST API.

Transient failures (connect errors, dropped connections, timeouts, 5xx, 429) are retried with
exponential backoff by ``tenacity``; the unit of retry is one request, or one part of a
transfer whose body is re-created from the file for every attempt. An unknown host is not
retried. Whatever still fails becomes a one-line ``ClientError`` (see ``errors``).

Pushing a blob: ``HEAD`` (present: skip) -> ``POST ?mount=<d>&from=<repo>`` for the
repositories the blob names (``Blob.mounts``: a base model's) and those the local cache saw
it in -> ``POST ?mount=<d>`` -> upload into the session the last POST opened: one
monolithic ``PUT ?digest=`` up to ``chunk_size``, else ``PATCH`` chunks streamed from the
file (a failed chunk resumes from the offset the registry reports) and a final
``PUT ?digest=``. Locations may be absolute or relative.

Credentials: ``auth.RegistryAuth`` answers the registry's challenges (Docker token auth on
``/v2/``, Basic on assay's ``/api/``) with what ``credentials.lookup`` finds for the host
(``ASSAY_TOKEN``, ``ASSAY_USERNAME``/``ASSAY_PASSWORD``, ``assay login``'s file, Docker's
config) unless the caller passes ``credentials`` (None: anonymous). A push declares its
repository (``intend_push``) so one ``pull,push`` token serves all its requests.

``policy`` (an ``outbound.OutboundPolicy``) limits where it connects, redirects and token
realms included: for registries that someone other than this process's user named.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urljoin

import httpx

from client.auth import AuthError, RegistryAuth
from client.blobs import Blob
from client.credentials import Credentials, lookup
from client.errors import (
    ClientError,
    ConnectionFailed,
    IntegrityError,
    TransientError,
    response_error,
)
from client.locations import BlobLocations
from client.mediatypes import MANIFEST_ACCEPT
from client.outbound import OutboundPolicy
from client.progress import Task
from client.ref import Registry
from client.transport import FileRegion, StdlibTransport

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * MiB
DEFAULT_ATTEMPTS = 4
USER_AGENT = "assay-client/0.1"
LOOKUP = object()  # RegistryClient(credentials=LOOKUP): find them (credentials.lookup)


def default_attempts() -> int:
    try:
        return max(1, int(os.environ.get("ASSAY_RETRIES", DEFAULT_ATTEMPTS)))
    except ValueError:
        return DEFAULT_ATTEMPTS


def _unknown_host(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, httpx.TransportError):
        return not _unknown_host(exc) and not isinstance(exc, httpx.UnsupportedProtocol)
    return False


def _reason(exc: httpx.TransportError) -> str:
    if _unknown_host(exc):
        return "unknown host"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(exc.__context__, ssl.SSLError) or "SSL" in text:
        return f"TLS failed ({text}); for a plain-HTTP registry use --insecure"
    return text


@dataclass
class Manifest:
    content: bytes
    media_type: str
    digest: str

    def document(self, ref) -> dict:
        """The manifest as a JSON object, or a one-line ClientError naming ``ref``."""
        try:
            doc = json.loads(self.content)
        except ValueError:
            raise ClientError(f"{ref}: the manifest is not JSON") from None
        if not isinstance(doc, dict):
            raise ClientError(f"{ref}: the manifest is not a JSON object")
        return doc


class RegistryClient:
    """One registry, one connection pool. Thread-safe: parts and blobs move in parallel."""

    def __init__(self, registry: Registry, *, transport: httpx.BaseTransport | None = None,
                 attempts: int | None = None, backoff: float = 0.5, timeout: float = 120.0,
                 max_connections: int = 16, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 locations: BlobLocations | None = None,
                 credentials: Credentials | None | object = LOOKUP,
                 policy: OutboundPolicy | None = None):
        self.registry = registry
        if credentials is LOOKUP:
            credentials = lookup(registry.host, registry.scheme)
        self.auth = RegistryAuth(registry.host, registry.base_url, credentials)
        self.attempts = attempts or default_attempts()
        self.backoff = backoff
        self.chunk_size = chunk_size
        self.locations = locations if locations is not None else BlobLocations()
        self.http = httpx.Client(
            base_url=registry.base_url, transport=transport or StdlibTransport(policy=policy),
            timeout=httpx.Timeout(timeout, connect=15.0),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            headers={"User-Agent": USER_AGENT}, follow_redirects=False, auth=self.auth)
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def intend_push(self, name: str) -> None:
        """Ask for ``pull,push`` tokens for ``name`` from the first request on."""
        self.auth.intend(name, "pull,push")

    def count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    # ------------------------------------------------------------------ requests
    def retrying(self, attempts: int | None = None) -> tenacity.Retrying:
        import tenacity  # ~25 ms of start-up (it imports asyncio): only once a retry is due

        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts or self.attempts),
            wait=tenacity.wait_exponential(multiplier=self.backoff, min=self.backoff, max=10),
            retry=tenacity.retry_if_exception(is_transient), reraise=True)

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` with retries; transport failures and 5xx/429 become ``ClientError``s."""
        try:
            try:
                return fn()  # most calls succeed at once and need no retry machinery
            except Exception as exc:
                if not is_transient(exc) or self.attempts < 2:
                    raise
            time.sleep(self.backoff)  # the first attempt's failure: back off, then retry
            return self.retrying(self.attempts - 1)(fn)
        except TransientError as exc:
            raise response_error(exc.response, what) from None
        except httpx.TransportError as exc:
            raise self.connection_failed(exc, what) from None

    def connection_failed(self, exc: httpx.TransportError, what: str) -> ClientError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ConnectionFailed(f"cannot reach registry {self.registry.host}: {_reason(exc)}")
        return ConnectionFailed(f"{what}: {_reason(exc)}")

    def send(self, method: str, url: str, *, headers: dict | None = None,
             params: dict | None = None, content=None, stream: bool = False,
             follow_redirects: bool = False) -> httpx.Response:
        """One request, no retries; a 5xx or 429 answer raises ``TransientError``."""
        body = content if isinstance(content, FileRegion) else None
        request = self.http.build_request(method, url, headers=headers, params=params,
                                          content=None if body else content)
        if body is not None:  # the region as the stream, so the transport can sendfile() it
            request = httpx.Request(method, request.url, headers=request.headers, stream=body,
                                    extensions=request.extensions)
        response = self.http.send(request, stream=stream, follow_redirects=follow_redirects)
        self.count(f"{method} {response.status_code}")
        if response.status_code >= 500 or response.status_code == 429:
            with contextlib.suppress(httpx.HTTPError):
                response.read()
            response.close()
            raise TransientError(response)
        return response

    def request(self, method: str, url: str, *, what: str, ok: tuple[int, ...] = (200,),
                headers: dict | None = None, params: dict | None = None,
                content: Callable[[], object] | None = None,
                follow_redirects: bool = False) -> httpx.Response:
        """A whole request with retries; an answer outside ``ok`` raises its OCI error."""
        def attempt() -> httpx.Response:
            return self.send(method, url, headers=headers, params=params,
                             content=content() if content else None,
                             follow_redirects=follow_redirects)

        response = self.call(attempt, what)
        if response.status_code not in ok:
            raise response_error(response, what)
        return response

    def resolve(self, response: httpx.Response, what: str) -> str:
        """The absolute URL of a response's ``Location`` (relative ones resolved)."""
        location = response.headers.get("Location")
        if not location:
            raise ClientError(f"{what}: the registry answered {response.status_code} "
                              "without a Location header")
        return urljoin(str(response.url), location)

    # ------------------------------------------------------------------ manifests & tags
    def get_manifest(self, name: str, reference: str) -> Manifest:
        what = f"{self.registry.host}/{name}{'@' if ':' in reference else ':'}{reference}"
        resp = self.request("GET", f"/v2/{name}/manifests/{reference}", what=what,
                            headers={"Accept": MANIFEST_ACCEPT})
        digest = "sha256:" + hashlib.sha256(resp.content).hexdigest()
        if reference.startswith("sha256:") and reference != digest:
            raise IntegrityError(f"{what}: the registry sent a manifest whose digest is {digest}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(resp.content, media_type, digest)

    def put_manifest(self, name: str, reference: str, content: bytes, media_type: str) -> str:
        what = f"push manifest {self.registry.host}/{name}:{reference}"
        self.request("PUT", f"/v2/{name}/manifests/{reference}", what=what,
                     ok=(200, 201, 202), headers={"Content-Type": media_type},
                     content=lambda: content)
        return "sha256:" + hashlib.sha256(content).hexdigest()

    def delete_manifest(self, name: str, reference: str) -> None:
        what = f"delete {self.registry.host}/{name}{'@' if ':' in reference else ':'}{reference}"
        self.request("DELETE", f"/v2/{name}/manifests/{reference}", what=what, ok=(200, 202, 204))

    def manifest_digest(self, name: str, reference: str) -> str | None:
        """``Docker-Content-Digest`` of a HEAD (None if the registry does not say)."""
        resp = self.request("HEAD", f"/v2/{name}/manifests/{reference}",
                            what=f"{self.registry.host}/{name}:{reference}",
                            headers={"Accept": MANIFEST_ACCEPT})
        return resp.headers.get("Docker-Content-Digest")

    def _paged(self, url: str, key: str, what: str) -> list[str]:
        items: list[str] = []
        params: dict | None = {"n": 1000}
        while url:
            resp = self.request("GET", url, what=what, params=params)
            try:
                items += resp.json().get(key) or []
            except ValueError:
                raise ClientError(f"{what}: the registry answered with invalid JSON") from None
            nxt = resp.links.get("next", {}).get("url")
            url, params = (urljoin(str(resp.url), nxt), None) if nxt else ("", None)
        return items

    def catalog(self) -> list[str]:
        if self.auth.credentials is not None and not self.auth.challenged:
            # Anonymous callers get a filtered catalog, not a challenge: ask /v2/ first,
            # whose 401 shows the realm, so the catalog request carries a token.
            self.call(lambda: self.send("GET", "/v2/").close(), f"ping {self.registry.host}")
        return self._paged("/v2/_catalog", "repositories", f"catalog of {self.registry.host}")

    def tags(self, name: str) -> list[str]:
        return self._paged(f"/v2/{name}/tags/list", "tags", f"{self.registry.host}/{name}")

    def rest(self, path: str) -> dict | None:
        """GET assay's REST API; None when this is not assay (404, non-JSON, error), or
        when it wants credentials the client does not have."""
        def attempt() -> httpx.Response:
            return self.send("GET", path, headers={"Accept": "application/json"})

        try:
            resp = self.call(attempt, f"GET {path}")
        except AuthError:
            return None
        if resp.status_code != 200:
            return None
        try:
            body = resp.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # ------------------------------------------------------------------ blobs: pull side
    def blob_size(self, name: str, digest: str) -> int | None:
        """Size from a blob HEAD, or None when absent."""
        resp = self.request("HEAD", f"/v2/{name}/blobs/{digest}", ok=(200, 404),
                            what=f"HEAD blob {digest[:19]} in {name}", follow_redirects=True)
        if resp.status_code == 404:
            return None
        length = resp.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else -1

    def blob_url(self, name: str, digest: str) -> str:
        return f"/v2/{name}/blobs/{digest}"

    # ------------------------------------------------------------------ blobs: push side
    def push_blob(self, name: str, blob: Blob, task: Task | None = None) -> str:
        """Make ``blob`` present in ``name``: "already present", "mounted" or "uploaded"."""
        if self.blob_size(name, blob.digest) is not None:
            self.count("blob present")
            return "already present"
        what = f"upload {blob.label or blob.digest[:19]} to {self.registry.host}/{name}"
        hinted = [r for r in blob.mounts if r != name]
        sources = hinted + [r for r in self.locations.repositories(self.registry.host,
                                                                   blob.digest)
                            if r != name and r not in hinted][:2]
        location = None
        for source in [*sources, None]:
            params = {"mount": blob.digest, **({"from": source} if source else {})}
            if location:  # an earlier mount attempt opened a session we will not use
                self._cancel(location)
            resp = self.request("POST", f"/v2/{name}/blobs/uploads/", what=what,
                                ok=(201, 202, 400, 403, 404, 405), params=params)
            if resp.status_code == 201:
                self.count("blob mounted")
                return "mounted"
            location = self.resolve(resp, what) if resp.status_code == 202 else None
        if blob.size <= self.chunk_size:
            self._upload_monolithic(name, blob, location, task, what)
        else:
            self._upload_chunked(name, blob, location, task, what)
        self.count("blob uploaded")
        self.count("bytes uploaded", blob.size)
        return "uploaded"

    def _start_upload(self, name: str, what: str) -> str:
        resp = self.request("POST", f"/v2/{name}/blobs/uploads/", what=what, ok=(202,))
        return self.resolve(resp, what)

    def _cancel(self, location: str) -> None:
        with contextlib.suppress(httpx.HTTPError, TransientError):
            self.send("DELETE", location).close()

    def _upload_monolithic(self, name: str, blob: Blob, location: str | None,
                           task: Task | None, what: str) -> None:
        state = {"location": location}

        def attempt() -> httpx.Response:
            if state["location"] is None:
                state["location"] = self._start_upload(name, what)
            if task:
                task.reset_to(0)
            url = httpx.URL(state["location"]).copy_merge_params({"digest": blob.digest})
            state["location"] = None  # a failed attempt leaves the session unusable
            return self.send("PUT", str(url), content=blob.body(0, None, _advance(task)),
                             headers={"Content-Type": "application/octet-stream",
                                      "Content-Length": str(blob.size)})

        resp = self.call(attempt, what)
        if resp.status_code not in (201, 204):
            raise response_error(resp, what)

    def _upload_offset(self, location: str, what: str) -> tuple[int, str]:
        """Where an upload session stands (``GET`` its location: ``Range: 0-N``)."""
        resp = self.request("GET", location, what=what, ok=(204, 200))
        received = resp.headers.get("Range", "")
        end = received.rpartition("-")[2]
        # "0-0" is what registries say for an empty session (and for one byte; chunks are
        # never one byte long, so it means empty here).
        offset = int(end) + 1 if end.isdigit() and received != "0-0" else 0
        return offset, self.resolve(resp, what) if "Location" in resp.headers else location

    def _upload_chunked(self, name: str, blob: Blob, location: str | None,
                        task: Task | None, what: str) -> None:
        location = location or self._start_upload(name, what)
        offset = 0
        while offset < blob.size:
            try:
                for attempt in self.retrying():
                    with attempt:
                        if attempt.retry_state.attempt_number > 1:
                            offset, location = self._upload_offset(location, what)
                        if task:
                            task.reset_to(offset)
                        length = min(self.chunk_size, blob.size - offset)
                        resp = self._patch(location, blob, offset, length, task)
            except TransientError as exc:
                raise response_error(exc.response, what) from None
            except httpx.TransportError as exc:
                raise self.connection_failed(exc, what) from None
            if resp.status_code != 202:
                raise response_error(resp, what)
            location = self.resolve(resp, what)
            offset += length
        url = httpx.URL(location).copy_merge_params({"digest": blob.digest})
        self.request("PUT", str(url), what=what, ok=(201, 204),
                     headers={"Content-Length": "0"})

    def _patch(self, location: str, blob: Blob, offset: int, length: int,
               task: Task | None) -> httpx.Response:
        return self.send("PATCH", location, content=blob.body(offset, length, _advance(task)),
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Length": str(length),
                                  "Content-Range": f"{offset}-{offset + length - 1}"})

    def remember(self, name: str, digests: list[str]) -> None:
        self.locations.remember(self.registry.host, name, digests)


def _advance(task: Task | None) -> Callable[[int], None] | None:
    return task.advance if task else None

