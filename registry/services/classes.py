"""Hardware classes (``ClassService``): named selectors over what workers are and can run.

A class is a name (``cpu``, ``cuda``, ``apple``) and a selector (``registry.capabilities``:
``{"accelerator": "cuda", "min_accelerator_memory": "16GiB"}``, ``{"os": "darwin",
"backend": "mlx"}``, ``{"labels": {"site": "lab2"}}``); a worker is of every class whose
selector its announced capabilities and labels satisfy, so one worker may serve several
classes. Site admins define them (REST ``/api/v1/classes``, ``assay class``); every change
is audited. ``GET /api/v1/workers`` names each worker's classes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from registry.capabilities import check_selector, matches
from registry.db.tables import hardware_classes, isoformat, utcnow
from registry.errors import NotFound, RequestInvalid
from registry.services import audit
from registry.services.common import Service

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class HardwareClass:
    name: str
    selector: dict
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict:
        return {"name": self.name, "selector": self.selector,
                "created_at": isoformat(self.created_at),
                "updated_at": isoformat(self.updated_at)}


def check_class_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RequestInvalid(f"class name {str(name)[:80]!r} must be lower case letters, "
                             "digits, - and _ (at most 64)")
    return name


def _class(row) -> HardwareClass:
    return HardwareClass(row.name, json.loads(row.selector), row.created_at, row.updated_at)


class ClassService(Service):
    def list(self) -> list[HardwareClass]:
        with self.db.read() as conn:
            rows = conn.execute(select(hardware_classes)
                                .order_by(hardware_classes.c.name)).all()
        return [_class(r) for r in rows]

    def get(self, name: str) -> HardwareClass:
        with self.db.read() as conn:
            row = conn.execute(select(hardware_classes)
                               .where(hardware_classes.c.name == name)).first()
        if row is None:
            raise NotFound(f"no hardware class {name[:80]!r}")
        return _class(row)

    def set(self, name: str, selector: object) -> HardwareClass:
        """Create or replace class ``name``; RequestInvalid says what is wrong."""
        check_class_name(name)
        try:
            checked = check_selector(selector)
        except ValueError as exc:
            raise RequestInvalid(f"selector of class {name!r}: {exc}") from None
        now, text = utcnow(), json.dumps(checked, sort_keys=True)
        with self.db.write() as conn:
            conn.execute(self.db.upsert(
                hardware_classes, ["name"], {"selector": text, "updated_at": now},
                name=name, selector=text, created_at=now, updated_at=now))
            audit.record(conn, "class.set", name, selector=checked)
        return self.get(name)

    def delete(self, name: str) -> None:
        with self.db.write() as conn:
            if not conn.execute(delete(hardware_classes)
                                .where(hardware_classes.c.name == name)).rowcount:
                raise NotFound(f"no hardware class {name[:80]!r}")
            audit.record(conn, "class.delete", name)

    def of(self, capabilities: dict, labels: dict,
           classes: list[HardwareClass] | None = None) -> list[str]:
        """The names of the classes a worker with these capabilities and labels is of."""
        found = self.list() if classes is None else classes
        return [c.name for c in found if matches(c.selector, capabilities, labels)]
