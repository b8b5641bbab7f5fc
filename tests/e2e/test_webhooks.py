"""End to end: a real receiver subscribed with ``assay webhook add`` gets signed events
from real processes (``assay serve`` with one worker, whose delivery thread POSTs them)
when the real Gemma GGUF is pushed and verified."""

from __future__ import annotations

from tests.support.receiver import Receiver
from tests.support.workers import digest_from_push

SECRET = "e2e-webhook-secret-0123456789"
EVENTS = ("push", "verification.started", "verification.succeeded")


def test_signed_push_and_verification_events_arrive(harness, cli, gemma_gguf):
    receiver = Receiver().start()
    try:
        # The receiver is on loopback, where webhooks go only if the operator allows it.
        server = harness.server({"ASSAY_OUTBOUND_ALLOW": f"127.0.0.1:{receiver.port}"})
        added = cli("webhook", "add", receiver.url, "-r", server.host_port, "--secret", SECRET,
                    *[arg for e in EVENTS for arg in ("--event", e)],
                    "--repository", "team/*")
        assert added.stdout.startswith("webhook 1: " + receiver.url), added.stdout
        assert SECRET not in added.stdout
        listed = cli("webhook", "ls", "-r", server.host_port).stdout
        assert receiver.url in listed and "team/*" in listed and SECRET not in listed

        ref = f"{server.host_port}/team/gemma3:270m"
        digest = digest_from_push(cli("push", gemma_gguf, ref, "-q").stdout)
        cli("push", gemma_gguf, f"{server.host_port}/elsewhere/gemma3:270m", "-q")

        def succeeded(got) -> bool:
            return any(r.event["action"] == "verification.succeeded"
                       and r.event["target"]["digest"] == digest for r in got)

        got = receiver.wait_for(succeeded, 300, "verification.succeeded of the model")
        assert all(r.signature_ok(SECRET) for r in got), [r.headers for r in got]
        assert all(r.headers["content-type"] ==
                   "application/vnd.docker.distribution.events.v1+json" for r in got)
        events = [r.event for r in got]
        assert {e["target"]["repository"] for e in events} == {"team/gemma3"}, events
        assert len({e["id"] for e in events}) == len(events)
        model = [e for e in events if e["target"]["digest"] == digest]
        assert [e["action"] for e in model] == list(EVENTS), [e["action"] for e in model]
        push, started, done = model
        assert push["target"]["tag"] == "270m" and push["target"]["size"] > 0
        assert push["target"]["url"].endswith(f"/v2/team/gemma3/manifests/{digest}")
        assert started["verification"]["status"] == "verifying"
        assert started["target"]["tags"] == ["270m"]
        v = done["verification"]
        assert (v["status"], v["verdict"], v["reason"]) == ("ready", "passed", None), v
        assert v["backend"] == "llama.cpp" and v["figures"]["generation_tps"] > 0, v
        assert v["figures"]["tokens_generated"] > 0 and v["figures"]["output"], v

        log = cli("webhook", "deliveries", "1", "-r", server.host_port).stdout
        assert "verification.succeeded" in log and "delivered" in log, log
        assert "204" in log, log
        cli("webhook", "rm", "1", "-r", server.host_port)
        assert cli("webhook", "ls", "-r", server.host_port).stdout == ""
        missing = cli("webhook", "rm", "1", server.host_port, ok=False)
        assert missing.returncode == 1 and missing.stderr.startswith("error: "), missing
        assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    finally:
        receiver.stop()
