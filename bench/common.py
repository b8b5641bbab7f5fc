"""What the benchmarks share: the results file, stopping what a run started, the
``__main__`` wrapper that turns a failed run into one line and exit status 1, machine
facts, the random blob payload, OCI media types and CPU accounting from ``/proc``.

Benchmarks are modules of the ``bench`` package, run from the repository root as
``python -m bench.<name>``; each imports only this module from ``bench``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"

MiB = 1024 * 1024
MB = 1000 * 1000
PIECE = 16 * MiB  # read and write unit for the payload files
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


class BenchError(RuntimeError):
    """A request did not get the answer the benchmark needs."""


def write_results(name: str, results: dict, *suffixes: str) -> Path:
    """Write ``results`` to ``bench/results/<name>-<today>[-<suffix>...].json`` (empty
    suffixes are left out) and say where."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = "-".join([dt.date.today().isoformat(), *(s for s in suffixes if s)])
    out = RESULTS_DIR / f"{name}-{stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {out.relative_to(RESULTS_DIR.parents[1])}")
    return out


def stop_all(stops: Iterable[Callable[[], object] | None]) -> None:
    """Call every stop function (None entries are skipped); one failing does not keep
    the others from running."""
    for stop in stops:
        if stop is None:
            continue
        try:
            stop()
        except Exception as exc:
            print(f"could not stop {stop}: {exc}", file=sys.stderr)


def run(main: Callable[[], int]) -> None:
    """The ``__main__`` of a benchmark: exit with ``main()``'s status, or 1 and one
    ``BENCHMARK FAILED`` line when it raises BenchError."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        sys.exit(1)


# ----------------------------------------------------------------------------- helpers


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def machine_facts() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": sh(["nproc"]),
        "cpu_model": cpu,
        "mem_total_mib": mem_kib // 1024,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "curl": sh(["curl", "--version"]).splitlines()[0] if shutil.which("curl") else "",
        "wrk": (sh(["wrk", "-v"]) or "").splitlines()[0] if shutil.which("wrk") else "",
        "distribution": sh(["docker-registry", "--version"]),
        "assay_git": sh(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
        or "(no commit)",
    }


def pick_workdir() -> Path:
    """A temp dir on the repository's own filesystem, never tmpfs."""
    repo_dev = os.stat(REPO_ROOT).st_dev
    for base in (Path("/var/tmp"), REPO_ROOT.parent):
        if not base.is_dir() or os.stat(base).st_dev != repo_dev:
            continue
        fstype = sh(["df", "--output=fstype", str(base)]).splitlines()[-1:]
        if fstype and fstype[0].strip() in ("tmpfs", "ramfs"):
            continue
        return Path(tempfile.mkdtemp(prefix="assay-bench-", dir=base))
    raise BenchError(f"no non-tmpfs temp location on the filesystem of {REPO_ROOT}")


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def header(headers_text: str, name: str) -> str | None:
    """Last value of ``name`` in a curl ``-D`` dump (the final response wins)."""
    value = None
    for line in headers_text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            value = rest.strip()
    return value


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def describe(r: httpx.Response) -> str:
    req = r.request
    heads = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
    try:
        body = r.text[:2000]
    except httpx.ResponseNotRead:
        body = "(streamed)"
    return f"{req.method} {req.url} -> {r.status_code}\n{heads}\n\n{body}"


def restamp(path: Path, stamp: int) -> None:
    """New content, same size and header: overwrite the last 16 bytes (tensor data)."""
    with open(path, "r+b") as f:
        f.seek(-16, os.SEEK_END)
        f.write(f"assay-bench-{stamp:04d}".encode()[:16].ljust(16, b"\0"))


# ----------------------------------------------------------------------------- blob file


class BlobFile:
    """The random payload (and its chunk files), restamped to new content on demand."""

    def __init__(self, path: Path, size: int, chunk_size: int):
        self.path = path
        self.size = size
        self.chunk_size = chunk_size
        self.chunks: list[tuple[Path, int, int]] = []  # (file, start, end inclusive)
        self.digest = ""
        self.stamp = 0

    def generate(self) -> None:
        with open(self.path, "wb") as f:
            left = self.size
            while left:
                n = min(PIECE, left)
                f.write(os.urandom(n))
                left -= n
        start, i = 0, 0
        while start < self.size:
            end = min(start + self.chunk_size, self.size) - 1
            cpath = self.path.with_name(f"{self.path.name}.chunk{i:03d}")
            self.chunks.append((cpath, start, end))
            start, i = end + 1, i + 1
        with open(self.path, "rb") as src:
            for cpath, start, end in self.chunks:
                src.seek(start)
                with open(cpath, "wb") as dst:
                    left = end - start + 1
                    while left:
                        buf = src.read(min(PIECE, left))
                        dst.write(buf)
                        left -= len(buf)
        self.restamp()

    def restamp(self) -> str:
        """Give the file (and chunk 0) new content; return the new digest."""
        self.stamp += 1
        mark = f"assay-bench-{self.stamp:04d}".encode()[:16].ljust(16, b"\0")
        mark = mark[: min(16, self.size)]
        with open(self.path, "r+b") as f:
            f.write(mark)
        with open(self.chunks[0][0], "r+b") as f:
            f.write(mark)
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            while buf := f.read(PIECE):
                h.update(buf)
        self.digest = f"sha256:{h.hexdigest()}"
        return self.digest


# ------------------------------------------------------------------------- CPU accounting


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants (for PostgreSQL: the postmaster and its backends)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat (idle and iowait are not busy)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # guest time is already in user
    return total - values[3] - values[4], total


def postmaster_pid(pg: PostgresServer) -> int | None:
    try:
        return int((pg.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


class CpuMeter:
    """CPU seconds spent by each component of the deployment between ``start`` and ``stop``.

    PostgreSQL backends that exit in between are not counted (the replicas keep pooled
    connections, so few do); load generators (curl, wrk) are this process's waited-for
    children (``RUSAGE_CHILDREN``), this script itself is ``RUSAGE_SELF``."""

    def __init__(self, components: dict[str, list[int] | callable]):
        self.components = components  # name -> pids, or a function returning pids

    def _pids(self, name: str) -> list[int]:
        c = self.components[name]
        return c() if callable(c) else c

    def sample(self) -> dict:
        snap: dict = {}
        for name in self.components:
            snap[name] = {pid: cpu_seconds(pid) for pid in self._pids(name)}
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        snap["_children"] = ch.ru_utime + ch.ru_stime
        snap["_self"] = me.ru_utime + me.ru_stime
        snap["_machine"] = machine_busy()
        snap["_t"] = time.perf_counter()
        return snap

    @staticmethod
    def delta(a: dict, b: dict) -> dict:
        out: dict = {}
        for name, pids in b.items():
            if name.startswith("_"):
                continue
            # a pid present at the end but not at the start started in between: all counts
            out[name] = round(sum(v - a[name].get(pid, 0.0) for pid, v in pids.items()), 3)
        out["load generators (curl, wrk)"] = round(b["_children"] - a["_children"], 3)
        out["bench script"] = round(b["_self"] - a["_self"], 3)
        wall = b["_t"] - a["_t"]
        busy = (b["_machine"][0] - a["_machine"][0]) / max(1, b["_machine"][1] - a["_machine"][1])
        out["wall_s"] = round(wall, 3)
        out["machine_busy_pct"] = round(100 * busy, 1)
        return out
