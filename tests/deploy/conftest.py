"""Failed topology tests get the logs of every replica and worker they started."""

from __future__ import annotations

import pytest

from tests.support.topology import Topology


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in (getattr(item, "funcargs", None) or {}).values():
            if isinstance(value, Topology):
                report.sections.extend(value.logs())
