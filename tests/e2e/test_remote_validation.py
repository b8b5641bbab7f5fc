"""Webhook-triggered validation with a real peer: Debian's ``docker-registry`` (CNCF
Distribution 2.8) notifies ``assay serve`` of every push and pull; assay verifies the models
pushed *there* by pulling them read-only with its worker.

The Distribution endpoint sends a static ``Authorization: Bearer <token>`` (it cannot sign).
Blob pushes and the pulls caused by assay's own worker reach the hook too and are ignored;
a refused envelope would stall Distribution's queue, so the last check is that its log
shows no failed delivery. Every process is started here and stopped by PID.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.models import GEMMA_DIGEST
from tests.support.ollama_replay import MEDIA_MODEL, ollama_config, ollama_push
from tests.support.processes import ServerProcess, free_port, start_distribution
from tests.support.workers import digest_from_push, wait_until

TOKEN = "e2e-hook-token-7f3a"


@pytest.fixture
def peers(harness, tmp_path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(assay with one worker and a hook token, Distribution notifying it)."""
    port = free_port()
    # Distribution listens on loopback, which assay does not reach unless the operator
    # allows it: this one address and port, nothing else of the machine.
    assay = harness.server({"ASSAY_WORKERS": "1", "ASSAY_HOOK_TOKEN": TOKEN,
                            "ASSAY_OUTBOUND_ALLOW": f"127.0.0.1:{port}"})
    endpoint = {"name": "assay", "url": f"{assay.url}/api/v1/hooks/validate",
                "headers": {"Authorization": [f"Bearer {TOKEN}"]},
                "timeout": "10s", "threshold": 3, "backoff": "1s"}
    distribution = start_distribution(tmp_path / "distribution", port=port,
                                      notifications=[endpoint])
    try:
        yield assay, distribution
    finally:
        distribution.stop()
        # Distribution's log is attached by hand (the harness only knows assay's processes).
        print(f"--- docker-registry log (pid {distribution.pid}) ---\n{distribution.log()[-4000:]}")


def records(assay: ServerProcess, reference: str) -> httpx.Response:
    return httpx.get(f"{assay.url}/api/v1/verifications", params={"reference": reference},
                     timeout=30)


def wait_verdict(assay: ServerProcess, reference: str, timeout: float = 180.0) -> dict:
    """Poll until the remote model is ready or failed; its record."""
    last: dict = {}

    def done():
        resp = records(assay, reference)
        if resp.status_code == 404:  # the notification has not arrived yet
            return None
        assert resp.status_code == 200, resp.text
        last.clear()
        last.update(resp.json())
        return dict(last) if last["status"] in ("ready", "failed") else None

    try:
        return wait_until(done, timeout, f"a verdict on {reference}", interval=0.25)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last record: {last}") from None


def test_distribution_notifications_trigger_verification(peers, cli, gemma_gguf,
                                                         truncated_gguf):
    assay, distribution = peers
    peer = distribution.host_port

    # A good model, pushed to Distribution with assay's CLI (it works against any registry).
    ref = f"{peer}/team/gemma3:270m"
    digest = digest_from_push(cli("push", gemma_gguf, ref, "-q").stdout)
    record = wait_verdict(assay, ref)
    assert (record["location"], record["status"], record["reason"]) == ("remote", "ready",
                                                                       None), record
    assert record["reference"] == f"{peer}/team/gemma3@{digest}"
    assert (record["registry"], record["repository"], record["tag"], record["source"]) == (
        peer, "team/gemma3", "270m", "distribution")
    (run,) = record["verifications"]
    assert run["verdict"] == "passed" and run["backend"] == "llama.cpp", run
    figures = run["figures"]
    assert figures["generation_tps"] > 0 and figures["tokens_generated"] > 0, figures
    assert figures["output"].strip(), figures
    assert records(assay, f"{peer}/team/gemma3@{digest}").json()["verifications"] == [run]
    # assay pulled read-only: Distribution still has the model and nothing else was added.
    manifest = httpx.get(f"{distribution.url}/v2/team/gemma3/manifests/270m", timeout=30,
                         headers={"Accept": "application/vnd.docker.distribution.manifest"
                                            ".v2+json"})
    assert manifest.headers["Docker-Content-Digest"] == digest
    layers = [layer["digest"] for layer in manifest.json()["layers"]]
    assert GEMMA_DIGEST in layers
    tags = httpx.get(f"{distribution.url}/v2/team/gemma3/tags/list", timeout=30).json()
    assert tags["tags"] == ["270m"]

    # A broken GGUF (assay push refuses it, so it goes up the way Ollama would push it).
    broken_ref = f"{peer}/broken/truncated:v1"
    broken = ollama_push(distribution.url, "broken/truncated", "v1",
                         [(MEDIA_MODEL, truncated_gguf)], ollama_config())
    record = wait_verdict(assay, broken_ref)
    assert record["status"] == "failed" and record["digest"] == broken, record
    assert "did not load" in record["reason"], record
    (run,) = record["verifications"]
    assert run["verdict"] == "failed" and run["reason"] == record["reason"]

    # Every notification (blob pushes, the worker's own pulls) was answered 2xx: a refused
    # one would show up in Distribution's log as a failed write to the endpoint.
    log = distribution.log()
    assert "retryingsink" not in log.lower() and "error writing event" not in log.lower(), \
        log[-3000:]
