"""Verification per hardware class, through the service layer and REST on both stacks:
the jobs a profile's classes give a model, claims that only a worker of the class wins
(the claim query decides), the status from the results on each required class, results
that had no run (unsupported, not measured), what a waiting class says, and classes added
to a profile later. The same with real worker processes: tests/e2e/test_hardware_classes.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from registry.db.queue import JobKind
from registry.db.tables import jobs
from registry.profiles import parse_profile
from tests.support.verification import manifest_id, push_model, report

CPU = {"backends": {"llama.cpp": {"build": "cpu"}}, "cores": 2, "memory_bytes": 8 << 30,
       "accelerator": {"kind": "none"}, "os": "linux", "arch": "x86_64"}
MAC = {"backends": {"mlx": {"device": "gpu"}}, "cores": 10, "memory_bytes": 32 << 30,
       "accelerator": {"kind": "metal", "memory_bytes": 32 << 30}, "os": "darwin",
       "arch": "arm64"}
TWO_CLASSES = "name: two\nclasses: {required: [cpu, apple], optional: [cuda]}\n"


def _classes(service, profile: str = TWO_CLASSES, namespace: str = "team") -> None:
    service.classes.set("cpu", {"accelerator": "none"})
    service.classes.set("apple", {"os": "darwin"})
    service.classes.set("cuda", {"accelerator": "cuda"})
    service.profiles.set(namespace, parse_profile(profile))
    service.verification.set_policy(namespace, True, None)  # the readiness gate on


def _run(service, worker: str, classes: list[str], result: dict) -> dict | None:
    """Claim as a worker of ``classes`` and record ``result``; the job's payload."""
    job = service.queue.claim(worker, [JobKind.VERIFY], classes)
    if job is None:
        return None
    target = service.verification.target(job.payload["manifest_id"], job.payload["digest"],
                                         job.hw_class)
    service.verification.start(target.manifest_id)  # "verifying", as a worker does
    service.verification.record(target, result, job_id=job.id, worker=worker,
                                started_at=datetime.now(UTC))
    assert service.queue.complete(job.id, worker)
    return {"class": job.hw_class, **job.payload}


def _tag(client, name: str, tag: str = "v1") -> dict:
    r = client.get(f"/api/v1/repositories/{name}/tags/{tag}")
    assert r.status_code == 200, r.text
    return r.json()


