"""What every benchmark does around its measurements: write the results file, stop what
it started, and turn a failed run into one line and exit status 1."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class BenchError(RuntimeError):
    """A request did not get the answer the benchmark needs."""


def write_results(name: str, results: dict, *suffixes: str) -> Path:
    """Write ``results`` to ``bench/results/<name>-<today>[-<suffix>...].json`` (empty
    suffixes are left out) and say where."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = "-".join([dt.date.today().isoformat(), *(s for s in suffixes if s)])
    out = RESULTS_DIR / f"{name}-{stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {out.relative_to(RESULTS_DIR.parents[1])}")
    return out


def stop_all(stops: Iterable[Callable[[], object] | None]) -> None:
    """Call every stop function (None entries are skipped); one failing does not keep
    the others from running."""
    for stop in stops:
        if stop is None:
            continue
        try:
            stop()
        except Exception as exc:
            print(f"could not stop {stop}: {exc}", file=sys.stderr)


def run(main: Callable[[], int]) -> None:
    """The ``__main__`` of a benchmark: exit with ``main()``'s status, or 1 and one
    ``BENCHMARK FAILED`` line when it raises BenchError."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
