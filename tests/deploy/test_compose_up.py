"""``docker compose up``, without a Docker engine: the project's image is built from
``Dockerfile`` with buildah, and compose.yaml's services run from it as containers
(chroot isolation, on the host's network).

- The image's base is **a locally built stand-in for ``python:3.11-slim``** (Debian
  bookworm with Python 3.11, see ``tests/support/images.py``), given as the Dockerfile's
  ``BASE`` argument: there is no Docker Hub here. llama-cpp-python comes from the wheel
  this machine already built (a wheelhouse mounted into the build), not from a compile.
- ``migrate``, the first admin (``docker compose run --rm registry assay user add``), two
  ``registry`` replicas and one ``worker`` each run in a container of their own, with the
  command, environment and health check compose.yaml gives them. The ``.env`` sets only
  the bucket and each replica's public URL; the host names ``postgres`` and ``minio`` are
  pointed at PostgreSQL and an S3 server (moto standing in for MinIO) on loopback, and
  replicas listen on free loopback ports instead of 5000.
- Gemma 3 270M pushed through one replica with the ``assay`` CLI is verified by the
  containerised worker and pulled, byte for byte, through the other replica.

The images stay in the per-machine cache (keyed by their inputs); containers are removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy.engine import make_url

from tests.support import compose
from tests.support.buildah import Buildah, BuildahError, Container, Running
from tests.support.images import BuiltImage, assay_image
from tests.support.models import GEMMA_SHA256, sha256_file
from tests.support.processes import assay_command, free_port

# A cold build (stand-in base and image) takes minutes; a warm run about one.
pytestmark = pytest.mark.timeout(1800)
PASSWORD = "compose-admin-password"
MODEL = "team/gemma3:270m"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Buildah, BuiltImage]:
    buildah = Buildah.for_tests()
    try:
        return buildah, assay_image(buildah, tmp_path_factory.mktemp("image-build"))
    except BuildahError as exc:
        pytest.fail(str(exc), pytrace=False)


@dataclass
class Stack:
    """The containers of one compose project; ``down()`` removes them."""

    buildah: Buildah
    image: str
    logs_dir: Path
    project: str = field(default_factory=lambda: f"assay-compose-{uuid.uuid4().hex[:8]}")
    containers: list[Container] = field(default_factory=list)

    def container(self, service: str) -> Container:
        made = self.buildah.container(self.image, f"{self.project}-{service}")
        self.containers.append(made)
        return made

    def run_once(self, service: compose.Service, command: list[str] | None = None,
                 input: str | None = None) -> str:
        """``docker compose run --rm SERVICE [COMMAND]``: the output, or fail."""
        container = self.container(f"{service.name}-run-{len(self.containers)}")
        try:
            done = container.run(command or service.command, service.environment, input=input)
        finally:
            self.remove(container)
        assert done.returncode == 0, f"{service.name}: {done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def up(self, service: compose.Service, command: list[str], index: int) -> Running:
        container = self.container(f"{service.name}-{index}")
        return container.start(command, service.environment,
                               self.logs_dir / f"{service.name}-{index}.log")

    def remove(self, container: Container) -> None:
        container.remove()
        self.containers.remove(container)

    def down(self) -> None:
        """Remove every container, even when removing one of them fails."""
        failures = []
        for container in list(self.containers):
            try:
                self.remove(container)
            except BuildahError as exc:
                failures.append(str(exc))
        assert not failures, failures

    def logs(self) -> list[tuple[str, str]]:
        return [(f"container {r.container.name}", r.log()[-6000:])
                for c in self.containers for r in c.running]


def on_loopback(url: str, port: int, path: str | None = None) -> str:
    """``url`` with its host (a compose service name) replaced by 127.0.0.1:``port``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    netloc = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    return urlunsplit(parts._replace(netloc=netloc, path=path or parts.path))


def serve_on(command: list[str], port: int) -> list[str]:
    """compose's ``assay serve --host 0.0.0.0 --port 5000`` on 127.0.0.1:``port``."""
    argv = list(command)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    return argv


def with_hosts(service: compose.Service, database_url: str, s3_url: str) -> compose.Service:
    """The service with compose's ``postgres`` and ``minio`` hosts on loopback, and the
    verification profile the other non-verification tests use."""
    env = dict(service.environment)
    compose_db = make_url(env["ASSAY_DATABASE_URL"])
    ours = make_url(database_url)
    env["ASSAY_DATABASE_URL"] = compose_db.set(host=ours.host, port=ours.port,
                                               database=ours.database).render_as_string(
                                                   hide_password=False)
    env["ASSAY_S3_ENDPOINT_URL"] = on_loopback(env["ASSAY_S3_ENDPOINT_URL"],
                                               urlsplit(s3_url).port)
    env["ASSAY_DEFAULT_PROFILE"] = os.environ["ASSAY_DEFAULT_PROFILE"]
    return compose.Service(service.name, service.command, env, service.healthcheck)


