"""What access control costs: assay with ``ASSAY_AUTH=1`` vs the same build with auth off.

    .venv/bin/python -m bench.auth_overhead [--repeats 5] [--quick]

Starts two ``assay serve`` processes side by side on loopback (no workers, gate off, as
``tests/support/processes.start_assay`` does), data dirs on the repository's own
(non-tmpfs) filesystem: one with auth off, one with ``ASSAY_AUTH=1`` and a user with the
``write`` role in namespace ``team`` (made with ``assay user add`` and ``assay namespace
grant``) plus a personal access token (``assay user token add``). Measures:

1. manifest GET by tag under ``wrk -t1 -c32``: auth off vs auth on with (a) ``Basic
   user:password`` (verified once with argon2, then served from the credential cache,
   ``ASSAY_AUTH_CACHE_SECONDS``), (b) ``Bearer`` token from ``GET /auth/token``, (c)
   ``Bearer`` personal access token;
2. chunked blob push (POST, ``PATCH`` per chunk with ``Content-Range`` through curl,
   empty final PUT): Basic password vs auth off;
3. latency of ``GET /auth/token`` with Basic password (the first request of a user, then
   repeated ones), the same with a personal access token, its throughput under ``wrk``,
   and the first ``/v2/`` request of a user (argon2) vs the next ones (cache).

The servers (and, for 1, the four variants) alternate within each repetition, and the
order is reversed every other repetition. Ratios are auth-on / auth-off (requests per
second, push MB/s), given as the ratio of the medians and as the median of the
per-repetition ratios. Results are printed as a Markdown table and written to
``bench/results/auth_overhead-<date>[-quick].json``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
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
from tests.support.processes import ServerProcess, assay_command, start_assay

REPEATS = 5
USER = "benchuser"
PASSWORD = "bench-password-0123"
NAMESPACE = "team"
MANIFEST_REPO = f"{NAMESPACE}/manifest"
TOKEN_SEQ = 10  # repeated /auth/token requests per repetition (after the first)
VARIANTS = ("off", "basic", "bearer", "pat")
VARIANT_LABELS = {
    "off": "auth off",
    "basic": "Basic user:password (cached)",
    "bearer": "Bearer token from /auth/token",
    "pat": "Bearer personal access token",
}
NOTES = [
    "Both servers are the same build and configuration except ASSAY_AUTH; each wrk run "
    "is preceded by one untimed request with the same Authorization header, so the "
    "credential cache is warm: the figures are the steady state, the first request's "
    "argon2 is reported separately.",
    "Client (curl, wrk) and both servers share the same cores; wrk -t1 takes one of them.",
    "os.sync() runs (untimed) before every timed push, so writeback of one server's "
    "data does not land in the other's measurement.",
    "Each push repetition sends new content (the first 16 bytes are restamped).",
]


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def cli(args: list[str], data_dir: Path, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    p = subprocess.run([*assay_command(), *args, "--data-dir", str(data_dir)], input=stdin,
                       capture_output=True, text=True, env=env, cwd=common.REPO_ROOT, check=False)
    if p.returncode != 0:
        raise common.BenchError(f"assay {' '.join(args)} -> exit {p.returncode}\n"
                                f"{p.stdout}\n{p.stderr}")
    return p.stdout


def make_user(data_dir: Path, name: str, role: str) -> None:
    cli(["user", "add", name, "--password-stdin"], data_dir, stdin=PASSWORD + "\n")
    cli(["namespace", "grant", NAMESPACE, name, role], data_dir)


def make_pat(data_dir: Path, name: str) -> str:
    out = cli(["user", "token", "add", name, "--name", "bench"], data_dir)
    m = re.search(r"assay_pat_\S+", out)
    if not m:
        raise common.BenchError(f"no token in the output of `assay user token add`:\n{out}")
    return m.group(0)


@dataclass
class Side:
    name: str  # "off" | "on"
    server: ServerProcess
    tmp: Path
    auth: str | None = None  # Authorization header for pushes (Basic password)
    extra: dict = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.server.url

    def fail(self, what: str, detail: str) -> common.BenchError:
        log = self.server.log()[-3000:]
        return common.BenchError(f"[auth {self.name}] {what}\n{detail}\n"
                                 f"--- server log tail ---\n{log}")

    def headers(self, **more: str) -> dict:
        h = dict(more)
        if self.auth:
            h["Authorization"] = self.auth
        return h

    def curl_auth(self) -> list[str]:
        return ["-H", f"Authorization: {self.auth}"] if self.auth else []

    def start_upload(self, client: httpx.Client, repo: str) -> str:
        url = f"{self.base}/v2/{repo}/blobs/uploads/"
        r = client.post(url, headers=self.headers(**{"Content-Length": "0"}))
        if r.status_code != 202 or "location" not in r.headers:
            raise self.fail("POST upload", describe(r))
        return urljoin(url, r.headers["location"])

    def put_small_blob(self, client: httpx.Client, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        loc = self.start_upload(client, repo)
        r = client.put(with_query(loc, digest=digest), content=data,
                       headers=self.headers(**{"Content-Type": "application/octet-stream"}))
        if r.status_code != 201:
            raise self.fail("PUT small blob", describe(r))
        return digest

    def push_chunked(self, client: httpx.Client, repo: str, blob: BlobFile) -> float:
        hdr = self.tmp / f"{self.name}-headers.txt"
        body = self.tmp / f"{self.name}-body.txt"
        t0 = time.perf_counter()
        loc = self.start_upload(client, repo)
        for cpath, start, end in blob.chunks:
            cmd = ["curl", "-sS", "-H", "Expect:", "-D", str(hdr), "-o", str(body),
                   "-w", "%{http_code}", "-X", "PATCH", "-T", str(cpath),
                   "-H", "Content-Type: application/octet-stream",
                   "-H", f"Content-Range: {start}-{end}", *self.curl_auth(), loc]
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            headers = hdr.read_text(errors="replace") if hdr.exists() else ""
            new_loc = header(headers, "location")
            if p.returncode != 0 or p.stdout.strip() != "202" or not new_loc:
                raise self.fail("chunk PATCH", f"PATCH {loc} (Content-Range: {start}-{end}) "
                                f"-> curl {p.returncode} {p.stdout} {p.stderr}\n{headers}\n"
                                f"{body.read_text(errors='replace')[:2000]}")
            loc = urljoin(loc, new_loc)
        r = client.put(with_query(loc, digest=blob.digest),
                       headers=self.headers(**{"Content-Length": "0"}))
        elapsed = time.perf_counter() - t0
        if r.status_code != 201:
            raise self.fail("final chunked PUT", describe(r))
        return elapsed


def run_wrk(side: Side, url: str, seconds: int, auth: str | None, conns: int = 32,
            accept: str | None = common.OCI_MANIFEST) -> dict:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    if auth:
        cmd += ["-H", f"Authorization: {auth}"]
    p = subprocess.run([*cmd, url], capture_output=True, text=True, check=False,
                       timeout=seconds + 60)
    out = p.stdout + p.stderr
    shown = " ".join(cmd).replace(auth, "<credentials>") if auth else " ".join(cmd)
    if p.returncode != 0:
        raise side.fail("wrk", f"{shown}\n{out}")
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not m or not total:
        raise side.fail("wrk", f"cannot parse wrk output:\n{out}")
    if re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out) or re.search(r"Socket errors", out):
        raise side.fail("wrk", f"wrk saw errors against {url}:\n{out}")
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    return {"rps": float(m.group(1)), "requests": int(total.group(1)),
            "latency": {f"p{k}": v for k, v in lat.items()}, "raw": out}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_get(client: httpx.Client, url: str, auth: str, side: Side,
              headers: dict | None = None) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    r = client.get(url, headers={**(headers or {}), "Authorization": auth})
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        raise side.fail(f"GET {url}", describe(r))
    return elapsed, r


def get_token(client: httpx.Client, side: Side, auth: str, scope: str) -> tuple[float, str]:
    url = f"{side.base}/auth/token?service=assay&scope={scope}"
    s, r = timed_get(client, url, auth, side)
    return s, r.json()["token"]


TOKEN_FIGURES = ("token_first_s", "token_repeat_s", "token_pat_s", "v2_first_s",
                 "v2_repeat_s")


@dataclass
class Samples:
    """Every measurement of one run."""

    rps: dict = field(default_factory=lambda: {v: [] for v in VARIANTS})
    lat: dict = field(default_factory=lambda: {v: [] for v in VARIANTS})
    cpu: dict = field(default_factory=lambda: {v: [] for v in VARIANTS})  # server us/request
    push: dict = field(default_factory=lambda: {"off": [], "on": []})
    tok: dict = field(default_factory=lambda: {k: [] for k in TOKEN_FIGURES})
    wrk_tok: dict = field(default_factory=dict)


@dataclass
class Setup:
    """The two servers and what the auth-on one was given before it started."""

    off: Side
    on: Side
    pat: str
    probes: list[str]  # one cold-cache user per repetition
    scope: str = f"repository:{MANIFEST_REPO}:pull"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=None,
                    help=f"repetitions (default {REPEATS}; 2 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 repetitions, 64 MiB blob, wrk 2 s")
    ap.add_argument("--size-mib", type=int, default=None, help="blob size (default 256)")
    ap.add_argument("--chunk-mib", type=int, default=16, help="PATCH chunk size (default 16)")
    ap.add_argument("--wrk-seconds", type=int, default=None, help="default 5 (2 with --quick)")
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else REPEATS)
    args.size = (args.size_mib or (64 if args.quick else 256)) * common.MiB
    args.chunk = args.chunk_mib * common.MiB
    args.wrk_s = args.wrk_seconds or (2 if args.quick else 5)
    return args


def start_servers(work: Path, repeats: int, servers: list[ServerProcess]) -> Setup:
    """Make the users and the token in the auth-on data dir, then start both servers
    (appended to ``servers`` as they start, for the caller to stop)."""
    base_env = {"ASSAY_LOG_LEVEL": "warning"}
    on_dir = work / "auth-on"
    on_dir.mkdir()
    t0 = time.perf_counter()
    cli(["migrate"], on_dir)  # admin commands create no database of their own
    make_user(on_dir, USER, "write")
    pat = make_pat(on_dir, USER)
    probes = [f"probe{i}" for i in range(repeats)]
    for p in probes:
        make_user(on_dir, p, "read")
    print(f"made {1 + len(probes)} users and a token in {time.perf_counter() - t0:.1f}s")

    off = start_assay(work / "auth-off", env=base_env)
    servers.append(off)
    on = start_assay(on_dir, env={**base_env, "ASSAY_AUTH": "1",
                                  "ASSAY_AUTH_CACHE_SECONDS": "30"})
    servers.append(on)
    print(f"auth off: pid {off.pid} at {off.url}; auth on: pid {on.pid} at {on.url}\n")
    return Setup(Side("off", off, work), Side("on", on, work, auth=basic(USER, PASSWORD)),
                 pat, probes)


def put_manifests(client: httpx.Client, setup: Setup) -> tuple[dict[str, str], str]:
    """Check that auth is on (and off on the other one), then put the same manifest on
    both servers; return ``({side: manifest URL}, manifest digest)``."""
    r = client.get(f"{setup.on.base}/v2/{MANIFEST_REPO}/tags/list")
    if r.status_code != 401:
        raise setup.on.fail("anonymous GET must be refused", describe(r))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(4096)
    manifest_url = {}
    for side in (setup.off, setup.on):
        cd = side.put_small_blob(client, MANIFEST_REPO, config)
        ld = side.put_small_blob(client, MANIFEST_REPO, layer)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": common.OCI_MANIFEST,
            "config": {"mediaType": common.OCI_CONFIG, "digest": cd, "size": len(config)},
            "layers": [{"mediaType": common.OCI_LAYER, "digest": ld, "size": len(layer)}],
        }, separators=(",", ":")).encode()
        url = f"{side.base}/v2/{MANIFEST_REPO}/manifests/latest"
        r = client.put(url, content=manifest,
                       headers=side.headers(**{"Content-Type": common.OCI_MANIFEST}))
        if r.status_code != 201:
            raise side.fail("manifest PUT", describe(r))
        manifest_url[side.name] = url
        mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    return manifest_url, mdigest


def variant_auth(client: httpx.Client, setup: Setup, variant: str) -> str | None:
    """The Authorization header of a manifest GET variant."""
    if variant == "off":
        return None
    if variant == "basic":
        return basic(USER, PASSWORD)
    if variant == "pat":
        return f"Bearer {setup.pat}"
    # a fresh token each time: they live ASSAY_AUTH_TOKEN_SECONDS
    return "Bearer " + get_token(client, setup.on, basic(USER, PASSWORD), setup.scope)[1]


def measure_gets(client: httpx.Client, setup: Setup, manifests: tuple[dict[str, str], str],
                 i: int, wrk_s: int, out: Samples) -> None:
    """1. manifest GET under wrk; the four variants alternate."""
    manifest_url, mdigest = manifests
    for v in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
        side = setup.off if v == "off" else setup.on
        auth = variant_auth(client, setup, v)
        # untimed: checks the answer and warms the credential cache
        h = {"Accept": common.OCI_MANIFEST}
        if auth:
            h["Authorization"] = auth
        r = client.get(manifest_url[side.name], headers=h)
        if r.status_code != 200 or r.headers.get("docker-content-digest") != mdigest:
            raise side.fail("manifest GET check", describe(r))
        cpu0 = cpu_seconds(side.server.pid)
        w = run_wrk(side, manifest_url[side.name], wrk_s, auth)
        cpu_us = (cpu_seconds(side.server.pid) - cpu0) / w["requests"] * 1e6
        out.rps[v].append(w["rps"])
        out.cpu[v].append(cpu_us)
        out.lat[v].append(w["latency"])
        print(f"  manifest GET #{i} {VARIANT_LABELS[v]:32s} {w['rps']:8.0f} req/s"
              f"  server CPU {cpu_us:4.0f} us/request  latency {w['latency']}")


def measure_push(client: httpx.Client, setup: Setup, blob: BlobFile, i: int,
                 out: Samples) -> None:
    """2. chunked push, Basic password vs auth off."""
    blob.restamp()
    for side in (setup.off, setup.on) if i % 2 == 0 else (setup.on, setup.off):
        os.sync()
        s = side.push_chunked(client, f"{NAMESPACE}/push-{i}", blob)
        out.push[side.name].append(s)
        print(f"  push chunked #{i} auth {side.name:3s} {s:6.2f}s "
              f"{blob.size / s / common.MB:7.1f} MB/s")


def measure_tokens(client: httpx.Client, setup: Setup, i: int, out: Samples) -> None:
    """3. the token endpoint and the first request of a user (argon2)."""
    s_on, scope, tok = setup.on, setup.scope, out.tok
    probe = basic(setup.probes[i], PASSWORD)
    s, _ = get_token(client, s_on, probe, scope)
    tok["token_first_s"].append(s)
    rep = [get_token(client, s_on, probe, scope)[0] for _ in range(TOKEN_SEQ)]
    tok["token_repeat_s"].append(median(rep))
    pat_rep = [get_token(client, s_on, basic(USER, setup.pat), scope)[0]
               for _ in range(TOKEN_SEQ)]
    tok["token_pat_s"].append(median(pat_rep))
    # The probe user's first /v2/ request: its Authorization header is new to
    # the credential cache (the token endpoint does not fill it).
    v2 = f"{s_on.base}/v2/{MANIFEST_REPO}/manifests/latest"
    acc = {"Accept": common.OCI_MANIFEST}
    s, _ = timed_get(client, v2, probe, s_on, acc)
    tok["v2_first_s"].append(s)
    tok["v2_repeat_s"].append(median(
        [timed_get(client, v2, probe, s_on, acc)[0] for _ in range(TOKEN_SEQ)]))
    print(f"  token #{i} first {tok['token_first_s'][-1] * 1e3:6.1f} ms, repeated "
          f"{tok['token_repeat_s'][-1] * 1e3:6.1f} ms, with PAT "
          f"{tok['token_pat_s'][-1] * 1e3:5.1f} ms; /v2 first "
          f"{tok['v2_first_s'][-1] * 1e3:6.1f} ms, cached "
          f"{tok['v2_repeat_s'][-1] * 1e3:5.1f} ms")


def measure_token_wrk(setup: Setup, wrk_s: int, out: Samples) -> None:
    """Token endpoint throughput (once; both credentials)."""
    token_url = f"{setup.on.base}/auth/token?service=assay&scope={setup.scope}"
    for key, auth in (("password", basic(USER, PASSWORD)), ("pat", basic(USER, setup.pat))):
        out.wrk_tok[key] = run_wrk(setup.on, token_url, wrk_s, auth, conns=4, accept=None)
        print(f"  /auth/token under wrk -c4, Basic {key:8s} "
              f"{out.wrk_tok[key]['rps']:8.1f} req/s  latency {out.wrk_tok[key]['latency']}")


def figures(m: Samples, size: int, chunk: int) -> dict:
    figs: dict = {}
    off_rps = m.rps["off"]
    for v in VARIANTS:
        f = {"label": VARIANT_LABELS[v], "rps_median": median(m.rps[v]),
             "rps_samples": [round(x, 1) for x in m.rps[v]], "latency": m.lat[v],
             "cpu_us_per_request_median": median(m.cpu[v]),
             "cpu_us_per_request_samples": [round(x, 1) for x in m.cpu[v]]}
        if v != "off":
            f["ratio_of_medians"] = f["rps_median"] / median(off_rps)
            f["median_paired_ratio"] = median(
                [a / b for a, b in zip(m.rps[v], off_rps, strict=True)])
            f["cpu_us_extra_median_paired"] = median(
                [a - b for a, b in zip(m.cpu[v], m.cpu["off"], strict=True)])
        figs[f"manifest_get_{v}"] = f
    mbps = {k: [size / s / common.MB for s in v] for k, v in m.push.items()}
    figs["push_chunked"] = {
        "label": f"push chunked, {size // common.MiB} MiB in {chunk // common.MiB} MiB PATCHes",
        "off_mbps": median(mbps["off"]), "on_mbps": median(mbps["on"]),
        "off_samples_s": [round(x, 4) for x in m.push["off"]],
        "on_samples_s": [round(x, 4) for x in m.push["on"]],
        "ratio_of_medians": median(mbps["on"]) / median(mbps["off"]),
        "median_paired_ratio": median([a / b for a, b in zip(mbps["on"], mbps["off"],
                                                             strict=True)])}
    figs["token"] = {k: {"median_ms": median(v) * 1e3,
                         "samples_ms": [round(x * 1e3, 2) for x in v]}
                     for k, v in m.tok.items()}
    figs["token_wrk"] = {k: {"rps": w["rps"], "latency": w["latency"], "raw": w["raw"]}
                         for k, w in m.wrk_tok.items()}
    return figs


def print_report(figs: dict, m: Samples, facts: dict, wrk_s: int) -> None:
    print("\n| figure | auth off | auth on | on / off (ratio of medians) "
          "| on / off (median paired) | server CPU per request, off -> on |")
    print("|---|---:|---:|---:|---:|---:|")
    cpu_off = median(m.cpu["off"])
    for v in VARIANTS[1:]:
        f = figs[f"manifest_get_{v}"]
        print(f"| manifest GET by tag, 32 conns, {f['label']} | "
              f"{median(m.rps['off']):,.0f} req/s | {f['rps_median']:,.0f} req/s | "
              f"{f['ratio_of_medians']:.3f} | {f['median_paired_ratio']:.3f} | "
              f"{cpu_off:.0f} -> {f['cpu_us_per_request_median']:.0f} us "
              f"(paired +{f['cpu_us_extra_median_paired']:.0f}) |")
    f = figs["push_chunked"]
    print(f"| {f['label']}, Basic password | {f['off_mbps']:,.0f} MB/s | "
          f"{f['on_mbps']:,.0f} MB/s | {f['ratio_of_medians']:.3f} | "
          f"{f['median_paired_ratio']:.3f} | |")
    t = figs["token"]
    print("\n| auth on: latency | median |")
    print("|---|---:|")
    for key, label in (
            ("token_first_s", "GET /auth/token, Basic password, a user's first request"),
            ("token_repeat_s", f"GET /auth/token, Basic password, the next {TOKEN_SEQ}"),
            ("token_pat_s", "GET /auth/token, Basic user:<personal access token>"),
            ("v2_first_s", "manifest GET, Basic password, first (argon2, cache miss)"),
            ("v2_repeat_s", f"manifest GET, Basic password, the next {TOKEN_SEQ} "
                            "(cached)")):
        print(f"| {label} | {t[key]['median_ms']:.1f} ms |")
    for key, w in m.wrk_tok.items():
        who = "password" if key == "password" else "user:<personal access token>"
        print(f"| GET /auth/token under wrk -t1 -c4 -d{wrk_s}s, Basic {who} | "
              f"p50 {w['latency'].get('p50', '?')} ({w['rps']:,.1f} req/s) |")
    print()
    for n in NOTES:
        print(f"- {n}")
    print(f"- load average before {facts['loadavg_before']}, "
          f"after {facts['loadavg_after']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeats, size, chunk, wrk_s = args.repeats, args.size, args.chunk, args.wrk_s
    for tool in ("wrk", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")

    facts = machine_facts()
    facts.pop("distribution", None)
    facts["loadavg_before"] = os.getloadavg()
    print("# assay: access control overhead\n")
    for k, v in facts.items():
        print(f"- {k}: {v}")
    work = pick_workdir()
    df_line = sh(["df", "-hT", str(work)]).splitlines()[-1]
    print(f"- workdir: {work} ({df_line})")
    print(f"- {repeats} repetitions (median), wrk -t1 -c32 -d{wrk_s}s, "
          f"blob {size // common.MiB} MiB in {chunk // common.MiB} MiB PATCHes\n")

    servers: list[ServerProcess] = []
    results: dict = {"machine": facts, "workdir": str(work), "df": df_line,
                     "repeats": repeats, "wrk_seconds": wrk_s, "blob_bytes": size,
                     "chunk_bytes": chunk, "notes": NOTES}
    try:
        t0 = time.perf_counter()
        blob = BlobFile(work / "blob.bin", size, chunk)
        blob.generate()
        print(f"generated payload + chunk files in {time.perf_counter() - t0:.1f}s")
        setup = start_servers(work, repeats, servers)
        m = Samples()
        with httpx.Client(timeout=600) as client:
            manifests = put_manifests(client, setup)
            for i in range(repeats):
                measure_gets(client, setup, manifests, i, wrk_s, m)
                measure_push(client, setup, blob, i, m)
                measure_tokens(client, setup, i, m)
            measure_token_wrk(setup, wrk_s, m)
        facts["loadavg_after"] = os.getloadavg()

        results["figures"] = figs = figures(m, size, chunk)
        print_report(figs, m, facts, wrk_s)
        common.write_results("auth_overhead", results, "quick" if args.quick else "")
        return 0
    finally:
        common.stop_all(s.stop for s in servers)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    common.run(main)
