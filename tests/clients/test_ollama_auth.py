"""Ollama against a real ``assay serve`` with access control on (``ASSAY_AUTH=1``).

The replay (``ollama_replay``) does Ollama's reactive auth exactly: on a 401 it reads the
quoted ``Bearer realm,service,scope`` challenge, refuses a realm on another host:port, signs
the token URL with the user's ``~/.ollama/id_ed25519`` and retries with ``Bearer``; it never
sends Basic, and blob parts come from the blob GET's ``Location`` with no Authorization at all
(a signed URL). Users, roles and tokens are made with the real ``assay`` CLI; keys are
registered over REST with the user's password, as the README tells users to.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.auth_registry import ASSAY
from tests.support.models import GEMMA_DIGEST, GEMMA_SHA256, GEMMA_SIZE
from tests.support.ollama_keys import OllamaKey
from tests.support.ollama_replay import (
    DOCKER_MANIFEST_V2,
    GEMMA3_TEMPLATE,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_TEMPLATE,
    OllamaProtocolError,
    Trace,
    describe,
    gemma3_params_layer,
    ollama_config,
    ollama_pull,
    ollama_push,
    parse_registry_challenge,
)
from tests.support.processes import free_port, start_assay

pytestmark = pytest.mark.clients

MODEL = "team/gemma3"
TAG = "270m"
SIGNED_AUTHORIZATION = re.compile(r"^([A-Za-z0-9+/]+=*):([A-Za-z0-9+/]+=*)$")



def sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def gemma_layers(gguf: Path) -> list:
    return [(MEDIA_MODEL, gguf), (MEDIA_TEMPLATE, GEMMA3_TEMPLATE),
            (MEDIA_PARAMS, gemma3_params_layer())]


@pytest.fixture(scope="module")
def keys(auth_registry, tmp_path_factory) -> dict[str, Path]:
    """A ``~/.ollama/id_ed25519`` per person: wanda's (writer) and rita's (reader) registered
    with ``POST /api/v1/keys`` under their password; the stranger's never registered."""
    homes = tmp_path_factory.mktemp("ollama-homes")
    paths = {}
    for person in ("wanda", "rita", "stranger"):
        key = OllamaKey()
        paths[person] = key.save(homes / person / ".ollama")
        if person != "stranger":
            r = httpx.post(f"{auth_registry.url}/api/v1/keys",
                           json={"public_key": f"{key.public_line()} {person}@laptop"},
                           auth=auth_registry.auth(person))
            assert r.status_code == 201, r.text
    return paths


def assert_ollama_auth(trace: Trace, key_path: Path, scope: str) -> None:
    """The conversation carried Ollama's auth and nothing else: the first request went
    without credentials and got a quoted Bearer challenge on this host; the token request
    was signed with the key; later requests carried the Bearer token; no Basic anywhere."""
    first = trace.exchanges[0]
    assert first.status == 401 and "authorization" not in first.request_headers, first
    realm, service, challenged_scope = parse_registry_challenge(
        first.response_headers["www-authenticate"])
    assert urlsplit(realm).netloc == urlsplit(first.url).netloc, first
    assert service == "assay" and challenged_scope == scope, first
    token_requests = trace.find("GET", "/auth/token")
    assert token_requests, trace.dump()
    wire = OllamaKey.load(key_path).wire()
    for exchange in token_requests:
        assert exchange.status == 200, exchange
        match = SIGNED_AUTHORIZATION.match(exchange.request_headers["authorization"])
        assert match and match.group(1) == wire, exchange
        query = parse_qs(urlsplit(exchange.url).query)
        assert set(query) == {"service", "scope", "ts", "nonce"}, exchange
    for exchange in trace.exchanges:
        assert not exchange.request_headers.get("authorization", "").lower().startswith(
            "basic"), f"Ollama never sends Basic:\n{exchange}"
    retried = trace.exchanges[trace.exchanges.index(token_requests[0]) + 1]
    assert retried.method == first.method and retried.url == first.url, trace.dump()
    assert retried.request_headers["authorization"].startswith("Bearer "), retried


