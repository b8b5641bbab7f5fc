"""A Modelfile FROM a model (``client.bases``): found in the local Ollama store or on a
registry, its layers reused (mounted, sent from the store's files, or streamed from another
registry) and merged with the Modelfile's instructions as ``ollama create`` merges them.

Two assay registries run in this process (uvicorn threads on loopback ports, one set per
module); the client speaks to them through its real transport. Models are tiny generated
GGUFs; the local Ollama store is built in a temporary directory with its real layout.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner

from client import mediatypes as mt
from client.bases import BaseModels, parse_model_name
from client.errors import BadReference, ClientError, InputError
from client.layouts import go_json
from client.locations import BlobLocations
from client.progress import silent
from client.push import push
from client.ref import Registry, parse_reference
from client.registry_client import RegistryClient
from client.transport import StdlibTransport
from registry.app import create_app
from registry.cli import main
from registry.formats.cards import LocalCards
from registry.settings import Settings
from tests.support.gguf_files import write_gguf
from tests.support.processes import free_port, wait_for_http

TEMPLATE = "{{ .Prompt }}"
BASE_MODELFILE = f'''FROM ./tiny.gguf
TEMPLATE """{TEMPLATE}"""
PARAMETER temperature 0.7
PARAMETER top_k 40
PARAMETER stop <a>
'''


@dataclass
class Served:
    host: str  # HOST:PORT
    url: str


@pytest.fixture(scope="module")
def registries(tmp_path_factory) -> Iterator[tuple[Served, Served]]:
    """The registry pushed to, and another one."""
    servers, threads, served = [], [], []
    for name in ("target", "other"):
        data = tmp_path_factory.mktemp(name)
        app = create_app(Settings(data_dir=data, fsync=False, gate=False))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for_http(f"http://127.0.0.1:{port}/v2/")
        servers.append(server)
        threads.append(thread)
        served.append(Served(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"))
    yield served[0], served[1]
    for server, thread in zip(servers, threads, strict=True):
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A directory with a tiny GGUF and the base Modelfile on top of it."""
    root = tmp_path_factory.mktemp("tiny")
    write_gguf(root / "tiny.gguf", arch="llama")
    (root / "Modelfile").write_text(BASE_MODELFILE)
    return root


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Recording(httpx.BaseTransport):
    """The client's own transport, recording each request's method and URL."""

    def __init__(self):
        self.inner = StdlibTransport()
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append((request.method, str(request.url)))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def uploads(self, digest: str) -> list[tuple[str, str]]:
        """Requests that carried bytes of ``digest`` (a PATCH is only seen by its session,
        so any PATCH counts; the pushes below upload one blob per session at most)."""
        return [(m, u) for m, u in self.requests
                if (m == "PUT" and f"digest={digest.replace(':', '%3A')}" in u)
                or m == "PATCH"]


def client_for(served: Served, cache: Path, transport: httpx.BaseTransport | None = None,
               **kw) -> RegistryClient:
    """A client with its own blob-location cache (so no mount comes from an earlier push)."""
    return RegistryClient(parse_reference(f"{served.host}/x/y").registry,
                          transport=transport or StdlibTransport(), credentials=None,
                          locations=BlobLocations(Path(tempfile.mkdtemp(dir=cache)) / "l.json"),
                          **kw)


def push_modelfile(served: Served, text: str, ref: str, tmp: Path, store: Path,
                   transport: httpx.BaseTransport | None = None, **kw):
    directory = Path(tempfile.mkdtemp(dir=tmp))
    (directory / "Modelfile").write_text(text)
    with client_for(served, tmp, transport, **kw) as client:
        result = push(directory / "Modelfile", parse_reference(f"{served.host}/{ref}"), client,
                      silent(), cards=LocalCards(), ollama_models=store)
        return result, dict(client.stats)


