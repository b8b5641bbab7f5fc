"""A real ``assay serve`` process for tests (pytest plugin).

``assay_server`` (function scope) and ``assay_server_module`` (module scope, for slow client
tests that share one server) start ``assay serve`` on 127.0.0.1 with a fresh data directory and
stop it by PID afterwards. When a test using one of them fails, the tail of the server log is
attached to the failure report. A server that died during the test fails the test too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import ServerProcess, start_assay

LOG_TAIL_CHARS = 6000
SERVER_FIXTURES = ("assay_server", "assay_server_module")


def _log_tail(server: ServerProcess) -> str:
    log = server.log()
    if len(log) > LOG_TAIL_CHARS:
        log = "...\n" + log[-LOG_TAIL_CHARS:]
    return log or "(empty log)"


def _start(data_dir) -> ServerProcess:
    try:
        return start_assay(data_dir)
    except Exception as exc:  # start_assay already includes the log tail
        pytest.fail(f"could not start assay serve: {exc}", pytrace=False)


def _finish(server: ServerProcess) -> None:
    exit_code = server.proc.poll()
    server.stop()
    if exit_code is not None:
        pytest.fail(
            f"assay serve (pid {server.pid}) exited with code {exit_code} during the test:\n"
            f"{_log_tail(server)}",
            pytrace=False,
        )


@pytest.fixture
def assay_server(tmp_path) -> Iterator[ServerProcess]:
    """A fresh ``assay serve`` for one test (data in ``tmp_path/data``)."""
    server = _start(tmp_path / "data")
    try:
        yield server
    finally:
        _finish(server)


@pytest.fixture(scope="module")
def assay_server_module(tmp_path_factory) -> Iterator[ServerProcess]:
    """One ``assay serve`` shared by every test of a module."""
    server = _start(tmp_path_factory.mktemp("assay-module") / "data")
    try:
        yield server
    finally:
        _finish(server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server log tail to the report of a failed test that used a server."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", None) or {}
    for name in SERVER_FIXTURES:
        server = funcargs.get(name)
        if isinstance(server, ServerProcess):
            report.sections.append(
                (f"{name} log tail (pid {server.pid}, {server.log_path})", _log_tail(server))
            )
