"""The client's pure parts, without a server: references, Modelfiles, pull naming and path
safety, the blob-location cache, and one-line error rendering."""

from __future__ import annotations

import click
import httpx
import pytest

from client import mediatypes as mt
from client.errors import BadReference, ClientError, InputError, reported, response_error
from client.locations import BlobLocations
from client.modelfile import parse_modelfile, quote, render_modelfile
from client.pull import plan_files, safe_target
from client.ref import parse_location, parse_reference

pytestmark = pytest.mark.clients

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, base, name, tag, digest", [
    ("127.0.0.1:5000/team/gemma3:270m", "http://127.0.0.1:5000", "team/gemma3", "270m", None),
    ("localhost/a", "http://localhost", "a", "latest", None),
    ("[::1]:8080/x/y/z:v1.2", "http://[::1]:8080", "x/y/z", "v1.2", None),
    ("127.9.9.9:5000/a", "http://127.9.9.9:5000", "a", "latest", None),
    ("registry.example.com/team/m", "https://registry.example.com", "team/m", "latest", None),
    (f"reg.io:443/a/b@{D}", "https://reg.io:443", "a/b", None, D),
    (f"reg.io/a/b:v1@{D}", "https://reg.io", "a/b", "v1", D),
    ("http://reg.io/a", "http://reg.io", "a", "latest", None),
])
def test_references(text, base, name, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry.base_url, ref.name, ref.tag, ref.digest) == (base, name, tag, digest)
    assert ref.reference == (digest or tag)


def test_insecure_switches_to_http():
    assert parse_reference("reg.io/a", insecure=True).registry.scheme == "http"
    assert parse_reference("https://127.0.0.1/a").registry.scheme == "https"


@pytest.mark.parametrize("text, words", [
    ("reg.io", "expected HOST[:PORT]/NAME"),
    ("reg.io/", "no repository name"),
    ("reg.io/Team/x", "lowercase"),
    ("reg.io/a:b:c", "not a valid repository name"),
    ("reg.io/a:-bad", "not a valid tag"),
    ("reg.io/a@sha256:abc", "not a digest"),
    ("reg.io:70000/a", "out of range"),
    ("bad host/a", "not a registry host"),
    ("ftp://reg.io/a", "only http:// and https://"),
])
def test_bad_references(text, words):
    with pytest.raises(BadReference, match="invalid reference") as info:
        parse_reference(text)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_locations_for_ls():
    registry, name = parse_location("127.0.0.1:5000")
    assert registry.base_url == "http://127.0.0.1:5000" and name is None
    assert parse_location("127.0.0.1:5000/team/m/")[1] == "team/m"
    with pytest.raises(BadReference):
        parse_location("127.0.0.1:5000/team/m:v1")


def test_modelfile_grammar(tmp_path):
    mf = parse_modelfile(
        '\ufeff# comment\n'
        'from ./m.gguf\n'
        '  Template """line one\n'
        'line two\n'
        '"""\n'
        'SYSTEM "quoted\n'
        'over lines"\n'
        'PARAMETER\tstop <end_of_turn>\n'
        'PARAMETER stop "<eos>"\n'
        'parameter temperature 0.5\n'
        'PARAMETER num_ctx 2048\n'
        'PARAMETER use_mmap false\n'
        'PARAMETER seed 1\n'
        'PARAMETER seed 2\n'
        'MESSAGE user hello there\n'
        'MESSAGE assistant """hi"""\n'
        'ADAPTER ~/lora.gguf\n'
        'LICENSE MIT\n'
        'LICENSE """Apache\n2.0"""\n'
        'RENDERER gemma3\n', base_dir=tmp_path)
    assert mf.model == "./m.gguf"
    assert mf.resolve(mf.model) == tmp_path / "m.gguf"
    assert mf.resolve(mf.adapters[0]).is_absolute()
    assert mf.template == "line one\nline two\n"
    assert mf.system == "quoted\nover lines"
    assert mf.parameters == {"stop": ["<end_of_turn>", "<eos>"], "temperature": 0.5,
                             "num_ctx": 2048, "use_mmap": False, "seed": [1, 2]}
    assert mf.messages == [{"role": "user", "content": "hello there"},
                           {"role": "assistant", "content": "hi"}]
    assert mf.licenses == ["MIT", "Apache\n2.0"]
    assert mf.extras == {"renderer": "gemma3"}

    text = render_modelfile("./m.gguf", adapters=mf.adapters, template=mf.template,
                            system=mf.system, parameters=mf.parameters, messages=mf.messages,
                            licenses=mf.licenses, extras=mf.extras)
    again = parse_modelfile(text, base_dir=tmp_path)
    for field in ("model", "adapters", "template", "system", "parameters", "messages",
                  "licenses", "extras"):
        assert getattr(again, field) == getattr(mf, field), (field, text)


