"""The model card metadata check behind ``POST /api/validate-yaml``, and the signed
upload URLs of the Hub's LFS batch API."""

from __future__ import annotations

import time

from registry.access import tokens
from registry.api.hf.cards import front_matter_errors


def test_a_card_without_metadata_or_with_a_mapping_is_valid():
    assert front_matter_errors("# Gemma\n\nA model.\n") == []
    assert front_matter_errors("") == []
    assert front_matter_errors("---\nlicense: mit\ntags: [gguf]\n---\n# Gemma\n") == []
    assert front_matter_errors("---\n---\nempty metadata\n") == []


def test_broken_metadata_says_what_is_wrong():
    (why,) = front_matter_errors("---\nlicense: [mit\n---\n")
    assert why.startswith("the metadata is not valid YAML:") and "\n" not in why
    assert front_matter_errors("---\nlicense: mit\n") == [
        "the metadata block that starts with --- has no closing ---"]
    assert front_matter_errors("---\n- a\n- b\n---\n") == [
        "the metadata must be a mapping of keys to values, not a list"]


def _query(signed: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in signed.split("&"))


def test_an_upload_url_is_good_for_its_object_its_size_and_its_time_only():
    key, oid = "k" * 32, "ab" * 32
    q = _query(tokens.sign_upload(key, "team/m", oid, 10, "wanda", 60))
    assert tokens.check_upload_signature(key, "team/m", oid, q) == "wanda"
    assert tokens.check_upload_signature(key, "team/other", oid, q) is None
    assert tokens.check_upload_signature(key, "team/m", "cd" * 32, q) is None
    assert tokens.check_upload_signature(key, "team/m", oid, {**q, "size": "11"}) is None
    assert tokens.check_upload_signature(key, "team/m", oid, {**q, "user": "root"}) is None
    assert tokens.check_upload_signature("x" * 32, "team/m", oid, q) is None
    late = _query(tokens.sign_upload(key, "team/m", oid, 10, None, -1))
    assert late["user"] == "" and tokens.check_upload_signature(key, "team/m", oid, late) \
        is None
    assert time.time() < int(q["expires"]) <= time.time() + 61
