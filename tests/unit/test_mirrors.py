"""Mirror configuration without a server: upstream URLs and the name mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from registry.errors import RequestInvalid
from registry.services.mirrors import OLLAMA_LIBRARY, Mirror, check_namespace, check_url

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def mirror(kind: str, url: str, ns: str = "mirror") -> Mirror:
    return Mirror(ns, kind, url, None, False, 3600, False, None, NOW, NOW)


@pytest.mark.parametrize(("kind", "url", "local", "upstream"), [
    ("ollama", OLLAMA_LIBRARY, "mirror/gemma3", "library/gemma3"),
    ("ollama", OLLAMA_LIBRARY, "mirror/library/gemma3", "library/gemma3"),
    ("ollama", OLLAMA_LIBRARY, "mirror/jmorganca/tiny", "jmorganca/tiny"),
    ("ollama", "https://registry.ollama.ai/library", "mirror/gemma3", "library/gemma3"),
    ("oci", "https://ghcr.io", "mirror/org/model", "org/model"),
    ("oci", "https://ghcr.io", "mirror/model", "model"),
    ("oci", "https://registry-1.docker.io/ai", "mirror/gemma3", "ai/gemma3"),
    ("hf", "https://huggingface.co/google", "mirror/gemma-3-270m", "google/gemma-3-270m"),
])
def test_upstream_names(kind, url, local, upstream):
    assert mirror(kind, url).upstream_name(local) == upstream


def test_urls_are_checked_and_normalised():
    assert check_url("", "ollama") == OLLAMA_LIBRARY
    assert check_url("http://127.0.0.1:5000/team/", "oci") == "http://127.0.0.1:5000/team"
    m = mirror("oci", "http://127.0.0.1:5000/team")
    assert (m.base_url, m.prefix) == ("http://127.0.0.1:5000", "team")
    for bad in ("", "ftp://host", "http://", "http://u:p@host", "http://host/?q=1",
                "http://host/#f", "http://host:99999", "http://host/Bad Name"):
        with pytest.raises(RequestInvalid):
            check_url(bad, "oci")


def test_a_mirror_is_a_whole_namespace():
    assert check_namespace("/mirror/") == "mirror"
    for bad in ("a/b", "_", "", "UPPER"):
        with pytest.raises(RequestInvalid):
            check_namespace(bad)


def test_the_json_never_carries_the_password():
    doc = Mirror("m", "oci", "https://x", "bot", True, 60, True, 7, NOW, NOW).to_json()
    assert doc["password_set"] is True and "password" not in doc
