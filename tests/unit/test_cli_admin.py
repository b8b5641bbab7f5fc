"""``assay user|robot|namespace|audit`` on the database directly, before any server ran."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from registry.app import build_service
from registry.cli import main
from registry.settings import Settings


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(main, [*args, "--data-dir", str(tmp_path)], input=input,
                             standalone_mode=False, catch_exceptions=True)

    invoke.data_dir = tmp_path
    return invoke


def test_first_admin_robot_and_roles_before_the_server_ever_started(run):
    r = run("user", "add", "root", "--admin", "--password-stdin", input="long-password\n")
    assert r.exception is None and "added admin user root" in r.output
    r = run("robot", "add", "ci", "--namespace", "team=write", "--scope", "pull",
            "--scope", "push:team")
    assert r.exception is None
    secret = r.output.strip()
    assert secret.startswith("assay_pat_")
    svc = build_service(Settings(data_dir=run.data_dir))
    robot = svc.access.by_token(secret)
    assert robot.name == "ci" and robot.is_robot
    assert robot.can("push", "team/app") and not robot.can("push", "other/app")
    assert svc.access.by_password("root", "long-password").is_admin
    assert svc.access.by_password("root", "wrong-password") is None
    r = run("user", "ls", "--json")
    assert {u["name"] for u in json.loads(r.output)} == {"root", "ci"}
    r = run("namespace", "show", "team", "--json")
    assert json.loads(r.output)["members"] == [{"user": "ci", "role": "write"}]
    r = run("audit", "--json")
    actions = [e["action"] for e in json.loads(r.output)]
    assert actions == ["token.create", "namespace.grant", "robot.add", "user.add"]
    assert all(e["actor"].startswith("local:") for e in json.loads(r.output))


@pytest.mark.parametrize("args, stdin, message", [
    (("user", "add", "bob", "--password-stdin"), "short\n", "at least 8 characters"),
    (("user", "add", "Bob!", "--password-stdin"), "long-password\n", "invalid user name"),
    (("user", "add", "bob", "--password-stdin"), "\n", "no password"),
    (("namespace", "grant", "team", "nobody", "write"), None, "no user 'nobody'"),
    (("user", "rm", "nobody"), None, "no user 'nobody'"),
])
def test_bad_input_is_one_clear_error(run, args, stdin, message):
    import click

    r = run(*args, input=stdin)
    assert isinstance(r.exception, click.ClickException), r.output
    assert message in r.exception.format_message()


def test_duplicate_user_is_refused_and_keeps_the_first(run):
    run("user", "add", "bob", "--password-stdin", input="first-password\n")
    r = run("user", "add", "bob", "--password-stdin", input="second-password\n")
    assert "exists already" in r.exception.format_message()
    svc = build_service(Settings(data_dir=run.data_dir))
    assert svc.access.by_password("bob", "first-password") is not None
