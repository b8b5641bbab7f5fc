"""A repository's pages over HTTP (``registry/web/model.py``): the tags listing, the model
page by tag and digest with a finished verification (card, run matrix, fit, quality,
regressions, history, failure log, referrers, the versions chart), the pull commands, the
live status JSON, the forms, 404s and escaping, on both stacks.

Verifications are played through the service layer with chosen reports
(``tests/support/verification.py``, the profile reports of ``test_regressions``), so
every figure on the page is known.
"""

from __future__ import annotations

import re
from html import unescape

import pytest

from registry.services.versions import VersionService
from tests.api.test_regressions import MIB, profile, profiled, record, run
from tests.support.auth_app import auth_client
from tests.support.oci import push_image
from tests.support.verification import FakeWorker, push_model, report, verify
from tests.support.web import PROMPTS, text_of

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
NO_DIGEST = "sha256:" + "0" * 64


def section(html: str, heading_id: str) -> str:
    """The text of the <section> labelled by ``heading_id``."""
    start = html.index(f'aria-labelledby="{heading_id}"')
    return text_of(html[start:html.index("</section>", start)])


def page(client, path: str, status: int = 200) -> str:
    r = client.get(path)
    assert r.status_code == status, r.text[-2000:]
    assert r.headers["content-type"].startswith("text/html")
    return r.text


# ---- the repository's tags ------------------------------------------------------------

def test_repository_page_lists_tags_with_status_figures_and_links(client, service):
    ready = push_model(client, "team/m", "fast")
    verify(service, "team/m", ready, tps=42.5)
    failed = push_model(client, "team/m", "broken", "broken")
    verify(service, "team/m", failed, passed=False, reason="did not load: bad tensor")
    push_model(client, "team/m", "waiting", "waiting")
    html = page(client, "/team/m")
    assert "<h1>team/m</h1>" in html
    for tag in ("fast", "broken", "waiting"):
        assert f'href="/team/m/-/tags/{tag}"' in html
    rows = {m.group(1): text_of(m.group(0))
            for m in re.finditer(r'<tr>\s*<th scope="row"><a href="/team/m/-/tags/([^"]+)".*?</tr>',
                                 html, re.S)}
    assert 'status-ready' in html and 'status-failed' in html and 'status-queued' in html
    assert "ready gguf F32 42.5 118 MiB" in rows["fast"]
    assert "failed did not load: bad tensor" in rows["broken"]
    assert "queued" in rows["waiting"] and "42.5" not in rows["waiting"]


