"""Scaling out: two ``assay serve`` replicas vs one, on the same PostgreSQL and S3, in one run.

    .venv/bin/python -m bench.replicas [--quick]

Runs the team deployment as real processes on loopback (``tests/support/topology.py``: one
PostgreSQL 15, one moto S3 server, ``assay migrate`` once, two ``assay serve`` replicas with
no in-process workers, readiness gate on) and measures, for "1 replica" (every request to
replica 0; replica 1 runs but gets nothing, and its CPU time is recorded to show it) and
"2 replicas" (requests split over both):

1. manifest GET by tag: two ``wrk -t1 -c<connections/2>`` processes at once, both on
   replica 0, or one on each replica; their req/s summed. The same two load generators and
   the same total connections in both configurations, so only the servers differ;
2. push: ``--clients`` parallel clients, each pushing its own blob of ``--size-mib`` as
   chunked ``PATCH`` uploads (curl, ``Content-Range``) and an empty final ``PUT ?digest=``;
   client i uses replica i mod N. MB/s = all bytes / (first start -> last finish);
3. pull: the same clients GET those blobs in parallel, each its own ``--pull-rounds`` (4)
   times in a row (curl, body to /dev/null, size checked), client i from replica
   (i + 1) mod N, i.e. with 2 replicas from the one it did not push to.

The configurations alternate within each repetition (order reversed every other one);
each figure is the median of ``--repeats``, the 2-vs-1 ratio is given as the ratio of the
medians and as the median of the per-repetition ratios. CPU seconds of every component
(replicas, PostgreSQL, moto, load generators) and the machine's busy share are recorded
per measurement: on a small machine they show where the cores went. Results are printed
as a Markdown table and written to ``bench/results/replicas-<date>[-quick].json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx

from bench import common
from bench.common import (
    BlobFile,
    CpuMeter,
    describe,
    header,
    machine_facts,
    median,
    pick_workdir,
    postmaster_pid,
    sh,
    tree_pids,
    with_query,
)
from tests.support.postgres import PostgresServer, start_postgres
from tests.support.processes import ServerProcess
from tests.support.s3 import S3Server, start_s3
from tests.support.topology import Topology, start_topology

CONFIGS = (1, 2)  # replicas taking requests
MANIFEST_REPO = "bench/manifest"
# The deployment's settings for every assay process: gate on (compose's default); access
# logging off, as in the other benchmarks (a log line per request is its own cost).
DEPLOY_ENV = {"ASSAY_GATE": "true", "ASSAY_LOG_LEVEL": "warning"}


def machine_note() -> str:
    n = os.cpu_count() or 0
    return (f"This machine has {n} cores, shared by the load generators (wrk, curl, this "
            "script), PostgreSQL, the moto S3 server and the replicas: a second replica "
            "adds a process, not cores, so any 2-vs-1 ratio here is capped by CPU, not by "
            "assay. On a real deployment each replica gets its own cores.")


# ------------------------------------------------------------------------------ load


@dataclass
class Transfer:
    client: int
    replica: int
    start: float
    end: float
    nbytes: int


class Bench:
    def __init__(self, topo: Topology, work: Path, pull_rounds: int = 1):
        self.topo = topo
        self.work = work
        self.pull_rounds = pull_rounds  # GETs of its blob per client and pull measurement

    @property
    def replicas(self) -> list[ServerProcess]:
        return self.topo.registries

    def fail(self, what: str, detail: str) -> common.BenchError:
        logs = "\n".join(f"--- {name} ---\n{text[-2000:]}" for name, text in self.topo.logs())
        return common.BenchError(f"{what}\n{detail}\n{logs}")

    # -- setup

    def put_small_blob(self, client: httpx.Client, base: str, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        url = f"{base}/v2/{repo}/blobs/uploads/"
        r = client.post(url, headers={"Content-Length": "0"})
        if r.status_code != 202 or "location" not in r.headers:
            raise self.fail("POST upload", describe(r))
        r = client.put(with_query(urljoin(url, r.headers["location"]), digest=digest),
                       content=data, headers={"Content-Type": "application/octet-stream"})
        if r.status_code != 201:
            raise self.fail("PUT small blob", describe(r))
        return digest

    def put_manifest(self) -> str:
        """A small image manifest, pushed through replica 0; both replicas must serve it."""
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        layer = os.urandom(4096)
        base = self.replicas[0].url
        with httpx.Client(timeout=60) as client:
            cd = self.put_small_blob(client, base, MANIFEST_REPO, config)
            ld = self.put_small_blob(client, base, MANIFEST_REPO, layer)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": common.OCI_MANIFEST,
                "config": {"mediaType": common.OCI_CONFIG, "digest": cd, "size": len(config)},
                "layers": [{"mediaType": common.OCI_LAYER, "digest": ld, "size": len(layer)}],
            }, separators=(",", ":")).encode()
            r = client.put(f"{base}/v2/{MANIFEST_REPO}/manifests/latest", content=manifest,
                           headers={"Content-Type": common.OCI_MANIFEST})
            if r.status_code != 201:
                raise self.fail("manifest PUT", describe(r))
            digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
            for s in self.replicas:
                r = client.get(f"{s.url}/v2/{MANIFEST_REPO}/manifests/latest",
                               headers={"Accept": common.OCI_MANIFEST})
                if r.status_code != 200 or r.headers.get("docker-content-digest") != digest:
                    raise self.fail(f"manifest GET check on {s.url}", describe(r))
        return digest

    # -- 1. manifest GETs

    def wrk(self, targets: list[int], conns: int, seconds: int) -> dict:
        """One ``wrk -t1 -c<conns>`` per entry of ``targets`` (replica indexes), all at once."""
        procs = []
        for i in targets:
            url = f"{self.replicas[i].url}/v2/{MANIFEST_REPO}/manifests/latest"
            cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
                   "-H", f"Accept: {common.OCI_MANIFEST}", url]
            procs.append((i, url, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT, text=True)))
        runs = []
        for i, url, p in procs:
            out, _ = p.communicate(timeout=seconds + 60)
            m = re.search(r"Requests/sec:\s*([\d.]+)", out)
            total = re.search(r"(\d+) requests in", out)
            if p.returncode != 0 or not m or not total:
                raise self.fail("wrk", f"wrk against {url} (exit {p.returncode}):\n{out}")
            if re.search(r"Non-2xx or 3xx responses", out) or re.search(r"Socket errors", out):
                raise self.fail("wrk", f"wrk saw errors against {url}:\n{out}")
            lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
            runs.append({"replica": i, "rps": float(m.group(1)),
                         "requests": int(total.group(1)),
                         "latency": {f"p{k}": v for k, v in lat.items()}, "raw": out})
        return {"rps": sum(r["rps"] for r in runs), "runs": runs}

    # -- 2. push, 3. pull

    def push_one(self, i: int, replica: int, blob: BlobFile, repo: str) -> int:
        base = self.replicas[replica].url
        hdr, body = self.work / f"c{i}-headers.txt", self.work / f"c{i}-body.txt"
        with httpx.Client(timeout=600) as client:
            url = f"{base}/v2/{repo}/blobs/uploads/"
            r = client.post(url, headers={"Content-Length": "0"})
            if r.status_code != 202 or "location" not in r.headers:
                raise self.fail("POST upload", describe(r))
            loc = urljoin(url, r.headers["location"])
            for cpath, start, end in blob.chunks:
                cmd = ["curl", "-sS", "-H", "Expect:", "-D", str(hdr), "-o", str(body),
                       "-w", "%{http_code}", "-X", "PATCH", "-T", str(cpath),
                       "-H", "Content-Type: application/octet-stream",
                       "-H", f"Content-Range: {start}-{end}", loc]
                p = subprocess.run(cmd, capture_output=True, text=True, check=False)
                headers = hdr.read_text(errors="replace") if hdr.exists() else ""
                new_loc = header(headers, "location")
                if p.returncode != 0 or p.stdout.strip() != "202" or not new_loc:
                    raise self.fail("chunk PATCH", f"PATCH {loc} ({start}-{end}) -> curl "
                                    f"{p.returncode} {p.stdout} {p.stderr}\n{headers}\n"
                                    f"{body.read_text(errors='replace')[:2000]}")
                loc = urljoin(loc, new_loc)
            r = client.put(with_query(loc, digest=blob.digest), headers={"Content-Length": "0"})
            if r.status_code != 201:
                raise self.fail("final chunked PUT", describe(r))
        return blob.size

    def pull_one(self, i: int, replica: int, blob: BlobFile, repo: str) -> int:
        """GET the blob ``pull_rounds`` times in a row; the bytes received."""
        url = f"{self.replicas[replica].url}/v2/{repo}/blobs/{blob.digest}"
        for _ in range(self.pull_rounds):
            p = subprocess.run(["curl", "-sS", "-L", "-o", "/dev/null", "-w",
                                "%{http_code} %{size_download}", url],
                               capture_output=True, text=True, check=False)
            status, got = (p.stdout.split() + ["", ""])[:2]
            if p.returncode != 0 or status != "200" or got != str(blob.size):
                raise self.fail("blob GET", f"GET {url} -> curl {p.returncode} {p.stdout} "
                                f"{p.stderr} (want 200, {blob.size} bytes)")
        return blob.size * self.pull_rounds

    def parallel(self, fn, blobs: list[BlobFile], replica_of, repo: str) -> list[Transfer]:
        """Run ``fn`` for every client at once (threads released by a barrier)."""
        barrier = threading.Barrier(len(blobs))
        out: list[Transfer | None] = [None] * len(blobs)
        errors: list[BaseException] = []

        def run(i: int) -> None:
            barrier.wait()
            t0 = time.perf_counter()
            try:
                nbytes = fn(i, replica_of(i), blobs[i], f"{repo}-{i}")
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                return
            out[i] = Transfer(i, replica_of(i), t0, time.perf_counter(), nbytes)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(blobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return [t for t in out if t is not None]

    def verify_pull(self, replica: int, repo: str, blob: BlobFile) -> None:
        """One untimed pull that checks the bytes."""
        h = hashlib.sha256()
        url = f"{self.replicas[replica].url}/v2/{repo}/blobs/{blob.digest}"
        with httpx.Client(timeout=600) as client, client.stream(
                "GET", url, follow_redirects=True) as r:
            if r.status_code != 200:
                raise self.fail("verify GET", describe(r))
            for buf in r.iter_bytes(16 * common.MiB):
                h.update(buf)
        if f"sha256:{h.hexdigest()}" != blob.digest:
            raise self.fail("verify GET", f"GET {url}: body hashes to sha256:{h.hexdigest()}")


def aggregate_mbps(transfers: list[Transfer]) -> tuple[float, float]:
    wall = max(t.end for t in transfers) - min(t.start for t in transfers)
    return sum(t.nbytes for t in transfers) / wall / common.MB, wall


def ratios(one: list[float], two: list[float]) -> dict:
    return {"ratio_of_medians": median(two) / median(one),
            "median_paired_ratio": median([b / a for a, b in zip(one, two, strict=True)])}


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 repetition, 16 MiB per client, wrk 2 s")
    ap.add_argument("--repeats", type=int, default=None, help="default 5 (1 with --quick)")
    ap.add_argument("--clients", type=int, default=4, help="parallel push/pull clients (4)")
    ap.add_argument("--size-mib", type=int, default=None,
                    help="blob per client, MiB (default 64; 16 with --quick)")
    ap.add_argument("--chunk-mib", type=int, default=16, help="PATCH chunk size, MiB (16)")
    ap.add_argument("--pull-rounds", type=int, default=4,
                    help="GETs of its blob per client in one pull measurement (4): a single "
                         "GET of 64 MiB is over in a fraction of a second")
    ap.add_argument("--connections", type=int, default=32,
                    help="total wrk connections, split over two wrk processes (32)")
    ap.add_argument("--wrk-seconds", type=int, default=None, help="default 5 (2 with --quick)")
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.size = (args.size_mib or (16 if args.quick else 64)) * common.MiB
    args.chunk = args.chunk_mib * common.MiB
    args.wrk_s = args.wrk_seconds or (2 if args.quick else 5)
    args.conns = max(2, args.connections // 2 * 2)
    return args


def deployment_meter(topo: Topology, pg: PostgresServer, s3: S3Server) -> CpuMeter:
    pg_pid = postmaster_pid(pg)
    return CpuMeter({
        "replica 0": [topo.registries[0].pid],
        "replica 1": [topo.registries[1].pid],
        "postgres": (lambda: tree_pids(pg_pid)) if pg_pid else [],
        "moto S3": [s3.process.pid],
    })


def prepare(bench: Bench, args: argparse.Namespace) -> list[BlobFile]:
    """Generate one payload per client, put the manifest, and warm both replicas up."""
    t0 = time.perf_counter()
    blobs = []
    for i in range(args.clients):
        b = BlobFile(bench.work / f"blob{i}.bin", args.size, args.chunk)
        b.generate()
        blobs.append(b)
    print(f"generated {args.clients} payloads in {time.perf_counter() - t0:.1f}s")
    mdigest = bench.put_manifest()
    print(f"manifest {MANIFEST_REPO}:latest = {mdigest}, served by both replicas")

    # Untimed warm-up through both replicas: connection pools, S3 clients, first-call
    # imports; otherwise whichever configuration runs first pays for them.
    bench.wrk([0, 1], args.conns // 2, 1)
    bench.parallel(bench.push_one, blobs, lambda i: i % 2, "bench/warmup")
    bench.parallel(bench.pull_one, blobs, lambda i: (i + 1) % 2, "bench/warmup")
    print("warm-up done (1 s of wrk, one push and pull through both replicas)\n")
    return blobs


class Rounds:
    """The measurements of each repetition, 1 and 2 replicas in turn; ``samples`` holds
    the figure per configuration, ``detail`` everything measured with it."""

    def __init__(self, bench: Bench, meter: CpuMeter, blobs: list[BlobFile],
                 args: argparse.Namespace):
        self.bench, self.meter, self.blobs, self.args = bench, meter, blobs, args
        self.samples: dict = {f: {n: [] for n in CONFIGS} for f in ("manifest", "push", "pull")}
        self.detail: dict = {f: {n: [] for n in CONFIGS} for f in ("manifest", "push", "pull")}

    def manifest(self, rep: int, order: tuple[int, ...]) -> None:
        """1. manifest GETs: two wrk processes, both on replica 0 or one per replica."""
        for n in order:
            targets = [0, 0] if n == 1 else [0, 1]
            a = self.meter.sample()
            w = self.bench.wrk(targets, self.args.conns // 2, self.args.wrk_s)
            cpu = CpuMeter.delta(a, self.meter.sample())
            self.samples["manifest"][n].append(w["rps"])
            self.detail["manifest"][n].append({**w, "cpu_s": cpu})
            split = " + ".join(f"{r['rps']:.0f}" for r in w["runs"])
            print(f"  manifest GET #{rep} {n} replica(s) {w['rps']:8.0f} req/s "
                  f"({split}); machine busy "
                  f"{cpu['machine_busy_pct']:.0f}%")

    def _transfer(self, key: str, n: int, run, route, repo: str) -> tuple[float, float, dict]:
        a = self.meter.sample()
        tr = self.bench.parallel(run, self.blobs, route, repo)
        cpu = CpuMeter.delta(a, self.meter.sample())
        mbps, wall = aggregate_mbps(tr)
        self.samples[key][n].append(mbps)
        self.detail[key][n].append({"mbps": mbps, "wall_s": wall, "cpu_s": cpu,
                                    "per_client_s": [round(t.end - t.start, 3) for t in tr]})
        return mbps, wall, cpu

    def push(self, rep: int, order: tuple[int, ...]) -> str:
        """2. push: new content for every client, then all at once; returns the
        repository the last configuration pushed to."""
        repo = ""
        for n in order:
            for b in self.blobs:
                b.restamp()
            os.sync()  # untimed: no writeback of the previous step lands in this one
            repo = f"bench/push-r{rep}-n{n}"
            mbps, wall, cpu = self._transfer("push", n, self.bench.push_one,
                                             lambda i, n=n: i % n, repo)
            print(f"  push         #{rep} {n} replica(s) {mbps:8.1f} MB/s "
                  f"({self.args.clients} x {self.args.size // common.MiB} MiB in "
                  f"{wall:.2f}s); machine busy {cpu['machine_busy_pct']:.0f}%")
        return repo

    def pull(self, rep: int, order: tuple[int, ...], repo: str) -> None:
        """3. pull: the blobs just pushed (the last configuration's), in parallel."""
        for n in order:
            os.sync()
            mbps, wall, cpu = self._transfer("pull", n, self.bench.pull_one,
                                             lambda i, n=n: (i + 1) % n, repo)
            print(f"  pull         #{rep} {n} replica(s) {mbps:8.1f} MB/s "
                  f"({self.args.clients} x {self.args.pull_rounds} x "
                  f"{self.args.size // common.MiB} MiB in "
                  f"{wall:.2f}s); machine busy "
                  f"{cpu['machine_busy_pct']:.0f}%")

    def run(self, repeats: int) -> None:
        for rep in range(repeats):
            order = CONFIGS if rep % 2 == 0 else CONFIGS[::-1]
            self.manifest(rep, order)
            last_repo = self.push(rep, order)
            if rep == 0:  # the bytes come back intact through either replica (untimed)
                for i, b in enumerate(self.blobs):
                    self.bench.verify_pull((i + 1) % 2, f"{last_repo}-{i}", b)
            self.pull(rep, order, last_repo)


def figures(rounds: Rounds, args: argparse.Namespace) -> dict:
    size, samples, detail = args.size, rounds.samples, rounds.detail
    labels = {"manifest": ("manifest GET by tag", "req/s"),
              "push": (f"push, {args.clients} clients x {size // common.MiB} MiB chunked",
                       "MB/s"),
              "pull": (f"pull, {args.clients} clients x {args.pull_rounds} x "
                       f"{size // common.MiB} MiB", "MB/s")}
    figs: dict = {}
    for key, (label, unit) in labels.items():
        one, two = samples[key][1], samples[key][2]
        cpu_med = {n: {k: median([d["cpu_s"][k] for d in detail[key][n]])
                       for k in detail[key][n][0]["cpu_s"]} for n in CONFIGS}
        figs[key] = {"label": label, "unit": unit,
                     "one_replica": median(one), "two_replicas": median(two),
                     "one_replica_samples": [round(x, 2) for x in one],
                     "two_replicas_samples": [round(x, 2) for x in two],
                     **ratios(one, two), "cpu_s_median": cpu_med,
                     "detail": {str(n): detail[key][n] for n in CONFIGS}}
    return figs


def print_report(figs: dict, facts: dict) -> None:
    print("\n| figure | 1 replica | 2 replicas | 2 / 1 (ratio of medians) "
          "| 2 / 1 (median paired) | machine busy, 1 -> 2 |")
    print("|---|---:|---:|---:|---:|---:|")
    for f in figs.values():
        busy = f["cpu_s_median"]
        print(f"| {f['label']} | {f['one_replica']:,.0f} {f['unit']} | "
              f"{f['two_replicas']:,.0f} {f['unit']} | {f['ratio_of_medians']:.2f}x | "
              f"{f['median_paired_ratio']:.2f}x | {busy[1]['machine_busy_pct']:.0f}% -> "
              f"{busy[2]['machine_busy_pct']:.0f}% |")
    comps = [k for k in next(iter(figs.values()))["cpu_s_median"][1]
             if k not in ("wall_s", "machine_busy_pct")]
    print("\nCPU seconds per measurement (median), 1 replica / 2 replicas:\n")
    print("| figure | " + " | ".join(comps) + " |")
    print("|---|" + "---:|" * len(comps))
    for f in figs.values():
        c = f["cpu_s_median"]
        print(f"| {f['label']} | " + " | ".join(f"{c[1][k]:.1f} / {c[2][k]:.1f}"
                                                for k in comps) + " |")
    print(f"\n- {machine_note()}")
    print(f"- load average at start {facts['loadavg_start']}, at end "
          f"{facts['loadavg_end']} (other work on the machine shows here)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")

    facts = machine_facts()
    facts.pop("distribution", None)
    facts["loadavg_start"] = os.getloadavg()
    facts["dirty_files"] = sh(["git", "-C", str(common.REPO_ROOT), "status", "--short",
                               "--untracked-files=no"]).splitlines()
    print("# assay: 2 replicas vs 1 (same PostgreSQL, same S3)\n")
    for k, v in facts.items():
        if k != "dirty_files":
            print(f"- {k}: {v}")
    print(f"- {machine_note()}")
    print(f"- {args.repeats} repetitions (median); manifest GET: 2 x wrk -t1 "
          f"-c{args.conns // 2} -d{args.wrk_s}s; push/pull: {args.clients} clients x "
          f"{args.size // common.MiB} MiB, PATCH chunks of {args.chunk // common.MiB} MiB\n")

    work = pick_workdir()
    pg: PostgresServer | None = None
    s3: S3Server | None = None
    topo: Topology | None = None
    results: dict = {"machine": facts, "note": machine_note(), "workdir": str(work),
                     "repeats": args.repeats, "clients": args.clients,
                     "blob_bytes": args.size, "chunk_bytes": args.chunk,
                     "pull_rounds": args.pull_rounds, "wrk_seconds": args.wrk_s,
                     "wrk_connections": args.conns, "env": DEPLOY_ENV}
    try:
        t0 = time.perf_counter()
        pg = start_postgres()
        s3 = start_s3(work)
        topo = start_topology(work / "topology", pg, s3, registries=2, workers=0,
                              env=DEPLOY_ENV)
        print(f"PostgreSQL :{pg.port}, moto S3 {s3.endpoint_url} (pid {s3.process.pid}), "
              f"replicas {[f'{r.url} (pid {r.pid})' for r in topo.registries]}, "
              f"up in {time.perf_counter() - t0:.1f}s")
        bench = Bench(topo, work, args.pull_rounds)
        meter = deployment_meter(topo, pg, s3)
        rounds = Rounds(bench, meter, prepare(bench, args), args)
        rounds.run(args.repeats)
        facts["loadavg_end"] = os.getloadavg()

        results["figures"] = figs = figures(rounds, args)
        print_report(figs, facts)
        common.write_results("replicas", results, "quick" if args.quick else "")
        return 0
    finally:
        common.stop_all([topo.close if topo else None, s3.process.stop if s3 else None,
                         pg.stop if pg else None])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    common.run(main)
