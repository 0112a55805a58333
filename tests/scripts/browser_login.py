"""The demo app (tests/src/demo.rs, on the official @authress/login SDK) in headless Chromium, for
tests/tests/browser_login.rs: sign in through the vault and the fake provider, then ask the SDK what
an app asks it (userSessionExists, ensureToken, getUserIdentity, getConnectionCredentials) and use the
page's own fetch button twice, and sign out (logout). Between the two fetches it prints {"step": "fetched"} and waits for a
line on stdin: the test ages the vault's clock there, so the second fetch refreshes. The last line of
stdout is the JSON result.

Playwright drives the system Chromium (CHROMIUM, default /usr/bin/chromium); it never downloads one.
"""

import json
import os
import re
import sys

from playwright.sync_api import sync_playwright

APP_URL = os.environ["APP_URL"]
USER_NAME = os.environ["USER_NAME"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Chromium's own background traffic is refused by this machine's closed network; keep it quiet.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fetch_with_button(page):
    """Clicks the page's fetch button and returns what the page shows for it."""
    before = page.text_content("#credential")
    page.click("#fetch")
    page.wait_for_function(
        "before => document.getElementById('credential').textContent !== before", arg=before
    )
    return json.loads(page.text_content("#credential"))


def main():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page_errors = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        page.goto(APP_URL + "/")
        page.wait_for_function("document.body.dataset.ready !== undefined")
        signed_in_before = page.evaluate("document.body.dataset.ready")

        # authenticate(): the vault, the provider, the vault's callback, back here with a code.
        page.fill("#user", USER_NAME)
        with page.expect_navigation(url=re.compile(r"[?&]code="), timeout=20000) as navigation:
            page.click("#login")
        returned_to = navigation.value.url
        page.wait_for_function("document.body.dataset.ready === 'true'", timeout=20000)

        sdk = page.evaluate(
            """async () => ({
                sessionExists: await loginClient.userSessionExists(),
                token: await loginClient.ensureToken(),
                identity: loginClient.getUserIdentity(),
                credentials: await loginClient.getConnectionCredentials(),
                location: location.href,
                origin: location.origin,
            })"""
        )
        first = fetch_with_button(page)
        print(json.dumps({"step": "fetched"}), flush=True)
        sys.stdin.readline()
        second = fetch_with_button(page)
        error = page.text_content("#error")

        # logout(): the SDK forgets its cookies and goes through the vault's /logout back to the app.
        page.evaluate("() => { window.beforeLogout = true; }")
        with page.expect_response(lambda r: "/logout?" in r.url, timeout=20000) as logout:
            page.click("#logout")
        logged_out_at = logout.value.headers.get("location")
        # The app's page again, a new document: is anybody signed in there?
        page.wait_for_function(
            "!window.beforeLogout && document.body && document.body.dataset.ready !== undefined",
            timeout=20000,
        )
        signed_in_after = page.evaluate("document.body.dataset.ready")
        browser.close()
    print(
        json.dumps(
            {
                "signedInBefore": signed_in_before,
                "returnedTo": returned_to,
                "sdk": sdk,
                "first": first,
                "second": second,
                "pageError": error,
                "loggedOutAt": logged_out_at,
                "signedInAfterLogout": signed_in_after,
                "pageErrors": page_errors,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
