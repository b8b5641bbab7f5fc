"""Server time of the web interface's pages with 1,000 tags in a repository, against the
100 ms budget and against the REST API's JSON of the same rows.

    .venv/bin/python -m bench.web_pages [--tags 1000] [--repeats 20]

Builds a data directory in process (one repository ``bench/big`` with ``--tags`` tags,
each a distinct tiny GGUF model whose verification is recorded through the service
layer with figures that vary, as ``tests/support/verification.py`` does), then serves it
with a real ``assay serve`` process on loopback (auth off, no workers) and requests each
page ``--repeats`` times after one untimed warm-up. Each page says its own server time
in ``Server-Timing`` (``registry.web.session.page``); the REST routes do not, so both are
also timed from the client (loopback, keep-alive) and the page/REST ratio uses those
client times. Medians and 95th percentiles are printed as a Markdown table and written
to ``bench/results/web_pages-<date>.json``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

import httpx
from starlette.testclient import TestClient

from bench import common
from bench.common import BenchError, machine_facts, median, pick_workdir
from registry.app import create_app
from registry.settings import Settings
from tests.support.processes import start_assay
from tests.support.verification import FakeWorker, push_model, report

BUDGET_MS = 100.0
REPO = "bench/big"
TIMING = re.compile(r"app;dur=([0-9.]+)")


def populate(data_dir: Path, tags: int) -> None:
    """``tags`` verified models in ``REPO``, a failed one among every ten."""
    settings = Settings(data_dir=data_dir, fsync=False, gate=False)
    with TestClient(create_app(settings), base_url="http://bench.test") as client:
        service = client.app.state.registry
        started = time.monotonic()
        for i in range(tags):
            tag = f"t{i:04d}"
            digest = push_model(client, REPO, tag, variant=tag)
            worker = FakeWorker(service, REPO, digest)
            if i % 10 == 9:
                worker.finish(report(passed=False, reason=f"did not load ({tag})"))
            else:
                worker.finish(report(tps=20.0 + (i * 7919) % 400 / 10))
            if i % 200 == 199:
                print(f"  {i + 1} tags ({time.monotonic() - started:.0f} s)", flush=True)


def pages(tags: int) -> dict[str, tuple[str, str | None]]:
    """Page -> (web path, the REST path reading the same rows or None)."""
    mid = f"t{tags // 2:04d}"
    return {
        "home (repositories)": ("/", "/api/v1/repositories"),
        "repository, first page of tags": (f"/{REPO}", f"/api/v1/repositories/{REPO}/tags"),
        "repository, sorted by tokens/s": (f"/{REPO}?sort=-tokens_per_s",
                                           f"/api/v1/repositories/{REPO}/tags"
                                           "?sort=-tokens_per_s"),
        "models, filtered": ("/-/models?status=ready&min_tokens_per_s=30",
                             "/api/v1/models?status=ready&min_tokens_per_s=30"),
        "model page": (f"/{REPO}/-/tags/{mid}", f"/api/v1/repositories/{REPO}/tags/{mid}"),
        "compare two": (f"/-/compare?m={REPO}:t0001&m={REPO}:{mid}", None),
        "audit log": ("/-/admin/audit", "/api/v1/audit"),
    }


def timed(client: httpx.Client, path: str, repeats: int) -> tuple[list[float], list[float]]:
    """(server ms from Server-Timing, client ms) of ``repeats`` GETs after a warm-up."""
    r = client.get(path)
    if r.status_code != 200:
        raise BenchError(f"GET {path}: {common.describe(r)}")
    server, wall = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        r = client.get(path)
        wall.append((time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            raise BenchError(f"GET {path}: {common.describe(r)}")
        found = TIMING.search(r.headers.get("server-timing", ""))
        if found:
            server.append(float(found.group(1)))
    return server, wall


def p95(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.95))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    work = pick_workdir()
    server = None
    try:
        print(f"populating {REPO} with {args.tags} verified tags ...", flush=True)
        populate(work / "data", args.tags)
        server = start_assay(work / "data")
        rows = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for name, (web, rest) in pages(args.tags).items():
                server_ms, wall_ms = timed(client, web, args.repeats)
                rest_ms = timed(client, rest, args.repeats)[1] if rest else None
                rows.append({"page": name, "path": web,
                             "server_ms_median": median(server_ms),
                             "server_ms_p95": p95(server_ms),
                             "client_ms_median": median(wall_ms),
                             "rest_client_ms_median": median(rest_ms) if rest_ms else None})
        print(f"\n{args.tags} tags, {args.repeats} requests per page after a warm-up\n")
        print("| page | server ms (median / p95) | of 100 ms budget | client ms | "
              "REST JSON client ms | page / REST |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            ratio = (f"{r['client_ms_median'] / r['rest_client_ms_median']:.2f}"
                     if r["rest_client_ms_median"] else "–")
            rest = f"{r['rest_client_ms_median']:.1f}" if r["rest_client_ms_median"] else "–"
            print(f"| {r['page']} | {r['server_ms_median']:.1f} / {r['server_ms_p95']:.1f} | "
                  f"{r['server_ms_p95'] / BUDGET_MS:.2f} | {r['client_ms_median']:.1f} | "
                  f"{rest} | {ratio} |")
        over = [r["page"] for r in rows if r["server_ms_p95"] > BUDGET_MS]
        common.write_results("web_pages", {"machine": machine_facts(), "tags": args.tags,
                                           "repeats": args.repeats, "pages": rows})
        if over:
            print(f"\nover the {BUDGET_MS:.0f} ms budget at p95: {', '.join(over)}")
            return 1
        return 0
    finally:
        common.stop_all([server.stop if server else None])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    common.run(main)
