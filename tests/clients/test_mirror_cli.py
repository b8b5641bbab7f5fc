"""``assay mirror`` as a subprocess against a real ``assay serve`` with auth on: a site
admin adds, lists, changes and removes a mirror; the upstream's password goes in on stdin
and never comes out (not on stdout, stderr, the REST JSON, nor the server's log); errors
are one line. Adding a mirror connects to no upstream, so the URLs need no network."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest

from tests.support.auth_registry import ASSAY

pytestmark = pytest.mark.clients

SECRET = "hf_mirror-secret-4f1c9e"  # an upstream token no output may contain
HF_URL = "https://huggingface.co/google"


@pytest.fixture(scope="module")
def mirror_cli(auth_registry, tmp_path_factory):
    """``mirror_cli(*args, user="root", stdin=None, code=0)``: ``assay mirror ARGS -r
    REGISTRY`` signed in as ``user`` (ASSAY_USERNAME/ASSAY_PASSWORD), exiting ``code``."""
    config = tmp_path_factory.mktemp("mirror-cli-config")

    def run(*args: str, user: str = "root", stdin: str | None = None,
            code: int = 0) -> subprocess.CompletedProcess:
        env = {**os.environ, "ASSAY_CONFIG_DIR": str(config), "DOCKER_CONFIG": str(config),
               "ASSAY_TOKEN": "", "ASSAY_USERNAME": user,
               "ASSAY_PASSWORD": auth_registry.passwords[user]}
        proc = subprocess.run([str(ASSAY), "mirror", *args, "-r", auth_registry.host_port],
                              input=stdin, capture_output=True, text=True, env=env,
                              timeout=60)
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        assert SECRET not in proc.stdout + proc.stderr
        return proc

    return run


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


def listed(mirror_cli) -> list[dict]:
    return json.loads(mirror_cli("ls", "--json").stdout)


def test_add_ls_change_rm(mirror_cli, auth_registry):
    added = mirror_cli("add", "google", HF_URL, "--kind", "hf", "--password-stdin",
                       "--refresh", "1d", "--keep-days", "30", stdin=SECRET + "\n")
    assert added.stdout.strip() == (f"mirror google: hf {HF_URL} (refresh 1d, serve then "
                                    "verify, password set, keep 30d)")

    table = mirror_cli("ls").stdout.splitlines()
    assert table[0].split() == ["NAMESPACE", "KIND", "URL", "REFRESH", "VERIFY-FIRST",
                                "PASSWORD", "KEEP"]
    assert table[1].split() == ["google", "hf", HF_URL, "1d", "no", "set", "30d"]
    [m] = listed(mirror_cli)
    assert (m["namespace"], m["password_set"], m["refresh_seconds"]) == ("google", True, 86400)
    assert "password" not in m

    rest = httpx.get(f"{auth_registry.url}/api/v1/mirrors/google",
                     auth=auth_registry.auth("root"))
    assert rest.status_code == 200 and SECRET not in rest.text

    # Again, without the token: the settings change, the stored token stays.
    mirror_cli("add", "google", HF_URL, "--kind", "hf", "--refresh", "15m", "--verify-first")
    shown = json.loads(mirror_cli("show", "google", "--json").stdout)
    assert (shown["refresh_seconds"], shown["verify_first"], shown["password_set"],
            shown["keep_days"]) == (900, True, True, None)

    mirror_cli("add", "mirror", "--kind", "ollama")
    assert [(m["namespace"], m["url"]) for m in listed(mirror_cli)] == [
        ("google", HF_URL), ("mirror", "https://registry.ollama.ai")]

    assert "removed mirror google" in mirror_cli("rm", "google").stdout
    mirror_cli("rm", "mirror")
    assert listed(mirror_cli) == []
    assert mirror_cli("ls").stderr.strip() == f"{auth_registry.host_port}: no mirrors"
    assert SECRET not in auth_registry.server.log()


@pytest.mark.parametrize("args, words", [
    (["add", "m", "--kind", "npm"], "--kind must be one of ollama, oci, hf"),
    (["add", "m", "ftp://upstream.example/x", "--kind", "oci"], "must be http:// or https://"),
    (["add", "m", "https://upstream.example/Bad Prefix", "--kind", "oci"],
     "not a repository name prefix"),
    (["add", "team/sub", "https://upstream.example", "--kind", "oci"], "one name segment"),
    (["rm", "nosuch"], "is not a mirror (HTTP 404)"),
    (["show", "nosuch"], "is not a mirror (HTTP 404)"),
])
def test_errors_are_one_line(mirror_cli, args, words):
    assert words in one_line_error(mirror_cli(*args, code=1))


def test_site_admins_only(mirror_cli):
    line = one_line_error(mirror_cli("ls", user="wanda", code=1))
    assert line.startswith("error: denied: ")
