"""What a worker machine is and what it can run, as a small JSON-safe dict (``detect``).

::

    {"backends": {"llama.cpp": {"version": "0.3.36", "build": "cpu", "gpu_offload": false,
                                "flags": ["AVX2", "OPENMP"]},
                  "mlx": {"version": "0.32.4", "device": "cpu"}},
     "accelerator": {"kind": "none"},            # or cuda / metal / rocm / vulkan, see below
     "cpu_model": "AMD EPYC ...", "cores": 2, "memory_bytes": 25_000_000_000,
     "os": "linux", "arch": "x86_64"}

- ``backends``: each verification backend that imports here, with its version. llama.cpp
  says how it was built (``build``: ``cuda``, ``metal``, ``vulkan``, ``rocm``, ``sycl``
  or ``cpu``, from llama.cpp's own system info, and whether it can offload layers to a
  GPU); MLX says its default device (``gpu`` on Apple Silicon).
- ``accelerator``: ``{"kind": "cuda", "name", "memory_bytes", "count"}`` for NVIDIA GPUs
  (NVML through ``pynvml`` when installed, else ``nvidia-smi``); ``{"kind": "metal",
  "name", "memory_bytes"}`` on Apple Silicon (unified memory: the machine's RAM); else
  ``{"kind": "none"}``.
- Nothing raises: what cannot be read is left out (or ``None``).

Operators add labels and may override what was detected: ``registry.capabilities``.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess

from verifier.hardware import cpu_model, memory_bytes

_BUILDS = (("CUDA", "cuda"), ("METAL", "metal"), ("HIP", "rocm"), ("VULKAN", "vulkan"),
           ("SYCL", "sycl"))
_FLAG = re.compile(r"\b([A-Z][A-Z0-9_]*)\s*=\s*1\b")


def llama_cpp_backend() -> dict | None:
    """llama-cpp-python's version and build, or None if it does not import."""
    try:
        import llama_cpp
    except Exception:  # noqa: BLE001 - not installed, or its library fails to load
        return None
    try:
        info = llama_cpp.llama_print_system_info()
        info = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
        offload = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # noqa: BLE001 - an old or odd build: its version still says something
        info, offload = "", False
    flags = sorted(set(_FLAG.findall(info)))
    build = next((name for flag, name in _BUILDS if flag in flags), "cpu")
    return {"version": getattr(llama_cpp, "__version__", None), "build": build,
            "gpu_offload": offload, "flags": flags}


def mlx_backend() -> dict | None:
    """MLX's version and default device (``gpu`` or ``cpu``), or None."""
    try:
        import mlx.core as mx
    except Exception:  # noqa: BLE001 - not installed (most Linux machines)
        return None
    try:
        device = "gpu" if "gpu" in str(mx.default_device()).lower() else "cpu"
    except Exception:  # noqa: BLE001
        device = None
    return {"version": getattr(mx, "__version__", None), "device": device}


def _nvml() -> dict | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            if not count:
                return None
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver: no NVIDIA GPU to use
        return None
    name = name.decode() if isinstance(name, bytes) else str(name)
    return {"kind": "cuda", "name": name, "memory_bytes": int(memory), "count": count}


def _nvidia_smi() -> dict | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.rsplit(",", 1) for line in out.stdout.splitlines() if "," in line]
    if out.returncode != 0 or not rows:
        return None
    name, mib = rows[0][0].strip(), rows[0][1].strip()
    memory = int(mib) * (1 << 20) if mib.isdigit() else None
    return {"kind": "cuda", "name": name, "memory_bytes": memory, "count": len(rows)}


def accelerator() -> dict:
    """The machine's accelerator for inference (see the module docstring)."""
    found = _nvml() or _nvidia_smi()
    if found:
        return found
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return {"kind": "metal", "name": cpu_model(), "memory_bytes": memory_bytes()}
    return {"kind": "none"}


def detect() -> dict:
    """This machine's capabilities (see the module docstring)."""
    backends = {}
    for name, probe in (("llama.cpp", llama_cpp_backend), ("mlx", mlx_backend)):
        found = probe()
        if found is not None:
            backends[name] = found
    return {"backends": backends, "accelerator": accelerator(), "cpu_model": cpu_model(),
            "cores": os.cpu_count(), "memory_bytes": memory_bytes(),
            "os": platform.system().lower(), "arch": platform.machine()}
