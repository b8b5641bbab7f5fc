"""``registry.access.refusals``: each refusal names the namespace, the action and the
role it needs, and whether the user, the token or an anonymous caller lacks it. The
texts are what clients print, so they are checked whole. Over HTTP (the 403/401 answers,
the ``X-Error-Message`` header of a HEAD, the token endpoint) see ``tests/api/test_auth.py``."""

from __future__ import annotations

import dataclasses

import pytest

from registry.access.permissions import ADMIN, DELETE, PULL, PUSH, Identity, parse_scopes
from registry.access.refusals import explain, site_admin

ALICE = Identity(name="alice", roles={"alice": "admin", "team": "write"}, via="password")
RITA = Identity(name="rita", roles={"rita": "admin", "team": "read"}, via="password")


def token(identity: Identity, name: str, *scopes: str) -> Identity:
    return dataclasses.replace(identity, scopes=tuple(parse_scopes(list(scopes))),
                               via="token", credential_name=name)


def test_user_without_any_role_in_the_namespace():
    why = explain(ALICE, PUSH, "other/gemma3")
    assert why.message == (
        "alice has no write role in namespace other (pushing other/gemma3 needs write); a "
        "namespace admin can grant it: assay namespace grant other alice write")
    assert why.lacking == "user"
    assert why.detail == {"namespace": "other", "repository": "other/gemma3",
                          "action": "push", "role_needed": "write", "user": "alice",
                          "role": None, "lacking": "user"}


def test_user_whose_role_is_too_low_says_what_they_have():
    assert explain(RITA, PUSH, "team/gemma3").message == (
        "rita has no write role in namespace team (pushing team/gemma3 needs write; rita "
        "has read); a namespace admin can grant it: assay namespace grant team rita write")
    assert explain(ALICE, DELETE, "team/gemma3").message == (
        "alice has no admin role in namespace team (deleting from team/gemma3 needs admin; "
        "alice has write); a namespace admin can grant it: assay namespace grant team alice "
        "admin")
    robot = Identity(name="ci", is_robot=True, roles={"team": "read"}, via="token",
                     scopes=(("pull", None), ("push", None)), credential_name="deploy")
    assert explain(robot, PUSH, "team/gemma3").message.startswith(
        "robot ci has no write role in namespace team (pushing team/gemma3 needs write; ci "
        "has read); a namespace admin can grant it: assay namespace grant team ci write")


def test_token_narrower_than_its_user():
    why = explain(token(ALICE, "ci", "pull"), PUSH, "team/gemma3")
    assert why.message == (
        "the token 'ci' (scope: pull) may not push team/gemma3; alice has write there: use "
        "a token with the push (or push:team) scope")
    assert why.lacking == "token"
    assert why.detail["token"] == "ci" and why.detail["token_scopes"] == ["pull"]


def test_token_limited_to_another_namespace():
    why = explain(token(ALICE, "team-only", "pull", "push:team"), PUSH, "alice/gemma3")
    assert why.message == (
        "the token 'team-only' (scopes: pull, push:team) may not push alice/gemma3; alice "
        "has admin there: use a token with the push (or push:alice) scope")


def test_user_and_token_both_short_names_the_role_first():
    why = explain(token(RITA, "reader", "pull"), PUSH, "team/gemma3")
    assert why.message == (
        "rita has no write role in namespace team (pushing team/gemma3 needs write; rita "
        "has read); a namespace admin can grant it: assay namespace grant team rita write; "
        "the token 'reader' (scope: pull) does not allow push there either")
    assert why.lacking == "user and token"


def test_anonymous_callers():
    anonymous = Identity(name=None)
    assert explain(anonymous, PULL, "team/gemma3").message == (
        "anonymous callers may not pull team/gemma3: pulling team/gemma3 needs the read "
        "role in namespace team; namespace team is not open to anonymous pull; sign in as a "
        "user who has it")
    open_pull = Identity(name=None, anonymous_namespaces=frozenset({"team"}))
    why = explain(open_pull, PUSH, "team/gemma3")
    assert why.message == (
        "anonymous callers may not push team/gemma3: pushing team/gemma3 needs the write "
        "role in namespace team; sign in as a user who has it")
    assert why.lacking == "anonymous"


def test_a_push_refused_on_its_pull_is_explained_as_the_push():
    """A Docker token asked for ``pull,push`` on a namespace the user has no role in:
    the first blob HEAD (a pull) is refused, and the message is about the push."""
    why = explain(ALICE, PULL, "other/gemma3", also={PULL, PUSH})
    assert why.message.startswith("alice has no write role in namespace other (pushing "
                                  "other/gemma3 needs write)")
    assert why.detail["action"] == "push"
    # Without the push asked for, it is the pull that is missing.
    assert explain(ALICE, PULL, "other/gemma3").message.startswith(
        "alice has no read role in namespace other (pulling other/gemma3 needs read)")


def test_namespace_administration_and_site_admin():
    assert explain(ALICE, ADMIN, "other", namespace=True).message == (
        "alice has no admin role in namespace other (administering namespace other needs "
        "admin); a namespace admin can grant it: assay namespace grant other alice admin")
    assert site_admin(ALICE, "GET /api/v1/users").message == (
        "alice is not a site admin (GET /api/v1/users needs one); a site admin can make "
        "them one: assay user admin alice")
    root = token(Identity(name="root", is_admin=True, via="password"), "ro", "pull")
    why = site_admin(root, "GET /api/v1/users")
    assert why.message == (
        "the token 'ro' (scope: pull) may not GET /api/v1/users; root is a site admin: use "
        "the password or a token with the admin scope")
    assert why.lacking == "token"


@pytest.mark.parametrize("message", ["x" * 5000, "\U0001f600" * 600, "a\r\nb" * 400, "ok"])
def test_the_error_header_is_bounded_and_cut_between_characters(message):
    from urllib.parse import unquote

    from registry.api.errors import ERROR_HEADER_MAX, error_header

    value = error_header(message)
    assert len(value) <= ERROR_HEADER_MAX
    assert value.isascii() and "\r" not in value and "\n" not in value
    assert message.startswith(unquote(value, errors="strict"))
    assert len(value) > ERROR_HEADER_MAX - 20 or value == "ok"  # cut near the bound
