"""The ``assay`` client CLI (push, pull, ls, inspect, rm) against a real ``assay serve``.

End-to-end tests run ``.venv/bin/assay`` as a subprocess, with the real Gemma 3 270M GGUF;
the resume, range and skip tests drive ``client`` in-process through an httpx
transport that records (and can break) requests. The Ollama client is the exact replay of
``tests/support/ollama_replay.py``; oras is the real oras-py client.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from client import mediatypes as mt
from client.blobs import Blob
from client.download import Downloader
from client.errors import IntegrityError
from client.locations import BlobLocations
from client.modelfile import parse_modelfile
from client.progress import silent
from client.pull import pull
from client.push import push
from client.ref import parse_reference
from client.registry_client import RegistryClient
from client.transport import StdlibTransport
from registry.formats.cards import LocalCards
from tests.support.models import GEMMA_DIGEST, GEMMA_SHA256, GEMMA_SIZE, sha256_file
from tests.support.ollama_replay import (
    GEMMA3_TEMPLATE,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_TEMPLATE,
    gemma3_params_layer,
    ollama_config,
    ollama_pull,
    ollama_push,
)
from tests.support.oras_client import oras_client
from tests.support.processes import free_port, start_distribution

pytestmark = pytest.mark.clients

MiB = 1024 * 1024


# ---------------------------------------------------------------------------- helpers


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert the CLI failed with exactly one ``error: ...`` line and no traceback."""
    assert proc.returncode != 0, proc
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def manifest_of(server, name: str, reference: str) -> dict:
    resp = httpx.get(f"{server.url}/v2/{name}/manifests/{reference}",
                     headers={"Accept": mt.MANIFEST_ACCEPT})
    assert resp.status_code == 200, resp.text
    return resp.json()


def blob_json(server, name: str, digest: str) -> dict:
    resp = httpx.get(f"{server.url}/v2/{name}/blobs/{digest}", follow_redirects=True)
    assert resp.status_code == 200, resp.text
    return resp.json()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Recorder(httpx.BaseTransport):
    """Records every request. ``fail_ranged_after=N`` makes every ranged GET after the
    first N raise; ``strip_range`` removes Range headers (the server then answers 200);
    subclasses may override ``inject`` to break a request after it is recorded."""

    def __init__(self, fail_ranged_after: int | None = None, strip_range: bool = False):
        self.inner = StdlibTransport()  # the transport the CLI uses
        self.requests: list[tuple[str, str, dict]] = []
        self.fail_ranged_after = fail_ranged_after
        self.strip_range = strip_range
        self.ranged = 0
        self.lock = threading.Lock()

    def inject(self, request: httpx.Request) -> None:
        pass

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append((request.method, str(request.url), dict(request.headers)))
            if "range" in request.headers:
                self.ranged += 1
                if self.fail_ranged_after is not None and self.ranged > self.fail_ranged_after:
                    raise RuntimeError("injected failure")
        self.inject(request)
        if self.strip_range and "range" in request.headers:
            del request.headers["range"]
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def find(self, method: str, contains: str = "") -> list[tuple[str, str, dict]]:
        return [r for r in self.requests if r[0] == method and contains in r[1]]


def client_for(server, transport: httpx.BaseTransport, cache: Path, **kw) -> RegistryClient:
    ref = parse_reference(f"{server.host_port}/x/y")
    return RegistryClient(ref.registry, transport=transport,
                          locations=BlobLocations(cache / "blob-locations.json"), **kw)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gemma_pushed(assay_server_module, gemma_gguf, cli):
    """Gemma pushed once with ``assay push`` as team/gemma3:270m (Ollama layout)."""
    server = assay_server_module
    proc = cli("push", gemma_gguf, f"{server.host_port}/team/gemma3:270m", "--quiet")
    assert "pushed" in proc.stdout and "@sha256:" in proc.stdout
    return server


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict | None = None):
    """The safetensors format by hand: u64 header length, JSON header, raw data."""
    names = {np.dtype("float16"): "F16", np.dtype("float32"): "F32",
             np.dtype("uint32"): "U32"}
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset, blobs = 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


