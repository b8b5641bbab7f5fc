"""The ``assay`` client with authentication on: a real ``assay serve`` with ``ASSAY_AUTH=1``
and the real CLI as a subprocess (login, logout, push, pull, ls, inspect, rm, status,
tokens, keys, webhooks), plus the library in-process for token renewal and the worker's
credential lookup. Identities are made with the server-side CLI (``assay user add``,
``assay namespace grant``) before the server starts, as an operator would."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from client.credentials import Credentials
from client.download import Downloader
from client.locations import BlobLocations
from client.progress import Transfers, silent
from client.push import push
from client.ref import parse_reference
from client.registry_client import RegistryClient
from client.transport import StdlibTransport
from registry.formats.cards import LocalCards
from tests.support.auth_registry import ASSAY
from tests.support.gguf_files import write_gguf
from tests.support.ollama_keys import OllamaKey
from tests.support.processes import start_assay

pytestmark = pytest.mark.clients

PASSWORDS = {"root": "root-pass-123", "wanda": "wanda-pass-123", "rita": "rita-pass-123",
             "adam": "adam-pass-123"}
ROLES = {"wanda": "write", "rita": "read", "adam": "admin"}


def admin_cli(cli, data_dir: Path, *args: str, stdin: str | None = None) -> str:
    import subprocess

    proc = subprocess.run([str(ASSAY), *args, "--data-dir", str(data_dir)], input=stdin,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ASSAY_WORKERS": "0"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def start(cli, data_dir: Path, env: dict | None = None):
    data_dir.mkdir(parents=True, exist_ok=True)
    admin_cli(cli, data_dir, "migrate")  # admin commands create no database of their own
    for name, password in PASSWORDS.items():
        admin_cli(cli, data_dir, "user", "add", name, "--password-stdin",
                  *(["--admin"] if name == "root" else []), stdin=password + "\n")
    for name, role in ROLES.items():
        admin_cli(cli, data_dir, "namespace", "grant", "team", name, role)
    return start_assay(data_dir, env={"ASSAY_AUTH": "1", **(env or {})})


@pytest.fixture(scope="module")
def server(tmp_path_factory, cli):
    proc = start(cli, tmp_path_factory.mktemp("auth-cli") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("auth-model") / "tiny.gguf"
    write_gguf(path, tensors={"blk.0.ffn_up.weight":
                              np.random.default_rng(6).random((256, 512), dtype=np.float32)})
    return path


@pytest.fixture
def env(tmp_path) -> dict:
    """A user with no credentials anywhere: empty config dirs, no ASSAY_* credentials."""
    return {"ASSAY_CONFIG_DIR": str(tmp_path / "assay-config"),
            "DOCKER_CONFIG": str(tmp_path / "docker"), "HOME": str(tmp_path / "home"),
            "ASSAY_TOKEN": "", "ASSAY_USERNAME": "", "ASSAY_PASSWORD": ""}


@pytest.fixture
def run(cli, env):
    def go(*args, ok=True, stdin=None, **extra):
        if stdin is None:
            return cli(*args, env={**env, **extra}, ok=ok)
        import subprocess

        proc = subprocess.run([str(ASSAY), *map(str, args)], input=stdin, text=True,
                              capture_output=True, timeout=300,
                              env={**os.environ, **env, **extra})
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    return go


def one_line_error(proc) -> str:
    assert proc.returncode == 1, proc
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def login(run, server, user: str):
    return run("login", server.host_port, "-u", user, "--password-stdin",
               stdin=PASSWORDS[user] + "\n")


# ---------------------------------------------------------------------------- login


def test_login_wrong_password_stores_nothing(run, server, env):
    proc = run("login", "-r", server.host_port, "-u", "wanda", "--password-stdin", ok=False,
               stdin="not-her-password\n")
    line = one_line_error(proc)
    assert f"{server.host_port} refused the credentials of wanda" in line
    assert not Path(env["ASSAY_CONFIG_DIR"], "auth.json").exists()


def test_login_push_pull_logout(run, server, env, model, tmp_path):
    proc = login(run, server, "wanda")
    assert f"logged in to {server.host_port} as wanda" in proc.stdout
    auth_file = Path(env["ASSAY_CONFIG_DIR"], "auth.json")
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    assert server.host_port in json.loads(auth_file.read_text())["auths"]

    ref = f"{server.host_port}/team/tiny:v1"
    assert "pushed" in run("push", model, ref, "-q").stdout
    run("pull", ref, "-o", tmp_path / "out", "-q")
    assert (tmp_path / "out" / "tiny-v1.gguf").read_bytes() == model.read_bytes()
    assert "team/tiny" in run("ls", server.host_port).stdout.split()
    assert "v1" in run("ls", f"{server.host_port}/team/tiny").stdout
    assert "layout         ollama" in run("inspect", ref).stdout
    assert "team/tiny" in run("status", ref).stdout  # REST: Basic on /api/

    assert f"logged out of {server.host_port}" in run("logout", server.host_port).stdout
    assert server.host_port not in json.loads(auth_file.read_text())["auths"]
    line = one_line_error(run("pull", ref, "-o", tmp_path / "again", "-q", ok=False))
    assert f"run assay login {server.host_port}" in line


def test_modelfile_from_a_model_mounts_it_with_auth_on(run, server, model, tmp_path):
    """The mount of the base's weights asks for a token that may also pull the base."""
    login(run, server, "wanda")
    run("push", model, f"{server.host_port}/team/authbase:v1", "-q")
    (tmp_path / "Modelfile").write_text("FROM team/authbase:v1\nSYSTEM Be brief.\n")
    proc = run("push", tmp_path / "Modelfile", f"{server.host_port}/team/authderived:v1", "-q",
               OLLAMA_MODELS=str(tmp_path / "no-ollama"))
    assert proc.stdout.rstrip().endswith(
        f"blobs: 1 mounted, 2 uploaded; FROM {server.host_port}/team/authbase:v1)")


