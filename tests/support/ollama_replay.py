"""An exact replay of the Ollama client's registry conversations, written with httpx.

Ollama cannot be installed here, so this module sends the requests ``ollama push/pull --insecure
HOST:PORT/NAMESPACE/MODEL:TAG`` sends, in the same order, with the same headers and the same
tolerance (or lack of it) for the answers. Read from ollama/ollama ``server/images.go``
(``makeRequest``, ``PushModel``, ``PullModel``), ``server/upload.go`` and ``server/download.go``;
see docs/clients.md. Deliberate points of fidelity:

* Every request carries only the headers Go would send (``User-Agent: ollama/...`` from
  ``makeRequest``, ``Go-http-client/1.1`` for part downloads; Go's transport adds
  ``Accept-Encoding: gzip`` only when there is no ``Range`` and the method is not HEAD).
* Query strings are built like Go's ``url.Values.Encode()``: keys sorted, values escaped with
  ``QueryEscape`` (``sha256%3A...``, ``ns%2Fmodel``), existing query parameters re-encoded.
* Upload locations are used verbatim and must be absolute (Go fails with ``unsupported protocol
  scheme ""`` otherwise); ``--insecure`` forces the scheme to ``http``.
* PATCH bodies are streams without ``GetBody``: Go does not follow a 307 on them, Ollama handles
  it itself by PUTting the part to the redirect target.
* The blob GET that finds the download URL follows redirects only while they stay on the same
  hostname (``CheckRedirect`` in download.go); the final answer must be 200 or 307 and carry a
  ``Location`` (``resp.Location()``: "http: no Location header in response"). Newer clients
  (``strict_location=False``) also accept 302, and a 200 without Location means "download from
  the blob URL itself".
* Parts are fetched with ``http.DefaultClient`` (follows any redirect, no Authorization) and
  ``io.CopyN(part.Size)``: the status code is never checked and exactly the part length is
  copied, so a registry that ignores Range silently corrupts the file; the final sha256 check
  is what catches it. Where Ollama would retry with multi-second back-offs, the replay raises
  ``OllamaProtocolError`` with the exchange that failed, so a test reports it precisely.
* Auth is reactive only (``makeRequestWithRetry`` in images.go, auth.go): a request is sent
  without credentials (or with the bearer token the push or pull already holds); on a 401 the
  ``WWW-Authenticate: Bearer realm="..",service="..",scope=".."`` values are read with
  Ollama's ``getValue`` (quoted values only), the realm must be on the request's host:port,
  the token URL (realm + service + scopes + ts + nonce, ``url.Values.Encode``) is signed with
  the ed25519 key in ``key_path`` (``~/.ollama/id_ed25519``) and fetched with
  ``Authorization: <public key>:<signature>``; the ``{"token"}`` is then sent as ``Bearer``
  on one retry and on every later request of that push or pull. A second 401 fails with
  ``unauthorized: access denied`` (or ``unknown ollama key`` for an anonymous token).
  Basic auth is never sent. Part downloads never carry Authorization (the ``Location`` of
  the blob GET must be a signed URL when auth is on); a PATCH answered 401 fetches a new
  token and sends the part again (upload.go ``uploadPart``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote_plus, urljoin, urlsplit, urlunsplit

import httpx

from tests.support.ollama_keys import OllamaKey, token_url

MB = 1000 * 1000  # format.MegaByte
NUM_PARTS = 16  # numUploadParts / numDownloadParts
MIN_PART_SIZE = 100 * MB
MAX_PART_SIZE = 1000 * MB
MAX_PARALLEL_PARTS = 16  # errgroup SetLimit(numDownloadParts)
MAX_REDIRECTS = 10

DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"

OLLAMA_USER_AGENT = "ollama/0.6.5 (amd64 linux) Go/go1.24.1"
GO_USER_AGENT = "Go-http-client/1.1"

BlobSource = bytes | str | os.PathLike


class OllamaProtocolError(AssertionError):
    """The registry answered something the real Ollama client would fail on (or corrupt)."""


# --------------------------------------------------------------------------- recording


@dataclass
class Exchange:
    """One HTTP request and the headers of its answer."""

    method: str
    url: str
    request_headers: dict[str, str]
    status: int
    response_headers: dict[str, str]

    def __str__(self) -> str:
        req = "".join(f"\n    > {k}: {v}" for k, v in self.request_headers.items())
        res = "".join(f"\n    < {k}: {v}" for k, v in self.response_headers.items())
        return f"{self.method} {self.url} -> {self.status}{req}{res}"


@dataclass
class Trace:
    """What a replayed push or pull did, for assertions and failure reports."""

    exchanges: list[Exchange] = field(default_factory=list)
    parts: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # digest -> (off, size)
    skipped: list[str] = field(default_factory=list)  # HEAD < 400: already there
    mounted: list[str] = field(default_factory=list)  # POST answered 201
    manifest_bytes: bytes | None = None
    manifest: dict | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, response: httpx.Response) -> None:
        request = response.request
        exchange = Exchange(request.method, str(request.url), dict(request.headers),
                            response.status_code, dict(response.headers))
        with self._lock:
            self.exchanges.append(exchange)

    def find(self, method: str | None = None, contains: str = "") -> list[Exchange]:
        return [e for e in self.exchanges
                if (method is None or e.method == method) and contains in e.url]

    def dump(self) -> str:
        return "\n".join(str(e) for e in self.exchanges)


def _error(what: str, response: httpx.Response | None = None,
           detail: str = "") -> OllamaProtocolError:
    lines = [what]
    if response is not None:
        request = response.request
        lines.append(f"  request:  {request.method} {request.url}")
        lines += [f"    > {k}: {v}" for k, v in request.headers.items()]
        lines.append(f"  response: {response.status_code} {response.reason_phrase}")
        lines += [f"    < {k}: {v}" for k, v in response.headers.items()]
        try:
            body = response.read()[:1000]
            if body:
                lines.append(f"  body: {body!r}")
        except (httpx.HTTPError, RuntimeError):
            pass
    if detail:
        lines.append(detail)
    return OllamaProtocolError("\n".join(lines))


# --------------------------------------------------------------------------- Go semantics


def part_plan(total: int) -> list[tuple[int, int]]:
    """(offset, size) of each part: size/16 clamped to [100 MB, 1000 MB], last one shorter."""
    size = total // NUM_PARTS
    if size < MIN_PART_SIZE:
        size = MIN_PART_SIZE
    elif size > MAX_PART_SIZE:
        size = MAX_PART_SIZE
    parts = []
    offset = 0
    while offset < total:
        if offset + size > total:
            size = total - offset
        parts.append((offset, size))
        offset += size
    return parts


def go_json(obj) -> bytes:
    """``json.Marshal``: compact, and <, >, & (and U+2028/2029) escaped as \\u00XX."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode()


