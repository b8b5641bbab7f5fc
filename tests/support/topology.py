"""The team deployment as real processes on loopback: what ``compose.yaml`` runs, without
Docker.

One PostgreSQL server and one S3 server (moto) hold all state; ``assay migrate`` runs once;
then any number of ``assay serve`` replicas (no in-process workers) and ``assay worker``
processes share them. Every process binds 127.0.0.1 on a free port and is stopped by PID
in ``close()``. Used by ``tests/deploy/test_replicas.py`` and ``bench/replicas.py``.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.postgres import PostgresServer
from tests.support.processes import ServerProcess, assay_command, start_assay
from tests.support.s3 import S3Server
from tests.support.workers import WorkerProcess, start_worker


@dataclass
class Topology:
    """Registry replicas and workers sharing one database and one bucket."""

    root: Path
    postgres: PostgresServer
    s3: S3Server
    database_url: str
    bucket: str
    env: dict[str, str] = field(default_factory=dict)
    registries: list[ServerProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)
    # One key sealing webhook secrets for every process, as compose passes it from .env.
    secrets_key: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())

    def settings_env(self) -> dict[str, str]:
        """The ``ASSAY_*`` variables every process of the deployment gets."""
        return {"ASSAY_DATABASE_URL": self.database_url, **self.s3.settings_env(self.bucket),
                "ASSAY_SECRETS_KEY": self.secrets_key, **self.env}

    def migrate(self) -> None:
        """``assay migrate`` once, as compose's one-shot ``migrate`` service does."""
        data = self.root / "migrate"
        data.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([*assay_command(), "migrate", "--data-dir", str(data)],
                              env={**os.environ, **self.settings_env()},
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"assay migrate failed:\n{proc.stdout}\n{proc.stderr}")

    def add_registry(self, env: dict | None = None) -> ServerProcess:
        """One more ``assay serve`` replica (``ASSAY_WORKERS=0``: workers run apart), with
        the readiness gate on, as in compose (``start_assay`` alone turns it off)."""
        data = self.root / f"registry-{len(self.registries)}"
        server = start_assay(data, env={"ASSAY_GATE": "true", **self.settings_env(),
                                        "ASSAY_WORKERS": "0", **(env or {})})
        self.registries.append(server)
        return server

    def add_worker(self, env: dict | None = None) -> WorkerProcess:
        """One more ``assay worker -c 1`` process."""
        data = self.root / f"worker-{len(self.workers)}"
        data.mkdir(parents=True, exist_ok=True)
        worker = start_worker(data, data / "worker.log", {**self.settings_env(), **(env or {})})
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        """Stop every worker and replica this topology started (not PostgreSQL or S3)."""
        for worker in self.workers:
            worker.stop()
        for server in self.registries:
            server.stop()

    def logs(self) -> list[tuple[str, str]]:
        return ([(f"registry {s.port} (pid {s.pid})", s.log()[-6000:]) for s in self.registries]
                + [(f"worker pid {w.pid}", w.log()[-6000:]) for w in self.workers])


def start_topology(root: Path, postgres: PostgresServer, s3: S3Server, *, registries: int = 2,
                   workers: int = 0, env: dict | None = None) -> Topology:
    """A fresh database and bucket on ``postgres`` and ``s3``, migrated once, then
    ``registries`` replicas and ``workers`` worker processes. ``close()`` it yourself."""
    name = f"assay_topo_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(name)
    bucket = S3Server.new_bucket()
    s3.client().create_bucket(Bucket=bucket)
    topo = Topology(root, postgres, s3, url, bucket, dict(env or {}))
    try:
        topo.migrate()
        for _ in range(registries):
            topo.add_registry()
        for _ in range(workers):
            topo.add_worker()
    except BaseException:
        topo.close()
        raise
    return topo
