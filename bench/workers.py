"""Verification throughput: models verified per minute by one ``assay worker`` vs two.

    .venv/bin/python -m bench.workers [--models 6] [--threads 1,auto] [--repeats 2] [--quick]

Runs the team deployment as real processes on loopback (``tests/support/topology.py``: one
PostgreSQL 15 and one moto S3 server for the whole run; per configuration a fresh database
and bucket, ``assay migrate``, one ``assay serve`` replica with no in-process workers and
the readiness gate on, and 1 or 2 ``assay worker -c 1`` processes). Per configuration:

1. untimed: the real Gemma 3 270M Q4_K_M GGUF (253 MB) is uploaded once to the repository,
   and so is each model's config blob: an Ollama ConfigV2 (``ollama_config`` of
   ``tests/support/ollama_replay.py``) with its own ``model_type`` "bench-<k>";
2. the ``--models`` (K) manifests are PUT one after the other, byte for byte what
   ``ollama push`` sends last (Docker manifest v2, the config and the GGUF layer): K
   distinct manifests, K verification jobs;
3. every tag is polled through REST (``GET /api/v1/repositories/<name>/tags/<tag>``) every
   0.2 s until ``ready``; any ``failed`` fails the run.

``--clock queued`` (default): the K models are queued before any worker runs, and the clock
runs from spawning the worker process(es) to the last ``ready``: how fast a pool drains a
backlog, worker start-up included. ``--clock push``: the workers run from the start and
the clock runs from the first manifest PUT; on moto each model's manifest PUT costs
about 0.7 s of S3 server CPU (the registry makes five ranged GETs of the GGUF while it
reads the model card, and moto spends ~0.15 s on each, whatever the range), which then
competes with the workers for the same cores. models/min = K / clock * 60. Each
worker materialises the GGUF from S3 into its own model cache on its first job (a real
cost of a fresh worker, included). Also reported: the rate once every worker has finished
its first model, (K - workers) / (last ready - the workers-th ready) * 60, i.e. without the
start-up (imports, first materialisation), which weighs heavily with K = 6.
``--threads`` lists the ``ASSAY_VERIFY_THREADS`` settings to run (``auto``: unset, i.e.
every core); for each, 1 worker and 2 workers run ``--repeats`` times (default 2), which
goes first alternating. Figures are medians; the 2-vs-1 ratio is the ratio of the medians
and the median of the per-repetition ratios. Results are printed as a Markdown table and
written to
``bench/results/workers-<date>[-quick][-push].json`` with every model's timings, which worker
verified it, and the load average at start and end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from bench import common
from bench.common import (
    CpuMeter,
    machine_facts,
    median,
    pick_workdir,
    postmaster_pid,
    sh,
    tree_pids,
    with_query,
)
from tests.support.models import GEMMA_DIGEST, GEMMA_SIZE, gemma_gguf_path
from tests.support.ollama_replay import (
    DOCKER_CONFIG_V1,
    DOCKER_MANIFEST_V2,
    MEDIA_MODEL,
    Blob,
    describe,
    go_json,
    ollama_config,
    ollama_manifest,
)
from tests.support.postgres import PostgresServer, start_postgres
from tests.support.s3 import S3Server, start_s3
from tests.support.topology import Topology, start_topology

REPO = "bench/gemma3"
POLL_S = 0.2
CLOCKS = {"queued": "the models are queued first (untimed); from spawning the workers to the "
                    "last ready",
          "push": "the workers run already; from the first manifest PUT to the last ready"}
DEPLOY_ENV = {"ASSAY_GATE": "true", "ASSAY_LOG_LEVEL": "warning"}


def machine_note() -> str:
    n = os.cpu_count() or 0
    return (f"This machine has {n} cores, shared by the workers, their verifier children, "
            "the replica, PostgreSQL, moto and this script (and whatever else runs here). "
            "Verification is CPU-bound llama.cpp work: with ASSAY_VERIFY_THREADS=1 a "
            "verifier uses one core, so a second worker can use the other one (2x at "
            "best, less what the rest takes); with it unset every verifier uses every "
            "core, so a second worker adds no compute, only the overlap of one job's fixed "
            "costs (process start, model load, materialisation, polling, storing the "
            "report) with the other's generation. On a real deployment each worker gets "
            "its own cores.")


def fail(topo: Topology, what: str) -> common.BenchError:
    logs = "\n".join(f"--- {name} ---\n{text[-3000:]}" for name, text in topo.logs())
    return common.BenchError(f"{what}\n{logs}")


def upload_gguf(topo: Topology, gguf: Path) -> None:
    """One monolithic upload of the GGUF into ``REPO`` (untimed), as curl streams it."""
    base = topo.registries[0].url
    r = httpx.post(f"{base}/v2/{REPO}/blobs/uploads/", headers={"Content-Length": "0"},
                   timeout=60)
    if r.status_code != 202 or "location" not in r.headers:
        raise fail(topo, f"POST upload -> {r.status_code} {r.text[:500]}")
    loc = with_query(str(httpx.URL(base).join(r.headers["location"])), digest=GEMMA_DIGEST)
    p = subprocess.run(["curl", "-sS", "-H", "Expect:", "-o", "/dev/null", "-w", "%{http_code}",
                        "-X", "PUT", "-T", str(gguf), "-H",
                        "Content-Type: application/octet-stream", loc],
                       capture_output=True, text=True, check=False)
    if p.returncode != 0 or p.stdout.strip() != "201":
        raise fail(topo, f"PUT {loc} -> curl {p.returncode} {p.stdout} {p.stderr}")


def put_blob(topo: Topology, client: httpx.Client, data: bytes) -> None:
    """A small blob in one monolithic PUT (untimed setup)."""
    base = topo.registries[0].url
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = client.post(f"{base}/v2/{REPO}/blobs/uploads/", headers={"Content-Length": "0"})
    if r.status_code != 202 or "location" not in r.headers:
        raise fail(topo, f"POST upload -> {r.status_code} {r.text[:500]}")
    loc = with_query(str(httpx.URL(base).join(r.headers["location"])), digest=digest)
    r = client.put(loc, content=data, headers={"Content-Type": "application/octet-stream"})
    if r.status_code != 201:
        raise fail(topo, f"PUT {loc} -> {r.status_code} {r.text[:500]}")


def put_manifests(topo: Topology, manifests: dict[str, bytes], start: float
                  ) -> tuple[dict[str, float], dict[str, float]]:
    """PUT every manifest in turn: (tag -> seconds since ``start`` when its PUT returned,
    tag -> the PUT's own latency)."""
    url = f"{topo.registries[0].url}/v2/{REPO}/manifests"
    pushed: dict[str, float] = {}
    put_s: dict[str, float] = {}
    with httpx.Client(timeout=60) as client:
        for tag, body in manifests.items():
            t0 = time.perf_counter()
            r = client.put(f"{url}/{tag}", content=body,
                           headers={"Content-Type": DOCKER_MANIFEST_V2})
            if r.status_code != 201:
                raise fail(topo, f"PUT manifest {tag} -> {r.status_code} {r.text[:1000]}")
            put_s[tag] = time.perf_counter() - t0
            pushed[tag] = time.perf_counter() - start
    return pushed, put_s


def pool_meter(topo: Topology, pg: PostgresServer, s3: S3Server) -> CpuMeter:
    pg_pid = postmaster_pid(pg)
    return CpuMeter({
        "replica": [topo.registries[0].pid],
        # a worker's pool, its worker process(es) and their verifier children
        "workers": lambda: [p for w in topo.workers for p in tree_pids(w.pid)],
        "postgres": (lambda: tree_pids(pg_pid)) if pg_pid else [],
        "moto S3": [s3.process.pid],
    })


def put_configs(topo: Topology, gguf: Path, models: int) -> dict[str, bytes]:
    """Untimed: every model's config blob (the GGUF is there already); returns the
    ``models`` distinct manifests by tag, not yet PUT."""
    gguf_blob = Blob(MEDIA_MODEL, GEMMA_DIGEST, GEMMA_SIZE, path=gguf)
    manifests: dict[str, bytes] = {}
    with httpx.Client(timeout=60) as client:
        for k in range(models):
            config = ollama_config([GEMMA_DIGEST], model_type=f"bench-{k}")
            config_blob = describe(DOCKER_CONFIG_V1, go_json(config))
            put_blob(topo, client, config_blob.data)
            manifests[f"m{k}"] = ollama_manifest(config_blob, [gguf_blob])
    if len(set(manifests.values())) != models:
        raise common.BenchError("the manifests are not distinct")
    return manifests


def check_queued(topo: Topology, tags) -> None:
    url = f"{topo.registries[0].url}/api/v1/repositories/{REPO}/tags"
    with httpx.Client(timeout=30) as client:
        for tag in tags:
            r = client.get(f"{url}/{tag}")
            if r.status_code != 200 or r.json()["status"] != "queued":
                raise fail(topo, f"{tag} should be queued: {r.status_code} "
                           f"{r.text[:1000]}")


def wait_ready(topo: Topology, tags, start: float, timeout: float
               ) -> tuple[dict[str, float], dict[str, dict]]:
    """Poll every tag until all are ready: (tag -> seconds since ``start`` when it was
    seen ready, tag -> its last REST state). A failed model, a worker that exits or
    ``timeout`` seconds fail the run."""
    url = f"{topo.registries[0].url}/api/v1/repositories/{REPO}/tags"
    ready: dict[str, float] = {}
    states: dict[str, dict] = {}
    deadline = start + timeout
    with httpx.Client(timeout=30) as client:
        while len(ready) < len(tags):
            if time.perf_counter() > deadline:
                waiting = {t: states.get(t, {}).get("status") for t in tags if t not in ready}
                raise fail(topo, f"timed out after {timeout:.0f}s; still {waiting}")
            for w in topo.workers:
                if w.proc.poll() is not None:
                    raise fail(topo, f"worker pid {w.pid} exited ({w.proc.returncode})")
            for tag in tags:
                if tag in ready:
                    continue
                r = client.get(f"{url}/{tag}")
                if r.status_code != 200:
                    raise fail(topo, f"GET tag {tag} -> {r.status_code} {r.text[:500]}")
                state = r.json()
                states[tag] = state
                if state["status"] == "failed":
                    raise fail(topo, f"{REPO}:{tag} failed verification: "
                               f"{state.get('reason')}\n{json.dumps(state)[:3000]}")
                if state["status"] == "ready":
                    ready[tag] = time.perf_counter() - start
            time.sleep(POLL_S)
    return ready, states


def per_model(pushed: dict[str, float], put_s: dict[str, float], ready: dict[str, float],
              states: dict[str, dict]) -> list[dict]:
    out = []
    for tag in pushed:
        v = states[tag].get("verification") or {}
        fig = v.get("figures") or {}
        out.append({
            "tag": tag, "digest": states[tag]["digest"],
            "pushed_s": round(pushed[tag], 3), "put_s": round(put_s[tag], 3),
            "ready_s": round(ready[tag], 3),
            "worker": v.get("worker"), "attempts": (states[tag].get("job") or {}).get(
                "attempts"),
            "figures": {k: fig.get(k) for k in ("load_s", "ttft_s", "generation_tps",
                                                "prompt_tps", "tokens_generated")}})
    return out


def workers_children_cpu(topo: Topology) -> float:
    return sum(children_cpu(p) for w in topo.workers for p in tree_pids(w.pid))


def run_config(pg: PostgresServer, s3: S3Server, root: Path, gguf: Path, workers: int,
               threads: str, models: int, clock: str, timeout: float) -> dict:
    """One fresh deployment with ``workers`` workers and ``models`` models to verify.

    ``clock`` "queued": the manifests are PUT first (untimed, no worker running); the
    clock starts when the workers are spawned. "push": the workers run from the start
    and the clock starts at the first manifest PUT."""
    env = dict(DEPLOY_ENV)
    if threads != "auto":
        env["ASSAY_VERIFY_THREADS"] = threads
    t0 = time.perf_counter()
    topo = start_topology(root, pg, s3, registries=1,
                          workers=workers if clock == "push" else 0, env=env)
    try:
        up_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        upload_gguf(topo, gguf)
        upload_s = time.perf_counter() - t0
        meter = pool_meter(topo, pg, s3)
        manifests = put_configs(topo, gguf, models)
        if clock == "queued":
            pushed, put_s = put_manifests(topo, manifests, time.perf_counter())
            check_queued(topo, manifests)
        # Verifier children come and go within the interval, so their CPU time is read
        # from the worker processes' reaped-children counters (cutime/cstime) too.
        a = meter.sample()
        a_children = workers_children_cpu(topo)
        start = time.perf_counter()
        if clock == "queued":
            for _ in range(workers):
                topo.add_worker()
            pushed = {tag: 0.0 for tag in manifests}
        else:
            pushed, put_s = put_manifests(topo, manifests, start)
        ready, states = wait_ready(topo, list(pushed), start, timeout)
        elapsed = max(ready.values())
        # Once every worker has started and finished its first model, the pool drains at
        # (models left) / (time left): start-up, imports and materialisation excluded.
        times = sorted(ready.values())
        steady = ((models - workers) / (times[-1] - times[workers - 1]) * 60
                  if models > workers and times[-1] > times[workers - 1] else None)
        b = meter.sample()
        b_children = workers_children_cpu(topo)
        cpu = CpuMeter.delta(a, b)
        cpu["verifier children (reaped)"] = round(b_children - a_children, 3)
        models_out = per_model(pushed, put_s, ready, states)
        distinct_workers = sorted({m["worker"].split(":")[1] for m in models_out
                                   if m["worker"] and ":" in m["worker"]})
        return {"workers": workers, "threads": threads, "models": models,
                "elapsed_s": elapsed, "models_per_min": models / elapsed * 60,
                "steady_models_per_min": steady,
                "push_all_s": max(pushed.values()), "first_ready_s": min(ready.values()),
                "deployment_up_s": up_s, "gguf_upload_s": upload_s,
                "worker_pids_that_verified": distinct_workers,
                "cpu_s": cpu, "per_model": models_out}
    finally:
        topo.close()


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def children_cpu(pid: int) -> float:
    """CPU time of ``pid``'s reaped children (cutime + cstime), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=None,
                    help="distinct models pushed per configuration (default 6; 2 with --quick)")
    ap.add_argument("--threads", default=None,
                    help="comma-separated ASSAY_VERIFY_THREADS settings, 'auto' = unset "
                         "(default '1,auto'; '1' with --quick)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="runs of every configuration (default 2; 1 with --quick)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="per configuration, seconds from first push (default 300)")
    ap.add_argument("--clock", choices=("queued", "push"), default="queued",
                    help="queued (default): the models are queued first, the clock runs from "
                         "starting the workers to the last ready; push: the workers run "
                         "already, the clock runs from the first manifest PUT")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 models, threads 1")
    args = ap.parse_args(argv)
    args.models = args.models or (2 if args.quick else 6)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.thread_settings = [t.strip() for t in
                            (args.threads or ("1" if args.quick else "1,auto")).split(",")
                            if t.strip()]
    for t in args.thread_settings:
        if t != "auto" and not (t.isdigit() and int(t) > 0):
            raise SystemExit(f"--threads: {t!r} is neither a positive integer nor 'auto'")
    return args


def print_run(run: dict, models: int) -> None:
    for m in run["per_model"]:
        f = m["figures"]
        print(f"   {m['tag']}: PUT at {m['pushed_s']:5.2f}s "
              f"({m['put_s'] * 1e3:.0f} ms), ready at {m['ready_s']:6.2f}s  "
              f"worker {m['worker']}  load {f['load_s']:.2f}s "
              f"gen {f['generation_tps']:.1f} tok/s")
    print(f"   {models} models in {run['elapsed_s']:.1f}s = "
          f"{run['models_per_min']:.1f} models/min, "
          f"{fmt_rate(run['steady_models_per_min'])} after each worker's first "
          f"(verified by worker pids "
          f"{run['worker_pids_that_verified']}); machine busy "
          f"{run['cpu_s']['machine_busy_pct']:.0f}%\n")


def run_all(pg: PostgresServer, s3: S3Server, work: Path, gguf: Path,
            args: argparse.Namespace, runs: list[dict]) -> None:
    """Every configuration ``args.repeats`` times, each run appended to ``runs``."""
    step = 0
    for rep in range(args.repeats):
        for threads in args.thread_settings:
            # 1 and 2 workers alternate who goes first (the machine's load drifts)
            for workers in ((1, 2) if step % 2 == 0 else (2, 1)):
                print(f"-- #{rep} {workers} worker(s), ASSAY_VERIFY_THREADS={threads}")
                run = run_config(pg, s3, work / f"r{rep}-w{workers}-t{threads}", gguf,
                                 workers, threads, args.models, args.clock, args.timeout)
                run["repetition"] = rep
                runs.append(run)
                print_run(run, args.models)
            step += 1


def summarise(runs: list[dict], thread_settings: list[str]) -> list[dict]:
    """One row per ASSAY_VERIFY_THREADS setting: medians and ratios, 1 vs 2 workers."""
    table = []
    for threads in thread_settings:
        mine = [r for r in runs if r["threads"] == threads]
        rate = {w: [r["models_per_min"] for r in mine if r["workers"] == w] for w in (1, 2)}
        steady = {w: [r["steady_models_per_min"] for r in mine if r["workers"] == w
                      and r["steady_models_per_min"]] for w in (1, 2)}
        gen = {w: median([m["figures"]["generation_tps"] for r in mine
                          if r["workers"] == w for m in r["per_model"]]) for w in (1, 2)}
        busy = {w: median([r["cpu_s"]["machine_busy_pct"] for r in mine
                           if r["workers"] == w]) for w in (1, 2)}
        table.append({
            "threads": threads,
            "one_worker_models_per_min": median(rate[1]),
            "two_workers_models_per_min": median(rate[2]),
            "one_worker_samples": [round(x, 2) for x in rate[1]],
            "two_workers_samples": [round(x, 2) for x in rate[2]],
            "ratio_of_medians": median(rate[2]) / median(rate[1]),
            "median_paired_ratio": median([b / a for a, b in zip(rate[1], rate[2],
                                                                 strict=True)]),
            "steady_models_per_min_median": {
                w: median(v) if v else None for w, v in steady.items()},
            "generation_tps_median": gen, "machine_busy_pct_median": busy})
    return table


def print_table(table: list[dict], repeats: int, facts: dict) -> None:
    print(f"models/min, median of {repeats} run(s) (the runs in brackets):\n")
    print("| ASSAY_VERIFY_THREADS | 1 worker | 2 workers | 2 / 1 (ratio of medians) "
          "| 2 / 1 (median paired) | after each worker's first model, 1 -> 2 "
          "| generation tok/s per verifier, 1 -> 2 | machine busy, 1 -> 2 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in table:
        label = "unset (every core)" if row["threads"] == "auto" else row["threads"]
        one = ", ".join(f"{x:.1f}" for x in row["one_worker_samples"])
        two = ", ".join(f"{x:.1f}" for x in row["two_workers_samples"])
        print(f"| {label} | {row['one_worker_models_per_min']:.1f} ({one}) | "
              f"{row['two_workers_models_per_min']:.1f} ({two}) | "
              f"{row['ratio_of_medians']:.2f}x | {row['median_paired_ratio']:.2f}x | "
              f"{fmt_rate(row['steady_models_per_min_median'][1])} -> "
              f"{fmt_rate(row['steady_models_per_min_median'][2])} | "
              f"{row['generation_tps_median'][1]:.0f} -> "
              f"{row['generation_tps_median'][2]:.0f} | "
              f"{row['machine_busy_pct_median'][1]:.0f}% -> "
              f"{row['machine_busy_pct_median'][2]:.0f}% |")
    print(f"\n- {machine_note()}")
    print(f"- load average at start {facts['loadavg_start']}, at end "
          f"{facts['loadavg_end']} (other work on the machine shows here)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models, repeats, thread_settings = args.models, args.repeats, args.thread_settings
    if shutil.which("curl") is None:
        raise SystemExit("curl is not installed (apt-get install curl)")

    facts = machine_facts()
    for k in ("distribution", "wrk"):
        facts.pop(k, None)
    facts["loadavg_start"] = os.getloadavg()
    facts["dirty_files"] = sh(["git", "-C", str(common.REPO_ROOT), "status", "--short",
                               "--untracked-files=no"]).splitlines()
    verify_env = {k: v for k, v in os.environ.items() if k.startswith("ASSAY_VERIFY_")}
    print("# assay: verification throughput, 1 worker vs 2\n")
    for k, v in facts.items():
        if k != "dirty_files":
            print(f"- {k}: {v}")
    print(f"- {machine_note()}")
    print(f"- {models} models per configuration, {repeats} run(s) of each; "
          f"ASSAY_VERIFY_THREADS settings "
          f"{thread_settings}; other ASSAY_VERIFY_* from the environment: {verify_env or 'none'}"
          f" (max tokens default 32); clock: {CLOCKS[args.clock]}\n")

    gguf = gemma_gguf_path()
    if gguf.stat().st_size != GEMMA_SIZE:
        raise common.BenchError(f"{gguf} is not the expected Gemma GGUF")
    work = pick_workdir()
    pg: PostgresServer | None = None
    s3: S3Server | None = None
    results: dict = {"machine": facts, "note": machine_note(), "workdir": str(work),
                     "models": models, "repeats": repeats, "threads": thread_settings,
                     "clock": args.clock,
                     "env": DEPLOY_ENV,
                     "verify_env": verify_env, "gguf": str(gguf), "runs": []}
    try:
        pg = start_postgres()
        s3 = start_s3(work)
        run_all(pg, s3, work, gguf, args, results["runs"])
        facts["loadavg_end"] = os.getloadavg()
        results["figures"] = table = summarise(results["runs"], thread_settings)
        print_table(table, repeats, facts)
        common.write_results("workers", results, "quick" if args.quick else "",
                             "push" if args.clock == "push" else "")
        return 0
    finally:
        common.stop_all([s3.process.stop if s3 else None, pg.stop if pg else None])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    common.run(main)
