"""registry.digests: digest, name and tag grammar."""

import hashlib

import pytest

from registry.digests import check_name, check_tag, digest_bytes, parse_digest
from registry.errors import DigestInvalid, NameInvalid, TagInvalid


def test_parse_digest():
    hexd = hashlib.sha256(b"x").hexdigest()
    assert parse_digest(f"sha256:{hexd}") == ("sha256", hexd)
    h512 = hashlib.sha512(b"x").hexdigest()
    assert parse_digest(f"sha512:{h512}") == ("sha512", h512)
    assert digest_bytes(b"x", "sha512") == f"sha512:{h512}"


@pytest.mark.parametrize("bad", [
    None, "", "sha256", "sha256:", "sha256:abc", "md5:" + "a" * 32,
    "sha256:" + "A" * 64, "sha256:" + "g" * 64, "sha512:" + "a" * 64,
    "sha256:" + "a" * 64 + "\n", "sha256:../../etc/passwd",
])
def test_invalid_digests(bad):
    with pytest.raises(DigestInvalid):
        parse_digest(bad)


@pytest.mark.parametrize("name", ["a", "team/model", "a.b/c-d/e__f", "x0/y--z", "a" * 255])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "a/../b", "-a", "a-", "a..b",
                                  "a_b_", "a" * 256, "a/b c", "a/.."])
def test_invalid_names(name):
    with pytest.raises(NameInvalid):
        check_name(name)


@pytest.mark.parametrize("tag", ["latest", "v1.0", "_x", "A-b_c.9", "a" * 128])
def test_valid_tags(tag):
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a" * 129, "a:b", "a/b", "sp ace"])
def test_invalid_tags(tag):
    with pytest.raises(TagInvalid):
        check_tag(tag)
