"""assay vs CNCF Distribution 2.8 on the same machine, disk and client, in one run.

    .venv/bin/python -m bench.registry_vs_distribution [--size-mib 1024] [--quick]

Starts ``assay serve`` and Debian's ``docker-registry`` side by side on loopback, with
their data on the same (non-tmpfs) filesystem as the repository, and measures for both:

1. monolithic blob push (POST, then one ``PUT <location>?digest=`` with the whole body);
2. chunked blob push (POST, ``PATCH`` per chunk with ``Content-Range``, empty final PUT);
3. blob pull (GET, full body, redirects followed);
4. manifest GET by tag under ``wrk -t1 -c32``;
5. bytes on disk after pushing one blob to 10 repositories (fresh data dirs).

Big transfers go through ``curl`` (streaming the file with ``-T``) so the client is not
the bottleneck. Each push figure is the median of ``--repeats`` (default 5) repetitions,
each pull figure of at least 9; the two registries alternate within each repetition. The
ratio is given two ways, the ratio of the medians and the median of the per-repetition
(back-to-back) ratios, which cancels the drift of a noisy VM; a target counts as met only
when both reach it. Results are printed as a Markdown table and written to
``bench/results/registry_vs_distribution-<date>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx

from bench import common
from bench.common import (
    BlobFile,
    describe,
    header,
    machine_facts,
    median,
    pick_workdir,
    sh,
    with_query,
)
from tests.support.processes import (
    ServerProcess,
    start_assay,
    start_distribution,
)

REPEATS = 5
PULL_REPEATS = 9
STORAGE_REPOS = 10
NOTES = [
    "Each repetition pushes new content (the first 16 bytes of the file are restamped), "
    "so neither registry can skip work because the blob already exists; every push goes "
    "through the full upload path (receive, hash, store).",
    "The page cache cannot be dropped reliably here: the source file and the stored blobs "
    "are likely in RAM, so pull and push figures are mostly CPU/loopback bound.",
    "os.sync() runs (untimed) before every timed transfer, so writeback of one "
    "server's data does not land in the other's measurement.",
    "Client (curl, wrk) and both servers share the same cores; wrk -t1 takes one of them.",
    "assay fsyncs blob data before committing it by default (ASSAY_FSYNC); Distribution's "
    "filesystem driver does not fsync.",
]


# ----------------------------------------------------------------------------- helpers


def du_bytes(path: Path) -> int:
    out = sh(["du", "-sb", "--exclude=*.log", "--exclude=config.yml", str(path)])
    return int(out.split()[0])


# ----------------------------------------------------------------------------- registry client


@dataclass
class Target:
    name: str  # "assay" | "distribution"
    server: ServerProcess
    tmp: Path

    @property
    def base(self) -> str:
        return self.server.url

    def fail(self, what: str, detail: str) -> common.BenchError:
        log = self.server.log()[-3000:]
        return common.BenchError(f"[{self.name}] {what}\n{detail}\n--- server log tail ---\n{log}")

    # -- small requests via httpx

    def start_upload(self, client: httpx.Client, repo: str) -> str:
        url = f"{self.base}/v2/{repo}/blobs/uploads/"
        r = client.post(url, headers={"Content-Length": "0"})
        if r.status_code != 202 or "location" not in r.headers:
            raise self.fail("POST upload", describe(r))
        return urljoin(url, r.headers["location"])

    def put_small_blob(self, client: httpx.Client, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        loc = self.start_upload(client, repo)
        r = client.put(with_query(loc, digest=digest), content=data,
                       headers={"Content-Type": "application/octet-stream"})
        if r.status_code != 201:
            raise self.fail("PUT small blob", describe(r))
        return digest

    # -- big requests via curl

    def curl(self, args: list[str], what: str) -> tuple[int, str, str]:
        """Run curl; return (final status, header dump, -w output)."""
        hdr = self.tmp / f"{self.name}-headers.txt"
        body = self.tmp / f"{self.name}-body.txt"
        cmd = ["curl", "-sS", "-H", "Expect:", "-D", str(hdr), "-o", str(body),
               "-w", "%{http_code} %{size_download} %{size_upload} %{num_redirects}", *args]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        headers = hdr.read_text(errors="replace") if hdr.exists() else ""
        if p.returncode != 0:
            raise self.fail(what, f"curl exit {p.returncode}: {p.stderr}\n{' '.join(cmd)}\n"
                            f"{headers}")
        status = int(p.stdout.split()[0])
        return status, headers, p.stdout

    def curl_body(self) -> str:
        body = self.tmp / f"{self.name}-body.txt"
        return body.read_text(errors="replace")[:2000] if body.exists() else ""

    def push_monolithic(self, client: httpx.Client, repo: str, blob: BlobFile) -> float:
        t0 = time.perf_counter()
        loc = self.start_upload(client, repo)
        url = with_query(loc, digest=blob.digest)
        status, headers, _ = self.curl(
            ["-X", "PUT", "-T", str(blob.path), "-H", "Content-Type: application/octet-stream",
             url], "monolithic PUT")
        elapsed = time.perf_counter() - t0
        if status != 201:
            raise self.fail("monolithic PUT", f"PUT {url} -> {status}\n{headers}\n"
                            f"{self.curl_body()}")
        return elapsed

    def push_chunked(self, client: httpx.Client, repo: str, blob: BlobFile) -> float:
        t0 = time.perf_counter()
        loc = self.start_upload(client, repo)
        for cpath, start, end in blob.chunks:
            status, headers, _ = self.curl(
                ["-X", "PATCH", "-T", str(cpath),
                 "-H", "Content-Type: application/octet-stream",
                 "-H", f"Content-Range: {start}-{end}", loc], "chunk PATCH")
            new_loc = header(headers, "location")
            if status != 202 or not new_loc:
                raise self.fail("chunk PATCH", f"PATCH {loc} (Content-Range: {start}-{end}) "
                                f"-> {status}\n{headers}\n{self.curl_body()}")
            loc = urljoin(loc, new_loc)
        url = with_query(loc, digest=blob.digest)
        r = client.put(url, headers={"Content-Length": "0"})
        elapsed = time.perf_counter() - t0
        if r.status_code != 201:
            raise self.fail("final chunked PUT", describe(r))
        return elapsed

    def pull(self, repo: str, digest: str, size: int) -> tuple[float, dict]:
        url = f"{self.base}/v2/{repo}/blobs/{digest}"
        t0 = time.perf_counter()
        p = subprocess.run(
            ["curl", "-sS", "-L", "-H", "Expect:", "-D", str(self.tmp / "pull-headers.txt"),
             "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{num_redirects}", url],
            capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - t0
        headers = (self.tmp / "pull-headers.txt").read_text(errors="replace")
        if p.returncode != 0:
            raise self.fail("blob GET", f"curl exit {p.returncode}: {p.stderr}\n{headers}")
        status, got, redirects = p.stdout.split()
        if status != "200" or int(got) != size:
            raise self.fail("blob GET", f"GET {url} -> {status}, {got} of {size} bytes\n"
                            f"{headers}")
        first = headers.split("\r\n\r\n", 1)[0]
        return elapsed, {"redirects": int(redirects),
                         "first_status_line": first.splitlines()[0] if first else "",
                         "location": header(first, "location")}

    def verify_pull(self, client: httpx.Client, repo: str, digest: str) -> None:
        """One untimed pull that checks the bytes (follows redirects)."""
        h = hashlib.sha256()
        url = f"{self.base}/v2/{repo}/blobs/{digest}"
        with client.stream("GET", url, follow_redirects=True) as r:
            if r.status_code != 200:
                raise self.fail("verify GET", describe(r))
            for buf in r.iter_bytes(common.PIECE):
                h.update(buf)
        if f"sha256:{h.hexdigest()}" != digest:
            raise self.fail("verify GET", f"GET {url}: body hashes to sha256:{h.hexdigest()}")


# ----------------------------------------------------------------------------- figures


def mbps(size: int, seconds: float) -> float:
    return size / seconds / common.MB


def run_wrk(target: Target, url: str, seconds: int) -> dict:
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency",
           "-H", f"Accept: {common.OCI_MANIFEST}", url]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False,
                       timeout=seconds + 60)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        raise target.fail("wrk", out)
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    sock = re.search(r"Socket errors:.*", out)
    if not m or not total:
        raise target.fail("wrk", f"cannot parse wrk output:\n{out}")
    if non2xx or sock:
        raise target.fail("wrk", f"wrk saw errors against {url}:\n{out}")
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    return {"rps": float(m.group(1)), "requests": int(total.group(1)),
            "latency": {f"p{k}": v for k, v in lat.items()}, "raw": out}


def fmt(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=None, help="blob size (default 1024)")
    ap.add_argument("--chunk-mb", type=int, default=None,
                    help="PATCH chunk size in MB of 10^6 bytes (default 100; 16 with --quick)")
    ap.add_argument("--wrk-seconds", type=int, default=None, help="default 10 (3 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 MiB, 16 MB chunks, 3 s")
    ap.add_argument("--repeats", type=int, default=REPEATS,
                    help=f"push repetitions (default {REPEATS}; pulls: at least {PULL_REPEATS})")
    ap.add_argument("--self-test", action="store_true",
                    help="run a second Distribution in assay's place (harness check, noise floor)")
    args = ap.parse_args(argv)
    args.size = (args.size_mib or (64 if args.quick else 1024)) * common.MiB
    args.chunk = (args.chunk_mb or (16 if args.quick else 100)) * common.MB
    args.wrk_s = args.wrk_seconds or (3 if args.quick else 10)
    args.pull_repeats = max(args.repeats, PULL_REPEATS)
    return args


def start_subject(path: Path, self_test: bool) -> ServerProcess:
    """The server measured against Distribution: assay, or a second Distribution."""
    if self_test:
        return start_distribution(path)
    return start_assay(path, env={"ASSAY_LOG_LEVEL": "warning"})


def measure_pushes(client: httpx.Client, targets: list[Target], blob: BlobFile, repeats: int,
                   samples: dict) -> list[tuple[str, str]]:
    """1. monolithic push, 2. chunked push; returns the (repo, digest) present on both."""
    pushed: list[tuple[str, str]] = []
    for key, label, push in (("push_mono", "push mono  ", Target.push_monolithic),
                             ("push_chunked", "push chunks", Target.push_chunked)):
        for i in range(repeats):
            digest = blob.restamp()
            repo = f"bench/{key}-{i}"
            for t in targets if i % 2 == 0 else targets[::-1]:
                os.sync()  # untimed: no writeback left over from the previous step
                s = push(t, client, repo, blob)
                samples[t.name][key].append(s)
                print(f"  {label} #{i} {t.name:12s} {s:7.2f}s "
                      f"{mbps(blob.size, s):8.1f} MB/s")
            pushed.append((repo, digest))
    return pushed


def measure_pulls(client: httpx.Client, targets: list[Target], pushed: list[tuple[str, str]],
                  pull_repeats: int, size: int, samples: dict) -> dict:
    """3. pull (each repetition a different blob; each verified once, untimed); returns
    each target's first response."""
    pull_meta = {}
    for t in targets:
        repo, digest = pushed[-1]
        t.verify_pull(client, repo, digest)
    for i in range(pull_repeats):
        repo, digest = pushed[i % len(pushed)]
        for t in targets if i % 2 == 0 else targets[::-1]:
            os.sync()  # untimed: no writeback left over from the previous step
            s, meta = t.pull(repo, digest, size)
            pull_meta[t.name] = meta
            samples[t.name]["pull"].append(s)
            print(f"  pull        #{i} {t.name:12s} {s:7.2f}s {mbps(size, s):8.1f} MB/s"
                  f"  ({meta['first_status_line']}, redirects {meta['redirects']},"
                  f" Location {'yes' if meta['location'] else 'no'})")
    return pull_meta


