"""The ``oras`` Python client (PyPI ``oras``) with access control on (``ASSAY_AUTH=1``):
``Registry.login(username, password)`` then push and pull an artifact (with oras's
default token backend and with its basic backend); without
credentials, or as a reader pushing, oras is refused and nothing is stored. Also the Docker token
flow itself over real HTTP: challenge, token with Basic, Bearer, and the token's lifetime
(``ASSAY_AUTH_TOKEN_SECONDS``) honoured by the live server."""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.support.auth_registry import start_auth_registry, stop_auth_registry

pytestmark = pytest.mark.clients

try:
    import oras.provider  # first: importing oras.decorator alone is a circular import
    from oras import decorator as oras_decorator
except ImportError:  # pragma: no cover - reported as a failure below, never a skip
    oras = oras_decorator = None

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
WEIGHTS_MEDIA = "application/vnd.acme.model.weights.v1"


def oras_registry(registry, tmp_path: Path, user: str | None = None,
                  secret: str | None = None, backend: str = "token"):
    """An ``oras.provider.Registry`` for the live server, logged in as ``user`` when given
    (the login is written to a docker config under ``tmp_path``, not the real home)."""
    if oras is None:
        pytest.fail("the oras package is not installed (pip install oras; it is in the 'test' "
                    "extra); real-client tests must not be skipped", pytrace=False)
    client = oras.provider.Registry(hostname=registry.host_port, insecure=True,
                                    auth_backend=backend)
    if user is not None:
        result = client.login(username=user, password=secret or registry.passwords[user],
                              hostname=registry.host_port,
                              config_path=str(tmp_path / "docker-config.json"))
        assert result.get("Status") == "Login Succeeded", result
    return client


