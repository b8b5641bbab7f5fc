"""Models through the ``assay`` CLI against a real ``assay serve``: deduplication that shows
on disk, MLX model directories round-tripping byte for byte, and the pulled MLX model
loading and generating with ``mlx_lm``.

Every command is the real ``.venv/bin/assay`` run as a subprocess; sizes are read from the
server's data directory and from the REST API (``/api/v1/storage`` and
``/api/v1/repositories/<name>/tags/<tag>``).
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import httpx
import pytest

from client import mediatypes as mt
from client.modelfile import parse_modelfile
from client.show import human_size
from tests.support.models import GEMMA_SHA256, GEMMA_SIZE, sha256_file

pytestmark = pytest.mark.clients

VARIANTS = 10
MiB = 1024 * 1024


# ---------------------------------------------------------------------------- helpers


def rest(server, path: str) -> dict:
    resp = httpx.get(f"{server.url}/api/v1{path}", timeout=30)
    assert resp.status_code == 200, f"GET /api/v1{path}: {resp.status_code} {resp.text}"
    return resp.json()


def data_dir(server) -> Path:
    """``start_assay`` writes its log into the data directory it was given."""
    root = server.log_path.parent
    assert (root / "storage" / "blobs").is_dir(), sorted(p.name for p in root.iterdir())
    return root


def stored_blobs(server) -> dict[Path, int]:
    """Every committed blob file under ``<data-dir>/storage/blobs`` and its size."""
    base = data_dir(server) / "storage" / "blobs"
    return {p: p.stat().st_size for p in base.rglob("*") if p.is_file()}


def safetensors_elements(path: Path) -> int:
    """Elements of every tensor in a safetensors file, read from its header by hand."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- deduplication


def variant_system(i: int) -> str:
    return f"You are assistant number {i}.\nAnswer every question in exactly {i + 1} words."


def variant_modelfile(i: int) -> str:
    text = f'FROM ../weights/gemma.gguf\nSYSTEM """{variant_system(i)}"""\n'
    text += f"PARAMETER temperature {0.1 * (i + 1):.1f}\n"
    if i % 2:
        text += f"PARAMETER top_k {10 * i}\n"
    if i % 3 == 0:
        text += f"PARAMETER num_ctx {1024 * (i + 1)}\n"
    return text


@pytest.fixture
def variant_dirs(tmp_path, gemma_gguf) -> list[Path]:
    """Ten Modelfile directories whose FROM is one hard link to the cached Gemma GGUF."""
    weights = tmp_path / "weights"
    weights.mkdir()
    try:
        os.link(gemma_gguf, weights / "gemma.gguf")
    except OSError:  # another filesystem: point at the fixture itself
        (weights / "gemma.gguf").symlink_to(gemma_gguf)
    dirs = []
    for i in range(VARIANTS):
        d = tmp_path / f"variant-{i}"
        d.mkdir()
        (d / "Modelfile").write_text(variant_modelfile(i))
        dirs.append(d)
    assert len({(d / "Modelfile").read_text() for d in dirs}) == VARIANTS
    return dirs


def test_ten_modelfile_variants_store_the_weights_once(assay_server, cli, variant_dirs,
                                                      tmp_path):
    server = assay_server
    host = server.host_port
    digests = set()
    for i, d in enumerate(variant_dirs):
        proc = cli("push", d / "Modelfile", f"{host}/team/variant-{i}:v1", "-q")
        assert "@sha256:" in proc.stdout, proc.stdout
        digests.add(proc.stdout.split("@")[1].split()[0])
    assert len(digests) == VARIANTS  # ten different manifests

    # On disk: the weights once, and only one blob of the GGUF's size.
    blobs = stored_blobs(server)
    on_disk = sum(blobs.values())
    assert GEMMA_SIZE <= on_disk < 1.05 * GEMMA_SIZE, (on_disk, GEMMA_SIZE)
    gguf_sized = [p for p, size in blobs.items() if size == GEMMA_SIZE]
    assert len(gguf_sized) == 1, gguf_sized
    assert gguf_sized[0].name == GEMMA_SHA256

    # REST: logical counts every manifest's blobs, stored counts each blob once.
    storage = rest(server, "/storage")
    assert storage["manifests"] == VARIANTS, storage
    assert storage["logical_bytes"] >= VARIANTS * GEMMA_SIZE, storage
    assert GEMMA_SIZE <= storage["stored_bytes"] < 1.05 * GEMMA_SIZE, storage
    assert storage["stored_bytes"] == on_disk, (storage, on_disk)
    assert storage["blobs"] == len(blobs), (storage, len(blobs))

    # inspect: logical vs. unique size of one variant.
    ref = f"{host}/team/variant-3:v1"
    info = json.loads(cli("inspect", "--json", ref).stdout)
    logical, unique = info["size"]["logical"], info["size"]["unique"]
    assert logical >= GEMMA_SIZE, info["size"]
    assert unique is not None and 0 < unique < GEMMA_SIZE, info["size"]
    assert unique < MiB, info["size"]  # only the variant's own small layers and config
    text = cli("inspect", ref).stdout
    size_line = next((line for line in text.splitlines() if line.strip().startswith("size")),
                     None)
    assert size_line is not None, text
    assert f"{human_size(logical)} logical" in size_line, text
    assert f"{human_size(unique)} unique" in size_line, text
    assert rest(server, "/repositories/team/variant-3/tags/v1")["size"] == info["size"]

    # Two variants pull back: the same GGUF bytes, each with its own SYSTEM.
    for i in (0, 7):
        out = tmp_path / f"pulled-{i}"
        cli("pull", f"{host}/team/variant-{i}:v1", "-o", out, "-q")
        ggufs = list(out.glob("*.gguf"))
        assert len(ggufs) == 1, sorted(p.name for p in out.iterdir())
        assert ggufs[0].stat().st_size == GEMMA_SIZE and sha256_file(ggufs[0]) == GEMMA_SHA256
        text = (out / "Modelfile").read_text()
        pulled = parse_modelfile(text)
        assert pulled.system == variant_system(i), text
        assert pulled.parameters == parse_modelfile(variant_modelfile(i)).parameters, text
        others = [variant_system(j) for j in range(VARIANTS) if j != i]
        assert not any(other in text for other in others), text


