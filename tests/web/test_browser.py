"""The web interface in a real browser (headless Chromium through Playwright) against a real
``assay serve`` with access control on and real verified models (``conftest.py``).

Every page a test opens is checked with axe-core at its default rules (``visit`` and
``check_accessibility``); a failed test leaves a screenshot of each page it had open.
Users: root (site admin), rita (reads ``team``), wanda (writes ``team``).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import (
    PHONE,
    check_accessibility,
    no_horizontal_scroll,
    readme_screenshot,
    visit,
)
from tests.web.conftest import BROKEN, MODEL, MODEL_DOCKER, VERIFY_TIMEOUT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GEMMA, GEMMA_DOCKER, BROKEN_REF = (f"{n}:{t}" for n, t in (MODEL, MODEL_DOCKER, BROKEN))
LIVE = ("team/gemma3-live", "v1")
LIVE_PROFILE = {"runs": [], "quality": {"perplexity": True, "prompts": []}}
ADMIN_ONLY = ("/-/admin/users", "/-/admin/webhooks", "/-/admin/workers", "/-/admin/audit",
              "/-/admin/mirrors")


def row_names(page: Page) -> list[str]:
    """The models of the listing on ``/-/models``, in order (each row's header)."""
    return [t.strip() for t in page.get_by_role("rowheader").all_inner_texts()]


def submit_and_check(page: Page, button: str) -> None:
    """Press ``button`` (it navigates), then check the page it leads to with axe-core."""
    with page.expect_navigation():
        page.get_by_role("button", name=button, exact=True).click()
    check_accessibility(page)


# ---------------------------------------------------------------------------- sign-in


def test_sign_in_wrong_password_then_right_then_out(browsing, site):
    page = browsing.open()
    visit(page, "/-/sign-in")
    page.get_by_label("User name").fill("root")
    page.get_by_label("Password").fill("not-the-password")
    submit_and_check(page, "Sign in")
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    expect(page.get_by_text("Signed in as")).to_have_count(0)
    # The name is kept, the password is not.
    expect(page.get_by_label("User name")).to_have_value("root")
    expect(page.get_by_label("Password")).to_have_value("")

    page.get_by_label("Password").fill(site.passwords["root"])
    submit_and_check(page, "Sign in")
    expect(page.get_by_text("Signed in as root")).to_be_visible()
    assert urlsplit(page.url).path == "/"
    submit_and_check(page, "Sign out")
    expect(page.get_by_role("banner").get_by_role("link", name="Sign in")).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_have_count(0)


def test_anonymous_visitor_is_sent_to_sign_in_for_a_private_repository(browsing, site):
    page = browsing.open()
    response = page.goto(f"/{MODEL[0]}")
    assert response is not None and response.status == 200
    url = urlsplit(page.url)
    assert url.path == "/-/sign-in", page.url
    assert parse_qs(url.query)["next"] == [f"/{MODEL[0]}"], page.url
    check_accessibility(page)
    page.get_by_label("User name").fill("rita")
    page.get_by_label("Password").fill(site.passwords["rita"])
    submit_and_check(page, "Sign in")
    assert urlsplit(page.url).path == f"/{MODEL[0]}", page.url
    expect(page.get_by_role("heading", level=1)).to_contain_text(MODEL[0])


# ----------------------------------------------------------------------------- browse


def test_home_lists_the_repositories_and_search_filters_them(browsing):
    page = visit(browsing.open("rita"), "/")
    expect(page.get_by_role("link", name=MODEL[0], exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=BROKEN[0], exact=True)).to_be_visible()

    page.get_by_label("Search by name").fill("gemma")
    submit_and_check(page, "Search")
    assert parse_qs(urlsplit(page.url).query)["q"] == ["gemma"], page.url
    expect(page.get_by_role("link", name=MODEL[0], exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=BROKEN[0], exact=True)).to_have_count(0)

    page.get_by_label("Search by name").fill("no-such-model")
    submit_and_check(page, "Search")
    expect(page.get_by_role("link", name=MODEL[0], exact=True)).to_have_count(0)
    expect(page.get_by_text("No repository name contains")).to_be_visible()


def test_models_list_filters_by_status_and_format_and_sorts(browsing):
    page = visit(browsing.open("rita"), "/-/models")
    assert sorted(row_names(page)) == sorted([GEMMA, GEMMA_DOCKER, BROKEN_REF])

    page.get_by_label("ready", exact=True).check()
    submit_and_check(page, "Filter")
    assert sorted(row_names(page)) == sorted([GEMMA, GEMMA_DOCKER])
    readme_screenshot(page, "models-list")
    page.get_by_label("ready", exact=True).uncheck()
    page.get_by_label("failed", exact=True).check()
    submit_and_check(page, "Filter")
    assert row_names(page) == [BROKEN_REF]
    expect(page.get_by_role("row", name=BROKEN_REF)).to_contain_text("failed")

    page.get_by_label("failed", exact=True).uncheck()
    page.get_by_label("Format").select_option("safetensors")
    submit_and_check(page, "Filter")
    assert row_names(page) == []
    expect(page.get_by_text("No model matches these filters")).to_be_visible()
    page.get_by_label("Format").select_option("gguf")
    submit_and_check(page, "Filter")
    assert len(row_names(page)) == 3

    # Size: the first click sorts biggest first, the second smallest first (the broken
    # model is half of Gemma).
    size = page.get_by_role("columnheader", name=re.compile(r"^Size"))
    with page.expect_navigation():
        size.get_by_role("link").click()
    check_accessibility(page)
    expect(size).to_have_attribute("aria-sort", "descending")
    assert row_names(page)[-1] == BROKEN_REF
    assert page.get_by_label("Format").input_value() == "gguf"  # the filter is kept
    with page.expect_navigation():
        size.get_by_role("link").click()
    expect(size).to_have_attribute("aria-sort", "ascending")
    assert row_names(page)[0] == BROKEN_REF


def test_repository_and_model_page(browsing, site):
    page = visit(browsing.open("rita"), f"/{MODEL[0]}")
    with page.expect_navigation():
        page.get_by_role("link", name=MODEL[1], exact=True).first.click()
    check_accessibility(page)
    assert urlsplit(page.url).path == f"/{MODEL[0]}/-/tags/{MODEL[1]}", page.url
    expect(page.get_by_role("heading", level=1)).to_have_text(GEMMA)
    expect(page.locator("#status-badge")).to_have_text("ready")
    expect(page.get_by_role("heading", name="Model card")).to_be_visible()
    expect(page.get_by_role("heading", name="Pull it")).to_be_visible()
    pull = page.get_by_role("region", name="Pull it")
    expect(pull.locator("code", has_text="ollama pull")).to_contain_text(
        f"{site.host_port}/{GEMMA}")
    expect(pull.get_by_role("button", name="Copy the Ollama command")).to_be_visible()
    readme_screenshot(page, "model-page")


def test_pages_fit_a_phone(browsing):
    """Wide tables scroll inside their own (focusable) region; the page never does."""
    page = browsing.open("root", viewport=PHONE)
    for path in (f"/{MODEL[0]}/-/tags/{MODEL[1]}", f"/{BROKEN[0]}/-/tags/{BROKEN[1]}",
                 "/-/models", f"/-/compare?m={MODEL[0]}:{MODEL[1]}"
                 f"&m={MODEL_DOCKER[0]}:{MODEL_DOCKER[1]}", "/-/admin/namespaces/team",
                 "/-/admin/audit", "/-/admin/workers"):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        scroll_width, inner_width = no_horizontal_scroll(page)
        assert scroll_width <= inner_width, (path, scroll_width, inner_width)
        check_accessibility(page)  # after the width: a failure here is about axe alone


def test_skip_link_is_the_first_tab_stop(browsing):
    page = visit(browsing.open("rita"), "/")
    page.keyboard.press("Tab")
    focused = page.evaluate("[document.activeElement.tagName, document.activeElement.textContent"
                            ".trim(), document.activeElement.getAttribute('href')]")
    assert focused == ["A", "Skip to content", "#main"], focused
    expect(page.get_by_role("link", name="Skip to content")).to_be_visible()  # when focused
    page.keyboard.press("Enter")
    assert urlsplit(page.url).fragment == "main", page.url


# ------------------------------------------------------------------ live verification


def test_model_page_goes_from_verifying_to_ready_by_itself(browsing, site, gemma_gguf):
    # This repository is verified with perplexity on top of the smoke check: seconds of
    # work, so its page opens while the model is still queued or verifying.
    site.set_profile(LIVE[0], LIVE_PROFILE)
    site.push(gemma_gguf, *LIVE)
    page = visit(browsing.open("rita"), f"/{LIVE[0]}/-/tags/{LIVE[1]}")
    region = page.locator("#status")
    first = region.get_attribute("data-status")
    assert first in ("queued", "verifying"), first
    assert region.get_attribute("aria-live") == "polite"
    expect(page.locator("#status-badge")).to_have_text(first)
    expect(page.locator("#status-queue")).to_contain_text(
        re.compile("Verifying now|Waiting in the queue"))
    page.evaluate("window.notReloadedByHand = true")  # a reload by the page drops it

    expect(region).to_have_attribute("data-status", "ready", timeout=VERIFY_TIMEOUT * 1000)
    expect(page.locator("#status-badge")).to_have_text("ready")
    assert page.evaluate("window.notReloadedByHand") is None  # the page reloaded itself
    assert urlsplit(page.url).path == f"/{LIVE[0]}/-/tags/{LIVE[1]}", page.url
    expect(page.get_by_role("heading", name="Verification history")).to_be_visible()
    check_accessibility(page)


# ---------------------------------------------------------------------------- compare


def test_compare_two_models_side_by_side(browsing):
    page = visit(browsing.open("rita"), "/-/models")
    page.get_by_label(f"Compare {GEMMA}", exact=True).check()
    page.get_by_label(f"Compare {GEMMA_DOCKER}", exact=True).check()
    submit_and_check(page, "Compare selected")
    url = urlsplit(page.url)
    assert url.path == "/-/compare", page.url
    assert sorted(parse_qs(url.query)["m"]) == sorted([GEMMA, GEMMA_DOCKER]), page.url
    headers = [t.strip() for t in page.get_by_role("columnheader").all_inner_texts()]
    assert sorted(h for h in headers if h.startswith("team/")) == sorted([GEMMA, GEMMA_DOCKER]), \
        headers
    for ref in (GEMMA, GEMMA_DOCKER):
        expect(page.get_by_role("columnheader").get_by_role("link", name=ref, exact=True)) \
            .to_be_visible()
    expect(page.get_by_role("row", name="Status", exact=False).first).to_contain_text(
        re.compile(r"ready.*ready", re.S))


# ----------------------------------------------------------------------- administration


def test_personal_access_token_is_shown_once_and_works(browsing, site):
    page = visit(browsing.open("root"), "/-/admin/tokens")
    page.get_by_label("Name", exact=True).fill("browser-test")
    submit_and_check(page, "Create token")
    token = page.get_by_label("Token", exact=True).input_value()
    assert len(token) > 20, token
    me = httpx.get(f"{site.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"},
                   timeout=30)
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "root", me.json()

    visit(page, "/-/admin/tokens")
    expect(page.get_by_label("Token", exact=True)).to_have_count(0)
    assert token not in page.content()
    expect(page.get_by_role("rowheader", name="browser-test")).to_be_visible()


