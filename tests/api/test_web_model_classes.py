"""The model page's results per hardware class (``registry/web/model_classes.html``), on
both stacks: a table with a row per class of the profile (required or optional, status,
why it did not pass or what it waits for, backend) and, per run configuration, generation
tokens/s and peak memory; headers scoped for screen readers; a model without classes has
no such table.

Results are played through the service layer (claimed by a worker of the class, recorded,
completed), with profile reports of chosen figures (``tests.api.test_regressions``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from registry.db.queue import JobKind
from registry.profiles import parse_profile
from tests.api.test_regressions import MIB, profile, profiled, run
from tests.api.test_web_model import page, section
from tests.support.verification import push_model, verify

PROFILE = "name: fleet\nclasses: {required: [cpu, apple], optional: [cuda]}\n"
WIDE = run(context=8192, kv_cache="q8_0", parallel=4, tps=12.0, rss=612 * MIB)


def _fleet(service) -> None:
    service.classes.set("cpu", {"accelerator": "none"})
    service.classes.set("apple", {"os": "darwin"})
    service.classes.set("cuda", {"accelerator": "cuda"})
    service.profiles.set("team", parse_profile(PROFILE))


def _run(service, hw_class: str, data: dict) -> None:
    """A worker of ``hw_class`` claims its job, records ``data`` and completes it."""
    worker = f"w-{hw_class}"
    job = service.queue.claim(worker, [JobKind.VERIFY], [hw_class])
    assert job is not None and job.hw_class == hw_class
    target = service.verification.target(job.payload["manifest_id"], job.payload["digest"],
                                         hw_class)
    service.verification.record(target, data, job_id=job.id, worker=worker,
                                started_at=datetime.now(UTC))
    assert service.queue.complete(job.id, worker)


def _rows(html: str) -> dict[str, str]:
    start = html.index('aria-labelledby="classes-h"')
    table = html[start:html.index("</section>", start)]
    return {m.group(1): " ".join(re.sub(r"<[^>]+>", " ", m.group(0)).split())
            for m in re.finditer(r'<tr>\s*<th scope="row">([^<]+)</th>.*?</tr>', table, re.S)}


def test_the_model_page_shows_the_class_matrix(client, service):
    _fleet(service)
    push_model(client, "team/m", "v1")
    prof = profile(name="fleet")
    _run(service, "cpu", profiled(prof, runs=[run(tps=41.25, rss=400 * MIB), WIDE]))
    unsupported = {**WIDE, "unsupported": "mlx has no q8_0 K/V cache",
                   "generation_tps": None, "peak_rss_bytes": None}
    _run(service, "apple", profiled(prof, runs=[run(tps=88.0, rss=350 * MIB), unsupported],
                                    passed=False, reason="generation 88 tokens/s? no: a "
                                                         "prompt did not match"))
    html = page(client, "/team/m/-/tags/v1")
    text = section(html, "classes-h")
    assert "Results per hardware class The profile verifies this model" in text
    rows = _rows(html)
    assert list(rows) == ["cpu", "apple", "cuda"]
    assert rows["cpu"] == "cpu required passed – llama.cpp 41.2 400 MiB 12.0 612 MiB"
    assert rows["apple"] == ("apple required failed generation 88 tokens/s? no: a prompt did "
                             "not match llama.cpp 88.0 350 MiB Unsupported: mlx has no q8_0 "
                             "K/V cache")
    assert rows["cuda"].startswith("cuda optional queued waiting for a worker of class cuda")
    assert rows["cuda"].endswith("– – – –")
    # Headers: a column group per configuration, scoped, and each class a row header.
    assert '<th scope="colgroup" colspan="2">Context 2048, KV f16, 1 sequence</th>' in html
    assert '<th scope="colgroup" colspan="2">Context 8192, KV q8_0, 4 sequences</th>' in html
    start = html.index('aria-labelledby="classes-h"')
    table = html[start:html.index("</section>", start)]
    assert table.count('<th scope="col" class="num">Tokens/s</th>') == 2
    assert '<caption class="visually-hidden">Latest result on each hardware class' in html
    # The latest result of any class says which it ran on; the history has the class.
    latest = section(html, "verif-h")
    assert "Hardware class apple" in latest
    history = section(html, "history-h")
    assert "Class" in history and " cpu " in f" {history} " and " apple " in history


def test_a_model_with_classes_and_no_result_yet(client, service):
    _fleet(service)
    push_model(client, "team/m", "v1")
    html = page(client, "/team/m/-/tags/v1")
    rows = _rows(html)
    assert [r.split()[:3] for r in rows.values()] == [
        ["cpu", "required", "queued"], ["apple", "required", "queued"],
        ["cuda", "optional", "queued"]]
    assert 'aria-labelledby="verif-h"' not in html  # no result of any class yet


def test_a_model_without_classes_has_no_class_matrix(client, service):
    digest = push_model(client, "team/m", "v1")
    verify(service, "team/m", digest)
    html = page(client, "/team/m/-/tags/v1")
    assert 'aria-labelledby="classes-h"' not in html
    assert "Hardware class" not in section(html, "verif-h")
    assert "Class" not in section(html, "history-h")
