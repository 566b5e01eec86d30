#!/usr/bin/env python3
"""The web app in a real browser (Debian's chromium + chromedriver, driven by selenium) against
`reverie serve` on the embedded default: sign in, grant consent, import the sample library, name a person
and mark "me", type a prompt and watch it resolve, render it and see live previews over SSE, open its
Sources, swap a source and refine, run a small album, check another tenant sees none of it, forget the
tenant. The API behind it is checked with bad input first (api_checks.py). Screenshots of every page go
to docs/screenshots/ (or --screenshots DIR).

    python3 tests/browser/web_app_test.py [--binary target/debug/reverie] [--screenshots DIR] [--headed]
"""

import argparse
import re
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api_checks  # noqa: E402
from serve_harness import ROOT, Server, reverie_binary  # noqa: E402

MARKUP_NAME = "Ada <b>Lovelace</b>"
PROMPT = "me at sunset in Honolulu"


class Browser:
    def __init__(self, url, screenshots, headed=False):
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
            options.add_argument(flag)
        if not headed:
            options.add_argument("--headless=new")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        self.url = url
        self.screenshots = screenshots
        screenshots.mkdir(parents=True, exist_ok=True)

    def wait(self, condition, timeout=60, message=""):
        # The app re-renders a page's content as its data arrives: an element found a moment ago may be
        # replaced before it is read. That is "not yet", so the wait polls again, as for a missing one.
        wait = WebDriverWait(
            self.driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        )
        return wait.until(condition, message)

    def visible(self, css, timeout=60):
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), timeout, f"visible {css}")

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text_in(self, css, text, timeout=60):
        self.wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text), timeout,
                  f"{text!r} in {css}")

    def go(self, page):
        self.find(f"#nav-{page}").click()
        self.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#page h1").is_displayed(), 30, f"page {page}")

    def shot(self, name):
        time.sleep(0.3)  # let images that are already fetched paint
        self.driver.save_screenshot(str(self.screenshots / f"{name}.png"))

    def errors(self):
        """Console errors other than the failed requests a test provokes on purpose."""
        return [e["message"] for e in self.driver.get_log("browser")
                if e["level"] == "SEVERE" and "status of 4" not in e["message"]]

    def quit(self):
        self.driver.quit()


def sign_in(browser, token):
    browser.driver.get(browser.url + "/")
    box = browser.visible("#token")
    box.clear()
    box.send_keys(token)
    browser.find("#sign-in").click()
    browser.visible("#nav-library", 30)
    browser.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#page h1").is_displayed(), 30)


def stale_token_is_refused(browser):
    browser.driver.get(browser.url + "/")
    browser.visible("#token").send_keys("me:not-the-secret")
    browser.find("#sign-in").click()
    alert = browser.visible("#sign-in-error")
    browser.wait(lambda d: alert.text.strip() != "", 10)
    assert "token" in alert.text.lower(), alert.text
    browser.shot("sign-in-refused")


def grant_library_consent(browser):
    browser.go("privacy")
    source = browser.visible("#consent-source")
    source.clear()
    source.send_keys("library")
    browser.find("#consent-grant").click()
    browser.wait(lambda d: "library" in d.find_element(By.ID, "page").text and
                 d.find_elements(By.CSS_SELECTOR, ".consent-revoke"), 30, "library granted")


def import_sample_library(browser, server):
    browser.go("library")
    path = browser.visible("#import-path")
    path.clear()
    path.send_keys(str(server.photos / "library"))
    browser.find("#import-start").click()
    browser.visible("#import-progress", 10)
    browser.wait(lambda d: "people" in d.find_element(By.ID, "import-status").text.lower()
                 or "failed" in d.find_element(By.ID, "import-status").text.lower(), 300, "import done")
    status = browser.find("#import-status").text
    assert "failed" not in status.lower(), status
    browser.shot("library-import")
    # The photo list reloads once the import is done; its thumbnails load as they scroll into view.
    def listed(d):
        match = re.search(r"of (\d+) photos", d.find_element(By.ID, "photo-count").text)
        return match and int(match.group(1)) >= 6
    browser.wait(listed, 60, "the imported photos listed")
    browser.driver.execute_script("document.getElementById('photo-grid').scrollIntoView()")
    browser.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#photo-grid img[src^='blob:']")) >= 6, 60,
                 "thumbnails")
    browser.shot("library")