@pytest.mark.parametrize("text, line, words", [
    ("FROM a\nFOO bar\n", 2, "unknown instruction 'FOO'"),
    ("FROM a\nSYSTEM\n", 2, "SYSTEM needs a value"),
    ("FROM a\nPARAMETER temperature\n", 2, "needs a value"),
    ("FROM a\nPARAMETER\n", 2, "needs a name"),
    ("FROM a\nPARAMETER top-k 3\n", 2, "invalid PARAMETER name"),
    ("FROM a\nMESSAGE robot hi\n", 2, "must be one of system, user, assistant"),
    ("FROM a\n\nTEMPLATE \"\"\"open\nstill open\n", 3, 'unterminated """'),
    ("FROM a\nSYSTEM \"open\n", 2, 'unterminated "'),
    ("FROM a\nFROM b\n", 2, "more than one FROM"),
    ("FROM a\nFROM: b\n", 2, "unknown instruction"),
])
def test_malformed_modelfiles(text, line, words):
    with pytest.raises(InputError) as info:
        parse_modelfile(text, source="Modelfile")
    message = str(info.value)
    assert message.startswith(f"Modelfile line {line}: ") and words in message, message


def test_modelfile_without_from():
    with pytest.raises(InputError, match="no FROM line"):
        parse_modelfile("SYSTEM hi\n")


@pytest.mark.parametrize("value", ["plain", " leading", "trailing ", "two\nlines", '"quoted"',
                                   '"', "# not a comment", 'ends with "', "\n"])
def test_quote_round_trips(value):
    assert parse_modelfile(f"FROM a\nSYSTEM {quote(value)}\n").system == value


def ref(text="127.0.0.1:5000/team/gemma3:270m"):
    return parse_reference(text)


def layer(media_type, annotations=None, digest=D, size=10):
    d = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        d["annotations"] = annotations
    return d


