"""Fixtures shared by every test package live in ``tests/support`` as pytest plugins.

Marks say what a test needs (declared in ``pyproject.toml``): ``postgres`` and ``s3`` a real
server process, ``clients`` real registry clients, ``e2e`` real models pushed and verified,
``slow`` seconds of work (real models loaded, server processes, fuzzers). Whole directories and
the fixtures that start a server or load a real model are marked here, so a new test inherits
its mark; ``make test-fast`` runs what carries none of them.

In CI (``CI`` set) a skipped test fails the run: the real-model, PostgreSQL, S3 and
real-client tests must run, never silently fall away.

Verification profile: ``ASSAY_DEFAULT_PROFILE=smoke`` unless the environment says otherwise
(see below).
"""

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.s3",
    "tests.support.models",
    "tests.support.mlx_models",
    "tests.support.derived_mlx",
    "tests.support.assay_server",
    "tests.support.skopeo",
]

TESTS = Path(__file__).parent
# Tests that are not about verification run under the smoke-only profile: the built-in
# default measures perplexity, prompts and a run matrix, which would multiply the time of
# every test that waits for a model to become ready. Servers, workers and settings built by
# the tests inherit it; the verification tests ask for the real default themselves
# (``default_profile="default"`` or a profile set on their namespace).
os.environ.setdefault("ASSAY_DEFAULT_PROFILE", "smoke")
# Every test under these directories (relative to tests/) needs what the mark says.
DIRECTORY_MARKS = {"clients": "clients", "e2e": "e2e", "deploy": "slow", "web": "e2e"}
# A test that uses one of these fixtures, directly or through another fixture, starts a
# server process or loads a real model.
FIXTURE_MARKS = {
    "postgres_server": "postgres",
    "s3_server": "s3",
    "gemma_gguf": "slow",
    "mlx_model_dir": "slow",
    "mlx_model_dir_quantized": "slow",
    "mlx_model_dir_sharded": "slow",
    "derived_mlx": "slow",
    "assay_server": "slow",
    "assay_server_module": "slow",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = {FIXTURE_MARKS[f] for f in item.fixturenames if f in FIXTURE_MARKS}
        directory = item.path.relative_to(TESTS).parts[0]
        if directory in DIRECTORY_MARKS:
            names.add(DIRECTORY_MARKS[directory])
        for name in sorted(names):
            item.add_marker(getattr(pytest.mark, name))


@pytest.fixture(autouse=True)
def _marks_match_fixtures(request):
    """Fails a test that reached a marked fixture through ``request.getfixturevalue``
    (which collection cannot see) without carrying its mark: ``make test-fast`` would
    otherwise start servers or load models."""
    yield
    used = {FIXTURE_MARKS[name] for name in request.fixturenames if name in FIXTURE_MARKS}
    missing = sorted(used - {mark.name for mark in request.node.iter_markers()})
    if missing:
        pytest.fail(f"{request.node.nodeid} needs the mark(s) {', '.join(missing)}: it uses "
                    "their fixtures through getfixturevalue", pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) skipped; skips are failures here", red=True)
        session.exitstatus = 1
