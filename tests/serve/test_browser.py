"""The web page in a real headless Chromium: one generation clicked through to the gallery."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.serve.conftest import Live

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (Debian packages chromium, "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1000,640"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER),
                              options=options)
    yield driver
    driver.quit()


def _wait(condition, timeout_s: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError("the page did not get there in time")


def test_one_generation_clicked_through_shows_a_picture(live: Live, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(live.url + "/")
    _wait(lambda: "flux-test-dev" in browser.find_element(By.ID, "model").text)
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("a red circle above a blue square")
    Select(browser.find_element(By.ID, "size")).select_by_visible_text("128x128")
    browser.find_element(By.ID, "steps").send_keys("24")
    browser.find_element(By.ID, "seed").send_keys("42")
    browser.find_element(By.ID, "go").click()
    image = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#gallery figure img"))[0]
    _wait(lambda: browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", image))
    assert browser.execute_script("return arguments[0].naturalWidth", image) == 128
    caption = browser.find_element(By.CSS_SELECTOR, "#gallery figcaption").text
    assert "seed 42" in caption and "24 steps" in caption
    assert browser.find_element(By.ID, "status").text.startswith("Ready")
    # A preview from the event stream was shown while it ran.
    assert browser.find_element(By.ID, "preview").get_attribute("src").startswith("data:image")
    if os.environ.get("FLUXAI_SCREENSHOT"):
        browser.save_screenshot(os.environ["FLUXAI_SCREENSHOT"])
