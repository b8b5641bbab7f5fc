"""Fixtures shared by every test package live in ``tests/support`` as pytest plugins."""

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.s3",
    "tests.support.models",
    "tests.support.assay_server",
]
