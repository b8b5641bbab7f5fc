"""End to end with the workers controlled by the test: ``assay serve --workers 0`` and
``assay worker`` processes started, killed (SIGKILL) and stopped (SIGTERM) by PID.

A model waits, unpullable, until a worker exists; a job whose worker was killed mid-run is
re-queued once its lease lapses and finished by another worker (and the killed worker's
verifier child dies with it); a worker stopped gracefully hands its job back uncounted;
while v2 of a tag is queued or verifying, a pull by tag still gets v1 (and a v3 that fails
never replaces v2).
"""

from __future__ import annotations

import hashlib
import time

from tests.support.models import GEMMA_SHA256, sha256_file
from tests.support.ollama_replay import MEDIA_MODEL, ollama_config, ollama_pull, ollama_push
from tests.support.workers import (
    alive,
    cmdline,
    digest_from_push,
    get_manifest,
    maps_model,
    oci_error,
    one_line_error,
    rest,
    running_job,
    served_digest,
    tag_state,
    wait_status,
    wait_until,
)

NO_WORKERS = {"ASSAY_WORKERS": "0"}
LEASE = {"ASSAY_JOB_LEASE_SECONDS": "3"}
# Gemma generates at most ~75 tokens/s on two cores: 100 tokens (default 32) keep a run
# going for seconds, long enough to see it "verifying"; runs that a test interrupts get 600
# (prompt + 600 tokens fit the verifier's 1024-token context).
SLOW_RUN = {"ASSAY_VERIFY_MAX_TOKENS": "100"}
LONG_RUN = {"ASSAY_VERIFY_MAX_TOKENS": "600"}


def test_model_waits_for_a_worker(harness, cli, gemma_gguf, tmp_path):
    server = harness.server(NO_WORKERS)
    name, tag = "team/gemma3", "270m"
    ref = f"{server.host_port}/{name}:{tag}"
    digest = digest_from_push(cli("push", gemma_gguf, ref, "-q").stdout)

    state = tag_state(server, name, tag)
    assert (state["digest"], state["status"], state["served"]) == (digest, "queued", None)
    assert (state["job"]["status"], state["job"]["attempts"]) == ("queued", 0), state["job"]
    assert state["verification"] is None

    rest_url = f"{server.url}/api/v1/repositories/{name}/tags/{tag}"
    resp = get_manifest(server, name, tag)
    assert resp.status_code == 404, resp.text
    error = oci_error(resp)
    assert error["code"] == "MANIFEST_UNKNOWN"
    assert "is queued" in error["message"] and rest_url in error["message"], error
    assert error["detail"]["status"] == "queued" and error["detail"]["url"] == rest_url

    line = one_line_error(cli("pull", ref, "-o", tmp_path / "early", "-q", ok=False))
    assert "MANIFEST_UNKNOWN" in line and "is queued" in line and rest_url in line, line
    waited = cli("status", ref, "--wait", "--timeout", "1", "-q", ok=False)
    assert waited.returncode == 2, waited.stdout + waited.stderr
    assert "timed out" in waited.stderr and "still queued" in waited.stderr, waited.stderr

    worker = harness.worker(server)
    status = cli("status", ref, "--wait", "--timeout", "120", "-q", ok=False)
    assert status.returncode == 0, status.stdout + status.stderr + worker.log()[-3000:]
    state = tag_state(server, name, tag)
    assert state["status"] == "ready" and state["served"] == digest
    assert state["verification"]["worker"].split(":")[1] == str(worker.worker_pid())

    cli("pull", ref, "-o", tmp_path / "pulled", "-q")
    (gguf,) = (tmp_path / "pulled").glob("*.gguf")
    assert sha256_file(gguf) == GEMMA_SHA256


def test_killed_worker_job_is_finished_by_another(harness, cli, gemma_gguf):
    server = harness.server({**NO_WORKERS, **LEASE})
    name, tag = "team/gemma3", "270m"
    digest = digest_from_push(cli("push", gemma_gguf, f"{server.host_port}/{name}:{tag}",
                                  "-q").stdout)

    a = harness.worker(server, {**LEASE, **LONG_RUN})
    a_pid = a.worker_pid()
    state = running_job(server, name, tag, a)
    first = state["job"]
    assert first["attempts"] == 1 and f":{a_pid}:" in first["worker"], first
    verifiers = a.verifier_children()
    assert verifiers, "worker A's verifier child should be running"
    commands = {pid: cmdline(pid) for pid in verifiers}
    # Kill it while it generates, when it writes nothing (until then the pipes it writes to
    # would end an orphan with EPIPE anyway): the blob is mapped once the model loads.
    wait_until(lambda: all(maps_model(pid) for pid in verifiers), 60,
               "the verifier child to map the model")
    time.sleep(1.0)
    assert all(alive(pid) for pid in verifiers), "the run ended before the kill"
    assert tag_state(server, name, tag)["job"]["attempts"] == 1

    killed = a.kill_tree()
    assert a_pid in killed
    wait_until(lambda: not alive(a.pid) and not alive(a_pid), 5, "worker A to die")
    # The verifier child is in a session of its own (no group kill reaches it) and would
    # generate for seconds more (LONG_RUN): it must die with its worker at once
    # (PR_SET_PDEATHSIG), not run the model on as an orphan.
    wait_until(lambda: not any(alive(p) and cmdline(p) == c for p, c in commands.items()),
               2, f"worker A's verifier child(ren) {sorted(commands)} to die with it")

    # Nothing is recorded for the killed run; the job is still "running" under A.
    state = tag_state(server, name, tag)
    assert state["verification"] is None and state["status"] == "verifying", state
    assert state["job"]["worker"] == first["worker"]

    b = harness.worker(server, LEASE)
    b_pid = b.worker_pid()
    state = wait_status(server, name, tag, ("ready", "failed"), timeout=120)
    assert state["status"] == "ready", state
    job = state["job"]
    assert job["id"] == first["id"] and job["status"] == "done", job
    assert job["attempts"] == 2, job
    assert "stopped heartbeating" in (job["last_error"] or ""), job
    assert first["worker"] in job["last_error"], job
    v = state["verification"]
    assert v["worker"] != first["worker"] and f":{b_pid}:" in v["worker"], (v["worker"], first)
    assert v["figures"]["tokens_generated"] <= 32, v["figures"]  # B's default, not A's 600
    runs = rest(server, f"/repositories/{name}/manifests/{digest}/verifications")
    assert len(runs["verifications"]) == 1, runs
    assert served_digest(server, name, tag) == digest


