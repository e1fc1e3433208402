"""The live page in a real headless Chromium: tallies follow responses published to Kafka, read
with the token of the page's URL; without one, or with another message's, it shows the refusal."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from msgstate.streams.sdk import mint_token
from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings

from .http_helpers import NEW_KEY, react, vote
from .http_helpers import serve_secured_http as serve_secured_http  # the secured_http_url fixture
from .pipeline_harness import Pipeline

MESSAGE = "layer:///messages/lunch-poll"
NO_VERSION = "\u2013"  # the page's placeholder until a summary arrives
# Set LIVE_PAGE_SCREENSHOT=docs/live-page.png to refresh the README's picture.
SCREENSHOT_COPY = os.environ.get("LIVE_PAGE_SCREENSHOT")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=640,760", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    try:
        yield driver
    finally:
        driver.quit()


# Read in one script, so a re-render between two element look-ups cannot tear the view.
READ_PAGE = """
const counts = sel => Object.fromEntries([...document.querySelectorAll(sel)].map(
    row => [row.dataset.value, row.querySelector('.count').textContent]));
return {poll: counts('#options .option'), reactions: counts('#reactions .reaction'),
        total: document.getElementById('poll-total').textContent,
        version: document.getElementById('version').textContent,
        status: document.getElementById('status').textContent,
        error: document.getElementById('error').textContent};
"""


def shown(driver: webdriver.Chrome) -> dict[str, object]:
    """What a person sees: poll counts, reaction chips, version and connection status."""
    seen = driver.execute_script(READ_PAGE)
    assert isinstance(seen, dict)
    return seen


def test_live_page_shows_the_tallies_as_responses_arrive(
    settings: Settings, secured_http_url: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    pipeline = Pipeline(settings)
    try:
        pipeline.start_worker()
        token = mint_token(NEW_KEY, ["layer:///messages/lunch-*"], 600)
        query = urlencode({"message": MESSAGE, "text": "Lunch on Friday: where shall we go?",
                           "options": "Pizza,Sushi,Tacos", "token": token})
        browser.get(f"{secured_http_url}/live?{query}")
        wait = WebDriverWait(browser, 60, poll_frequency=0.2)
        wait.until(lambda d: shown(d)["status"] == "live" and shown(d)["version"] == "0")
        assert shown(browser)["poll"] == {"Pizza": "0", "Sushi": "0", "Tacos": "0"}

        pipeline.publish([
            vote("v1", MESSAGE, "Frodo", "Pizza"), vote("v2", MESSAGE, "Sam", "Sushi"),
            vote("v3", MESSAGE, "Merry", "Pizza"), vote("v4", MESSAGE, "Pippin", "Pizza"),
            vote("v5", MESSAGE, "Frodo", "Tacos"),  # FWW: Frodo's first vote stands
            react("e1", MESSAGE, "Sam", "👍"), react("e2", MESSAGE, "Merry", "👍"),
            react("e3", MESSAGE, "Pippin", "🎉"), react("e4", MESSAGE, "Frodo", "👍"),
            react("e5", MESSAGE, "Frodo", "❤️"), react("e6", MESSAGE, "Merry", "👍", op="remove"),
        ])
        expected = {"poll": {"Pizza": "3", "Sushi": "1", "Tacos": "0"},
                    "reactions": {"👍": "2", "🎉": "1", "❤️": "1"},
                    "total": "4 votes", "version": "10", "status": "live", "error": ""}
        try:
            wait.until(lambda d: shown(d) == expected)
        except Exception as exc:
            stored = SummaryReader(pipeline.redis, settings.keys).get_summary(MESSAGE)
            raise AssertionError(f"the page shows {shown(browser)}, expected {expected}; Redis holds "
                                 f"{stored}; worker: {pipeline.workers[0].output()}") from exc
        # Chips come in tally order: count descending, then by value.
        chips = [c.get_attribute("data-value") for c in browser.find_elements(By.CSS_SELECTOR, ".reaction")]
        assert chips == ["👍", "❤️", "🎉"]
        latest = browser.find_element(By.CSS_SELECTOR, "#activity li").text
        assert latest == "Merry took back 👍"

        shot = tmp_path / "live-page.png"
        assert browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if SCREENSHOT_COPY:
            shutil.copyfile(shot, SCREENSHOT_COPY)
    finally:
        pipeline.close()


def test_live_page_shows_the_apis_refusal_without_a_token_or_with_another_messages(
    secured_http_url: str, browser: webdriver.Chrome
) -> None:
    wait = WebDriverWait(browser, 60, poll_frequency=0.2)
    browser.get(f"{secured_http_url}/live?{urlencode({'message': MESSAGE})}")
    wait.until(lambda d: shown(d)["status"] == "error")
    seen = shown(browser)
    assert str(seen["error"]).startswith("401 unauthorized: a bearer token is required"), seen
    assert seen["version"] == NO_VERSION and seen["reactions"] == {}

    elsewhere = mint_token(NEW_KEY, ["layer:///messages/other-room-*"], 600)
    browser.get(f"{secured_http_url}/live?{urlencode({'message': MESSAGE, 'token': elsewhere})}")
    wait.until(lambda d: shown(d)["status"] == "error")
    assert str(shown(browser)["error"]).startswith("403 insufficient_scope"), shown(browser)
    assert shown(browser)["version"] == NO_VERSION


READ_DELETED = """
return {deleted: document.getElementById('card').classList.contains('deleted'),
        text: document.getElementById('text').textContent,
        poll_shown: document.getElementById('poll').offsetParent !== null,
        activity: [...document.querySelectorAll('#activity li')].map(li => li.textContent)};
