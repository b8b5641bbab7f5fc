"""What an inbound payload asks for, whatever its format: ``Item``s in a ``Payload``.

Every format reads into these, so the service never sees a format's own shape. An item is
either a reference to verify or the reason it is ignored (and the answer says why).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.errors import RequestInvalid
from registry.services.remote.references import ModelRef

DISTRIBUTION, CLOUDEVENTS, PLAIN = "distribution", "cloudevents", "plain"
MAX_EVENTS = 1000


@dataclass
class Item:
    """One thing a payload asks for: a reference to verify, or why it is ignored."""

    source: str
    ref: ModelRef | None = None
    event: str | None = None  # the event's id, when it has one
    ignored: str | None = None
    media_type: str | None = None
    given: str | None = None  # the reference as given, for answers about ignored items

    def describe(self) -> dict:
        out: dict = {"source": self.source}
        if self.event is not None:
            out["event"] = self.event
        if self.ref is not None or self.given:
            out["reference"] = str(self.ref) if self.ref is not None else self.given
        return out


@dataclass
class Payload:
    format: str  # DISTRIBUTION | CLOUDEVENTS | PLAIN
    items: list[Item] = field(default_factory=list)


def bounded(events: list, what: str) -> None:
    """Refuse (400) a batch or envelope of more than ``MAX_EVENTS`` events."""
    if len(events) > MAX_EVENTS:
        raise RequestInvalid(f"{what} may hold at most {MAX_EVENTS} events")
