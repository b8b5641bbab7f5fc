"""A real ``assay serve`` with access control on (``ASSAY_AUTH=1``) and its identities, made
with the real ``assay`` CLI on the same data directory before the first start, as an operator
would (the commands run one after another in one interpreter, see ``run_admin_batch``). Every
server started here is stopped by PID.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, start_assay

# The ``assay`` console script installed next to the interpreter that runs the tests.
ASSAY = Path(sys.executable).with_name("assay")

AUTH_PASSWORDS = {"root": "root-password-1", "wanda": "wanda-password-1",
                  "rita": "rita-password-1", "otto": "otto-password-1"}


@dataclass
class AuthRegistry:
    """A real ``assay serve`` with ``ASSAY_AUTH=1`` and its identities, all made with the
    real CLI on the same data directory: root (site admin), wanda (write in ``team``),
    rita (read in ``team``), otto (no role anywhere), robot ``ci`` (write in ``team``,
    its token in ``robot_token``) and wanda's personal access tokens."""

    server: ServerProcess
    data_dir: Path
    robot_token: str = ""
    wanda_token: str = ""  # pull and push
    wanda_pull_token: str = ""  # --scope pull
    passwords: dict = field(default_factory=lambda: dict(AUTH_PASSWORDS))

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host_port(self) -> str:
        return self.server.host_port

    def creds(self, user: str) -> str:
        """``user:password`` as skopeo's ``--creds`` takes it."""
        return f"{user}:{self.passwords[user]}"

    def auth(self, user: str) -> tuple[str, str]:
        """httpx Basic auth for ``user``."""
        return user, self.passwords[user]

    def assay(self, *args: str, stdin: str | None = None) -> str:
        """Run the real ``assay`` admin CLI on this registry's data directory."""
        return run_admin_cli(self.data_dir, *args, stdin=stdin)


def run_admin_cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    cmd = [str(ASSAY), *args, "--data-dir", str(data_dir)]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ASSAY_WORKERS": "0"})
    assert proc.returncode == 0, (f"{' '.join(cmd)} exited {proc.returncode}:\n"
                                  f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc.stdout


# Runs admin commands in one interpreter, each through the real ``assay`` command group
# (``registry.cli.main``) exactly as the console script does, so the setup pays the
# registry's import once instead of ~2 s per command. Reads ``[[args, stdin], ...]`` as
# JSON on stdin and prints each command's stdout as a JSON list; ``@token`` in args stands
# for the server-side token commands: ``assay user token`` (``assay token`` is the client's
# own tokens on a running registry); older trees had them as ``assay token``.
_ADMIN_BATCH = r"""
import json, sys
from click.testing import CliRunner
from registry.cli import main
runner = CliRunner()
group = ["user", "token"] if runner.invoke(main, ["user", "token", "--help"]).exit_code == 0 \
    else ["token"]
outputs = []
for args, stdin in json.load(sys.stdin):
    args = [part for arg in args for part in (group if arg == "@token" else [arg])]
    result = runner.invoke(main, args, input=stdin)
    if result.exit_code:
        sys.exit(f"assay {' '.join(args)} exited {result.exit_code}:\nstdout: {result.stdout}"
                 f"\nstderr: {result.stderr}\nexception: {result.exception!r}")
    outputs.append(result.stdout)
print(json.dumps(outputs))
"""


def run_admin_batch(data_dir: Path, commands: list[tuple[list[str], str | None]]) -> list[str]:
    """Run admin commands (``args``, ``stdin``) on ``data_dir`` in order, in one process;
    their stdouts. A failing command fails with its output; later ones do not run."""
    batch = [([*args, "--data-dir", str(data_dir)], stdin) for args, stdin in commands]
    proc = subprocess.run([sys.executable, "-c", _ADMIN_BATCH], input=json.dumps(batch),
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ASSAY_WORKERS": "0"})
    assert proc.returncode == 0, f"admin commands failed ({proc.returncode}):\n{proc.stderr}"
    return json.loads(proc.stdout.splitlines()[-1])


def start_auth_registry(data_dir: Path, env: dict | None = None) -> AuthRegistry:
    """Make the identities with the CLI (before the first start, as an operator would),
    then start ``assay serve`` with ``ASSAY_AUTH=1`` on a free loopback port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    commands: list[tuple[list[str], str | None]] = [(["migrate"], None)]
    for name, password in AUTH_PASSWORDS.items():
        commands.append((["user", "add", name, "--password-stdin",
                          *(["--admin"] if name == "root" else [])], password + "\n"))
    commands += [
        (["namespace", "grant", "team", "wanda", "write"], None),
        (["namespace", "grant", "team", "rita", "read"], None),
        (["robot", "add", "ci", "--namespace", "team=write"], None),
        (["@token", "create", "wanda", "--name", "laptop"], None),
        (["@token", "create", "wanda", "--name", "ro", "--scope", "pull"], None),
    ]
    *_, robot, token, pull_token = (out.strip() for out in run_admin_batch(data_dir, commands))
    try:
        server = start_assay(data_dir, env={"ASSAY_AUTH": "1", **(env or {})})
    except Exception as exc:  # start_assay already includes the log tail
        pytest.fail(f"could not start assay serve with auth on: {exc}", pytrace=False)
    return AuthRegistry(server, data_dir, robot, token, pull_token)


def stop_auth_registry(registry: AuthRegistry) -> None:
    """Stop by PID; a server that died while the tests ran fails them."""
    exit_code = registry.server.proc.poll()
    registry.server.stop()
    if exit_code is not None:
        pytest.fail(f"assay serve (pid {registry.server.pid}) exited with code {exit_code}:\n"
                    f"{registry.server.log()[-6000:]}", pytrace=False)
