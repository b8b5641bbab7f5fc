"""The machine a verification ran on, as a small JSON-safe dict.

``describe(threads)`` returns::

    {"cpu_model": "AMD EPYC ...", "cores": 2, "cores_available": 2, "threads": 2,
     "machine": "x86_64", "system": "Linux", "memory_bytes": 25_000_000_000}

``cores`` is the logical CPU count; ``cores_available`` what this process may run on (CPU
affinity, e.g. a container's cpuset); ``threads`` what the backend was told to use. Fields
that cannot be read are ``None`` (or the empty string for ``cpu_model``); nothing raises.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name: ``/proc/cpuinfo`` on Linux, sysctl on macOS."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                return value.strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                 capture_output=True, text=True, timeout=5, check=False)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or ""


def memory_bytes() -> int | None:
    """Total physical memory, or ``None``."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def cores_available() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def describe(threads: int) -> dict:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": cores_available(),
        "threads": threads,
        "machine": platform.machine(),
        "system": platform.system(),
        "memory_bytes": memory_bytes(),
    }