def go_values_encode(pairs: Sequence[tuple[str, str]]) -> str:
    """``url.Values.Encode()``: sorted by key, values in insertion order, QueryEscape'd."""
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    return "&".join(f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}"
                    for k in sorted(values) for v in values[k])


def _with_query(url: str, extra: Sequence[tuple[str, str]]) -> str:
    """``values := u.Query(); values.Add(...); u.RawQuery = values.Encode()``."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True) + list(extra)
    return urlunsplit(parts._replace(query=go_values_encode(pairs)))


def _upload_url(location: str, response: httpx.Response | None, what: str) -> str:
    """``url.Parse(location)`` used as the next request URL, as Ollama does."""
    if not location:
        raise _error(f"{what}: no Docker-Upload-Location or Location header "
                     "(Ollama would send the next request to an empty URL)", response)
    parts = urlsplit(location)
    if not parts.scheme or not parts.netloc:
        raise _error(f"{what}: upload location {location!r} is not an absolute URL; Ollama uses "
                     'it verbatim and Go fails with: unsupported protocol scheme ""', response)
    if parts.scheme != "http":  # makeRequest: --insecure forces http
        parts = parts._replace(scheme="http")
    return urlunsplit(parts)


def _check_name(ns_model: str) -> None:
    if ns_model.count("/") != 1 or not all(ns_model.split("/")):
        raise ValueError(f"Ollama names are namespace/model, got {ns_model!r}")


# --------------------------------------------------------------------------- blobs


@dataclass
class Blob:
    media_type: str
    digest: str
    size: int
    path: Path | None = None
    data: bytes | None = None

    def read(self, offset: int, size: int) -> bytes:
        if self.data is not None:
            return self.data[offset:offset + size]
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def descriptor(self) -> dict:
        # Layer struct field order: mediaType, digest, size (from/name omitempty)
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def describe(media_type: str, source: BlobSource) -> Blob:
    if isinstance(source, bytes):
        return Blob(media_type, "sha256:" + hashlib.sha256(source).hexdigest(), len(source),
                    data=source)
    path = Path(source)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            digest.update(chunk)
    return Blob(media_type, "sha256:" + digest.hexdigest(), path.stat().st_size, path=path)


def ollama_config(diff_ids: list[str] | None = None, *, model_family: str = "gemma3",
                  model_type: str = "268.10M", file_type: str = "Q4_K_M") -> dict:
    """The config Ollama writes (ConfigV2 field order); rootfs is filled in by ollama_push."""
    config = {
        "model_format": "gguf",
        "model_family": model_family,
        "model_families": [model_family],
        "model_type": model_type,
        "file_type": file_type,
        "architecture": "amd64",
        "os": "linux",
    }
    if diff_ids is not None:
        config["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    return config


GEMMA3_TEMPLATE = (
    b"{{- range $i, $_ := .Messages }}\n{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    b"{{- if or (eq .Role \"user\") (eq .Role \"system\") }}<start_of_turn>user\n"
    b"{{ .Content }}<end_of_turn>\n{{ if $last }}<start_of_turn>model\n{{ end }}\n"
    b"{{- else if eq .Role \"assistant\" }}<start_of_turn>model\n"
    b"{{ .Content }}{{ if not $last }}<end_of_turn>\n{{ end }}\n{{- end }}\n{{- end }}"
)
GEMMA3_PARAMS = {"stop": ["<end_of_turn>"], "temperature": 1, "top_k": 64, "top_p": 0.95}


def gemma3_params_layer() -> bytes:
    """params layer as Ollama writes it: json.NewEncoder(...).Encode(map) (sorted, newline)."""
    return go_json(dict(sorted(GEMMA3_PARAMS.items()))) + b"\n"


# --------------------------------------------------------------------------- http


def _client(trace: Trace, user_agent: str, *, max_connections: int = 4) -> httpx.Client:
    client = httpx.Client(
        timeout=httpx.Timeout(300.0, connect=10.0),
        limits=httpx.Limits(max_connections=max_connections),
        event_hooks={"response": [trace.record]},
    )
    for name in list(client.headers.keys()):  # drop httpx's default Accept/Accept-Encoding/...
        del client.headers[name]
    client.headers["User-Agent"] = user_agent
    return client


def _request(client: httpx.Client, method: str, url: str, *, headers: dict | None = None,
             content: bytes | None = None, follow_redirects: bool = True,
             opts: RegistryOptions | None = None) -> httpx.Response:
    """``makeRequest``: with ``opts`` holding a token, ``Authorization: Bearer <token>``."""
    headers = dict(headers or {})
    if opts is not None and opts.token:
        headers["Authorization"] = f"Bearer {opts.token}"
    if method != "HEAD" and "Range" not in headers:
        headers.setdefault("Accept-Encoding", "gzip")  # Go's transport adds it
    if content is None and method in ("POST", "PUT", "PATCH"):
        headers.setdefault("Content-Length", "0")
    response = client.request(method, url, headers=headers, content=content,
                              follow_redirects=follow_redirects)
    return response


def _check(response: httpx.Response, what: str) -> None:
    """``makeRequestWithRetry``: 404 -> os.ErrNotExist, other >= 400 -> error."""
    if response.status_code == 404:
        raise _error(f"{what}: file does not exist (404)", response)
    if response.status_code >= 400:
        raise _error(f"{what}: {response.status_code}", response)


# --------------------------------------------------------------------------- auth


def default_key_path() -> Path:
    """Where Ollama keeps its key (``auth.keyPath``): ``~/.ollama/id_ed25519``."""
    return Path.home() / ".ollama" / "id_ed25519"


@dataclass
class RegistryOptions:
    """``registryOptions`` of one push or pull: the bearer token it holds once a 401 made it
    fetch one (sent on every later request), and the key file that signs token requests
    (the replay's stand-in for ``$HOME/.ollama/id_ed25519``)."""

    key_path: Path
    token: str = ""


def _options(key_path: str | os.PathLike | None) -> RegistryOptions:
    return RegistryOptions(Path(key_path) if key_path is not None else default_key_path())


def go_get_value(header: str, key: str) -> str:
    """images.go ``getValue``: the text after ``key="`` up to a quote that is followed by a
    comma or the end. Unquoted values come out mangled (first character lost), as in Go."""
    start = header.find(key + "=")
    if start == -1:
        return ""
    start += len(key) + 2
    end = start
    while end < len(header):
        if header[end] == '"':
            if end + 1 < len(header) and header[end + 1] != ",":
                end += 1
                continue
            break
        end += 1
    return header[start:end]


def parse_registry_challenge(header: str) -> tuple[str, str, str]:
    """``parseRegistryChallenge``: (realm, service, scope) of a ``Bearer`` challenge."""
    header = header.removeprefix("Bearer ")
    return (go_get_value(header, "realm"), go_get_value(header, "service"),
            go_get_value(header, "scope"))


def token_subject(token: str) -> str:
    """``getTokenSubject``: the JWT's ``sub``, not verified ("" when there is none)."""
    parts = token.split(".")
    if len(parts) != 3:
        return ""
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return ""
    if not isinstance(payload, dict) or "sub" not in payload:
        return ""
    return str(payload["sub"])


def _load_key(opts: RegistryOptions, response: httpx.Response) -> OllamaKey:
    """``auth.Sign`` reads the key file on every signature; a missing file is its error."""
    try:
        return OllamaKey.load(opts.key_path)
    except FileNotFoundError:
        raise _error(f"open {opts.key_path}: no such file or directory", response) from None


def _authorization_token(client: httpx.Client, request_url: str, challenged: httpx.Response,
                         opts: RegistryOptions) -> str:
    """``getAuthorizationToken``: the signed token request for a 401's challenge."""
    realm, service, scope = parse_registry_challenge(
        challenged.headers.get("WWW-Authenticate", ""))
    url = token_url(realm, service, scope)
    original, realm_host = urlsplit(request_url).netloc, urlsplit(url).netloc
    if realm_host != original:
        raise _error(f'realm host "{realm_host}" does not match original host "{original}"',
                     challenged)
    signature = _load_key(opts, challenged).sign(url)
    resp = _request(client, "GET", url, headers={"Authorization": signature})
    body = resp.read()
    if resp.status_code >= 400:
        raise _error(f"{resp.status_code}: {body.decode(errors='replace')}" if body
                     else str(resp.status_code), resp)
    try:
        token = json.loads(body)["token"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _error(f"token response is not {{\"token\": ...}}: {exc}", resp) from exc
    if not isinstance(token, str):
        raise _error("token response: token is not a string", resp)
    return token


def _request_with_retry(client: httpx.Client, method: str, url: str,
                        opts: RegistryOptions | None, *, headers: dict | None = None,
                        content: bytes | None = None,
                        follow_redirects: bool = True) -> httpx.Response:
    """``makeRequestWithRetry``: one retry after fetching a token for a 401. Returns any
    other answer (the caller checks 404 / >= 400 as before); a second 401 fails. Without
    ``opts`` (helpers that replay only a fragment) it is ``makeRequest``."""
    if opts is None:
        return _request(client, method, url, headers=headers, content=content,
                        follow_redirects=follow_redirects)
    anonymous = True  # "access will default to anonymous if no user is found"
    for _ in range(2):
        resp = _request(client, method, url, headers=headers, content=content,
                        follow_redirects=follow_redirects, opts=opts)
        if resp.status_code != 401:
            return resp
        resp.read()
        token = _authorization_token(client, url, resp, opts)
        anonymous = token_subject(token) == "anonymous"
        opts.token = token
    if anonymous:
        public = _load_key(opts, resp).public_line()
        raise _error(f'unauthorized: unknown ollama key "{public}"', resp)
    raise _error("unauthorized: access denied", resp)


# --------------------------------------------------------------------------- push


def _upload_parts(client: httpx.Client, blob: Blob, location: str, trace: Trace,
                  response: httpx.Response | None,
                  opts: RegistryOptions | None = None) -> httpx.Response:
    """blobUpload.Run: sequential PATCH parts, then PUT ?digest=&etag=. Returns the PUT answer."""
    next_url = _upload_url(location, response, f"POST upload for {blob.digest}")
    parts = part_plan(blob.size)
    md5s = []
    for index, (offset, size) in enumerate(parts):
        data = blob.read(offset, size)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "X-Redirect-Uploads": "1",
            "Content-Range": f"{offset}-{offset + size - 1}",
        }
        what = f"PATCH part {index} of {blob.digest}"
        for _ in range(2):  # uploadPart: a 401 fetches a token; Run sends the part again
            resp = _request(client, "PATCH", next_url, headers=headers, content=data,
                            follow_redirects=False, opts=opts)
            if resp.status_code != 401 or opts is None:
                break
            resp.read()
            opts.token = _authorization_token(client, next_url, resp, opts)
        loc = resp.headers.get("Docker-Upload-Location") or resp.headers.get("Location") or ""
        if resp.status_code == 307:
            target = resp.headers.get("Location")
            if not target:
                raise _error(f"{what}: 307 without Location", resp)
            redirect = urljoin(next_url, target)
            put = _request(client, "PUT", redirect, content=data, headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(size)})
            if put.status_code >= 400:
                raise _error(f"{what}: redirected PUT failed", put)
        elif resp.status_code >= 400:
            raise _error(f"{what}: http status {resp.status_code}", resp)
        next_url = _upload_url(loc, resp, what)
        md5s.append(hashlib.md5(data).digest())
    trace.parts[blob.digest] = parts
    etag = f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(parts)}"
    final = _with_query(next_url, [("digest", blob.digest), ("etag", etag)])
    resp = _request_with_retry(client, "PUT", final, opts, headers={
        "Content-Type": "application/octet-stream", "Content-Length": "0"})
    _check(resp, f"PUT (commit) of {blob.digest}")
    return resp


