"""The models listing over HTTP (``registry/web/models.py``): the rows and their columns,
each filter giving REST's rows (``GET /api/v1/models`` with the same query), sorting by
the column headers, cursor paging, REST's message for a bad value, empty form fields
read as "no filter", and the namespaces a caller may not read, on both stacks.

Figures are recorded through the service layer with made-up values (the recorder of
``tests/api/test_browse.py``), so every row and every filter's answer is known.
"""

from __future__ import annotations

import re
from html import unescape

import pytest

from registry.formats import fit
from tests.api.test_browse import GiB, long_context, qwen, record, shape
from tests.api.test_browse import llama as llama_gguf
from tests.support.auth_app import auth_client
from tests.support.gguf_files import gguf_bytes
from tests.support.model_artifacts import push_ollama, push_safetensors
from tests.support.oci import push_image
from tests.support.web import text_of

ROW = re.compile(r'<tr>\s*<td><input type="checkbox"[^>]*value="([^"]+)">.*?</tr>', re.S)
ALL = ["library/llama:broken", "library/llama:fast", "library/llama:queued",
       "library/llama:slow", "library/qwen:latest", "team/mlx:v1"]


def rows(html: str) -> dict[str, str]:
    """The listing's rows: ``repo:tag`` -> the row's text, in page order."""
    return {unescape(m.group(1)): text_of(m.group(0)) for m in ROW.finditer(html)}


def page(client, path: str = "/-/models", expect: int = 200, **params) -> str:
    r = client.get(path, params=params) if params else client.get(path)
    assert r.status_code == expect, r.text[-2000:]
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def rest(client, **params) -> list[str]:
    r = client.get("/api/v1/models", params=params)
    assert r.status_code == 200, r.text
    return [f"{m['repository']}:{m['tag']}" for m in r.json()["models"]]


def link(html: str, rel_text: str) -> str:
    """The href of the link whose text is ``rel_text``, unescaped."""
    m = re.search(r'<a (?:rel="next" )?href="([^"]+)">' + re.escape(rel_text) + "</a>", html)
    assert m, rel_text
    return unescape(m.group(1))


