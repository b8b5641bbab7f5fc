"""The Hugging Face Hub's own clients against a real ``assay serve`` with ``HF_ENDPOINT`` set:
``huggingface_hub`` (model_info, list_repo_files, snapshot_download, hf_hub_download,
create_repo, upload_folder, upload_file, delete_file, branches and tags), the ``hf`` CLI,
transformers' AutoConfig / AutoTokenizer, ``mlx_lm.load`` + generate and llama-cpp-python's
``Llama.from_pretrained``, each in its own process with a clean environment
(tests/support/hf_clients.py). docs/huggingface.md states only what these show.

Two servers, one per auth mode, each shared by the module's tests:

- ``assay_server_module`` (auth off, one verification worker, readiness gate on, the smoke
  profile of tests/conftest.py): a tiny MLX model uploaded with ``upload_folder`` is verified,
  then pulled with the Hub client, ``assay pull`` and oras, byte for byte the same and stored
  once; the same model pushed with ``assay push`` loads in mlx-lm by repository name; Gemma
  pushed the way ``ollama push`` does loads in llama.cpp; a model that failed verification is
  refused by branch; a client that tries Xet fails quickly and clearly.
- ``auth_registry`` (tests/clients/conftest.py: auth on, no workers, no gate, except
  ``team/held`` whose policy gates it so that its model stays queued): tokens as
  ``HF_TOKEN``, refusals without one and with a read-only one.

Every model is pushed once, up front (``hub`` and ``auth_hub``), so the worker verifies while
the first tests run.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.support.hf_clients import ok, raised, run_client
from tests.support.mlx_models import make_mlx_model
from tests.support.models import GEMMA_SHA256, sha256_file
from tests.support.ollama_replay import (
    GEMMA3_TEMPLATE,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_TEMPLATE,
    gemma3_params_layer,
    ollama_config,
    ollama_push,
)
from tests.support.oras_client import oras_client
from tests.support.processes import ServerProcess, start_assay
from tests.support.workers import GATE_ON, get_manifest, wait_status, wait_until

pytestmark = pytest.mark.clients

TINY_FILES = ("config.json", "generation_config.json", "model.safetensors",
              "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json")
MODELPACK = "application/vnd.cncf.model.manifest.v1+json"
FILEPATH = "org.cncf.model.filepath"
OCI_TITLE = "org.opencontainers.image.title"
COMMIT_ID = re.compile(r"[0-9a-f]{40}")
HELD = "team/held"  # gated by policy on the auth server, which has no worker: stays queued


def file_hashes(directory: Path, names=TINY_FILES) -> dict[str, str]:
    return {name: sha256_file(directory / name) for name in names}


def commit_of(digest: str) -> str:
    """The Hub commit id of a manifest digest: its first 40 hex digits."""
    return digest.removeprefix("sha256:")[:40]


def layer_digests(manifest: dict) -> dict[str, str]:
    """A ModelPack manifest's files: path -> sha256 hex."""
    return {layer["annotations"][FILEPATH]: layer["digest"].removeprefix("sha256:")
            for layer in manifest["layers"]}


def broken_copy(source: Path, target: Path) -> Path:
    """The tiny model with its weights cut in half: it classifies, and fails to load."""
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return target


# ------------------------------------------------------------------------- the servers


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny random MLX model of tests/support/mlx_models.py with a wider MLP, so that
    its weights (1.7 MB) are above the 1 MiB up to which the Hub API has clients send a
    file inline in the commit: they take the LFS path (batch, PUT, verify) as real
    weights do. The other files go inline."""
    try:
        return make_mlx_model(tmp_path_factory.mktemp("hf-model") / "tiny",
                              model_args={"intermediate_size": 2048})
    except ImportError as exc:
        pytest.fail(f"cannot generate the MLX test model ({exc}): pip install -e '.[test]'",
                    pytrace=False)


@pytest.fixture(scope="module")
def assay_server_module(tmp_path_factory):
    """This module's auth-off server, under the name the assay_server plugin attaches log
    tails for: one verification worker and the readiness gate on (start_assay's defaults
    turn both off for protocol tests)."""
    data = tmp_path_factory.mktemp("hf-hub") / "data"
    try:
        server = start_assay(data, env={"ASSAY_WORKERS": "1", **GATE_ON})
    except Exception as exc:
        pytest.fail(f"could not start assay serve: {exc}", pytrace=False)
    try:
        yield server
    finally:
        code = server.proc.poll()
        server.stop()
        if code is not None:
            pytest.fail(f"assay serve exited with {code} during the tests:\n"
                        f"{server.log()[-4000:]}", pytrace=False)


UPLOAD_TINY = """
from huggingface_hub import HfApi
api = HfApi()
created = api.create_repo("team/tiny-hf")
again = attempt(api.create_repo, "team/tiny-hf")
existing = api.create_repo("team/tiny-hf", exist_ok=True)
commit = api.upload_folder(folder_path={folder!r}, repo_id="team/tiny-hf",
                           commit_message="a tiny MLX model")