def name_people(browser):
    browser.go("people")
    cards = browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ".person-card"), 60, "people")
    assert len(cards) >= 2, "the sample library has several people"
    first, second = cards[0].get_attribute("data-person-id"), cards[1].get_attribute("data-person-id")
    card = f'.person-card[data-person-id="{first}"]'
    name = browser.find(f"{card} .person-name")
    name.clear()
    name.send_keys(MARKUP_NAME)
    browser.find(f"{card} .person-save").click()
    # The name is shown as the text it is, markup and all: never interpreted.
    browser.text_in(card, MARKUP_NAME, 30)
    assert not browser.all(f"{card} b"), "a name's markup was rendered"
    browser.find(f'.person-card[data-person-id="{second}"] .person-me').click()
    browser.text_in(f'.person-card[data-person-id="{second}"]', "(me)", 30)
    browser.shot("people")
    return first, second


def watch_previews(browser):
    """Counts every preview the page shows, even if the final image replaces it a moment later."""
    browser.driver.execute_script("""
        window.__previews = new Set();
        new MutationObserver((changes) => {
          for (const change of changes) {
            const node = change.target;
            if (node.classList && node.classList.contains('preview') && node.src.startsWith('data:image/png'))
              window.__previews.add(node.src);
          }
        }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['src']});
    """)


def create_with_live_previews(browser, server, token):
    browser.go("create")
    prompt = browser.visible("#prompt")
    prompt.send_keys("Jespr at sunset in Honolulu")
    # While typing: the place and the light resolve, the misspelt name offers "did you mean".
    browser.text_in("#resolution", "Honolulu", 30)
    browser.text_in("#resolution", "sunset", 30)
    suggestion = browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#resolution .suggestion"), 30,
                              "did you mean")
    assert "Jesper" in suggestion[0].text, suggestion[0].text
    browser.shot("create-resolving")
    prompt.clear()
    prompt.send_keys(PROMPT)
    browser.text_in("#resolution", "me", 30)
    browser.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, "#resolution .suggestion"), 30)
    watch_previews(browser)
    browser.find("#generate").click()
    card = browser.visible(".generation-card", 30)
    request_id = card.get_attribute("data-request-id")
    browser.wait(lambda d: d.execute_script("return window.__previews.size") >= 1, 120,
                 "a live preview over SSE")
    browser.shot("create-preview")
    browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR,
                 f'.generation-card[data-request-id="{request_id}"] .result-image[src^="blob:"]'), 300,
                 "the final image")
    previews = browser.driver.execute_script("return window.__previews.size")
    status, generation = server.api("GET", f"/v1/generations/{request_id}", token=token)
    assert status == 200 and generation["state"] == "succeeded", generation
    browser.shot("create-done")
    return request_id, previews


def sources_and_refine(browser, server, token, request_id):
    browser.go("results")
    card = f'.generation-card[data-request-id="{request_id}"]'
    browser.visible(f"{card} .sources-toggle", 60).click()
    panel = browser.visible(f"{card} .sources", 30)
    browser.wait(lambda d: panel.find_elements(By.CSS_SELECTOR, "img[src^='blob:']"), 60, "source photos")
    browser.shot("results-sources")
    swap = browser.wait(lambda d: panel.find_elements(By.CSS_SELECTOR, ".swap-with"), 30)[-1]
    options = [o.get_attribute("value") for o in Select(swap).options if o.get_attribute("value")]
    assert options, "photos to swap in"
    Select(swap).select_by_value(options[0])
    watch_previews(browser)
    panel.find_element(By.CSS_SELECTOR, ".refine").click()
    child = browser.wait(lambda d: [c.get_attribute("data-request-id") for c in
                                    d.find_elements(By.CSS_SELECTOR, ".generation-card")
                                    if c.get_attribute("data-request-id") != request_id], 60, "the refinement")[0]
    browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR,
                 f'.generation-card[data-request-id="{child}"] .result-image[src^="blob:"]'), 300,
                 "the refined image")
    _, parent = server.api("GET", f"/v1/generations/{request_id}", token=token)
    _, refined = server.api("GET", f"/v1/generations/{child}", token=token)
    assert refined["parent"] == request_id, refined
    assert refined["plan"]["seeds"] == parent["plan"]["seeds"], "a refinement keeps the seed"
    assert options[0] in [r["photo"] for r in refined["plan"]["references"]], refined["plan"]["references"]
    browser.shot("results-refined")
    return child


def run_album(browser):
    browser.go("albums")
    album = Select(browser.visible("#album-name"))
    album.select_by_visible_text(next(o.text for o in album.options if o.text.startswith("Italy 2023")))
    Select(browser.find("#album-style")).select_by_visible_text("pencil")
    limit = browser.find("#album-limit")
    limit.clear()
    limit.send_keys("3")
    browser.find("#album-start").click()
    browser.visible("#album-progress", 30)
    browser.wait(lambda d: (d.find_element(By.ID, "contact-sheet").get_attribute("src") or "").startswith("blob:")
                 and d.find_element(By.ID, "contact-sheet").is_displayed(), 300, "the contact sheet")
    browser.shot("albums")