def _upload_blob(client: httpx.Client, base: str, ns_model: str, blob: Blob,
                 mount_from: str | None, trace: Trace,
                 opts: RegistryOptions | None = None) -> None:
    head = _request_with_retry(client, "HEAD", f"{base}/v2/{ns_model}/blobs/{blob.digest}",
                               opts)
    if head.status_code == 404:
        pass
    elif head.status_code >= 400:
        raise _error(f"HEAD {blob.digest}", head)
    else:
        trace.skipped.append(blob.digest)
        return
    url = f"{base}/v2/{ns_model}/blobs/uploads/"
    if mount_from:
        url += "?" + go_values_encode([("mount", blob.digest), ("from", mount_from)])
    resp = _request_with_retry(client, "POST", url, opts)
    _check(resp, f"POST upload for {blob.digest}")
    if resp.status_code == 201:  # "a blob has been mounted"
        trace.mounted.append(blob.digest)
        return
    location = resp.headers.get("Docker-Upload-Location") or resp.headers.get("Location") or ""
    _upload_parts(client, blob, location, trace, resp, opts)


def ollama_manifest(config_blob: Blob, layer_blobs: Sequence[Blob]) -> bytes:
    """json.Marshal(Manifest{SchemaVersion, MediaType, Config, Layers})."""
    return go_json({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_V2,
        "config": config_blob.descriptor(),
        "layers": [b.descriptor() for b in layer_blobs],
    })


