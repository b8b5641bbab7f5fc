"""``RegistryAuth``: the client's side of registry authentication, as an ``httpx.Auth``.

Reactive, like Docker's client: a request goes out without credentials, and a ``401``
says what the registry wants in ``WWW-Authenticate``:

- ``Bearer realm=R,service=S,scope=X``: ``GET R?service=S&scope=X`` (Basic credentials
  when there are some, anonymous otherwise) returns a token, which the request is sent
  again with. The scope asked for merges the challenge's with the request's own (from
  its path and method: ``repository:NAME:pull`` for reads, ``pull,push`` for uploads,
  ``delete`` for deletes, plus ``repository:FROM:pull`` for a cross-repository mount
  ``?from=FROM``, which the registry only honours for a token that may read FROM) and
  with what the command said it intends (``intend``: a push asks for ``pull,push`` from
  its first blob ``HEAD`` on).
- ``Basic``: the request is sent again with Basic credentials (assay's ``/api/``).

Tokens are cached per (realm, service, scope) until shortly before ``expires_in``. Once a
registry has shown its realm, every later request to it gets a token *before* it is sent
(a cached one covering its scope, else a fresh one), and a path prefix that asked for
Basic gets it up front: so the only requests that ever draw a ``401`` are the first of
their kind, which carry no large body (a blob ``HEAD``, an upload ``POST``), and an
upload's ``PATCH``/``PUT`` (a ``FileRegion`` streamed with sendfile) is sent once. The
flow never needs a request body before sending (``requires_request_body`` stays False).

Outcomes, as ``AuthError`` (a ``RegistryResponseError`` with status 401, one line):

- a ``401`` to a request sent with a fresh token or Basic credentials, or from the
  realm: ``<host> refused the credentials for <repo>: run assay login <host>``;
- a ``401`` or ``403`` with no credentials configured: ``... not logged in ...: run
  assay login <host>``.

A ``403`` with credentials is passed on: ``errors.response_error`` makes it ``denied:
<the registry's message>``. Credentials go to a realm only at the registry's own origin
(scheme, host and port) or over HTTPS to the registry's host name.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import httpx

from client.credentials import Credentials
from client.errors import (
    RegistryResponseError,
    TransientError,
    oci_error_text,
    response_error,
)

# repository names never contain these path words as whole components in practice; the
# greedy match takes the last one, so "a/blobs/blobs/<digest>" still finds "a/blobs".
_REPO_PATH = re.compile(r"/v2/(?P<name>.+)/(?P<kind>manifests|blobs|tags|referrers)/(?P<rest>.*)")
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')
MAX_MARGIN = 30.0  # renew a token this long before it expires (a quarter for short ones)
DEFAULT_EXPIRES = 60  # the Docker spec's default when a token answer omits expires_in
USER_AGENT = "assay-client/0.1"


class AuthError(RegistryResponseError):
    """The registry wants credentials we do not have, or refused the ones we sent."""

    def __init__(self, message: str, status: int = 401, detail: str | None = None):
        super().__init__(message, status, "UNAUTHORIZED" if status == 401 else "DENIED")
        self.detail = detail  # the registry's own words, when it gave any


def parse_challenge(value: str) -> tuple[str, dict[str, str]] | None:
    """``Bearer realm="...",service="..."`` -> ``("bearer", {"realm": ..., ...})``."""
    scheme, _, rest = value.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        quoted = m.group(2)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None \
            else m.group(3)
        pos = m.end()
    return scheme.lower(), params


def _challenge(response: httpx.Response) -> tuple[str, dict[str, str]] | None:
    parsed = [c for v in response.headers.get_list("www-authenticate")
              if (c := parse_challenge(v))]
    for wanted in ("bearer", "basic"):
        for scheme, params in parsed:
            if scheme == wanted:
                return scheme, params
    return None


def _split(scope: str) -> tuple[str, set[str]]:
    """``repository:a/b:pull,push`` -> (``repository:a/b``, {pull, push})."""
    resource, _, actions = scope.rpartition(":")
    return resource, {a for a in actions.split(",") if a}


def merge_scopes(*scopes: str) -> tuple[str, ...]:
    """One scope per resource, actions united and sorted (a stable cache key)."""
    merged: dict[str, set[str]] = {}
    for scope in scopes:
        for item in scope.split():
            resource, actions = _split(item)
            if resource:
                merged.setdefault(resource, set()).update(actions)
    return tuple(f"{r}:{','.join(sorted(a))}" for r, a in sorted(merged.items()))


def _covers(granted: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    have = dict(_split(s) for s in granted)
    return all(r in have and a <= have[r] for r, a in map(_split, wanted))


class RegistryAuth(httpx.Auth):
    """Credentials and token cache for one registry (``host``: its ``HOST[:PORT]``,
    ``origin``: its ``scheme://host[:port]``); shared by the client's threads."""

    def __init__(self, host: str, origin: str, credentials: Credentials | None):
        self.host = host
        self.origin = httpx.URL(origin)
        self.credentials = credentials
        self.stats: Counter[str] = Counter()  # "token fetched", "challenge"
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._tokens: dict[tuple[str, str], list[tuple[tuple[str, ...], str, float]]] = {}
        self._realm: tuple[str, str] | None = None  # (realm, service) once challenged
        self._basic_prefixes: set[str] = set()
        self._intent: dict[str, set[str]] = {}

    @property
    def challenged(self) -> bool:
        """Whether the registry has asked for credentials yet."""
        return self._realm is not None or bool(self._basic_prefixes)

    # ------------------------------------------------------------------ what a request needs
    def intend(self, name: str, actions: str) -> None:
        """Ask for ``actions`` (e.g. ``"pull,push"``) on repository ``name`` from the first
        request on, so one token serves a whole push."""
        with self._lock:
            self._intent.setdefault(name, set()).update(actions.split(","))

    def _same_origin(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == (self.origin.scheme, self.origin.host,
                                                     self.origin.port)

    def scope_of(self, request: httpx.Request) -> str | None:
        """The token scope ``request`` needs; ``""`` for ``/v2/`` itself (any token), None
        for paths that take no bearer token (another host, the REST API)."""
        if not self._same_origin(request.url):
            return None
        path = request.url.path
        if path == "/v2/":
            return ""
        if path.startswith("/v2/_catalog"):
            return "registry:catalog:*"
        m = _REPO_PATH.fullmatch(path)
        if not m:
            return None
        name, kind, rest = m["name"], m["kind"], m["rest"]
        method = request.method
        if method in ("GET", "HEAD"):
            actions = {"pull"}
        elif method == "DELETE" and not (kind == "blobs" and rest.startswith("uploads")):
            actions = {"delete"}
        else:
            actions = {"pull", "push"}
        with self._lock:
            actions |= self._intent.get(name, set())
        scope = f"repository:{name}:{','.join(sorted(actions))}"
        source = request.url.params.get("from") if kind == "blobs" else None
        return f"{scope} repository:{source}:pull" if source and method == "POST" else scope

    @staticmethod
    def _prefix(request: httpx.Request) -> str:
        return "/" + request.url.path.lstrip("/").split("/", 1)[0] + "/"

    def _subject(self, scope: str | None, request: httpx.Request) -> str:
        if scope and scope.startswith("repository:"):  # the first: the request's own
            return _split(scope.split()[0])[0].removeprefix("repository:")
        if scope and scope.startswith("registry:catalog"):
            return "the catalog"
        return request.url.path

    # ------------------------------------------------------------------ the token cache
    def _cached(self, realm: tuple[str, str], scopes: tuple[str, ...]) -> str | None:
        now = time.monotonic()
        with self._lock:
            entries = self._tokens.get(realm, [])
            entries[:] = [e for e in entries if e[2] > now]
            for granted, token, _ in entries:
                if _covers(granted, scopes):
                    return token
        return None

    def _drop(self, realm: tuple[str, str], token: str) -> None:
        with self._lock:
            entries = self._tokens.get(realm, [])
            entries[:] = [e for e in entries if e[1] != token]

    def _key_lock(self, key: tuple) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _may_send_credentials(self, realm: httpx.URL) -> bool:
        """Credentials go to the registry's own origin (scheme, host and port), or over
        HTTPS to the registry's host name: never to another host, nor in clear text to
        another port of it (which anyone on that machine may be listening on)."""
        if self._same_origin(realm):
            return True
        return realm.scheme == "https" and realm.host == self.origin.host

    def _token(self, realm: tuple[str, str], scopes: tuple[str, ...],
               request: httpx.Request, subject: str):
        """A token for ``scopes`` (a generator for ``yield from``: it may send the realm
        request): cached, else fetched, one fetch at a time per scope."""
        with self._key_lock((realm, scopes)):  # held across the yield: same thread
            token = self._cached(realm, scopes)
            if token is None:
                token = yield from self._fetch(realm, scopes, request, subject)
            return token

    def _fetch(self, realm: tuple[str, str], scopes: tuple[str, ...], request: httpx.Request,
               subject: str):
        url_text, service = realm
        url = httpx.URL(url_text)
        params = [*([("service", service)] if service else []), *(("scope", s) for s in scopes)]
        url = url.copy_with(params=httpx.QueryParams([*url.params.multi_items(), *params]))
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.credentials and self._may_send_credentials(url):
            headers["Authorization"] = self.credentials.basic()
        timeout = request.extensions.get("timeout")
        token_request = httpx.Request("GET", url, headers=headers,
                                      extensions={"timeout": timeout} if timeout else {})
        response = yield token_request
        response.read()
        self.stats["token fetched"] += 1
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(response)
        if response.status_code in (401, 403):
            raise self._refused(subject, response)
        if response.status_code != 200:
            raise response_error(response, f"token from {url_text}")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            expires_in = float(body.get("expires_in") or DEFAULT_EXPIRES)
        except (ValueError, AttributeError, TypeError):
            token, expires_in = None, 0.0
        if not isinstance(token, str) or not token:
            raise RegistryResponseError(f"token from {url_text}: the answer has no token",
                                        response.status_code)
        margin = min(MAX_MARGIN, expires_in / 4)
        with self._lock:
            self._tokens.setdefault(realm, []).append(
                (scopes, token, time.monotonic() + expires_in - margin))
        return token

    # ------------------------------------------------------------------ errors
    def _refused(self, subject: str, response: httpx.Response | None = None) -> AuthError:
        detail = None
        if response is not None:
            detail = oci_error_text(response)[1]
            if detail == f"{response.status_code} {response.reason_phrase}".strip():
                detail = None  # no body (a HEAD): the status says nothing more
        status = response.status_code if response is not None else 401
        if self.credentials is None:
            said = f" ({detail})" if detail and status == 403 else ""
            return AuthError(f"{self.host} requires a login for {subject}{said}: run assay "
                             f"login {self.host}", status, detail)
        source = self.credentials.source
        hint = f" (or fix {source})" if source.startswith("ASSAY_") else ""
        return AuthError(f"{self.host} refused the credentials for {subject}: run assay "
                         f"login {self.host}{hint}", 401, detail)

    # ------------------------------------------------------------------ the flow
    def sync_auth_flow(self, request: httpx.Request):
        scope = self.scope_of(request)
        subject = self._subject(scope, request)
        wanted = merge_scopes(scope) if scope else ()
        sent = None  # "token", "fresh" (a token fetched for this request, or Basic)
        token = None
        if "Authorization" not in request.headers:
            realm = self._realm
            if realm is not None and scope is not None:
                token = self._cached(realm, wanted)
                sent = "token"
                if token is None:
                    token = yield from self._token(realm, wanted, request, subject)
                    sent = "fresh"
                request.headers["Authorization"] = f"Bearer {token}"
            elif self.credentials and self._same_origin(request.url) and \
                    self._prefix(request) in self._basic_prefixes:
                request.headers["Authorization"] = self.credentials.basic()
                sent = "fresh"
        response = yield request
        while response.status_code == 401:
            if sent == "fresh":
                raise self._refused(subject, response)
            challenge = _challenge(response)
            if challenge is None or not self._same_origin(request.url):
                return  # not ours to answer: the caller reports the 401
            self.stats["challenge"] += 1
            kind, params = challenge
            if kind == "bearer" and params.get("realm"):
                realm = (params["realm"], params.get("service", ""))
                with self._lock:
                    self._realm = realm
                if token is not None:  # the registry no longer takes the cached one
                    self._drop(realm, token)
                scopes = merge_scopes(params.get("scope", ""), scope or "")
                token = yield from self._token(realm, scopes, request, subject)
                request.headers["Authorization"] = f"Bearer {token}"
            elif kind == "basic":
                if self.credentials is None:
                    raise self._refused(subject)
                with self._lock:
                    self._basic_prefixes.add(self._prefix(request))
                request.headers["Authorization"] = self.credentials.basic()
            else:
                return
            sent = "fresh"
            response = yield request
        if response.status_code == 403 and self.credentials is None and \
                request.headers.get("Authorization"):
            response.read()  # an anonymous token that does not reach: say how to log in
            raise self._refused(subject, response)
