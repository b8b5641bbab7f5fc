"""Parsing of blob ``Range`` and upload ``Content-Range`` headers."""

import pytest

from registry.api.oci.blobs import parse_range
from registry.errors import BlobUploadInvalid, RangeNotSatisfiable
from registry.services.uploads import parse_content_range


@pytest.mark.parametrize("header,expected", [
    ("bytes=0-9", (0, 9)), ("bytes=5-", (5, 99)), ("bytes=-10", (90, 99)),
    ("bytes=-1000", (0, 99)), ("bytes=90-1000", (90, 99)), ("bytes=99-99", (99, 99)),
    (None, None), ("", None), ("items=0-1", None), ("bytes=0-1,5-6", None),
    ("bytes=a-b", None), ("bytes=5", None),
])
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=9-5", "bytes=-0"])
def test_unsatisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_empty_blob_range():
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-0", 0)


@pytest.mark.parametrize("value,expected", [
    ("0-99", (0, 99)), ("bytes 0-99", (0, 99)), ("bytes=0-99", (0, 99)),
    ("bytes 100-199/1000", (100, 199)), (" 5-6 ", (5, 6)), ("bytes 0-99/*", (0, 99)),
])
def test_content_range(value, expected):
    assert parse_content_range(value) == expected


@pytest.mark.parametrize("value", ["", "0-", "-5", "a-b", "bytes", "0_9", "1-2-3"])
def test_bad_content_range(value):
    with pytest.raises(BlobUploadInvalid):
        parse_content_range(value)