def manifest(served: Served, name: str, tag: str) -> dict:
    resp = httpx.get(f"{served.url}/v2/{name}/manifests/{tag}",
                     headers={"Accept": mt.MANIFEST_ACCEPT})
    assert resp.status_code == 200, resp.text
    return resp.json()


def blob(served: Served, name: str, digest: str) -> bytes:
    resp = httpx.get(f"{served.url}/v2/{name}/blobs/{digest}", follow_redirects=True)
    assert resp.status_code == 200, resp.text
    return resp.content


def layers_by_type(doc: dict) -> dict[str, dict]:
    return {layer["mediaType"]: layer for layer in doc["layers"]}


@pytest.fixture(scope="module")
def base_on_target(registries, tiny, tmp_path_factory) -> dict:
    """The tiny model with a template and parameters, pushed as library/tiny:1 of the
    target registry; returns its manifest."""
    target, _ = registries
    tmp = tmp_path_factory.mktemp("push-base")
    with client_for(target, tmp) as client:
        push(tiny / "Modelfile", parse_reference(f"{target.host}/library/tiny:1"), client,
             silent(), cards=LocalCards())
    return manifest(target, "library/tiny", "1")


# ---------------------------------------------------------------------------- names


def test_model_names_follow_ollama():
    target = Registry("127.0.0.1:5000", "http")
    short = parse_model_name("gemma3:270m", target)
    assert str(short.registry) == "127.0.0.1:5000/library/gemma3:270m" and short.short
    assert short.store == ("registry.ollama.ai", "library", "gemma3", "270m")
    assert str(parse_model_name("gemma3", target).registry) == \
        "127.0.0.1:5000/library/gemma3:latest"
    team = parse_model_name("team/gemma3", target)
    assert str(team.registry) == "127.0.0.1:5000/team/gemma3:latest"
    assert team.store == ("registry.ollama.ai", "team", "gemma3", "latest")
    full = parse_model_name("reg.example:5001/team/gemma3:v2", target)
    assert (full.registry.registry.host, full.registry.name, full.registry.tag) == (
        "reg.example:5001", "team/gemma3", "v2")
    assert full.store == ("reg.example:5001", "team", "gemma3", "v2") and not full.short
    assert full.registry.registry.scheme == "https"  # not loopback: as any reference
    pinned = parse_model_name("gemma3@sha256:" + "a" * 64, target)
    assert pinned.store is None and pinned.registry.digest == "sha256:" + "a" * 64
    for bad in ("Gemma3", "gemma3:bad:tag", "a b", "127.0.0.1:5000/gemma3"):
        with pytest.raises(BadReference):
            parse_model_name(bad, target)


# ---------------------------------------------------------------------------- registries


