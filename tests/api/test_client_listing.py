"""``assay ls`` and ``assay inspect`` against the app served on loopback (in-process): each
tag's status, figures and failure reason, the browse API's filters and sorts as options,
``--json``, the plain-OCI fallback, the hint when an anonymous listing is empty because
of auth, and ``inspect`` of a tag that the readiness gate does not serve."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from registry.app import create_app
from registry.cli import main
from tests.support.model_artifacts import push_safetensors
from tests.support.oci import push_image
from tests.support.verification import push_model, verify

LONG_REASON = ("llama.cpp could not load the model: tensor 'blk.0.attn_q.weight' has "
               "wrong shape; the file is damaged or was written by a newer converter")


def _cli(*args: str, code: int = 0):
    """``assay ARGS`` (stdout and stderr apart), which must exit with ``code``."""
    result = CliRunner().invoke(main, list(args))
    assert (result.exit_code or result.return_value or 0) == code, \
        (args, result.output, result.exception)
    return result


@pytest.fixture
def host(live_url) -> str:
    return live_url.removeprefix("http://")


@pytest.fixture
def zoo(client, service) -> dict[str, str]:
    """team/m: fast (ready, 80 tokens/s), slow (ready, 12.5), broken (failed), waiting
    (queued); team/st:v1 (safetensors, ready, 30); team/img:v1 (an image, not a model)."""
    d = {tag: push_model(client, "team/m", tag, tag)
         for tag in ("fast", "slow", "broken")}
    d["st"] = push_safetensors(client, "team/st", "v1")
    verify(service, "team/m", d["fast"], tps=80.0)
    verify(service, "team/m", d["slow"], tps=12.5)
    verify(service, "team/m", d["broken"], passed=False, reason=LONG_REASON)
    verify(service, "team/st", d["st"], tps=30.0)
    d["waiting"] = push_model(client, "team/m", "waiting", "waiting")
    d["img"] = push_image(client, "team/img", "v1")[0]
    return d


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


# ------------------------------------------------------------------ a repository's tags

def test_tags_show_status_figures_and_why_one_failed(host, zoo):
    out = _cli("ls", f"{host}/team/m").stdout
    header, *lines = out.splitlines()
    assert header.split() == ["TAG", "STATUS", "TOKENS/S", "MEMORY", "FORMAT",
                              "ARCHITECTURE", "QUANTIZATION", "SIZE", "DIGEST", "REASON"]
    rows = {line.split()[0]: line for line in lines}
    assert list(rows) == ["broken", "fast", "slow", "waiting"]
    assert rows["fast"].split()[:9] == ["fast", "ready", "80.0", "118", "MiB", "gguf",
                                        "llama", "F32", rows["fast"].split()[8]]
    assert zoo["fast"][7:19] in rows["fast"]
    assert rows["slow"].split()[1:3] == ["ready", "12.5"]
    assert rows["waiting"].split()[1:4] == ["queued", "-", "-"]
    broken = rows["broken"]
    assert broken.split()[1:3] == ["failed", "-"]
    # The reason, shortened to one column; `assay status` has it in full.
    assert broken.endswith(LONG_REASON[:59] + "…"), broken
    assert header.index("REASON") == broken.index("llama.cpp could not")


def test_json_gives_the_browse_rows(host, zoo):
    rows = json.loads(_cli("ls", "--json", f"{host}/team/m").stdout)
    by_tag = {r["tag"]: r for r in rows}
    assert by_tag["broken"]["reason"] == LONG_REASON and by_tag["fast"]["reason"] is None
    assert (by_tag["fast"]["status"], by_tag["fast"]["tokens_per_s"],
            by_tag["fast"]["peak_rss_bytes"], by_tag["fast"]["digest"]) == \
        ("ready", 80.0, 123456789, zoo["fast"])


def test_an_image_has_no_model_columns(host, zoo):
    out = _cli("ls", f"{host}/team/img").stdout
    assert _rows(out) == [["TAG", "STATUS", "SIZE", "DIGEST"],
                          ["v1", "-", "33", "B", zoo["img"][7:19]]]


def test_filters_and_sorts_map_to_the_browse_api(host, zoo):
    def tags(*args: str) -> list[str]:
        return [row[0] for row in _rows(_cli("ls", f"{host}/team/m", *args).stdout)[1:]]

    assert tags("--status", "ready") == ["fast", "slow"]
    assert tags("--status", "QUEUED", "--status", "failed") == ["broken", "waiting"]
    assert tags("--status", "ready,failed", "--sort", "tps") == ["fast", "slow", "broken"]
    assert tags("--sort", "tps", "--reverse") == ["slow", "fast", "broken", "waiting"]
    assert tags("--min-tps", "20") == ["fast"]
    assert tags("--max-memory", "117MiB") == []
    assert tags("--max-memory", "118MiB", "--format", "GGUF") == ["fast", "slow"]
    assert tags("--quant", "f32", "--arch", "LLAMA", "-q", "S") == ["fast", "slow"]
    assert tags("--backend", "llama.cpp", "--sort", "name", "--reverse") == \
        ["slow", "fast", "broken"]
    none = _cli("ls", f"{host}/team/m", "--status", "ready", "--min-tps", "1000")
    assert none.stdout == "" and none.stderr == f"{host}/team/m: nothing matches\n"
    # No fit tables here: nothing fits, but the options reach the API as it reads them.
    none = _cli("ls", f"{host}/team/m", "--fits", "16 GiB", "--context", "8192",
                "--kv-cache", "Q8_0", "--max-perplexity", "100")
    assert none.stderr == f"{host}/team/m: nothing matches\n"


def test_models_across_the_registry(host, zoo):
    out = _cli("ls", host, "--status", "ready", "--min-tps", "20", "--sort", "tps").stdout
    assert [row[:3] for row in _rows(out)] == [["MODEL", "STATUS", "TOKENS/S"],
                                               ["team/m:fast", "ready", "80.0"],
                                               ["team/st:v1", "ready", "30.0"]]
    out = _cli("ls", host, "--format", "safetensors", "--json").stdout
    assert [(r["repository"], r["tag"]) for r in json.loads(out)] == [("team/st", "v1")]
    # Without filters: the repositories, as ever.
    assert _cli("ls", host).stdout.split() == ["team/img", "team/m", "team/st"]
    assert json.loads(_cli("ls", host, "--json").stdout) == ["team/img", "team/m", "team/st"]


@pytest.mark.parametrize("args, said", [
    (("--status", "bogus"), "status must be one of queued, verifying, ready, failed"),
    (("--fits", "lots"), "fits_memory must be a number of bytes or a size"),
    (("--max-memory", "lots"), "'lots' is not a size"),
    (("--context", "8192"), "--context and --kv-cache say what --fits is asked at"),
])
def test_bad_filters_are_one_line_errors(host, zoo, args, said):
    result = _cli("ls", f"{host}/team/m", *args, code=1)
    assert result.stderr.startswith("error: ") and said in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_an_unknown_repository_is_an_error(host, zoo):
    result = _cli("ls", f"{host}/team/nope", code=1)
    assert "team/nope" in result.stderr and "not known" in result.stderr, result.stderr


# ------------------------------------------------------------------ inspect

def test_inspect_a_failed_tag_the_gate_does_not_serve(host, service, zoo):
    service.verification.set_policy("team", True, None)  # gate on: by tag, ready only
    result = _cli("inspect", f"{host}/team/m:broken")  # informational: exit 0
    out = result.stdout
    assert f"  digest         {zoo['broken']}" in out
    assert "    architecture       llama" in out  # the card
    assert "  status         failed" in out and f"  reason: {LONG_REASON}" in out
    assert "a pull by tag is refused until a version of it passes verification" in out
    info = json.loads(_cli("inspect", "--json", f"{host}/team/m:broken").stdout)
    assert (info["digest"], info["status"], info["reason"], info["served"]) == \
        (zoo["broken"], "failed", LONG_REASON, None)
    # The pull it describes is refused, with the registry's reason.
    assert "failed verification" in _cli("pull", f"{host}/team/m:broken", "-o", "/nonexistent",
                                         code=1).stderr


def test_inspect_a_queued_tag_shows_its_place(host, service, zoo):
    service.verification.set_policy("team", True, None)
    out = _cli("inspect", f"{host}/team/m:waiting").stdout
    assert f"  digest         {zoo['waiting']}" in out and "  status         queued" in out
    assert "  queued: next in line" in out and "no verification worker has ever" in out


# ------------------------------------------------------------------ a plain OCI registry

def test_a_registry_without_the_browse_api_lists_tags_and_digests(client, zoo):
    """The fallback, as against any OCI registry: the same app behind a front that answers
    every ``/api/`` path as CNCF Distribution does (a plain-text 404)."""
    from starlette.responses import PlainTextResponse

    app = client.app

    async def oci_only(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            response = PlainTextResponse("404 page not found\n", status_code=404)
            return await response(scope, receive, send)
        return await app(scope, receive, send)

    host = _serve(oci_only)
    out = _cli("ls", f"{host}/team/m").stdout
    assert _rows(out) == [["TAG", "DIGEST"], *([t, zoo[t][7:19]] for t in
                                                ("broken", "fast", "slow", "waiting"))]
    result = _cli("ls", f"{host}/team/m", "--status", "ready", code=1)
    assert "filters and sorting need assay" in result.stderr
    result = _cli("ls", host, "--sort", "tps", code=1)
    assert "has no model listing (not an assay registry?)" in result.stderr
    # inspect shows what the manifest says, by tag through /v2/.
    out = _cli("inspect", f"{host}/team/m:fast").stdout
    assert f"  digest         {zoo['fast']}" in out and "not an assay registry" in out


# ------------------------------------------------------------------ auth on, anonymous

def _serve(app) -> str:
    import uvicorn

    from tests.support.processes import free_port, wait_for_http

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           lifespan="off", log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    wait_for_http(f"http://127.0.0.1:{port}/v2/")
    _SERVERS.append(server)
    return f"127.0.0.1:{port}"


_SERVERS: list = []


@pytest.fixture(autouse=True)
def _stop_servers():
    yield
    while _SERVERS:
        _SERVERS.pop().should_exit = True


@pytest.fixture
def anonymous(monkeypatch, tmp_path):
    """No credentials anywhere the client looks."""
    for name in ("ASSAY_TOKEN", "ASSAY_USERNAME", "ASSAY_PASSWORD", "ASSAY_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path / "assay-config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


def test_an_anonymous_listing_empty_because_of_auth_says_sign_in(settings, anonymous):
    from starlette.testclient import TestClient

    from tests.support.oci import push_image as push

    app = create_app(settings.model_copy(update={"auth": True}), run_migrations=False)
    with TestClient(app, base_url="http://registry.test") as admin:
        app.state.registry.identities.add_user("root", "root-password", admin=True)
        admin.auth = ("root", "root-password")
        push(admin, "team/app", "v1")
        host = _serve(app)
        hint = (f"nothing visible without signing in: sign in with `assay login {host}` to "
                "see more\n")
        for args in (("ls", host), ("ls", host, "--status", "ready")):
            result = _cli(*args)
            assert (result.stdout, result.stderr.splitlines()[-1] + "\n") == ("", hint), args
        # A repository says so with the registry's refusal, as any anonymous pull does.
        for args in (("ls", f"{host}/team/app"), ("ls", f"{host}/team/app", "--sort", "tps")):
            result = _cli(*args, code=1)
            assert result.stderr.startswith(f"error: {host} requires a login for ") and \
                result.stderr.endswith(f": run assay login {host}\n"), (args, result.stderr)


def test_an_empty_registry_without_auth_gives_no_sign_in_hint(host, anonymous):
    result = _cli("ls", host)
    assert (result.stdout, result.stderr) == ("", "")
