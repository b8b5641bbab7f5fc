"""Statuses a dead worker could not repair, repaired by ``VerificationService.reconcile``
(workers call it every few seconds)."""

from __future__ import annotations

from tests.support.rest import describe
from tests.support.verification import WORKER, manifest_id, push_model


def claim_and_start(service, name: str, digest: str):
    job = service.queue.claim(WORKER, ["verify"])
    assert job is not None
    service.verification.start(manifest_id(service, name, digest))
    return job


def test_a_job_back_in_the_queue_puts_its_model_back_to_queued(client, service):
    digest = push_model(client, "team/tiny", "v1")
    job = claim_and_start(service, "team/tiny", digest)
    assert describe(client, "team/tiny", "v1")["status"] == "verifying"
    # The worker died; its stale job went back to the queue without touching the model.
    assert service.queue.release(job.id, WORKER)
    assert service.verification.reconcile() == 0
    body = describe(client, "team/tiny", "v1")
    assert (body["status"], body["job"]["status"]) == ("queued", "queued")


def test_a_job_that_ended_without_a_verdict_fails_its_model(client, service):
    digest = push_model(client, "team/tiny", "v1")
    job = claim_and_start(service, "team/tiny", digest)
    assert service.queue.fail(job.id, WORKER, "worker w stopped heartbeating", retry=False)
    assert service.verification.reconcile() == 1
    body = describe(client, "team/tiny", "v1")
    assert body["status"] == "failed"
    assert body["reason"] == "verification could not run: worker w stopped heartbeating"
    assert service.verification.reconcile() == 0  # nothing left to repair



def test_a_delivery_whose_job_died_on_its_last_attempt_is_dead_lettered(client, service):
    from sqlalchemy import select

    from registry.db.tables import deliveries

    service.settings.outbound_allow = "127.0.0.1:9"  # a subscriber on loopback: allowed
    service.events.create("http://127.0.0.1:9/hook", "s" * 16, ["push"])
    push_model(client, "team/tiny", "v1")
    job = service.queue.claim(WORKER, ["deliver"])
    assert job is not None
    # The worker died during the last attempt: the queue failed the job, the row was
    # never told.
    assert service.queue.fail(job.id, WORKER, "worker w stopped heartbeating", retry=False)
    with service.db.read() as conn:
        assert conn.execute(select(deliveries.c.status)).scalar_one() == "pending"
    assert service.events.reconcile() == 1
    with service.db.read() as conn:
        row = conn.execute(select(deliveries.c.status, deliveries.c.last_error)).one()
    assert tuple(row) == ("dead", "worker w stopped heartbeating")
    assert service.events.reconcile() == 0


def remote_model(service, status: str) -> tuple[int, str]:
    """A model in another registry, its job claimed by a worker (as worker/remote.py)."""
    from registry.db.queue import JobKind
    from registry.db.tables import remote_models, utcnow
    from registry.services.remote import dedupe_key

    digest = "sha256:" + "ab" * 32
    now = utcnow()
    with service.db.write() as conn:
        rid = conn.execute(remote_models.insert().values(
            reference=f"elsewhere:5000/team/m@{digest}", registry="elsewhere:5000",
            repository="team/m", digest=digest, status=status, created_at=now,
            updated_at=now).returning(remote_models.c.id)).scalar_one()
        service.queue.enqueue(conn, JobKind.VERIFY_REMOTE, {"remote_model_id": rid},
                              dedupe_key=dedupe_key(rid, digest))
    job = service.queue.claim(WORKER, [JobKind.VERIFY_REMOTE])
    assert job is not None
    return rid, job.id


def remote_status(service, rid: int) -> tuple:
    from sqlalchemy import select

    from registry.db.tables import remote_models

    with service.db.read() as conn:
        return tuple(conn.execute(select(remote_models.c.status, remote_models.c.status_reason)
                                  .where(remote_models.c.id == rid)).one())


def test_remote_models_are_repaired_the_same_way(service):
    rid, job_id = remote_model(service, "verifying")
    assert service.queue.release(job_id, WORKER)  # back in the queue, model untouched
    assert service.remote.reconcile() == 0
    assert remote_status(service, rid) == ("queued", None)

    job = service.queue.claim(WORKER, ["verify_remote"])
    assert service.queue.fail(job.id, WORKER, "worker w stopped heartbeating", retry=False)
    assert service.remote.reconcile() == 1
    assert remote_status(service, rid) == \
        ("failed", "verification could not run: worker w stopped heartbeating")
