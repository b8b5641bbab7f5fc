"""Job-queue throughput: trivial jobs claimed and completed by 4 worker processes.

    .venv/bin/python -m bench.queue_throughput [--jobs 2000] [--workers 4] [--repeats 5]
    .venv/bin/python -m bench.queue_throughput --quick       # 500 jobs, 1 repetition

For each backend (SQLite in WAL mode on the repository's own disk; a real PostgreSQL 15
started from Debian's binaries the way ``tests/support/postgres.py`` does, stopped at the
end) and each repetition, on a fresh database built by the migrations:

1. enqueue: one process enqueues ``--jobs`` jobs, one write transaction each (as a
   manifest PUT does); timed as enqueues/s;
2. drain: ``--workers`` processes (spawned and connected before the clock starts) loop
   ``JobQueue.claim`` + ``JobQueue.complete`` until the queue is empty; timed from the
   start signal to the last completion, as jobs/s.

Every claim is logged by the claiming process; a run fails unless every job was claimed
exactly once, by one worker, at attempt 1, and is ``done``. The figure is the median over
repetitions; backends alternate in order between repetitions. There is no target
figure: the requirement is "no double claims". Results go to
``bench/results/queue_throughput-<date>[-quick][-pg-fsync-off].json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import pwd
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import REPO_ROOT, RESULTS_DIR, BenchError, machine_facts, median, pick_workdir, sh
from registry.db import Database, migrate
from registry.db.queue import JobQueue, new_worker_id
from tests.support.postgres import (
    PG_BINDIR,
    PostgresServer,
    _as_postgres,
    _run,
    _stop,
)
from tests.support.processes import free_port

RUN_TIMEOUT = 300.0  # seconds for one drain; the run fails beyond it
NOTES = [
    "Jobs are trivial (claim, then complete with a tiny result): this measures the queue's "
    "SQL round trips and locking, not any work.",
    "Workers, the enqueuing process and PostgreSQL share the machine's cores; with 2 cores, "
    "4 workers oversubscribe the CPU.",
    "SQLite runs in WAL mode with synchronous=NORMAL (registry.db): a commit does not fsync "
    "(durable at checkpoints). PostgreSQL runs with its durable defaults (fsync=on, "
    "synchronous_commit=on) unless --pg-fsync off.",
    "Worker CPU per job is the workers' own CPU time (claim + complete + idle polls, all 4 "
    "processes) divided by the jobs: it does not include the database server and is far "
    "less sensitive to other load on the machine than jobs/s. The 1-minute load average "
    "before each drain is recorded with its sample.",
    "An idle worker (claim found nothing) sleeps 1 ms and checks the counts before "
    "polling again; it stops when nothing is queued or running.",
]


# ------------------------------------------------------------------ the worker process


def drain(url: str, out: str, ready, start) -> None:
    """Worker process: connect, wait for the start signal, claim+complete until empty."""
    db = Database(url, pool_size=2)
    queue = JobQueue(db)
    worker_id = new_worker_id("bench")
    queue.stats()  # open the connection before the clock starts
    ready.set()
    start.wait(120)
    cpu0 = time.process_time()
    claimed: list[int] = []
    refused = idle = 0
    while True:
        job = queue.claim(worker_id)
        if job is None:
            counts = queue.stats()
            if counts["queued"] == 0 and counts["running"] == 0:
                break
            idle += 1
            time.sleep(0.001)
            continue
        claimed.append(job.id)
        if not queue.complete(job.id, worker_id, {"ok": True}):
            refused += 1
        end = time.monotonic()
    Path(out).write_text(json.dumps({"worker_id": worker_id, "claimed": claimed,
                                     "refused": refused, "idle_polls": idle,
                                     "cpu_s": time.process_time() - cpu0,
                                     "end": end if claimed else None}))
    db.dispose()


# ------------------------------------------------------------------------- backends


@contextmanager
def postgres(fsync: bool) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server on loopback (as tests/support/postgres.py starts it:
    initdb + pg_ctl as the postgres user), stopped and deleted on exit."""
    initdb, pg_ctl = PG_BINDIR / "initdb", PG_BINDIR / "pg_ctl"
    if not os.access(initdb, os.X_OK) or not os.access(pg_ctl, os.X_OK):
        raise BenchError(f"PostgreSQL binaries not found in {PG_BINDIR} "
                         "(apt-get install postgresql-15 or set ASSAY_TEST_PG_BINDIR)")
    # On the repository's disk (not tmpfs), in a short path (the socket path limit).
    base = Path(tempfile.mkdtemp(prefix="assay-pg-", dir="/var/tmp"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    datadir, logfile = base / "data", base / "postgres.log"
    port = free_port()
    try:
        _run([str(initdb), "-D", str(datadir), "-A", "trust", "-U", "postgres",
              "-E", "UTF8", "--no-sync"], "initdb")
        options = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 "
                   f"-c fsync={'on' if fsync else 'off'} -c max_connections=100")
        try:
            _run([str(pg_ctl), "-D", str(datadir), "-o", options, "-l", str(logfile),
                  "start", "-w", "-t", "60"], "pg_ctl start", logfile)
            yield PostgresServer(port, datadir, logfile)
        finally:
            _stop(pg_ctl, datadir)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def pg_version() -> str:
    return sh(_as_postgres([str(PG_BINDIR / "postgres"), "--version"]))


# --------------------------------------------------------------------------- one run


def run_once(url: str, jobs: int, workers: int, work: Path) -> dict:
    migrate(url)
    db = Database(url)
    queue = JobQueue(db)
    try:
        t0 = time.perf_counter()
        ids = set()
        for i in range(jobs):
            with db.write() as conn:
                ids.add(queue.enqueue(conn, "bench", {"i": i}))
        enqueue_s = time.perf_counter() - t0

        ctx = multiprocessing.get_context("spawn")
        start = ctx.Event()
        readies = [ctx.Event() for _ in range(workers)]
        outs = [work / f"worker-{n}.json" for n in range(workers)]
        for out in outs:
            out.unlink(missing_ok=True)
        procs = [ctx.Process(target=drain, args=(url, str(out), ready, start))
                 for out, ready in zip(outs, readies, strict=True)]
        for p in procs:
            p.start()
        try:
            for ready, p in zip(readies, procs, strict=True):
                if not ready.wait(60):
                    raise BenchError(f"worker pid {p.pid} did not get ready")
            load_before = os.getloadavg()[0]
            t_start = time.monotonic()
            start.set()
            deadline = t_start + RUN_TIMEOUT
            for p in procs:
                p.join(max(0.0, deadline - time.monotonic()))
            if any(p.is_alive() for p in procs):
                raise BenchError(f"the drain did not finish within {RUN_TIMEOUT:.0f}s")
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join(10)
        if any(p.exitcode != 0 for p in procs):
            raise BenchError(f"worker exit codes {[p.exitcode for p in procs]}")

        reports = [json.loads(out.read_text()) for out in outs]
        drain_s = max(r["end"] for r in reports if r["end"] is not None) - t_start
        claims = Counter(job_id for r in reports for job_id in r["claimed"])
        double = sorted(job_id for job_id, n in claims.items() if n > 1)
        missing = sorted(ids - set(claims))
        refused = sum(r["refused"] for r in reports)
        owner = {job_id: r["worker_id"] for r in reports for job_id in r["claimed"]}
        wrong = [job_id for job_id in ids
                 if (job := queue.get(job_id)) is None or job.status != "done"
                 or job.attempts != 1 or job.locked_by != owner.get(job_id)]
        if double or missing or refused or wrong:
            raise BenchError(f"claims not exactly-once: double {double[:10]}, missing "
                             f"{missing[:10]}, refused completes {refused}, rows not done "
                             f"once by their claimer {wrong[:10]}")
        return {
            "jobs": jobs, "workers": workers,
            "enqueue_s": enqueue_s, "enqueue_per_s": jobs / enqueue_s,
            "drain_s": drain_s, "jobs_per_s": jobs / drain_s,
            "worker_cpu_us_per_job": sum(r["cpu_s"] for r in reports) / jobs * 1e6,
            "load_1min_before_after": [load_before, os.getloadavg()[0]],
            "per_worker": [len(r["claimed"]) for r in reports],
            "idle_polls": [r["idle_polls"] for r in reports],
            "double_claims": len(double),
        }
    finally:
        db.dispose()


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=None, help="jobs per run (default 2000)")
    ap.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    ap.add_argument("--repeats", type=int, default=None, help="runs per backend (default 5)")
    ap.add_argument("--backends", default="sqlite,postgres",
                    help="comma-separated: sqlite, postgres (default both)")
    ap.add_argument("--pg-fsync", choices=["on", "off"], default="on",
                    help="PostgreSQL fsync setting (default on, its durable default)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 500 jobs, 1 repetition")
    args = ap.parse_args(argv)
    jobs = args.jobs or (500 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 5)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "postgres"}:
        ap.error("--backends takes sqlite and/or postgres")

    facts = machine_facts()
    for irrelevant in ("curl", "wrk", "distribution"):
        facts.pop(irrelevant, None)
    facts.update(sqlite=sqlite3.sqlite_version,
                 postgres=pg_version() if "postgres" in backends else "",
                 pg_fsync=args.pg_fsync)
    print("# job queue throughput\n")
    for k, v in facts.items():
        print(f"- {k}: {v}")
    work = pick_workdir()
    print(f"- workdir: {work}")
    print(f"- {jobs} trivial jobs, {args.workers} worker processes, {repeats} repetition(s) "
          "per backend (median)\n")

    samples: dict[str, list[dict]] = {b: [] for b in backends}
    try:
        with postgres(args.pg_fsync == "on") if "postgres" in backends else _none() as pg:
            for i in range(repeats):
                for backend in backends if i % 2 == 0 else backends[::-1]:
                    if backend == "sqlite":
                        url = f"sqlite:///{work / f'queue-{i}.db'}"
                    else:
                        url = pg.create_database(f"assay_queue_bench_{i}")
                    run = run_once(url, jobs, args.workers, work)
                    samples[backend].append(run)
                    print(f"  #{i} {backend:8s} drain {run['drain_s']:6.2f}s "
                          f"{run['jobs_per_s']:7.0f} jobs/s  enqueue "
                          f"{run['enqueue_per_s']:6.0f}/s  worker CPU "
                          f"{run['worker_cpu_us_per_job']:4.0f} us/job  per worker "
                          f"{run['per_worker']}  double claims {run['double_claims']}  "
                          f"load {run['load_1min_before_after'][0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    figures = {}
    for backend, runs in samples.items():
        figures[backend] = {
            "jobs_per_s": median([r["jobs_per_s"] for r in runs]),
            "jobs_per_s_min": min(r["jobs_per_s"] for r in runs),
            "jobs_per_s_max": max(r["jobs_per_s"] for r in runs),
            "enqueue_per_s": median([r["enqueue_per_s"] for r in runs]),
            "worker_cpu_us_per_job": median([r["worker_cpu_us_per_job"] for r in runs]),
            "double_claims": sum(r["double_claims"] for r in runs),
        }
    print(f"\n| backend | claim+complete, jobs/s ({args.workers} workers; median, range) "
          "| worker CPU per job, us | enqueue, jobs/s (1 process, 1 tx each) | double claims |")
    print("|---|---|---|---|---|")
    for backend, f in figures.items():
        name = "postgresql" + ("" if args.pg_fsync == "on" else " (fsync off)") \
            if backend == "postgres" else "sqlite (WAL)"
        print(f"| {name} | {f['jobs_per_s']:.0f} ({f['jobs_per_s_min']:.0f}-"
              f"{f['jobs_per_s_max']:.0f}) | {f['worker_cpu_us_per_job']:.0f} | "
              f"{f['enqueue_per_s']:.0f} | "
              f"{f['double_claims']} |")

    RESULTS_DIR.mkdir(exist_ok=True)
    suffix = ("-quick" if args.quick else "") + ("-pg-fsync-off" if args.pg_fsync == "off" else "")
    out = RESULTS_DIR / f"queue_throughput-{dt.date.today().isoformat()}{suffix}.json"
    out.write_text(json.dumps({"machine": facts, "jobs": jobs, "workers": args.workers,
                               "repeats": repeats, "notes": NOTES, "figures": figures,
                               "samples": samples}, indent=2) + "\n")
    print(f"\nresults: {out.relative_to(REPO_ROOT)}")
    return 0


@contextmanager
def _none() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    sys.exit(main())
