"""A bounded fuzz run of the Hugging Face Hub routes: hypothesis builds requests from the
routes' shapes with hostile parts (repository names, revisions, file paths, cursors,
query values, Range, JSON and NDJSON bodies, LFS objects) and every answer must be below
500 and, when it is an error, the Hub's shape: ``{"error": <text>}`` with
``X-Error-Message``, and an ``X-Error-Code`` only from the codes ``huggingface_hub``
knows. SQLite stack only; 1,000 requests, about 15 s."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Match

from registry.api.hf.routes import routes as hub_routes
from tests.support.verification import push_model

# Slow: a hypothesis fuzzer over every Hub route.
pytestmark = pytest.mark.slow

HUB_CODES = {"RepoNotFound", "RevisionNotFound", "EntryNotFound", "GatedRepo"}
OID = "ab" * 32

JUNK = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), max_size=40)
NAME = st.one_of(st.sampled_from(["fuzz/m", "fuzz/none", "a", "..", "%2e%2e", "a" * 256,
                                  "x/%2f/y", "%00", "fuzz/m/tree"]), JUNK)
REVISION = st.one_of(st.sampled_from(["main", "latest", "v1", "0" * 40, "a" * 64,
                                      "sha256:" + "0" * 64, "refs%2Fpr%2F1", "a" * 129]),
                     JUNK)
PATH = st.one_of(st.sampled_from(["m.gguf", "README.md", "Modelfile", "system", "nope",
                                  "../etc/passwd", "a//b", ".git/config", "%00",
                                  "x" * 2000]), JUNK)
QUERY = st.dictionaries(st.sampled_from(["recursive", "expand", "cursor", "limit", "blobs",
                                         "size", "expires", "signature", "user",
                                         "create_pr"]),
                        st.one_of(JUNK, st.integers(-5, 10**30).map(str),
                                  st.sampled_from(["true", "false", "1"])), max_size=3)
HEADERS = st.dictionaries(st.sampled_from(["Range", "Content-Type", "Accept"]),
                          st.one_of(st.text(alphabet="bytes=-/0123456789 ,", max_size=30),
                                    st.sampled_from(["application/x-ndjson",
                                                     "application/vnd.git-lfs+json"])),
                          max_size=2)
VALUE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2, 10**20), JUNK,
                               st.just(OID)),
                     lambda kids: st.one_of(
                         st.lists(kids, max_size=3),
                         st.dictionaries(st.sampled_from(
                             ["path", "size", "sample", "oid", "algo", "content", "encoding",
                              "summary", "parentCommit", "name", "organization", "type",
                              "operation", "transfers", "objects", "hash_algo", "files",
                              "paths", "tag", "startingPoint"]), kids, max_size=4)),
                     max_leaves=10)
LINE = st.one_of(st.builds(lambda k, v: {"key": k, "value": v},
                           st.sampled_from(["header", "file", "lfsFile", "deletedFile",
                                            "deletedFolder", "copy"]), VALUE), VALUE)
NDJSON = st.builds(lambda lines: b"".join(json.dumps(x).encode() + b"\n" for x in lines),
                   st.lists(LINE, max_size=4))
BODY = st.one_of(st.binary(max_size=200), st.just(b""),
                 st.builds(lambda v: json.dumps(v).encode(), VALUE), NDJSON,
                 st.just(json.dumps({"key": "file", "value": {
                     "path": "a", "encoding": "base64",
                     "content": base64.b64encode(b"x").decode()}}).encode()))


@st.composite
def requests(draw):
    method, path = draw(st.sampled_from([
        ("GET", "/api/models/{name}"), ("GET", "/api/models/{name}/revision/{rev}"),
        ("GET", "/api/models/{name}/tree/{rev}"),
        ("GET", "/api/models/{name}/tree/{rev}/{path}"),
        ("POST", "/api/models/{name}/paths-info/{rev}"),
        ("GET", "/api/models/{name}/refs"), ("GET", "/api/models/{name}/commits/{rev}"),
        ("GET", "/{name}/resolve/{rev}/{path}"), ("HEAD", "/{name}/resolve/{rev}/{path}"),
        ("GET", "/api/whoami-v2"), ("POST", "/api/validate-yaml"),
        ("POST", "/api/repos/create"), ("DELETE", "/api/repos/delete"),
        ("POST", "/api/models/{name}/preupload/{rev}"),
        ("POST", "/api/models/{name}/commit/{rev}"),
        ("POST", "/api/models/{name}/branch/{rev}"),
        ("DELETE", "/api/models/{name}/branch/{rev}"),
        ("POST", "/api/models/{name}/tag/{rev}"), ("DELETE", "/api/models/{name}/tag/{rev}"),
        ("POST", "/{name}.git/info/lfs/objects/batch"),
        ("PUT", "/{name}.git/info/lfs/objects/{oid}"), ("POST", "/{name}.git/info/lfs/verify"),
        ("GET", "/api/models/{name}/xet-write-token/{rev}"),
    ]))

    def q(text: str) -> str:  # printable on the wire; %-escapes are kept as they are
        return quote(text, safe="/%:@")

    path = path.format(name=q(draw(NAME)), rev=q(draw(REVISION)), path=q(draw(PATH)),
                       oid=q(draw(st.one_of(st.just(OID), JUNK))))
    return method, path, draw(QUERY), draw(HEADERS), draw(BODY)


def _reached_the_hub(request) -> bool:
    """Whether the request, as sent (``..`` and ``%2e`` normalised away by the client),
    is one of the Hub's routes: others answer in their own shape."""
    scope = {"type": "http", "method": request.method, "path": request.url.path,
             "root_path": ""}
    return any(route.matches(scope)[0] == Match.FULL for route in hub_routes)


@pytest.fixture
def seeded(client):
    push_model(client, "fuzz/m", "latest")
    push_model(client, "fuzz/m", "v1", "v1")
    return client


# One stack keeps the run short; the handlers are the same on both.
@pytest.mark.parametrize("settings", ["sqlite-fs"], indirect=True)
@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests())
def test_hub_routes_never_fail_with_500_or_a_foreign_error_body(seeded, request):
    method, path, query, headers, body = request
    headers = {k: v.encode() for k, v in headers.items()}
    r = seeded.request(method, path, params=query, headers=headers,
                       content=body if method in ("PUT", "POST", "DELETE") else None)
    assert r.status_code < 500, (method, path, query, headers, r.text)
    if r.status_code >= 400 and _reached_the_hub(r.request):
        assert r.headers.get("x-error-message"), (method, path, r.status_code)
        assert r.headers.get("x-error-code", "RepoNotFound") in HUB_CODES, r.headers
        if method != "HEAD":
            assert isinstance(r.json()["error"], str), r.text