def test_refused_without_login(run, server, model, tmp_path):
    ref = f"{server.host_port}/team/nologin:v1"
    for args in (("push", model, ref, "-q"), ("pull", ref, "-o", tmp_path, "-q"),
                 ("status", ref), ("token", "ls", "-r", server.host_port)):
        line = one_line_error(run(*args, ok=False))
        assert f"assay login {server.host_port}" in line, args


def test_reader_cannot_push(run, server, model):
    """The one line names the namespace, the role needed, what rita has, and the fix."""
    login(run, server, "rita")
    line = one_line_error(run("push", model, f"{server.host_port}/team/rita:v1", "-q",
                              ok=False))
    assert line == ("error: denied: rita has no write role in namespace team (pushing "
                    "team/rita needs write; rita has read); a namespace admin can grant it: "
                    "assay namespace grant team rita write")
    line = one_line_error(run("push", model, f"{server.host_port}/other/gemma3:v1", "-q",
                              ok=False))
    assert line == ("error: denied: rita has no write role in namespace other (pushing "
                    "other/gemma3 needs write); a namespace admin can grant it: assay "
                    "namespace grant other rita write")


def test_delete_needs_the_delete_action(run, server, model):
    ref = f"{server.host_port}/team/doomed:v1"
    login(run, server, "wanda")
    run("push", model, ref, "-q")
    assert one_line_error(run("rm", ref, ok=False)) == (
        "error: denied: wanda has no admin role in namespace team (deleting from team/doomed "
        "needs admin; wanda has write); a namespace admin can grant it: assay namespace "
        "grant team wanda admin")
    login(run, server, "adam")  # admin in team: replaces wanda's entry
    assert "untagged" in run("rm", ref).stdout