def test_webhook_is_created_listed_and_delivers(browsing, site, receiver, gemma_gguf):
    page = visit(browsing.open("root"), "/-/admin/webhooks")
    page.get_by_label("URL", exact=False).fill(receiver.url)
    page.get_by_label("Secret", exact=False).fill("browser-webhook-secret-0123456789")
    page.get_by_label("push", exact=True).check()
    page.get_by_label("tag", exact=True).check()
    page.get_by_label("Only repositories matching", exact=False).fill("team/*")
    submit_and_check(page, "Subscribe")
    expect(page.get_by_role("status")).to_contain_text(f"Subscribed {receiver.url}")
    assert "browser-webhook-secret" not in page.content()  # the secret is never shown

    visit(page, "/-/admin/webhooks")
    row = page.get_by_role("row", name=receiver.url)
    expect(row).to_be_visible()
    expect(row).to_contain_text("team/*")
    expect(row).to_contain_text("push, tag")
    hooks = site.api("/webhooks", user="root")
    assert hooks.status_code == 200, hooks.text
    assert [h["url"] for h in hooks.json()["webhooks"]] == [receiver.url], hooks.json()

    # It works: a new tag in team/ reaches the receiver (on a digest already there, so
    # the event is "tag" and nothing is verified again).
    site.push(gemma_gguf, MODEL[0], "hooked")
    got = receiver.wait_for(lambda got: any(r.event["target"].get("tag") == "hooked"
                                            for r in got), 60, "the event of :hooked")
    assert [r.event["action"] for r in got] == ["tag"], [r.event for r in got]
    assert all(r.signature_ok("browser-webhook-secret-0123456789") for r in got)


def test_admin_pages_pass_axe(browsing):
    page = browsing.open("root")
    for path in ("/-/admin", "/-/admin/namespaces", "/-/admin/namespaces/team",
                 "/-/admin/users/rita", *ADMIN_ONLY):
        visit(page, path)
        expect(page.get_by_role("heading", level=1)).to_be_visible()


def test_reader_cannot_reach_admin_pages(browsing):
    page = visit(browsing.open("rita"), "/")
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Admin", exact=True).click()
    check_accessibility(page)
    links = page.get_by_role("main").get_by_role("link")
    expect(links.filter(has_text="My tokens")).to_be_visible()
    for name in ("Users and robots", "Webhooks", "Workers", "Audit log"):
        expect(links.filter(has_text=name)).to_have_count(0)
    for path in ADMIN_ONLY:
        visit(page, path, status=403)
        expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
        expect(page.get_by_role("table")).to_have_count(0)
