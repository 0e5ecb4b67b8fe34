"""The page at / in a real headless browser (Debian's chromium through Selenium): upload a photo, read the label
and, for an unsure verdict, why."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from serve_client import ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHOTO = sorted((Path(__file__).parent / "data" / "photos" / "shoes").glob("*.jpg"))[0]
REASON_WORDS = {  # what the page says for each code of "unsure_reasons"
    "no_object": "no object found",
    "low_confidence": "top probability too low",
    "atypical": "unlike the training images",
}


def reasons_line(result: dict[str, Any]) -> str:
    """The line the page shows under an unsure verdict (for no object, the warning); empty for a sure one."""
    words = {**REASON_WORDS, "no_object": result.get("warning") or REASON_WORDS["no_object"]}
    return "why: " + "; ".join(words[code] for code in result["unsure_reasons"]) if result["unsure"] else ""


@contextlib.contextmanager
def page_served(browser: Any, *args: str) -> Iterator[ServerProcess]:
    """``edgefmnist serve ARGS`` with its page open in ``browser``; the service must stop cleanly after."""
    server = ServerProcess(*args)
    try:
        browser.get(f"http://{server.host}:{server.port}/")
        yield server
    finally:
        assert server.stop()[0] == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("the browser test needs Debian's browser: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_page_uploads_a_photo_and_shows_label_bars_and_the_28x28_image(browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    infer = subprocess.run(
        [sys.executable, "-m", "edgefmnist.cli", "infer", "--image", str(PHOTO), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    expected = json.loads(infer.stdout)[0]
    with page_served(browser):
        browser.find_element(By.ID, "file").send_keys(str(PHOTO))
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "result").is_displayed())
        label = browser.find_element(By.ID, "label").text
        want = f"unsure (best guess: {expected['label']})" if expected["unsure"] else expected["label"]
        assert label == want
        assert browser.find_element(By.ID, "reasons").text == reasons_line(expected)
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert [bar.text.rsplit(" ", 2)[0] for bar in bars] == [entry["label"] for entry in expected["top_k"][:3]]
        seen = browser.find_element(By.ID, "seen")
        assert browser.execute_script("return arguments[0].naturalWidth", seen) == 28
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalHeight", seen) == 28


@pytest.mark.slow
def test_page_says_why_a_verdict_is_unsure_and_clears_it_for_a_sure_one(
    browser: Any, fashion: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    grey = tmp_path / "grey.png"
    Image.new("L", (64, 64), 128).save(grey)
    trouser = tmp_path / "trouser.png"
    Image.fromarray(fashion.test.images[2]).save(trouser)
    with page_served(browser) as server:
        unsure = server.post_image(grey.read_bytes()).json()
        assert unsure["unsure_reasons"] == list(REASON_WORDS)  # a uniform picture fails every rule
        sure = server.post_image(trouser.read_bytes()).json()
        assert not sure["unsure"]
        browser.find_element(By.ID, "file").send_keys(str(grey))
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "reasons").is_displayed())
        assert browser.find_element(By.ID, "label").text == f"unsure (best guess: {unsure['label']})"
        reasons = browser.find_element(By.ID, "reasons")
        assert unsure["warning"] == "no object found: the picture is nearly uniform"
        assert reasons.text == reasons_line(unsure)
        assert reasons.text == f"why: {unsure['warning']}; top probability too low; unlike the training images"
        assert browser.find_element(By.ID, "status").text.endswith(" ms to preprocess")  # said once, not twice
        browser.find_element(By.ID, "file").send_keys(str(trouser))
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "label").text == sure["label"])
        assert not reasons.is_displayed() and reasons.get_attribute("textContent") == ""


@pytest.mark.slow
def test_page_refuses_a_token_that_is_not_printable_ascii_and_sends_the_right_one(browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import text_to_be_present_in_element
    from selenium.webdriver.support.ui import WebDriverWait

    with page_served(browser, "--token", "s3cret"):
        token, file = browser.find_element(By.ID, "token"), browser.find_element(By.ID, "file")
        for typed, said in [
            ("pässwörd", "'ä', which is not ASCII"),
            ("秘密", "not ASCII"),
            ("a\tb", "a control character"),  # set, not typed: a typed tab moves the focus
            ("wrong", "the service refused this token: check the token field"),
            ("", "this service needs a token: enter it in the token field"),
        ]:
            browser.execute_script("arguments[0].value = arguments[1]", token, typed)
            file.send_keys(str(PHOTO))  # the same photo again is sent again
            WebDriverWait(browser, 30).until(text_to_be_present_in_element((By.ID, "status"), said))
        token.clear()
        token.send_keys("s3cret")
        file.send_keys(str(PHOTO))
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "result").is_displayed())


@pytest.mark.slow
def test_page_opens_the_picker_from_the_keyboard(browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with page_served(browser):
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        assert browser.execute_script("return document.activeElement.id") == "file"  # the first Tab stop


@pytest.mark.slow
def test_page_shows_the_newest_photo_when_an_older_answer_comes_later(browser: Any, tmp_path: Path) -> None:
    """A slow picture, then a fast one: the service's two threads answer the second first, and the
    first's answer, arriving later, must not replace it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    slow = tmp_path / "slow.png"
    picture = Image.new("L", (6000, 6000), 235)
    picture.paste(40, (1500, 1000, 4500, 5000))
    picture.save(slow)
    with page_served(browser) as server:
        file = browser.find_element(By.ID, "file")
        file.send_keys(str(slow))
        file.send_keys(str(PHOTO))
        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "result").is_displayed())
        assert server.post_image(slow.read_bytes()).status == 200  # by its end, the page's slow request has ended
        assert browser.find_element(By.ID, "photo-name").text == PHOTO.name