def ollama_push(base_url: str, ns_model: str, tag: str,
                layers: Sequence[tuple[str, BlobSource]], config: dict, *,
                mount_from: str | None = None, trace: Trace | None = None,
                key_path: str | os.PathLike | None = None) -> str:
    """Replay ``ollama push``: layers then config, then the manifest. Returns its digest.

    ``layers`` are (media type, bytes or path); ``config`` is the ConfigV2 dict (``rootfs`` is
    added from the layer digests when absent). ``mount_from`` ("ns/model") makes every upload
    start with ``POST ?from=&mount=`` as Ollama does for layers carrying ``From``.
    ``key_path``: the ``~/.ollama/id_ed25519`` that signs token requests when the registry
    answers 401 (default: the real one, as Ollama; read only then).
    """
    _check_name(ns_model)
    if mount_from:
        _check_name(mount_from)
    trace = trace if trace is not None else Trace()
    base = base_url.rstrip("/")
    blobs = [describe(media_type, source) for media_type, source in layers]
    config = dict(config)
    config.setdefault("rootfs", {"type": "layers", "diff_ids": [b.digest for b in blobs]})
    config_blob = describe(DOCKER_CONFIG_V1, go_json(config))
    opts = _options(key_path)
    with _client(trace, OLLAMA_USER_AGENT) as client:
        for blob in [*blobs, config_blob]:
            _upload_blob(client, base, ns_model, blob, mount_from, trace, opts)
        manifest_bytes = ollama_manifest(config_blob, blobs)
        resp = _request_with_retry(client, "PUT", f"{base}/v2/{ns_model}/manifests/{tag}",
                                   opts, headers={"Content-Type": DOCKER_MANIFEST_V2},
                                   content=manifest_bytes)
        _check(resp, f"PUT manifest {ns_model}:{tag}")
    trace.manifest_bytes = manifest_bytes
    trace.manifest = json.loads(manifest_bytes)
    return "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()


