"""Gemma 3 270M verified with ``gpu_layers`` set, on llama.cpp's CPU build (CI has no GPU).

A CPU build accepts ``n_gpu_layers`` and has nowhere to put the layers: the model must pass
with the same greedy output as without it, and the report must say what was asked, that the
build cannot offload, and that no GPU memory was measured. What a GPU build does with the
same spec is documented in docs/gpu.md; it has not run here.
"""

from __future__ import annotations

import pytest

from verifier import Spec, verify
from verifier.spec import RunSpec
from worker.spec import fit_table

pytestmark = pytest.mark.slow


def test_gpu_layers_on_a_cpu_build_change_nothing_and_are_recorded(gemma_gguf, gemma_report):
    run = RunSpec(context=512, prompt_tokens=32, max_tokens=8)
    report = verify(Spec(model_path=gemma_gguf, max_tokens=16, n_ctx=256, gpu_layers=-1,
                         runs=(run,)))
    assert report.passed, report.reason
    assert report.output == gemma_report.output
    hw = report.hardware
    assert (hw["build"], hw["gpu_offload"], hw["gpu_layers"]) == ("cpu", False, -1)
    assert "accelerator" not in hw  # a CPU build: no GPU was used, none is described
    assert report.peak_gpu_bytes is None and report.runs[0]["peak_gpu_bytes"] is None
    assert report.runs[0]["peak_rss_bytes"] > 0
    table = fit_table(gemma_gguf, report)
    assert "accelerator" not in table
    assert "measured_gpu_bytes" not in table["checks"][0]
    assert table["checks"][0]["measured_bytes"] == report.runs[0]["peak_rss_bytes"]


def test_the_default_on_a_cpu_build_is_no_offload(gemma_report):
    hw = gemma_report.hardware
    assert (hw["build"], hw["gpu_offload"], hw["gpu_layers"]) == ("cpu", False, 0)
    assert gemma_report.peak_gpu_bytes is None
