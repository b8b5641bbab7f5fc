"""Spans of time as people read them (pure)."""

from __future__ import annotations

from datetime import timedelta


def duration(span: timedelta) -> str:
    """``1h``, ``45m``, ``2d3h``, ``1h30m``, ``20s``: a span in whole seconds, in its two
    largest non-zero units (the rest dropped)."""
    seconds = max(0, int(span.total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts[:2]) or "0s"