def assert_parts_without_credentials(trace: Trace) -> None:
    """Parts: ranged GETs of the signed ``Location``, 206, never an Authorization header."""
    ranged = [e for e in trace.exchanges if "range" in e.request_headers
              and e.status not in (301, 302, 303, 307, 308)]
    assert len(ranged) == sum(len(parts) for parts in trace.parts.values()), trace.dump()
    for exchange in ranged:
        assert "authorization" not in exchange.request_headers, exchange
        query = parse_qs(urlsplit(exchange.url).query)
        assert "signature" in query and "expires" in query, (
            f"with auth on, parts must come from a signed URL:\n{exchange}")
        assert exchange.status == 206, exchange


def test_writer_pushes_gemma_with_a_registered_key(auth_registry, keys, gemma_gguf):
    """``ollama push --insecure HOST/team/gemma3:270m`` by wanda (write in team)."""
    trace = Trace()
    try:
        digest = ollama_push(auth_registry.url, MODEL, TAG, gemma_layers(gemma_gguf),
                             ollama_config(), trace=trace, key_path=keys["wanda"])
    finally:
        # Whatever happened, it was Ollama's auth: unauthenticated HEAD, signed token request
        # (a blob HEAD's challenge asks for pull,push: it is how a push starts).
        assert_ollama_auth(trace, keys["wanda"], f"repository:{MODEL}:pull,push")
    assert trace.find("PUT", f"/manifests/{TAG}")[0].status == 201
    r = httpx.get(f"{auth_registry.url}/v2/{MODEL}/manifests/{TAG}",
                  auth=auth_registry.auth("root"), headers={"Accept": DOCKER_MANIFEST_V2})
    assert r.status_code == 200 and r.headers["docker-content-digest"] == digest


@pytest.fixture(scope="module")
def pushed(auth_registry, keys, gemma_gguf):
    """Gemma in team/gemma3:270m, pushed by Ollama with wanda's key."""
    trace = Trace()
    ollama_push(auth_registry.url, MODEL, TAG, gemma_layers(gemma_gguf), ollama_config(),
                trace=trace, key_path=keys["wanda"])
    return SimpleNamespace(manifest=trace.manifest_bytes, gguf=gemma_gguf)


@pytest.mark.parametrize("person", ["wanda", "rita"])
def test_pull_with_a_registered_key_is_byte_identical(auth_registry, keys, pushed, person,
                                                      tmp_path):
    """The writer and the reader pull Gemma back; parts carry no credentials."""
    trace = Trace()
    paths = ollama_pull(auth_registry.url, MODEL, TAG, tmp_path / "pulled", trace=trace,
                        key_path=keys[person])
    assert trace.manifest_bytes == pushed.manifest
    assert paths[GEMMA_DIGEST].stat().st_size == GEMMA_SIZE
    assert sha256_path(paths[GEMMA_DIGEST]) == GEMMA_SHA256
    for digest, path in paths.items():
        assert f"sha256:{sha256_path(path)}" == digest

    assert_ollama_auth(trace, keys[person], f"repository:{MODEL}:pull")
    (manifest_401, manifest_200) = trace.find("GET", f"/manifests/{TAG}")
    assert (manifest_401.status, manifest_200.status) == (401, 200), trace.dump()
    # One token for the whole pull: it is kept in registryOptions after the first 401.
    assert len(trace.find("GET", "/auth/token")) == 1, trace.dump()
    for head in trace.find("HEAD"):
        assert head.status == 200 and head.request_headers["authorization"].startswith(
            "Bearer "), head
    assert_parts_without_credentials(trace)


