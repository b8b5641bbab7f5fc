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


@pytest.mark.slow  # argon2-hashed users made through the CLI
def test_first_admin_robot_and_roles_before_the_server_ever_started(run):
    r = run("user", "add", "root", "--admin", "--password-stdin", input="long-password\n")
    assert r.exception is None and "added admin user root" in r.output
    r = run("robot", "add", "ci", "--namespace", "team=write", "--scope", "pull",
            "--scope", "push:team")
    assert r.exception is None
    secret = r.output.strip()
    assert secret.startswith("assay_pat_")
    svc = build_service(Settings(data_dir=run.data_dir))
    robot = svc.identities.by_token(secret)
    assert robot.name == "ci" and robot.is_robot
    assert robot.can("push", "team/app") and not robot.can("push", "other/app")
    assert svc.identities.by_password("root", "long-password").is_admin
    assert svc.identities.by_password("root", "wrong-password") is None
    r = run("user", "ls", "--json")
    assert {u["name"] for u in json.loads(r.output)} == {"root", "ci"}
    r = run("namespace", "show", "team", "--json")
    assert json.loads(r.output)["members"] == [{"user": "ci", "role": "write"}]
    r = run("audit", "--json")
    actions = [e["action"] for e in json.loads(r.output)]
    assert actions == ["token.create", "namespace.grant", "robot.add", "user.add"]
    assert all(e["actor"].startswith("local:") for e in json.loads(r.output))


@pytest.mark.slow  # argon2-hashed users made through the CLI
@pytest.mark.parametrize("args, stdin, message", [
    (("user", "add", "bob", "--password-stdin"), "short\n", "at least 8 characters"),
    (("user", "add", "Bob!", "--password-stdin"), "long-password\n", "invalid user name"),
    (("user", "add", "bob", "--password-stdin"), "\n", "no password"),
    (("namespace", "grant", "team", "nobody", "write"), None, "no user 'nobody'"),
    (("user", "rm", "nobody"), None, "no user 'nobody'"),
    (("namespace", "quota", "team", "10XB"), None, "invalid size '10XB'"),
    (("namespace", "quota", "team", "5 apples"), None, "invalid size '5 apples'"),
    (("namespace", "quota", "Team!", "1GiB"), None, "invalid namespace"),
    (("namespace", "retention", "team", "--keep-tags", "0"), None, "at least 1"),
    (("namespace", "retention", "team", "--untagged-days", "x"), None, "'x' is not a whole number"),
    (("namespace", "retention", "team"), None, "give --keep-tags, --keep-ready, --protect"),
    (("namespace", "retention", "team", "--keep-ready", "0"), None, "at least 1"),
    (("namespace", "retention", "team", "--protect", "main,,v*"), None, "an empty pattern"),
    (("namespace", "retention", "team", "--protect", "a/b"), None, "is not a tag glob"),
])
def test_bad_input_is_one_clear_error(run, args, stdin, message):
    import click

    r = run(*args, input=stdin)
    assert isinstance(r.exception, click.ClickException), r.output
    assert message in r.exception.format_message()


@pytest.mark.slow  # argon2-hashed users made through the CLI
def test_duplicate_user_is_refused_and_keeps_the_first(run):
    run("user", "add", "bob", "--password-stdin", input="first-password\n")
    r = run("user", "add", "bob", "--password-stdin", input="second-password\n")
    assert "exists already" in r.exception.format_message()
    svc = build_service(Settings(data_dir=run.data_dir))
    assert svc.identities.by_password("bob", "first-password") is not None


@pytest.mark.parametrize("text, value", [
    ("10GiB", 10 * 2**30), ("500MB", 500_000_000), ("1.5 GiB", 3 * 2**29), ("1234", 1234),
    ("0", 0), ("2KiB", 2048), ("1kb", 1000),
])
def test_sizes_parse_as_bytes(text, value):
    from registry.services.quotas import parse_size

    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "-1", "ten", "10XB", "1e3", f"{2**63}"])
