"""The API suite drives the ASGI app over HTTP against two stacks:

- ``sqlite-fs``: SQLite + filesystem store (the single-machine default);
- ``postgres-s3``: a real PostgreSQL server and a real S3-speaking server process.

Schemas are built with ``alembic upgrade head`` once per stack; each test then starts
from empty tables (a copy of the migrated SQLite file; TRUNCATE on PostgreSQL) and an
empty blob store (a fresh directory; a fresh key prefix on S3).
"""

from __future__ import annotations

import shutil
import uuid

import pytest
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from registry.app import create_app
from registry.db import migrate
from registry.db.tables import Base
from registry.settings import Settings
from tests.support.stacks import STACKS


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite-template") / "assay.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_api_url(postgres_server):
    url = postgres_server.create_database("assay_api")
    migrate(url)
    return url


@pytest.fixture(params=STACKS)
def settings(request, tmp_path) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if request.param == "sqlite-fs":
        shutil.copy(request.getfixturevalue("sqlite_template"), data_dir / "assay.db")
        return Settings(data_dir=data_dir, fsync=False, gc_grace_seconds=0, gate=False)
    url = request.getfixturevalue("postgres_api_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    s3 = request.getfixturevalue("s3_server")
    return Settings(data_dir=data_dir, database_url=url, storage="s3", s3_bucket="assay-api",
                    s3_prefix=f"{uuid.uuid4().hex}/", s3_endpoint_url=s3.endpoint_url,
                    s3_access_key_id=s3.access_key, s3_secret_access_key=s3.secret_key,
                    s3_region=s3.region, gc_grace_seconds=0, gate=False)


@pytest.fixture
def app(settings):
    return create_app(settings, run_migrations=False)


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://registry.test") as c:
        yield c


@pytest.fixture
def service(client):
    return client.app.state.registry


@pytest.fixture
def live_url(client):
    """The same app served by uvicorn on a free loopback port, for tests that need
    requests truly in flight at once (TestClient runs a streamed body on the app's loop).
    Shares ``client``'s service (database and store)."""
    import threading

    import uvicorn

    from tests.support.processes import free_port, wait_for_http

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port,
                                           lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_http(f"http://127.0.0.1:{port}/v2/")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
