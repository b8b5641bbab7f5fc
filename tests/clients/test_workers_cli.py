"""Worker processes announce what they are and can run: two real ``assay worker``
processes next to a real ``assay serve``, one with labels and one playing a CUDA machine
through the capability override (which exists for tests like this one), listed by
``GET /api/v1/workers`` and ``assay workers`` with the hardware classes (``assay class``)
each one meets."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.processes import start_assay
from tests.support.workers import start_worker, wait_until

pytestmark = pytest.mark.clients

GPU = {"accelerator": {"kind": "cuda", "name": "NVIDIA H200", "memory_bytes": 150 << 30},
       "backends": {"mlx": None, "llama.cpp": {"version": "0.3.36", "build": "cuda",
                                               "gpu_offload": True, "flags": ["CUDA"]}}}


def test_workers_announce_capabilities_and_labels(tmp_path, cli):
    data = tmp_path / "data"
    server = start_assay(data)
    plain = gpu = None
    try:
        plain = start_worker(data, tmp_path / "plain.log",
                             env={"ASSAY_WORKER_LABELS": "site=lab2,tier=small"})
        gpu = start_worker(data, tmp_path / "gpu.log",
                           env={"ASSAY_WORKER_LABELS": "site=lab1",
                                "ASSAY_WORKER_CAPABILITIES": json.dumps(GPU)})

        def listed():
            found = httpx.get(f"{server.url}/api/v1/workers").json()["workers"]
            return found if len([w for w in found if w["state"] == "idle"]) == 2 else None

        found = wait_until(listed, 60, "both workers to announce themselves")
        by_site = {w["labels"]["site"]: w for w in found}
        lab2, lab1 = by_site["lab2"], by_site["lab1"]
        assert lab2["labels"] == {"site": "lab2", "tier": "small"}
        assert lab2["capabilities"]["accelerator"] == {"kind": "none"}
        assert lab2["capabilities"]["backends"]["llama.cpp"]["build"] == "cpu"
        assert "mlx" in lab2["capabilities"]["backends"]
        assert lab1["capabilities"]["accelerator"]["name"] == "NVIDIA H200"
        assert set(lab1["capabilities"]["backends"]) == {"llama.cpp"}
        # What the override does not name is still detected.
        assert lab1["capabilities"]["cores"] == lab2["capabilities"]["cores"]

        table = cli("workers", "-r", server.host_port).stdout
        assert "cuda: NVIDIA H200 150.0 GiB" in table or "cuda: NVIDIA H200" in table, table
        assert "site=lab2,tier=small" in table and "llama.cpp 0.3.36 (cpu)" in table
        assert "2 present, 0 busy" in table
        as_json = json.loads(cli("workers", "-r", server.host_port, "--json").stdout)
        assert len(as_json["workers"]) == 2

        # Classes: a worker is of every class whose selector it meets.
        r = server.host_port
        assert cli("class", "set", "cpu", "accelerator=none", "-r", r).stdout.strip() == \
            "class cpu: accelerator=none"
        cli("class", "set", "cuda", "accelerator=cuda", "min_accelerator_memory=16GiB", "-r", r)
        cli("class", "set", "lab2", "--selector", '{"labels": {"site": "lab2"}}', "-r", r)
        cli("class", "set", "apple", "os=darwin", "backend=mlx", "-r", r)
        listing = cli("class", "ls", "-r", r).stdout
        assert "min_accelerator_memory=17179869184" in listing and "labels.site=lab2" in listing
        found = {w["labels"]["site"]: w["classes"]
                 for w in httpx.get(f"{server.url}/api/v1/workers").json()["workers"]}
        assert found == {"lab2": ["cpu", "lab2"], "lab1": ["cuda"]}
        bad = cli("class", "set", "tpu", "accelerator=tpu", "-r", r, ok=False)
        assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "one of" in bad.stderr
        assert cli("class", "rm", "apple", "-r", r).stdout.strip() == "removed class apple"
        gone = cli("class", "rm", "apple", "-r", r, ok=False)
        assert gone.returncode == 1 and "no hardware class" in gone.stderr

        bad = start_worker(data, tmp_path / "bad.log", env={"ASSAY_WORKER_LABELS": "oops"})
        assert bad.proc.wait(60) != 0
        assert "key=value" in bad.log()
    finally:
        for w in (plain, gpu):
            if w is not None:
                w.stop()
        server.stop()
