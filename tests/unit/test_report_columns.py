"""registry.services.report_columns: the report figures kept in columns, the fit line against
``registry.formats.fit.estimate`` itself (exact past the sliding-window bend, above it
before), and migration 0011 filling the columns of reports recorded before it."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, insert, select

from registry.db import migrate
from registry.db.tables import verifications
from registry.formats import fit
from registry.services.report_columns import (
    CELL_PAD,
    fit_columns,
    fit_line,
    padded,
    report_columns,
)
from tests.unit.test_fit import gemma

CONTEXTS = range(CELL_PAD, 262144 + 1, CELL_PAD)


def _line_at(line: tuple[int, float], context: int) -> float:
    base, per_token = line
    return base + per_token * padded(context)


def _shapes() -> dict[str, tuple[fit.ModelShape, int]]:
    """Shapes and the context from which the line must be exact: llama.cpp's bend
    (window + one micro-batch, padded); MLX's (the window) comes sooner."""
    no_swa = dataclasses.replace(gemma(), architecture="llama", sliding_window=None,
                                 swa_layers=[False] * 18)
    gemma2 = dataclasses.replace(gemma(), architecture="gemma2", sliding_window=4096,
                                 swa_layers=fit.swa_layers_for("gemma2", 18))
    return {"gemma3": (gemma(), 1024), "llama": (no_swa, CELL_PAD), "gemma2": (gemma2, 4608)}


@pytest.mark.parametrize("backend", fit.BACKENDS)
@pytest.mark.parametrize("name", ["gemma3", "llama", "gemma2"])
def test_the_line_is_the_estimate_past_the_bend_and_above_it_before(name, backend):
    shape, bend = _shapes()[name]
    table = fit.table(shape, backend=backend)
    for kv in fit.KV_CACHE_TYPES:
        line = fit_line(table["estimates"], kv)
        assert line is not None
        for context in CONTEXTS:
            exact = fit.estimate(shape, context, kv, 1, backend).total_bytes
            if context >= bend:
                assert abs(_line_at(line, context) - exact) < 1, (kv, context)
            else:
                assert _line_at(line, context) >= exact, (kv, context)
        # Between the padding steps and beyond the table's largest context too.
        for context in (bend + 1, bend + 700, 100_001, 1 << 20):
            exact = fit.estimate(shape, context, kv, 1, backend).total_bytes
            assert abs(_line_at(line, context) - exact) < 1, (kv, context)


def test_gemma2_overestimate_below_its_window_is_small():
    shape, _ = _shapes()["gemma2"]
    table = fit.table(shape)
    line = fit_line(table["estimates"], "f16")
    exact = fit.estimate(shape, 4096, "f16").total_bytes
    assert 0 < _line_at(line, 4096) / exact - 1 < 0.02


def test_padding():
    assert [padded(c) for c in (1, 256, 257, 4096, 4097)] == [256, 256, 512, 4096, 4352]


@pytest.mark.parametrize("estimates", [
    None, {}, [], [{"context": 2048, "kv_cache": "f16", "total_bytes": 10}],
    [{"context": 2048, "kv_cache": "q8_0", "total_bytes": 10},
     {"context": 4096, "kv_cache": "q8_0", "total_bytes": 20}],
    [{"context": 2048, "kv_cache": "f16", "total_bytes": 20},
     {"context": 4096, "kv_cache": "f16", "total_bytes": 10}],           # shrinking
    [{"context": "2048", "kv_cache": "f16", "total_bytes": 10},
     {"context": 4096, "kv_cache": "f16", "total_bytes": True}],
])
def test_no_line_without_two_sane_points(estimates):
    assert fit_line(estimates, "f16") is None


def test_columns_of_a_report():
    estimates = [{"context": c, "kv_cache": kv, "total_bytes": 1000 + c * (i + 1)}
                 for i, kv in enumerate(fit.KV_CACHE_TYPES) for c in (2048, 4096, 8192)]
    report = {"perplexity": 40.0, "quality": {"perplexity": 35.5},
              "regressions": {"previous": {"digest": "sha256:x", "tag": "v1"},
                              "items": [{"metric": "generation_tps"}], "action": "warn"},
              "fit": {"backend": "llama.cpp", "estimates": estimates, "fits": {}}}
    assert report_columns(report) == {
        "perplexity": 35.5, "regression_count": 1,
        "fit_f16_base_bytes": 1000, "fit_f16_bytes_per_token": 1.0,
        "fit_q8_0_base_bytes": 1000, "fit_q8_0_bytes_per_token": 2.0,
        "fit_q4_0_base_bytes": 1000, "fit_q4_0_bytes_per_token": 3.0}
    # The smoke check's perplexity when the profile measured none; no previous version.
    smoke = report_columns({"perplexity": 40.0, "quality": {"perplexity": None},
                            "regressions": None, "fit": {"error": "no header"}})
    assert smoke == {**dict.fromkeys(smoke), "perplexity": 40.0}
    assert report_columns({"perplexity": float("nan")})["perplexity"] is None
    assert report_columns({"regressions": {"items": []}})["regression_count"] == 0
    assert [c.name for c in fit_columns("q4_0")] == ["fit_q4_0_base_bytes",
                                                     "fit_q4_0_bytes_per_token"]
    with pytest.raises(ValueError):
        fit_columns("q5_1")


def test_migration_fills_the_columns_of_earlier_reports(tmp_path):
    url = f"sqlite:///{tmp_path / 'assay.db'}"
    migrate(url, "0010")
    table = fit.table(gemma())
    reports = [{"passed": True, "quality": {"perplexity": 33.0}, "fit": table},
               {"passed": False}, "not json", {"perplexity": 12.0}]
    now = datetime.now(UTC)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for report in reports:
                text = report if isinstance(report, str) else json.dumps(report)
                # Only columns that exist at 0010 (the others get no value).
                conn.execute(insert(verifications).values(
                    verdict="passed", report=text, started_at=now, finished_at=now))
        migrate(url)
        with engine.connect() as conn:
            rows = conn.execute(select(verifications.c.perplexity,
                                       verifications.c.fit_q8_0_base_bytes,
                                       verifications.c.fit_q8_0_bytes_per_token)
                                .order_by(verifications.c.id)).all()
    finally:
        engine.dispose()
    line = fit_line(table["estimates"], "q8_0")
    assert rows == [(33.0, line[0], line[1]), (None, None, None), (None, None, None),
                    (12.0, None, None)]
