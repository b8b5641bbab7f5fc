"""GPU memory figures (``verifier.gpu``) and how the fit table holds them against the
estimate (``registry.formats.fit``, ``worker.spec.fit_table``).

No NVIDIA GPU or ``pynvml`` exists where these run: the sampler is exercised against
``FakeNvml``, a test double of the few NVML calls it makes, whose figures the test sets.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import pytest

from registry.formats import fit
from verifier.gpu import GpuPeak, GpuSampler, offloaded
from verifier.report import Report
from worker.spec import gpu_fits

MIB, GIB = 2**20, 2**30
CHILD = 4242


class FakeNvml:
    """Test double of ``pynvml``: ``devices[i]`` is device i's memory in use, ``processes[i]``
    its compute processes as ``{pid: bytes}`` (``None`` bytes: not available)."""

    def __init__(self, devices: list[int], processes: list[dict] | None = None,
                 init_error: bool = False):
        self.devices, self.processes = devices, processes or [{} for _ in devices]
        self.init_error, self.live, self.reads = init_error, 0, 0

    def nvmlInit(self):
        if self.init_error:
            raise RuntimeError("NVML Shared Library Not Found")
        self.live += 1

    def nvmlShutdown(self):
        self.live -= 1

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetMemoryInfo(self, i):
        self.reads += i == 0  # a sample reads device 0 last
        return SimpleNamespace(used=self.devices[i], total=80 * GIB)

    def sampled(self) -> None:
        """Returns once the sampler has taken a whole sample after this call."""
        deadline, seen = time.monotonic() + 10, self.reads
        while self.reads < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.001)

    def nvmlDeviceGetComputeRunningProcesses(self, i):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used)
                for pid, used in self.processes[i].items()]


@pytest.fixture
def nvml(monkeypatch):
    def install(fake: FakeNvml) -> FakeNvml:
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake
    return install


def test_without_pynvml_nothing_is_sampled(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert GpuSampler.start(CHILD) is None


def test_without_a_driver_or_a_gpu_nothing_is_sampled(nvml):
    nvml(FakeNvml([0], init_error=True))
    assert GpuSampler.start(CHILD) is None
    fake = nvml(FakeNvml([]))
    assert GpuSampler.start(CHILD) is None
    assert fake.live == 0  # NVML was shut down again


def test_the_childs_own_figure_is_its_peak_over_every_gpu(nvml):
    fake = nvml(FakeNvml([GIB, GIB], [{CHILD: 300 * MIB, 99: 5 * GIB}, {}]))
    sampler = GpuSampler.start(CHILD, interval=0.001)
    fake.processes = [{CHILD: 900 * MIB}, {CHILD: 600 * MIB}]  # the model is loaded
    fake.sampled()
    fake.processes = [{CHILD: 200 * MIB}, {}]  # freed before the child ended
    peak = sampler.stop()
    assert peak.process_bytes == 1500 * MIB
    assert peak.bytes(offloaded=False) == peak.bytes(offloaded=True) == 1500 * MIB
    assert fake.live == 0


def test_without_its_pid_the_devices_rise_counts_only_for_an_offloaded_run(nvml):
    # In a container NVML lists host process ids: the child's own is never found.
    fake = nvml(FakeNvml([2 * GIB], [{77: GIB}]))
    sampler = GpuSampler.start(CHILD, interval=0.001)
    fake.devices = [5 * GIB]
    fake.sampled()
    peak = sampler.stop()
    assert peak == GpuPeak(process_bytes=None, device_bytes=3 * GIB)
    assert peak.bytes(offloaded=True) == 3 * GIB
    assert peak.bytes(offloaded=False) is None


def test_a_process_figure_nvml_cannot_give_is_not_a_zero(nvml):
    nvml(FakeNvml([GIB], [{CHILD: None}]))
    assert GpuSampler.start(CHILD, interval=0.001).stop().process_bytes is None


def test_what_counts_as_offloaded():
    assert offloaded({"build": "cuda", "gpu_offload": True, "gpu_layers": -1})
    assert offloaded({"build": "cuda", "gpu_offload": True, "gpu_layers": 4})
    assert not offloaded({"build": "cuda", "gpu_offload": True, "gpu_layers": 0})
    assert not offloaded({"build": "cpu", "gpu_offload": False, "gpu_layers": -1})
    assert offloaded({"device": "gpu"}) and not offloaded({"device": "cpu"})
    assert not offloaded(None) and not offloaded({})


# ---- the fit table ------------------------------------------------------------------------

def shape(n_layer: int = 18) -> fit.ModelShape:
    return fit.ModelShape(
        architecture="llama", n_layer=n_layer, n_head_kv=4, key_length=64, value_length=64,
        n_ctx_train=32768, sliding_window=None, swa_layers=[False] * n_layer, n_embd=1024,
        n_vocab=32000, weights_bytes=600 * MIB, n_head=16, n_ff=4096)


def a_run(rss: int | None, gpu: int | None = None, **extra) -> dict:
    run = {"context": 2048, "kv_cache": "f16", "parallel": 1, "prompt_tokens": 128,
           "max_tokens": 32, "peak_rss_bytes": rss, "unsupported": None}
    return {**run, "peak_gpu_bytes": gpu, **extra} if gpu is not None or extra else run


def test_a_run_on_a_gpu_is_held_against_the_estimate_with_host_and_gpu_together():
    s = shape()
    table = fit.table(s, contexts=(2048,))
    on_cpu, on_gpu = fit.check(table, s, [a_run(700 * MIB), a_run(100 * MIB, 650 * MIB)],
                               "llama.cpp")
    estimated = fit.estimate(s, 2048, prompt_tokens=128, max_tokens=32).total_bytes
    assert "measured_gpu_bytes" not in on_cpu and on_cpu["measured_bytes"] == 700 * MIB
    assert (on_gpu["measured_bytes"], on_gpu["measured_gpu_bytes"]) == (750 * MIB, 650 * MIB)
    assert on_gpu["error"] == round((750 * MIB - estimated) / estimated, 4)
    (unsupported,) = fit.check(table, s, [a_run(None, 650 * MIB, unsupported="no")],
                               "llama.cpp")
    assert unsupported["measured_bytes"] is unsupported["measured_gpu_bytes"] is None


def test_fits_in_one_memory_size_is_the_tables_answer_for_that_size():
    s = shape()
    table = fit.table(s, memories_gib=(8,))
    assert fit.fits_in(s, 8 * GIB) == {kv: table["fits"][kv]["8GiB"] for kv in fit.KV_CACHE_TYPES}


def report(hardware: dict, backend: str = "llama.cpp") -> Report:
    return Report(passed=True, backend=backend, hardware=hardware)


CUDA = {"kind": "cuda", "name": "a double", "memory_bytes": 16 * GIB, "count": 1}


def test_a_fully_offloaded_run_gets_the_contexts_that_fit_in_its_gpu():
    s = shape(n_layer=18)
    full = {"build": "cuda", "gpu_offload": True, "gpu_layers": -1, "accelerator": CUDA}
    got = gpu_fits(s, report(full))
    assert got == {"kind": "cuda", "name": "a double", "memory_bytes": 16 * GIB,
                   "fits": fit.fits_in(s, 16 * GIB), "calibrated": False}
    assert gpu_fits(s, report({**full, "gpu_layers": 19})) == got  # 18 layers + the output
    for partial in ({**full, "gpu_layers": 18}, {**full, "gpu_layers": 0},
                    {**full, "gpu_offload": False}, {**full, "accelerator": {"kind": "none"}},
                    {**full, "accelerator": {**CUDA, "memory_bytes": None}},
                    {**full, "accelerator": {**CUDA, "kind": "metal"}}):
        assert gpu_fits(s, report(partial)) is None, partial
    assert gpu_fits(s, report({"device": "gpu", "accelerator": CUDA}, "mlx")) is None
    assert gpu_fits(s, report({})) is None
