"""A bounded fuzz run of the OCI routes (``/v2/``): hypothesis builds requests from
the routes' shapes with hostile parts (names, references, digests, session ids, query
values, Content-Range, bodies) and every answer must be below 500 and, when it is an
error, an OCI error body with a code from the spec's list. SQLite stack only; 1,500
requests, about 15 s."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.oci import push_image, sha256

# Slow: a hypothesis fuzzer over every OCI route.
pytestmark = pytest.mark.slow

SPEC_CODES = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
              "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
              "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
              "TOOMANYREQUESTS"}

JUNK = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), max_size=40)
SEGMENT = st.one_of(st.sampled_from(["fuzz/repo", "a", "..", "%2e%2e", "A", "a" * 256,
                                     "x/%2f/y", "%00", "fuzz/other"]), JUNK)
DIGEST = st.one_of(st.sampled_from([sha256(b"layer of fuzz/repo:v1"), "sha256:" + "0" * 64,
                                    "sha512:" + "0" * 128, "sha256:", "md5:00"]), JUNK)
SESSION = st.one_of(st.just("0" * 32), st.text("0123456789abcdef", min_size=32, max_size=32),
                    JUNK)
REFERENCE = st.one_of(st.sampled_from(["v1", "latest", "a" * 129]), DIGEST, JUNK)
QUERY = st.dictionaries(st.sampled_from(["n", "last", "digest", "mount", "from",
                                         "artifactType"]),
                        st.one_of(JUNK, DIGEST, st.integers(-5, 10**20).map(str)), max_size=3)
HEADERS = st.dictionaries(st.sampled_from(["Content-Range", "Range", "Content-Type",
                                           "Accept"]),
                          st.one_of(st.text(alphabet="bytes=-/0123456789 ,", max_size=30),
                                    st.sampled_from(["application/vnd.oci.image.manifest"
                                                     ".v1+json", "*/*"])), max_size=3)
BODY = st.one_of(st.binary(max_size=200), st.just(b""),
                 st.builds(lambda d: json.dumps(d).encode(),
                           st.recursive(st.one_of(st.none(), st.integers(), JUNK),
                                        lambda kids: st.one_of(
                                            st.lists(kids, max_size=3),
                                            st.dictionaries(st.sampled_from(
                                                ["schemaVersion", "mediaType", "config",
                                                 "layers", "manifests", "digest", "size",
                                                 "subject"]), kids, max_size=4)),
                                        max_leaves=10)))


@st.composite
def requests(draw):
    name = draw(SEGMENT)
    method, path = draw(st.sampled_from([
        ("GET", "/v2/"), ("GET", "/v2/_catalog"),
        ("GET", "/v2/{name}/tags/list"),
        ("GET", "/v2/{name}/manifests/{ref}"), ("HEAD", "/v2/{name}/manifests/{ref}"),
        ("PUT", "/v2/{name}/manifests/{ref}"), ("DELETE", "/v2/{name}/manifests/{ref}"),
        ("GET", "/v2/{name}/blobs/{digest}"), ("HEAD", "/v2/{name}/blobs/{digest}"),
        ("DELETE", "/v2/{name}/blobs/{digest}"),
        ("POST", "/v2/{name}/blobs/uploads/"), ("PATCH", "/v2/{name}/blobs/uploads/{session}"),
        ("PUT", "/v2/{name}/blobs/uploads/{session}"),
        ("GET", "/v2/{name}/blobs/uploads/{session}"),
        ("DELETE", "/v2/{name}/blobs/uploads/{session}"),
        ("GET", "/v2/{name}/referrers/{digest}"),
    ]))
    def q(text: str) -> str:  # printable on the wire; %-escapes are kept as they are
        return quote(text, safe="/%:@")

    path = path.format(name=q(name), ref=q(draw(REFERENCE)), digest=q(draw(DIGEST)),
                       session=q(draw(SESSION)))
    return method, path, draw(QUERY), draw(HEADERS), draw(BODY)


@pytest.fixture
def seeded(client):
    push_image(client, "fuzz/repo", "v1")
    return client


# One stack keeps the run short; the handlers are the same on both.
@pytest.mark.parametrize("settings", ["sqlite-fs"], indirect=True)
@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests())
def test_oci_routes_never_fail_with_500_or_a_foreign_error_body(seeded, request):
    method, path, query, headers, body = request
    headers = {k: v.encode() for k, v in headers.items()}
    r = seeded.request(method, path, params=query, headers=headers,
                       content=body if method in ("PUT", "PATCH", "POST") else None)
    assert r.status_code < 500, (method, path, query, headers, r.text)
    # A name of "." or ".." segments is resolved by the client ("/v2/../x" is "/x"): such a
    # request left /v2/ and is a web page's business, not the OCI API's.
    if r.status_code >= 400 and method != "HEAD" and r.request.url.path.startswith("/v2/"):
        errors = r.json()["errors"]
        assert errors and all(e["code"] in SPEC_CODES for e in errors), r.text
        assert all(isinstance(e["message"], str) for e in errors)