def test_bad_sizes_are_refused(text):
    from registry.services.quotas import parse_size

    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_quota_and_retention_settings_are_shown_cleared_and_audited(run):
    r = run("namespace", "quota", "team", "10GiB")
    assert r.exception is None and r.output == "quota of team: 10.0GiB (0B used)\n"
    r = run("namespace", "retention", "team", "--keep-tags", "3", "--untagged-days", "30")
    assert r.output == ("retention of team: keep the newest 3 tags per repository; "
                        "protected tags: latest; delete untagged manifests after 30 days\n")
    info = json.loads(run("namespace", "show", "team", "--json").output)
    assert (info["quota_bytes"], info["usage_bytes"], info["keep_tags"],
            info["untagged_days"]) == (10 * 2**30, 0, 3, 30)
    text = run("namespace", "show", "team").output
    assert "storage: 0B used of 10.0GiB" in text and "keep the newest 3 tags" in text
    run("namespace", "quota", "team", "none")
    r = run("namespace", "retention", "team", "--keep-tags", "none")
    assert "keep all tags per repository; protected tags: latest; delete untagged " \
        "manifests after 30 days" in r.output
    info = json.loads(run("namespace", "show", "team", "--json").output)
    assert (info["quota_bytes"], info["keep_tags"], info["untagged_days"]) == (None, None, 30)
    r = run("namespace", "retention", "team", "--keep-ready", "2", "--protect", "latest, main,v*")
    assert r.output == ("retention of team: keep the newest 2 ready tags (and those being "
                        "verified) per repository; protected tags: latest, main, v*; delete "
                        "untagged manifests after 30 days\n")
    r = run("namespace", "retention", "team", "--keep-tags", "5", "--protect", "none")
    assert "keep the newest 5 tags and the newest 2 ready tags (and those being verified) " \
        "per repository; protected tags: none;" in r.output
    info = json.loads(run("namespace", "show", "team", "--json").output)
    assert (info["keep_tags"], info["keep_ready"], info["protected_tags"]) == (5, 2, [])
    actions = [(e["action"], e["detail"]) for e in json.loads(run("audit", "--json").output)]
    assert actions == [
        ("namespace.retention", {"keep_tags": 5, "protected_tags": []}),
        ("namespace.retention", {"keep_ready": 2, "protected_tags": ["latest", "main", "v*"]}),
        ("namespace.retention", {"cleared": ["keep_tags"]}),
        ("namespace.quota", {"unlimited": True}),
        ("namespace.retention", {"keep_tags": 3, "untagged_days": 30}),
        ("namespace.quota", {"quota_bytes": 10 * 2**30}),
    ]


def _push(svc, name: str, tag: str) -> str:
    config = svc.uploads.put_bytes(name, json.dumps({"tag": tag}).encode())
    layer = svc.uploads.put_bytes(name, f"layer {tag}".encode())
    body = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": config, "size": len(json.dumps({"tag": tag}))},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": layer, "size": len(f"layer {tag}")}]}).encode()
    return svc.manifests.put(name, tag, body, None).digest


@pytest.mark.slow  # a fresh data directory pushed to, then swept by the CLI
def test_retention_dry_run_then_run(run):
    svc = build_service(Settings(data_dir=run.data_dir))
    for tag in ("v1", "v2", "v3"):
        _push(svc, "team/app", tag)
    run("namespace", "retention", "team", "--keep-tags", "1")
    r = run("retention", "--dry-run")
    assert r.exception is None
    assert r.output.splitlines() == [
        "would delete team/app:v2  (older than the newest 1 tags)",
        "would delete team/app:v1  (older than the newest 1 tags)",
        "2 tag(s) and 0 manifest(s) would be deleted",
        "2 manifest(s) would be left untagged and stay stored with their blobs: their "
        "namespace has no --untagged-days (`assay namespace retention NS --untagged-days D` "
        "deletes untagged manifests)"]
    report = json.loads(run("retention", "--dry-run", "--json").output)
    assert report["dry_run"] and [d["reference"] for d in report["deleted"]] == ["v2", "v1"]
    r = run("retention")
    assert r.output.splitlines()[-2:] == [
        "2 tag(s) and 0 manifest(s) deleted",
        "2 manifest(s) left untagged stay stored with their blobs: their namespace has no "
        "--untagged-days (`assay namespace retention NS --untagged-days D` deletes untagged "
        "manifests)"]
    assert svc.manifests.get("team/app", "v3").digest
    deletes = [e for e in json.loads(run("audit", "--json").output) if e["action"] == "delete"]
    assert [e["target"] for e in deletes] == ["team/app:v1", "team/app:v2"]
    assert all(e["actor"].startswith("local:") for e in deletes)
    assert run("retention").output == "0 tag(s) and 0 manifest(s) deleted\n"
