"""The ``assay`` CLI against the peers it replaces, on the same server and content.

    .venv/bin/python -m bench.cli_vs_peers [--repeats 5]

1. pull: ``assay pull`` of the real Gemma 3 270M Q4_K_M GGUF (253 MB; parallel ranged
   parts, digest verified, written as a file) vs ``curl`` of the same blob from the same
   assay server to a file. Target: assay's speed >= 0.9x curl's.
2. push: ``assay push gemma.gguf`` vs ``skopeo copy`` of an OCI layout holding the same
   GGUF as its layer, to the same assay server. Every repetition first restamps the
   file's last 16 bytes (new content, new digest; the header is untouched) and both
   push to fresh repositories with an empty client cache, so neither can skip or mount
   anything. Target: assay's time <= 1.0x skopeo's.

Both sides run back to back in each repetition, alternating who goes first; figures are
medians and the ratio is also given as the median of per-repetition ratios. Results go
to ``bench/results/cli_vs_peers-<date>.json``.
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

from bench.common import (
    OCI_MANIFEST,
    BenchError,
    machine_facts,
    median,
    pick_workdir,
    restamp,
    write_results,
)
from bench.common import run as run_bench
from tests.support.models import gemma_gguf_path
from tests.support.processes import assay_command, start_assay


def run(cmd: list[str], env: dict | None = None) -> float:
    """Run a command, fail loudly on a non-zero exit, return its wall time."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return elapsed


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while buf := f.read(16 << 20):
            h.update(buf)
    return "sha256:" + h.hexdigest()


def oci_layout(directory: Path, gguf: Path, digest: str) -> None:
    """An OCI image layout whose one layer is ``gguf`` (hard-linked, not copied)."""
    shutil.rmtree(directory, ignore_errors=True)
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    os.link(gguf, blobs / digest.split(":")[1])
    config = json.dumps({"model_format": "gguf"}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    (blobs / config_digest.split(":")[1]).write_bytes(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest,
                    "size": gguf.stat().st_size}],
    }).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    (blobs / manifest_digest.split(":")[1]).write_bytes(manifest)
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest,
                       "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))


def engine_pull(host: str, digest: str, size: int, dest: Path) -> float:
    """Seconds for ``Downloader.fetch`` of the blob in this process (what ``assay pull``
    does after start-up: ranged parts, hashing as bytes land, rename into place)."""
    from client.download import Downloader
    from client.locations import BlobLocations
    from client.progress import silent
    from client.ref import parse_reference
    from client.registry_client import RegistryClient

    ref = parse_reference(f"{host}/bench/pull:v1")
    with RegistryClient(ref.registry, locations=BlobLocations(dest.parent / "loc.json")) \
            as client:
        t0 = time.perf_counter()
        Downloader(client, silent()).fetch(ref.name, digest, size, dest)
        return time.perf_counter() - t0


def measure_pull(assay: list[str], server, work: Path, gguf: Path, digest: str,
                 repeats: int, env: dict) -> dict[str, list[float]]:
    """``assay pull`` vs curl of the same blob, alternating which goes first."""
    size = gguf.stat().st_size
    blob_url = f"{server.url}/v2/bench/pull/blobs/{digest}"
    pull: dict[str, list[float]] = {"assay": [], "curl": []}
    for i in range(repeats):
        sides = [("assay", [*assay, "pull", "--quiet", f"{server.host_port}/bench/pull:v1",
                            "-o", str(work / "pulled")]),
                 ("curl", ["curl", "-sS", "--fail", "-o", str(work / "curl.gguf"),
                           blob_url])]
        for name, cmd in sides if i % 2 == 0 else sides[::-1]:
            shutil.rmtree(work / "pulled", ignore_errors=True)
            (work / "curl.gguf").unlink(missing_ok=True)
            os.sync()
            pull[name].append(run(cmd, env))
            print(f"  pull #{i} {name:6s} {pull[name][-1]:6.2f}s "
                  f"{size / pull[name][-1] / 1e6:8.1f} MB/s")
            written = (list((work / "pulled").rglob("*.gguf")) if name == "assay"
                       else [work / "curl.gguf"])
            if len(written) != 1 or sha256_file(written[0]) != digest:
                raise BenchError(f"{name} did not write the GGUF intact: {written}")
    return pull


def measure_engine(host: str, work: Path, digest: str, size: int,
                   repeats: int) -> list[float]:
    """Diagnostic: the same pull in this process (no interpreter start-up, no imports):
    what the download engine itself does against curl."""
    engine = []
    for _ in range(repeats):
        shutil.rmtree(work / "engine", ignore_errors=True)
        os.sync()
        engine.append(engine_pull(host, digest, size, work / "engine" / "gemma.gguf"))
        if sha256_file(work / "engine" / "gemma.gguf") != digest:
            raise BenchError("the in-process pull did not write the GGUF intact")
    print(f"  pull engine in-process: median {median(engine):.2f}s "
          f"({size / median(engine) / 1e6:.0f} MB/s)")
    return engine


