"""Spans of time as people read them (pure)."""

from __future__ import annotations

from datetime import timedelta


def duration(span: timedelta) -> str:
    """``1h``, ``45m``, ``2d3h``, ``1h30m``, ``20s``: a span in whole seconds, in its
    largest unit and the one below it when that is not zero (``2h`` for two hours and
    five seconds: the rest is dropped)."""
    seconds = max(0, int(span.total_seconds()))
    counts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        counts.append((n, unit))
    first = next((i for i, (n, _) in enumerate(counts) if n), None)
    if first is None:
        return "0s"
    return "".join(f"{n}{unit}" for n, unit in counts[first:first + 2] if n)
