"""skopeo (Debian, 1.9) with access control on (``ASSAY_AUTH=1``): a writer pushes
with ``--dest-creds user:password``, a reader pulls with ``--src-creds``, a robot pushes
with its token as the password; without credentials, or as a reader pushing, skopeo exits
non-zero saying unauthorized/denied and the registry stores nothing (checked as the admin).
Users, roles and tokens are made with the real ``assay`` CLI."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.skopeo import OCI_MANIFEST, SKOPEO_TIMEOUT, blob_files

pytestmark = pytest.mark.clients

REFUSED = re.compile(r"unauthorized|denied|authentication required", re.IGNORECASE)

@pytest.fixture(scope="module")
def sk(skopeo, policy, tmp_path_factory) -> Skopeo:
    """skopeo with the accept-anything policy and an empty containers auth file: it uses only
    the credentials on its command line, never a login stored in the real home directory."""
    authfile = tmp_path_factory.mktemp("skopeo-auth") / "auth.json"
    authfile.write_text(json.dumps({"auths": {}}))
    return Skopeo(skopeo, policy, authfile)


@dataclass
class Skopeo:
    exe: str
    policy: Path
    authfile: Path

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.exe, "--policy", str(self.policy), "--command-timeout",
               f"{SKOPEO_TIMEOUT}s", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=SKOPEO_TIMEOUT + 30,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(self.authfile.parent),
                                   "REGISTRY_AUTH_FILE": str(self.authfile)})
        if ok and proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)}\nexited {proc.returncode}\nstdout: "
                        f"{proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}", pytrace=False)
        return proc

    def copy_in(self, registry, image: dict, repo: str, *creds: str,
                ok: bool = True) -> subprocess.CompletedProcess:
        """``skopeo copy`` of the OCI layout's v1 into ``repo:v1`` of the registry."""
        return self.run("copy", "--preserve-digests", "--dest-tls-verify=false", *creds,
                        f"oci:{image['layout']}:v1", f"docker://{registry.host_port}/{repo}:v1",
                        ok=ok)

    def copy_out(self, registry, repo: str, out: Path, *creds: str,
                 ok: bool = True) -> subprocess.CompletedProcess:
        return self.run("copy", "--preserve-digests", "--src-tls-verify=false", *creds,
                        f"docker://{registry.host_port}/{repo}:v1", f"oci:{out}:v1", ok=ok)


def assert_refused(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode != 0, f"skopeo must fail:\n{proc.stdout}\n{proc.stderr}"
    assert REFUSED.search(proc.stderr), f"skopeo's error must say why:\n{proc.stderr}"


def assert_nothing_stored(registry, repo: str, image: dict) -> None:
    """As the site admin: no tag, no manifest and no blob of the image in ``repo``."""
    with httpx.Client(base_url=registry.url, auth=registry.auth("root")) as admin:
        r = admin.get(f"/v2/{repo}/tags/list")
        assert r.status_code == 404, r.text
        r = admin.get(f"/v2/{repo}/manifests/{image['manifest_digest']}",
                      headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 404, r.text
        for blob in [*image["layers"], image["config"]]:
            assert admin.head(f"/v2/{repo}/blobs/{blob['digest']}").status_code == 404, blob
        r = admin.get("/v2/_catalog")
        assert r.status_code == 200 and repo not in r.json()["repositories"], r.text


def test_writer_pushes_with_password_and_reader_pulls(sk, auth_registry, oci_image, tmp_path):
    reg = auth_registry
    sk.copy_in(reg, oci_image, "team/image", "--dest-creds", reg.creds("wanda"))
    r = httpx.get(f"{reg.url}/v2/team/image/manifests/v1", auth=reg.auth("rita"),
                  headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.content == oci_image["manifest"], r.text

    out = tmp_path / "pulled"
    sk.copy_out(reg, "team/image", out, "--src-creds", reg.creds("rita"))
    assert blob_files(out) == blob_files(oci_image["layout"]), "byte-identical image"

    raw = sk.run("inspect", "--raw", "--tls-verify=false", "--creds", reg.creds("rita"),
                 f"docker://{reg.host_port}/team/image:v1").stdout
    assert raw.rstrip("\n").encode() == oci_image["manifest"]


def test_robot_token_and_personal_token_as_password(sk, auth_registry, oci_image, tmp_path):
    reg = auth_registry
    sk.copy_in(reg, oci_image, "team/robot-image", "--dest-creds", f"ci:{reg.robot_token}")
    out = tmp_path / "pulled"
    sk.copy_out(reg, "team/robot-image", out, "--src-creds", f"wanda:{reg.wanda_token}")
    assert blob_files(out) == blob_files(oci_image["layout"])
    # A pull-only personal token cannot push, although wanda may.
    proc = sk.copy_in(reg, oci_image, "team/pull-token",
                      "--dest-creds", f"wanda:{reg.wanda_pull_token}", ok=False)
    assert_refused(proc)
    assert_nothing_stored(reg, "team/pull-token", oci_image)


def test_push_without_credentials_is_refused(sk, auth_registry, oci_image):
    proc = sk.copy_in(auth_registry, oci_image, "team/anonymous", ok=False)
    assert proc.returncode != 0, proc.stderr
    assert_nothing_stored(auth_registry, "team/anonymous", oci_image)


def test_push_without_credentials_says_unauthorized(sk, auth_registry, oci_image):
    proc = sk.copy_in(auth_registry, oci_image, "team/anonymous", ok=False)
    assert_refused(proc)


def test_reader_push_is_denied(sk, auth_registry, oci_image):
    proc = sk.copy_in(auth_registry, oci_image, "team/rita-image",
                      "--dest-creds", auth_registry.creds("rita"), ok=False)
    assert_refused(proc)
    assert re.search(r"denied", proc.stderr, re.IGNORECASE), proc.stderr
    assert_nothing_stored(auth_registry, "team/rita-image", oci_image)


def test_wrong_password_is_unauthorized(sk, auth_registry, oci_image):
    proc = sk.copy_in(auth_registry, oci_image, "team/wrong",
                      "--dest-creds", "wanda:not-her-password", ok=False)
    assert_refused(proc)
    assert re.search(r"unauthorized|invalid credentials", proc.stderr, re.IGNORECASE), (
        proc.stderr)
    assert_nothing_stored(auth_registry, "team/wrong", oci_image)


def test_pull_without_credentials_is_refused(sk, auth_registry, oci_image, tmp_path):
    sk.copy_in(auth_registry, oci_image, "team/private", "--dest-creds",
               auth_registry.creds("wanda"))
    out = tmp_path / "pulled"
    assert_refused(sk.copy_out(auth_registry, "team/private", out, ok=False))
    assert not (out / "blobs" / "sha256").exists() or not any(
        (out / "blobs" / "sha256").iterdir())
    # otto is signed in but has no role in team: refused too.
    assert_refused(sk.copy_out(auth_registry, "team/private", tmp_path / "otto",
                               "--src-creds", auth_registry.creds("otto"), ok=False))
