"""Failed topology tests get the logs of every replica, worker and container they started
(any fixture value with a ``logs()`` method: ``Topology``, the compose test's ``Stack``)."""

from __future__ import annotations

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in (getattr(item, "funcargs", None) or {}).values():
            logs = getattr(value, "logs", None)
            if callable(logs):
                report.sections.extend(logs())