def test_graceful_shutdown_releases_the_job(harness, cli, gemma_gguf):
    server = harness.server(NO_WORKERS)
    name, tag = "team/gemma3", "270m"
    digest = digest_from_push(cli("push", gemma_gguf, f"{server.host_port}/{name}:{tag}",
                                  "-q").stdout)

    a = harness.worker(server, LONG_RUN)
    a_pid = a.worker_pid()
    first = running_job(server, name, tag, a)["job"]
    assert first["attempts"] == 1 and f":{a_pid}:" in first["worker"], first
    verifiers = {pid: cmdline(pid) for pid in a.verifier_children()}
    assert verifiers, "worker A's verifier child should be running"

    assert a.terminate(timeout=30) == 0, a.log()[-3000:]
    assert "released" in a.log(), a.log()[-3000:]
    assert not any(alive(p) and cmdline(p) == c for p, c in verifiers.items())

    state = tag_state(server, name, tag)
    job = state["job"]
    assert job["id"] == first["id"] and job["status"] == "queued", job
    assert job["attempts"] == 0, job  # a release does not count the attempt
    assert job["worker"] is None and job["last_error"] is None, job
    assert state["verification"] is None, state["verification"]
    error = oci_error(get_manifest(server, name, tag))
    assert error["code"] == "MANIFEST_UNKNOWN", error
    # Nobody is verifying the model any more: it waits in the queue, and REST, `assay
    # status` and the gate's message must say so (not "verifying" until some worker happens
    # to claim it; with no worker left, forever). Checked at the end, after the rest ran.
    released_state = (state["status"], error["detail"]["status"], error["message"])

    b = harness.worker(server)
    b_pid = b.worker_pid()
    state = wait_status(server, name, tag, ("ready", "failed"), timeout=120)
    assert state["status"] == "ready", state
    job = state["job"]
    assert (job["id"], job["status"], job["attempts"]) == (first["id"], "done", 1), job
    assert f":{b_pid}:" in state["verification"]["worker"], state["verification"]
    assert served_digest(server, name, tag) == digest

    assert released_state[:2] == ("queued", "queued"), (
        "BUG: a released job leaves its model 'verifying': worker/pool.py Worker.run_job "
        "releases the job but nothing resets manifests.status (registry/services/"
        f"verification.py has no call for it); REST status {released_state[0]!r}, gate "
        f"message {released_state[2]!r}")


def test_pulls_get_v1_while_v2_verifies(harness, cli, gemma_gguf, truncated_gguf, tmp_path):
    server = harness.server(NO_WORKERS)
    name, tag = "team/gemma3", "latest"
    ref = f"{server.host_port}/{name}:{tag}"
    v1 = digest_from_push(cli("push", gemma_gguf, ref, "-q").stdout)
    first = harness.worker(server)
    assert wait_status(server, name, tag, ("ready", "failed"))["status"] == "ready"
    assert first.terminate(timeout=30) == 0

    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {gemma_gguf}\nSYSTEM You answer in one short sentence.\n")
    v2 = digest_from_push(cli("push", modelfile, ref, "-q").stdout)
    assert v2 != v1

    def serves_v1(expected_status: str) -> None:
        state = tag_state(server, name, tag)
        assert (state["digest"], state["status"]) == (v2, expected_status), state
        assert state["served"] == v1, state
        assert served_digest(server, name, tag) == v1
        manifest = get_manifest(server, name, tag).content
        assert f"sha256:{hashlib.sha256(manifest).hexdigest()}" == v1

    serves_v1("queued")
    out = tmp_path / "ollama"
    ollama_pull(server.url, name, tag, out)
    assert f"sha256:{hashlib.sha256((out / 'manifest.json').read_bytes()).hexdigest()}" == v1
    # v1 is the bare GGUF: the CLI pulls the weights alone, no Modelfile with a SYSTEM.
    cli("pull", ref, "-o", tmp_path / "pulled-v1", "-q")
    assert sorted(p.name for p in (tmp_path / "pulled-v1").iterdir()) == ["gemma3.gguf"]

    second = harness.worker(server, SLOW_RUN)
    running_job(server, name, tag, second)
    serves_v1("verifying")

    state = wait_status(server, name, tag, ("ready", "failed"), timeout=120)
    assert state["status"] == "ready", state
    assert state["served"] == v2
    assert served_digest(server, name, tag) == v2
    cli("pull", ref, "-o", tmp_path / "pulled-v2", "-q")
    assert "You answer in one short sentence." in \
        (tmp_path / "pulled-v2" / "Modelfile").read_text()

    # A v3 that fails verification never replaces v2: the newest *ready* one is served.
    v3 = ollama_push(server.url, name, tag, [(MEDIA_MODEL, truncated_gguf)], ollama_config())
    state = wait_status(server, name, tag, ("failed",), timeout=120)
    assert (state["digest"], state["served"]) == (v3, v2), state
    assert served_digest(server, name, tag) == v2
