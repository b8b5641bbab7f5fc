"""Fixtures shared by every test package live in ``tests/support`` as pytest plugins.

In CI (``CI`` set) a skipped test fails the run: the real-model, PostgreSQL, S3 and
real-client tests must run, never silently fall away.
"""

import os

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.s3",
    "tests.support.models",
    "tests.support.mlx_models",
    "tests.support.assay_server",
]


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) skipped; skips are failures here", red=True)
        session.exitstatus = 1