def test_repository_page_pages_sorts_and_filters(client, service):
    for i in range(5):
        push_model(client, "team/many", f"t{i}", f"t{i}")
    first = page(client, "/team/many?n=2&sort=-name")
    assert first.index("t4") < first.index("t3") and "t2" not in text_of(first)
    seen = []
    path = "/team/many?n=2&sort=-name"
    for _ in range(5):
        html = page(client, path)
        seen += re.findall(r'href="/team/many/-/tags/(t[0-9])"', html)
        nxt = re.search(r'rel="next" href="([^"]+)"', html)
        if nxt is None:
            break
        path = "/team/many" + unescape(nxt.group(1))
    assert seen == ["t4", "t3", "t2", "t1", "t0"]
    # The form's "any" status and empty search are left out, not refused.
    r = client.get("/team/many?q=&status=&sort=name", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/team/many?sort=name"
    found = text_of(page(client, "/team/many?q=T3"))
    assert "t3" in found and "t1" not in found
    assert "No tag matches" in page(client, "/team/many?status=ready")
    bad = client.get("/team/many?sort=colour")
    assert bad.status_code == 400 and "sort must be one of" in bad.text
    assert bad.headers["content-type"].startswith("text/html")


def test_a_repository_page_is_fast_enough_to_page_through(client, service):
    """The default page is 50 tags; the listing never renders them all."""
    for i in range(55):
        push_model(client, "team/big", f"v{i:02d}", f"v{i:02d}")
    html = page(client, "/team/big")
    assert len(re.findall(r'href="/team/big/-/tags/', html)) == 50
    assert 'rel="next"' in html


# ---- the model page ---------------------------------------------------------------------

FIT = {"backend": "llama.cpp",
       "estimates": [{"context": 2048, "kv_cache": "f16", "total_bytes": 380 * MIB},
                     {"context": 2048, "kv_cache": "q8_0", "total_bytes": 350 * MIB},
                     {"context": 4096, "kv_cache": "f16", "total_bytes": 420 * MIB}],
       "fits": {"f16": {"8GiB": 32768, "16GiB": None}},
       "checks": [{"run": 0, "context": 2048, "kv_cache": "f16", "parallel": 1,
                   "estimated_bytes": 380 * MIB, "measured_bytes": 400 * MIB,
                   "error": 0.0526}]}


@pytest.fixture
def verified(client, service):
    """team/m:v1 twice: v1 (20 tokens/s), then v2 measured with a matrix, prompts and a
    fit table, slower (a regression); returns the two digests."""
    prof = profile(name="team-default")
    first, _ = record(service, client, "team/m", "v1",
                      profiled(prof, runs=[run(20.0)]) | {"generation_tps": 20.0}, "a")
    runs = [run(15.0), run(8.0, parallel=4, kv_cache="q8_0"),
            run(unsupported="MLX cannot batch with a quantized KV cache", kv_cache="q4_0",
                generation_tps=None, prompt_tps=None, peak_rss_bytes=None,
                aggregate_generation_tps=None, ttft_s=None)]
    second, _ = record(service, client, "team/m", "v1",
                       profiled(prof, runs=runs, perplexity=24.0, prompts=PROMPTS, fit=FIT)
                       | {"generation_tps": 15.0}, "b")
    return first, second


def test_model_page_shows_card_verification_matrix_fit_quality_and_regressions(
        client, verified):
    first, second = verified
    html = page(client, "/team/m/-/tags/v1")
    assert "<h1>team/m:v1</h1>" in html and second in html
    card = section(html, "card-h")
    assert "Format gguf (ollama layout)" in card and "Architecture llama" in card
    assert "Context length 2,048" in card and "Chat template yes" in card
    latest = section(html, "verif-h")
    assert "passed" in latest and "llama.cpp 0.3.16" in latest and "Test CPU" in latest
    assert "Time to first token 0.05 s" in latest and "Peak memory 118 MiB" in latest
    assert "team-default" in latest
    matrix = section(html, "runs-h")
    assert "2048 f16 1 250.0 15.0 15.0 0.05 s 400 MiB" in matrix
    assert "2048 q8_0 4 250.0 8.0 32.0 0.05 s 400 MiB" in matrix
    assert "2048 q4_0 1 Unsupported: MLX cannot batch with a quantized KV cache" in matrix
    fit = section(html, "fit-h")
    assert "Context KV f16 KV q8_0 2048 380 MiB 350 MiB 4096 420 MiB –" in fit
    assert "KV f16: 8GiB up to 32768 tokens, 16GiB does not fit" in fit
    assert "0 2048 f16 1 380 MiB 400 MiB +5.3%" in fit
    quality = section(html, "quality-h")
    assert "Perplexity on the project's text: 24.00" in quality
    assert "1 of 2 answered as expected" in quality
    assert "The capital of France is Paris Paris. pass" in quality
    assert "Say hello. (chat) (?i)hello Bonjour fail" in quality
    regressions = section(html, "regressions-h")
    assert "run 0 generation tokens/s 20.0 -> 15.0" in regressions and first[7:19] in regressions
    assert "A pull of v1 gets this version" in section(html, "status-h")


def test_model_page_charts_the_tags_versions_with_a_table(client, service, verified):
    first, second = verified
    html = page(client, "/team/m/-/tags/v1")
    versions = html[html.index('aria-labelledby="versions-h"'):]
    svgs = re.findall(r"<svg .*?</svg>", versions, re.S)
    assert len(svgs) == 2
    tps, memory = svgs
    assert 'role="img"' in tps and "<title" in tps and "<desc" in tps
    assert re.findall(r"<circle [^>]*><title>([^<]+)</title>", tps) == [
        f"version 1 ({first[7:19]}): 20.0 tokens/s", f"version 2 ({second[7:19]}): 15.0 tokens/s"]
    assert "<polyline" in tps and "style=" not in versions
    assert "118 MiB" in text_of(memory)
    table = text_of(versions[versions.index("<table"):versions.index("</table>")])
    assert f"1 {first[7:19]}" in table and f"2 {second[7:19]} (this page)" in table
    assert "ready 20.0 118 MiB" in table and "ready 15.0 118 MiB" in table
    # The service keeps the chart bounded: the newest versions, oldest first.
    versions = VersionService(service.db, service.store, service.settings)
    assert [v["digest"] for v in versions.versions("team/m", "v1", limit=1)] == [second]
    assert [v["tokens_per_s"] for v in versions.versions("team/m", "v1")] == [20.0, 15.0]
    assert versions.versions("team/m", "never-tagged") == []


def test_history_failure_log_and_referrers(client, service):
    digest = push_model(client, "team/m", "v1")
    verify(service, "team/m", digest, passed=False, reason="did not load: bad tensor")
    service.verification.request("team/m", digest)
    verify(service, "team/m", digest, tps=30.0)
    html = page(client, f"/team/m/-/manifests/{digest}")
    assert "<h1>team/m@" + digest[7:19] + "</h1>" in html
    history = section(html, "history-h")
    assert history.index("passed") < history.index("failed did not load: bad tensor")
    assert "30.0" in history and "test-worker@here" in history
    assert '<pre class="log"' in html and "error loading model" in history
    referrers = section(html, "referrers-h")
    assert "application/vnd.assay.verification.v1+json" in referrers
    assert "dev.assay.verdict : passed" in referrers and "dev.assay.verdict : failed" in referrers
    # By digest: no tag, so no versions chart, and the commands name the digest.
    assert 'aria-labelledby="versions-h"' not in html
    assert f"oras pull --plain-http registry.test/team/m@{digest}" in html


def test_pull_commands_per_client_and_layout(client, service):
    digest = push_model(client, "team/m", "v1")
    pull = section(page(client, "/team/m/-/tags/v1"), "pull-h")
    assert "a pull by tag gets the newest ready version of v1" in pull
    for command in ("ollama pull --insecure registry.test/team/m:v1",
                    "oras pull --plain-http registry.test/team/m:v1",
                    "HF_ENDPOINT=http://registry.test hf download team/m --revision v1",
                    "assay pull --insecure registry.test/team/m:v1"):
        assert command + " Copy" in pull, command
    assert "skopeo and podman cannot carry the Ollama layout" in pull
    assert "docker model pulls models in the Docker Model Runner layout" in pull
    # On loopback the assay CLI speaks plain HTTP by itself.
    local = section(client.get("/team/m/-/tags/v1", headers={"host": "127.0.0.1:5000"}).text,
                    "pull-h")
    assert "assay pull 127.0.0.1:5000/team/m:v1" in local
    by_digest = section(page(client, f"/team/m/-/manifests/{digest}"), "pull-h")
    assert "never gated" in by_digest and "Ollama pulls by tag only" in by_digest
    assert f"--revision {digest[7:47]}" in by_digest
    # An image is no model: the OCI clients only.
    push_image(client, "team/img", "v1")
    image = section(page(client, "/team/img/-/tags/v1"), "pull-h")
    assert "skopeo copy --src-tls-verify=false docker://registry.test/team/img:v1 " \
           "oci:./img:v1" in image
    assert "hf download" not in image and "assay pull" not in image
    assert "Not a model" in page(client, "/team/img/-/tags/v1")


def test_status_json_and_the_live_region(client, service):
    digest = push_model(client, "team/m", "v1")
    html = page(client, "/team/m/-/tags/v1")
    assert 'aria-live="polite"' in html and 'data-live="true"' in html
    assert f'data-status-url="/team/m/-/manifests/{digest}/status"' in html
    assert re.search(r'<script src="/-/static/[0-9a-f]{16}/model\.js" defer>', html)
    assert "Waiting in the queue: 0 jobs ahead. No worker is running" in text_of(html)
    r = client.get(f"/team/m/-/manifests/{digest}/status")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert (body["status"], body["reason"], body["job"]["status"], body["job"]["ahead"]) == \
        ("queued", None, "queued", 0)
    assert body["workers"]["present"] == 0
    worker = FakeWorker(service, "team/m", digest)
    assert client.get(f"/team/m/-/manifests/{digest}/status").json()["status"] == "verifying"
    worker.finish(report(passed=False, reason="too slow"))
    body = client.get(f"/team/m/-/manifests/{digest}/status").json()
    assert (body["status"], body["reason"], body["job"]["status"]) == \
        ("failed", "too slow", "done") and "workers" not in body
    assert 'data-live="false"' in page(client, "/team/m/-/tags/v1")
    assert client.get("/team/m/-/manifests/v1/status").status_code == 400


def test_unknown_pages_are_html_404s(client, service):
    push_model(client, "team/m", "v1")
    for path in ("/no/such/repository/-/tags/v1", "/no/such/repository",
                 "/team/m/-/tags/nope", f"/team/m/-/manifests/{NO_DIGEST}",
                 f"/team/m/-/manifests/{NO_DIGEST}/status", "/-/no-such-page"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html"), path
        assert "<h1" in r.text, path
    assert "not known to this registry" in client.get("/no/such/repository/-/tags/v1").text
    bad = client.get("/team/m/-/manifests/sha256:xyz")
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/html")
    r = client.get(f"/team/m/-/tags/{NO_DIGEST}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/team/m/-/manifests/{NO_DIGEST}"


def test_hostile_report_text_is_escaped(client, service):
    digest = push_model(client, "team/m", "v1")
    evil = "<script>alert(1)</script>"
    data = report(passed=False, reason=f"did not load {evil}")
    data["log_tail"] = f"error {evil}\n"
    data["quality"] = {"prompts": [{"prompt": evil, "expect": evil, "output": evil,
                                    "matched": False}], "perplexity": "NaN"}
    data["runs"] = [{"context": evil, "kv_cache": evil, "parallel": "x",
                     "generation_tps": "fast"}, "not a run"]
    data["fit"] = {"estimates": "no", "fits": {evil: {evil: evil}}, "checks": [7]}
    FakeWorker(service, "team/m", digest).finish(data)
    for path in ("/team/m", "/team/m/-/tags/v1", f"/team/m/-/manifests/{digest}"):
        html = page(client, path)
        assert "<script>alert" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path


# ---- actions ---------------------------------------------------------------------------

def test_verify_again_and_let_it_through(client, service):
    digest = push_model(client, "team/m", "v1")
    verify(service, "team/m", digest, passed=False, reason="too slow")
    html = page(client, "/team/m/-/tags/v1")
    assert "Verify again" in html and "Let it through" in html
    token = CSRF.search(html).group(1)
    base = f"/team/m/-/manifests/{digest}"
    r = client.post(base + "/verify", data={"csrf": token, "tag": "v1"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/team/m/-/tags/v1?done=verify"
    assert "Verification queued" in page(client, r.headers["location"])
    assert client.get(base + "/status").json()["status"] == "queued"
    verify(service, "team/m", digest, passed=False, reason="too slow")
    empty = client.post(base + "/override", data={"csrf": token, "tag": "v1", "reason": " "})
    assert empty.status_code == 400 and "Say why it may be let through" in empty.text
    r = client.post(base + "/override", data={"csrf": token, "reason": "needed <now>"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == base + "?done=override"
    status = section(page(client, base), "status-h")
    assert "Let through by admin" in status and "needed <now>" in status
    assert client.post(base + "/verify", data={}).status_code == 403  # no CSRF token
    entry = service.audit.entries()[0]
    assert (entry["action"], entry["target"]) == ("override", f"team/m@{digest}")


def test_actions_follow_the_callers_rights(settings):
    users = {"rita": "rita-password", "wanda": "wanda-password", "nadia": "nadia-password"}
    with auth_client(settings, users=users,
                     roles={"team": {"rita": "read", "wanda": "write", "nadia": "admin"}}) as c:
        c.auth = ("nadia", "nadia-password")
        digest = push_model(c, "team/m", "v1")
        c.auth = None
        verify(c.app.state.registry, "team/m", digest, passed=False, reason="too slow")
        seen = {}
        for user in users:
            c.cookies.clear()
            token = CSRF.search(c.get("/-/sign-in").text).group(1)
            r = c.post("/-/sign-in", data={"csrf": token, "name": user,
                                           "password": users[user]}, follow_redirects=False)
            assert r.status_code == 303
            html = page(c, "/team/m/-/tags/v1")
            seen[user] = ("Verify again" in html, "Let it through" in html)
        assert seen == {"rita": (False, False), "wanda": (True, False), "nadia": (True, True)}
        c.cookies.clear()
        r = c.get("/team/m/-/tags/v1", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/-/sign-in?next=")