def test_from_the_target_registry_mounts_the_base(registries, tiny, base_on_target,
                                                   tmp_path):
    target, _ = registries
    weights = (tiny / "tiny.gguf").read_bytes()
    base = layers_by_type(base_on_target)
    assert list(base) == [mt.OLLAMA_MODEL, mt.OLLAMA_TEMPLATE, mt.OLLAMA_PARAMS]
    recording = Recording()
    text = ("FROM tiny:1\nSYSTEM You are terse.\nPARAMETER temperature 0.2\n"
            "PARAMETER stop x\nLICENSE MIT\n")
    result, stats = push_modelfile(target, text, "team/chat:v1", tmp_path, tmp_path / "none",
                                   recording)
    assert result.layout.base == f"{target.host}/library/tiny:1"
    # The weights and the template were mounted from library/tiny; nothing of them sent.
    assert recording.uploads(sha256(weights)) == []
    mounts = [u for m, u in recording.requests if m == "POST" and "from=library%2Ftiny" in u]
    assert len(mounts) == 2, recording.requests
    assert result.outcomes == {"mounted": 2, "uploaded": 4}  # system, license, params, config
    assert stats["bytes uploaded"] < 1000 < len(weights)

    doc = manifest(target, "team/chat", "v1")
    layers = layers_by_type(doc)
    # Ollama's order: the base's layers, the replaced ones (params) moved to the end.
    assert list(layers) == [mt.OLLAMA_MODEL, mt.OLLAMA_TEMPLATE, mt.OLLAMA_SYSTEM,
                            mt.OLLAMA_LICENSE, mt.OLLAMA_PARAMS]
    assert layers[mt.OLLAMA_MODEL] == base[mt.OLLAMA_MODEL]
    assert layers[mt.OLLAMA_TEMPLATE] == base[mt.OLLAMA_TEMPLATE]
    params = blob(target, "team/chat", layers[mt.OLLAMA_PARAMS]["digest"])
    assert params == go_json({"stop": ["x"], "temperature": 0.2, "top_k": 40})
    assert blob(target, "team/chat", layers[mt.OLLAMA_SYSTEM]["digest"]) == b"You are terse."
    config = json.loads(blob(target, "team/chat", doc["config"]["digest"]))
    base_config = json.loads(blob(target, "library/tiny", base_on_target["config"]["digest"]))
    assert config["model_family"] == base_config["model_family"] == "llama"
    assert config["file_type"] == base_config["file_type"]
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in doc["layers"]]

    # The same base by its full name; a TEMPLATE replaces the base's, no PARAMETER keeps
    # the base's parameters as they were.
    text = f"FROM {target.host}/library/tiny:1\nTEMPLATE {{{{ .System }}}}\n"
    result, _ = push_modelfile(target, text, "team/chat:v2", tmp_path, tmp_path / "none")
    layers = layers_by_type(manifest(target, "team/chat", "v2"))
    assert list(layers) == [mt.OLLAMA_MODEL, mt.OLLAMA_TEMPLATE, mt.OLLAMA_PARAMS]
    assert layers[mt.OLLAMA_PARAMS] == base[mt.OLLAMA_PARAMS]  # re-encoded byte for byte
    assert blob(target, "team/chat", layers[mt.OLLAMA_TEMPLATE]["digest"]) == \
        b"{{ .System }}"


