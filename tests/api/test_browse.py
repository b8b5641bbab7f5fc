"""The REST browse API (``/api/v1/repositories``, ``.../tags``, ``/api/v1/models``) on both
stacks: the rows, every filter, every sort, keyset pagination with ``Link`` headers (also
while rows are inserted between pages) and 400/404 problems for bad requests.

Verifications are recorded through the service layer (no worker runs), with made-up
figures: tokens/s, peak RSS and perplexity differ per model so filters and sorts have
something to tell apart. The fit tables are the estimate's own (``registry.formats.fit``
on a made-up model shape, as the worker computes them): the reports are written here, the
verifier and the estimate are tested elsewhere; what is under test is what browse reads.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from datetime import UTC, datetime
from functools import cache

import pytest

from registry.formats import fit
from tests.support.gguf_files import gguf_bytes
from tests.support.model_artifacts import push_ollama, push_safetensors
from tests.support.oci import push_image
from tests.support.rest import assert_problem, describe
from tests.support.verification import manifest_id
from verifier.report import Report

GiB = 1024**3
MiB = 1024**2
LINK = re.compile(r'^<(/api/v1/[^>]+)>; rel="next"$')


@cache
def llama() -> bytes:
    return gguf_bytes()


@cache
def qwen() -> bytes:
    return gguf_bytes(arch="qwen2", context_length=4096)


@cache
def long_context() -> bytes:
    return gguf_bytes(context_length=32768)


def record(service, name: str, digest: str, *, passed: bool = True,
           backend: str = "llama.cpp", tps: float | None = None,
           rss: int | None = None, perplexity: float | None = None,
           smoke_perplexity: float | None = None, fit_table: dict | None = None) -> None:
    """A verification result, as a worker would record it: ``perplexity`` the profile's
    (``quality``), ``smoke_perplexity`` the flat field older reports have alone."""
    target = service.verification.target(manifest_id(service, name, digest), digest)
    if passed:
        quality = None if perplexity is None else {"perplexity": perplexity}
        report = Report(passed=True, backend=backend, backend_version="1", generation_tps=tps,
                        peak_rss_bytes=rss, tokens_generated=8, output="hi",
                        perplexity=smoke_perplexity, quality=quality, fit=fit_table)
    else:
        report = Report(passed=False, failure="load", reason="bad tensor", backend=backend)
    service.verification.record(target, report.to_dict(), job_id=None, worker="test",
                                started_at=datetime.now(UTC))


@pytest.fixture
def zoo(client, service) -> dict[str, str]:
    """Three repositories of models in every state, and one of a container image.

    ======================  ===========  ======  ========  =======  =========  ==========
    tag                     format       status  backend   tok/s    peak RSS   perplexity
    ======================  ===========  ======  ========  =======  =========  ==========
    library/llama:fast      gguf llama   ready   llama.cpp 80       1 GiB      30 (*)
    library/llama:slow      gguf llama   ready   llama.cpp 12.5     3 GiB      12 (smoke)
    library/llama:broken    gguf llama   failed  llama.cpp -        -          -
    library/llama:queued    gguf llama   queued  -         -        -          -
    library/qwen:latest     gguf qwen2   ready   llama.cpp 50       1.5 GiB    20
    team/mlx:v1             safetensors  ready   mlx       25       2 GiB      -
    team/app:v1             (an image)   -       -         -        -          -
    ======================  ===========  ======  ========  =======  =========  ==========

    (*) the profile's 30 where the smoke check's flat figure says 45: the profile's counts.
    """
    d = {}
    # Distinct system prompts of distinct lengths: distinct manifests and sizes.
    for tag, system in [("fast", b"f"), ("slow", b"sss"), ("broken", b"bb"),
                        ("queued", b"qqqq")]:
        d[f"library/llama:{tag}"] = push_ollama(client, "library/llama", tag, llama(), system)
    d["library/qwen:latest"] = push_ollama(client, "library/qwen", "latest", qwen())
    d["team/mlx:v1"] = push_safetensors(client, "team/mlx", "v1")
    d["team/app:v1"] = push_image(client, "team/app", "v1")[0]
    record(service, "library/llama", d["library/llama:fast"], tps=80.0, rss=GiB,
           perplexity=30.0, smoke_perplexity=45.0)
    record(service, "library/llama", d["library/llama:slow"], tps=12.5, rss=3 * GiB,
           smoke_perplexity=12.0)
    record(service, "library/llama", d["library/llama:broken"], passed=False)
    record(service, "library/qwen", d["library/qwen:latest"], tps=50.0, rss=3 * GiB // 2,
           perplexity=20.0)
    record(service, "team/mlx", d["team/mlx:v1"], backend="mlx", tps=25.0, rss=2 * GiB)
    return d


def get(client, url: str, **params) -> dict:
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def tag_names(client, url: str, **params) -> list[str]:
    key = "models" if url.endswith("/models") else "tags"
    return [f"{row['repository']}:{row['tag']}" if key == "models" else row["tag"]
            for row in get(client, url, **params)[key]]


def walk(client, url: str, key: str, **params) -> list[dict]:
    """Every row, following ``Link`` headers page by page."""
    rows, pages = [], 0
    r = client.get(url, params=params) if params else client.get(url)  # params={} drops ?...
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        rows += body[key]
        pages += 1
        link = r.headers.get("link")
        if link is None:
            assert body["next"] is None
            return rows
        m = LINK.match(link)
        assert m, link
        assert body["next"] == m.group(1)
        assert pages < 100
        r = client.get(m.group(1))


# ----------------------------------------------------------------------------- rows


def test_tag_rows_carry_card_status_size_and_latest_figures(client, zoo):
    body = get(client, "/api/v1/repositories/library/llama/tags")
    assert body["repository"] == "library/llama" and body["next"] is None
    rows = {row["tag"]: row for row in body["tags"]}
    assert list(rows) == ["broken", "fast", "queued", "slow"]

    fast = rows["fast"]
    card = describe(client, "library/llama", "fast")
    assert fast == {
        "repository": "library/llama", "tag": "fast", "digest": zoo["library/llama:fast"],
        "mediaType": card["mediaType"], "artifactType": card["artifactType"],
        "status": "ready", "reason": None, "size": card["size"]["logical"],
        "updated": fast["updated"],
        "format": "gguf", "architecture": "llama",
        "parameter_count": card["model"]["parameter_count"], "quantization": "F32",
        "context_length": 2048, "verdict": "passed", "backend": "llama.cpp",
        "tokens_per_s": 80.0, "peak_rss_bytes": GiB, "perplexity": 30.0,
        "regressions": None, "verified_at": card["verification"]["finished_at"],
        "href": "/api/v1/repositories/library/llama/tags/fast",
    }
    assert datetime.fromisoformat(fast["updated"]).tzinfo is not None
    # The href is the full card (and the verification history hangs off its digest).
    assert get(client, fast["href"])["digest"] == fast["digest"]

    assert (rows["broken"]["status"], rows["broken"]["verdict"], rows["broken"]["reason"],
            rows["broken"]["tokens_per_s"], rows["broken"]["peak_rss_bytes"]) == \
        ("failed", "failed", "bad tensor", None, None)
    assert (rows["queued"]["status"], rows["queued"]["verdict"], rows["queued"]["backend"],
            rows["queued"]["verified_at"]) == ("queued", None, None, None)

    image = get(client, "/api/v1/repositories/team/app/tags")["tags"]
    assert [(r["tag"], r["digest"], r["status"], r["format"], r["tokens_per_s"])
            for r in image] == [("v1", zoo["team/app:v1"], None, None, None)]
    assert image[0]["size"] == describe(client, "team/app", "v1")["size"]["logical"]

    mlx = get(client, "/api/v1/repositories/team/mlx/tags")["tags"][0]
    assert (mlx["format"], mlx["architecture"], mlx["quantization"], mlx["backend"],
            mlx["tokens_per_s"], mlx["peak_rss_bytes"]) == \
        ("safetensors", "LlamaForCausalLM", "F16", "mlx", 25.0, 2 * GiB)


def test_the_latest_verification_counts(client, service, zoo):
    digest = zoo["library/llama:fast"]
    record(service, "library/llama", digest, tps=5.0, rss=GiB // 2)
    row = get(client, "/api/v1/repositories/library/llama/tags", q="fast")["tags"][0]
    assert (row["tokens_per_s"], row["peak_rss_bytes"]) == (5.0, GiB // 2)
    assert tag_names(client, "/api/v1/repositories/library/llama/tags",
                     min_tokens_per_s="20") == []


def test_repositories_with_counts_sizes_and_search(client, service, zoo):
    body = get(client, "/api/v1/repositories")
    assert body["next"] is None
    repos = {r["name"]: r for r in body["repositories"]}
    assert list(repos) == ["library/llama", "library/qwen", "team/app", "team/mlx"]
    llama_repo = repos["library/llama"]
    # 4 models + 3 verification artifacts (the failed run's too) as referrers.
    assert (llama_repo["tag_count"], llama_repo["manifest_count"],
            llama_repo["model_count"]) == (4, 7, 4)
    assert (repos["team/app"]["tag_count"], repos["team/app"]["manifest_count"],
            repos["team/app"]["model_count"]) == (1, 1, 0)
    # Every blob once: the GGUF shared by the four llama tags counts once.
    assert llama_repo["size"] < 2 * len(llama())
    assert llama_repo["size"] > len(llama())
    assert repos["team/app"]["size"] == describe(client, "team/app", "v1")["size"]["logical"]
    assert llama_repo["href"] == "/api/v1/repositories/library/llama/tags"
    assert len(get(client, llama_repo["href"])["tags"]) == 4
    for r in repos.values():
        assert datetime.fromisoformat(r["updated"]) >= datetime.fromisoformat(r["created"])

    names = lambda **p: [r["name"] for r in get(client, "/api/v1/repositories",  # noqa: E731
                                                **p)["repositories"]]
    assert names(q="LLAMA") == ["library/llama"]
    assert names(q="ry/") == ["library/llama", "library/qwen"]
    assert names(q="m/") == ["team/app", "team/mlx"]
    assert names(q="") == names()
    assert names(prefix="team/") == ["team/app", "team/mlx"]
    assert names(prefix="team/", q="ml") == ["team/mlx"]
    assert names(q="%") == [] and names(q="_") == []  # LIKE wildcards are literal
    assert names(q="nothing") == []

    assert names(sort="-name") == ["team/mlx", "team/app", "library/qwen", "library/llama"]
    for sort in ("name", "-name", "updated", "-updated", "tags", "-tags", "size", "-size"):
        whole = names(sort=sort)
        assert [r["name"] for r in walk(client, "/api/v1/repositories", "repositories",
                                        sort=sort, n="1")] == whole, sort
    assert names(sort="-tags")[0] == "library/llama"
    assert names(sort="size")[0] == "team/app"
    # A tag moved: the repository is the most recently updated one.
    push_image(client, "library/qwen", "latest")
    assert names(sort="-updated")[0] == "library/qwen"
    assert names(sort="updated")[-1] == "library/qwen"


def test_unknown_and_invalid_repositories(client, zoo):
    body = assert_problem(client.get("/api/v1/repositories/library/nope/tags"), 404,
                          "NAME_UNKNOWN")
    assert "library/nope" in body["detail"]
    assert_problem(client.get("/api/v1/repositories/Not_Valid/tags"), 400, "NAME_INVALID")
    # The existing per-tag and per-digest routes still win over the listing routes.
    assert get(client, "/api/v1/repositories/library/llama/tags/fast")["tag"] == "fast"


# -------------------------------------------------------------------------- filters

TAGS = "/api/v1/repositories/library/llama/tags"
MODELS = "/api/v1/models"


TAG_FILTERS = [
    ({}, ["broken", "fast", "queued", "slow"]),
    ({"status": "ready"}, ["fast", "slow"]),
    ({"status": "ready,failed"}, ["broken", "fast", "slow"]),
    ({"status": ["queued", "failed"]}, ["broken", "queued"]),   # repeated parameter
    ({"status": "Ready,FAILED"}, ["broken", "fast", "slow"]),   # any case
    ({"format": "gguf"}, ["broken", "fast", "queued", "slow"]),
    ({"format": "GGUF"}, ["broken", "fast", "queued", "slow"]),
    ({"format": "safetensors"}, []),
    ({"backend": "llama.cpp"}, ["broken", "fast", "slow"]),
    ({"backend": "LLAMA.CPP"}, ["broken", "fast", "slow"]),
    ({"backend": "mlx"}, []),
    ({"min_tokens_per_s": "20"}, ["fast"]),
    ({"min_tokens_per_s": "12.5"}, ["fast", "slow"]),
    ({"min_tokens_per_s": "0"}, ["fast", "slow"]),          # unknown speed never matches
    ({"max_memory_mb": "1024"}, ["fast"]),
    ({"max_memory_mb": "3072"}, ["fast", "slow"]),
    ({"max_memory_mb": "1023.9"}, []),
    ({"max_memory_mb": "1e308"}, ["fast", "slow"]),                # overflows to inf
    ({"architecture": "LLAMA"}, ["broken", "fast", "queued", "slow"]),
    ({"quantization": "f32"}, ["broken", "fast", "queued", "slow"]),
    ({"quantization": "Q4_K_M"}, []),
    ({"q": "S"}, ["fast", "slow"]),
    ({"max_perplexity": "30"}, ["fast", "slow"]),
    ({"max_perplexity": "29.9"}, ["slow"]),              # the profile's 30, not the smoke 45
    ({"max_perplexity": "0"}, []),
    ({"max_perplexity": "1e308", "sort": "-perplexity"}, ["fast", "slow"]),
    ({"status": "ready", "min_tokens_per_s": "10", "max_memory_mb": "2048"}, ["fast"]),
]
MODEL_FILTERS = [
    ({}, ["library/llama:broken", "library/llama:fast", "library/llama:queued",
          "library/llama:slow", "library/qwen:latest", "team/mlx:v1"]),   # no image
    ({"status": "ready", "format": "gguf", "min_tokens_per_s": "20"},
     ["library/llama:fast", "library/qwen:latest"]),
    ({"status": "ready", "backend": "mlx", "min_tokens_per_s": "20", "max_memory_mb": "2048"},
     ["team/mlx:v1"]),
    ({"format": "safetensors"}, ["team/mlx:v1"]),
    ({"architecture": "qwen2,LlamaForCausalLM"}, ["library/qwen:latest", "team/mlx:v1"]),
    ({"max_memory_mb": "1536"}, ["library/llama:fast", "library/qwen:latest"]),
    ({"q": "qwen:"}, ["library/qwen:latest"]),
    ({"q": "mlx:v"}, ["team/mlx:v1"]),
    ({"status": "verifying"}, []),
    ({"max_perplexity": "25"}, ["library/llama:slow", "library/qwen:latest"]),
    ({"max_perplexity": "25", "sort": "perplexity"}, ["library/llama:slow",
                                                       "library/qwen:latest"]),
]


def test_filters(client, zoo):
    # One registry for every case (building it is what takes the time).
    for url, cases in ((TAGS, TAG_FILTERS), (MODELS, MODEL_FILTERS)):
        for params, expected in cases:
            assert tag_names(client, url, **params) == expected, (url, params)


def shape(weights_bytes: int) -> fit.ModelShape:
    """A llama-shaped model (every layer attends to the whole context) whose KV cache is
    64 KiB a token in f16: 2 GiB at 32,768 tokens, so the KV type decides what fits."""
    return fit.ModelShape(
        architecture="llama", n_layer=16, n_head_kv=8, key_length=128, value_length=128,
        n_ctx_train=32768, sliding_window=None, swa_layers=[False] * 16, n_embd=1024,
        n_vocab=32000, weights_bytes=weights_bytes, n_head=16, n_ff=4096)


SMALL, BIG = shape(200_000_000), shape(1_200_000_000)


@pytest.fixture
def fitted(client, service) -> dict[str, fit.ModelShape]:
    """Models with fit tables (the worker's: ``fit.table`` of their shape).

    ==========  ================  =====  ===============================================
    repository  training context  shape  GiB at 4,096 / 32,768 tokens (f16, q8_0, q4_0)
    ==========  ================  =====  ===============================================
    fit/small   32,768            SMALL  0.53 0.41 0.35 / 2.30 1.37 0.87
    fit/big     32,768            BIG    1.46 1.34 1.28 / 3.24 2.30 1.80
    fit/short   2,048 (card)      SMALL  as fit/small, but trained for 2,048 tokens
    fit/none    32,768            -      no estimate (the header could not be read)
    ==========  ================  =====  ===============================================
    """
    for name, gguf, table in (
            ("fit/small", long_context(), fit.table(SMALL)),
            ("fit/big", long_context(), fit.table(BIG)),
            ("fit/short", llama(), fit.table(SMALL)),
            ("fit/none", long_context(), {"error": "ValueError: no block count"})):
        digest = push_ollama(client, name, "v1", gguf, name.encode())
        record(service, name, digest, tps=20.0, rss=GiB, fit_table={**table, "checks": []})
    return {"fit/small": SMALL, "fit/big": BIG}


def fitting(client, url: str = MODELS, **params) -> list[str]:
    return [n.split(":")[0] for n in tag_names(client, url, q="fit/", **params)]


def test_fits_memory_at_a_context_and_kv_cache(client, fitted):
    # 4,096 tokens and f16 unless asked otherwise; the training context counts.
    assert fitting(client, fits_memory="1GiB") == ["fit/small"]
    assert fitting(client, fits_memory="1GiB", context="4096", kv_cache="f16") == \
        ["fit/small"]
    assert fitting(client, fits_memory="1GiB", context="2048") == ["fit/short", "fit/small"]
    assert fitting(client, fits_memory="2GiB") == ["fit/big", "fit/small"]
    assert fitting(client, fits_memory="1EiB", context="2048") == \
        ["fit/big", "fit/short", "fit/small"]                    # never fit/none
    # At 32,768 tokens, 1 GiB holds the small model's KV cache only in q4_0.
    for kv in ("f16", "q8_0"):
        assert fitting(client, fits_memory="1GiB", context="32768", kv_cache=kv) == [], kv
    assert fitting(client, fits_memory="1GiB", context="32768", kv_cache="q4_0") == \
        ["fit/small"]
    assert fitting(client, fits_memory="1GiB", context="32768", kv_cache="Q4_0") == \
        ["fit/small"]  # any case
    assert fitting(client, fits_memory="2GiB", context="32768", kv_cache="q8_0") == \
        ["fit/small"]
    assert fitting(client, fits_memory="2GiB", context="32768", kv_cache="q4_0") == \
        ["fit/big", "fit/small"]
    # Units: bytes, GiB and GB, with or without a space.
    assert fitting(client, fits_memory=str(2**30)) == fitting(client, fits_memory="1 GiB") \
        == fitting(client, fits_memory="1.0737GB") == ["fit/small"]
    # The tags of one repository take the same filter.
    assert tag_names(client, "/api/v1/repositories/fit/big/tags", fits_memory="2GiB",
                     context="4096", kv_cache="q8_0") == ["v1"]
    assert tag_names(client, "/api/v1/repositories/fit/big/tags", fits_memory="1GiB") == []


@pytest.mark.parametrize("kv", fit.KV_CACHE_TYPES)
def test_fits_memory_is_the_estimate_to_the_byte(client, fitted, kv):
    """At the estimate itself the model fits, a byte less it does not; between two padding
    steps the context is read as the backends allocate it (rounded up to 256 cells); and a
    context the table does not list is as exact as one it does."""
    for context in (4096, 10_000, 32768):
        need = fit.estimate(SMALL, context, kv).total_bytes
        first = -(-context // 256) * 256 - 255  # the shortest context in the same 256 cells
        assert fit.estimate(SMALL, first, kv).total_bytes == need
        for asked in (context, first):
            assert fitting(client, fits_memory=str(need), context=str(asked),
                           kv_cache=kv) == ["fit/small"], (context, asked)
        assert fitting(client, fits_memory=str(need - 1), context=str(context),
                       kv_cache=kv) == [], context


# -------------------------------------------------------------------------- sorting


def _expected(rows: list[dict], sort: str, across: bool) -> list[str]:
    """The documented order, computed here: the key, then the name, in the sort's
    direction; unknown tokens/s or memory last either way."""
    desc = sort.startswith("-")
    key = sort.lstrip("-")

    def name(r):
        return (r["repository"], r["tag"]) if across else (r["tag"],)

    field = {"updated": "updated", "size": "size", "tokens_per_s": "tokens_per_s",
             "memory": "peak_rss_bytes", "perplexity": "perplexity"}.get(key)

    def value(r):
        v = r[field]
        return datetime.fromisoformat(v) if key == "updated" else v

    if field is None:
        ordered = sorted(rows, key=name, reverse=desc)
    else:
        known = sorted((r for r in rows if r[field] is not None),
                       key=lambda r: (value(r), name(r)), reverse=desc)
        unknown = sorted((r for r in rows if r[field] is None), key=name, reverse=desc)
        ordered = known + unknown
    return [f"{r['repository']}:{r['tag']}" for r in ordered]


SORTS = ["name", "-name", "updated", "-updated", "size", "-size", "tokens_per_s",
         "-tokens_per_s", "memory", "-memory", "perplexity", "-perplexity"]


@pytest.mark.slow  # every sort, both ways, paged through the whole zoo
def test_sorting_and_paging_agree_on_every_sort(client, zoo):
    # Two more tags with the same size and speed as "fast": the name breaks the ties.
    for tag in ("fast2", "fast3"):
        assert push_ollama(client, "library/llama", tag, llama(), b"f") == \
            zoo["library/llama:fast"]
    for sort, (url, key) in itertools.product(SORTS, ((TAGS, "tags"), (MODELS, "models"))):
        across = key == "models"
        rows = get(client, url, sort=sort)[key]
        got = [f"{r['repository']}:{r['tag']}" for r in rows]
        assert got == _expected(rows, sort, across), (url, sort)
        for n in (1, 2, 4):
            paged = walk(client, url, key, sort=sort, n=str(n))
            assert [f"{r['repository']}:{r['tag']}" for r in paged] == got, (url, sort, n)


def test_sort_by_speed_puts_unknown_last_both_ways(client, zoo):
    assert tag_names(client, TAGS, sort="tokens_per_s") == ["slow", "fast", "broken", "queued"]
    assert tag_names(client, TAGS, sort="-tokens_per_s") == ["fast", "slow", "queued", "broken"]
    assert tag_names(client, MODELS, sort="-tokens_per_s")[:4] == \
        ["library/llama:fast", "library/qwen:latest", "team/mlx:v1", "library/llama:slow"]
    assert tag_names(client, MODELS, sort="memory")[:4] == \
        ["library/llama:fast", "library/qwen:latest", "team/mlx:v1", "library/llama:slow"]
    assert tag_names(client, TAGS, sort="perplexity") == ["slow", "fast", "broken", "queued"]
    assert tag_names(client, TAGS, sort="-perplexity") == ["fast", "slow", "queued", "broken"]
    assert tag_names(client, MODELS, sort="perplexity")[:3] == \
        ["library/llama:slow", "library/qwen:latest", "library/llama:fast"]


# ----------------------------------------------------------------------- pagination


def test_link_header_keeps_the_filters_and_the_last_page_has_none(client, zoo):
    r = client.get(MODELS, params={"status": "ready", "sort": "-tokens_per_s", "n": "2"})
    assert r.status_code == 200
    assert [f"{m['repository']}:{m['tag']}" for m in r.json()["models"]] == \
        ["library/llama:fast", "library/qwen:latest"]
    url = LINK.match(r.headers["link"]).group(1)
    assert url.startswith("/api/v1/models?")
    assert "status=ready" in url and "sort=-tokens_per_s" in url and "n=2" in url
    r = client.get(url)
    assert [f"{m['repository']}:{m['tag']}" for m in r.json()["models"]] == \
        ["team/mlx:v1", "library/llama:slow"]
    # Exactly n rows left: no empty trailing page.
    assert "link" not in r.headers and r.json()["next"] is None

    r = client.get(TAGS, params={"n": "4"})
    assert len(r.json()["tags"]) == 4 and "link" not in r.headers
    assert len(walk(client, "/api/v1/repositories", "repositories", n="1")) == 4


def test_pages_do_not_shift_when_rows_are_inserted_between_them(client, zoo):
    r = client.get(TAGS, params={"n": "2"})
    assert [t["tag"] for t in r.json()["tags"]] == ["broken", "fast"]
    link = LINK.match(r.headers["link"]).group(1)
    push_image(client, "library/llama", "aaa")    # before the cursor: not seen
    push_image(client, "library/llama", "fz")     # after it: seen, in its place
    push_image(client, "library/llama", "zzz")
    r = client.get(link)
    assert [t["tag"] for t in r.json()["tags"]] == ["fz", "queued"]
    r = client.get(LINK.match(r.headers["link"]).group(1))
    assert [t["tag"] for t in r.json()["tags"]] == ["slow", "zzz"]
    assert "link" not in r.headers

    # Newest first: a push after page 1 would shift an offset-paged listing by one
    # (repeating a row); the cursor carries on after the last row seen.
    first = client.get(TAGS, params={"n": "3", "sort": "-updated"})
    seen = [t["tag"] for t in first.json()["tags"]]
    assert seen == ["zzz", "fz", "aaa"]
    push_image(client, "library/llama", "newest")
    rest = walk(client, LINK.match(first.headers["link"]).group(1), "tags")
    assert [t["tag"] for t in rest] == ["queued", "broken", "slow", "fast"]

    # Repositories too.
    r = client.get("/api/v1/repositories", params={"n": "2"})
    assert [x["name"] for x in r.json()["repositories"]] == ["library/llama", "library/qwen"]
    push_image(client, "aaa/first", "v1")
    push_image(client, "team/b", "v1")
    rest = walk(client, LINK.match(r.headers["link"]).group(1), "repositories")
    assert [x["name"] for x in rest] == ["team/app", "team/b", "team/mlx"]


# --------------------------------------------------------------------------- errors


def _cursor(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _real_cursor(client, url: str, **params) -> str:
    link = client.get(url, params={"n": "1", **params}).headers["link"]
    return re.search(r"cursor=([^&>]+)", link).group(1)


BAD = [
    {"n": "0"}, {"n": "501"}, {"n": "-1"}, {"n": "x"}, {"n": "1.5"}, {"n": ""},
    {"n": "9" * 40},
    {"sort": "bogus"}, {"sort": "--name"}, {"sort": ""}, {"sort": "name", "n": "2x"},
    {"cursor": "!!!"}, {"cursor": "e30"}, {"cursor": "x" * 5000},
    {"cursor": _cursor({"e": "tags", "s": "name", "k": [1]})},
    {"cursor": _cursor({"e": "tags", "s": "name", "k": ["a", "b"]})},
    {"cursor": _cursor({"e": "tags", "s": "name", "k": ["a\x00"]})},
    {"cursor": _cursor(["tags", "name"])},
    {"sort": "size", "cursor": _cursor({"e": "tags", "s": "size", "k": [2**70, "a"]})},
    {"sort": "size", "cursor": _cursor({"e": "tags", "s": "size", "k": [True, "a"]})},
    {"sort": "updated", "cursor": _cursor({"e": "tags", "s": "updated",
                                           "k": ["yesterday", "a"]})},
    {"sort": "updated", "cursor": _cursor({"e": "tags", "s": "updated",
                                           "k": ["2026-01-01T00:00:00", "a"]})},
    {"sort": "tokens_per_s", "cursor": base64.urlsafe_b64encode(
        b'{"e":"tags","s":"tokens_per_s","k":[0,NaN,"a"]}').decode()},
    {"sort": "tokens_per_s", "cursor": _cursor({"e": "tags", "s": "tokens_per_s",
                                                "k": [0, "1", "a"]})},
    {"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()},
    {"status": "bogus"}, {"status": "ready,"}, {"status": ""}, {"format": "onnx"},
    {"backend": ""}, {"architecture": ",,"},
    {"min_tokens_per_s": ""}, {"min_tokens_per_s": "-1"}, {"min_tokens_per_s": "fast"},
    {"min_tokens_per_s": "nan"},
    {"min_tokens_per_s": "inf"}, {"max_memory_mb": "1e999"}, {"max_memory_mb": "-0.5"},
    {"q": "a\x01b"}, {"q": "x" * 256},
    {"unknown": "1"}, {"min_tps": "20"},
]
# Each names the parameter it is about in the problem's detail.
BAD_FIT = [
    ({"max_perplexity": "-1"}, "max_perplexity"), ({"max_perplexity": "low"}, "max_perplexity"),
    ({"max_perplexity": "inf"}, "max_perplexity"), ({"max_perplexity": ""}, "max_perplexity"),
    ({"fits_memory": "lots"}, "fits_memory"), ({"fits_memory": "-1GiB"}, "fits_memory"),
    ({"fits_memory": "16XB"}, "fits_memory"), ({"fits_memory": ""}, "fits_memory"),
    ({"fits_memory": "1e9"}, "fits_memory"), ({"fits_memory": " 16GiB"}, "fits_memory"),
    ({"fits_memory": ["1GiB", "2GiB"]}, "fits_memory"),
    ({"fits_memory": "1GiB", "context": "0"}, "context"),
    ({"fits_memory": "1GiB", "context": "4k"}, "context"),
    ({"fits_memory": "1GiB", "context": "-4096"}, "context"),
    ({"fits_memory": "1GiB", "context": str(2**24 + 1)}, "context"),
    ({"fits_memory": "1GiB", "context": ""}, "context"),
    ({"fits_memory": "1GiB", "kv_cache": "q5_1"}, "kv_cache"),
    ({"fits_memory": "1GiB", "kv_cache": ""}, "kv_cache"),
    ({"context": "4096"}, "context"), ({"kv_cache": "q8_0"}, "kv_cache"),
    ({"sort": "ppl"}, "sort"),
]


def test_bad_parameters_are_400_problems(client):
    push_image(client, "library/llama", "v1")
    for params in BAD:
        for url in (TAGS, MODELS):
            r = client.get(url, params=params)
            assert r.status_code == 400, (url, params, r.text)
            body = assert_problem(r, 400, "UNSUPPORTED")
            assert body["title"] == "Bad Request"
        repo_params = {k: v for k, v in params.items() if k in ("n", "cursor", "q")}
        if repo_params:
            r = client.get("/api/v1/repositories", params=repo_params)
            assert r.status_code == 400, (params, r.text)
            assert_problem(r, 400)


def test_bad_fit_and_perplexity_values_are_400s_naming_the_parameter(client):
    push_image(client, "library/llama", "v1")
    for params, name in BAD_FIT:
        for url in (TAGS, MODELS):
            body = assert_problem(client.get(url, params=params), 400, "UNSUPPORTED")
            assert name in body["detail"], (url, params, body["detail"])
    # The largest sizes are no error: everything with an estimate fits in them.
    assert client.get(MODELS, params={"fits_memory": "9" * 30 + "EiB"}).status_code == 200


def test_cursors_belong_to_their_listing_and_sort(client, zoo):
    cursor = _real_cursor(client, TAGS, sort="size")
    assert client.get(TAGS, params={"sort": "size", "cursor": cursor}).status_code == 200
    body = assert_problem(client.get(TAGS, params={"sort": "-size", "cursor": cursor}), 400)
    assert "sort" in body["detail"]
    assert_problem(client.get(MODELS, params={"sort": "size", "cursor": cursor}), 400)
    assert_problem(client.get("/api/v1/repositories",
                              params={"sort": "size", "cursor": cursor}), 400)
    # ... but the same cursor works with other filters (it only says where to resume).
    r = client.get(TAGS, params={"sort": "size", "cursor": cursor, "status": "ready"})
    assert r.status_code == 200
    assert_problem(client.get("/api/v1/repositories", params={"sort": "memory"}), 400)
    assert_problem(client.get("/api/v1/repositories", params={"status": "ready"}), 400)
