"""Property-based tests of everything that parses untrusted text: repository names and
tags, digests, client references, upload ``Content-Range`` and blob ``Range``.

Each parser must (a) raise nothing but the registry's own error for any input, (b) agree
with the OCI distribution spec's grammar, written out again here independently, and
(c) round-trip what it accepts.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from client.errors import BadReference
from client.ref import parse_reference
from registry.api.oci.blobs import parse_range
from registry.digests import check_name, check_tag, digest_bytes, parse_digest
from registry.errors import (
    BlobUploadInvalid,
    DigestInvalid,
    NameInvalid,
    RangeNotSatisfiable,
    TagInvalid,
)
from registry.services.uploads import parse_content_range

# Slow: hypothesis property tests, hundreds of generated inputs each.
pytestmark = pytest.mark.slow

# The spec's grammar (distribution-spec, "Pulling manifests"), verbatim.
SPEC_NAME = re.compile(
    r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
SPEC_DIGEST = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")

# Text that looks like the real thing more often than st.text() alone would.
NAMEISH = st.text(alphabet="ab09._-/:@%\x00 A\u00e9\u00b2", max_size=300)
names = st.from_regex(SPEC_NAME, fullmatch=True).filter(lambda s: len(s) <= 255)
tags = st.from_regex(SPEC_TAG, fullmatch=True)
sha256_digests = st.binary(max_size=64).map(digest_bytes)
digests = st.one_of(sha256_digests, st.binary(max_size=64).map(lambda b: digest_bytes(b, "sha512")))
hosts = st.sampled_from(["127.0.0.1:5000", "localhost", "registry.example.com",
                         "[::1]:5000", "r.example:443"])

PROPS = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def accepted(fn, value) -> bool:
    try:
        fn(value)
        return True
    except (NameInvalid, TagInvalid, DigestInvalid):
        return False


# ---- names, tags, digests --------------------------------------------------------

@PROPS
@given(st.one_of(NAMEISH, st.text(max_size=300), names))
@example("a" * 256)
@example("a/../b")
@example("a\x00b")
@example("A")
def test_check_name_agrees_with_the_spec(text):
    assert accepted(check_name, text) == bool(SPEC_NAME.fullmatch(text) and len(text) <= 255)


@PROPS
@given(names)
def test_every_spec_name_is_accepted_unchanged(name):
    assert check_name(name) == name
    assert ".." not in name.split("/") and not name.startswith("/")  # never a path escape


@PROPS
@given(st.one_of(NAMEISH, st.text(max_size=200), tags))
@example("a" * 129)
@example(".hidden")
@example("-x")
@example("v1\n")
def test_check_tag_agrees_with_the_spec(text):
    assert accepted(check_tag, text) == bool(SPEC_TAG.fullmatch(text))


@PROPS
@given(st.one_of(st.text(max_size=200), digests,
                 digests.map(str.upper), digests.map(lambda d: d + "\n"),
                 digests.map(lambda d: d[:-1])))
def test_parse_digest_agrees_with_the_spec(text):
    assert accepted(parse_digest, text) == bool(SPEC_DIGEST.fullmatch(text))


@PROPS
@given(st.binary(max_size=256), st.sampled_from(["sha256", "sha512"]))
def test_digest_round_trip(data, algorithm):
    digest = digest_bytes(data, algorithm)
    alg, hex_ = parse_digest(digest)
    assert (alg, hex_) == (algorithm, hashlib.new(algorithm, data).hexdigest())


# ---- client references -----------------------------------------------------------

@PROPS
@given(st.one_of(st.text(max_size=300),
                 st.builds(lambda h, t: f"{h}/{t}", hosts, NAMEISH)))
def test_parse_reference_raises_only_bad_reference(text):
    try:
        ref = parse_reference(text)
    except BadReference:
        return
    assert SPEC_NAME.fullmatch(ref.name) and len(ref.name) <= 255
    assert ref.tag is None or SPEC_TAG.fullmatch(ref.tag)
    assert ref.digest is None or SPEC_DIGEST.fullmatch(ref.digest)


@PROPS
@given(hosts, names, st.one_of(st.none(), tags), st.one_of(st.none(), digests))
def test_parse_reference_round_trip(host, name, tag, digest):
    text = f"{host}/{name}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = parse_reference(text, default_tag=False)
    assert (ref.registry.host, ref.name, ref.tag, ref.digest) == (host, name, tag, digest)
    assert parse_reference(str(ref), default_tag=False) == ref
    # What the server will be asked for passes the server's own checks.
    check_name(ref.name)
    if ref.digest:
        parse_digest(ref.reference)
    else:
        check_tag(ref.reference)


# ---- upload Content-Range ----------------------------------------------------------

RANGEISH = st.text(alphabet="bytes =-/0123456789*\u0661\u00b2 ,", max_size=40)


@PROPS
@given(st.one_of(st.text(max_size=60), RANGEISH))
@example("bytes=")
@example("-1-5")
@example("5-1")
@example("\u0661-\u0662")  # Arabic-Indic digits: str.isdigit() says yes, int() would too
@example("\u00b2-\u00b3")  # superscripts: isdigit() yes, int() raises
@example("9" * 40 + "-" + "9" * 40)
@example("9223372036854775808-0")  # 2**63: one more than a BIGINT holds
def test_content_range_raises_only_blob_upload_invalid(text):
    try:
        start, end = parse_content_range(text)
    except BlobUploadInvalid:
        return
    assert 0 <= start < 2**63 and 0 <= end < 2**63  # fits the database's BIGINT


@PROPS
@given(st.integers(0, 2**62), st.integers(0, 2**62),
       st.sampled_from(["{a}-{b}", "bytes {a}-{b}", "bytes={a}-{b}", "{a}-{b}/*",
                        "bytes {a}-{b}/{t}", " {a}-{b} "]))
def test_content_range_round_trip(a, b, form):
    assert parse_content_range(form.format(a=a, b=b, t=a + b + 1)) == (a, b)


# ---- blob Range ------------------------------------------------------------------------

@PROPS
@given(st.one_of(st.none(), st.text(max_size=60), RANGEISH.map(lambda s: "bytes=" + s)),
       st.integers(0, 10**12))
@example("bytes=\u00b2-", 10)
@example("bytes=-\u00b2", 10)
@example("bytes=-0", 10)
@example("bytes=0-0", 0)
def test_range_is_inside_the_blob_or_refused(header, size):
    try:
        rng = parse_range(header, size)
    except RangeNotSatisfiable as exc:
        assert exc.headers() == {"Content-Range": f"bytes */{size}"}
        return
    if rng is not None:
        start, end = rng
        assert 0 <= start <= end < size


@PROPS
@given(st.integers(1, 10**12).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(0, size - 1)).flatmap(
        lambda t: st.tuples(st.just(t[0]), st.just(t[1]), st.integers(t[1], t[0] - 1)))))
def test_range_round_trip(args):
    size, start, end = args
    assert parse_range(f"bytes={start}-{end}", size) == (start, end)
    assert parse_range(f"bytes={start}-", size) == (start, size - 1)
    assume(end - start + 1 <= size)
    assert parse_range(f"bytes=-{end - start + 1}", size) == (size - (end - start + 1), size - 1)


@pytest.mark.parametrize("header", ["bytes=0-1,3-4", "items=0-1", "bytes=a-b"])
def test_malformed_ranges_serve_everything(header):
    assert parse_range(header, 100) is None
