"""Pytest plugin: a real PostgreSQL server for the test session.

``postgres_server`` (or ``start_postgres()`` outside pytest, e.g. in ``bench/``) runs
``initdb`` into a fresh temporary directory and starts the server with ``pg_ctl`` on a
free loopback port (fsync off: the data is thrown away). The
PostgreSQL tools refuse to run as root, and tests run as root here and in CI, so they are
run as the ``postgres`` user via ``runuser`` with the directory owned by that user.

Missing binaries make the fixture *fail*, never skip: a CI run that silently skipped
every PostgreSQL test would look green while testing nothing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port

PG_BINDIR = Path(os.environ.get("ASSAY_TEST_PG_BINDIR", "/usr/lib/postgresql/15/bin"))


@dataclass
class PostgresServer:
    port: int
    datadir: Path
    logfile: Path

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) of database ``dbname``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres"):
        """A psycopg connection in autocommit mode (close it yourself)."""
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                               dbname=dbname, autocommit=True)

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` (dropping any old one) and return its URL."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (fast shutdown, then signals) and remove its directory."""
        try:
            _stop(PG_BINDIR / "pg_ctl", self.datadir)
        finally:
            shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _as_postgres(cmd: list[str]) -> list[str]:
    # As root, switch to the postgres user; as anyone else, run the tools directly.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    res = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        raise RuntimeError(f"{what} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}\n{tail}")


def _postmaster_pid(datadir: Path) -> int | None:
    try:
        return int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def start_postgres() -> PostgresServer:
    """initdb into a fresh temporary directory and start PostgreSQL on a free loopback
    port; ``stop()`` it yourself (it removes the directory too). Raises RuntimeError
    with the reason when the binaries are missing or the server does not start."""
    initdb, pg_ctl = PG_BINDIR / "initdb", PG_BINDIR / "pg_ctl"
    missing = [str(p) for p in (initdb, pg_ctl) if not os.access(p, os.X_OK)]
    if missing:
        raise RuntimeError(f"PostgreSQL binaries not found: {', '.join(missing)}. Install "
                           "them (apt-get install postgresql-15) or set ASSAY_TEST_PG_BINDIR.")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise RuntimeError("running as root needs runuser (util-linux) to start PostgreSQL")

    # Not under pytest's tmp dir: that is mode 0700 for root, which postgres cannot enter.
    # Short path too: the Unix socket path (-k) must stay under ~100 characters.
    base = Path(tempfile.mkdtemp(prefix="assay-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    datadir, logfile = base / "data", base / "postgres.log"
    port = free_port()
    server = PostgresServer(port, datadir, logfile)
    try:
        _run([str(initdb), "-D", str(datadir), "-A", "trust", "-U", "postgres",
              "-E", "UTF8", "--no-sync"], "initdb")
        options = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200")
        _run([str(pg_ctl), "-D", str(datadir), "-o", options, "-l", str(logfile),
              "start", "-w", "-t", "60"], "pg_ctl start", logfile)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        server.stop()  # pg_ctl may have started it and then timed out
        raise RuntimeError(f"could not start PostgreSQL: {exc}") from None
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server on 127.0.0.1, shared by the whole test session."""
    try:
        server = start_postgres()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def _stop(pg_ctl: Path, datadir: Path) -> None:
    pid = _postmaster_pid(datadir)
    try:
        _run([str(pg_ctl), "-D", str(datadir), "stop", "-m", "fast", "-w", "-t", "30"],
             "pg_ctl stop")
        return
    except (RuntimeError, subprocess.TimeoutExpired):
        pass
    # pg_ctl could not stop it: SIGQUIT is PostgreSQL's immediate shutdown, SIGKILL the last resort.
    if pid is None:
        return
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