def test_reader_push_is_refused_with_403_denied(auth_registry, keys, pushed):
    layers = [(MEDIA_MODEL, os.urandom(64 * 1024)), (MEDIA_PARAMS, gemma3_params_layer())]
    trace = Trace()
    with pytest.raises(OllamaProtocolError) as failure:
        ollama_push(auth_registry.url, "team/rita-notes", "v1", layers, ollama_config(),
                    trace=trace, key_path=keys["rita"])
    message = str(failure.value)
    assert "403" in message and '"DENIED"' in message and (
        "rita has no write role in namespace team (pushing team/rita-notes needs write; "
        "rita has read)") in message, message
    assert_ollama_auth(trace, keys["rita"], "repository:team/rita-notes:pull,push")
    # Nothing was stored: the admin sees no such repository and no blob.
    root = auth_registry.auth("root")
    r = httpx.get(f"{auth_registry.url}/v2/team/rita-notes/tags/list", auth=root)
    assert r.status_code == 404, r.text
    blob = describe(MEDIA_MODEL, layers[0][1])
    assert httpx.head(f"{auth_registry.url}/v2/team/rita-notes/blobs/{blob.digest}",
                      auth=root).status_code == 404


def test_unregistered_key_gets_an_error_naming_assay_key_add(auth_registry, keys, pushed,
                                                             tmp_path):
    trace = Trace()
    with pytest.raises(OllamaProtocolError) as failure:
        ollama_pull(auth_registry.url, MODEL, TAG, tmp_path / "out", trace=trace,
                    key_path=keys["stranger"])
    message = str(failure.value)
    # getAuthorizationToken: "<status>: <body>" of the token endpoint's answer.
    assert message.startswith("401: ") and "assay key add" in message, message
    assert "unknown Ollama key SHA256:" in message, message
    (token_request,) = trace.find("GET", "/auth/token")
    assert token_request.status == 401
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_the_command_named_for_unknown_keys_exists():
    """The error sends people to `assay key add`: it must be a real command."""
    proc = subprocess.run([str(ASSAY), "key", "add", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "PUBKEY_FILE" in proc.stdout, proc.stderr


def test_without_a_key_file_the_pull_fails_as_ollama_does(auth_registry, pushed, tmp_path):
    missing = tmp_path / "home" / ".ollama" / "id_ed25519"
    trace = Trace()
    with pytest.raises(OllamaProtocolError, match=re.escape(
            f"open {missing}: no such file or directory")):
        ollama_pull(auth_registry.url, MODEL, TAG, tmp_path / "out", trace=trace,
                    key_path=missing)
    (only,) = trace.exchanges  # the unauthenticated manifest GET; no token request
    assert only.status == 401 and "/manifests/" in only.url


def test_challenge_values_must_be_quoted():
    """Ollama's getValue skips one character for the opening quote: unquoted values break."""
    quoted = 'Bearer realm="http://h:1/auth/token",service="assay",scope="repository:a/b:pull"'
    assert parse_registry_challenge(quoted) == (
        "http://h:1/auth/token", "assay", "repository:a/b:pull")
    realm, _, _ = parse_registry_challenge("Bearer realm=http://h:1/auth/token,service=assay")
    assert realm != "http://h:1/auth/token"


def test_realm_on_another_host_is_refused(tmp_path):
    """A registry whose public URL names another host: the replay refuses to send a signed
    request there (Ollama: 'realm host ... does not match original host ...')."""
    port = free_port()
    server = start_assay(tmp_path / "data", port=port, env={
        "ASSAY_AUTH": "1", "ASSAY_PUBLIC_URL": f"http://localhost:{port}"})
    try:
        key = OllamaKey()
        key_path = key.save(tmp_path / ".ollama")
        trace = Trace()
        with pytest.raises(OllamaProtocolError, match=re.escape(
                f'realm host "localhost:{port}" does not match original host '
                f'"127.0.0.1:{port}"')):
            ollama_pull(server.url, MODEL, TAG, tmp_path / "out", trace=trace,
                        key_path=key_path)
        assert not trace.find(contains="/auth/token"), trace.dump()
    finally:
        exit_code = server.proc.poll()
        server.stop()
        assert exit_code is None, server.log()[-4000:]
