"""Worker capabilities without a server: detection on this machine, labels, the override."""

from __future__ import annotations

import platform

import pytest
from pydantic import ValidationError

from registry.capabilities import (
    apply_override,
    check_selector,
    matches,
    parse_labels,
    parse_override,
)
from registry.settings import Settings
from verifier.capabilities import detect


def test_detect_describes_this_machine_and_its_backends():
    caps = detect()
    assert caps["os"] == platform.system().lower() and caps["arch"] == platform.machine()
    assert caps["cores"] >= 1 and caps["memory_bytes"] > 0
    assert caps["accelerator"]["kind"] in ("none", "cuda", "metal")
    # The test extra installs both backends: each says its version and how it runs.
    llama = caps["backends"]["llama.cpp"]
    assert llama["version"] and llama["build"] in ("cpu", "cuda", "metal", "vulkan", "rocm",
                                                   "sycl")
    assert isinstance(llama["gpu_offload"], bool) and isinstance(llama["flags"], list)
    assert caps["backends"]["mlx"]["device"] in ("cpu", "gpu")


def test_labels():
    assert parse_labels("site=lab2, tier=big,,") == {"site": "lab2", "tier": "big"}
    assert parse_labels(None) == {} and parse_labels("") == {}
    assert parse_labels("gpu=") == {"gpu": ""}
    for bad in ("site", "Site=x", "=x", "a=b c", "a=b;rm"):
        with pytest.raises(ValueError, match="key=value"):
            parse_labels(bad)


def test_override_merges_over_the_detection():
    detected = {"backends": {"llama.cpp": {"build": "cpu"}, "mlx": {"device": "cpu"}},
                "accelerator": {"kind": "none"}, "os": "linux"}
    override = parse_override('{"accelerator": {"kind": "cuda", "memory_bytes": 25769803776},'
                              ' "backends": {"mlx": null, "llama.cpp": {"build": "cuda"}}}')
    merged = apply_override(detected, override)
    assert merged == {"backends": {"llama.cpp": {"build": "cuda"}},
                      "accelerator": {"kind": "cuda", "memory_bytes": 25769803776},
                      "os": "linux"}
    assert detected["backends"]["mlx"] == {"device": "cpu"}  # the detection is untouched
    assert parse_override("") == {} and parse_override(None) == {}
    for bad in ("[1]", "{", "3"):
        with pytest.raises(ValueError):
            parse_override(bad)


def test_settings_refuse_bad_labels_and_overrides(tmp_path):
    for field, value in (("worker_labels", "no equals sign"),
                         ("worker_capabilities", "not json")):
        with pytest.raises(ValidationError):
            Settings(data_dir=tmp_path, **{field: value})
    s = Settings(data_dir=tmp_path, worker_labels="site=lab2",
                 worker_capabilities='{"os": "darwin"}')
    assert s.worker_labels == "site=lab2"


CPU = {"backends": {"llama.cpp": {"build": "cpu"}, "mlx": {"device": "cpu"}},
       "accelerator": {"kind": "none"}, "cores": 2, "memory_bytes": 24 << 30,
       "os": "linux", "arch": "x86_64"}
H200 = {**CPU, "backends": {"llama.cpp": {"build": "cuda"}},
        "accelerator": {"kind": "cuda", "name": "NVIDIA H200", "memory_bytes": 141 << 30}}
MAC = {**CPU, "backends": {"llama.cpp": {"build": "metal"}, "mlx": {"device": "gpu"}},
       "accelerator": {"kind": "metal", "memory_bytes": 64 << 30}, "os": "darwin",
       "arch": "arm64"}


@pytest.mark.parametrize(("selector", "selected"), [
    ({}, {"cpu", "h200", "mac"}),
    ({"accelerator": "none"}, {"cpu"}),
    ({"accelerator": "any"}, {"h200", "mac"}),
    ({"accelerator": "cuda", "min_accelerator_memory": "16GiB"}, {"h200"}),
    ({"accelerator": "cuda", "min_accelerator_memory": "200GiB"}, set()),
    ({"os": "darwin", "backend": "mlx"}, {"mac"}),
    ({"backend": ["mlx", "llama.cpp"]}, {"cpu", "mac"}),
    ({"llama_cpp_build": "cuda"}, {"h200"}),
    ({"mlx_device": "gpu"}, {"mac"}),
    ({"min_memory": "32GiB"}, set()),
    ({"min_cores": 2, "arch": "x86_64"}, {"cpu", "h200"}),
    ({"labels": {"site": "lab2"}}, {"cpu"}),
])
def test_selectors_pick_workers(selector, selected):
    workers = {"cpu": (CPU, {"site": "lab2"}), "h200": (H200, {"site": "lab1"}),
               "mac": (MAC, {})}
    checked = check_selector(selector)
    assert {name for name, (caps, labels) in workers.items()
            if matches(checked, caps, labels)} == selected


def test_selectors_are_checked():
    assert check_selector({"min_accelerator_memory": "16GiB", "backend": "mlx"}) == {
        "min_accelerator_memory": 16 << 30, "backend": ["mlx"]}
    for bad, words in (([], "object"), ({"gpu": True}, "unknown selector key"),
                       ({"accelerator": "tpu"}, "one of"), ({"min_memory": "lots"}, "size"),
                       ({"min_cores": 0}, "at least 1"), ({"backend": []}, "backend"),
                       ({"labels": {"Site": "x"}}, "labels"), ({"os": 3}, "word")):
        with pytest.raises(ValueError, match=words):
            check_selector(bad)
