"""Time from a model's final manifest PUT to ``ready``, minus the backend's own work.

    .venv/bin/python -m bench.verification_overhead [--repeats 5]

An ``assay serve`` with one worker (the single-machine setup ``make run`` gives) and the
readiness gate on. Each repetition pushes the real Gemma 3 270M GGUF with its last 16
bytes restamped (new digest, same header; still loads) to a fresh repository through
the ``assay`` client library, notes the instant the manifest PUT returns, and polls the
REST status every 20 ms until ``ready``. The verifier's report says how long the backend
itself worked: ``load_s`` + ``ttft_s`` (prompt) + decode time (``(tokens - 1) /
generation_tps``). Overhead = PUT-to-ready minus that: the claim delay (poll interval),
materialisation, the child process's start and imports, recording the result and the
referrer, and the status poll. Target: <= 2 s. Results go to
``bench/results/verification_overhead-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

import httpx

from bench.common import (
    REPO_ROOT,
    RESULTS_DIR,
    BenchError,
    machine_facts,
    median,
    pick_workdir,
    restamp,
)
from client.layouts import build_layout
from client.locations import BlobLocations
from client.progress import silent
from client.ref import parse_reference
from client.registry_client import RegistryClient
from registry.formats.cards import LocalCards
from tests.support.models import gemma_gguf_path
from tests.support.processes import start_assay

TARGET_S = 2.0


def backend_seconds(figures: dict) -> float:
    tokens = figures.get("tokens_generated") or 0
    tps = figures.get("generation_tps") or 0
    decode = (tokens - 1) / tps if tokens > 1 and tps else 0.0
    return (figures.get("load_s") or 0) + (figures.get("ttft_s") or 0) + decode


def one(server, work: Path, gguf: Path, i: int, timeout: float = 300) -> dict:
    restamp(gguf, 9000 + i)
    ref = parse_reference(f"{server.host_port}/bench/overhead-{i}:v1")
    layout = build_layout(gguf, LocalCards(), None, silent())
    with RegistryClient(ref.registry, locations=BlobLocations(work / f"cache-{i}.json")) \
            as client:
        for blob in layout.blobs():
            client.push_blob(ref.name, blob)
        client.put_manifest(ref.name, ref.tag, layout.manifest(), layout.media_type)
    put_done = time.perf_counter()
    url = f"{server.url}/api/v1/repositories/{ref.name}/tags/{ref.tag}"
    with httpx.Client(timeout=10) as http:
        while True:
            state = http.get(url).json()
            if state["status"] in ("ready", "failed"):
                ready = time.perf_counter()
                break
            if time.perf_counter() - put_done > timeout:
                raise BenchError(f"{ref} still {state['status']} after {timeout} s")
            time.sleep(0.02)
    if state["status"] != "ready":
        raise BenchError(f"{ref} failed verification: {state.get('reason')}")
    figures = state["verification"]["figures"]
    total = ready - put_done
    backend = backend_seconds(figures)
    return {"put_to_ready_s": total, "backend_s": backend, "overhead_s": total - backend,
            "verifier_wall_s": figures.get("wall_s"), "generation_tps":
            figures.get("generation_tps")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    facts = machine_facts()
    print("# verification overhead: final manifest PUT -> ready, minus backend time\n")
    for k, v in facts.items():
        print(f"- {k}: {v}")
    work = pick_workdir()
    server = None
    try:
        gguf = work / "gemma.gguf"
        shutil.copyfile(gemma_gguf_path(), gguf)
        server = start_assay(work / "server", env={"ASSAY_LOG_LEVEL": "warning",
                                                   "ASSAY_WORKERS": "1", "ASSAY_GATE": "true"})
        poll = float(os.environ.get("ASSAY_JOB_POLL_SECONDS", "0.5"))
        print(f"- worker poll interval: {poll} s; assay pid {server.pid}\n")
        runs = []
        for i in range(args.repeats):
            r = one(server, work, gguf, i)
            runs.append(r)
            print(f"  #{i}: PUT->ready {r['put_to_ready_s']:.2f} s, backend "
                  f"{r['backend_s']:.2f} s, overhead {r['overhead_s']:.2f} s "
                  f"({r['generation_tps']:.1f} tokens/s)")
        overhead = median([r["overhead_s"] for r in runs])
        worst = max(r["overhead_s"] for r in runs)
        met = overhead <= TARGET_S
        print("\n| figure | median | worst | target |\n|---|---:|---:|---|")
        print(f"| PUT -> ready | {median([r['put_to_ready_s'] for r in runs]):.2f} s | "
              f"{max(r['put_to_ready_s'] for r in runs):.2f} s | |")
        print(f"| backend load + generate | {median([r['backend_s'] for r in runs]):.2f} s "
              f"| {max(r['backend_s'] for r in runs):.2f} s | |")
        print(f"| overhead | {overhead:.2f} s | {worst:.2f} s | <= {TARGET_S:.0f} s "
              f"{'met' if met else '**MISSED**'} |")
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"verification_overhead-{dt.date.today().isoformat()}.json"
        out.write_text(json.dumps({"machine": facts, "repeats": args.repeats, "runs": runs,
                                   "figures": {"overhead_median_s": overhead,
                                               "overhead_worst_s": worst, "met": met}},
                                  indent=2) + "\n")
        print(f"\nresults written to {out.relative_to(REPO_ROOT)}")
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
