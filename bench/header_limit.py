"""What capping request heads costs: assay's httptools protocol with the cap vs without.

    .venv/bin/python -m bench.header_limit [--repeats 5] [--seconds 8] [--quick]

Serves one assay app (SQLite + filesystem, no workers, gate off) three ways side by side
on loopback, each in its own uvicorn process (uvloop, one worker):

- ``httptools``: uvicorn's stock httptools protocol, which buffers a head of any size
  (what ``assay serve`` ran before);
- ``capped``: ``registry.api.headerlimit.HttpToolsProtocol`` with the 64 KiB cap (what
  ``assay serve`` runs now);
- ``h11``: uvicorn's h11 protocol with the same cap (``h11_max_incomplete_event_size``),
  the cap uvicorn offers out of the box (which, being h11's limit on an *incomplete*
  event, lets through a large head that arrives whole in one read).

and measures, under ``wrk -t1 -c32``, ``GET /v2/`` (the cheapest route: protocol cost
weighs most) and a manifest GET by tag (the hot path of a pull): requests per second, and
the server process's CPU time per request (``/proc/PID/stat`` over the run / requests),
which another load on the machine disturbs less. The three alternate within each
repetition, in a rotating order. Ratios are each against ``httptools``: the ratio of the
medians and the median of the per-repetition ratios. Results are printed
as a Markdown table and written to ``bench/results/header_limit-<date>[-quick].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from bench.common import BenchError, machine_facts, run, stop_all, write_results
from tests.support.processes import free_port, wait_for_http

MODES = ("httptools", "capped", "h11")
CAP = 64 * 1024
REPO, TAG = "bench/manifest", "v1"


def serve(mode: str, port: int, data_dir: str) -> None:
    """Run the app with ``mode``'s protocol until killed (the child's entry point)."""
    import uvicorn

    from registry.api.headerlimit import HttpToolsProtocol
    from registry.app import create_app
    from registry.settings import Settings

    app = create_app(Settings(data_dir=Path(data_dir), workers=0, gate=False, fsync=False))
    http = {"httptools": "httptools", "capped": HttpToolsProtocol, "h11": "h11"}[mode]
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop",
                http=http, h11_max_incomplete_event_size=CAP, access_log=False,
                server_header=False, date_header=False)


def start(mode: str, root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    data = root / mode
    data.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "bench.header_limit", "--serve", mode,
                             str(port), str(data)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/v2/", timeout=60)
    return proc, url


def push_manifest(url: str) -> None:
    """One small image manifest under ``REPO:TAG``, pushed monolithically."""
    import hashlib

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    config, layer = b'{"bench": true}', b"layer"
    with httpx.Client(base_url=url, timeout=30) as c:
        for blob in (config, layer):
            r = c.post(f"/v2/{REPO}/blobs/uploads/?digest={digest(blob)}", content=blob)
            if r.status_code != 201:
                raise BenchError(f"blob push answered {r.status_code}: {r.text[:200]}")
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest(layer), "size": len(layer)}]}).encode()
        r = c.put(f"/v2/{REPO}/manifests/{TAG}", content=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        if r.status_code != 201:
            raise BenchError(f"manifest push answered {r.status_code}: {r.text[:200]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, pid: int, seconds: int, accept: str | None = None) -> tuple[float, float]:
    """Requests per second, and the server's CPU microseconds per request (less sensitive
    than req/s to whatever else the machine runs)."""
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s"]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    before = cpu_seconds(pid)
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60)
    used = cpu_seconds(pid) - before
    if "Non-2xx" in out.stdout or "Socket errors" in out.stdout:
        raise BenchError(f"wrk saw errors against {url}:\n{out.stdout}")
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", out.stdout, re.M)
    total = re.search(r"^\s*(\d+) requests in", out.stdout, re.M)
    if not rate or not total:
        raise BenchError(f"cannot parse wrk output for {url}:\n{out.stdout}{out.stderr}")
    return float(rate[1]), used / int(total[1]) * 1e6


def check_cap(url: str, capped: bool) -> None:
    """The capped servers refuse a 128 KiB header; the stock one serves it."""
    try:
        status = httpx.get(f"{url}/v2/", headers={"X-Big": "a" * (2 * CAP)},
                           timeout=30).status_code
    except httpx.TransportError as exc:  # h11 drops the connection instead of answering
        status = f"no answer ({exc})"
    if (status != 200) != capped:
        kind = "capped" if capped else "stock"
        raise BenchError(f"{url} ({kind}): a 128 KiB header answered {status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="2 repetitions of 2 s")
    parser.add_argument("--serve", nargs=3, metavar=("MODE", "PORT", "DATA"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0
    repeats, seconds = (2, 2) if args.quick else (args.repeats, args.seconds)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-header-limit-") as tmp:
        try:
            urls = {}
            for mode in MODES:
                proc, urls[mode] = start(mode, Path(tmp))
                procs.append(proc)
                push_manifest(urls[mode])
                if mode != "h11":  # h11 caps only a head still incomplete after a read:
                    # one that arrives whole in one read passes whatever its size
                    check_cap(urls[mode], capped=mode == "capped")
            routes = {"GET /v2/": ("/v2/", None),
                      "manifest GET by tag": (f"/v2/{REPO}/manifests/{TAG}",
                                              "application/vnd.oci.image.manifest.v1+json")}
            rps: dict[str, dict[str, list[float]]] = {r: {m: [] for m in MODES} for r in routes}
            cpu: dict[str, dict[str, list[float]]] = {r: {m: [] for m in MODES} for r in routes}
            pids = dict(zip(MODES, (p.pid for p in procs), strict=True))
            for i in range(repeats):
                order = MODES[i % 3:] + MODES[:i % 3]
                for route, (path, accept) in routes.items():
                    for mode in order:
                        rate, us = wrk(urls[mode] + path, pids[mode], seconds, accept)
                        rps[route][mode].append(rate)
                        cpu[route][mode].append(us)
                print(f"repetition {i + 1}/{repeats} done", file=sys.stderr)
        finally:
            stop_all([p.kill for p in procs])
    results: dict = {"machine": machine_facts(), "repeats": repeats, "seconds": seconds,
                     "cap_bytes": CAP, "routes": {}}
    print("\n| route | figure | httptools | capped | capped / httptools | h11 "
          "| h11 / httptools |\n|---|---|---|---|---|---|---|")
    for route in routes:
        results["routes"][route] = {}
        for figure, runs, fmt in (("req/s", rps[route], ",.0f"),
                                  ("server CPU us/request", cpu[route], ".1f")):
            med = {m: statistics.median(v) for m, v in runs.items()}
            paired = {m: statistics.median(a / b for a, b in zip(runs[m], runs["httptools"],
                                                                  strict=True)) for m in MODES}
            results["routes"][route][figure] = {"runs": runs, "median": med,
                                                "paired_ratio": paired}
            print(f"| {route} | {figure} | {med['httptools']:{fmt}} | {med['capped']:{fmt}} | "
                  f"{med['capped'] / med['httptools']:.2f}x (paired {paired['capped']:.2f}x) | "
                  f"{med['h11']:{fmt}} | {med['h11'] / med['httptools']:.2f}x "
                  f"(paired {paired['h11']:.2f}x) |")
    write_results("header_limit", results, "quick" if args.quick else "")
    return 0


if __name__ == "__main__":
    run(main)