def ollama_probe_blob(base_url: str, ns_model: str, digest: str, size: int, *,
                      trace: Trace | None = None) -> httpx.Response:
    """The newer tensor path: ``POST .../blobs/uploads/?digest=D`` with an empty body and
    ``X-Content-Length``. 201 means the blob exists; 202 + Location starts an upload."""
    _check_name(ns_model)
    trace = trace if trace is not None else Trace()
    url = (f"{base_url.rstrip('/')}/v2/{ns_model}/blobs/uploads/?"
           + go_values_encode([("digest", digest)]))
    with _client(trace, OLLAMA_USER_AGENT) as client:
        resp = _request(client, "POST", url, headers={"X-Content-Length": str(size)})
        resp.read()
        return resp


def ollama_upload_to(location: str, media_type: str, source: BlobSource, *,
                     trace: Trace | None = None) -> httpx.Response:
    """Continue an upload session Ollama-style (PATCH parts, PUT ?digest=&etag=) from a
    Location the registry handed out (e.g. after a 202 tensor-path probe)."""
    trace = trace if trace is not None else Trace()
    blob = describe(media_type, source)
    with _client(trace, OLLAMA_USER_AGENT) as client:
        return _upload_parts(client, blob, location, trace, None)


# --------------------------------------------------------------------------- pull


