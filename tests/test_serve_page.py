"""The page at / in a real headless browser (Debian's chromium through Selenium): upload a photo, read the label."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_client import ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHOTO = sorted((Path(__file__).parent / "data" / "photos" / "shoes").glob("*.jpg"))[0]


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
    server = ServerProcess()
    try:
        browser.get(f"http://{server.host}:{server.port}/")
        browser.find_element(By.ID, "file").send_keys(str(PHOTO))
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "result").is_displayed())
        label = browser.find_element(By.ID, "label").text
        want = f"unsure (best guess: {expected['label']})" if expected["unsure"] else expected["label"]
        assert label == want
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert [bar.text.rsplit(" ", 2)[0] for bar in bars] == [entry["label"] for entry in expected["top_k"][:3]]
        seen = browser.find_element(By.ID, "seen")
        assert browser.execute_script("return arguments[0].naturalWidth", seen) == 28
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalHeight", seen) == 28
    finally:
        assert server.stop()[0] == 0
