"""GPU offload without a GPU: the automatic ``n_gpu_layers`` decision and the arguments
``Llama`` is given (``verifier.backends.llama_cpp``), what the report records of it
(``verifier.run``), and the verification spec a worker builds from its capabilities
(``worker.spec``).

No GPU exists where these run, so a GPU build is played by replacing the one llama.cpp
call that says whether the build can offload (``llama_supports_gpu_offload``) with a
double; the real model runs with ``gpu_layers`` set in tests/verifier/test_gpu_layers.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import llama_cpp
import pytest

from registry.formats.classify import ModelFile, ModelFormat
from registry.manifests import Descriptor
from registry.profiles import DEFAULT_PROFILE
from registry.services.policies import Policy
from registry.settings import Settings
from verifier import run
from verifier.backends import llama_cpp as backend
from verifier.spec import Spec
from worker.spec import build_spec, memory_limit, threads_for

GiB = 2**30
MODEL = Path("/models/m.gguf")


def a_gpu_build(monkeypatch, can_offload: bool) -> None:
    """Test double: llama.cpp says it can (or cannot) offload to a GPU."""
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: can_offload)


def test_automatic_gpu_layers_are_all_on_a_build_that_can_offload(monkeypatch):
    a_gpu_build(monkeypatch, True)
    assert backend.gpu_layers(Spec(model_path=MODEL)) == -1
    a_gpu_build(monkeypatch, False)
    assert backend.gpu_layers(Spec(model_path=MODEL)) == 0


def test_this_cpu_build_offloads_nothing_by_default():
    assert llama_cpp.llama_supports_gpu_offload() is False  # CI is CPU-only
    assert backend.gpu_layers(Spec(model_path=MODEL)) == 0


def test_a_set_gpu_layers_is_used_as_given_without_asking_the_build(monkeypatch):
    def never() -> bool:
        raise AssertionError("the build was asked although gpu_layers was set")

    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", never)
    for layers in (-1, 0, 7):
        assert backend.gpu_layers(Spec(model_path=MODEL, gpu_layers=layers)) == layers


def test_a_build_without_the_offload_call_offloads_nothing(monkeypatch):
    monkeypatch.delattr(llama_cpp, "llama_supports_gpu_offload")
    assert backend.gpu_layers(Spec(model_path=MODEL)) == 0


def test_llama_is_given_the_spec_gpu_layers_and_threads(monkeypatch):
    a_gpu_build(monkeypatch, True)
    kwargs = backend.load_kwargs(Spec(model_path=MODEL, threads=3, gpu_layers=12, n_ctx=512))
    assert (kwargs["n_gpu_layers"], kwargs["n_threads"], kwargs["n_threads_batch"],
            kwargs["n_ctx"], kwargs["model_path"]) == (12, 3, 3, 512, str(MODEL))
    assert backend.load_kwargs(Spec(model_path=MODEL))["n_gpu_layers"] == -1


def test_placement_says_build_offload_support_and_layers(monkeypatch):
    assert backend.placement(Spec(model_path=MODEL)) == \
        {"build": "cpu", "gpu_offload": False, "gpu_layers": 0}
    a_gpu_build(monkeypatch, True)
    assert backend.placement(Spec(model_path=MODEL, gpu_layers=20)) == \
        {"build": "cpu", "gpu_offload": True, "gpu_layers": 20}


def test_gpu_layers_below_minus_one_is_a_caller_error():
    with pytest.raises(ValueError, match="gpu_layers"):
        Spec(model_path=MODEL, gpu_layers=-2)
    spec = Spec(model_path=MODEL, gpu_layers=5)
    assert Spec.from_dict(spec.to_dict()).gpu_layers == 5  # it reaches the child


def test_the_report_names_the_accelerator_only_for_a_gpu_build(monkeypatch):
    monkeypatch.setattr(run.capabilities, "accelerator",
                        lambda: {"kind": "cuda", "name": "a double", "memory_bytes": 16 * GiB})
    cpu = {"build": "cpu", "gpu_offload": False, "gpu_layers": 0}
    assert run._placed(cpu) == cpu
    cuda = {"build": "cuda", "gpu_offload": True, "gpu_layers": -1}
    assert run._placed(cuda)["accelerator"]["name"] == "a double"
    assert run._placed({"device": "gpu"})["accelerator"]["kind"] == "cuda"
    assert "accelerator" not in run._placed({"device": "cpu"})


def test_the_child_keeps_the_gpus_the_worker_was_given(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not for the model")
    env = run._child_env(2)
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert "AWS_SECRET_ACCESS_KEY" not in env


# ---- the worker's spec from its capabilities --------------------------------------------

def a_model(weights: int) -> ModelFormat:
    blob = Descriptor("application/octet-stream", "sha256:" + "a" * 64, weights)
    return ModelFormat("ollama", "gguf", [ModelFile("m.gguf", blob)])


def spec_for(settings: Settings, capabilities: dict | None, weights: int = GiB) -> Spec:
    return build_spec(settings, MODEL, a_model(weights), Policy(None, False, None),
                      DEFAULT_PROFILE, capabilities=capabilities)


def test_threads_come_from_the_setting_then_the_workers_cores(tmp_path):
    unset = Settings(data_dir=tmp_path)
    assert spec_for(unset, {"cores": 48}).threads == 48
    assert spec_for(Settings(data_dir=tmp_path, verify_threads=6), {"cores": 48}).threads == 6
    assert spec_for(unset, None).threads == (os.cpu_count() or 1)
    for bogus in ({}, {"cores": 0}, {"cores": "many"}, {"cores": True}):
        assert threads_for(unset, bogus) == (os.cpu_count() or 1), bogus


def test_the_memory_limit_never_exceeds_the_workers_memory(tmp_path):
    settings = Settings(data_dir=tmp_path, verify_memory_bytes=8 * GiB)
    model = a_model(3 * GiB)
    assert memory_limit(settings, model, None) == 11 * GiB
    assert memory_limit(settings, model, {"memory_bytes": 64 * GiB}) == 11 * GiB
    assert memory_limit(settings, model, {"memory_bytes": 6 * GiB}) == 6 * GiB
    assert memory_limit(settings, model, {"memory_bytes": None}) == 11 * GiB
    assert spec_for(settings, {"memory_bytes": 4 * GiB}, 3 * GiB).memory_limit_bytes == 4 * GiB


def test_build_spec_without_capabilities_keeps_its_old_call(tmp_path):
    settings = Settings(data_dir=tmp_path, verify_memory_bytes=GiB)
    spec = build_spec(settings, MODEL, a_model(GiB), Policy(None, False, None),
                      DEFAULT_PROFILE)
    assert spec.memory_limit_bytes == 2 * GiB and spec.gpu_layers is None


def test_the_gpu_layers_setting_reaches_the_spec(tmp_path):
    assert spec_for(Settings(data_dir=tmp_path), None).gpu_layers is None
    assert spec_for(Settings(data_dir=tmp_path, verify_gpu_layers=-1), None).gpu_layers == -1
    assert spec_for(Settings(data_dir=tmp_path, verify_gpu_layers=10), None).gpu_layers == 10
