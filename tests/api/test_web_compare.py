"""The comparison page over HTTP (``registry/web/compare.py``): two to four models side by
side with the figures of their finished verifications, the bounds on how many, models
that do not exist or that the caller may not pull (which read the same), references that
are no model's, on both stacks.

Verifications are played through the service layer with chosen profile reports
(``tests/api/test_regressions.py``'s helpers), so every figure in the table is known.
"""

from __future__ import annotations

import re

import pytest

from tests.api.test_regressions import MIB, profile, profiled, record, run
from tests.support.auth_app import auth_client
from tests.support.oci import push_image
from tests.support.verification import push_model
from tests.support.web import PROMPTS, text_of

HIDDEN = "not found or not visible to you"
FIT = {"backend": "llama.cpp",
       "estimates": [{"context": 2048, "kv_cache": "f16", "total_bytes": 380 * MIB},
                     {"context": 4096, "kv_cache": "f16", "total_bytes": 420 * MIB},
                     {"context": 4096, "kv_cache": "q8_0", "total_bytes": 400 * MIB}],
       "fits": {"f16": {"8GiB": 32768, "16GiB": 65536}, "q8_0": {"8GiB": 65536}},
       "checks": []}


def compare(client, *refs: str, expect: int = 200) -> str:
    r = client.get("/-/compare", params=[("m", ref) for ref in refs])
    assert r.status_code == expect, r.text[-2000:]
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def row(html: str, label: str) -> list[str]:
    """The cells of the table row headed ``label``, as text, one per model."""
    m = re.search(r'<tr><th scope="row">' + re.escape(label) + r"</th>(.*?)</tr>", html, re.S)
    assert m, f"no row {label!r}"
    return [text_of(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", m.group(1), re.S)]


def headers(html: str) -> list[str]:
    head = html[html.index("<thead>"):html.index("</thead>")]
    return [text_of(h) for h in re.findall(r'<th scope="col">(.*?)</th>', head, re.S)][1:]


@pytest.fixture
def pair(client, service) -> tuple[str, str]:
    """team/llama:q4 measured by llama.cpp and team/mlx:q4 by MLX, each with a run
    matrix; llama.cpp's with prompts and a fit table."""
    prof = profile(name="team-default")
    llama_runs = [run(20.0), run(12.0, context=8192, kv_cache="q8_0")]
    llama, _ = record(service, client, "team/llama", "q4",
                      profiled(prof, runs=llama_runs, perplexity=12.5, prompts=PROMPTS,
                               fit=FIT), "llama")
    mlx_runs = [run(30.0, rss=300 * MIB),
                run(unsupported="MLX cannot batch with a quantized KV cache", kv_cache="q4_0",
                    parallel=4, generation_tps=None, prompt_tps=None, peak_rss_bytes=None,
                    aggregate_generation_tps=None, ttft_s=None)]
    mlx_report = profiled(prof, runs=mlx_runs, perplexity=14.0) | {
        "backend": "mlx", "backend_version": "0.26.1", "generation_tps": 60.0,
        "prompt_tps": None, "ttft_s": 0.5, "peak_rss_bytes": 200 * MIB,
        "hardware": {"cpu_model": "Apple M2", "machine": "arm64"}}
    mlx, _ = record(service, client, "team/mlx", "q4", mlx_report, "mlx")
    return llama, mlx


# ---- the table -------------------------------------------------------------------------

def test_two_models_side_by_side_with_their_figures(client, pair):
    html = compare(client, "team/llama:q4", "team/mlx:q4")
    assert headers(html) == ["team/llama:q4", "team/mlx:q4"]
    assert '<a href="/team/llama/-/tags/q4">team/llama:q4</a>' in html
    assert row(html, "Status") == ["ready", "ready"]
    assert row(html, "Format") == ["gguf", "gguf"]
    assert row(html, "Architecture") == ["llama", "llama"]
    assert row(html, "Context length") == ["2,048", "2,048"]
    assert all(cell.endswith("kB") for cell in row(html, "Size"))
    assert row(html, "Verdict") == ["passed", "passed"]
    assert row(html, "Backend") == ["llama.cpp 0.3.16", "mlx 0.26.1"]
    assert row(html, "Hardware") == ["Test CPU", "Apple M2 (arm64)"]
    # The headline figures; the better of each row is marked.
    assert row(html, "Tokens/s (generation)") == ["42.5", "60.0 (best)"]
    assert row(html, "Prompt tokens/s") == ["300.0", "–"]
    assert row(html, "Time to first token") == ["0.05 s (best)", "0.50 s"]
    assert row(html, "Peak memory") == ["118 MiB (best)", "200 MiB"]
    assert row(html, "Perplexity") == ["12.50 (best)", "14.00"]
    assert row(html, "Quality prompts passed") == ["1 of 2", "–"]
    # The fit estimate (llama.cpp's only).
    assert row(html, "Estimated memory at 4,096 tokens, KV f16") == ["420 MiB", "–"]
    assert row(html, "Largest context in 8GiB") == [
        "KV f16: 32,768 tokens; KV q8_0: 65,536 tokens", "–"]
    assert row(html, "Largest context in 16GiB") == ["KV f16: 65,536 tokens", "–"]
    # The run matrix: every configuration either measured, side by side.
    assert row(html, "2,048 tokens, KV f16, 1 parallel") == [
        "20.0 tokens/s, first token 0.05 s, 400 MiB",
        "30.0 tokens/s, first token 0.05 s, 300 MiB (best)"]
    assert row(html, "2,048 tokens, KV q4_0, 4 parallel") == [
        "–", "unsupported: MLX cannot batch with a quantized KV cache"]
    assert row(html, "8,192 tokens, KV q8_0, 1 parallel") == [
        "12.0 tokens/s, first token 0.05 s, 400 MiB", "–"]
    # The form holds the models shown, and room for more.
    assert re.findall(r'name="m" value="([^"]*)"', html) == ["team/llama:q4", "team/mlx:q4",
                                                             "", ""]
    for i in range(1, 5):
        assert f'<label for="pick-{i}">' in html


def test_a_model_by_digest_a_model_not_verified_and_an_image(client, pair):
    llama, _ = pair
    push_model(client, "team/waiting", "v1", "waiting")
    push_image(client, "team/app", "v1")
    html = compare(client, f"team/llama@{llama}", "team/waiting:v1", "team/app:v1")
    assert f'href="/team/llama/-/manifests/{llama}"' in html
    assert row(html, "Status") == ["ready", "queued", "not a model"]
    assert row(html, "Verdict") == ["passed", "not verified yet", "–"]
    assert row(html, "Tokens/s (generation)") == ["42.5", "–", "–"]


def test_four_is_the_most_and_two_the_fewest(client, pair):
    # None or one: the form, and what to do; not an error.
    html = compare(client)
    assert "Pick 2 to 4 models to compare" in html and "<table" not in html
    assert re.findall(r'name="m" value="([^"]*)"', html) == ["", "", "", ""]
    html = compare(client, "team/llama:q4")
    assert "Pick 2 to 4 models" in html and "<table" not in html
    assert re.findall(r'name="m" value="([^"]*)"', html)[0] == "team/llama:q4"
    # The same model twice is one; empty fields are none.
    assert "<table" not in compare(client, "team/llama:q4", " team/llama:q4 ", "")
    assert headers(compare(client, "", "team/llama:q4", "", "team/mlx:q4")) == \
        ["team/llama:q4", "team/mlx:q4"]
    four = [f"team/llama:q{i}" for i in range(3)] + ["team/mlx:q4"]
    assert len(headers(compare(client, *four))) == 4
    # Five: a 400 page that keeps them all in the form to clear one.
    five = [*four, "team/llama:q4"]
    html = compare(client, *five, expect=400)
    assert "Pick at most 4 models to compare (5 were given)" in html
    assert 'role="alert"' in html and "<table" not in html
    assert re.findall(r'name="m" value="([^"]*)"', html) == five


def test_missing_and_malformed_references(client, pair):
    html = compare(client, "team/llama:q4", "team/llama:nope", "nobody/here:v1",
                   "not a <b>reference</b>")
    assert headers(html) == ["team/llama:q4", f"team/llama:nope {HIDDEN}",
                             f"nobody/here:v1 {HIDDEN}",
                             "not a <b>reference</b> not a model reference: write "
                             "repository:tag or repository@digest"]
    assert "<b>reference</b>" not in html  # escaped
    assert row(html, "Tokens/s (generation)") == ["42.5", "–", "–", "–"]
    assert row(html, "Status") == ["ready", "–", "–", "–"]


# ---- who sees what ---------------------------------------------------------------------

def test_a_model_the_caller_may_not_pull_reads_as_missing(settings):
    with auth_client(settings, users={"rita": "rita-password", "root": "root-password"},
                     roles={"team": {"rita": "read"}}) as c:
        c.app.state.registry.identities.set_admin("root", True)
        svc = c.app.state.registry
        c.auth = ("root", "root-password")
        record(svc, c, "team/llama", "v1", profiled(profile(name="p")), "a")
        record(svc, c, "other/secret", "v1",
               profiled(profile(name="p")) | {"generation_tps": 99.0}, "b")
        c.auth = None
        from tests.api.test_web import sign_in
        assert sign_in(c, "rita", "rita-password").status_code == 303
        html = compare(c, "team/llama:v1", "other/secret:v1", "other/nothing:v1")
        # A hidden model and one that does not exist read the same.
        assert headers(html) == ["team/llama:v1", f"other/secret:v1 {HIDDEN}",
                                 f"other/nothing:v1 {HIDDEN}"]
        assert row(html, "Tokens/s (generation)") == ["42.5", "–", "–"]
        assert "99.0" not in html and "/other/secret/-/tags" not in html
        # Anonymous: nothing is visible, the page still answers.
        c.cookies.clear()
        html = compare(c, "team/llama:v1", "other/secret:v1")
        assert headers(html) == [f"team/llama:v1 {HIDDEN}", f"other/secret:v1 {HIDDEN}"]
        # The site admin sees both.
        assert sign_in(c, "root", "root-password").status_code == 303
        html = compare(c, "team/llama:v1", "other/secret:v1")
        assert row(html, "Tokens/s (generation)") == ["42.5", "99.0 (best)"]
