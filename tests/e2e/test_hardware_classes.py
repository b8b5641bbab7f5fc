"""Hardware classes with real ``assay worker`` processes on this machine, each playing a
different machine through its labels (``ASSAY_WORKER_LABELS``) and the capability override
that exists for tests (``ASSAY_WORKER_CAPABILITIES``): the real Gemma GGUF is verified once
per class of the namespace's profile, each job by a worker of its class only.

- a required class with no worker keeps the model queued, saying what it waits for, and
  the model becomes ready (and pullable) once a worker of that class starts;
- one worker of two classes serves both;
- a class's only worker killed mid-job: the job goes back to the queue, an idle worker of
  another class leaves it there, and the next worker of the class finishes it.
"""

from __future__ import annotations

import json

import httpx

from tests.support.workers import (
    alive,
    digest_from_push,
    rest,
    running_job,
    served_digest,
    tag_state,
    wait_status,
    wait_until,
)

NO_WORKERS = {"ASSAY_WORKERS": "0"}
LEASE = {"ASSAY_JOB_LEASE_SECONDS": "3"}
LONG_RUN = {"ASSAY_VERIFY_MAX_TOKENS": "600"}  # a run that lasts long enough to kill
LAB = {"ASSAY_WORKER_LABELS": "site=lab"}
MAC = {"ASSAY_WORKER_CAPABILITIES": json.dumps({"os": "darwin", "arch": "arm64"})}
# The smoke check alone (seconds per run on two cores), once per class.
PROFILE = {"name": "smoke-classes", "runs": [],
           "quality": {"perplexity": False, "prompts": []},
           "limits": {"max_perplexity": None}}
NAME, TAG = "team/gemma3", "270m"


def _setup(server, required: list[str]) -> None:
    """Classes ``lab`` (a label) and ``apple`` (macOS), and the profile of ``team``."""
    for name, selector in (("lab", {"labels": {"site": "lab"}}), ("apple", {"os": "darwin"})):
        r = httpx.put(f"{server.url}/api/v1/classes/{name}", json={"selector": selector})
        assert r.status_code == 200, r.text
    r = httpx.put(f"{server.url}/api/v1/profiles/team",
                  json={**PROFILE, "classes": {"required": required}})
    assert r.status_code == 200, r.text


def _push(cli, server, gemma_gguf) -> str:
    return digest_from_push(cli("push", gemma_gguf, f"{server.host_port}/{NAME}:{TAG}",
                                "-q").stdout)


def _classes(server) -> dict:
    return (tag_state(server, NAME, TAG)["verification"] or {}).get("classes") or {}


def _ran_on(entry: dict, worker) -> bool:
    """The class's latest result was recorded by ``worker``'s claim loop."""
    return f":{worker.worker_pid()}:" in (entry["verification"] or {}).get("worker", "")


def test_each_class_is_verified_by_its_workers_and_a_missing_one_waits(harness, cli,
                                                                      gemma_gguf):
    server = harness.server(NO_WORKERS)
    _setup(server, ["lab", "apple"])
    digest = _push(cli, server, gemma_gguf)
    lab = harness.worker(server, LAB)

    wait_until(lambda: _classes(server).get("lab", {}).get("status") == "passed", 120,
               "the lab class to pass")
    state = tag_state(server, NAME, TAG)
    assert (state["status"], state["served"]) == ("queued", None), state
    apple = state["verification"]["classes"]["apple"]
    assert apple["status"] == "queued" and apple["job"]["attempts"] == 0, apple
    waiting = "waiting for a worker of class apple; none has been seen"
    assert apple["waiting"] == waiting and state["reason"] == waiting, state
    assert _ran_on(state["verification"]["classes"]["lab"], lab)
    shown = cli("status", f"{server.host_port}/{NAME}:{TAG}", ok=False)
    assert waiting in shown.stdout + shown.stderr, shown.stdout + shown.stderr

    mac = harness.worker(server, MAC)
    state = wait_status(server, NAME, TAG, ("ready", "failed"), timeout=120)
    assert state["status"] == "ready" and state["served"] == digest, state
    classes = state["verification"]["classes"]
    assert _ran_on(classes["apple"], mac) and _ran_on(classes["lab"], lab), classes
    assert {c["verification"]["class"] for c in classes.values()} == {"lab", "apple"}
    runs = rest(server, f"/repositories/{NAME}/manifests/{digest}/verifications")
    assert len(runs["verifications"]) == 2, runs  # one run per class, none twice
    assert served_digest(server, NAME, TAG) == digest
    workers = {w["pid"]: w for w in rest(server, "/workers")["workers"]}
    assert workers[lab.worker_pid()]["classes"] == ["lab"]
    assert workers[mac.worker_pid()]["classes"] == ["apple"]