@pytest.fixture
def artifact(tmp_path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    files = {"weights.bin": os.urandom(2 * 1024 * 1024 + 3), "README.md": b"# model\n"}
    for name, data in files.items():
        (src / name).write_bytes(data)
    return {name: src / name for name in files}


def push(client, registry, repo: str, artifact: dict[str, Path]):
    return client.push(target=f"{registry.host_port}/{repo}:v1",
                       files=[f"{artifact['weights.bin']}:{WEIGHTS_MEDIA}",
                              str(artifact["README.md"])],
                       disable_path_validation=True, quiet=True)


def pull(client, registry, repo: str, out: Path) -> list[str]:
    return client.pull(target=f"{registry.host_port}/{repo}:v1", outdir=str(out))


def assert_pulled(out: Path, artifact: dict[str, Path]) -> None:
    for name, path in artifact.items():
        assert (out / name).read_bytes() == path.read_bytes(), name


def assert_nothing_stored(registry, repo: str) -> None:
    with httpx.Client(base_url=registry.url, auth=registry.auth("root")) as admin:
        assert admin.get(f"/v2/{repo}/tags/list").status_code == 404
        assert repo not in admin.get("/v2/_catalog").json()["repositories"]


def test_login_push_with_token_auth(auth_registry, artifact, tmp_path, monkeypatch):
    """oras's default (token) backend: what ``oras login`` + ``oras push`` do."""
    # oras retries a failing request 5 times with 3**n s sleeps (131 s): no sleeping here.
    monkeypatch.setattr(oras_decorator, "time", SimpleNamespace(sleep=lambda s: None))
    client = oras_registry(auth_registry, tmp_path, "wanda")
    response = push(client, auth_registry, "team/oras-token", artifact)
    assert response.status_code == 201, response.text


def test_login_push_and_pull_with_basic_auth(auth_registry, artifact, tmp_path):
    """oras's basic backend: a writer pushes, a reader pulls (token backend), byte for byte."""
    writer = oras_registry(auth_registry, tmp_path / "w", "wanda", backend="basic")
    response = push(writer, auth_registry, "team/oras", artifact)
    assert response.status_code == 201, response.text
    r = httpx.get(f"{auth_registry.url}/v2/team/oras/manifests/v1",
                  auth=auth_registry.auth("root"), headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert r.headers["docker-content-digest"] == response.headers["Docker-Content-Digest"]

    for who, backend in (("rita", "token"), ("rita", "basic"), ("wanda", "token")):
        reader = oras_registry(auth_registry, tmp_path / f"{who}-{backend}", who,
                               backend=backend)
        out = tmp_path / f"out-{who}-{backend}"
        pulled = pull(reader, auth_registry, "team/oras", out)
        assert sorted(Path(p).name for p in pulled) == ["README.md", "weights.bin"]
        assert_pulled(out, artifact)


def test_robot_token_as_password(auth_registry, artifact, tmp_path):
    robot = oras_registry(auth_registry, tmp_path / "ci", "ci", auth_registry.robot_token,
                          backend="basic")
    assert push(robot, auth_registry, "team/oras-ci", artifact).status_code == 201
    reader = oras_registry(auth_registry, tmp_path / "r", "ci", auth_registry.robot_token)
    pull(reader, auth_registry, "team/oras-ci", tmp_path / "out")
    assert_pulled(tmp_path / "out", artifact)


def test_without_credentials_oras_is_refused(auth_registry, artifact, tmp_path, caplog,
                                             monkeypatch):
    # oras retries a refused request 5 times, sleeping 3 + 3**n seconds in between (~4
    # minutes in all). The retries are still made and refused; only the waits between
    # them are skipped (oras.decorator's own reference to the time module is replaced).
    import oras.decorator

    waits = []
    monkeypatch.setattr(oras.decorator, "time", SimpleNamespace(sleep=waits.append))
    writer = oras_registry(auth_registry, tmp_path / "w", "wanda", backend="basic")
    assert push(writer, auth_registry, "team/oras-private", artifact).status_code == 201

    # oras asks for an anonymous token first; the registry refuses one that would not
    # do what was asked (401), so oras says it needs credentials and raises.
    anonymous = oras_registry(auth_registry, tmp_path)
    with pytest.raises(ValueError, match="Cannot respond to request for authentication"):
        pull(anonymous, auth_registry, "team/oras-private", tmp_path / "out")
    assert "Please use basic auth with a username or password" in caplog.text, caplog.text
    assert not (tmp_path / "out" / "weights.bin").exists()
    assert len(waits) >= 4, waits  # oras did retry (and would have waited) each time

    with pytest.raises(Exception) as failure:  # noqa: B017,PT011
        response = push(anonymous, auth_registry, "team/oras-anonymous", artifact)
        assert response.status_code < 400, response.text
    assert re.search(r"DENIED|UNAUTHORIZED|denied|unauthorized|40[13]|Cannot respond to "
                     r"request for authentication", str(failure.value)), failure.value
    assert_nothing_stored(auth_registry, "team/oras-anonymous")

    # A reader signed in: the push is denied, nothing stored.
    reader = oras_registry(auth_registry, tmp_path / "r", "rita", backend="basic")
    with pytest.raises(Exception) as failure:  # noqa: B017,PT011
        response = push(reader, auth_registry, "team/oras-rita", artifact)
        assert response.status_code < 400, response.text
    assert re.search(r"DENIED|denied|403", str(failure.value)), failure.value
    assert_nothing_stored(auth_registry, "team/oras-rita")


# --------------------------------------------------------------------------- token flow


def challenge(response: httpx.Response) -> dict[str, str]:
    value = response.headers.get("www-authenticate", "")
    assert value.startswith("Bearer "), (response.status_code, dict(response.headers))
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


@pytest.fixture(scope="module")
def short_tokens(tmp_path_factory):
    """An auth-on server whose bearer tokens live 2 s (``ASSAY_AUTH_TOKEN_SECONDS=2``)."""
    registry = start_auth_registry(tmp_path_factory.mktemp("assay-ttl") / "data",
                                   env={"ASSAY_AUTH_TOKEN_SECONDS": "2"})
    try:
        yield registry
    finally:
        stop_auth_registry(registry)


def test_docker_token_flow_and_token_lifetime(short_tokens):
    reg = short_tokens
    blob = b"token flow"
    with httpx.Client(base_url=reg.url) as client:
        # Ping: 401 with a challenge whose realm is this server.
        r = client.get("/v2/")
        assert r.status_code == 401
        assert challenge(r) == {"realm": f"{reg.url}/auth/token", "service": "assay"}
        # The operation itself names the scope it needs.
        r = client.post("/v2/team/flow/blobs/uploads/")
        assert r.status_code == 401
        ch = challenge(r)
        assert ch["scope"] == "repository:team/flow:pull,push"
        # Token with Basic (as docker, skopeo, oras do), then Bearer works.
        r = httpx.get(ch["realm"], params={"service": ch["service"], "scope": ch["scope"]},
                      auth=reg.auth("wanda"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token"] == body["access_token"] and body["expires_in"] == 2
        bearer = {"Authorization": f"Bearer {body['token']}"}
        r = client.post("/v2/team/flow/blobs/uploads/", headers=bearer)
        assert r.status_code == 202, r.text
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        r = client.put(r.headers["location"], params={"digest": digest}, content=blob,
                       headers=bearer)
        assert r.status_code == 201, r.text
        assert client.head(f"/v2/team/flow/blobs/{digest}", headers=bearer).status_code == 200

        # After its lifetime (2 s, plus the verifier's 5 s leeway) the token is refused
        # with 401 and a fresh challenge, as Docker clients expect to re-authenticate.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = client.head(f"/v2/team/flow/blobs/{digest}", headers=bearer)
            if r.status_code != 200:
                break
            time.sleep(0.5)
        assert r.status_code == 401, r
        assert challenge(r)["realm"] == f"{reg.url}/auth/token"
        r = client.get(f"/v2/team/flow/blobs/{digest}", headers=bearer)
        assert r.status_code == 401 and "expired" in r.text, r.text
        # A fresh token works again.
        r = httpx.get(f"{reg.url}/auth/token",
                      params={"service": "assay", "scope": "repository:team/flow:pull"},
                      auth=reg.auth("rita"))
        fresh = {"Authorization": f"Bearer {r.json()['token']}"}
        assert client.head(f"/v2/team/flow/blobs/{digest}", headers=fresh).status_code == 200