def measure_manifest_get(client: httpx.Client, targets: list[Target], wrk_s: int) -> dict:
    """4. manifest GET by tag under wrk."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(4096)
    wrk_res = {}
    for t in targets:
        repo = "bench/manifest"
        cd = t.put_small_blob(client, repo, config)
        ld = t.put_small_blob(client, repo, layer)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": common.OCI_MANIFEST,
            "config": {"mediaType": common.OCI_CONFIG, "digest": cd, "size": len(config)},
            "layers": [{"mediaType": common.OCI_LAYER, "digest": ld, "size": len(layer)}],
        }, separators=(",", ":")).encode()
        mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        url = f"{t.base}/v2/{repo}/manifests/latest"
        r = client.put(url, content=manifest, headers={"Content-Type": common.OCI_MANIFEST})
        if r.status_code != 201:
            raise t.fail("manifest PUT", describe(r))
        r = client.get(url, headers={"Accept": common.OCI_MANIFEST})
        if (r.status_code != 200 or r.content != manifest
                or r.headers.get("docker-content-digest") != mdigest):
            raise t.fail("manifest GET check", describe(r))
        os.sync()
        wrk_res[t.name] = run_wrk(t, url, wrk_s)
        print(f"  manifest GET {t.name:12s} {wrk_res[t.name]['rps']:8.0f} req/s "
              f"({wrk_res[t.name]['requests']} requests, "
              f"latency {wrk_res[t.name]['latency']})")
    return wrk_res


def measure_storage(work: Path, blob: BlobFile, self_test: bool,
                    servers: list[ServerProcess]) -> dict:
    """5. storage: a fresh pair, the same blob pushed to 10 repositories; returns the
    bytes each stored. The servers are appended to ``servers`` (and stopped here)."""
    blob.restamp()
    a2 = start_subject(work / "assay-storage", self_test)
    servers.append(a2)
    d2 = start_distribution(work / "distribution-storage")
    servers.append(d2)
    stores = {"assay": (Target("assay", a2, work), work / "assay-storage"),
              "distribution": (Target("distribution", d2, work),
                               work / "distribution-storage" / "data")}
    if self_test:
        stores["assay"] = (stores["assay"][0], work / "assay-storage" / "data")
    disk = {}
    with httpx.Client(timeout=600) as client:
        for name, (t, path) in stores.items():
            for i in range(STORAGE_REPOS):
                t.push_monolithic(client, f"bench/store-{i}", blob)
            for i in range(STORAGE_REPOS):  # every repository can read it back
                r = client.head(f"{t.base}/v2/bench/store-{i}/blobs/{blob.digest}")
                if r.status_code != 200:
                    raise t.fail("HEAD after storage push", describe(r))
            disk[name] = du_bytes(path)
            print(f"  storage     {name:12s} {disk[name] / common.MiB:10.1f} MiB after "
                  f"{STORAGE_REPOS} pushes of {blob.size // common.MiB} MiB")
    for s in servers:
        s.stop()
    servers.clear()
    return disk


def figures(samples: dict, wrk_res: dict, disk: dict, size: int, figs: dict) -> None:
    """Fill ``figs`` with the medians (MB/s, req/s, MiB) and the paired ratios."""
    for key, label in (("push_mono", "push monolithic"), ("push_chunked", "push chunked"),
                       ("pull", "pull")):
        figs[key] = {n: mbps(size, median(samples[n][key])) for n in samples}
        # Both registries ran back to back in each repetition: time(d) / time(a).
        figs[key]["paired_ratio"] = median(
            [td / ta for ta, td in zip(samples["assay"][key],
                                       samples["distribution"][key], strict=True)])
        figs[key]["unit"] = "MB/s"
        figs[key]["label"] = label
    figs["manifest_get"] = {n: wrk_res[n]["rps"] for n in wrk_res}
    figs["manifest_get"].update(unit="req/s", label="manifest GET by tag, 32 conns")
    figs["disk"] = {n: disk[n] / common.MiB for n in disk}
    figs["disk"].update(unit="MiB", label=f"disk after {STORAGE_REPOS} repos x 1 blob")


def print_table(figs: dict, size: int) -> None:
    """Print the Markdown table, adding each figure's ratio, target and verdict to it."""
    targets_spec = {"push_mono": ("ratio", 2.0, ">= 2x"),
                    "push_chunked": ("ratio", 2.0, ">= 2x"),
                    "pull": ("ratio", 1.0, ">= 1x"),
                    "manifest_get": ("ratio", 2.0, ">= 2x"),
                    "disk": ("copies", 1.1, "one copy stored")}
    blob_mib = size / common.MiB
    print("\n| figure | assay | distribution | ratio | paired ratio | target |")
    print("|---|---:|---:|---:|---:|---|")
    for key, f in figs.items():
        ratio = f["assay"] / f["distribution"] if f["distribution"] else float("inf")
        f["ratio"] = ratio
        kind, bound, text = targets_spec[key]
        paired = f.get("paired_ratio")
        if kind == "ratio":
            met = ratio >= bound and (paired is None or paired >= bound)
        else:
            f["assay_copies"] = f["assay"] / blob_mib
            met = f["assay"] <= bound * blob_mib
            text += f" ({f['assay_copies']:.2f} copies)"
        f["target"], f["met"] = text, met
        print(f"| {f['label']} | {fmt(f['assay'], f['unit'])} | "
              f"{fmt(f['distribution'], f['unit'])} | {ratio:.2f}x | "
              f"{'' if paired is None else f'{paired:.2f}x'} | "
              f"{text} {'met' if met else '**MISSED**'} |")
    print()
    for n in NOTES:
        print(f"- {n}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size, chunk, wrk_s = args.size, args.chunk, args.wrk_s
    repeats, pull_repeats = args.repeats, args.pull_repeats

    facts = machine_facts()
    print("# assay vs CNCF Distribution\n")
    if args.self_test:
        print("**SELF-TEST: the 'assay' column is a second Distribution instance**\n")
    facts["self_test"] = args.self_test
    for k, v in facts.items():
        print(f"- {k}: {v}")

    work = pick_workdir()
    df_line = sh(["df", "-hT", str(work)]).splitlines()[-1]
    print(f"- workdir: {work} ({df_line})")
    free = shutil.disk_usage(work).free
    need = size * (2 + 2 * 2 * repeats + 2 * STORAGE_REPOS) + 2 * 1024 * common.MiB
    if free < need:
        raise SystemExit(f"need ~{need // common.MiB} MiB free in {work}, "
                         f"have {free // common.MiB} MiB")
    print(f"- blob: {size // common.MiB} MiB, PATCH chunks of {chunk // common.MB} MB "
          f"({-(-size // chunk)} chunks), {repeats} push / {pull_repeats} pull repetitions "
          f"(median), wrk {wrk_s}s\n")

    servers: list[ServerProcess] = []
    results: dict = {"machine": facts, "workdir": str(work), "df": df_line,
                     "blob_bytes": size, "chunk_bytes": chunk, "repeats": repeats,
                     "pull_repeats": pull_repeats,
                     "wrk_seconds": wrk_s, "notes": NOTES, "figures": {}, "samples": {}}
    try:
        t0 = time.perf_counter()
        blob = BlobFile(work / "blob.bin", size, chunk)
        blob.generate()
        print(f"generated payload + chunk files in {time.perf_counter() - t0:.1f}s")

        a = start_subject(work / "assay", args.self_test)
        servers.append(a)
        d = start_distribution(work / "distribution")
        servers.append(d)
        targets = [Target("assay", a, work), Target("distribution", d, work)]
        print(f"assay pid {a.pid} at {a.url}; distribution pid {d.pid} at {d.url}\n")
        samples: dict = {t.name: {"push_mono": [], "push_chunked": [], "pull": []}
                         for t in targets}
        with httpx.Client(timeout=600) as client:
            pushed = measure_pushes(client, targets, blob, repeats, samples)
            results["pull_first_response"] = measure_pulls(client, targets, pushed,
                                                           pull_repeats, size, samples)
            wrk_res = measure_manifest_get(client, targets, wrk_s)

        for s in servers:
            s.stop()
        servers.clear()
        for t in targets:
            shutil.rmtree(work / t.name, ignore_errors=True)
        disk = measure_storage(work, blob, args.self_test, servers)

        for name, d_ in samples.items():
            results["samples"][name] = {k: [round(x, 4) for x in v] for k, v in d_.items()}
        figures(samples, wrk_res, disk, size, results["figures"])
        results["wrk"] = {n: {k: v for k, v in w.items()} for n, w in wrk_res.items()}
        print_table(results["figures"], size)

        common.write_results("registry_vs_distribution", results, "quick" if args.quick else "",
                             "selftest" if args.self_test else "")
        return 0
    finally:
        common.stop_all(s.stop for s in servers)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    common.run(main)