def test_a_worker_of_two_classes_serves_both(harness, cli, gemma_gguf):
    server = harness.server(NO_WORKERS)
    _setup(server, ["lab", "apple"])
    digest = _push(cli, server, gemma_gguf)
    both = harness.worker(server, {**LAB, **MAC})
    state = wait_status(server, NAME, TAG, ("ready", "failed"), timeout=180)
    assert state["status"] == "ready" and state["served"] == digest, state
    classes = state["verification"]["classes"]
    assert set(classes) == {"lab", "apple"}
    assert all(_ran_on(c, both) for c in classes.values()), classes


def test_a_killed_class_worker_job_goes_to_the_next_worker_of_that_class(harness, cli,
                                                                        gemma_gguf):
    server = harness.server({**NO_WORKERS, **LEASE})
    _setup(server, ["apple"])
    digest = _push(cli, server, gemma_gguf)
    bystander = harness.worker(server, {**LAB, **LEASE})  # of class lab only
    first = harness.worker(server, {**MAC, **LEASE, **LONG_RUN})
    state = running_job(server, NAME, TAG, first)
    job = state["job"]
    assert job["class"] == "apple" and f":{first.worker_pid()}:" in job["worker"], job
    first_pid = first.worker_pid()
    first.kill_tree()
    wait_until(lambda: not alive(first_pid), 5, "the apple worker to die")

    # Past the lease the job is queued again; the idle lab worker must leave it there.
    def requeued():
        entry = _classes(server).get("apple", {})
        return entry if entry.get("status") == "queued" and "waiting" in entry else None

    apple = wait_until(requeued, 30, "the apple job to be queued again, waiting")
    assert apple["waiting"].startswith("waiting for a worker of class apple; none has been "
                                       "seen for "), apple
    assert "stopped heartbeating" in (apple["job"]["last_error"] or ""), apple
    assert bystander.worker_pid() and alive(bystander.pid)
    # The dead worker left the model "verifying"; the live one's reconciliation (every 15 s)
    # puts it back to "queued".
    wait_until(lambda: tag_state(server, NAME, TAG)["status"] == "queued", 20,
               "the model to be queued again")

    second = harness.worker(server, {**MAC, **LEASE})
    state = wait_status(server, NAME, TAG, ("ready", "failed"), timeout=120)
    assert state["status"] == "ready" and state["served"] == digest, state
    apple = state["verification"]["classes"]["apple"]
    assert _ran_on(apple, second), apple
    assert apple["job"]["id"] == job["id"] and apple["job"]["attempts"] == 2, apple
    runs = rest(server, f"/repositories/{NAME}/manifests/{digest}/verifications")
    assert [v["class"] for v in runs["verifications"]] == ["apple"], runs


def test_a_class_without_the_backend_the_model_needs_is_unsupported(harness, cli,
                                                                   gemma_gguf):
    """A Mac worker with MLX only (the override removes llama.cpp) cannot run a GGUF: the
    class's result is "unsupported", recorded without a run, and not a failed run."""
    server = harness.server(NO_WORKERS)
    _setup(server, ["apple"])
    _push(cli, server, gemma_gguf)
    mlx_only = {"os": "darwin", "backends": {"llama.cpp": None, "mlx": {"device": "gpu"}}}
    mac = harness.worker(server, {"ASSAY_WORKER_CAPABILITIES": json.dumps(mlx_only)})
    state = wait_status(server, NAME, TAG, ("ready", "failed"), timeout=120)
    apple = state["verification"]["classes"]["apple"]
    assert apple["status"] == "unsupported", apple
    assert state["reason"] == ("unsupported on class apple: no worker of class apple has "
                               "llama.cpp, which gguf weights need"), state
    assert apple["verification"]["referrer"] is None and _ran_on(apple, mac), apple
    assert "verifying" not in mac.log()  # never started a run