def wait_healthy(container: Container, service: compose.Service, check: list[str],
                 running: Running, timeout: float = 120) -> None:
    """Run the service's compose health check in its container until it passes."""
    deadline = time.monotonic() + timeout
    while True:
        done = container.run(check, service.environment, timeout=30)
        if done.returncode == 0:
            return
        if running.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{container.name} never healthy: {done.stderr[-2000:]}\n"
                                 f"{running.log()[-4000:]}")
        time.sleep(1)


def cli(*args: str, env: dict, input: str | None = None) -> str:
    """The host's ``assay`` CLI, as a user runs it against the stack."""
    proc = subprocess.run([*assay_command(), *args], capture_output=True, text=True,
                          env=env, input=input, timeout=600)
    assert proc.returncode == 0, f"assay {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def stack(image, tmp_path):
    buildah, built = image
    made = Stack(buildah, built.name, tmp_path)
    try:
        yield made
    finally:
        made.down()


def test_compose_services_from_the_image_push_verify_pull(stack, postgres_server, s3_server,
                                                          gemma_gguf, tmp_path):
    # The .env: a bucket of this test's own; compose's defaults for everything else.
    dotenv = {"ASSAY_S3_BUCKET": f"assay-compose-{uuid.uuid4().hex[:12]}"}
    db_name = f"assay_compose_{uuid.uuid4().hex[:8]}"
    database_url = postgres_server.create_database(db_name)
    migrate = with_hosts(compose.service("migrate", dotenv), database_url,
                         s3_server.endpoint_url)
    user = make_url(migrate.environment["ASSAY_DATABASE_URL"])
    with postgres_server.connect() as conn:  # what the postgres image's POSTGRES_* create
        conn.execute(f"DO $$ BEGIN CREATE ROLE {user.username} LOGIN PASSWORD "
                     f"'{user.password}'; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute(f"ALTER DATABASE {db_name} OWNER TO {user.username}")
    s3_server.client().create_bucket(Bucket=dotenv["ASSAY_S3_BUCKET"])  # minio-init

    stack.run_once(migrate)
    with postgres_server.connect(db_name) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
    ports = [free_port(), free_port()]
    replicas = [with_hosts(compose.service("registry", {
        **dotenv, "ASSAY_PUBLIC_URL": f"http://127.0.0.1:{port}"}), database_url,
        s3_server.endpoint_url) for port in ports]
    assert replicas[0].environment["ASSAY_AUTH"] == "true"
    assert replicas[0].environment["ASSAY_WORKERS"] == "0"
    stack.run_once(replicas[0], ["assay", "user", "add", "root", "--admin", "--password-stdin"],
                   input=PASSWORD + "\n")

    servers = [stack.up(r, serve_on(r.command, port), i)
               for i, (r, port) in enumerate(zip(replicas, ports, strict=True))]
    worker_service = with_hosts(compose.service("worker", dotenv), database_url,
                                s3_server.endpoint_url)
    assert worker_service.command == ["assay", "worker", "--concurrency", "1"]
    worker = stack.up(worker_service, worker_service.command, 0)
    for server, replica, port in zip(servers, replicas, ports, strict=True):
        check = [part.replace("127.0.0.1:5000", f"127.0.0.1:{port}")
                 for part in replica.healthcheck]
        wait_healthy(server.container, replica, check, server)
    wait_healthy(worker.container, worker_service, worker_service.healthcheck, worker)

    a, b = (f"127.0.0.1:{port}" for port in ports)
    env = {**os.environ, "ASSAY_CONFIG_DIR": str(tmp_path / "client")}
    for registry in (a, b):
        cli("login", registry, "-u", "root", "--password-stdin", env=env, input=PASSWORD)
    cli("push", "-q", str(gemma_gguf), f"{a}/{MODEL}", env=env)
    state = json.loads(cli("status", "--wait", "--timeout", "600", "--json", f"{b}/{MODEL}",
                           env=env))
    assert state["status"] == "ready", state
    # The worker that claimed the job is the containerised one (<prefix>@<host>:<pid>:...).
    claimer = state["job"]["worker"]
    assert worker.owns(int(claimer.rsplit(":", 2)[1])), (claimer, worker.pid)

    pulled = tmp_path / "pulled"
    cli("pull", "-q", "-o", str(pulled), f"{b}/{MODEL}", env=env)
    [gguf] = pulled.glob("*.gguf")
    assert sha256_file(gguf) == GEMMA_SHA256 == sha256_file(gemma_gguf)
    on_a = json.loads(cli("status", "--json", f"{a}/{MODEL}", env=env))
    assert on_a["digest"] == state["digest"]