sent = list(REQUESTS)
api.create_repo("team/broken")
broken = api.upload_folder(folder_path={broken!r}, repo_id="team/broken",
                           commit_message="weights cut in half")
emit(created=str(created), repo_id=created.repo_id, again=again, existing=str(existing),
     oid=commit.oid, url=commit.commit_url, broken=broken.oid, requests=sent)
"""


@pytest.fixture(scope="module")
def hub(assay_server_module: ServerProcess, cli, tiny_model, gemma_gguf, tmp_path_factory):
    """Everything the auth-off tests read, pushed once before they run: the tiny model
    uploaded with upload_folder (``team/tiny-hf``, branch main) and a broken copy
    (``team/broken``), the same tiny model pushed with ``assay push`` (``team/tiny-oci``,
    tag latest) and Gemma pushed like ``ollama push`` (``team/gemma3:latest``)."""
    server = assay_server_module
    home = tmp_path_factory.mktemp("hf-upload")
    broken = broken_copy(tiny_model, home / "broken")
    upload = run_client(server.url, home, UPLOAD_TINY.format(
        folder=str(tiny_model), broken=str(broken))).check()
    cli("push", tiny_model, f"{server.host_port}/team/tiny-oci", "-q")
    layers = [(MEDIA_MODEL, gemma_gguf), (MEDIA_TEMPLATE, GEMMA3_TEMPLATE),
              (MEDIA_PARAMS, gemma3_params_layer())]
    ollama_push(server.url, "team/gemma3", "latest", layers, ollama_config())
    return SimpleNamespace(server=server, upload=upload, source=file_hashes(tiny_model),
                           data_dir=server.log_path.parent)


# --------------------------------------------------------------- auth off: downloads


DOWNLOAD_TINY = """
import os
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
api = HfApi()
info = api.model_info("team/tiny-hf")
files = api.list_repo_files("team/tiny-hf")
snapshot = snapshot_download("team/tiny-hf")
by_commit = hf_hub_download("team/tiny-hf", "config.json", revision={oid!r})
emit(sha=info.sha, siblings=sorted(s.rfilename for s in info.siblings), files=sorted(files),
     hashes={{name: sha256(os.path.join(snapshot, name)) for name in files}},
     readme=open(os.path.join(snapshot, "README.md")).read(), by_commit=sha256(by_commit))