def measure_push(assay: list[str], host: str, work: Path, gguf: Path, repeats: int,
                 env: dict) -> dict[str, list[float]]:
    """``assay push`` vs ``skopeo copy`` of the same (restamped, so new) content."""
    size = gguf.stat().st_size
    push: dict[str, list[float]] = {"assay": [], "skopeo": []}
    for i in range(repeats):
        for name in (("assay", "skopeo") if i % 2 == 0 else ("skopeo", "assay")):
            restamp(gguf, 2 * i + (name == "skopeo"))
            d = sha256_file(gguf)
            shutil.rmtree(work / "client-cache", ignore_errors=True)
            if name == "assay":
                cmd = [*assay, "push", "--quiet", str(gguf), f"{host}/bench/a{i}:v1"]
            else:
                oci_layout(work / "layout", gguf, d)
                cmd = ["skopeo", "copy", "--quiet", "--preserve-digests",
                       "--dest-tls-verify=false", f"oci:{work / 'layout'}:v1",
                       f"docker://{host}/bench/s{i}:v1"]
            os.sync()
            push[name].append(run(cmd, env))
            print(f"  push #{i} {name:6s} {push[name][-1]:6.2f}s "
                  f"{size / push[name][-1] / 1e6:8.1f} MB/s")
    return push


def report(pull: dict[str, list[float]], push: dict[str, list[float]], size: int) -> dict:
    """Print the Markdown table; return the figures."""
    pull_ratio = median(pull["curl"]) / median(pull["assay"])  # speed, assay / curl
    pull_paired = median([c / a for a, c in zip(pull["assay"], pull["curl"], strict=True)])
    push_ratio = median(push["assay"]) / median(push["skopeo"])  # time, assay / skopeo
    push_paired = median([a / s for a, s in zip(push["assay"], push["skopeo"],
                                                strict=True)])
    figs = {
        "pull": {"assay_mb_s": size / median(pull["assay"]) / 1e6,
                 "curl_mb_s": size / median(pull["curl"]) / 1e6,
                 "speed_ratio": pull_ratio, "paired": pull_paired,
                 "met": pull_ratio >= 0.9 and pull_paired >= 0.9},
        "push": {"assay_s": median(push["assay"]), "skopeo_s": median(push["skopeo"]),
                 "time_ratio": push_ratio, "paired": push_paired,
                 "met": push_ratio <= 1.0 and push_paired <= 1.0},
    }
    print("\n| figure | assay | peer | ratio | paired ratio | target |")
    print("|---|---:|---:|---:|---:|---|")
    f = figs["pull"]
    print(f"| pull of the 253 MB GGUF (speed) | {f['assay_mb_s']:,.0f} MB/s | curl "
          f"{f['curl_mb_s']:,.0f} MB/s | {pull_ratio:.2f}x | {pull_paired:.2f}x | "
          f">= 0.9x {'met' if f['met'] else '**MISSED**'} |")
    eng = median(pull["engine"])
    f["engine_mb_s"] = size / eng / 1e6
    f["engine_speed_ratio"] = median(pull["curl"]) / eng
    print(f"| (diagnostic) pull engine in-process, no start-up | {size / eng / 1e6:,.0f} "
          f"MB/s | curl {f['curl_mb_s']:,.0f} MB/s | {f['engine_speed_ratio']:.2f}x | "
          f"| |")
    f = figs["push"]
    print(f"| push of the 253 MB GGUF (time) | {f['assay_s']:.2f} s | skopeo "
          f"{f['skopeo_s']:.2f} s | {push_ratio:.2f}x | {push_paired:.2f}x | "
          f"<= 1.0x {'met' if f['met'] else '**MISSED**'} |")
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    for tool in ("curl", "skopeo"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed (make system-deps)")

    facts = machine_facts()
    print("# assay CLI vs curl and skopeo\n")
    for k, v in facts.items():
        print(f"- {k}: {v}")
    work = pick_workdir()
    assay = [*assay_command()]
    results: dict = {"machine": facts, "repeats": args.repeats, "samples": {}, "figures": {}}
    server = None
    try:
        gguf = work / "gemma.gguf"
        shutil.copyfile(gemma_gguf_path(), gguf)
        size = gguf.stat().st_size
        server = start_assay(work / "server", env={"ASSAY_LOG_LEVEL": "warning"})
        host = server.host_port
        env = {**os.environ, "ASSAY_CACHE_DIR": str(work / "client-cache")}
        print(f"- model: {gguf.name}, {size:,} bytes; assay pid {server.pid} at {server.url}\n")

        run([*assay, "push", "--quiet", str(gguf), f"{host}/bench/pull:v1"], env)
        digest = sha256_file(gguf)
        pull = measure_pull(assay, server, work, gguf, digest, args.repeats, env)
        pull["engine"] = measure_engine(host, work, digest, size, args.repeats)
        push = measure_push(assay, host, work, gguf, args.repeats, env)

        results["samples"] = {"pull": pull, "push": push}
        results["figures"] = report(pull, push, size)
        write_results("cli_vs_peers", results)
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run_bench(main)