@pytest.fixture
def zoo(client, service) -> dict[str, str]:
    """Models in every state, and an image (no model, never listed).

    ======================  ===========  ======  ========  =======  =======  ==========
    tag                     format       status  backend   tok/s    peak     perplexity
    ======================  ===========  ======  ========  =======  =======  ==========
    library/llama:fast      gguf llama   ready   llama.cpp 80       1 GiB    30
    library/llama:slow      gguf llama   ready   llama.cpp 12.5     3 GiB    12
    library/llama:broken    gguf llama   failed  llama.cpp -        -        -
    library/llama:queued    gguf llama   queued  -         -        -        -
    library/qwen:latest     gguf qwen2   ready   llama.cpp 50       1.5 GiB  20 (F16)
    team/mlx:v1             safetensors  ready   mlx       25       2 GiB    -
    ======================  ===========  ======  ========  =======  =======  ==========
    """
    d = {}
    for tag, system in [("fast", b"f"), ("slow", b"sss"), ("broken", b"bb"),
                        ("queued", b"qqqq")]:
        d[tag] = push_ollama(client, "library/llama", tag, llama_gguf(), system)
    d["qwen"] = push_ollama(client, "library/qwen", "latest", qwen())
    d["mlx"] = push_safetensors(client, "team/mlx", "v1")
    push_image(client, "team/app", "v1")
    record(service, "library/llama", d["fast"], tps=80.0, rss=GiB, perplexity=30.0)
    record(service, "library/llama", d["slow"], tps=12.5, rss=3 * GiB, perplexity=12.0)
    record(service, "library/llama", d["broken"], passed=False)
    record(service, "library/qwen", d["qwen"], tps=50.0, rss=3 * GiB // 2, perplexity=20.0)
    record(service, "team/mlx", d["mlx"], backend="mlx", tps=25.0, rss=2 * GiB)
    return d


# ---- rows ------------------------------------------------------------------------------

def test_lists_every_tagged_model_with_its_columns(client, zoo):
    html = page(client)
    found = rows(html)
    assert list(found) == ALL  # sorted by name; the image team/app is no model
    assert "team/app" not in text_of(html)
    assert 'href="/library/llama/-/tags/fast"' in html
    assert "library/llama:fast ready gguf llama" in found["library/llama:fast"]
    assert "llama.cpp 80.0 1024 MiB 30.00" in found["library/llama:fast"]
    assert "library/qwen:latest ready gguf qwen2" in found["library/qwen:latest"]
    assert "mlx 25.0 2048 MiB –" in found["team/mlx:v1"]
    # Failed: the badge and REST's reason; queued: no figures.
    assert 'class="badge status-failed"' in html
    assert "failed bad tensor" in found["library/llama:broken"]
    assert "queued" in found["library/llama:queued"]
    assert "80.0" not in found["library/llama:queued"]
    # Each row can be ticked for the comparison, inside a form that GETs /-/compare.
    form = html[html.index('<form method="get" action="/-/compare"'):]
    assert form.index('name="m" value="library/llama:fast"') < form.index("</form>")
    assert "Compare selected" in form
    # The filter form has a label for each field.
    for field in ("f-q", "f-status-ready", "f-format", "f-backend", "f-architecture",
                  "f-quantization", "f-tps", "f-memory", "f-ppl", "f-fits", "f-context",
                  "f-kv"):
        assert f'<label for="{field}"' in html and f'id="{field}"' in html, field


def test_a_tag_with_odd_characters_is_linked_percent_encoded(client, service):
    push_ollama(client, "team/odd", "v1.0_rc-1", llama_gguf())
    html = page(client)
    assert 'href="/team/odd/-/tags/v1.0_rc-1"' in html
    assert list(rows(html)) == ["team/odd:v1.0_rc-1"]


def test_parameters_read_as_people_say_them():
    from registry.web.models import parameters
    assert [parameters(x) for x in (None, 0, 999, 270_000_000, 7_241_732_096,
                                    123_000_000_000)] == ["–", "–", "999", "270M", "7.24B",
                                                          "123B"]


# ---- filters ---------------------------------------------------------------------------

FILTERS = [
    ({"status": "failed"}, ["library/llama:broken"]),
    ({"status": ["ready", "queued"]},
     ["library/llama:fast", "library/llama:queued", "library/llama:slow",
      "library/qwen:latest", "team/mlx:v1"]),
    ({"format": "safetensors"}, ["team/mlx:v1"]),
    ({"backend": "MLX"}, ["team/mlx:v1"]),
    ({"architecture": "qwen2"}, ["library/qwen:latest"]),
    ({"architecture": "LLAMA,qwen2", "status": "ready"},
     ["library/llama:fast", "library/llama:slow", "library/qwen:latest"]),
    ({"min_tokens_per_s": "40"}, ["library/llama:fast", "library/qwen:latest"]),
    ({"max_memory_mb": "1600"}, ["library/llama:fast", "library/qwen:latest"]),
    ({"max_perplexity": "25"}, ["library/llama:slow", "library/qwen:latest"]),
    ({"q": "QWEN"}, ["library/qwen:latest"]),
    ({"q": "llama:s"}, ["library/llama:slow"]),
]


def test_each_filter_gives_rests_rows(client, zoo):
    # One registry for every case (building it is what takes the time).
    for params, expected in FILTERS:
        assert rest(client, **params) == expected, params
        assert list(rows(page(client, **params))) == expected, params
    # Quantization: whatever the cards say, the page and REST agree, and it filters.
    quantization = client.get("/api/v1/models", params={"q": "qwen"}).json()["models"][0][
        "quantization"]
    assert quantization
    expected = rest(client, quantization=quantization.lower())
    assert "library/qwen:latest" in expected
    assert list(rows(page(client, quantization=quantization.lower()))) == expected
    # The form shows what it filters by.
    html = page(client, status=["ready", "queued"], format="gguf", min_tokens_per_s="40")
    assert 'id="f-status-ready" name="status" value="ready" checked' in html
    assert 'id="f-status-failed" name="status" value="failed">' in html
    assert '<option value="gguf" selected>' in html
    assert 'name="min_tokens_per_s" value="40"' in html


def test_fits_in_memory_at_a_context_and_kv_cache(client, service):
    small, big = shape(200_000_000), shape(1_200_000_000)
    for name, table in (("fit/small", fit.table(small)), ("fit/big", fit.table(big))):
        digest = push_ollama(client, name, "v1", long_context(), name.encode())
        record(service, name, digest, tps=20.0, rss=GiB, fit_table={**table, "checks": []})
    assert list(rows(page(client, fits_memory="1GiB"))) == ["fit/small:v1"]
    assert list(rows(page(client, fits_memory="2GiB"))) == ["fit/big:v1", "fit/small:v1"]
    # At 32,768 tokens 1 GiB holds the small model only with a q4_0 cache.
    assert rows(page(client, fits_memory="1GiB", context="32768")) == {}
    html = page(client, fits_memory="1GiB", context="32768", kv_cache="q4_0")
    assert list(rows(html)) == ["fit/small:v1"]
    assert '<option value="q4_0" selected>' in html and 'value="32768"' in html


def test_empty_form_fields_are_no_filter(client, zoo):
    # What a browser sends for the form with only "ready" ticked.
    empty = {k: "" for k in ("q", "format", "backend", "architecture", "quantization",
                             "min_tokens_per_s", "max_memory_mb", "max_perplexity",
                             "fits_memory", "context", "kv_cache")}
    html = page(client, status="ready", **empty)
    assert list(rows(html)) == ["library/llama:fast", "library/llama:slow",
                                "library/qwen:latest", "team/mlx:v1"]
    # Links made from this page drop the empty fields too.
    assert "min_tokens_per_s" not in link(html, "Tokens/s")
    assert list(rows(page(client, **empty))) == ALL


@pytest.mark.parametrize(("params", "message"), [
    ({"min_tokens_per_s": "fast"}, "min_tokens_per_s must be a non-negative number, not 'fast'"),
    ({"status": "done"}, "status must be one of queued, verifying, ready, failed"),
    ({"sort": "colour"}, "sort must be one of name, updated, size"),
    ({"context": "8192"}, "context only goes with fits_memory"),
    ({"fits_memory": "lots"}, "fits_memory must be a number of bytes or a size"),
    ({"cursor": "not-a-cursor"}, "cursor"),
])
def test_a_bad_value_is_the_page_with_rests_message(client, zoo, params, message):
    r = client.get("/api/v1/models", params=params)
    assert r.status_code == 400 and message in r.json()["detail"], r.text
    html = page(client, expect=400, **params)
    assert message in unescape(html)
    assert 'class="error" role="alert"' in html
    assert "<h1>Models</h1>" in html and 'action="/-/models"' in html  # the form stays
    assert rows(html) == {}
    for name in ("min_tokens_per_s", "context", "fits_memory"):  # what was typed stays
        if name in params:
            assert f'name="{name}" value="{params[name]}"' in html


# ---- sorting and paging ----------------------------------------------------------------

def test_column_headers_sort_keeping_the_filters(client, zoo):
    html = page(client, status="ready")
    # A first click on tokens/s sorts fastest first, keeping the filter.
    href = link(html, "Tokens/s")
    assert "status=ready" in href and "sort=-tokens_per_s" in href
    sorted_html = page(client, "/-/models" + href)
    assert list(rows(sorted_html)) == ["library/llama:fast", "library/qwen:latest",
                                       "team/mlx:v1", "library/llama:slow"]
    assert re.search(r'<th scope="col" class="num" aria-sort="descending"><a href="[^"]+">'
                     r'Tokens/s', sorted_html)
    # A second click turns the order around.
    back = re.search(r'aria-sort="descending"><a href="([^"]+)">Tokens/s', sorted_html)
    assert "sort=tokens_per_s" in unescape(back.group(1))
    assert list(rows(page(client, "/-/models" + unescape(back.group(1))))) == \
        ["library/llama:slow", "team/mlx:v1", "library/qwen:latest", "library/llama:fast"]
    # Memory and perplexity: smallest first; unknown figures last either way.
    assert list(rows(page(client, sort="memory"))) == [
        "library/llama:fast", "library/qwen:latest", "team/mlx:v1", "library/llama:slow",
        "library/llama:broken", "library/llama:queued"]
    assert list(rows(page(client, sort="perplexity", status="ready"))) == [
        "library/llama:slow", "library/qwen:latest", "library/llama:fast", "team/mlx:v1"]
    assert list(rows(page(client, sort="-name")))[0] == "team/mlx:v1"


def test_next_page_link_keeps_filters_and_sort(client, zoo):
    seen, path = [], "/-/models?status=ready&sort=-tokens_per_s&n=2"
    for _ in range(5):
        html = page(client, path)
        seen += list(rows(html))
        if 'rel="next"' not in html:
            break
        href = link(html, "Next page")
        assert "status=ready" in href and "sort=-tokens_per_s" in href and "n=2" in href
        path = "/-/models" + href
        assert "First page" in page(client, path)
    assert seen == ["library/llama:fast", "library/qwen:latest", "team/mlx:v1",
                    "library/llama:slow"]


# ---- who sees what ---------------------------------------------------------------------

def test_a_reader_sees_only_the_namespaces_it_may_pull(settings):
    with auth_client(settings, users={"rita": "rita-password", "root": "root-password"},
                     roles={"team": {"rita": "read"}}) as c:
        c.app.state.registry.identities.set_admin("root", True)
        c.auth = ("root", "root-password")
        push_ollama(c, "team/llama", "v1", llama_gguf())
        push_ollama(c, "other/secret", "v1", gguf_bytes(arch="qwen2"))
        c.auth = None
        # Anonymous: nothing, and a hint to sign in.
        html = page(c)
        assert rows(html) == {} and "Sign in</a> to see more" in html
        assert "other/secret" not in html and "team/llama" not in html
        # rita reads team only, whatever she filters by.
        from tests.api.test_web import sign_in
        assert sign_in(c, "rita", "rita-password").status_code == 303
        assert list(rows(page(c))) == ["team/llama:v1"]
        assert rows(page(c, q="secret")) == {}
        assert rows(page(c, architecture="qwen2")) == {}
        assert "Sign in</a> to see more" not in page(c)
        # Anonymous pull in other: an anonymous visitor sees other, not team.
        c.cookies.clear()
        c.app.state.registry.identities.set_anonymous_pull("other", True)
        assert list(rows(page(c))) == ["other/secret:v1"]
