"""The client asks before it pushes (``RegistryClient.check_push``): assay's refusal stops
the push before any upload; any other answer (another registry, a proxy, no credentials
for the REST API) lets it go on. Against a real registry: ``tests/api/test_quotas.py``
(the endpoint) and ``tests/clients/test_cli_auth.py`` (``assay push`` over a quota)."""

from __future__ import annotations

import json

import httpx
import pytest

from client.blobs import Blob
from client.credentials import Credentials
from client.errors import RegistryResponseError
from client.ref import Registry
from client.registry_client import RegistryClient

BLOBS = [Blob.from_bytes("application/octet-stream", b"x" * 10),
         Blob.from_bytes("application/octet-stream", b"y" * 20)]
OVER = "namespace 'team' is over its storage quota: 0B used + 30B for this push > 10B quota"


def check(answer: httpx.Response, credentials=Credentials("alice", "pw", "test")) -> list:
    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer

    with RegistryClient(Registry("reg.test", "https"), transport=httpx.MockTransport(handler),
                        credentials=credentials, attempts=1) as client:
        client.check_push("team/m", BLOBS)
    return sent


def test_assays_refusal_stops_the_push():
    problem = httpx.Response(403, json={"detail": OVER, "code": "DENIED", "status": 403},
                             headers={"Content-Type": "application/problem+json"})
    with pytest.raises(RegistryResponseError) as err:
        check(problem)
    assert str(err.value) == f"denied: {OVER}"


def test_the_request_lists_every_blob_once():
    sent = check(httpx.Response(200, json={"push_bytes": 30}))
    assert [(r.method, r.url.path) for r in sent] == [
        ("POST", "/api/v1/repositories/team/m/push-check")]
    assert json.loads(sent[0].content) == {"blobs": [
        {"digest": b.digest, "size": b.size} for b in BLOBS]}


@pytest.mark.parametrize("answer", [
    httpx.Response(404, json={"errors": [{"code": "NOT_FOUND"}]}),  # another registry
    httpx.Response(403, text="Forbidden by the proxy"),  # not assay's refusal
    httpx.Response(405),
    httpx.Response(500),
])
def test_other_answers_let_the_push_go_on(answer):
    check(answer)


def test_no_credentials_for_the_rest_api_lets_the_push_go_on():
    check(httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="assay"'}),
          credentials=None)
