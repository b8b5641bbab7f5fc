"""Reading ``GET /metrics`` back as numbers."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def scrape(client) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label items): value} of one scrape."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples, name: str, default: float = 0.0, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), default)