@pytest.fixture
def safetensors_dir(tmp_path) -> Path:
    """A small Llama-shaped model directory: two shards, config, tokenizer, README, a nested
    file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny-llama"
    (root / "extra").mkdir(parents=True)
    write_safetensors(root / "model-00001-of-00002.safetensors", {
        "model.embed_tokens.weight": rng.standard_normal((300, 64)).astype(np.float16),
        "model.layers.0.mlp.up_proj.weight": rng.standard_normal((128, 64)).astype(np.float16),
    }, {"format": "mlx"})
    write_safetensors(root / "model-00002-of-00002.safetensors", {
        "model.layers.1.mlp.up_proj.weight": rng.standard_normal((128, 64)).astype(np.float16),
        "lm_head.weight": rng.standard_normal((300, 64)).astype(np.float16),
    }, {"format": "mlx"})
    (root / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300,
        "max_position_embeddings": 256, "torch_dtype": "float16"}))
    (root / "tokenizer.json").write_text(json.dumps({
        "version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}}))
    (root / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    (root / "README.md").write_text("# tiny llama\n\nRandom weights for tests.\n")
    (root / "extra" / "notes.json").write_text('{"nested": true}')
    return root


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- round trips


def test_gguf_round_trip(gemma_pushed, cli, tmp_path):
    server = gemma_pushed
    manifest = manifest_of(server, "team/gemma3", "270m")
    assert manifest["mediaType"] == mt.DOCKER_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mt.OLLAMA_MODEL]
    assert manifest["layers"][0]["digest"] == GEMMA_DIGEST
    config = blob_json(server, "team/gemma3", manifest["config"]["digest"])
    assert manifest["config"]["mediaType"] == mt.OLLAMA_CONFIG
    assert {k: config[k] for k in ("model_format", "model_family", "model_families",
                                   "model_type", "file_type")} == {
        "model_format": "gguf", "model_family": "gemma3", "model_families": ["gemma3"],
        "model_type": "268.10M", "file_type": "Q4_K_M"}
    assert config["rootfs"] == {"type": "layers", "diff_ids": [GEMMA_DIGEST]}

    proc = cli("pull", f"{server.host_port}/team/gemma3:270m", "-o", tmp_path / "out", "-q")
    pulled = tmp_path / "out" / "gemma3-270m.gguf"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gemma3-270m.gguf"]
    assert pulled.stat().st_size == GEMMA_SIZE and sha256_file(pulled) == GEMMA_SHA256
    assert "gemma3-270m.gguf" in proc.stdout

    # Without -o a single weights file lands in the current directory.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cli("pull", f"{server.host_port}/team/gemma3:270m", cwd=cwd)
    assert sha256_file(cwd / "gemma3-270m.gguf") == GEMMA_SHA256
    assert not list(cwd.glob("*.part*"))


def test_ls_inspect_rm(gemma_pushed, gemma_gguf, cli):
    server = gemma_pushed
    host = server.host_port
    assert "team/gemma3" in cli("ls", host).stdout.split()

    listing = cli("ls", f"{host}/team/gemma3").stdout
    row = next(line for line in listing.splitlines() if line.startswith("270m"))
    for word in ("gguf", "gemma3", "Q4_K_M", "253.1 MB"):
        assert word in row, listing

    text = cli("inspect", f"{host}/team/gemma3:270m").stdout
    for word in ("gemma3", "268.10M", "Q4_K_M", "32768", mt.OLLAMA_MODEL, "logical", "unique"):
        assert word in text, text
    info = json.loads(cli("inspect", "--json", f"{host}/team/gemma3:270m").stdout)
    assert info["model"]["architecture"] == "gemma3"
    assert info["model"]["quantization"] == "Q4_K_M"
    assert info["size"]["logical"] >= GEMMA_SIZE and info["size"]["unique"] is not None
    assert info["kind"] == "ollama" and info["assay"] is True

    # rm: a second tag goes, the first stays; @digest deletes the manifest.
    cli("push", gemma_gguf, f"{host}/team/rmtest:a", "-q")
    cli("push", gemma_gguf, f"{host}/team/rmtest:b", "-q")
    assert "untagged" in cli("rm", f"{host}/team/rmtest:a").stdout
    tags = cli("ls", f"{host}/team/rmtest").stdout
    assert "b " in tags and not any(line.startswith("a ") for line in tags.splitlines())
    digest = info_digest(cli, f"{host}/team/rmtest:b")
    assert "deleted" in cli("rm", f"{host}/team/rmtest@{digest}").stdout
    gone = one_line_error(cli("inspect", f"{host}/team/rmtest:b", ok=False))
    assert "not in repository" in gone or "unknown" in gone.lower()


def info_digest(cli, ref: str) -> str:
    return json.loads(cli("inspect", "--json", ref).stdout)["digest"]


MODELFILE = '''# a chat variant of Gemma 3
FROM ./weights/gemma.gguf
TEMPLATE """{{- range .Messages }}<start_of_turn>{{ .Role }}
{{ .Content }}<end_of_turn>
{{ end }}<start_of_turn>model
"""
system """You are a terse assistant.
Answer in one sentence."""
PARAMETER stop <end_of_turn>
PARAMETER stop "<eos>"
PARAMETER temperature 0.7
PARAMETER top_k 40
PARAMETER num_ctx 4096
MESSAGE user Is the sky blue?
MESSAGE assistant Yes.
ADAPTER ./weights/lora.gguf
LICENSE """Gemma Terms of Use"""
'''


def test_modelfile_round_trip(gemma_pushed, cli, gemma_gguf, tmp_path):
    server = gemma_pushed
    src = tmp_path / "src"
    (src / "weights").mkdir(parents=True)
    (src / "weights" / "gemma.gguf").symlink_to(gemma_gguf)
    adapter = os.urandom(4096)
    (src / "weights" / "lora.gguf").write_bytes(adapter)
    (src / "Modelfile").write_text(MODELFILE)
    proc = cli("push", src / "Modelfile", f"{server.host_port}/team/gemma3-chat:v1", "-q")
    assert "already present" in proc.stdout or "mounted" in proc.stdout  # the GGUF is shared

    manifest = manifest_of(server, "team/gemma3-chat", "v1")
    by_type = {layer["mediaType"]: layer for layer in manifest["layers"]}
    assert list(by_type) == [mt.OLLAMA_MODEL, mt.OLLAMA_ADAPTER, mt.OLLAMA_TEMPLATE,
                             mt.OLLAMA_SYSTEM, mt.OLLAMA_LICENSE, mt.OLLAMA_PARAMS,
                             mt.OLLAMA_MESSAGES]  # ollama create's order
    params = blob_json(server, "team/gemma3-chat", by_type[mt.OLLAMA_PARAMS]["digest"])
    assert params == {"num_ctx": 4096, "stop": ["<end_of_turn>", "<eos>"], "temperature": 0.7,
                      "top_k": 40}
    messages = blob_json(server, "team/gemma3-chat", by_type[mt.OLLAMA_MESSAGES]["digest"])
    assert messages == [{"role": "user", "content": "Is the sky blue?"},
                        {"role": "assistant", "content": "Yes."}]

    out = tmp_path / "out"
    cli("pull", f"{server.host_port}/team/gemma3-chat:v1", "-o", out, "-q")
    assert sorted(p.name for p in out.iterdir()) == [
        "Modelfile", "gemma3-chat-v1-adapter.gguf", "gemma3-chat-v1.gguf"]
    assert sha256_file(out / "gemma3-chat-v1.gguf") == GEMMA_SHA256
    assert (out / "gemma3-chat-v1-adapter.gguf").read_bytes() == adapter
    original = parse_modelfile(MODELFILE)
    text = (out / "Modelfile").read_text()
    pulled = parse_modelfile(text)
    assert pulled.model == "./gemma3-chat-v1.gguf"
    assert pulled.adapters == ["./gemma3-chat-v1-adapter.gguf"]
    for field in ("template", "system", "parameters", "messages", "licenses"):
        assert getattr(pulled, field) == getattr(original, field), (field, text)

    # The pulled directory pushes again as the same manifest.
    again = cli("push", out / "Modelfile", f"{server.host_port}/team/gemma3-chat:v2", "-q")
    assert again.stdout.split("@")[1].split()[0] == info_digest(
        cli, f"{server.host_port}/team/gemma3-chat:v1")


def test_docker_format_round_trip(gemma_pushed, cli, gemma_gguf, tmp_path):
    server = gemma_pushed
    cli("push", "--format", "docker", gemma_gguf, f"{server.host_port}/ai/gemma3:docker", "-q")
    manifest = manifest_of(server, "ai/gemma3", "docker")
    assert manifest["mediaType"] == mt.OCI_MANIFEST
    assert manifest["config"]["mediaType"] == mt.DOCKER_AI_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mt.DOCKER_AI_GGUF]
    config = blob_json(server, "ai/gemma3", manifest["config"]["digest"])
    assert config["config"]["format"] == "gguf"
    assert config["config"]["quantization"] == "Q4_K_M"
    assert config["config"]["architecture"] == "gemma3"

    out = tmp_path / "out"
    cli("pull", f"{server.host_port}/ai/gemma3:docker", "-o", out, "-q")
    assert [p.name for p in out.iterdir()] == [gemma_gguf.name]  # named by its annotation
    assert sha256_file(out / gemma_gguf.name) == GEMMA_SHA256

    cli("push", "--format", "modelpack", gemma_gguf, f"{server.host_port}/ai/gemma3:mp", "-q")
    manifest = manifest_of(server, "ai/gemma3", "mp")
    assert manifest["artifactType"] == mt.MODELPACK_ARTIFACT
    assert manifest["layers"][0]["mediaType"] == mt.MODELPACK_WEIGHT


def test_safetensors_directory_round_trip(assay_server_module, cli, safetensors_dir, tmp_path):
    server = assay_server_module
    host = server.host_port
    cli("push", safetensors_dir, f"{host}/mlx/tiny-llama:v1", "-q")
    manifest = manifest_of(server, "mlx/tiny-llama", "v1")
    assert manifest["mediaType"] == mt.OCI_MANIFEST
    assert manifest["artifactType"] == mt.MODELPACK_ARTIFACT
    assert manifest["config"]["mediaType"] == mt.MODELPACK_CONFIG
    layers = {layer["annotations"][mt.FILEPATH]: layer for layer in manifest["layers"]}
    assert set(layers) == set(tree(safetensors_dir))
    assert layers["model-00001-of-00002.safetensors"]["mediaType"] == mt.MODELPACK_WEIGHT
    assert layers["config.json"]["mediaType"] == mt.MODELPACK_WEIGHT_CONFIG
    assert layers["tokenizer.json"]["mediaType"] == mt.MODELPACK_WEIGHT_CONFIG
    assert layers["README.md"]["mediaType"] == mt.MODELPACK_DOC
    assert layers["extra/notes.json"]["annotations"][mt.TITLE] == "notes.json"
    config = blob_json(server, "mlx/tiny-llama", manifest["config"]["digest"])
    assert config["config"]["format"] == "safetensors"
    assert config["config"]["architecture"] == "LlamaForCausalLM"
    assert config["config"]["precision"] == "fp16"
    assert config["config"]["paramSize"] == "55K"  # 2 x 300 x 64 + 2 x 128 x 64 = 54,784
    assert config["modelfs"]["diffIds"] == [layer["digest"] for layer in manifest["layers"]]

    out = tmp_path / "out"
    cli("pull", f"{host}/mlx/tiny-llama:v1", "-o", out, "-q")
    assert tree(out) == tree(safetensors_dir)

    # Without -o a directory model lands in ./NAME
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cli("pull", f"{host}/mlx/tiny-llama:v1", cwd=cwd, env={"ASSAY_RETRIES": "1"})
    assert tree(cwd / "tiny-llama-v1") == tree(safetensors_dir)

    # --format docker for a directory
    cli("push", "--format", "docker", safetensors_dir, f"{host}/mlx/tiny-llama:docker", "-q")
    manifest = manifest_of(server, "mlx/tiny-llama", "docker")
    kinds = {layer["annotations"][mt.FILEPATH]: layer["mediaType"]
             for layer in manifest["layers"]}
    assert kinds["model-00002-of-00002.safetensors"] == mt.DOCKER_AI_SAFETENSORS
    assert kinds["config.json"] == mt.DOCKER_AI_FILE
    out = tmp_path / "out-docker"
    cli("pull", f"{host}/mlx/tiny-llama:docker", "-o", out, "-q")
    assert tree(out) == tree(safetensors_dir)


# ---------------------------------------------------------------------------- other clients


def test_ollama_pulls_what_assay_pushed(gemma_pushed, tmp_path):
    blobs = ollama_pull(gemma_pushed.url, "team/gemma3", "270m", tmp_path / "ollama")
    assert sha256_file(blobs[GEMMA_DIGEST]) == GEMMA_SHA256
    manifest = json.loads((tmp_path / "ollama" / "manifest.json").read_bytes())
    config = json.loads(blobs[manifest["config"]["digest"]].read_bytes())
    assert config["model_family"] == "gemma3" and config["file_type"] == "Q4_K_M"


@pytest.fixture(scope="module")
def ollama_pushed(assay_server_module, gemma_gguf):
    """Gemma as ``ollama push`` sends it (template and params as Ollama writes them), as
    library/gemma3:replayed."""
    layers = [(MEDIA_MODEL, gemma_gguf), (MEDIA_TEMPLATE, GEMMA3_TEMPLATE),
              (MEDIA_PARAMS, gemma3_params_layer())]
    ollama_push(assay_server_module.url, "library/gemma3", "replayed", layers, ollama_config())
    return assay_server_module


def test_assay_pulls_what_ollama_pushed(ollama_pushed, cli, tmp_path):
    server = ollama_pushed
    out = tmp_path / "out"
    cli("pull", f"{server.host_port}/library/gemma3:replayed", "-o", out, "-q")
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "gemma3-replayed.gguf"]
    assert sha256_file(out / "gemma3-replayed.gguf") == GEMMA_SHA256
    modelfile = parse_modelfile((out / "Modelfile").read_text())
    assert modelfile.template == GEMMA3_TEMPLATE.decode()
    assert modelfile.parameters == {"stop": ["<end_of_turn>"], "temperature": 1, "top_k": 64,
                                    "top_p": 0.95}
    # ... and assay push of that Modelfile gives Ollama's own params layer, byte for byte.
    cli("push", out / "Modelfile", f"{server.host_port}/library/gemma3:again", "-q")
    ours = manifest_of(server, "library/gemma3", "again")["layers"]
    theirs = manifest_of(server, "library/gemma3", "replayed")["layers"]
    assert [layer["digest"] for layer in ours] == [layer["digest"] for layer in theirs]


def test_modelfile_from_a_model_on_the_registry(ollama_pushed, cli, tmp_path):
    """``FROM gemma3:replayed`` is library/gemma3:replayed of the registry pushed to: its
    weights, template and (unchanged, re-encoded byte for byte) params are mounted."""
    server = ollama_pushed
    (tmp_path / "Modelfile").write_text("FROM gemma3:replayed\nSYSTEM You are terse.\n")
    proc = cli("push", tmp_path / "Modelfile", f"{server.host_port}/team/gemma3-terse:v1",
               "-q", env={"OLLAMA_MODELS": str(tmp_path / "no-ollama")})
    assert proc.stdout.rstrip().endswith(
        f"blobs: 3 mounted, 2 uploaded; FROM {server.host_port}/library/gemma3:replayed)")
    ours = manifest_of(server, "team/gemma3-terse", "v1")["layers"]
    theirs = manifest_of(server, "library/gemma3", "replayed")["layers"]
    assert ours[:2] == theirs[:2] and ours[3] == theirs[2]  # system goes before params
    assert ours[2]["mediaType"] == mt.OLLAMA_SYSTEM

    (tmp_path / "Modelfile").write_text("FROM gemma3:never-pushed\n")
    line = one_line_error(cli("push", tmp_path / "Modelfile", f"{server.host_port}/team/x:1",
                              ok=False, env={"OLLAMA_MODELS": str(tmp_path / "no-ollama")}))
    assert line == (f"error: {tmp_path / 'Modelfile'} line 1: FROM gemma3:never-pushed: not "
                    f"found in {tmp_path / 'no-ollama'} nor in "
                    f"{server.host_port}/library/gemma3:never-pushed")


def test_pull_oras_artifact(assay_server_module, cli, tmp_path):
    server = assay_server_module
    src = tmp_path / "src"
    src.mkdir()
    files = {"weights.bin": os.urandom(3 * MiB + 7), "README.md": b"# acme\n"}
    for name, data in files.items():
        (src / name).write_bytes(data)
    config = tmp_path / "config.json"
    config.write_text('{"architecture": "acme"}')
    response = oras_client(server.host_port, "application/vnd.acme.model.v1").push(
        target=f"{server.host_port}/acme/model:v1",
        files=[f"{src / 'weights.bin'}:application/vnd.acme.model.weights.v1",
               str(src / "README.md")],
        manifest_config=f"{config}:application/vnd.acme.model.config.v1+json",
        disable_path_validation=True, quiet=True)
    assert response.status_code == 201, response.text
    out = tmp_path / "out"
    cli("pull", f"{server.host_port}/acme/model:v1", "-o", out, "-q")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    text = cli("inspect", f"{server.host_port}/acme/model:v1").stdout
    assert "application/vnd.acme.model.weights.v1" in text


def test_against_cncf_distribution(gemma_gguf, safetensors_dir, cli, tmp_path):
    """Plain OCI: push and pull through Distribution 2.8 (no REST API, its own Locations)."""
    registry = start_distribution(tmp_path / "distribution")
    try:
        host = registry.host_port
        cli("push", safetensors_dir, f"{host}/mlx/tiny:v1", "-q")
        cli("pull", f"{host}/mlx/tiny:v1", "-o", tmp_path / "dir", "-q")
        assert tree(tmp_path / "dir") == tree(safetensors_dir)
        cli("push", gemma_gguf, f"{host}/team/gemma3:270m", "-q")
        proc = cli("push", gemma_gguf, f"{host}/other/gemma3:270m", "-q")
        assert "mounted" in proc.stdout  # from= the repository the cache remembers
        cli("pull", f"{host}/other/gemma3:270m", "-o", tmp_path / "gguf", "-q")
        assert sha256_file(tmp_path / "gguf" / "gemma3-270m.gguf") == GEMMA_SHA256
        text = cli("inspect", f"{host}/team/gemma3:270m").stdout
        assert "not an assay registry" in text and "Q4_K_M" in text
        assert "team/gemma3" in cli("ls", host).stdout
        assert "270m" in cli("ls", f"{host}/team/gemma3").stdout
        refused = cli("rm", f"{host}/team/gemma3", "--all", "--yes", ok=False)
        assert refused.returncode == 1 and refused.stderr == (
            f"error: {host} is not an assay registry: it has no API to delete a whole "
            f"repository; delete each tag with assay rm {host}/team/gemma3:TAG\n")
        assert "270m" in cli("ls", f"{host}/team/gemma3").stdout  # nothing deleted
    finally:
        registry.stop()


# ---------------------------------------------------------------------------- in-process


def test_interrupted_pull_resumes(gemma_pushed, tmp_path):
    server = gemma_pushed
    ref = parse_reference(f"{server.host_port}/team/gemma3:270m")
    part_size = 8 * MiB
    parts = -(-GEMMA_SIZE // part_size)
    out = tmp_path / "out"
    target = out / "gemma3-270m.gguf"
    sidecar = out / "gemma3-270m.gguf.part.json"

    broken = Recorder(fail_ranged_after=10)
    with client_for(server, broken, tmp_path) as client, \
            pytest.raises(RuntimeError, match="injected"):
        pull(ref, client, silent(), output=out, part_size=part_size, workers=4)
    assert not target.exists()
    done = json.loads(sidecar.read_text())["done"]
    assert 1 <= len(done) <= 10, done

    again = Recorder()
    with client_for(server, again, tmp_path) as client:
        result = pull(ref, client, silent(), output=out, part_size=part_size, workers=4)
    ranged = [r for r in again.find("GET", GEMMA_DIGEST) if "range" in r[2]]
    assert len(ranged) == parts - len(done)
    fetched = {r[2]["range"] for r in ranged}
    finished = {f"bytes={i * part_size}-{min((i + 1) * part_size, GEMMA_SIZE) - 1}"
                for i in done}
    assert not fetched & finished  # no finished part was fetched again
    assert result.outcomes == {"resumed": 1}
    assert sha256_file(target) == GEMMA_SHA256
    assert not sidecar.exists() and not (out / "gemma3-270m.gguf.part").exists()

    # A third pull finds the file complete and fetches nothing.
    idle = Recorder()
    with client_for(server, idle, tmp_path) as client:
        result = pull(ref, client, silent(), output=out, part_size=part_size)
    assert result.outcomes == {"present": 1} and not idle.find("GET", "/blobs/")


def test_server_ignoring_range_does_not_corrupt(gemma_pushed, tmp_path):
    server = gemma_pushed
    recorder = Recorder(strip_range=True)  # every GET reaches the server without Range: 200
    with client_for(server, recorder, tmp_path) as client:
        ref = parse_reference(f"{server.host_port}/team/gemma3:270m")
        pull(ref, client, silent(), output=tmp_path, part_size=16 * MiB)
        assert client.stats["range ignored"] == 1
    assert sha256_file(tmp_path / "gemma3-270m.gguf") == GEMMA_SHA256


def test_digest_mismatch_is_refused(gemma_pushed, tmp_path):
    """A blob whose bytes do not hash to the digest is never renamed into place."""
    server = gemma_pushed

    class Corrupting(Recorder):
        def handle_request(self, request):
            response = super().handle_request(request)
            if request.method == "GET" and "/blobs/" in str(request.url):
                body = bytearray(response.read())
                if body:
                    body[len(body) // 2] ^= 0xFF
                return httpx.Response(response.status_code, headers=response.headers,
                                      content=bytes(body))
            return response

    with client_for(server, Corrupting(), tmp_path) as client:
        downloader = Downloader(client, silent(), part_size=64 * MiB)
        config = manifest_of(server, "team/gemma3", "270m")["config"]
        with pytest.raises(IntegrityError, match="hash to"):
            downloader.fetch("team/gemma3", config["digest"], config["size"],
                             tmp_path / "config.json")
    assert not (tmp_path / "config.json").exists()
    assert not (tmp_path / "config.json.part").exists()


def test_second_push_skips_and_mounts(gemma_pushed, gemma_gguf, tmp_path):
    server = gemma_pushed
    host = server.host_port
    first = Recorder()
    with client_for(server, first, tmp_path, chunk_size=32 * MiB) as client:
        result = push(gemma_gguf, parse_reference(f"{host}/skip/gemma3:v1"), client, silent(),
                      cards=LocalCards())
    # Both blobs are stored for team/gemma3 but this client's cache does not know it: the
    # blind mount (no from=) no longer links a blob the target repository does not have
    # (it would leak blobs across namespaces), so it opens the session they go up in.
    assert result.outcomes == {"uploaded": 2}, result.outcomes
    assert len(first.find("POST", "/blobs/uploads/")) == 2  # one blind mount per blob

    second = Recorder()
    with client_for(server, second, tmp_path) as client:
        result = push(gemma_gguf, parse_reference(f"{host}/skip/gemma3:v1"), client, silent(),
                      cards=LocalCards())
    assert result.outcomes == {"already present": 2}
    assert not second.find("POST", "/blobs/") and not second.find("PATCH")
    assert [r[1] for r in second.find("PUT")] == [f"{server.url}/v2/skip/gemma3/manifests/v1"]

    third = Recorder()
    with client_for(server, third, tmp_path) as client:
        result = push(gemma_gguf, parse_reference(f"{host}/skip2/gemma3:v1"), client, silent(),
                      cards=LocalCards())
    assert result.outcomes == {"mounted": 2}
    posts = third.find("POST", "/blobs/uploads/")
    assert posts and all("from=skip%2Fgemma3" in url for _, url, _ in posts), posts
    assert not third.find("PATCH") and len(third.find("PUT")) == 1


def test_chunked_upload_with_a_retried_chunk(assay_server_module, tmp_path):
    """A PATCH that fails in transit is resumed from the offset the registry reports."""
    server = assay_server_module
    data = os.urandom(5 * MiB + 3)
    path = tmp_path / "blob.gguf"
    path.write_bytes(data)

    class FlakyPatch(Recorder):
        failed = False

        def inject(self, request):
            if request.method == "PATCH" and not self.failed and \
                    request.headers.get("content-range", "").startswith(f"{MiB}-"):
                self.failed = True
                raise httpx.WriteError("connection reset (injected)")

    blob = Blob.from_file("application/octet-stream", path)
    flaky = FlakyPatch()
    with client_for(server, flaky, tmp_path, chunk_size=MiB, backoff=0.01) as client:
        assert client.push_blob("chunks/test", blob) == "uploaded"
    assert flaky.failed
    assert len(flaky.find("PATCH")) == 7  # 6 chunks, one of them twice
    assert len(flaky.find("GET", "/blobs/uploads/")) == 1  # the offset query
    resp = httpx.get(f"{server.url}/v2/chunks/test/blobs/{blob.digest}", follow_redirects=True)
    assert resp.content == data


# ---------------------------------------------------------------------------- bad inputs


def test_bad_inputs_are_one_line_errors(assay_server_module, cli, gemma_gguf, tmp_path):
    host = assay_server_module.host_port
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a model\n")
    assert "is not a model" in one_line_error(cli("push", text, f"{host}/bad/x:1", ok=False))

    truncated = tmp_path / "truncated.gguf"
    with open(gemma_gguf, "rb") as f:
        truncated.write_bytes(f.read(1 * MiB))
    line = one_line_error(cli("push", truncated, f"{host}/bad/x:1", ok=False))
    assert "truncated" in line and "GGUF" in line

    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(os.urandom(4096))
    assert "not a readable GGUF" in one_line_error(
        cli("push", garbage, f"{host}/bad/x:1", ok=False))

    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {gemma_gguf}\nPARAMETER temperature 0.5\nSYSTEM\nBOGUS x\n")
    line = one_line_error(cli("push", modelfile, f"{host}/bad/x:1", ok=False))
    assert "line 3" in line and "SYSTEM" in line
    modelfile.write_text(f"FROM {gemma_gguf}\nTEMPLATE \"\"\"never closed\n")
    assert "line 2" in one_line_error(cli("push", modelfile, f"{host}/bad/x:1", ok=False))
    modelfile.write_text("FROM ./missing.gguf\n")
    line = one_line_error(cli("push", modelfile, f"{host}/bad/x:1", ok=False))
    assert "line 1" in line and "no such file" in line

    missing = tmp_path / "nope.gguf"
    assert "no such file" in one_line_error(cli("push", missing, f"{host}/bad/x:1", ok=False))

    line = one_line_error(cli("push", gemma_gguf, "nonexistent.invalid/bad/x:1", ok=False))
    assert "nonexistent.invalid" in line and "unknown host" in line
    closed = f"127.0.0.1:{free_port()}"
    line = one_line_error(cli("pull", f"{closed}/bad/x:1", ok=False,
                              env={"ASSAY_RETRIES": "1"}))
    assert "connection refused" in line

    for ref in ("127.0.0.1/Upper/x", "127.0.0.1:5000", "127.0.0.1:5000/x:bad:tag",
                "127.0.0.1:5000/x@sha256:123"):
        assert "invalid reference" in one_line_error(cli("pull", ref, ok=False))
    assert "--format" in one_line_error(
        cli("push", "--format", "modelpack", modelfile, f"{host}/bad/x:1", ok=False))

    line = one_line_error(cli("pull", f"{host}/bad/never-pushed:1", ok=False))
    assert "404" in line
    line = one_line_error(cli("inspect", f"{host}/team/none:1", ok=False))
    assert "404" in line
