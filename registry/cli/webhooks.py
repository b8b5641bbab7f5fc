"""``assay webhook add|ls|show|rm|deliveries|redeliver``: the outgoing webhooks of an assay
registry, managed over its REST API (the work is in ``client.webhooks``). The registry is
``-r/--registry`` (``registry.cli.options``); the earlier trailing REGISTRY argument
still works."""

from __future__ import annotations

import click

from client.webhooks import run_add, run_deliveries, run_ls, run_redeliver, run_rm, run_show
from registry.cli.group import Group
from registry.cli.options import (
    insecure_option,
    json_option,
    list_command,
    registry_option,
    remove_command,
)

subscription_id = click.argument("webhook_id", metavar="ID", type=click.IntRange(min=1))
registry = registry_option(unlisted=True)


@click.group(cls=Group)
def webhook() -> None:
    """Outgoing webhooks of an assay registry: signed events (push, tag, delete,
    verification.*) POSTed to a URL."""


@webhook.command(name="add")
@click.argument("url")
@registry
@click.option("--secret", help="Key of the X-Assay-Signature HMAC [default: a random one, "
                               "printed once, alone on stdout].")
@click.option("--event", "events", multiple=True, metavar="ACTION",
              type=click.Choice(["push", "delete", "tag", "verification.started",
                                 "verification.succeeded", "verification.failed",
                                 "verification.regressed"]),
              help="An event to send (repeatable): push, tag, delete, verification."
                   "{started,succeeded,failed,regressed} [default: every event].")
@click.option("--repository", metavar="GLOB", help="Only repositories matching this glob, "
                                                   "e.g. 'team/*'.")
@insecure_option
@json_option
def webhook_add(url, registry, secret, events, repository, insecure, as_json) -> None:
    """Subscribe URL to the registry's events."""
    run_add(url, registry, secret, events, repository, insecure, as_json)


webhook_ls = list_command(webhook, run_ls, "List the subscriptions, with counts of their "
                          "deliveries.", unlisted=True)


@webhook.command(name="show")
@subscription_id
@registry
@insecure_option
@json_option
def webhook_show(webhook_id, registry, insecure, as_json) -> None:
    """Show subscription ID: URL, events, repositories, counts of its deliveries."""
    run_show(webhook_id, registry, insecure, as_json)


webhook_rm = remove_command(webhook, run_rm, "Remove subscription ID (and its delivery log).",
                            unlisted=True)


@webhook.command(name="deliveries")
@subscription_id
@registry
@click.option("-n", "limit", type=click.IntRange(1, 100), default=20, show_default=True,
              help="How many, newest first.")
@insecure_option
@json_option
def webhook_deliveries(webhook_id, registry, limit, insecure, as_json) -> None:
    """Show the delivery log of subscription ID: status, attempts, HTTP codes."""
    run_deliveries(webhook_id, registry, limit, insecure, as_json)


@webhook.command(name="redeliver")
@subscription_id
@click.argument("delivery_id", metavar="DELIVERY", type=click.IntRange(min=1))
@registry
@insecure_option
def webhook_redeliver(webhook_id, delivery_id, registry, insecure) -> None:
    """Send delivery DELIVERY of subscription ID again."""
    run_redeliver(webhook_id, delivery_id, registry, insecure)
