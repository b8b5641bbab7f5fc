"""GET /metrics on both stacks: request counters by route template and status, body
byte counters, and the scrape-time figures read from the database (queue depth, model
statuses, verification outcomes and durations, regressions found)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from registry.db.tables import jobs, manifests
from tests.api.test_regressions import profile, profiled, run
from tests.api.test_regressions import record as record_pushed
from tests.support.metrics import scrape, value
from tests.support.oci import push_image, sha256
from tests.support.verification import FakeWorker, push_model, report, verify

BLOBS = "/v2/{name:path}/blobs/{digest}"
MANIFESTS = "/v2/{name:path}/manifests/{reference}"


def labelled(samples, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def test_requests_counted_by_route_template_status_and_bytes(client):
    layer = b"x" * 100_000
    before = scrape(client)
    digest, _ = push_image(client, "team/app", "v1", layers=[layer])
    assert client.get("/v2/team/app/manifests/v1").status_code == 200
    layer_digest = sha256(layer)
    r = client.get(f"/v2/team/app/blobs/{layer_digest}")
    assert r.status_code == 200 and len(r.content) == len(layer)
    assert client.get("/v2/team/app/manifests/nope").status_code == 404
    # No route: an API path nothing serves (any other path is a repository web page).
    assert client.get("/api/no/such/path").status_code == 404
    assert client.get("/api/v1/repositories").status_code == 200  # under a Mount
    assert client.request("BREW", "/v2/").status_code == 405
    after = scrape(client)

    def added(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    total = "assay_http_requests_total"
    assert added(total, method="PUT", route=MANIFESTS, status="201") == 1
    assert added(total, method="GET", route=MANIFESTS, status="200") == 1
    assert added(total, method="GET", route=MANIFESTS, status="404") == 1
    assert added(total, method="GET", route=BLOBS, status="200") == 1
    assert added(total, method="POST", route="/v2/{name:path}/blobs/uploads/",
                 status="201") == 2  # config and layer, monolithic
    assert added(total, method="GET", route="unmatched", status="404") == 1
    assert added(total, method="GET", route="/api/v1/repositories", status="200") == 1
    # A made-up method is "other": clients cannot make label values without end.
    assert added(total, method="other", route="/v2/", status="405") == 1
    # Never the raw path as a label.
    assert not any("team/app" in dict(labels).get("route", "")
                   for labels in labelled(after, total))
    assert added("assay_http_request_duration_seconds_count",
                 method="GET", route=BLOBS) == 1
    assert added("assay_http_request_bytes_total", method="POST",
                 route="/v2/{name:path}/blobs/uploads/") >= len(layer)
    assert added("assay_http_response_bytes_total", method="GET", route=BLOBS) >= len(layer)
    # The previous scrape itself was counted.
    assert value(after, total, method="GET", route="/metrics", status="200") >= 1
    assert digest.startswith("sha256:")


def test_queue_depth_matches_the_jobs_table(client, service):
    with service.db.write() as conn:
        for i in range(3):
            service.queue.enqueue(conn, "metrics-test", {"i": i})
        service.queue.enqueue(conn, "other-kind", {})
    with service.db.read() as conn:
        rows = conn.execute(select(jobs.c.kind, jobs.c.status, func.count())
                            .group_by(jobs.c.kind, jobs.c.status)).all()
    samples = scrape(client)
    assert value(samples, "assay_metrics_database_up", -1) == 1
    assert labelled(samples, "assay_jobs") == {
        (("kind", kind), ("status", status)): float(n) for kind, status, n in rows}
    assert value(samples, "assay_jobs", kind="metrics-test", status="queued") == 3
    assert value(samples, "assay_jobs", kind="other-kind", status="queued") == 1


def test_verification_outcomes_and_model_statuses(client, service):
    passed = push_model(client, "team/tiny", "v1", "a")
    failed = push_model(client, "team/tiny", "v2", "b")
    verify(service, "team/tiny", passed)
    verify(service, "team/tiny", failed, passed=False, reason="does not load")
    samples = scrape(client)

    runs = labelled(samples, "assay_verifications_total")
    assert runs == {(("backend", "llama.cpp"), ("verdict", "passed")): 1.0,
                    (("backend", "llama.cpp"), ("verdict", "failed")): 1.0}
    for verdict in ("passed", "failed"):
        labels = dict(verdict=verdict, backend="llama.cpp")
        assert value(samples, "assay_verification_duration_seconds_count", **labels) == 1
        assert 0 <= value(samples, "assay_verification_duration_seconds_sum", -1,
                          **labels) < 60

    with service.db.read() as conn:
        statuses = Counter(dict(conn.execute(
            select(manifests.c.status, func.count())
            .where(manifests.c.status.is_not(None)).group_by(manifests.c.status)).all()))
    assert labelled(samples, "assay_model_manifests") == {
        (("status", s),): float(n) for s, n in statuses.items()}
    assert sum(statuses.values()) == 2
    # The verify jobs the pushes queued, now done, are in the queue figures too.
    assert value(samples, "assay_jobs", kind="verify", status="done") == 2


def test_regressions_by_verdict_and_models_whose_latest_run_regressed(client, service):
    """Synthetic reports (the worker played through the service layer, as in
    tests/api/test_regressions.py): the registry finds the regressions when it records
    them, and the scrape counts what it found."""
    samples = scrape(client)
    assert labelled(samples, "assay_verification_regressions_total") == {}
    assert value(samples, "assay_model_manifests_regressed", -1) == 0

    warn, fail = profile(name="warn"), profile(name="fail", regressions={"action": "fail"})
    for name, prof in (("team/warn", warn), ("team/fail", fail), ("team/same", warn)):
        record_pushed(service, client, name, "v1", profiled(prof, runs=[run(tps=20.0)]), "a")
    digest, slower = record_pushed(service, client, "team/warn", "v1",
                                   profiled(warn, runs=[run(tps=10.0)]), "b")
    _, failed = record_pushed(service, client, "team/fail", "v1",
                              profiled(fail, runs=[run(tps=10.0)]), "b")
    _, same = record_pushed(service, client, "team/same", "v1",
                            profiled(warn, runs=[run(tps=20.0)]), "b")
    assert (slower["verdict"], len(slower["regressions"]["items"])) == ("passed", 1)
    assert (failed["verdict"], len(failed["regressions"]["items"])) == ("failed", 1)
    assert same["regressions"]["items"] == []           # compared, nothing regressed

    samples = scrape(client)
    assert labelled(samples, "assay_verification_regressions_total") == {
        (("verdict", "passed"),): 1.0, (("verdict", "failed"),): 1.0}
    assert value(samples, "assay_model_manifests_regressed", -1) == 2

    # A later run of the slower model without a comparison (a report from before
    # profiles): its latest run no longer regressed; the runs that did still count.
    service.verification.request("team/warn", digest)
    FakeWorker(service, "team/warn", digest).finish(report())
    samples = scrape(client)
    assert value(samples, "assay_model_manifests_regressed", -1) == 1
    assert value(samples, "assay_verification_regressions_total", -1, verdict="passed") == 1
