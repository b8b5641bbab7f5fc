"""Offline bundles with real processes: ``assay export`` from a real ``assay serve`` of a
verified model (its results artifact published by the registry itself), read by skopeo
(``oci-archive:``) and oras (the extracted layout), copied into CNCF Distribution, and
``assay import``-ed into a second ``assay serve``: digests kept byte for byte, the model
ready without a verification run when a namespace admin imports it, queued with
``--verify``, with another profile there, or for a mere writer; a tampered bundle and a
failed export leave nothing behind.

The model is verified on the source through the service layer on its data directory
(``tests.support.verification.FakeWorker``, as ``assay worker`` would on the same
database), so no verifier runs: the destinations run without workers, and a model that
becomes ready there can only have been adopted.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest

from registry.app import build_service
from registry.settings import Settings
from tests.support.auth_registry import start_auth_registry, stop_auth_registry
from tests.support.gguf_files import write_gguf
from tests.support.processes import start_assay, start_distribution
from tests.support.verification import FakeWorker, report
from tests.support.workers import GATE_ON

pytestmark = pytest.mark.clients

NAME, TAG = "team/tiny", "v1"
VERIFICATION_TYPE = "application/vnd.assay.verification.v1+json"
ACCEPT = ", ".join(["application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The source and a destination ``assay serve`` (gate on, no workers), and CNCF
    Distribution; stopped by PID."""
    root = tmp_path_factory.mktemp("bundles")
    started = []
    try:
        for name in ("source", "destination"):
            started.append(start_assay(root / name, env=GATE_ON))
        started.append(start_distribution(root / "distribution"))
        yield tuple(started)
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def bundle(servers, cli, tmp_path_factory) -> tuple[Path, str, str]:
    """A tiny GGUF pushed (Docker layout, which skopeo copies), verified on the source,
    exported: ``(bundle, model digest, results referrer digest)``."""
    source = servers[0]
    work = tmp_path_factory.mktemp("bundle")
    model = write_gguf(work / "tiny.gguf")
    cli("push", "--format", "docker", "-q", model, f"{source.host_port}/{NAME}:{TAG}")
    digest = rest(source, f"/repositories/{NAME}/tags/{TAG}")["digest"]
    service = build_service(Settings(data_dir=source.log_path.parent))
    data = report()
    data["profile"] = service.profiles.applies(NAME).profile.recorded()
    referrer = FakeWorker(service, NAME, digest).finish(data)["referrer"]
    service.db.dispose()
    assert rest(source, f"/repositories/{NAME}/tags/{TAG}")["status"] == "ready"
    path = work / "tiny.tar"
    out = cli("export", "-q", f"{source.host_port}/{NAME}:{TAG}", "-o", path).stdout
    assert f"exported {source.host_port}/{NAME}@{digest} as {TAG} (1 referrer(s))" in out
    return path, digest, referrer


def rest(server, path: str, **kw) -> dict:
    resp = httpx.get(f"{server.url}/api/v1{path}", timeout=30, **kw)
    assert resp.status_code == 200, resp.text
    return resp.json()


def manifest(server, name: str, reference: str, **kw) -> bytes:
    resp = httpx.get(f"{server.url}/v2/{name}/manifests/{reference}", timeout=30,
                     headers={"Accept": ACCEPT}, **kw)
    assert resp.status_code == 200, resp.text
    return resp.content


def layout_of(path: Path) -> tuple[dict, set[str]]:
    """index.json and the blob digests of a bundle."""
    with tarfile.open(path) as tar:
        index = json.load(tar.extractfile("index.json"))
        blobs = {"sha256:" + n.rsplit("/", 1)[1] for n in tar.getnames()
                 if n.startswith("blobs/sha256/")}
    return index, blobs


def test_skopeo_reads_the_bundle_and_copies_it_to_distribution(servers, bundle, skopeo,
                                                               policy):
    path, digest, _ = bundle
    distribution = servers[2]
    run = [skopeo, "--policy", str(policy)]
    raw = subprocess.run([*run, "inspect", "--raw", f"oci-archive:{path}:{TAG}"],
                         capture_output=True, check=True, timeout=120).stdout
    assert raw == manifest(servers[0], NAME, digest)
    subprocess.run([*run, "copy", "--preserve-digests", "--dest-tls-verify=false",
                    f"oci-archive:{path}:{TAG}",
                    f"docker://{distribution.host_port}/skopeo/tiny:{TAG}"],
                   capture_output=True, check=True, timeout=120)
    assert manifest(distribution, "skopeo/tiny", TAG) == raw


def test_oras_reads_the_extracted_layout(servers, bundle, tmp_path):
    """oras-py reads an OCI layout directory, not a tar: extracted, it validates the
    layout, finds the tag and pushes the model (digest kept) to Distribution."""
    import oras.layout
    import oras.provider

    path, digest, _ = bundle
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "layout", filter="data")
    layout = oras.layout.Layout(str(tmp_path / "layout"))
    assert layout.get_ordered_blobs(TAG)[-1] == digest
    distribution = servers[2].host_port
    registry = oras.provider.Registry(hostname=distribution, insecure=True)
    layout.push_to_registry(registry, f"{distribution}/oras/tiny:{TAG}", tag=TAG)
    assert manifest(servers[2], "oras/tiny", TAG) == manifest(servers[0], NAME, digest)


