"""Pytest plugin: a real S3-speaking server (moto) in its own process, for the session.

``s3_server`` starts ``moto_server`` on a free loopback port and stops it by PID when the
session ends. The fake AWS credentials are set only in that process's environment, so
nothing in the test process silently picks them up: clients must be given them
(``S3Server.client()``, or ``settings_env`` for an assay process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, ServerProcess, free_port, wait_for_http


@dataclass
class S3Server:
    endpoint_url: str
    process: ServerProcess
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def client(self):
        """A boto3 S3 client for this server (path-style, as MinIO needs too)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}))

    @staticmethod
    def new_bucket() -> str:
        """A bucket name no other test uses (S3 names: lowercase, 3-63 characters)."""
        return f"assay-test-{uuid.uuid4().hex[:16]}"

    def settings_env(self, bucket: str) -> dict[str, str]:
        """``ASSAY_*`` variables pointing an assay process at this server and ``bucket``."""
        return {
            "ASSAY_STORAGE": "s3",
            "ASSAY_S3_BUCKET": bucket,
            "ASSAY_S3_ENDPOINT_URL": self.endpoint_url,
            "ASSAY_S3_ACCESS_KEY_ID": self.access_key,
            "ASSAY_S3_SECRET_ACCESS_KEY": self.secret_key,
            "ASSAY_S3_REGION": self.region,
        }


def _moto_command(port: int) -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    return [*base, "-H", "127.0.0.1", "-p", str(port)]


def start_s3(log_dir: Path) -> S3Server:
    """A moto S3 server process on a free 127.0.0.1 port, logging into ``log_dir``;
    ``process.stop()`` it yourself. Raises RuntimeError when it does not start."""
    port = free_port()
    log_path = log_dir / f"moto-{port}.log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(_moto_command(port), stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=REPO_ROOT, start_new_session=True)
    server = ServerProcess(proc, port, log_path)
    try:
        wait_for_http(f"{server.url}/moto-api/", 30.0, proc)
    except Exception as exc:
        server.kill()
        raise RuntimeError(f"moto_server did not start ({exc}):\n{server.log()[-4000:]}") \
            from None
    return S3Server(endpoint_url=server.url, process=server)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """A moto S3 server process on 127.0.0.1, shared by the whole test session."""
    try:
        server = start_s3(tmp_path_factory.mktemp("moto"))
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.process.stop()
