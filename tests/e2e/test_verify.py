"""End to end on one ``assay serve`` with one verification worker and the readiness gate on:
the real Gemma 3 270M GGUF and a generated MLX model become ready with measured figures;
broken GGUFs and a model under a namespace's speed floor fail with their reason and are never
served by tag (unless an admin overrides); the result travels as an OCI referrer.
"""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from tests.support.models import GEMMA_DIGEST, GEMMA_SHA256, GEMMA_SIZE, sha256_file
from tests.support.ollama_replay import MEDIA_MODEL, ollama_config, ollama_pull, ollama_push
from tests.support.workers import (
    VERIFICATION_TYPE,
    digest_from_push,
    get_manifest,
    oci_error,
    one_line_error,
    rest,
    served_digest,
    tag_state,
    wait_status,
)


def referrers(server, name: str, digest: str) -> list[dict]:
    resp = httpx.get(f"{server.url}/v2/{name}/referrers/{digest}", timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["manifests"]


def verification_report(server, name: str, model_digest: str) -> tuple[dict, dict]:
    """The one verification referrer of a model: (index entry, the JSON report blob)."""
    found = [m for m in referrers(server, name, model_digest)
             if m.get("artifactType") == VERIFICATION_TYPE]
    assert len(found) == 1, found
    entry = found[0]
    resp = get_manifest(server, name, entry["digest"])
    assert resp.status_code == 200, resp.text
    manifest = resp.json()
    assert manifest["artifactType"] == VERIFICATION_TYPE
    assert manifest["subject"]["digest"] == model_digest
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == VERIFICATION_TYPE
    blob = httpx.get(f"{server.url}/v2/{name}/blobs/{layer['digest']}", timeout=30,
                     follow_redirects=True)
    assert blob.status_code == 200, blob.text
    assert f"sha256:{hashlib.sha256(blob.content).hexdigest()}" == layer["digest"]
    return entry, json.loads(blob.content)


# ---------------------------------------------------------------------------- Gemma


def test_gemma_push_verify_pull(verify_server, cli, gemma_gguf, tmp_path):
    server = verify_server
    ref = f"{server.host_port}/team/gemma3:270m"
    digest = digest_from_push(cli("push", gemma_gguf, ref, "-q").stdout)

    status = cli("status", ref, "--wait", "--timeout", "120", "-q", ok=False)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"@{digest}: ready" in status.stdout, status.stdout
    assert "tokens/s" in status.stdout, status.stdout

    state = tag_state(server, "team/gemma3", "270m")
    assert (state["digest"], state["status"], state["reason"]) == (digest, "ready", None)
    assert state["served"] == digest
    v = state["verification"]
    assert v["verdict"] == "passed" and v["reason"] is None, v
    assert v["backend"] == "llama.cpp" and v["backend_version"], v
    assert v["hardware"]["threads"] >= 1 and v["hardware"]["cpu_model"], v["hardware"]
    f = v["figures"]
    assert f["generation_tps"] > 0 and f["prompt_tps"] > 0, f
    assert 0 < f["tokens_generated"] <= 32, f  # ASSAY_VERIFY_MAX_TOKENS default
    assert f["output"].strip(), f
    assert f["output_sha256"] == hashlib.sha256(f["output"].encode()).hexdigest(), f
    assert f["load_s"] > 0 and f["ttft_s"] > 0 and f["peak_rss_bytes"] > 0, f
    job = state["job"]
    assert (job["status"], job["attempts"], job["last_error"]) == ("done", 1, None), job
    assert v["worker"] == job["worker"], (v, job)

    # The result travels with the model: exactly one verification referrer, passed.
    entry, report = verification_report(server, "team/gemma3", digest)
    assert entry["digest"] == v["referrer"]
    assert entry["annotations"]["dev.assay.verdict"] == "passed", entry
    assert entry["annotations"]["dev.assay.backend"] == "llama.cpp", entry
    assert float(entry["annotations"]["dev.assay.generation_tps"]) > 0, entry
    assert report["subject"] == digest and report["repository"] == "team/gemma3"
    assert report["report"]["passed"] is True
    assert report["report"]["output"] == f["output"]
    assert report["report"]["generation_tps"] == pytest.approx(f["generation_tps"])

    # Pullable by tag, by the Ollama client too, byte for byte.
    assert served_digest(server, "team/gemma3", "270m") == digest
    blobs = ollama_pull(server.url, "team/gemma3", "270m", tmp_path / "ollama")
    assert blobs[GEMMA_DIGEST].stat().st_size == GEMMA_SIZE
    assert sha256_file(blobs[GEMMA_DIGEST]) == GEMMA_SHA256
    pulled = (tmp_path / "ollama" / "manifest.json").read_bytes()
    assert f"sha256:{hashlib.sha256(pulled).hexdigest()}" == digest

    text = cli("inspect", ref).stdout
    status_line = next((line for line in text.splitlines()
                        if line.strip().startswith("status")), "")
    assert status_line.split() == ["status", "ready"], text
    assert "generation" in text and "tokens/s" in text, text
    info = json.loads(cli("inspect", "--json", ref).stdout)
    assert info["status"] == "ready", info

    # A re-run (assay verify) adds a second result; the model stays ready and served.
    rerun = cli("verify", ref, "--wait", "--timeout", "120", "-q")
    assert f"@{digest}: ready" in rerun.stdout, rerun.stdout
    runs = rest(server, f"/repositories/team/gemma3/manifests/{digest}/verifications")
    assert [r["verdict"] for r in runs["verifications"]] == ["passed", "passed"], runs
    assert len({r["referrer"] for r in runs["verifications"]}) == 2, runs
    assert served_digest(server, "team/gemma3", "270m") == digest
    state = tag_state(server, "team/gemma3", "270m")
    assert state["job"]["id"] != job["id"] and state["job"]["status"] == "done", state["job"]


# ---------------------------------------------------------------------------- MLX


def test_mlx_model_is_verified_by_mlx(verify_server, cli, mlx_model_dir):
    server = verify_server
    ref = f"{server.host_port}/mlx/tiny-llama:v1"
    digest = digest_from_push(cli("push", mlx_model_dir, ref, "-q").stdout)
    state = wait_status(server, "mlx/tiny-llama", "v1", ("ready", "failed"))
    assert state["status"] == "ready", (state["reason"], state["verification"])
    assert state["digest"] == digest
    assert state["artifactType"].startswith("application/vnd.cncf.model"), state
    v = state["verification"]
    assert v["backend"] == "mlx" and "mlx" in v["backend_version"], v
    # The generated model never emits a special token: it always generates max_tokens.
    assert v["figures"]["tokens_generated"] == 32, v["figures"]
    assert v["figures"]["generation_tps"] > 0 and v["figures"]["output"], v["figures"]
    entry, report = verification_report(server, "mlx/tiny-llama", digest)
    assert entry["annotations"]["dev.assay.verdict"] == "passed"
    assert report["report"]["backend"] == "mlx"
    assert served_digest(server, "mlx/tiny-llama", "v1") == digest


# ---------------------------------------------------------------------- broken GGUFs


BROKEN = {
    "truncated": ("did not load: tensor 'token_embd.weight' data is not within the file "
                  "bounds"),
    "bogus-type": "did not load: tensor 'blk.0.attn_q.weight' has invalid ggml type 99",
}
CLIENT_REFUSAL = {
    "truncated": "truncated: tensor 'token_embd.weight' ends at byte",
    "bogus-type": "tensor 'blk.0.attn_q.weight' has an unknown type 99",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_gguf_fails_and_is_never_served(verify_server, cli, kind, truncated_gguf,
                                               bogus_type_gguf, tmp_path):
    server = verify_server
    path = {"truncated": truncated_gguf, "bogus-type": bogus_type_gguf}[kind]
    name, tag = f"broken/{kind}", "v1"
    ref = f"{server.host_port}/{name}:{tag}"
    # assay push reads the GGUF header and tensor table and refuses both files before
    # sending a byte; Ollama does not, so the registry has to catch them.
    line = one_line_error(cli("push", path, ref, "-q", ok=False))
    assert CLIENT_REFUSAL[kind] in line, line
    assert get_manifest(server, name, tag).status_code == 404
    digest = ollama_push(server.url, name, tag, [(MEDIA_MODEL, path)], ollama_config())

    status = cli("status", ref, "--wait", "--timeout", "120", "-q", ok=False)
    assert status.returncode == 1, status.stdout + status.stderr
    assert BROKEN[kind] in status.stderr, status.stderr
    assert "failed verification" in status.stderr, status.stderr

    state = tag_state(server, name, tag)
    assert (state["digest"], state["status"]) == (digest, "failed"), state
    assert state["reason"].startswith(BROKEN[kind]), state["reason"]
    assert state["served"] is None
    v = state["verification"]
    assert (v["verdict"], v["backend"]) == ("failed", "llama.cpp"), v
    assert v["figures"]["tokens_generated"] is None and v["figures"]["output"] is None
    assert "failed to load model" in v["log_tail"], v["log_tail"][-2000:]
    # A bad model is a verdict, not an infrastructure error: one attempt, job done.
    job = state["job"]
    assert (job["status"], job["attempts"], job["last_error"]) == ("done", 1, None), job
    entry, report = verification_report(server, name, digest)
    assert entry["annotations"]["dev.assay.verdict"] == "failed"
    assert report["report"]["reason"] == state["reason"]

    # Never pullable by tag: the OCI error names the state, the reason and the REST URL.
    resp = get_manifest(server, name, tag)
    assert resp.status_code == 404, resp.text
    error = oci_error(resp)
    assert error["code"] == "MANIFEST_UNKNOWN"
    assert "failed verification" in error["message"] and BROKEN[kind] in error["message"]
    assert f"{server.url}/api/v1/repositories/{name}/tags/{tag}" in error["message"]
    out = tmp_path / "out"
    line = one_line_error(cli("pull", ref, "-o", out, "-q", ok=False))
    assert "failed verification" in line, line
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())
    # ... by digest it is still there (workers, referrers and inspect read by digest).
    assert get_manifest(server, name, digest).status_code == 200

    # Re-running gives the same verdict: a second run, still failed, still not served.
    rerun = cli("verify", ref, "--wait", "--timeout", "120", "-q", ok=False)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr
    runs = rest(server, f"/repositories/{name}/manifests/{digest}/verifications")
    assert [r["verdict"] for r in runs["verifications"]] == ["failed", "failed"], runs
    assert get_manifest(server, name, tag).status_code == 404


def test_admin_override_lets_a_failed_model_through(verify_server, cli, truncated_gguf):
    server = verify_server
    name, tag = "broken/overridden", "v1"
    ref = f"{server.host_port}/{name}:{tag}"
    digest = ollama_push(server.url, name, tag, [(MEDIA_MODEL, truncated_gguf)],
                         ollama_config())
    assert wait_status(server, name, tag, ("ready", "failed"))["status"] == "failed"
    assert get_manifest(server, name, tag).status_code == 404

    resp = httpx.post(f"{server.url}/api/v1/repositories/{name}/manifests/{digest}/override",
                      json={"reason": "known truncated, needed for a repro", "by": "alice"},
                      timeout=30)
    assert resp.status_code == 200, resp.text

    assert served_digest(server, name, tag) == digest
    state = tag_state(server, name, tag)
    assert state["status"] == "failed"  # the verdict is untouched
    assert state["served"] == digest
    override = state["override"]
    assert (override["by"], override["reason"]) == ("alice", "known truncated, needed for a repro")
    assert override["at"]
    shown = cli("status", ref, ok=False)
    assert "override: by alice" in shown.stdout, shown.stdout


# ---------------------------------------------------------------------- speed floor


def test_namespace_speed_floor_fails_a_slow_model(verify_server, cli, gemma_gguf):
    server = verify_server
    resp = httpx.put(f"{server.url}/api/v1/policies/slowlane",
                     json={"gate": True, "min_generation_tps": 1e9}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["min_generation_tps"] == 1e9

    ref = f"{server.host_port}/slowlane/gemma3:270m"
    digest = digest_from_push(cli("push", gemma_gguf, ref, "-q").stdout)
    status = cli("status", ref, "--wait", "--timeout", "120", "-q", ok=False)
    assert status.returncode == 1, status.stdout + status.stderr

    state = tag_state(server, "slowlane/gemma3", "270m")
    assert (state["digest"], state["status"]) == (digest, "failed"), state
    reason = state["reason"]
    assert "tokens/s" in reason and "below the minimum 1e+09 tokens/s" in reason, reason
    assert reason in status.stderr, status.stderr
    # It ran: the figures are recorded, it was just too slow.
    f = state["verification"]["figures"]
    assert f["generation_tps"] > 0 and f["tokens_generated"] > 0, f
    assert state["job"]["attempts"] == 1, state["job"]
    assert get_manifest(server, "slowlane/gemma3", "270m").status_code == 404
