"""A real browser for the web interface's tests: Playwright's sync API driving Debian's
headless Chromium (``/usr/bin/chromium``, installed by ``scripts/system-deps.sh``; Playwright's
own browser downloads are never used), axe-core on every page, and screenshots.

- ``launch(playwright)``: Chromium with no sandbox, GPU, background networking or first-run
  work, so it starts in about a second on a CI runner and never talks to the network.
- ``check_accessibility(page)``: axe-core's default rules on the page as it is now; fails
  with each violation's id, help text and the CSS targets of its nodes.
- ``readme_screenshot(page, name)``: the README's pictures, when ``$ASSAY_SCREENSHOTS`` is set.
- ``Browsing``: one test's pages (each in its own context, so its own cookies), signed in
  as a user or anonymous; ``visit`` opens a path and checks it with axe; ``screenshots``
  writes a PNG of every open page (what a failed test leaves behind).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
# The README's screenshots and a laptop screen; a phone is 390x844 (an iPhone 12-15).
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Where screenshots go: $ASSAY_SCREENSHOTS when set (the README's are made with
# ``ASSAY_SCREENSHOTS=docs/images``), else a directory under pytest's tmp dir.
SCREENSHOTS_ENV = "ASSAY_SCREENSHOTS"

_axe = Axe()


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless (never ``playwright install``'s download)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/system-deps.sh (it installs "
                           "Debian's chromium package)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def violations_text(violations: list[dict]) -> str:
    """One line per violation (id, impact, help) and one per node it names (its target)."""
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v.get('impact')}): {v['help']}")
        for node in v.get("nodes", []):
            lines.append(f"    {' '.join(map(str, node.get('target', [])))}: "
                         f"{node.get('html', '')[:160]}")
    return "\n".join(lines)


def check_accessibility(page: Page) -> None:
    """axe-core (its default rules) finds nothing wrong with ``page`` as it is now."""
    violations = _axe.run(page).response["violations"]
    assert not violations, (f"axe-core found {len(violations)} violation(s) on "
                            f"{page.url}:\n{violations_text(violations)}")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:120] or "page"


def screenshot_dir(default: Path) -> Path:
    configured = os.environ.get(SCREENSHOTS_ENV)
    target = Path(configured) if configured else default
    target.mkdir(parents=True, exist_ok=True)
    return target


@dataclass
class Site:
    """The registry the tests browse: its base URL and each user's password."""

    url: str
    passwords: dict[str, str]
    # Each user's signed-in browser state (cookies), made once by signing in with the form.
    states: dict[str, dict] = field(default_factory=dict)

    def api(self, path: str, *, user: str | None = None, token: str | None = None,
            ) -> httpx.Response:
        """GET ``/api/v1<path>`` as ``user`` (Basic), with ``token`` (Bearer) or anonymous."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        auth = (user, self.passwords[user]) if user else None
        return httpx.get(f"{self.url}/api/v1{path}", headers=headers, auth=auth, timeout=30)


@dataclass
class Browsing:
    """One test's pages. Each ``open`` makes a new browser context (its own cookies)."""

    browser: Browser
    site: Site
    screenshots: Path
    contexts: list[BrowserContext] = field(default_factory=list)

    def open(self, user: str | None = None, viewport: dict | None = None) -> Page:
        """A page signed in as ``user`` (None: anonymous), at ``viewport`` (desktop)."""
        state = self.signed_in(user) if user else None
        context = self.browser.new_context(base_url=self.site.url, storage_state=state,
                                           viewport=viewport or DESKTOP)
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        return context.new_page()

    def signed_in(self, user: str) -> dict:
        """``user``'s cookies, from signing in once with the sign-in form."""
        if user not in self.site.states:
            context = self.browser.new_context(base_url=self.site.url)
            try:
                page = context.new_page()
                sign_in(page, user, self.site.passwords[user])
                expect(page.get_by_text(f"Signed in as {user}")).to_be_visible()
                self.site.states[user] = context.storage_state()
            finally:
                context.close()
        return self.site.states[user]

    def screenshot_all(self, prefix: str) -> list[Path]:
        """A full-page PNG of every open page, named after ``prefix``."""
        written = []
        for i, context in enumerate(self.contexts):
            for j, page in enumerate(context.pages):
                if page.is_closed():
                    continue
                path = self.screenshots / f"{slug(prefix)}-{i}-{j}.png"
                try:
                    page.screenshot(path=str(path), full_page=True)
                    written.append(path)
                except Exception:  # a page mid-navigation or crashed: keep the others
                    continue
        return written

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()


def sign_in(page: Page, user: str, password: str, next_path: str = "/") -> None:
    """Sign in with the form at ``/-/sign-in`` (labels "User name" and "Password")."""
    page.goto(f"/-/sign-in?next={next_path}")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def visit(page: Page, path: str, status: int = 200) -> Page:
    """Open ``path``; the answer has ``status`` and the page passes axe-core."""
    response = page.goto(path)
    assert response is not None, f"no answer for {path}"
    assert response.status == status, f"GET {path}: {response.status}, expected {status}"
    check_accessibility(page)
    return page


def readme_screenshot(page: Page, name: str) -> Path | None:
    """With ``$ASSAY_SCREENSHOTS`` set, write ``page`` as it is (the viewport, not the whole
    page, so the image stays small) to ``$ASSAY_SCREENSHOTS/<name>.png``: the README's
    pictures come from ``ASSAY_SCREENSHOTS=docs/images .venv/bin/python -m pytest tests/web``.
    """
    configured = os.environ.get(SCREENSHOTS_ENV)
    if not configured:
        return None
    path = screenshot_dir(Path(configured)) / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def no_horizontal_scroll(page: Page) -> tuple[int, int]:
    """``(scrollWidth, innerWidth)`` of the document: the body must not scroll sideways."""
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
