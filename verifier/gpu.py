"""GPU memory of a verification child, sampled through NVML (``pynvml``, optional).

``GpuSampler.start(pid)`` samples in a thread of its own until ``stop()``, which returns a
``GpuPeak``; ``start`` returns ``None`` when NVML cannot be used here: ``pynvml`` is not
installed (``pip install nvidia-ml-py``), there is no NVIDIA driver, or no GPU. Nothing
here raises.

Each sample, summed over every GPU NVML sees, reads two figures:

- ``process``: the memory NVML charges to ``pid`` (``usedGpuMemory`` of its entry in
  ``nvmlDeviceGetComputeRunningProcesses``). Exact, but only where NVML's process ids are
  the sampler's: in a container without the host's PID namespace they are not, and the
  pid is never found.
- ``device``: the memory used on the devices, less what was used when sampling started.
  Everything else on those GPUs moves it too (another verification, another user), so it
  is the fallback, taken only for a run known to have offloaded to the GPU.

llama.cpp allocates its GPU buffers (weights, K/V cache, compute buffer) when the model
and each context are made and keeps them until they are freed, so sampling every
``INTERVAL_S`` sees the plateau that is the peak.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

INTERVAL_S = 0.05


@dataclass(frozen=True)
class GpuPeak:
    """The highest figures sampled; ``None``: never read (the pid was not found, or the
    devices could not be read)."""

    process_bytes: int | None
    device_bytes: int | None

    def bytes(self, offloaded: bool) -> int | None:
        """The child's peak GPU memory: its own figure when NVML listed it, else, for a
        run that offloaded to the GPU, the rise in the devices' memory; else ``None``
        (nothing measured: a CPU run, or no way to tell)."""
        if self.process_bytes is not None:
            return self.process_bytes
        return self.device_bytes if offloaded else None


def _nvml() -> Any | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


class GpuSampler:
    """Samples ``pid``'s GPU memory until ``stop``; made by ``start``."""

    def __init__(self, nvml, pid: int, handles: list, interval: float = INTERVAL_S):
        self._nvml, self._pid, self._handles = nvml, pid, handles
        self._interval = interval
        self._baseline = self._device_used()
        self._process: int | None = None
        self._device: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)

    @classmethod
    def start(cls, pid: int, interval: float = INTERVAL_S) -> GpuSampler | None:
        """A running sampler for ``pid``, or ``None`` when NVML is not usable here."""
        nvml = _nvml()
        if nvml is None:
            return None
        try:
            nvml.nvmlInit()
        except Exception:  # noqa: BLE001 - no driver, no GPU: nothing to sample
            return None
        try:
            handles = [nvml.nvmlDeviceGetHandleByIndex(i)
                       for i in range(nvml.nvmlDeviceGetCount())]
            if not handles:
                raise LookupError("no GPU")
            sampler = cls(nvml, pid, handles, interval)
        except Exception:  # noqa: BLE001
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()
            return None
        sampler._sample()
        sampler._thread.start()
        return sampler

    def stop(self) -> GpuPeak:
        """Stops sampling (one last sample first) and returns the peaks."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()
        return GpuPeak(self._process, self._device)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        process = self._process_used()
        if process is not None:
            self._process = max(self._process or 0, process)
        device = self._device_used()
        if device is not None and self._baseline is not None:
            self._device = max(self._device or 0, device - self._baseline)

    def _process_used(self) -> int | None:
        """``pid``'s memory over every GPU; ``None`` when no GPU lists it."""
        found = None
        for handle in self._handles:
            try:
                processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            except Exception:  # noqa: BLE001 - not supported on this GPU or driver
                continue
            for process in processes:
                used = getattr(process, "usedGpuMemory", None)
                if process.pid == self._pid and isinstance(used, int):
                    found = (found or 0) + used
        return found

    def _device_used(self) -> int | None:
        try:
            return sum(int(self._nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self._handles)
        except Exception:  # noqa: BLE001
            return None


def offloaded(placement: dict | None) -> bool:
    """Whether a backend's placement (``verifier.backends``: the ``ready`` event) put
    the model on a GPU: llama.cpp offloading layers, or MLX on its GPU device."""
    placement = placement or {}
    if placement.get("device") == "gpu":
        return True
    return bool(placement.get("gpu_offload")) and placement.get("gpu_layers") not in (0, None)