# ---------------------------------------------------------------------------- MLX


MLX_MODELS = {"plain": "mlx/llama:v1", "quantized": "mlx/llama-4bit:v1",
              "sharded": "mlx/llama-sharded:v1"}


@pytest.fixture(scope="module")
def mlx_pushed(assay_server_module, cli, mlx_model_dir, mlx_model_dir_quantized,
               mlx_model_dir_sharded):
    """The three generated MLX directories pushed with ``assay push``; returns their
    sources by key of ``MLX_MODELS``."""
    server = assay_server_module
    sources = {"plain": mlx_model_dir, "quantized": mlx_model_dir_quantized,
               "sharded": mlx_model_dir_sharded}
    for key, name in MLX_MODELS.items():
        proc = cli("push", sources[key], f"{server.host_port}/{name}", "-q")
        assert "@sha256:" in proc.stdout, proc.stdout
    return server, sources


def card(server, name_tag: str) -> dict:
    name, tag = name_tag.rsplit(":", 1)
    body = rest(server, f"/repositories/{name}/tags/{tag}")
    assert body["model"] is not None, body
    assert body["model"]["error"] is None, body["model"]
    return body["model"]


def pull_mlx(server, cli, key: str, out: Path) -> Path:
    cli("pull", f"{server.host_port}/{MLX_MODELS[key]}", "-o", out, "-q")
    return out


def test_mlx_directories_round_trip(mlx_pushed, cli, tmp_path):
    server, sources = mlx_pushed
    for key, source in sources.items():
        out = pull_mlx(server, cli, key, tmp_path / key)
        original = tree(source)
        assert "config.json" in original and "tokenizer.json" in original
        assert tree(out) == original, key
    shards = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
              "model.safetensors.index.json"}
    assert shards <= set(tree(tmp_path / "sharded"))

    plain = card(server, MLX_MODELS["plain"])
    assert plain["format"] == "safetensors", plain
    assert plain["architecture"] == "LlamaForCausalLM", plain
    assert isinstance(plain["parameter_count"], int) and plain["parameter_count"] > 0, plain
    # Unquantized bfloat16: every element of every tensor is a parameter.
    assert plain["parameter_count"] == safetensors_elements(
        sources["plain"] / "model.safetensors"), plain
    assert plain["quantization_bits"] is None, plain

    quantized = card(server, MLX_MODELS["quantized"])
    assert quantized["format"] == "safetensors", quantized
    assert quantized["architecture"] == "LlamaForCausalLM", quantized
    assert quantized["quantization_bits"] == 4, quantized
    assert quantized["quantization_group_size"] == 32, quantized
    assert quantized["parameter_count"] == plain["parameter_count"], (quantized, plain)

    sharded = card(server, MLX_MODELS["sharded"])
    assert sharded["format"] == "safetensors", sharded
    assert sharded["architecture"] == "LlamaForCausalLM", sharded
    assert sharded["parameter_count"] == plain["parameter_count"], (sharded, plain)


def test_pulled_mlx_model_loads_and_generates(mlx_pushed, cli, tmp_path):
    from mlx_lm import generate, load

    server, sources = mlx_pushed
    prompt = "hello world, the registry"
    for key in ("plain", "quantized"):
        out = pull_mlx(server, cli, key, tmp_path / key)
        model, tokenizer = load(str(out))
        text = generate(model, tokenizer, prompt, max_tokens=8)
        assert isinstance(text, str) and text.strip(), (key, text)
        # Greedy decoding is deterministic: the pulled model is the pushed model.
        model, tokenizer = load(str(sources[key]))
        assert generate(model, tokenizer, prompt, max_tokens=8) == text, key


def test_mlx_inspect_artifact_type(mlx_pushed, cli):
    server, _ = mlx_pushed
    ref = f"{server.host_port}/{MLX_MODELS['plain']}"
    info = json.loads(cli("inspect", "--json", ref).stdout)
    assert info["artifactType"] == "application/vnd.cncf.model.manifest.v1+json", info
    assert info["artifactType"] == mt.MODELPACK_ARTIFACT
    assert info["mediaType"] == mt.OCI_MANIFEST, info
    assert info["model"]["format"] == "safetensors", info["model"]
    paths = {layer["annotations"][mt.FILEPATH] for layer in info["layers"]}
    assert "model.safetensors" in paths and "config.json" in paths, paths
    assert "application/vnd.cncf.model.manifest.v1+json" in cli("inspect", ref).stdout