def test_pull_names():
    plan = plan_files(ref(), {"layers": [layer(mt.OLLAMA_MODEL), layer(mt.OLLAMA_ADAPTER),
                                         layer(mt.OLLAMA_TEMPLATE), layer(mt.OLLAMA_PARAMS)]})
    assert plan.kind == "ollama"
    assert [f.relpath for f in plan.files] == ["gemma3-270m.gguf", "gemma3-270m-adapter.gguf"]
    assert len(plan.modelfile_layers) == 2
    assert plan_files(ref("h:1/a/b"), {"layers": [layer(mt.OLLAMA_MODEL)]}).files[0].relpath \
        == "b.gguf"

    docker = plan_files(ref(), {"config": {"mediaType": mt.DOCKER_AI_CONFIG},
                                "layers": [layer(mt.DOCKER_AI_GGUF), layer(mt.DOCKER_AI_LICENSE)]})
    assert docker.kind == "docker"
    assert [f.relpath for f in docker.files] == ["gemma3-270m.gguf", "LICENSE"]

    oras = plan_files(ref(), {"layers": [
        layer("application/vnd.oci.image.layer.v1.tar", {mt.TITLE: "weights.bin"}),
        layer("application/x-thing")]})
    assert oras.kind == "oci"
    assert [f.relpath for f in oras.files] == ["weights.bin", D.replace(":", "-")]
    assert oras.files[0].archive is None  # oras files are the blob itself

    modelpack = plan_files(ref(), {"artifactType": mt.MODELPACK_ARTIFACT, "layers": [
        layer(mt.MODELPACK_WEIGHT, {mt.FILEPATH: "sub/model.safetensors"}),
        layer("application/vnd.cncf.model.weight.v1.tar", {mt.FILEPATH: "shards"})]})
    assert modelpack.kind == "modelpack"
    assert modelpack.files[0].relpath == "sub/model.safetensors"
    assert modelpack.files[1].archive == "tar"

    with pytest.raises(ClientError, match="without a model layer"):
        plan_files(ref(), {"layers": [layer(mt.OLLAMA_TEMPLATE)]})
    with pytest.raises(ClientError, match="no layers"):
        plan_files(ref(), {"layers": []})


@pytest.mark.parametrize("relpath", ["../evil", "a/../../evil", "/etc/passwd", "a\\b", "",
                                     "a/\x00"])
def test_safe_target_refuses_escapes(tmp_path, relpath):
    with pytest.raises(ClientError, match="refusing to write"):
        safe_target(tmp_path / "out", relpath)


def test_safe_target_refuses_symlinked_directories(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ClientError, match="resolves outside"):
        safe_target(tmp_path / "out", "link/file")
    assert safe_target(tmp_path / "out", "sub/dir/file") == tmp_path / "out/sub/dir/file"


def test_blob_locations(tmp_path):
    path = tmp_path / "cache" / "blob-locations.json"
    first = BlobLocations(path)
    assert first.repositories("h:1", D) == []
    first.remember("h:1", "team/a", [D])
    second = BlobLocations(path)  # another process, written meanwhile
    second.remember("h:1", "team/b", [D])
    first.remember("h:2", "x/y", [D])  # merges, does not clobber team/b
    third = BlobLocations(path)
    assert set(third.repositories("h:1", D)) == {"team/a", "team/b"}
    assert third.repositories("h:2", D) == ["x/y"]
    path.write_text("not json")
    assert BlobLocations(path).repositories("h:1", D) == []  # a broken cache is empty


def test_oci_errors_become_one_line():
    request = httpx.Request("GET", "http://h/v2/a/manifests/x")
    body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown\nreally"}]}
    exc = response_error(httpx.Response(404, json=body, request=request), "h/a:x")
    assert exc.status == 404 and exc.code == "MANIFEST_UNKNOWN"
    assert str(exc).startswith("h/a:x: manifest unknown")
    plain = response_error(httpx.Response(502, content=b"<html>", request=request), "h/a:x")
    assert str(plain) == "h/a:x: 502 Bad Gateway (HTTP 502)"


def test_reported_prints_one_line(capsys):
    with pytest.raises(click.exceptions.Exit) as info, reported():
        raise ValueError("multi\nline\nfailure")
    assert info.value.exit_code == 1
    assert capsys.readouterr().err == "error: ValueError: multi line failure\n"
    with pytest.raises(click.exceptions.Exit), reported():
        raise InputError("bad input")
    assert capsys.readouterr().err == "error: bad input\n"


# ---------------------------------------------------------------------------- HTTP behaviour