def _follow_same_host(client: httpx.Client, blob_url: str,
                      opts: RegistryOptions | None) -> tuple[httpx.Response, str]:
    """One ``makeRequest`` with download.go's ``CheckRedirect``: redirects are followed
    while they stay on the same hostname (Go keeps Authorization on those)."""
    host = urlsplit(blob_url).hostname
    headers = {"Accept-Encoding": "gzip"}
    if opts is not None and opts.token:
        headers["Authorization"] = f"Bearer {opts.token}"
    url = blob_url
    for _ in range(MAX_REDIRECTS + 1):
        request = client.build_request("GET", url, headers=headers)
        resp = client.send(request, stream=True, follow_redirects=False)
        resp.close()  # defer resp.Body.Close(): the body is never read
        target = resp.headers.get("Location")
        if resp.status_code in (301, 302, 303, 307, 308) and target:
            nxt = urljoin(url, target)
            if urlsplit(nxt).hostname == host:  # CheckRedirect: same hostname -> follow
                url = nxt
                continue
        return resp, url
    raise _error(f"GET {blob_url}: maximum redirects exceeded (10) for directURL", resp)


def _direct_url(client: httpx.Client, blob_url: str, strict_location: bool,
                opts: RegistryOptions | None = None) -> str:
    """The GET in blobDownload.run that finds where to download the parts from
    (``makeRequestWithRetry`` with a shallow copy of the options: a token fetched here is
    not kept for later requests)."""
    if opts is not None:
        opts = RegistryOptions(opts.key_path, opts.token)
    for attempt in range(2):
        resp, url = _follow_same_host(client, blob_url, opts)
        if resp.status_code != 401 or opts is None:
            break
        if attempt == 1:
            raise _error(f"GET {blob_url} (direct URL): unauthorized: access denied", resp)
        opts.token = _authorization_token(client, blob_url, resp, opts)
    target = resp.headers.get("Location")
    _check(resp, f"GET {blob_url} (direct URL)")
    if strict_location:
        if resp.status_code not in (200, 307):
            raise _error(f"GET {blob_url}: unexpected status code {resp.status_code}", resp)
    else:
        if resp.status_code == 200:
            return url
        if resp.status_code not in (302, 307):
            raise _error(f"GET {blob_url}: unexpected status code {resp.status_code}", resp)
    if not target:
        raise _error(f"GET {blob_url}: http: no Location header in response", resp)
    return urljoin(url, target)  # resp.Location() resolves against the request URL


