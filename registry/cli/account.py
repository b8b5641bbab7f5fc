"""``assay login|logout|key|token``: the signed-in user's credentials, Ollama keys and
personal access tokens on an assay registry (the work is in ``client.account``). Any
user's tokens, managed on the server, are ``assay user token`` (``registry.cli.users``).
"""

from __future__ import annotations

from pathlib import Path

import click

from client.account import (
    run_key_add,
    run_key_ls,
    run_key_rm,
    run_login,
    run_logout,
    run_token_add,
    run_token_ls,
    run_token_rm,
)
from registry.cli.group import Group, alias, command_at
from registry.cli.options import (
    expires_option,
    insecure_option,
    json_option,
    list_command,
    registry_option,
    remove_command,
    scope_option,
)


@click.command()
@registry_option(positional=True)
@click.option("-u", "--username", metavar="USER", help="User name [prompted on a terminal].")
@click.option("--password-stdin", is_flag=True,
              help="Read the password (or a personal access token) from stdin.")
@insecure_option
def login(registry, username, password_stdin, insecure) -> None:
    """Check credentials against REGISTRY (HOST[:PORT], default $ASSAY_REGISTRY, else
    127.0.0.1:5000) and store them for later commands (~/.config/assay/auth.json, mode
    0600; $ASSAY_CONFIG_DIR moves it). ASSAY_TOKEN, or ASSAY_USERNAME and ASSAY_PASSWORD,
    override the stored credentials; Docker's ~/.docker/config.json is the fallback."""
    run_login(registry, username, password_stdin, insecure)


@click.command()
@registry_option(positional=True)
@insecure_option
def logout(registry, insecure) -> None:
    """Forget the credentials stored for REGISTRY."""
    run_logout(registry, insecure)


@click.group(cls=Group)
def key() -> None:
    """Your Ollama public keys on an assay registry (with one registered, `ollama push`
    and `ollama pull` sign in as you)."""


@key.command(name="add")
@click.argument("pubkey_file", metavar="[PUBKEY_FILE]", required=False)
@registry_option()
@insecure_option
@json_option
def key_add(pubkey_file, registry, insecure, as_json) -> None:
    """Register PUBKEY_FILE (default ~/.ollama/id_ed25519.pub) for the logged-in user."""
    run_key_add(pubkey_file, registry, insecure, as_json)


key_ls = list_command(key, run_key_ls, "List your registered keys.")
key_rm = remove_command(key, run_key_rm, "Remove key ID.")


@click.group(cls=Group)
def token() -> None:
    """Your personal access tokens on an assay registry (for CI, scripts, ASSAY_TOKEN).
    Any user's tokens, on the server: `assay user token`."""


@token.command(name="add")
@click.argument("name")
@scope_option
@expires_option
@registry_option()
@insecure_option
@json_option
@click.option("--name", "server_token_name", hidden=True)
@click.option("--data-dir", type=click.Path(path_type=Path), hidden=True)
@click.pass_context
def token_add(ctx, name, scopes, expires_days, registry, insecure, as_json,
              server_token_name, data_dir) -> None:
    """Create a token called NAME and print it, alone on stdout (shown once)."""
    if data_dir is not None or server_token_name is not None:
        # The earlier server-side spelling, `assay token create USER --name N --data-dir D`
        # (now `assay user token add`), still works: scripts and fixtures use it.
        if server_token_name is None:
            raise click.UsageError("give the token's name with --name (or drop --data-dir "
                                   "to create your own token over the API)")
        ctx.invoke(command_at(ctx, "user", "token", "add"), user_name=name,
                   token_name=server_token_name, scopes=scopes, expires_days=expires_days,
                   data_dir=data_dir)
        return
    run_token_add(name, scopes, expires_days, registry, insecure, as_json)


token_ls = list_command(token, run_token_ls, "List your tokens (never their secrets).")
token_rm = remove_command(token, run_token_rm, "Revoke your token ID.")
alias(token, token_add, "create")
alias(token, token_rm, "revoke")
