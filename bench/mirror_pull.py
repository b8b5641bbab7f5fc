"""Pulls through a mirror namespace against pulls straight from its upstream.

    .venv/bin/python -m bench.mirror_pull [--size-mib 256] [--repeats 3]

One run, side by side on loopback: Debian's CNCF Distribution as the upstream, a real
``assay serve`` (SQLite + filesystem, auth off, no workers) with a mirror namespace ``m``
of it. Each repetition pushes a new blob (random bytes) to the upstream and then times:

- **direct**: a GET of the blob from Distribution itself (the peer, and the floor a
  pull-through cache can reach on its first pull);
- **cold**: the first GET through the mirror, which fetches from the upstream while it
  stores the blob and streams it to this client (time to the first byte, and in all);
- **warm**: the same GET again, served from the mirror's own store;
- **10 at once**: a fresh blob pulled by ten clients at the same moment through the
  mirror (one streams it as it is fetched, nine wait until it is stored and read it from
  the mirror's store); the upstream's access log counts how many times it was fetched, and
  the bytes all ten received over the wall time give an aggregate rate. The ten clients
  hash in threads of one Python process on the same cores, so that rate is a floor.

Every body is hashed by the client. Figures are medians over the repetitions, reported as
ratios to the direct pull; results go to ``bench/results/mirror_pull-<date>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import threading
import time
from pathlib import Path

import httpx

from bench import common
from bench.common import BenchError, machine_facts, median, pick_workdir
from tests.support.oci import image_manifest
from tests.support.processes import start_assay, start_distribution


def _upload(up: httpx.Client, name: str, path: Path) -> str:
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    r = up.post(f"/v2/{name}/blobs/uploads/")
    location = r.headers["Location"]
    sep = "&" if "?" in location else "?"
    with path.open("rb") as body:
        r = up.put(f"{location}{sep}digest={digest}", content=body,
                   headers={"Content-Length": str(path.stat().st_size)})
    if r.status_code != 201:
        raise BenchError(f"upstream push failed: {r.status_code} {r.text[:200]}")
    return digest


def push(up: httpx.Client, name: str, workdir: Path, size: int) -> str:
    """A new image with one random layer of ``size`` bytes; the layer's digest."""
    layer = workdir / "layer.bin"
    with layer.open("wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    digest = _upload(up, name, layer)
    config = workdir / "config.json"
    config.write_bytes(b'{"bench": %d}' % time.time_ns())
    _upload(up, name, config)
    body = image_manifest(config.read_bytes(), [])
    doc = body.replace(b'"layers": []', b'"layers": [{"mediaType": '
                       b'"application/vnd.oci.image.layer.v1.tar", "digest": "%s", '
                       b'"size": %d}]' % (digest.encode(), size))
    r = up.put(f"/v2/{name}/manifests/latest", content=doc,
               headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    if r.status_code != 201:
        raise BenchError(f"upstream manifest push failed: {r.status_code} {r.text[:200]}")
    layer.unlink()
    return digest


def timed_get(url: str, digest: str) -> tuple[float, float]:
    """(seconds to the first body byte, seconds in all) of one GET, body hashed."""
    h = hashlib.sha256()
    with httpx.Client(timeout=600) as c:
        started = time.perf_counter()
        first = None
        with c.stream("GET", url) as r:
            if r.status_code != 200:
                raise BenchError(f"GET {url}: {r.status_code}")
            for chunk in r.iter_bytes(1 << 20):
                if first is None:
                    first = time.perf_counter() - started
                h.update(chunk)
        total = time.perf_counter() - started
    if "sha256:" + h.hexdigest() != digest:
        raise BenchError(f"GET {url}: wrong bytes")
    return first or total, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib << 20
    workdir = pick_workdir()
    stops = []
    try:
        upstream = start_distribution(workdir / "upstream", access_log=True)
        stops.append(upstream.stop)
        mirror = start_assay(workdir / "mirror", env={"ASSAY_OUTBOUND_ALLOW": "127.0.0.1"})
        stops.append(mirror.stop)
        r = httpx.put(f"{mirror.url}/api/v1/mirrors/m", json={"kind": "oci",
                                                              "url": upstream.url})
        if r.status_code != 200:
            raise BenchError(f"mirror add failed: {r.text}")
        samples: dict[str, list[float]] = {k: [] for k in (
            "direct_s", "cold_s", "cold_first_byte_s", "warm_s")}
        with httpx.Client(base_url=upstream.url, timeout=600) as up:
            for i in range(args.repeats):
                name = f"bench/r{i}"
                digest = push(up, name, workdir, size)
                httpx.get(f"{mirror.url}/v2/m/{name}/manifests/latest").raise_for_status()
                os.sync()
                samples["direct_s"].append(timed_get(
                    f"{upstream.url}/v2/{name}/blobs/{digest}", digest)[1])
                first, total = timed_get(f"{mirror.url}/v2/m/{name}/blobs/{digest}", digest)
                samples["cold_s"].append(total)
                samples["cold_first_byte_s"].append(first)
                samples["warm_s"].append(timed_get(
                    f"{mirror.url}/v2/m/{name}/blobs/{digest}", digest)[1])
            name = "bench/many"
            digest = push(up, name, workdir, size)
            httpx.get(f"{mirror.url}/v2/m/{name}/manifests/latest").raise_for_status()
            many: list[float] = []

            def pull() -> None:
                many.append(timed_get(f"{mirror.url}/v2/m/{name}/blobs/{digest}", digest)[1])

            started = time.perf_counter()
            threads = [threading.Thread(target=pull) for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            many_wall = time.perf_counter() - started
        fetches = sum(1 for line in upstream.log().splitlines()
                      if "GET /v2/" in line and f"/blobs/{digest}" in line)
        if len(many) != 10:
            raise BenchError("a concurrent pull failed")
    finally:
        common.stop_all(reversed(stops))
    mb = size / 1e6
    direct, cold, warm = (median(samples[k]) for k in ("direct_s", "cold_s", "warm_s"))
    first = median(samples["cold_first_byte_s"])
    figures = {
        "direct_MBps": mb / direct, "cold_MBps": mb / cold, "warm_MBps": mb / warm,
        "cold_vs_direct": direct / cold, "warm_vs_direct": direct / warm,
        "cold_first_byte_ms": first * 1000, "cold_first_byte_share": first / cold,
        "ten_at_once_aggregate_MBps": 10 * mb / many_wall,
        "ten_at_once_aggregate_vs_direct": (10 * mb / many_wall) / (mb / direct),
        "ten_at_once_upstream_fetches": fetches,
    }
    print("| figure | value |\n|---|---|")
    for key, value in figures.items():
        print(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
    path = common.write_results("mirror_pull", {
        "size_mib": args.size_mib, "repeats": args.repeats, "samples": samples,
        "ten_at_once_s": many, "figures": figures, "machine": machine_facts()})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    common.run(main)
