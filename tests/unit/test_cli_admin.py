"""``assay user|robot|namespace|audit|gc|scrub|retention`` on the database directly, before
any server ran: what they print, where they say they act, and what they refuse."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from registry.app import build_service
from registry.cli import main
from registry.settings import Settings


def invoker(data_dir, *extra):
    """``run(*args, input=None)``: ``assay ARGS --data-dir DATA_DIR EXTRA`` in-process."""
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(main, [*args, "--data-dir", str(data_dir), *extra], input=input,
                             standalone_mode=False, catch_exceptions=True)

    invoke.data_dir = data_dir
    return invoke


@pytest.fixture
def run(tmp_path):
    """On a database made by `assay migrate`, as where a registry has run."""
    assert invoker(tmp_path)("migrate").exception is None
    return invoker(tmp_path)


@pytest.mark.slow  # argon2-hashed users made through the CLI
def test_first_admin_robot_and_roles_before_the_server_ever_started(tmp_path):
    data_dir = tmp_path / "data"
    run = invoker(data_dir)
    r = run("user", "add", "root", "--admin", "--password-stdin", "--init",
            input="long-password\n")
    assert r.exception is None and "added admin user root" in r.stdout
    r = run("robot", "add", "ci", "--namespace", "team=write", "--scope", "pull",
            "--scope", "push:team")
    assert r.exception is None
    secret = r.stdout.strip()  # alone on stdout, for $(...)
    assert secret.startswith("assay_pat_")
    assert r.stderr.splitlines()[-1] == (
        'added robot ci, write in team; token 1 "initial" (pull,push:team; expires never); '
        "save it now: it is shown only once")
    svc = build_service(Settings(data_dir=data_dir))
    robot = svc.identities.by_token(secret)
    assert robot.name == "ci" and robot.is_robot
    assert robot.can("push", "team/app") and not robot.can("push", "other/app")
    assert svc.identities.by_password("root", "long-password").is_admin
    assert svc.identities.by_password("root", "wrong-password") is None
    assert [u["name"] for u in json.loads(run("user", "ls", "--json").stdout)] == ["root"]
    robots = json.loads(run("robot", "ls", "--json").stdout)
    assert [(r["name"], r["roles"]) for r in robots] == [("ci", {"team": "write"})]
    r = run("namespace", "show", "team", "--json")
    assert json.loads(r.stdout)["members"] == [{"user": "ci", "role": "write"}]
    r = run("audit", "--json")
    actions = [e["action"] for e in json.loads(r.stdout)]
    assert actions == ["token.create", "namespace.grant", "robot.add", "user.add"]
    assert all(e["actor"].startswith("local:") for e in json.loads(r.stdout))


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
    assert r.exception is None and r.stdout == "quota of team: 10.0GiB (0B used)\n"
    r = run("namespace", "retention", "team", "--keep-tags", "3", "--untagged-days", "30")
    assert r.stdout == ("retention of team: keep the newest 3 tags per repository; "
                        "protected tags: latest; delete untagged manifests after 30 days\n")
    info = json.loads(run("namespace", "show", "team", "--json").stdout)
    assert (info["quota_bytes"], info["usage_bytes"], info["keep_tags"],
            info["untagged_days"]) == (10 * 2**30, 0, 3, 30)
    text = run("namespace", "show", "team").output
    assert "storage: 0B used of 10.0GiB" in text and "keep the newest 3 tags" in text
    run("namespace", "quota", "team", "none")
    r = run("namespace", "retention", "team", "--keep-tags", "none")
    assert "keep all tags per repository; protected tags: latest; delete untagged " \
        "manifests after 30 days" in r.output
    info = json.loads(run("namespace", "show", "team", "--json").stdout)
    assert (info["quota_bytes"], info["keep_tags"], info["untagged_days"]) == (None, None, 30)
    r = run("namespace", "retention", "team", "--keep-ready", "2", "--protect", "latest, main,v*")
    assert r.stdout == ("retention of team: keep the newest 2 ready tags (and those being "
                        "verified) per repository; protected tags: latest, main, v*; delete "
                        "untagged manifests after 30 days\n")
    r = run("namespace", "retention", "team", "--keep-tags", "5", "--protect", "none")
    assert "keep the newest 5 tags and the newest 2 ready tags (and those being verified) " \
        "per repository; protected tags: none;" in r.output
    info = json.loads(run("namespace", "show", "team", "--json").stdout)
    assert (info["keep_tags"], info["keep_ready"], info["protected_tags"]) == (5, 2, [])
    actions = [(e["action"], e["detail"]) for e in json.loads(run("audit", "--json").stdout)]
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
    assert r.stdout.splitlines() == [
        "would delete team/app:v2  (older than the newest 1 tags)",
        "would delete team/app:v1  (older than the newest 1 tags)",
        "2 tag(s) and 0 manifest(s) would be deleted",
        "2 manifest(s) would be left untagged and stay stored with their blobs: their "
        "namespace has no --untagged-days (`assay namespace retention NS --untagged-days D` "
        "deletes untagged manifests)"]
    report = json.loads(run("retention", "--dry-run", "--json").stdout)
    assert report["dry_run"] and [d["reference"] for d in report["deleted"]] == ["v2", "v1"]
    r = run("retention")
    assert r.stdout.splitlines()[-2:] == [
        "2 tag(s) and 0 manifest(s) deleted",
        "2 manifest(s) left untagged stay stored with their blobs: their namespace has no "
        "--untagged-days (`assay namespace retention NS --untagged-days D` deletes untagged "
        "manifests)"]
    assert svc.manifests.get("team/app", "v3").digest
    deletes = [e for e in json.loads(run("audit", "--json").stdout) if e["action"] == "delete"]
    assert [e["target"] for e in deletes] == ["team/app:v1", "team/app:v2"]
    assert all(e["actor"].startswith("local:") for e in deletes)
    assert run("retention").stdout == "0 tag(s) and 0 manifest(s) deleted\n"


# ---- where admin commands act --------------------------------------------------------

NO_DATABASE = ("no database at {path}; run this where the registry runs, set ASSAY_DATA_DIR "
               "or ASSAY_DATABASE_URL, or pass --init to create one")


@pytest.mark.parametrize("args", [
    ("user", "ls"), ("user", "add", "root", "--admin", "--password-stdin"),
    ("robot", "add", "ci"), ("user", "token", "ls", "root"), ("namespace", "ls"),
    ("namespace", "quota", "team", "1GiB"), ("audit",), ("gc",), ("scrub",), ("retention",)])
def test_admin_commands_create_no_database_unless_asked(tmp_path, args):
    wrong = tmp_path / "elsewhere" / "data"
    r = invoker(wrong)(*args, input="long-password\n")
    assert isinstance(r.exception, click.ClickException), r.output
    path = wrong.resolve() / "assay.db"
    assert r.exception.format_message() == NO_DATABASE.format(path=path)
    assert r.stderr == f"database: sqlite:///{path}\n"
    assert not (tmp_path / "elsewhere").exists()  # nothing made, not even the directory


def test_each_admin_command_says_which_database_it_used(run):
    for args in (("namespace", "ls"), ("audit",), ("gc", "--dry-run"), ("retention",)):
        r = run(*args)
        assert r.exception is None, r.output
        assert r.stderr.splitlines()[0] == \
            f"database: sqlite:///{run.data_dir.resolve()}/assay.db", args


def test_a_database_url_is_said_with_its_password_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_DATABASE_URL",
                       "postgresql+psycopg://assay:s3cret-pw@127.0.0.1:9/assay")
    r = invoker(tmp_path)("audit")
    assert r.exception is not None  # nothing listens on port 9
    assert r.stderr.splitlines()[0] == "database: postgresql+psycopg://assay:***@127.0.0.1:9/assay"
    assert "s3cret-pw" not in r.output


def test_migrate_creates_the_database_as_before(tmp_path):
    r = invoker(tmp_path / "new")("migrate")
    assert r.exception is None
    path = (tmp_path / "new" / "assay.db").resolve()
    assert r.stderr == f"database: sqlite:///{path}\n"
    assert r.stdout.startswith("database schema upgraded from empty to ")
    assert path.exists()


def test_no_users_warning_names_the_data_directory(tmp_path, caplog):
    from starlette.testclient import TestClient

    from registry.app import create_app

    with caplog.at_level("WARNING", logger="registry.app"), \
            TestClient(create_app(Settings(data_dir=tmp_path, auth=True))):
        pass
    (warning,) = [r.getMessage() for r in caplog.records if "no users" in r.getMessage()]
    assert warning == (
        "auth is on but there are no users: add one with `assay user add NAME --admin "
        f"--password-stdin --data-dir {tmp_path.resolve()}` (the database "
        f"sqlite:///{tmp_path.resolve()}/assay.db)")


# ---- one grammar: add|ls|rm|show, tables with headers, secrets shown once -------------

@pytest.mark.slow  # argon2-hashed users made through the CLI
def test_users_robots_and_tokens_speak_one_grammar(run):
    run("user", "add", "alice", "--password-stdin", input="long-password\n")
    run("robot", "add", "ci", "--namespace", "team=read")
    r = run("user", "token", "add", "alice", "--name", "laptop", "--scope", "pull")
    secret = r.stdout.strip()
    assert r.stdout == secret + "\n" and secret.startswith("assay_pat_")
    assert r.stderr.splitlines()[-1] == ('token 2 "laptop" of alice (pull; expires never); '
                                         "save it now: it is shown only once")
    assert run("user", "ls").stdout.splitlines()[0].split() == ["NAME", "SITE", "ADMIN",
                                                                "CREATED"]
    assert run("robot", "ls").stdout.splitlines()[0].split() == ["NAME", "ROLES", "CREATED"]
    tokens = run("user", "token", "ls", "alice").stdout.splitlines()
    assert tokens[0].split() == ["ID", "NAME", "PREFIX", "SCOPES", "EXPIRES", "LAST", "USED"]
    assert tokens[1].split()[:2] == ["2", "laptop"] and secret not in "\n".join(tokens)
    assert json.loads(run("user", "token", "ls", "alice", "--json").stdout)[0]["name"] == \
        "laptop"
    shown = run("robot", "show", "ci").stdout.splitlines()
    assert shown[:2] == [shown[0], "roles: team=read"] and shown[0].startswith("ci (robot)")
    assert shown[2].split()[:2] == ["ID", "NAME"] and shown[3].split()[1] == "initial"
    assert json.loads(run("user", "show", "alice", "--json").stdout)["tokens"][0]["id"] == 2
    assert run("namespace", "ls").stdout.splitlines() == [
        "NAMESPACE  MEMBERS  ANONYMOUS PULL  USED  QUOTA", "team       1        off  "
        "           0B    -"]
    assert run("audit").stdout.splitlines()[0].split() == ["AT", "ACTOR", "ACTION", "TARGET",
                                                           "DETAIL"]

    # Each group keeps to its kind; the earlier verbs still work, unlisted.
    for args, message in [(("robot", "rm", "alice"), "alice is a user, not a robot"),
                          (("robot", "token", "add", "alice", "--name", "x"),
                           "alice is a user, not a robot"),
                          (("user", "show", "ci"), "ci is a robot, not a user"),
                          (("robot", "add", "bot", "--namespace", "team=owner"),
                           "expected NS=ROLE, ROLE one of read, write, admin")]:
        r = run(*args)
        assert isinstance(r.exception, click.ClickException), r.output
        assert message in r.exception.format_message()
    assert run("user", "token", "create", "alice", "--name", "old").stdout.startswith(
        "assay_pat_")
    assert run("user", "token", "revoke", "alice", "3").stdout == "revoked token 3 of alice\n"
    assert run("robot", "token", "rm", "ci", "1").stdout == "revoked token 1 of ci\n"
    assert run("robot", "rm", "ci").stdout == "removed robot ci\n"
    assert json.loads(run("robot", "ls", "--json").stdout) == []  # bot was never made
    help_text = CliRunner().invoke(main, ["user", "token", "--help"]).output
    assert "add" in help_text and "create" not in help_text and "revoke" not in help_text
