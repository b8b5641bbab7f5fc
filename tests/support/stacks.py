"""The two stacks the API suite runs on, as pytest parameters of the ``settings`` fixture.

``sqlite-fs`` (SQLite + filesystem store) needs nothing running; ``postgres-s3`` starts a real
PostgreSQL server and a real S3-speaking server process, so it carries the ``postgres`` and
``s3`` marks: ``-m "not (postgres or s3)"`` leaves exactly the server-free cases.
"""

from __future__ import annotations

import pytest

SQLITE_FS = pytest.param("sqlite-fs", id="sqlite-fs")
POSTGRES_S3 = pytest.param("postgres-s3", id="postgres-s3",
                           marks=[pytest.mark.postgres, pytest.mark.s3])
STACKS = [SQLITE_FS, POSTGRES_S3]

# The databases of the tests that need no blob store: SQLite, and a real PostgreSQL server.
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
