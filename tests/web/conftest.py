"""Fixtures for the browser tests: one real registry per module, real verified models, a
real headless Chromium, and screenshots of what a failed test was looking at.

- ``site``: ``assay serve`` on a free loopback port with access control on, one in-process
  verification worker and the readiness gate on (``tests.support.auth_registry``: root is a
  site admin, rita reads ``team``, wanda writes it), allowed to post webhooks to
  ``receiver``. Before the tests it holds Gemma 3 270M pushed with the real ``assay`` CLI
  twice (``team/gemma3:270m`` in Ollama's layout and ``team/gemma3:270m-docker`` in Docker's:
  two models, two digests) and the first half of it (``team/broken:v1``), each verified
  under the smoke profile (``tests/conftest.py`` sets it) to ready or failed.
- ``browser``: Debian's Chromium through Playwright, one per module.
- ``browsing``: a test's pages (``tests.support.browser.Browsing``); when the test fails,
  a PNG of each of its open pages is written to ``screenshots`` (named in the report).
- ``screenshots``: ``$ASSAY_SCREENSHOTS`` when set, else a directory under pytest's tmp dir.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.support.auth_registry import (
    ASSAY,
    AuthRegistry,
    start_auth_registry,
    stop_auth_registry,
)
from tests.support.browser import Browsing, Site, launch, screenshot_dir
from tests.support.receiver import Receiver

# The models ``site`` pushes, as (repository, tag): ready, ready, failed.
MODEL = ("team/gemma3", "270m")
MODEL_DOCKER = ("team/gemma3", "270m-docker")
BROKEN = ("team/broken", "v1")
VERIFY_TIMEOUT = 300.0


@dataclass
class Registry(Site):
    """``Site`` plus the process and identities behind it, and ``push``."""

    registry: AuthRegistry | None = None
    cache: Path | None = None

    @property
    def host_port(self) -> str:
        return self.registry.host_port

    def push(self, path: Path, name: str, tag: str, *args: str) -> str:
        """``assay push PATH HOST/NAME:TAG`` as wanda (her token); the pushed digest."""
        env = {**os.environ, "ASSAY_TOKEN": self.registry.wanda_token,
               "ASSAY_USERNAME": "", "ASSAY_PASSWORD": "",
               "ASSAY_CACHE_DIR": str(self.cache), "ASSAY_CONFIG_DIR": str(self.cache)}
        ref = f"{self.host_port}/{name}:{tag}"
        proc = subprocess.run([str(ASSAY), "push", str(path), ref, "-q", *args], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"assay push {ref}: {proc.stdout}\n{proc.stderr}"
        assert "@sha256:" in proc.stdout, proc.stdout
        return proc.stdout.split("@", 1)[1].split()[0]

    def set_profile(self, namespace: str, document: dict) -> None:
        """``PUT /api/v1/profiles/<namespace>`` as root: how ``namespace`` is verified."""
        resp = httpx.put(f"{self.url}/api/v1/profiles/{namespace}", json=document,
                         auth=("root", self.passwords["root"]), timeout=30)
        assert resp.status_code == 200, f"profile {namespace}: {resp.status_code} {resp.text}"

    def status(self, name: str, tag: str) -> dict:
        """The REST tag view, read as root."""
        resp = self.api(f"/repositories/{name}/tags/{tag}", user="root")
        assert resp.status_code == 200, f"{name}:{tag}: {resp.status_code} {resp.text}"
        return resp.json()

    def wait_final(self, name: str, tag: str, timeout: float = VERIFY_TIMEOUT) -> str:
        """Wait until ``name:tag`` is ready or failed; which."""
        deadline = time.monotonic() + timeout
        state: dict = {}
        while time.monotonic() < deadline:
            state = self.status(name, tag)
            if state.get("status") in ("ready", "failed"):
                return state["status"]
            time.sleep(0.3)
        raise AssertionError(f"{name}:{tag} not verified within {timeout:.0f} s: {state}\n"
                             f"{self.registry.server.log()[-4000:]}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback (the registry is told it may post there)."""
    got = Receiver().start()
    try:
        yield got
    finally:
        got.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, receiver, gemma_gguf, truncated_gguf) -> Iterator[Registry]:
    """The registry under test, with its three models verified (see the module doc)."""
    root = tmp_path_factory.mktemp("web")
    env = {"ASSAY_WORKERS": "1", "ASSAY_GATE": "true",
           "ASSAY_OUTBOUND_ALLOW": f"127.0.0.1:{receiver.port}"}
    auth = start_auth_registry(root / "data", env=env)
    try:
        site = Registry(auth.url, dict(auth.passwords), registry=auth, cache=root / "client")
        site.push(gemma_gguf, *MODEL)
        site.push(gemma_gguf, *MODEL_DOCKER, "--format", "docker")
        # The client refuses a truncated GGUF unless told: the registry must catch it.
        site.push(truncated_gguf, *BROKEN, "--unchecked")
        outcomes = {ref: site.wait_final(*ref) for ref in (MODEL, MODEL_DOCKER, BROKEN)}
        assert outcomes == {MODEL: "ready", MODEL_DOCKER: "ready", BROKEN: "failed"}, outcomes
        yield site
    finally:
        stop_auth_registry(auth)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("screenshots"))


@pytest.fixture
def browsing(browser, site, screenshots) -> Iterator[Browsing]:
    """A test's pages (screenshots of them on failure: ``pytest_runtest_makereport``)."""
    pages = Browsing(browser, site, screenshots)
    try:
        yield pages
    finally:
        pages.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test gets a PNG of each page it had open and the server's log tail."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", None) or {}
    pages = funcargs.get("browsing")
    if isinstance(pages, Browsing):
        written = pages.screenshot_all(item.name)
        report.sections.append(("screenshots", "\n".join(map(str, written)) or "(none)"))
    registry = funcargs.get("site")
    if isinstance(registry, Registry):
        log = registry.registry.server.log()
        report.sections.append(("assay serve log tail", log[-6000:] or "(empty)"))