def _upload_requests(server) -> float:
    """Blob HEADs and upload requests the server has answered (its /metrics)."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "assay_http_requests" for sample in family.samples
               if sample.name == "assay_http_requests_total"
               and "/blobs/" in sample.labels["route"])


def test_push_over_quota_stops_before_any_upload(run, server, model):
    """``assay push`` declares its blobs first: over the quota it stops with one line
    naming the namespace, its usage, its quota and the push's size, and the registry
    answered no blob HEAD and no upload request for it."""
    root = ("root", PASSWORDS["root"])
    r = httpx.put(f"{server.url}/api/v1/namespaces/wanda", json={"quota_bytes": 1000},
                  auth=root, timeout=30)
    assert r.status_code == 200, r.text
    try:
        login(run, server, "wanda")
        before = _upload_requests(server)
        line = one_line_error(run("push", model, f"{server.host_port}/wanda/big:v1", "-q",
                                  ok=False))
        assert re.fullmatch(r"error: denied: namespace 'wanda' is over its storage quota: "
                            r"0B used \+ [0-9.]+KiB for this push > 1000B quota", line), line
        assert _upload_requests(server) == before
        r = httpx.get(f"{server.url}/api/v1/namespaces/wanda", auth=root, timeout=30)
        assert r.json()["usage_bytes"] == 0
    finally:
        httpx.put(f"{server.url}/api/v1/namespaces/wanda", json={"quota_bytes": None},
                  auth=root, timeout=30)


def test_env_credentials_win_and_wrong_ones_are_one_line(run, server, model):
    login(run, server, "rita")
    ref = f"{server.host_port}/team/envpush:v1"
    run("push", model, ref, "-q", ASSAY_USERNAME="wanda", ASSAY_PASSWORD=PASSWORDS["wanda"])
    line = one_line_error(run("pull", ref, "-q", ok=False, ASSAY_USERNAME="wanda",
                              ASSAY_PASSWORD="wrong"))
    assert line == (f"error: {server.host_port} refused the credentials for team/envpush: "
                    f"run assay login {server.host_port} (or fix ASSAY_USERNAME/ASSAY_PASSWORD)")


def test_docker_config_fallback(run, server, env, model):
    docker = Path(env["DOCKER_CONFIG"])
    docker.mkdir(parents=True)
    auth = base64.b64encode(f"wanda:{PASSWORDS['wanda']}".encode()).decode()
    (docker / "config.json").write_text(json.dumps({"auths": {server.host_port:
                                                              {"auth": auth}}}))
    assert "pushed" in run("push", model, f"{server.host_port}/team/docker:v1", "-q").stdout


# ---------------------------------------------------------------------------- tokens, keys


def test_token_add_prints_a_working_token_and_scopes_hold(run, server, model, tmp_path):
    login(run, server, "wanda")
    reg = ("-r", server.host_port)
    added = run("token", "add", "laptop", *reg)
    full = added.stdout.strip()  # alone on stdout; the warning on stderr
    assert added.stdout == full + "\n" and "save it now: it is shown only once" in added.stderr
    pull_only = run("token", "create", "ci-pull", "--scope", "pull", "--expires-days", "1",
                    "--registry", server.host_port).stdout.strip()  # the earlier verb
    assert full.startswith("assay_pat_") and pull_only.startswith("assay_pat_")
    listed = json.loads(run("token", "ls", "--json", *reg).stdout)
    scopes = {t["name"]: t["scopes"] for t in listed}
    assert scopes["laptop"] == ["pull", "push"] and scopes["ci-pull"] == ["pull"]
    run("logout", server.host_port)

    ref = f"{server.host_port}/team/pat:v1"
    run("push", model, ref, "-q", ASSAY_TOKEN=full)
    run("pull", ref, "-o", tmp_path / "pulled", "-q", ASSAY_TOKEN=pull_only)
    line = one_line_error(run("push", model, f"{server.host_port}/team/pat:v2", "-q",
                              ok=False, ASSAY_TOKEN=pull_only))
    assert line == ("error: denied: the token 'ci-pull' (scope: pull) may not push "
                    "team/pat; wanda has write there: use a token with the push (or "
                    "push:team) scope")

    login(run, server, "wanda")
    token_id = next(t["id"] for t in listed if t["name"] == "ci-pull")
    assert f"revoked token {token_id}" in run("token", "rm", str(token_id), *reg).stdout
    line = one_line_error(run("pull", ref, "-o", tmp_path / "p2", "-q", ok=False,
                              ASSAY_TOKEN=pull_only))
    assert "refused the credentials for team/pat" in line and "ASSAY_TOKEN" in line


def test_key_add_then_listed_and_removed(run, server, env):
    key = OllamaKey()
    key_dir = Path(env["HOME"]) / ".ollama"
    key.save(key_dir)
    login(run, server, "wanda")
    reg = ("-r", server.host_port)
    added = json.loads(run("key", "add", "--json", *reg).stdout)  # ~/.ollama/id_ed25519.pub
    keys = json.loads(run("key", "ls", "--json", *reg).stdout)
    assert [k["fingerprint"] for k in keys] == [added["fingerprint"]]
    assert added["fingerprint"] in run("key", "ls", *reg).stdout
    line = one_line_error(run("key", "add", key_dir / "id_ed25519.pub", *reg, ok=False))
    assert "registered already" in line
    line = one_line_error(run("key", "add", key_dir / "id_ed25519", *reg, ok=False))
    assert "not a public key" in line
    run("key", "rm", str(added["id"]), *reg)
    assert json.loads(run("key", "ls", "--json", *reg).stdout) == []


def test_webhooks_need_a_site_admin(run, server):
    login(run, server, "wanda")
    assert one_line_error(run("webhook", "ls", "-r", server.host_port, ok=False)).startswith(
        "error: denied: ")
    login(run, server, "root")
    run("webhook", "ls", "-r", server.host_port)


def test_server_side_token_commands_moved_under_user(run, server, tmp_path):
    data_dir = server.log_path.parent
    out = run("user", "token", "add", "wanda", "--name", "admin-made", "--data-dir",
              data_dir).stdout.strip()
    assert out.startswith("assay_pat_")
    assert "admin-made" in run("user", "token", "ls", "wanda", "--data-dir", data_dir).stdout
    # the earlier spellings still work for scripts
    assert run("user", "token", "create", "wanda", "--name", "older", "--data-dir",
               data_dir).stdout.startswith("assay_pat_")
    assert run("token", "create", "wanda", "--name", "old-spelling", "--data-dir",
               data_dir).stdout.startswith("assay_pat_")


# ---------------------------------------------------------------------------- tokens expire


class Recording(httpx.BaseTransport):
    """Records every (method, path, status, had Authorization)."""

    def __init__(self):
        self.inner = StdlibTransport()
        self.log: list[tuple[str, str, int, bool]] = []
        self.lock = threading.Lock()

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        with self.lock:
            self.log.append((request.method, request.url.path, response.status_code,
                             "authorization" in request.headers))
        return response

    def close(self):
        self.inner.close()


class SlowManifest(RegistryClient):
    """Waits ``delay`` seconds before the manifest PUT: the bearer token of the blob
    uploads has expired by then."""

    delay = 3.0

    def put_manifest(self, *args, **kwargs):
        time.sleep(self.delay)
        return super().put_manifest(*args, **kwargs)


@pytest.fixture(scope="module")
def short_tokens(tmp_path_factory, cli):
    proc = start(cli, tmp_path_factory.mktemp("auth-short") / "data",
                 env={"ASSAY_AUTH_TOKEN_SECONDS": "2"})
    try:
        yield proc
    finally:
        proc.stop()


def test_expired_token_is_renewed_transparently(short_tokens, model, tmp_path):
    ref = parse_reference(f"{short_tokens.host_port}/team/slow:v1")
    transport = Recording()
    with SlowManifest(ref.registry, transport=transport,
                        credentials=Credentials("wanda", PASSWORDS["wanda"]),
                        locations=BlobLocations(tmp_path / "loc.json")) as client, \
            Transfers(quiet=True) as transfers:
        result = push(model, ref, client, transfers, cards=LocalCards())
        fetched = client.auth.stats["token fetched"]
    assert result.digest.startswith("sha256:")
    assert fetched == 2  # the first token, and a fresh one for the manifest
    bodies = [e for e in transport.log if e[0] in ("PUT", "PATCH")]
    assert bodies and all(status in (201, 202, 204) and authed for _, _, status, authed in bodies)
    refused = [e for e in transport.log if e[2] == 401]
    # Only the first requests (the quota check asked of the REST API, and parallel blob
    # HEADs before the realm was known: none with a large body) drew a challenge; the
    # renewal for the manifest happened before it was sent.
    assert refused and all((m == "HEAD" or path.endswith("/push-check")) and not authed
                           for m, path, _, authed in refused)


def test_cli_commands_seconds_apart(cli, short_tokens, model, env, tmp_path):
    extra = {**env, "ASSAY_USERNAME": "wanda", "ASSAY_PASSWORD": PASSWORDS["wanda"]}
    ref = f"{short_tokens.host_port}/team/apart:v1"
    cli("push", model, ref, "-q", env=extra)
    time.sleep(3)
    cli("pull", ref, "-o", tmp_path / "o", "-q", env=extra)


# ---------------------------------------------------------------------------- the worker


def test_library_lookup_as_the_worker_does(server, model, run, monkeypatch, tmp_path):
    """worker/remote.py pulls with ``credentials=lookup(host)``: the worker's environment."""
    from client.credentials import lookup

    ref = parse_reference(f"{server.host_port}/team/remote:v1")
    run("push", model, str(ref), "-q", ASSAY_USERNAME="wanda",
        ASSAY_PASSWORD=PASSWORDS["wanda"])
    for var in ("ASSAY_TOKEN", "ASSAY_USERNAME", "ASSAY_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    with RegistryClient(ref.registry, credentials=lookup(ref.registry.host)) as client, \
            pytest.raises(Exception, match="assay login"):
        client.get_manifest(ref.name, "v1")
    monkeypatch.setenv("ASSAY_USERNAME", "rita")
    monkeypatch.setenv("ASSAY_PASSWORD", PASSWORDS["rita"])
    with RegistryClient(ref.registry, credentials=lookup(ref.registry.host)) as client:
        manifest = client.get_manifest(ref.name, "v1").document(ref)
        layer = manifest["layers"][0]
        dest = tmp_path / "blob"
        Downloader(client, silent()).fetch(ref.name, layer["digest"], layer["size"], dest)
    assert dest.read_bytes() == model.read_bytes()