def test_from_another_registry_streams_the_blobs(registries, tiny, tmp_path):
    target, other = registries
    weights = (tiny / "tiny.gguf").read_bytes()
    with client_for(other, tmp_path) as client:
        push(tiny / "Modelfile", parse_reference(f"{other.host}/team/base:1"), client,
             silent(), cards=LocalCards())
    recording = Recording()
    # Small chunks: the weights go up as PATCHes, each fed by a ranged GET of the other.
    result, stats = push_modelfile(target, f"FROM {other.host}/team/base:1\nSYSTEM hi\n",
                                   "copied/model:v1", tmp_path, tmp_path / "none",
                                   recording, chunk_size=4096)
    assert result.layout.base == f"{other.host}/team/base:1"
    assert result.outcomes == {"uploaded": 5}
    assert stats["bytes uploaded"] > len(weights)
    assert len([r for r in recording.requests if r[0] == "PATCH"]) == -(-len(weights) // 4096)
    layers = layers_by_type(manifest(target, "copied/model", "v1"))
    assert blob(target, "copied/model", layers[mt.OLLAMA_MODEL]["digest"]) == weights
    assert blob(target, "copied/model", layers[mt.OLLAMA_TEMPLATE]["digest"]) == \
        TEMPLATE.encode()


# ---------------------------------------------------------------------------- the store


def ollama_store(root: Path, name: tuple[str, ...], layers: list[tuple[str, bytes]],
                 config: dict) -> Path:
    """Write a model into an Ollama store laid out as Ollama does."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(media_type: str, data: bytes) -> dict:
        digest = sha256(data)
        (blobs / digest.replace(":", "-")).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    doc = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
           "config": put(mt.OLLAMA_CONFIG, json.dumps(config).encode()),
           "layers": [put(media_type, data) for media_type, data in layers]}
    path = root.joinpath("manifests", *name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


OLLAMA_CONFIG = {"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
                 "model_type": "2.11K", "file_type": "F32", "renderer": "r1",
                 "architecture": "amd64", "os": "linux"}


def test_the_local_store_comes_first(registries, tiny, base_on_target, tmp_path):
    """tiny:1 is both in the store and on the target: the store's copy is used (as Ollama
    does), its weights mounted from library/tiny since the target holds the same blob."""
    target, _ = registries
    weights = (tiny / "tiny.gguf").read_bytes()
    store = tmp_path / "models"
    ollama_store(store, ("registry.ollama.ai", "library", "tiny", "1"),
                 [(mt.OLLAMA_MODEL, weights), (mt.OLLAMA_TEMPLATE, b"{{ .Local }}")],
                 OLLAMA_CONFIG)
    recording = Recording()
    result, _ = push_modelfile(target, "FROM tiny:1\nPARAMETER num_ctx 256\n",
                               "team/local:v1", tmp_path, store, recording)
    assert result.layout.base == f"tiny:1 in {store}"
    assert recording.uploads(sha256(weights)) == []
    assert result.outcomes == {"mounted": 1, "uploaded": 3}  # template, params, config
    doc = manifest(target, "team/local", "v1")
    layers = layers_by_type(doc)
    assert blob(target, "team/local", layers[mt.OLLAMA_TEMPLATE]["digest"]) == b"{{ .Local }}"
    config = json.loads(blob(target, "team/local", doc["config"]["digest"]))
    assert (config["model_type"], config["renderer"]) == ("2.11K", "r1")


def test_from_the_local_store_sends_its_files(registries, tiny, tmp_path):
    """A model only the store has (a full name, as ``ollama pull HOST/team/m`` keeps it)."""
    target, _ = registries
    weights = (tiny / "tiny.gguf").read_bytes() + b"\0"  # not on the target yet
    store = tmp_path / "models"
    name = ("other.example:5000", "team", "m", "q4")
    ollama_store(store, name, [(mt.OLLAMA_MODEL, weights), (mt.OLLAMA_PARAMS, b'{"top_p":0.9}')],
                 OLLAMA_CONFIG)
    result, stats = push_modelfile(
        target, "FROM other.example:5000/team/m:q4\nRENDERER r2\n", "team/fromstore:v1",
        tmp_path, store)
    assert result.layout.base == f"other.example:5000/team/m:q4 in {store}"
    assert result.outcomes == {"uploaded": 3}
    assert stats["bytes uploaded"] > len(weights)
    doc = manifest(target, "team/fromstore", "v1")
    layers = layers_by_type(doc)
    assert blob(target, "team/fromstore", layers[mt.OLLAMA_MODEL]["digest"]) == weights
    assert blob(target, "team/fromstore", layers[mt.OLLAMA_PARAMS]["digest"]) == \
        go_json({"top_p": 0.9})
    config = json.loads(blob(target, "team/fromstore", doc["config"]["digest"]))
    assert config["renderer"] == "r2"  # the Modelfile's RENDERER wins over the base's

    (store / "blobs" / sha256(weights).replace(":", "-")).unlink()
    with pytest.raises(InputError, match=r"line 1: FROM other\.example:5000/team/m:q4: .* "
                                         r"lacks blob sha256:[0-9a-f]{64} of .* \(run ollama "
                                         r"pull other\.example:5000/team/m:q4\)"):
        push_modelfile(target, "FROM other.example:5000/team/m:q4\n", "team/x:1", tmp_path,
                       store)
    store.joinpath("manifests", *name).write_text('{"layers": "none"}')
    with pytest.raises(ClientError, match=r"line 1: FROM other\.example:5000/team/m:q4: "
                                          r"\S+/q4 is not an image manifest$"):
        push_modelfile(target, "FROM other.example:5000/team/m:q4\n", "team/x:1", tmp_path,
                       store)


# ---------------------------------------------------------------------------- errors


def test_errors_are_one_line_and_say_where_it_looked(registries, tiny, base_on_target,
                                                     tmp_path, monkeypatch):
    target, _ = registries
    store = tmp_path / "models"
    monkeypatch.setenv("ASSAY_RETRIES", "1")

    def error(text: str) -> str:
        modelfile = Path(tempfile.mkdtemp(dir=tmp_path)) / "Modelfile"
        modelfile.write_text(text)
        with client_for(target, tmp_path) as client, pytest.raises(ClientError) as info:
            push(modelfile, parse_reference(f"{target.host}/team/e:1"), client, silent(),
                 cards=LocalCards(), ollama_models=store)
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{modelfile} ")
        return message.removeprefix(f"{modelfile} ")

    assert error("FROM nothere:1\n") == (f"line 1: FROM nothere:1: not found in {store} nor in "
                                         f"{target.host}/library/nothere:1")
    assert error("# base\nFROM ./missing.gguf\n") == "line 2: FROM ./missing.gguf: no such file"
    assert error("FROM Not A Name\n") == ("line 1: FROM Not A Name: no such file, and not a "
                                          "model name ([HOST[:PORT]/][NAMESPACE/]NAME[:TAG])")
    closed = f"127.0.0.1:{free_port()}"
    assert error(f"FROM {closed}/team/m:1\n").startswith(
        f"line 1: FROM {closed}/team/m:1: not found in {store}, and cannot reach registry "
        f"{closed}: connection refused")
    with client_for(target, tmp_path) as client:  # a model, but not in Ollama's layout
        push(tiny / "tiny.gguf", parse_reference(f"{target.host}/team/docker:1"), client,
             silent(), cards=LocalCards(), fmt="docker")
    assert "is not an Ollama GGUF model (its layers are application/vnd.docker.ai.gguf.v3)" \
        in error("FROM team/docker:1\n")


def test_the_cli_says_where_from_came_from(registries, base_on_target, tmp_path, monkeypatch):
    target, _ = registries
    monkeypatch.setenv("ASSAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "models"))
    (tmp_path / "Modelfile").write_text("FROM tiny:1\nSYSTEM Be brief.\n")
    result = CliRunner().invoke(main, ["push", "-q", str(tmp_path / "Modelfile"),
                                       f"{target.host}/team/cli:v1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"pushed {target.host}/team/cli:v1@sha256:")
    assert result.stdout.rstrip().endswith(
        f"blobs: 3 mounted, 2 uploaded; FROM {target.host}/library/tiny:1)")

    (tmp_path / "Modelfile").write_text("FROM gemma3:270m\n")
    result = CliRunner().invoke(main, ["push", "-q", str(tmp_path / "Modelfile"),
                                       f"{target.host}/team/cli:v2"])
    # The root group returns the status (the console script exits with it).
    assert (result.exit_code or result.return_value) == 1, result.output
    assert result.stderr == (f"error: {tmp_path / 'Modelfile'} line 1: FROM gemma3:270m: not "
                             f"found in {tmp_path / 'models'} nor in "
                             f"{target.host}/library/gemma3:270m\n")


def test_a_from_on_another_host_never_gets_the_environments_credentials(tmp_path,
                                                                         monkeypatch):
    """A Modelfile's FROM names a host its author chose: an unbound ASSAY_TOKEN (no
    ASSAY_REGISTRY) goes to the registry pushed to, never to that host."""
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("ASSAY_TOKEN", "assay_pat_secret")
    monkeypatch.delenv("ASSAY_REGISTRY", raising=False)
    target = RegistryClient(Registry("127.0.0.1:9", "http"))
    assert target.auth.credentials is not None  # the user's own target gets them
    with target, BaseModels(target, tmp_path / "models") as bases:
        other = bases._client(Registry("elsewhere.example:5000", "https"))
        assert other is not target
        assert other.auth.credentials is None
