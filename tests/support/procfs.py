"""Process lookups for the verifier tests (Linux ``/proc``)."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after ``pid (comm)``: state, ppid, pgrp, session..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def verifier_children() -> list[int]:
    """PIDs of live (non-zombie) ``verifier.child`` processes started by this process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        live = fields and fields[0] != "Z" and int(fields[1]) == os.getpid()
        if live and b"verifier.child" in cmdline:
            found.append(int(entry))
    return found


def session_members(sid: int) -> list[int]:
    """PIDs of every process (zombies included) in session ``sid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields and int(fields[3]) == sid:
            found.append(int(entry))
    return found
