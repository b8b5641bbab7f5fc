"""Behind the compose proxy every request comes from the proxy's address. With
``ASSAY_FORWARDED_ALLOW_IPS`` naming the proxy, per-client limits (here the rate limit) and
absolute URLs use the client's address and scheme from X-Forwarded-*; without it those
headers are ignored, so a client cannot forge its way out of a limit.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.processes import start_assay

LIMITED = {"ASSAY_RATE_LIMIT_PER_SECOND": "0.01", "ASSAY_RATE_LIMIT_BURST": "3"}


def burst(url: str, client: str, count: int) -> list[int]:
    return [httpx.get(f"{url}/v2/", timeout=10, headers={"X-Forwarded-For": client}).status_code
            for _ in range(count)]


@pytest.fixture
def server(tmp_path, request):
    srv = start_assay(tmp_path / "data", env={**LIMITED, **request.param})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("server", [{"ASSAY_FORWARDED_ALLOW_IPS": "127.0.0.1"}],
                         indirect=True)
def test_trusted_proxy_limits_each_forwarded_client(server):
    # start_assay's readiness probe came from 127.0.0.1 itself, not from these clients.
    assert burst(server.url, "203.0.113.7", 4) == [200, 200, 200, 429]
    assert burst(server.url, "203.0.113.8", 1) == [200]  # another client, its own bucket
    # The scheme the proxy saw (TLS terminated in front) makes absolute URLs https.
    resp = httpx.post(f"{server.url}/v2/team/m/blobs/uploads/", timeout=10, headers={
        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert resp.status_code == 202, resp.text
    assert resp.headers["Location"].startswith(f"https://{server.host_port}/v2/team/m/")


@pytest.mark.parametrize("server", [{}], indirect=True)
def test_forwarded_headers_ignored_without_a_trusted_proxy(server):
    resp = httpx.post(f"{server.url}/v2/team/m/blobs/uploads/", timeout=10, headers={
        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert resp.headers["Location"].startswith(f"http://{server.host_port}/")
    # Every "client" is really 127.0.0.1, whatever the header claims: one bucket, so once
    # one "client" has used it up, a "client" never seen before is refused too.
    assert burst(server.url, "203.0.113.7", 4)[-1] == 429
    assert burst(server.url, "203.0.113.8", 1) == [429]
