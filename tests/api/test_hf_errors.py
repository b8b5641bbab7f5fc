"""How refusals and failures reach ``huggingface_hub``: the Hub's ``X-Error-Code`` per
exception (``registry.api.hf.errors``), checked through the client's own
``hf_raise_for_status``, with access control on."""

from __future__ import annotations

import pytest
from huggingface_hub import errors as hf_errors

from tests.support.auth_app import auth_client
from tests.support.hub import raised
from tests.support.verification import push_model


@pytest.fixture
def reg(settings):
    with auth_client(settings, users={"wanda": None, "otto": None},
                     roles={"team": {"wanda": "write"}}) as client:
        access = client.app.state.registry.identities
        _, client.wanda = access.create_token("wanda", "hf")
        _, client.otto = access.create_token("otto", "hf")  # no role in team
        client.headers["Authorization"] = f"Bearer {client.wanda}"
        push_model(client, "team/m", "latest")
        del client.headers["Authorization"]
        yield client


def test_each_refusal_becomes_the_client_exception_that_says_why(reg):
    url = "/team/m/resolve/main/m.gguf"
    # Anonymous: "not found, or sign in" (RepoNotFound), with our reason.
    r = reg.head(url)
    exc = raised(r, "HEAD")
    assert r.status_code == 401 and isinstance(exc, hf_errors.RepositoryNotFoundError)
    assert "anonymous" in r.headers["X-Error-Message"]
    # Wrong credentials are not "not found": our message, no code.
    r = reg.head(url, headers={"Authorization": "Bearer assay_pat_" + "x" * 32})
    assert r.status_code == 401 and "X-Error-Code" not in r.headers
    assert not isinstance(raised(r, "HEAD"), hf_errors.RepositoryNotFoundError)
    assert "invalid credentials" in r.headers["X-Error-Message"]
    # Signed in without pull: GatedRepo, which hf_hub_download raises with our reason.
    otto = {"Authorization": f"Bearer {reg.otto}"}
    r = reg.head(url, headers=otto)
    assert r.status_code == 403 and isinstance(raised(r, "HEAD"), hf_errors.GatedRepoError)
    assert "otto" in r.headers["X-Error-Message"]
    # A refused upload stays a plain 403 with the reason.
    r = reg.post("/api/models/team/m/preupload/main", headers=otto, json={"files": []})
    exc = raised(r, "POST")
    assert r.status_code == 403 and not isinstance(exc, hf_errors.GatedRepoError)
    assert "otto" in str(exc)
    # The signed-in writer downloads.
    r = reg.head(url, headers={"Authorization": f"Bearer {reg.wanda}"})
    assert r.status_code == 200 and raised(r, "HEAD") is None