def _download_part(client: httpx.Client, url: str, fd: int, index: int, offset: int,
                   size: int, statuses: dict) -> None:
    headers = {"Range": f"bytes={offset}-{offset + size - 1}"}
    with client.stream("GET", url, headers=headers) as resp:
        statuses[index] = (resp.status_code, resp.headers.get("Content-Range"),
                           resp.headers.get("Content-Length"))
        written = 0
        for chunk in resp.iter_raw(1024 * 1024):
            take = chunk[:size - written]
            os.pwrite(fd, take, offset + written)
            written += len(take)
            if written == size:
                break  # io.CopyN stops at the part size, whatever follows
    if written < size:
        raise _error(f"part {index} ({headers['Range']}): body ended after {written} of {size} "
                     "bytes (Ollama would retry this part with growing back-offs)", resp)


def _download_blob(client: httpx.Client, parts_client: httpx.Client, base: str, ns_model: str,
                   digest: str, dest: Path, trace: Trace, strict_location: bool,
                   opts: RegistryOptions | None = None) -> None:
    blob_url = f"{base}/v2/{ns_model}/blobs/{digest}"
    head = _request_with_retry(client, "HEAD", blob_url, opts)
    _check(head, f"HEAD {digest}")
    try:
        total = int(head.headers.get("Content-Length", ""))
    except ValueError:
        total = 0  # strconv.ParseInt error ignored
    parts = part_plan(total)
    direct = _direct_url(client, blob_url, strict_location, opts)
    statuses: dict[int, tuple] = {}
    fd = os.open(dest, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, total)
        with ThreadPoolExecutor(max_workers=MAX_PARALLEL_PARTS) as pool:
            futures = [pool.submit(_download_part, parts_client, direct, fd, i, off, size,
                                   statuses) for i, (off, size) in enumerate(parts)]
            for future in futures:
                future.result()
    finally:
        os.close(fd)
    trace.parts[digest] = parts
    actual = _sha256_file(dest)
    if f"sha256:{actual}" != digest:
        detail = "\n".join(f"  part {i} {parts[i]}: status, Content-Range, Content-Length = {s}"
                           for i, s in sorted(statuses.items()))
        raise OllamaProtocolError(
            f"digest mismatch for {digest}: downloaded {total} bytes (HEAD Content-Length) from "
            f"{direct} with sha256:{actual}\n{detail}")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def ollama_pull(base_url: str, ns_model: str, tag: str, outdir: str | os.PathLike, *,
                trace: Trace | None = None, strict_location: bool = True,
                key_path: str | os.PathLike | None = None) -> dict[str, Path]:
    """Replay ``ollama pull``; blobs land in ``outdir/blobs/sha256-<hex>``, the manifest in
    ``outdir/manifest.json``. Returns {digest: path} for every layer and the config.
    ``key_path`` as for ``ollama_push``."""
    _check_name(ns_model)
    trace = trace if trace is not None else Trace()
    base = base_url.rstrip("/")
    outdir = Path(outdir)
    (outdir / "blobs").mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    with _client(trace, OLLAMA_USER_AGENT) as client, \
            _client(trace, GO_USER_AGENT, max_connections=MAX_PARALLEL_PARTS) as parts_client:
        parts_client.follow_redirects = True  # http.DefaultClient
        opts = _options(key_path)
        resp = _request_with_retry(client, "GET", f"{base}/v2/{ns_model}/manifests/{tag}", opts,
                                   headers={"Accept": DOCKER_MANIFEST_V2})
        _check(resp, f"pull model manifest {ns_model}:{tag}")
        try:
            manifest = json.loads(resp.content)
        except ValueError as exc:
            raise _error(f"manifest of {ns_model}:{tag} is not JSON", resp) from exc
        trace.manifest_bytes = resp.content
        trace.manifest = manifest
        layers = list(manifest.get("layers") or [])
        if (manifest.get("config") or {}).get("digest"):
            layers.append(manifest["config"])
        for layer in layers:
            digest = layer["digest"]
            dest = outdir / "blobs" / digest.replace(":", "-")
            _download_blob(client, parts_client, base, ns_model, digest, dest, trace,
                           strict_location, opts)
            result[digest] = dest
    (outdir / "manifest.json").write_bytes(trace.manifest_bytes)
    return result