def test_one_job_per_class_claimed_only_by_a_worker_of_it(client, service):
    _classes(service)
    push_model(client, "team/m", "v1")
    live = [j for j in service.queue.counts()]
    assert live, "the push queued jobs"
    # A worker of no class takes nothing: every job is for a class.
    assert service.queue.claim("w-plain", [JobKind.VERIFY], []) is None
    # A worker of two classes serves both, one job at a time; each class's job once.
    first = _run(service, "w-both", ["cpu", "apple"], report(tps=40.0))
    second = _run(service, "w-both", ["cpu", "apple"], report(tps=20.0))
    assert {first["class"], second["class"]} == {"cpu", "apple"}
    assert service.queue.claim("w-both", [JobKind.VERIFY], ["cpu", "apple"]) is None
    # The optional class's job is left for a cuda worker.
    body = _tag(client, "team/m")
    assert body["status"] == "ready", body
    classes = body["verification"]["classes"]
    assert {n: (c["required"], c["status"]) for n, c in classes.items()} == {
        "cpu": (True, "passed"), "apple": (True, "passed"), "cuda": (False, "queued")}
    tps = {n: c["verification"]["figures"]["generation_tps"] for n, c in classes.items()
           if c["verification"]}
    assert tps == {first["class"]: 40.0, second["class"]: 20.0}
    assert classes["cpu"]["verification"]["class"] == "cpu"
    referrer = classes["cpu"]["verification"]["referrer"]
    artifact = client.get(f"/v2/team/m/manifests/{referrer}",
                          headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert artifact.json()["annotations"]["dev.assay.class"] == "cpu"
    assert "no worker of class cuda" not in str(body["reason"])  # optional: never the reason
    cuda = _run(service, "w-gpu", ["cuda"], report(tps=300.0))
    assert cuda["class"] == "cuda"
    assert _tag(client, "team/m")["verification"]["classes"]["cuda"]["status"] == "passed"


def test_a_required_class_without_a_worker_waits_and_says_so(client, service):
    _classes(service)
    push_model(client, "team/m", "v1")
    service.workers.announce("w-cpu", "box", 1, capabilities=CPU, labels={})
    assert _run(service, "w-cpu", ["cpu"], report())["class"] == "cpu"
    body = _tag(client, "team/m")
    assert body["status"] == "queued"
    apple = body["verification"]["classes"]["apple"]
    assert apple["status"] == "queued"
    assert apple["waiting"] == "waiting for a worker of class apple; none has been seen"
    assert body["reason"] == apple["waiting"]
    assert body["served"] is None  # the gate holds it
    # A Mac that was seen two hours ago and is gone: the message says for how long.
    service.workers.announce("w-mac", "mac", 2, capabilities=MAC, labels={})
    service.workers.stopped("w-mac")
    with service.db.write() as conn:
        from registry.db.tables import workers
        conn.execute(update(workers).where(workers.c.id == "w-mac").values(
            last_seen_at=datetime.now(UTC) - timedelta(hours=2, seconds=5)))
    apple = _tag(client, "team/m")["verification"]["classes"]["apple"]
    assert apple["waiting"] == "waiting for a worker of class apple; none has been seen for 2h"
    # One arrives: no waiting message, and once it passed the model is ready.
    service.workers.announce("w-mac2", "mac", 3, capabilities=MAC, labels={})
    assert "waiting" not in _tag(client, "team/m")["verification"]["classes"]["apple"]
    assert _run(service, "w-mac2", ["apple"], report())["class"] == "apple"
    assert _tag(client, "team/m")["status"] == "ready"


def test_a_failure_on_one_required_class_fails_the_model_and_names_it(client, service):
    _classes(service)
    push_model(client, "team/m", "v1")
    _run(service, "w-cpu", ["cpu"], report())
    _run(service, "w-mac", ["apple"], report(passed=False, reason="does not load"))
    body = _tag(client, "team/m")
    assert body["status"] == "failed"
    assert body["reason"] == "failed on class apple: does not load"
    assert body["verification"]["classes"]["cpu"]["status"] == "passed"


def test_unsupported_and_not_measured_are_results_without_a_run(client, service):
    _classes(service, "classes: {required: [cpu], optional: [apple], optional_timeout: 1h}")
    push_model(client, "team/m", "v1")
    job = service.queue.claim("w-cpu", [JobKind.VERIFY], ["cpu"])
    target = service.verification.target(job.payload["manifest_id"], job.payload["digest"],
                                         job.hw_class)
    service.verification.record(target, {"passed": False, "verdict": "unsupported",
                                         "reason": "no worker of class cpu has llama.cpp"},
                                job_id=job.id, worker="w-cpu", started_at=datetime.now(UTC))
    assert service.queue.complete(job.id, "w-cpu")
    body = _tag(client, "team/m")
    assert body["status"] == "failed"
    assert body["reason"] == "unsupported on class cpu: no worker of class cpu has llama.cpp"
    cpu = body["verification"]["classes"]["cpu"]
    assert (cpu["status"], cpu["verification"]["verdict"]) == ("unsupported", "unsupported")
    assert cpu["verification"]["referrer"] is None  # nothing ran: no results artifact
    # The optional class: nobody took it within the hour.
    assert service.class_upkeep.expire_optional() == 0
    with service.db.write() as conn:
        conn.execute(update(jobs).where(jobs.c.hw_class == "apple").values(
            created_at=datetime.now(UTC) - timedelta(hours=1, minutes=1)))
    assert service.class_upkeep.expire_optional() == 1
    apple = _tag(client, "team/m")["verification"]["classes"]["apple"]
    assert apple["status"] == "not_measured"
    assert apple["reason"] == "no worker of class apple took it within 1h"
    assert service.queue.claim("w-mac", [JobKind.VERIFY], ["apple"]) is None


def test_a_class_added_to_a_profile_measures_ready_models_and_keeps_them_served(client,
                                                                                service):
    push_model(client, "team/m", "v1")
    _run(service, "w-any", [], report())
    assert _tag(client, "team/m")["status"] == "ready"
    _classes(service, "classes: {required: [apple]}")
    body = _tag(client, "team/m")
    assert body["status"] == "ready" and body["served"] == body["digest"]
    assert body["verification"]["classes"]["apple"]["status"] == "queued"
    assert service.queue.claim("w-cpu", [JobKind.VERIFY], ["cpu"]) is None
    _run(service, "w-mac", ["apple"], report(passed=False, reason="too slow"))
    body = _tag(client, "team/m")
    assert (body["status"], body["reason"]) == ("failed", "failed on class apple: too slow")


def _measured(tps: float, profile: dict) -> dict:
    """A passed report under ``profile`` with one run at ``tps`` tokens/s."""
    run = {"context": 2048, "kv_cache": "f16", "parallel": 1, "prompt_tokens": 128,
           "max_tokens": 32, "generation_tps": tps, "peak_rss_bytes": 1 << 28}
    return {**report(tps=tps), "profile": profile, "runs": [run]}


def test_regressions_compare_within_a_class(client, service):
    _classes(service, "name: p\nruns: []\nquality: {perplexity: false, prompts: []}\n"
                      "classes: {required: [cpu, apple]}\n")
    profile = service.profiles.applies("team/m").profile.recorded()
    push_model(client, "team/m", "v1", variant="one")
    _run(service, "w-cpu", ["cpu"], _measured(40.0, profile))
    _run(service, "w-mac", ["apple"], _measured(400.0, profile))
    push_model(client, "team/m", "v1", variant="two")
    # On the cpu class 38 tokens/s is no regression against 40, though it is against the
    # Mac's 400; on apple 300 is one (more than 10% down from 400).
    _run(service, "w-cpu", ["cpu"], _measured(38.0, profile))
    _run(service, "w-mac", ["apple"], _measured(300.0, profile))
    classes = _tag(client, "team/m")["verification"]["classes"]
    assert classes["cpu"]["verification"]["regressions"]["items"] == []
    items = classes["apple"]["verification"]["regressions"]["items"]
    assert [i["metric"] for i in items] == ["generation_tps"], items


def test_a_profile_naming_classes_keeps_its_hash_and_models_without_classes_unchanged(
        client, service):
    plain = parse_profile("name: p")
    assert parse_profile(TWO_CLASSES.replace("two", "p")).sha256 == plain.sha256
    push_model(client, "other/m", "v1")
    _classes(service)  # on "team": "other" keeps the default profile, one job for anyone
    job = service.queue.claim("w-any", [JobKind.VERIFY], [])
    assert job is not None and job.hw_class is None
    assert manifest_id(service, "other/m", job.payload["digest"]) == job.payload["manifest_id"]


def test_a_result_that_decides_nothing_leaves_the_model_queued_not_verifying(client,
                                                                             service):
    _classes(service, "classes: {required: [apple], optional: [cuda]}")
    push_model(client, "team/m", "v1")
    _run(service, "w-gpu", ["cuda"], report(passed=False, reason="out of memory"))
    body = _tag(client, "team/m")
    assert (body["status"], body["served"]) == ("queued", None), body
    assert body["verification"]["classes"]["cuda"]["status"] == "failed"  # optional: shown
    _run(service, "w-mac", ["apple"], report())
    assert _tag(client, "team/m")["status"] == "ready"


def test_a_failed_model_stays_failed_while_an_optional_class_is_measured(client, service):
    _classes(service, "classes: {required: [cpu], optional: [cuda]}")
    push_model(client, "team/m", "v1")
    _run(service, "w-cpu", ["cpu"], report(passed=False, reason="bad"))
    _run(service, "w-gpu", ["cuda"], report())
    body = _tag(client, "team/m")
    assert (body["status"], body["reason"]) == ("failed", "failed on class cpu: bad"), body


def test_a_re_run_waits_for_the_new_result_on_a_class_that_failed(client, service):
    _classes(service, "classes: {required: [cpu, apple]}")
    push_model(client, "team/m", "v1")
    _run(service, "w-cpu", ["cpu"], report())
    _run(service, "w-mac", ["apple"], report(passed=False, reason="too slow"))
    assert _tag(client, "team/m")["status"] == "failed"
    assert client.post("/api/v1/repositories/team/m/tags/v1/verify").status_code == 202
    _run(service, "w-cpu", ["cpu"], report())
    assert _tag(client, "team/m")["status"] == "queued"  # apple's old failure decides nothing
    _run(service, "w-mac", ["apple"], report())
    assert _tag(client, "team/m")["status"] == "ready"


def test_an_optional_class_that_could_not_run_does_not_fail_the_model(client, service):
    _classes(service, "classes: {required: [cpu], optional: [cuda]}")
    push_model(client, "team/m", "v1")
    job = service.queue.claim("w-gpu", [JobKind.VERIFY], ["cuda"])
    target = service.verification.target(job.payload["manifest_id"], job.payload["digest"],
                                         job.hw_class)
    service.verification.abandon(target, "disk full")
    body = _tag(client, "team/m")
    assert body["status"] == "queued", body
    cuda = body["verification"]["classes"]["cuda"]["verification"]
    assert (cuda["verdict"], cuda["reason"]) == ("failed",
                                                 "verification could not run: disk full")


def test_profile_changes_settle_waiting_and_ready_models(client, service):
    _classes(service, "classes: {required: [cpu, apple], optional: [cuda]}")
    push_model(client, "team/a", "v1", variant="a")
    push_model(client, "team/b", "v1", variant="b")
    _run(service, "w-cpu", ["cpu"], report())
    _run(service, "w-cpu", ["cpu"], report())
    # team/b: cuda measured as not measured, then ready on apple.
    with service.db.write() as conn:
        conn.execute(update(jobs).where(jobs.c.hw_class == "cuda").values(
            created_at=datetime.now(UTC) - timedelta(days=2)))
    assert service.class_upkeep.expire_optional() == 2
    assert _tag(client, "team/a")["status"] == "queued"
    # Apple no longer required: team/a, waiting for it, is ready at once.
    service.profiles.set("team", parse_profile("classes: {required: [cpu], optional: [cuda]}"))
    assert _tag(client, "team/a")["status"] == "ready"
    # cuda becomes required: measured again (it was not measured), served meanwhile.
    service.profiles.set("team", parse_profile("classes: {required: [cpu, cuda]}"))
    body = _tag(client, "team/a")
    assert body["status"] == "ready" and body["served"] == body["digest"]
    assert body["verification"]["classes"]["cuda"]["status"] == "queued"
    # No class at all: a model still waiting gets its job for any worker back.
    push_model(client, "team/c", "v1", variant="c")
    service.profiles.set("team", parse_profile("name: plain"))
    job = service.queue.claim("w-any", [JobKind.VERIFY], [])
    assert job is not None and job.hw_class is None


def test_jobs_of_a_deleted_model_are_finished_unrun(client, service):
    _classes(service, "classes: {required: [apple], optional: [cuda]}")
    digest = push_model(client, "team/m", "v1")
    assert client.delete(f"/v2/team/m/manifests/{digest}").status_code == 202
    with service.db.write() as conn:
        conn.execute(update(jobs).values(created_at=datetime.now(UTC) - timedelta(hours=1)))
    service.class_upkeep.expire_optional()
    assert service.queue.claim("w", [JobKind.VERIFY], ["apple", "cuda"]) is None
    assert service.queue.stats([JobKind.VERIFY])["queued"] == 0
