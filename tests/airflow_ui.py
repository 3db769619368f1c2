"""Airflow 3's UI driven as a person uses it, in headless Chromium (Debian's chromium and
chromium-driver, through Selenium). Each step saves a numbered screenshot into ``artifacts``.

The selectors are the UI's own: the login form's ``username``/``password`` fields, the
``trigger-dag-button`` and ``trigger-dag-submit`` test ids, the Monaco editor of "Configuration JSON"
under "Advanced Options"; pages are the UI's routes (``/dags``, ``/dags/<id>/runs/<run id>``,
``.../tasks/<task id>``, whose first tab is the log).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
RUN_STATES = ("Success", "Failed")


def headless_chromium() -> webdriver.Chrome:
    opts = Options()
    opts.binary_location = CHROMIUM
    # --no-sandbox: the tests run as root, which Chromium's sandbox refuses
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1200"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.implicitly_wait(0)
    return driver


class AirflowUi:
    def __init__(self, driver: webdriver.Chrome, base_url: str, artifacts: Path) -> None:
        self.d, self.base = driver, base_url.rstrip("/")
        self.artifacts = artifacts
        artifacts.mkdir(parents=True, exist_ok=True)
        for old in artifacts.glob("*.png"):
            old.unlink()
        self._shots = 0

    # -- plumbing -----------------------------------------------------------------------------------
    def shot(self, name: str) -> Path:
        self._shots += 1
        path = self.artifacts / f"{self._shots:02d}-{name}.png"
        self.d.save_screenshot(str(path))
        return path

    def until(self, what: str, check: Callable[[], object], timeout_s: float = 30, poll_s: float = 0.5):
        """``check()``'s first truthy value; a timeout names ``what`` and saves a screenshot."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = check()
            except WebDriverException:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                shot = self.shot(f"timeout-{what.replace(' ', '-')}")
                raise AssertionError(f"UI: {what} not within {timeout_s:.0f} s (screenshot {shot})")
            time.sleep(poll_s)

    def body(self) -> str:
        return self.d.find_element(By.TAG_NAME, "body").text

    def text_shown(self, text: str) -> str | None:
        body = self.body()
        return body if text in body else None

    def one(self, css: str):
        found = self.d.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found and found[0].is_displayed() else None

    def by_text(self, text: str):
        found = self.d.find_elements(By.XPATH, f"//*[normalize-space(text())={json.dumps(text)}]")
        return found[0] if found else None

    # -- what a person does -------------------------------------------------------------------------
    def log_in(self, username: str, password: str) -> None:
        self.d.get(self.base + "/")
        self.until("the login form", lambda: self.one("input[name=username]"))
        self.d.find_element(By.NAME, "username").send_keys(username)
        self.d.find_element(By.NAME, "password").send_keys(password)
        self.shot("login")
        self.d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        self.until(
            "the home page after login", lambda: "/auth/login" not in self.d.current_url and self.body()
        )

    def dag_list(self) -> str:
        """The DAG list's text (ids, tags, schedules) once it has rendered."""
        self.d.get(self.base + "/dags")
        body = self.until("the DAG list", lambda: self.text_shown("Schedule"))
        self.shot("dags")
        return body

    def trigger(self, dag_id: str, conf: dict) -> str:
        """Trigger a single run with ``conf`` from the DAG's page (unpausing it on trigger, the
        dialog's default); returns the run id the UI navigates to."""
        self.d.get(f"{self.base}/dags/{dag_id}")
        self.until("the Trigger button", lambda: self.one("[data-testid=trigger-dag-button]")).click()
        self.until("Advanced Options", lambda: self.by_text("Advanced Options")).click()
        editor = self.until(
            "the conf editor", lambda: self.one(".chakra-dialog__content .monaco-editor .view-lines")
        )
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", editor)
        self._type_into_editor(editor, json.dumps(conf), lambda text: _json_or_none(text) == conf)
        # leaving the editor lets the form take its value (and format it) before the submit
        self.by_text("Configuration JSON").click()
        self.shot("trigger")
        self.d.find_element(By.CSS_SELECTOR, "[data-testid=trigger-dag-submit]").click()
        url = self.until("the new run's page", lambda: "/runs/" in self.d.current_url and self.d.current_url)
        return urllib.parse.unquote(url.split("/runs/", 1)[1].split("/")[0])

    def _type_into_editor(self, editor, text: str, done: Callable[[str], bool], attempts: int = 3) -> None:
        """Replace the editor's text by typing ``text`` a key at a time, as a person does (on a busy
        machine keys sent in one burst reached the editor out of order); read it back and type
        again when it is not what ``done`` expects."""
        typed = ""
        for _ in range(attempts):
            ActionChains(self.d).click(editor).key_down(Keys.CONTROL).send_keys("a").key_up(
                Keys.CONTROL
            ).perform()
            ActionChains(self.d).send_keys(Keys.DELETE).perform()
            for key in text:
                ActionChains(self.d).send_keys(key).perform()
                time.sleep(0.02)
            time.sleep(0.5)
            typed = editor.text.replace("\u00a0", " ")
            if done(typed):
                return
        raise AssertionError(f"UI: the editor holds {typed!r} after {attempts} attempts to type {text!r}")

    def watch_run(self, dag_id: str, run_id: str, timeout_s: float = 600) -> str:
        """Reload the run's page until its state badge says Success or Failed; returns it."""
        page = f"{self.base}/dags/{dag_id}/runs/{urllib.parse.quote(run_id, safe='')}"

        def state() -> str | None:
            self.d.get(page)
            self.until("the run's page", lambda: self.text_shown(run_id), timeout_s=30)
            # the run id is in the breadcrumb and in the heading; the heading's row has the state badge
            rows = self.d.find_elements(By.XPATH, f"//*[normalize-space(text())={json.dumps(run_id)}]/..")
            return next((s for row in rows for s in RUN_STATES if s in row.text.split("\n")), None)

        final = self.until(f"{dag_id} {run_id} to end", state, timeout_s=timeout_s, poll_s=5)
        self.shot("run")
        return final

    def task_log(self, dag_id: str, run_id: str, task_id: str, expect: str) -> str:
        """The page of the task's latest try (its log), once ``expect`` shows in it."""
        run = urllib.parse.quote(run_id, safe="")
        self.d.get(f"{self.base}/dags/{dag_id}/runs/{run}/tasks/{task_id}")
        body = self.until(
            f"{task_id}'s log showing {expect!r}", lambda: self.text_shown(expect), timeout_s=60
        )
        self.shot(f"log-{task_id}")
        return body


def _json_or_none(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None