def cli_against_serve(server, token):
    """`reverie submit|status|refine|cancel` work against `reverie serve` unchanged."""
    import subprocess

    env = {**__import__("os").environ, "REVERIE_API": server.url, "REVERIE_TOKEN": token}

    def cli(*args):
        done = subprocess.run([server.binary, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"reverie {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    out = cli("submit", "--tenant", "me", "--id", "cli-1", "--wait", "a picnic in Honolulu")
    assert "succeeded" in out.lower(), out
    assert "cli-1" in cli("status", "cli-1")
    out = cli("refine", "cli-1", "a picnic in Honolulu at night")
    assert "accepted" in out.lower() or "cli-1" in out, out
    status, listed = server.api("GET", "/v1/generations?limit=50", token=token)
    assert status == 200 and any(g["request_id"] == "cli-1" for g in listed), listed


def other_tenant_sees_nothing(browser, other_token):
    browser.find("#sign-out").click()
    sign_in(browser, other_token)
    browser.go("results")
    time.sleep(1)
    assert not browser.all(".generation-card"), "another tenant's generations are visible"
    browser.go("people")
    time.sleep(1)
    assert not browser.all(".person-card"), "another tenant's people are visible"
    browser.go("library")
    time.sleep(1)
    assert not browser.all("#photo-grid img"), "another tenant's photos are visible"
    browser.shot("other-tenant")
    browser.find("#sign-out").click()


def phone_sized(browser):
    browser.driver.set_window_size(390, 844)
    for page in ("library", "create", "people"):
        browser.go(page)
        time.sleep(1)
        width = browser.driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"{page} overflows a phone-sized screen: {width}px"
        browser.shot(f"phone-{page}")
    browser.driver.set_window_size(1280, 1000)


def forget_me(browser, server, token):
    browser.go("privacy")
    browser.visible("#forget-open").click()
    browser.visible("#forget-dialog", 10)
    browser.find("#forget-confirm").send_keys("me")
    browser.shot("privacy-forget")
    browser.find("#forget-yes").click()
    browser.visible("#forget-report", 60)
    browser.shot("forgotten")
    status, _ = server.api("GET", "/v1/me", token=token)
    assert status == 401, f"a forgotten tenant's token still works ({status})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, default=reverie_binary())
    parser.add_argument("--screenshots", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--headed", action="store_true")
    args = parser.parse_args()
    server = Server(args.binary).start()
    browser = None
    try:
        token = server.token
        other = server.new_tenant("other")
        api_checks.run_before_import(server, token)
        print("api: bad input answered with reasons, no 5xx")
        browser = Browser(server.url, args.screenshots, headed=False if not args.headed else True)
        stale_token_is_refused(browser)
        sign_in(browser, token)
        grant_library_consent(browser)
        import_sample_library(browser, server)
        print("browser: signed in, consent granted, sample library imported")
        name_people(browser)
        print("browser: a person named (markup shown as text) and one marked as me")
        request_id, previews = create_with_live_previews(browser, server, token)
        print(f"browser: {PROMPT!r} resolved, rendered; {previews} live previews arrived over SSE")
        child = sources_and_refine(browser, server, token, request_id)
        print(f"browser: sources shown, a source swapped, refined as {child} with the same seed")
        run_album(browser)
        print("browser: album run to its contact sheet")
        cli_against_serve(server, token)
        print("cli: submit, status and refine work against reverie serve")
        api_checks.check_other_tenant(server, token, other, request_id)
        other_tenant_sees_nothing(browser, other)
        print("browser and api: another tenant sees none of it")
        sign_in(browser, token)
        phone_sized(browser)
        print("browser: pages fit a phone-sized screen")
        forget_me(browser, server, token)
        print("browser: the tenant was forgotten; its token no longer works")
        errors = browser.errors()
        assert not errors, f"console errors: {errors}"
        print(f"web app test passed; screenshots in {args.screenshots}")
    except (AssertionError, TimeoutException, Exception):
        if browser is not None:
            browser.shot("failure")
            print("browser console:", browser.driver.get_log("browser")[-20:], file=sys.stderr)
        print("serve log (tail):\n" + server.log()[-6000:], file=sys.stderr)
        raise
    finally:
        if browser is not None:
            browser.quit()
        server.cleanup()


if __name__ == "__main__":
    main()
