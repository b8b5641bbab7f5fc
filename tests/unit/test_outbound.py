"""The outbound policy's judgments and its allowlist grammar (client.outbound)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from pydantic import ValidationError

from client.outbound import OutboundDenied, OutboundPolicy, Rule, parse_allowlist
from registry.settings import Settings

CALLERS, WEBHOOKS = OutboundPolicy.for_callers(), OutboundPolicy.for_webhooks()


@pytest.mark.parametrize(("address", "callers", "webhooks"), [
    ("8.8.8.8", True, True),
    ("2606:4700::1111", True, True),
    ("127.0.0.1", False, False),
    ("127.1.2.3", False, False),
    ("::1", False, False),
    ("::ffff:127.0.0.1", False, False),     # IPv4-mapped loopback
    ("0.0.0.0", False, False),
    ("::", False, False),
    ("169.254.169.254", False, False),      # metadata, link-local
    ("169.254.1.1", False, False),
    ("fe80::1", False, False),
    ("fd00:ec2::254", False, False),        # AWS metadata over IPv6
    ("100.100.100.200", False, False),      # Alibaba metadata
    ("168.63.129.16", False, False),        # Azure wire server: a public address
    ("224.0.0.1", False, False),
    ("10.1.2.3", False, True),              # private: webhooks to CI servers
    ("172.16.0.1", False, True),
    ("192.168.1.1", False, True),
    ("fd12::1", False, True),
    ("100.64.0.1", False, True),            # shared address space
    ("240.0.0.1", False, False),            # reserved
])
def test_default_judgments(address, callers, webhooks):
    ip = ipaddress.ip_address(address)
    assert (CALLERS.judge("h", 80, ip) is None) == callers
    assert (WEBHOOKS.judge("h", 80, ip) is None) == webhooks


def test_allowlist_grammar():
    assert parse_allowlist(" registry.internal:5000, 10.0.0.0/8 ,[::1]:9,127.0.0.1,Reg.Test.") \
        == (Rule(name="registry.internal", port=5000),
            Rule(network=ipaddress.ip_network("10.0.0.0/8")),
            Rule(network=ipaddress.ip_network("::1/128"), port=9),
            Rule(network=ipaddress.ip_network("127.0.0.1/32")),
            Rule(name="reg.test"))
    assert parse_allowlist(None) == parse_allowlist("") == ()
    for bad in ("host:0", "host:99999", "host:x", "10.0.0.0/33", "[::1]x", "a..b", "a/b/c",
                "under_score.test"):
        with pytest.raises(ValueError, match="ASSAY_OUTBOUND_ALLOW entry"):
            parse_allowlist(bad)


def test_allowlist_opens_names_addresses_and_ports():
    policy = OutboundPolicy.for_callers("registry.internal:5000,127.0.0.1:7000,10.0.0.0/8")
    loopback = ipaddress.ip_address("127.0.0.1")
    assert policy.judge("registry.internal", 5000, loopback) is None  # the name, trusted
    assert policy.judge("registry.internal", 5001, loopback) is not None
    assert policy.judge("other.internal", 7000, loopback) is None  # the address and port
    assert policy.judge("other.internal", 7001, loopback) is not None
    assert policy.judge("x", 1, ipaddress.ip_address("10.9.9.9")) is None
    assert policy.judge("x", 1, ipaddress.ip_address("::ffff:10.9.9.9")) is None


def test_resolution_refuses_when_every_address_is_refused():
    with pytest.raises(OutboundDenied, match="127.0.0.1 is a loopback address"):
        CALLERS.check("localhost", 80)
    with pytest.raises(OutboundDenied, match="loopback"):
        CALLERS.create_connection(("127.0.0.1", 9))
    with pytest.raises(socket.gaierror):
        CALLERS.check("no-such-host.invalid", 80)


def test_precheck_judges_addresses_without_dns():
    CALLERS.precheck("no-such-host.invalid", 80)  # names wait for the connection
    for host in ("127.0.0.1", "localhost", "[::1]", "LOCALHOST."):
        with pytest.raises(OutboundDenied):
            CALLERS.precheck(host, 80)
    OutboundPolicy.for_callers("127.0.0.1:80").precheck("localhost", 80)


def test_a_bad_allowlist_stops_the_process_with_its_entry(monkeypatch):
    monkeypatch.setenv("ASSAY_OUTBOUND_ALLOW", "registry.internal:5000,10.0.0.0/99")
    with pytest.raises(ValidationError, match="10.0.0.0/99"):
        Settings()
    monkeypatch.setenv("ASSAY_OUTBOUND_ALLOW", "registry.internal:5000")
    assert Settings().caller_policy.allow == (Rule(name="registry.internal", port=5000),)


@pytest.mark.slow  # runs the assay CLI as a process
def test_the_cli_names_a_bad_allowlist_in_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "registry.cli", "gc", "--data-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=60,
                          env={"ASSAY_OUTBOUND_ALLOW": "10.0.0.0/99", "PATH": "/usr/bin"})
    assert proc.returncode == 1, proc
    assert proc.stderr.strip() == (
        "error: ASSAY_OUTBOUND_ALLOW entry '10.0.0.0/99': not a network (expected "
        "NAME[:PORT], IP[:PORT], [IPv6][:PORT] or a CIDR network)")
