"""Network isolation for the verification child: ``isolate_network() -> Isolation``.

A model file is untrusted input, and loading it runs a large C++ parser (and compiles the
model's Jinja chat template in llama-cpp-python). The child therefore cuts itself off the
network before it loads anything, by moving into a new, empty network namespace: no
interfaces but a loopback that is down, so every connection fails at once ("Network is
unreachable"), to the internet, to the registry's own database or S3, and to anything
listening on 127.0.0.1 of the host.

How, in order (Linux only):

1. ``unshare(CLONE_NEWNET)``: needs ``CAP_SYS_ADMIN`` (root outside a locked-down
   container);
2. ``unshare(CLONE_NEWUSER | CLONE_NEWNET)``: unprivileged, where the kernel allows user
   namespaces (Debian 12, Ubuntu, Fedora do by default). The process keeps its own uid and
   gid inside (a one-to-one map), so file access is unchanged; it gains no privilege outside.

``unshare`` is ``os.unshare`` where Python has it (3.12+), else libc's through ``ctypes``.
It must run while the process is single-threaded (the kernel refuses ``CLONE_NEWUSER`` in a
multi-threaded process), which is why the child calls it first thing, before any backend is
imported, and why it is not a ``preexec_fn`` in the (threaded) worker.

When neither works (macOS, a container without the capability and with user namespaces
disabled or filtered by seccomp) the child runs anyway, and ``Isolation`` says so and why;
``verify`` records it in the report (``network_isolated``, ``sandbox``) and logs a warning.
Isolation is never silently missing. The other limits (time, memory, own process group,
scrubbed environment, death with the parent) apply either way.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Isolation:
    """The outcome: ``network_isolated`` and one line saying how, or why not."""

    network_isolated: bool
    detail: str


def _unshare(flags: int) -> None:
    unshare = getattr(os, "unshare", None)
    if unshare is not None:
        unshare(flags)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _map_own_ids(uid: int, gid: int) -> None:
    """Inside a new user namespace: keep the same uid and gid (else they read 65534)."""
    with contextlib.suppress(OSError):
        _write("/proc/self/setgroups", "deny")  # required before an unprivileged gid_map
    with contextlib.suppress(OSError):
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
    with contextlib.suppress(OSError):
        _write("/proc/self/gid_map", f"{gid} {gid} 1")


def isolate_network() -> Isolation:
    """Move this (single-threaded) process into a new network namespace. Never raises."""
    if not sys.platform.startswith("linux"):
        return Isolation(False, f"not isolated: no network namespaces on {sys.platform}")
    failures = []
    try:
        _unshare(CLONE_NEWNET)
        return Isolation(True, "network namespace (unshare CLONE_NEWNET)")
    except (OSError, AttributeError) as exc:
        failures.append(f"unshare(CLONE_NEWNET): {_why(exc)}")
    uid, gid = os.getuid(), os.getgid()
    try:
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    except (OSError, AttributeError) as exc:
        failures.append(f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {_why(exc)}")
        return Isolation(False, "not isolated: " + "; ".join(failures))
    _map_own_ids(uid, gid)
    return Isolation(True, "user and network namespaces (unshare CLONE_NEWUSER|CLONE_NEWNET)")


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"