"""


def deletion_event(holder: str, name: str, kind: str, old: object, version: int) -> bytes:
    """A change event of a deletion, as a state worker writes it (SPEC sections 3a and 5)."""
    return orjson.dumps({
        "event_id": f"{MESSAGE}/d-1/root/{name}/{holder}", "message_id": MESSAGE,
        "part_id": "root", "response_id": "d-1", "identity_id": holder, "name": name,
        "type": kind, "old": old, "new": None, "version": version, "status_text": None,
        "cause": "delete_message"})


def test_live_page_shows_a_deleted_message_as_deleted(
    settings: Settings, secured_http_url: str, browser: webdriver.Chrome
) -> None:
    pipeline = Pipeline(settings)
    try:
        pipeline.start_worker()
        token = mint_token(NEW_KEY, ["layer:///messages/lunch-*"], 600)
        query = urlencode({"message": MESSAGE, "options": "Pizza,Sushi", "token": token})
        browser.get(f"{secured_http_url}/live?{query}")
        wait = WebDriverWait(browser, 60, poll_frequency=0.2)
        wait.until(lambda d: shown(d)["status"] == "live")
        pipeline.publish([vote("v1", MESSAGE, "Frodo", "Pizza"), react("e1", MESSAGE, "Sam", "👍")])
        wait.until(lambda d: shown(d)["poll"] == {"Pizza": "1", "Sushi": "0"})
        assert browser.execute_script(READ_DELETED)["deleted"] is False

        # The deletion's events come first, one per holding; the page needs no more to know.
        for holder, name, kind, old in (("u/Frodo", "poll_choice", "FWW", "Pizza"),
                                        ("u/Sam", "reactions", "Set", ["👍"])):
            pipeline.producer.send(settings.topics.summary_changes, key=MESSAGE.encode(),
                                   value=deletion_event(holder, name, kind, old, 3))
        pipeline.producer.flush(timeout=60)
        wait.until(lambda d: d.execute_script(READ_DELETED)["deleted"])
        seen = browser.execute_script(READ_DELETED)
        assert seen["text"] == "This message was deleted" and seen["poll_shown"] is False
        assert seen["activity"][0] == "the message was deleted"
        assert seen["activity"].count("the message was deleted") == 1  # one line for the deletion
    finally:
        pipeline.close()