def test_import_into_assay_adopts_the_results_and_round_trips(servers, bundle, cli,
                                                              tmp_path):
    path, digest, referrer = bundle
    source, destination = servers[0], servers[1]
    out = cli("import", "-q", path, destination.host_port).stdout
    assert f"imported {destination.host_port}/{NAME}:{TAG}@{digest}: results adopted " \
           "(ready)" in out, out
    assert "1 model(s) and 1 referrer(s)" in out
    assert manifest(destination, NAME, TAG) == manifest(source, NAME, TAG)
    state = rest(destination, f"/repositories/{NAME}/tags/{TAG}")
    assert (state["status"], state["served"]) == ("ready", digest)  # the gate lets it by
    assert state["verification"]["imported"]["referrer"] == referrer
    assert state["verification"]["worker"] is None and state["job"]["status"] == "done"
    status = cli("status", f"{destination.host_port}/{NAME}:{TAG}").stdout
    assert f"results adopted from {referrer}" in status, status

    again = tmp_path / "again.tar"
    cli("export", "-q", f"{destination.host_port}/{NAME}:{TAG}", "-o", again)
    assert again.read_bytes() == path.read_bytes()  # the same bundle, byte for byte
    index, blobs = layout_of(again)
    assert [m.get("artifactType") for m in index["manifests"]] == [None, VERIFICATION_TYPE]
    assert {digest, referrer} <= blobs


def test_import_into_distribution(servers, bundle, cli):
    path, digest, referrer = bundle
    distribution = servers[2]
    out = cli("import", "-q", "--prefix", "carried", path, distribution.host_port).stdout
    assert "adopted" not in out and "verifying" not in out
    assert manifest(distribution, f"carried/{NAME}", TAG) == \
        manifest(servers[0], NAME, digest)
    manifest(distribution, f"carried/{NAME}", referrer)


def test_verify_or_another_profile_leaves_the_model_to_be_verified(servers, bundle, cli):
    path, digest, _ = bundle
    destination = servers[1]
    out = cli("import", "-q", "--verify", "--prefix", "checked", path,
              destination.host_port).stdout
    assert "adopted" not in out
    state = rest(destination, f"/repositories/checked/{NAME}/tags/{TAG}")
    assert (state["status"], state["job"]["status"]) == ("queued", "queued")

    put = httpx.put(f"{destination.url}/api/v1/profiles/strict", json={"name": "strict"},
                    timeout=30)
    assert put.status_code == 200, put.text
    out = cli("import", "-q", "--prefix", "strict", path, destination.host_port).stdout
    assert "verifying: the profile differs" in out, out
    assert rest(destination, f"/repositories/strict/{NAME}/tags/{TAG}")["status"] == "queued"


def test_only_a_namespace_admin_adopts_on_an_auth_registry(bundle, cli, tmp_path):
    path, digest, _ = bundle
    registry = start_auth_registry(tmp_path / "auth")
    try:
        host = registry.host_port
        as_wanda = {"ASSAY_USERNAME": "wanda", "ASSAY_PASSWORD": registry.passwords["wanda"]}
        out = cli("import", "-q", path, host, env=as_wanda).stdout
        assert "verifying: you may not adopt results here (needs admin of namespace " \
               "team)" in out, out
        auth = registry.auth("root")
        assert rest(registry.server, f"/repositories/{NAME}/tags/{TAG}",
                    auth=auth)["status"] == "queued"
        as_root = {"ASSAY_USERNAME": "root", "ASSAY_PASSWORD": registry.passwords["root"]}
        out = cli("import", "-q", "--prefix", "admin", path, host, env=as_root).stdout
        assert "results adopted (ready)" in out, out
        entry = rest(registry.server, "/audit?action=adopt", auth=auth)["entries"][0]
        assert (entry["actor"], entry["target"]) == ("root", f"admin/{NAME}@{digest}")
    finally:
        stop_auth_registry(registry)


def test_a_tampered_bundle_and_a_failed_export_leave_nothing(servers, bundle, cli,
                                                             tmp_path):
    path, _, _ = bundle
    source, destination = servers[0], servers[1]
    data = bytearray(path.read_bytes())
    data[data.find(b"GGUF") + 200] ^= 0xFF  # a byte of the weights
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(data)
    proc = cli("import", "--prefix", "tampered", tampered, destination.host_port, ok=False)
    assert proc.returncode == 1 and "damaged or was changed" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    catalog = httpx.get(f"{destination.url}/v2/_catalog", timeout=30).json()
    assert not any(r.startswith("tampered/") for r in catalog["repositories"])

    failed = tmp_path / "failed.tar"
    proc = cli("export", f"{source.host_port}/{NAME}:{TAG}",
               f"{source.host_port}/team/absent:v1", "-o", failed, ok=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert list(tmp_path.glob("failed.tar*")) == []