"""


def test_upload_folder_is_verified_then_pulled_alike_by_every_protocol(hub, cli, tmp_path):
    server, up = hub.server, hub.upload
    oid = up["oid"]
    assert COMMIT_ID.fullmatch(oid), up
    assert up["url"] == f"{server.url}/team/tiny-hf/commit/{oid}", up
    assert up["repo_id"] == "team/tiny-hf" and up["created"] == f"{server.url}/team/tiny-hf"
    assert up["existing"] == up["created"], up  # create_repo(exist_ok=True) on a 409
    raised(up["again"], "HfHubHTTPError", 409)
    # The weights (1.7 MB) went through LFS (batch, then a PUT of their bytes); the small
    # files inline in the commit.
    lfs_puts = [path for method, path, _ in up["requests"] if method == "PUT"]
    assert lfs_puts == [f"/team/tiny-hf.git/info/lfs/objects/"
                        f"{hub.source['model.safetensors']}"], up["requests"]
    assert ["POST", "/api/models/team/tiny-hf/commit/main", False] in up["requests"]

    # Verified like any push (the CLI waits on the same state the gate reads). A commit to
    # main in a repository without a main tag moves latest: the OCI default tag.
    cli("status", f"{server.host_port}/team/tiny-hf", "--wait", "--timeout", "90", "-q")
    resp = get_manifest(server, "team/tiny-hf", "latest")
    assert resp.status_code == 200, resp.text
    manifest = resp.json()
    assert manifest.get("artifactType") == MODELPACK, manifest
    assert commit_of(resp.headers["docker-content-digest"]) == oid
    assert layer_digests(manifest) == hub.source, "each file is one layer, digest = its sha256"

    got = run_client(server.url, tmp_path / "hf", DOWNLOAD_TINY.format(oid=oid)).check()
    assert got["sha"] == oid
    assert got["files"] == got["siblings"] == sorted([*TINY_FILES, "README.md"])
    assert {n: got["hashes"][n] for n in TINY_FILES} == hub.source
    assert got["by_commit"] == hub.source["config.json"]
    assert got["readme"].startswith("---\n"), got["readme"][:300]  # generated model card

    ref = f"{server.host_port}/team/tiny-hf:latest"
    cli("pull", ref, "-o", tmp_path / "assay-pull", "-q")
    pulled = {p.name: p for p in (tmp_path / "assay-pull").rglob("*") if p.is_file()}
    assert {n: sha256_file(pulled[n]) for n in TINY_FILES} == hub.source, sorted(pulled)

    oras_out = tmp_path / "oras"
    paths = oras_client(server.host_port).pull(target=ref, outdir=str(oras_out))
    # oras names a file by its layer's title annotation, else by its digest.
    path_of = {(layer.get("annotations") or {}).get(OCI_TITLE, layer["digest"]):
               layer["annotations"][FILEPATH] for layer in manifest["layers"]}
    assert {path_of[Path(p).name]: sha256_file(Path(p)) for p in paths} == hub.source

    assert_stored_once(hub, {"team/tiny-hf", "team/tiny-oci"})


def blob_files(data_dir: Path) -> list[Path]:
    """The filesystem store's blob files (``.../blobs/sha256/<2 hex>/<hex>``). os.walk
    skips what vanishes under it (the workers' scratch directories)."""
    found = []
    for root, _dirs, names in os.walk(data_dir):
        parts = Path(root).parts
        if parts[-3:-1] == ("blobs", "sha256"):
            found += [Path(root, name) for name in names]
    return found


def assert_stored_once(hub, repos: set[str]) -> None:
    """Every file of the tiny model (uploaded through the Hub API and pushed with ``assay
    push``) exists once under the data directory, as its blob; the storage summary counts
    the blob files on disk and nothing else."""
    wanted = set(hub.source.values())
    blobs = blob_files(hub.data_dir)
    assert wanted <= {p.name for p in blobs}, "every file is a blob named by its sha256"
    sizes = {p.stat().st_size for p in blobs if p.name in wanted}
    copies: Counter[str] = Counter()
    seen: set[tuple[int, int]] = set()
    for root, _dirs, names in os.walk(hub.data_dir):
        for name in names:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:  # a worker's scratch file, gone
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_size not in sizes:
                continue
            if (st.st_dev, st.st_ino) in seen:  # a hard link is not a copy
                continue
            seen.add((st.st_dev, st.st_ino))
            digest = sha256_file(Path(root, name))
            if digest in wanted:
                copies[digest] += 1
    assert copies == Counter(dict.fromkeys(wanted, 1)), (
        f"files of {sorted(repos)} stored more than once: {dict(copies)}")

    # The worker stores each verification report as a blob: compare while none lands.
    def settled():
        before = sum(p.stat().st_size for p in blob_files(hub.data_dir))
        summary = httpx.get(f"{hub.server.url}/api/v1/storage", timeout=30).json()
        after = sum(p.stat().st_size for p in blob_files(hub.data_dir))
        return summary if before == after == summary["stored_bytes"] else None

    summary = wait_until(settled, 30, "the storage summary to count the blob files on disk")
    assert summary["logical_bytes"] > summary["stored_bytes"], summary  # shared by two repos


TRANSFORMERS_AND_HF_CLI = """
import os, subprocess, sys
from transformers import AutoConfig, AutoTokenizer
config = AutoConfig.from_pretrained("team/tiny-hf")
remote = AutoTokenizer.from_pretrained("team/tiny-hf")
local = AutoTokenizer.from_pretrained({local!r})
hf = os.path.join(os.path.dirname(sys.executable), "hf")
cli = subprocess.run([hf, "download", "team/tiny-hf", "config.json", "--local-dir", "cli"],
                     capture_output=True, text=True)
emit(model_type=config.model_type, remote=remote.encode("hello world"),
     local=local.encode("hello world"), cli=cli.returncode, cli_output=cli.stdout + cli.stderr,
     cli_file=sha256("cli/config.json") if cli.returncode == 0 else None)
"""


def test_transformers_and_the_hf_cli_read_the_uploaded_model(hub, cli, tiny_model,
                                                             tmp_path):
    """transformers asks for optional files the model lacks (a 404 EntryNotFound with
    X-Repo-Commit, cached as absent) and the ``hf`` CLI downloads one file."""
    cli("status", f"{hub.server.host_port}/team/tiny-hf", "--wait", "--timeout", "90", "-q")
    got = run_client(hub.server.url, tmp_path, TRANSFORMERS_AND_HF_CLI.format(
        local=str(tiny_model)), timeout=120).check()
    assert got["model_type"] == "llama"
    assert got["remote"] == got["local"] and got["remote"], got
    assert got["cli"] == 0, got["cli_output"]
    assert got["cli_file"] == hub.source["config.json"]


MLX_GENERATE = """
from mlx_lm import generate, load
model, tokenizer = load("team/tiny-oci")
remote = generate(model, tokenizer, prompt="hello world", max_tokens=8, verbose=False)
model, tokenizer = load({local!r})
local = generate(model, tokenizer, prompt="hello world", max_tokens=8, verbose=False)
emit(remote=remote, local=local)
"""


def test_mlx_lm_loads_a_model_pushed_with_assay_push(hub, tiny_model, tmp_path):
    wait_status(hub.server, "team/tiny-oci", "latest", ("ready",), timeout=90)
    got = run_client(hub.server.url, tmp_path, MLX_GENERATE.format(local=str(tiny_model)),
                     timeout=120).check()
    assert got["remote"] and got["remote"] == got["local"], got


LLAMA_FROM_PRETRAINED = """
from huggingface_hub import HfApi, hf_hub_download
from llama_cpp import Llama
files = HfApi().list_repo_files("team/gemma3")
modelfile = open(hf_hub_download("team/gemma3", "Modelfile")).read()
llm = Llama.from_pretrained("team/gemma3", filename="*.gguf", n_ctx=256, n_threads=2, seed=0,
                            verbose=False)
out = llm("The capital of France is", max_tokens=8, temperature=0.0)
emit(files=sorted(files), modelfile=modelfile, path=llm.model_path,
     text=out["choices"][0]["text"], tokens=out["usage"]["completion_tokens"])
"""


def test_llama_cpp_from_pretrained_loads_gemma_pushed_like_ollama(hub, tmp_path):
    wait_status(hub.server, "team/gemma3", "latest", ("ready",), timeout=90)
    got = run_client(hub.server.url, tmp_path, LLAMA_FROM_PRETRAINED, timeout=120).check()
    assert {"gemma3.gguf", "Modelfile", "README.md", "template", "params.json"} <= set(
        got["files"]), got["files"]
    assert got["modelfile"].startswith("FROM ./gemma3.gguf\n"), got["modelfile"]
    assert Path(got["path"]).name == "gemma3.gguf"
    assert sha256_file(Path(got["path"]).resolve()) == GEMMA_SHA256
    assert got["tokens"] > 0 and got["text"].strip(), got


GATED = """
from huggingface_hub import hf_hub_download, snapshot_download
emit(file=attempt(hf_hub_download, {repo!r}, "config.json"),
     snapshot=attempt(snapshot_download, {repo!r}),
     by_commit=attempt(lambda: sha256(hf_hub_download({repo!r}, "config.json",
                                                      revision={oid!r}))))
"""


def test_a_model_that_failed_verification_is_refused_by_branch(hub, tmp_path):
    wait_status(hub.server, "team/broken", "latest", ("failed",), timeout=90)
    got = run_client(hub.server.url, tmp_path, GATED.format(
        repo="team/broken", oid=hub.upload["broken"])).check()
    for call in ("file", "snapshot"):
        error = raised(got[call], "RevisionNotFoundError", 404)
        assert "failed verification" in error["message"], error
    # A commit id names one manifest, like a digest on /v2/: never gated.
    assert ok(got["by_commit"]) == hub.source["config.json"]


XET_CLIENT = """
import time
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.utils._runtime import is_xet_available
api = HfApi()
downloaded = sha256(hf_hub_download("team/tiny-hf", "config.json"))
api.create_repo("team/xet", exist_ok=True)
started = time.monotonic()
upload = attempt(api.upload_file, path_or_fileobj={path!r}, path_in_repo="model.safetensors",
                 repo_id="team/xet")
emit(xet=is_xet_available(), downloaded=downloaded, upload=upload,
     seconds=time.monotonic() - started)
"""


def test_a_client_with_xet_downloads_plainly_and_fails_fast_on_upload(hub, tiny_model,
                                                                      tmp_path):
    """assay never advertises Xet (no ``X-Xet-Hash``), so downloads take plain HTTP. An
    upload with ``hf_xet`` installed and ``HF_HUB_DISABLE_XET`` unset is decided by the
    client alone for a file the server wants through LFS (the weights; small files go
    inline): it asks for a Xet write token, gets a 4xx, and fails at once (a 5xx would make
    hf_xet retry for minutes); nothing is committed."""
    got = run_client(hub.server.url, tmp_path, XET_CLIENT.format(
        path=str(tiny_model / "model.safetensors")), xet=True, timeout=60).check()
    assert got["xet"] is True, "hf_xet must be installed for this test to mean anything"
    assert got["downloaded"] == hub.source["config.json"]
    # hf_xet shows the status and URL, not our message (asserted below on the wire).
    error = raised(got["upload"], "ConnectionError")
    assert "404" in error["message"] and "xet-write-token" in error["message"], error
    assert got["seconds"] < 20, got
    token = httpx.get(f"{hub.server.url}/api/models/team/xet/xet-write-token/main", timeout=10)
    assert 400 <= token.status_code < 500, (token.status_code, token.text)
    assert "HF_HUB_DISABLE_XET=1" in token.json()["error"], token.text
    tags = httpx.get(f"{hub.server.url}/v2/team/xet/tags/list", timeout=10)
    assert tags.status_code == 404 or not tags.json().get("tags"), tags.text


# ----------------------------------------------------------------------------- auth on


UPLOAD_WITH_TOKEN = """
from huggingface_hub import HfApi
api = HfApi()
api.create_repo("team/tiny", exist_ok=True)
commit = api.upload_folder(folder_path={folder!r}, repo_id="team/tiny")
sent = list(REQUESTS)
api.create_repo({held!r}, exist_ok=True)
held = api.upload_folder(folder_path={folder!r}, repo_id={held!r})
emit(oid=commit.oid, held=held.oid, requests=sent)
"""


@pytest.fixture(scope="module")
def auth_hub(auth_registry, tiny_model, tmp_path_factory):
    """The auth-on server with the tiny model uploaded by wanda (a personal access token
    with pull and push, as ``HF_TOKEN``) to ``team/tiny`` and to ``team/held``, whose
    policy (set by root) turns the gate on for it alone."""
    resp = httpx.put(f"{auth_registry.url}/api/v1/policies/{HELD}", json={"gate": True},
                     auth=auth_registry.auth("root"), timeout=30)
    assert resp.status_code == 200, resp.text
    home = tmp_path_factory.mktemp("hf-auth-upload")
    up = run_client(auth_registry.url, home, UPLOAD_WITH_TOKEN.format(
        folder=str(tiny_model), held=HELD), token=auth_registry.wanda_token).check()
    return SimpleNamespace(registry=auth_registry, upload=up,
                           source=file_hashes(tiny_model))


READ_ONLY = """
import os
from huggingface_hub import HfApi, snapshot_download
api = HfApi()
snapshot = snapshot_download("team/tiny")
emit(sha=api.model_info("team/tiny").sha,
     hashes={name: sha256(os.path.join(snapshot, name)) for name in os.listdir(snapshot)},
     upload=attempt(api.upload_file, path_or_fileobj=b"x", path_in_repo="x.txt",
                    repo_id="team/tiny"),
     create=attempt(api.create_repo, "team/other"))
"""

ANONYMOUS = """
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
api = HfApi()
emit(info=attempt(api.model_info, "team/tiny"),
     file=attempt(hf_hub_download, "team/tiny", "config.json"),
     snapshot=attempt(snapshot_download, "team/tiny"),
     upload=attempt(api.upload_file, path_or_fileobj=b"x", path_in_repo="x.txt",
                    repo_id="team/tiny"))
"""


def test_an_lfs_upload_with_a_token(auth_hub):
    """The client sends every Hub API call with the token, but the LFS PUT of the bytes
    without any header: the upload action's URL must carry its own short-lived grant."""
    sent = auth_hub.upload["requests"]
    weights = auth_hub.source["model.safetensors"]
    assert ["PUT", f"/team/tiny.git/info/lfs/objects/{weights}", False] in sent, sent
    assert ["POST", "/team/tiny.git/info/lfs/objects/batch", True] in sent, sent
    assert ["POST", "/api/models/team/tiny/commit/main", True] in sent, sent


def test_tokens_as_hf_token_download_and_refusals(auth_hub, tmp_path):
    registry, source = auth_hub.registry, auth_hub.source
    got = run_client(registry.url, tmp_path / "ro", READ_ONLY,
                     token=registry.wanda_pull_token).check()
    assert got["sha"] == auth_hub.upload["oid"]
    assert {n: got["hashes"][n] for n in TINY_FILES} == source
    for call in ("upload", "create"):  # the token's scope is pull: 403 with our reason
        error = raised(got[call], "HfHubHTTPError", 403)
        assert "scope: pull" in error["message"] and "push" in error["message"], error

    got = run_client(registry.url, tmp_path / "anonymous", ANONYMOUS).check()
    for call in ("info", "file", "snapshot"):
        error = raised(got[call], "RepositoryNotFoundError", 401)
        assert "anonymous" in error["message"], error
    raised(got["upload"], "HfHubHTTPError", 401)


ROBOT_EDITS = """
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
api = HfApi()
readme = api.upload_file(path_or_fileobj=b"# tiny\\n\\nA tiny test model.\\n",
                         path_in_repo="README.md", repo_id="team/tiny")
extra = api.upload_file(path_or_fileobj=b"some notes\\n", path_in_repo="notes/extra.txt",
                        repo_id="team/tiny")
after_add = sorted(api.list_repo_files("team/tiny"))
card = open(hf_hub_download("team/tiny", "README.md")).read()
notes = open(hf_hub_download("team/tiny", "notes/extra.txt")).read()
deleted = api.delete_file("notes/extra.txt", repo_id="team/tiny")
api.create_branch("team/tiny", branch="dev")
dev = api.upload_file(path_or_fileobj=b"dev\\n", path_in_repo="dev.txt", repo_id="team/tiny",
                      revision="dev")
api.create_tag("team/tiny", tag="v1", revision="dev")
refs = api.list_repo_refs("team/tiny")
emit(commits=[readme.oid, extra.oid, deleted.oid], after_add=after_add, card=card,
     notes=notes, after_delete=sorted(api.list_repo_files("team/tiny")),
     sha=api.model_info("team/tiny").sha, dev=dev.oid,
     refs={b.name: b.target_commit for b in refs.branches},
     v1=open(hf_hub_download("team/tiny", "dev.txt", revision="v1")).read(),
     dev_files=sorted(api.list_repo_files("team/tiny", revision="dev")),
     delete_branch=attempt(api.delete_branch, "team/tiny", branch="dev"),
     stale=attempt(api.create_commit, "team/tiny", [CommitOperationAdd("a.txt", b"a")],
                   commit_message="on an old head", parent_commit=readme.oid))
"""


def test_a_robot_token_commits_files_branches_and_tags(auth_hub, tmp_path):
    registry = auth_hub.registry
    got = run_client(registry.url, tmp_path, ROBOT_EDITS, token=registry.robot_token).check()
    commits = got["commits"]
    assert all(COMMIT_ID.fullmatch(c) for c in commits) and len(set(commits)) == 3, commits
    assert got["after_add"] == sorted([*TINY_FILES, "README.md", "notes/extra.txt"])
    assert got["card"] == "# tiny\n\nA tiny test model.\n"  # the model's own card, not ours
    assert got["notes"] == "some notes\n"
    assert got["after_delete"] == sorted([*TINY_FILES, "README.md"])
    assert got["sha"] == commits[-1]
    # Branches and tags are OCI tags, all listed as branches.
    assert got["refs"] == {"latest": commits[-1], "dev": got["dev"], "v1": got["dev"]}, got
    assert got["v1"] == "dev\n"
    assert got["dev_files"] == sorted([*TINY_FILES, "README.md", "dev.txt"])
    # Deleting a branch deletes a tag: the admin role, as on /v2/ (the robot has write).
    error = raised(got["delete_branch"], "HfHubHTTPError", 403)
    assert "admin" in error["message"], error
    error = raised(got["stale"], "HfHubHTTPError", 412)  # parent_commit is not the head
    assert commits[-1] in error["message"], error


def test_a_queued_model_is_refused_by_branch_and_served_by_commit(auth_hub, tmp_path):
    registry = auth_hub.registry
    got = run_client(registry.url, tmp_path, GATED.format(
        repo=HELD, oid=auth_hub.upload["held"]), token=registry.wanda_token).check()
    for call in ("file", "snapshot"):
        error = raised(got[call], "RevisionNotFoundError", 404)
        assert "is queued" in error["message"] and "passes verification" in error["message"]
    assert ok(got["by_commit"]) == auth_hub.source["config.json"]