@pytest.mark.slow
def test_page_classifies_a_dropped_photo(browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with page_served(browser):
        browser.execute_async_script(DROP_GREY_PICTURE)
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "result").is_displayed())
        assert browser.find_element(By.ID, "photo-name").text == "dropped.png"
        assert browser.find_element(By.ID, "label").text.startswith("unsure (best guess: ")  # a uniform picture
        cancelled = browser.execute_script(DROP_DATA, "text/uri-list", "https://example.org/shirt.jpg")
        assert cancelled and "holds no file" in browser.find_element(By.ID, "status").text
        assert not browser.execute_script(DROP_DATA, "text/plain", "s3cret")  # left to the browser, for the token field


# Drops data of one type on the token field; whether the page cancelled the drop's default action.
DROP_DATA = """
const transfer = new DataTransfer();
transfer.setData(arguments[0], arguments[1]);
const drop = new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true });
return !document.getElementById("token").dispatchEvent(drop);
"""

DROP_GREY_PICTURE = """
const done = arguments[arguments.length - 1];
const canvas = document.createElement("canvas");
canvas.width = canvas.height = 64;
const context = canvas.getContext("2d");
context.fillStyle = "#808080";
context.fillRect(0, 0, 64, 64);
canvas.toBlob((blob) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([blob], "dropped.png", { type: "image/png" }));
  const drop = new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true });
  document.getElementById("pick").dispatchEvent(drop);
  done();
});
"""


@pytest.mark.slow
def test_page_fits_a_phone_screen_with_a_long_photo_name(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "PXL_20240101_123456789_0123456789_0123456789_0123456789.MP.jpg"  # no break in it
    shutil.copy(PHOTO, photo)
    size = browser.get_window_size()
    browser.set_window_size(360, 740)
    try:
        with page_served(browser):
            browser.find_element(By.ID, "file").send_keys(str(photo))
            WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "result").is_displayed())
            assert browser.find_element(By.ID, "photo-name").text.replace("\n", "") == photo.name
            width = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            scrolled, shown = browser.execute_script(width)
            assert scrolled <= shown  # no sideways scrolling
    finally:
        browser.set_window_size(size["width"], size["height"])


@pytest.mark.slow
def test_page_names_the_photo_a_refusal_is_about(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import text_to_be_present_in_element
    from selenium.webdriver.support.ui import WebDriverWait

    big, notes = tmp_path / "big.jpg", tmp_path / "notes.txt"
    big.write_bytes(PHOTO.read_bytes() + bytes(2 << 20))  # past the 1 MiB limit
    notes.write_text("not a picture")
    with page_served(browser, "--max-body-mb", "1"):
        for path, said in ((big, "big.jpg: too large for this service: request body of"), (notes, "notes.txt: not ")):
            browser.find_element(By.ID, "file").send_keys(str(path))
            WebDriverWait(browser, 30).until(text_to_be_present_in_element((By.ID, "status"), said))
            assert not browser.find_element(By.ID, "status").text.startswith(f"{path.name}: {path.name}")
