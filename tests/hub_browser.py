"""A person at the bundled hub, in Debian's chromium driven by Playwright: sign up, log in, pick an
image, wait for JupyterLab, run a cell, stop the server. The hub journey test and bench/hub.py
both drive the hub through it."""

import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

VISIBLE_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
# the status bar says "Python 3 (ipykernel) | Idle" once the kernel answers ("No Kernel | Idle" before)
KERNEL_IDLE = "() => /[^l] \\| Idle/.test(document.querySelector('#jp-main-statusbar')?.textContent || '')"


@contextmanager
def chromium() -> Iterator[object]:
    """Debian's chromium (Playwright's own browser download is not reachable here)."""
    if shutil.which("chromium") is None:
        raise RuntimeError("no chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class HubPerson:
    """One person's browser session at the hub at `url`; with `shots`, every step leaves a
    screenshot there named after `who` and the step."""

    def __init__(self, browser, url: str, who: str, *, password: str, timeout_ms: int, shots: Path | None = None) -> None:
        self.url, self.who, self.password, self.timeout_ms, self.shots = url, who, password, timeout_ms, shots
        self.step_number = 0
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)

    def shot(self, step: str) -> None:
        if self.shots is None:
            return
        self.step_number += 1
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.shots / f"{self.who}-{self.step_number:02d}-{step}.png"))

    def _account_form(self, page: str, user: str, submit: str, *confirmations: str) -> None:
        self.page.goto(f"{self.url}/hub/{page}")
        self.page.fill("#username_input", user)
        for field in ("#password_input", *confirmations):
            self.page.fill(field, self.password)
        self.page.click(submit)
        self.page.wait_for_load_state()
        self.shot(f"{page}-{user}")

    def signup(self, user: str) -> None:
        """NativeAuthenticator's sign-up form (the account then waits for an admin's approval)."""
        self._account_form("signup", user, "#signup_submit", "#password_confirmation_input")

    def login(self, user: str) -> bool:
        """Whether the hub let `user` in (an unapproved account stays on the login page)."""
        self._account_form("login", user, "#login_submit")
        return "/hub/login" not in self.page.url

    def approve(self, user: str) -> None:
        """As an admin: NativeAuthenticator's authorization page."""
        self.page.goto(f"{self.url}/hub/authorize")
        self.page.click(f'a[href$="/authorize/{user}"]')
        self.page.wait_for_load_state()
        self.shot(f"approved-{user}")

    def start(self, label: str, *, ready: str | None = None) -> float:
        """Pick `label` in the image chooser, start; seconds until JupyterLab shows a launcher or
        the restored notebook, or, for an image whose default page is another, until the selector
        `ready` shows there."""
        deadline = time.monotonic() + self.timeout_ms / 1000
        self.page.goto(f"{self.url}/hub/spawn")
        while not self.page.locator("select[name=image]").is_visible():  # the last stop may still be going on
            assert time.monotonic() < deadline, f"no image chooser at {self.page.url}"
            time.sleep(2)
            self.page.goto(f"{self.url}/hub/spawn")
        self.page.select_option("select[name=image]", label=label)
        self.shot(f"chooser-{label.split()[0]}")
        began = time.monotonic()
        self.page.click("form input[type=submit], form button[type=submit]")
        self.page.wait_for_selector(ready or f".jp-LauncherCard, {VISIBLE_NOTEBOOK}", timeout=self.timeout_ms)
        seconds = time.monotonic() - began
        self.shot(f"ready-{label.split()[0]}")
        if ready is None and not self.page.locator(".jp-LauncherCard").first.is_visible():
            # a later start restores the last session's tabs: start from a clean workspace instead
            self.page.goto(self.page.url.split("/lab")[0] + "/lab?reset")
            self.page.wait_for_selector(".jp-LauncherCard", timeout=self.timeout_ms)
        return seconds

    def open(self, url: str, ready: str) -> None:
        """Go to `url` and wait until the selector `ready` shows there."""
        self.page.goto(url)
        self.page.wait_for_selector(ready, timeout=self.timeout_ms)
        self.shot(url.rsplit("/", 1)[-1].split("?")[0])

    def run_cell(self, code: str, expect: str) -> str:
        """A new notebook from the launcher `start` left open, `code` run in its first cell; the
        cell's whole output once it matches the regular expression `expect` (warnings a package
        prints on stderr come first)."""
        self.page.click('.jp-LauncherCard[data-category="Notebook"]')
        self.page.wait_for_function(KERNEL_IDLE, timeout=self.timeout_ms)  # a cell run before the kernel answers is lost
        # a locator, found again at each try: JupyterLab redraws the cell while the notebook loads
        self.page.locator(f"{VISIBLE_NOTEBOOK} .jp-Cell .cm-content").first.click(timeout=self.timeout_ms)
        self.page.keyboard.insert_text(code)
        self.page.keyboard.press("Shift+Enter")
        output = self.page.locator(f"{VISIBLE_NOTEBOOK} .jp-Cell .jp-OutputArea").first
        deadline = time.monotonic() + self.timeout_ms / 1000
        while not re.search(expect, text := (output.inner_text() if output.count() else "")):
            assert time.monotonic() < deadline, f"no output matching {expect!r}; the cell shows: {text}"
            time.sleep(0.5)
        self.shot("cell-output")
        return text

    def stop(self) -> None:
        """Stop the server from the hub's home page and wait until it is stopped (#stop hides then;
        #start is there all along). The button works once the page's scripts have loaded."""
        self.page.goto(f"{self.url}/hub/home", wait_until="networkidle")
        deadline = time.monotonic() + self.timeout_ms / 1000
        while self.page.locator("#stop").is_visible():
            assert time.monotonic() < deadline, "the server did not stop"
            self.page.click("#stop")
            with contextlib.suppress(PlaywrightTimeout):
                self.page.wait_for_selector("#stop", state="hidden", timeout=30_000)
        self.shot("stopped")

    def close(self) -> None:
        self.context.close()