class FakeRegistry:
    """A minimal registry on ``httpx.MockTransport``: relative upload Locations carrying their
    own query string, and scripted failures."""

    def __init__(self, failures: list | None = None):
        self.blobs: dict[str, bytes] = {}
        self.sessions: dict[str, bytearray] = {}
        self.failures = list(failures or [])  # consumed one per request: None, exc or status
        self.log: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.log.append((request.method, str(request.url)))
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            if failure is not None:
                return httpx.Response(failure, json={"errors": [{"code": "UNAVAILABLE",
                                                                  "message": "busy"}]})
        path, params = request.url.path, request.url.params
        if request.method == "HEAD" and "/blobs/" in path:
            digest = path.rsplit("/", 1)[1]
            return httpx.Response(200 if digest in self.blobs else 404)
        if request.method == "POST":
            sid = str(len(self.sessions))
            self.sessions[sid] = bytearray()
            return httpx.Response(202, headers={"Location": f"/up/{sid}?state=s{sid}"})
        if request.method == "PATCH":
            assert params["state"].startswith("s")
            sid = path.rsplit("/", 1)[1]
            self.sessions[sid] += request.read()
            return httpx.Response(202, headers={"Location": f"../up/{sid}?state=s{sid}x"})
        if request.method == "PUT" and path.startswith("/up/"):
            assert "state" in params, "the Location's own query string must survive"
            sid = path.rsplit("/", 1)[1]
            self.sessions[sid] += request.read()
            self.blobs[params["digest"]] = bytes(self.sessions[sid])
            return httpx.Response(201)
        if request.method == "GET" and "/manifests/" in path:
            return httpx.Response(200, content=b"{}", headers={
                "Content-Type": mt.OCI_MANIFEST})
        return httpx.Response(404)


def fake_client(fake: FakeRegistry, **kw):
    from client.registry_client import RegistryClient

    return RegistryClient(parse_reference("reg.test/a/b").registry,
                          transport=httpx.MockTransport(fake), backoff=0.001,
                          locations=BlobLocations(kw.pop("cache")), **kw)


def test_relative_locations_monolithic_and_chunked(tmp_path):
    from client.blobs import Blob

    fake = FakeRegistry()
    small = Blob.from_bytes("application/octet-stream", b"x" * 100)
    path = tmp_path / "big"
    path.write_bytes(bytes(range(256)) * 1000)
    big = Blob.from_file("application/octet-stream", path)
    with fake_client(fake, cache=tmp_path / "c.json", chunk_size=64 * 1024) as client:
        assert client.push_blob("a/b", small) == "uploaded"
        assert client.push_blob("a/b", big) == "uploaded"
        assert client.push_blob("a/b", big) == "already present"
    assert fake.blobs[small.digest] == small.data
    assert fake.blobs[big.digest] == path.read_bytes()
    patches = [url for method, url in fake.log if method == "PATCH"]
    assert len(patches) == 4 and all(url.startswith("https://reg.test/up/") for url in patches)


def test_transient_failures_are_retried(tmp_path):
    fake = FakeRegistry([503, httpx.ConnectError("refused"), 429, None])
    with fake_client(fake, cache=tmp_path / "c.json", attempts=4) as client:
        assert client.get_manifest("a/b", "v1").content == b"{}"
    assert len(fake.log) == 4

    fake = FakeRegistry([503] * 5)
    with fake_client(fake, cache=tmp_path / "c.json", attempts=3) as client, \
            pytest.raises(ClientError, match="busy") as info:
        client.get_manifest("a/b", "v1")
    assert "(HTTP 503)" in str(info.value) and len(fake.log) == 3

    fake = FakeRegistry([400])  # a client error is not retried
    with fake_client(fake, cache=tmp_path / "c.json", attempts=3) as client, \
            pytest.raises(ClientError):
        client.get_manifest("a/b", "v1")
    assert len(fake.log) == 1


def test_safe_target_creates_nothing_through_a_symlink(tmp_path):
    from client.pull import safe_target

    root, outside = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(ClientError):
        safe_target(root, "link/newdir/model.gguf")
    assert not (outside / "newdir").exists()
    assert safe_target(root, "a/b/model.gguf") == root / "a" / "b" / "model.gguf"
