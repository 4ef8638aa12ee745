"""The web page, tested as a person uses it: a real headless Chromium (Debian's chromium +
chromium-driver, driven by selenium) opens `/ui` on a running `selfpowered serve`, uploads a clip,
types an instruction, compares, and finds every model's answer and each LSM's bias bar; a file
that is not audio gives an error message on the page, not a stack trace."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf

from tests.helpers import tone
from tests.test_serve import _start

selenium = pytest.importorskip("selenium")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (make setup installs them as root)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from tests.tiny import tiny_lsm

    folder = tmp_path_factory.mktemp("ui")
    tiny_lsm().save_pretrained(folder / "tiny")
    process, base = _start(folder / "tiny", "--set", "cascade=true")  # Whisper tiny.en -> the tiny base LLM
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,900", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait_for(browser, css: str, timeout: float = 120):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:  # say what the page showed instead
        state = {name: browser.find_element(By.ID, name).text for name in ("status", "error", "results")}
        logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
        raise AssertionError(f"{css} never appeared; page: {state}; console: {logs[-5:]}") from None


def test_upload_a_clip_compare_and_read_every_answer_with_its_bias_bar(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    clip = tmp_path / "clip.wav"
    sf.write(clip, tone(1.5), 16_000)
    browser.get(f"{site}/ui")
    _wait_for(browser, "#examples button")  # the example clips are one click away
    labels = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#examples button")]
    assert any("held-out voice" in label for label in labels)
    browser.find_element(By.ID, "file").send_keys(str(clip))
    browser.find_element(By.CSS_SELECTOR, '#instructions button[data-text^="Give a short title"]').click()
    assert browser.find_element(By.ID, "instruction").get_attribute("value") == "Give a short title for this text"
    browser.find_element(By.ID, "compare").click()
    _wait_for(browser, "tr.result-row")
    rows = {r.get_attribute("data-system"): r for r in browser.find_elements(By.CSS_SELECTOR, "tr.result-row")}
    assert set(rows) == {"tiny", "cascade"}
    assert rows["tiny"].find_elements(By.CSS_SELECTOR, ".bias-bar span") and "speech" in rows["tiny"].text
    assert not rows["cascade"].find_elements(By.CSS_SELECTOR, ".bias-bar")  # saliency is for LSMs
    assert browser.find_element(By.CSS_SELECTOR, "tr.target")  # the base LLM on the transcript
    assert " s" in rows["tiny"].find_element(By.CSS_SELECTOR, "td.time").text
    Path("/tmp").joinpath("selfpowered-ui-test.png").write_bytes(browser.get_screenshot_as_png())


def test_an_example_clip_runs_with_its_known_transcript(site, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{site}/ui")
    _wait_for(browser, "#examples button")
    browser.find_element(By.CSS_SELECTOR, '#examples button[data-id="demo-joe"]').click()
    browser.find_element(By.ID, "instruction").send_keys("Transcribe the speech")
    browser.find_element(By.ID, "compare").click()
    transcript = _wait_for(browser, ".transcript").text
    assert "known (example)" in transcript and "borrowed a ladder" in transcript


def test_a_bad_file_is_a_message_on_the_page(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    browser.get(f"{site}/ui")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    browser.find_element(By.ID, "instruction").send_keys("Transcribe the speech")
    browser.find_element(By.ID, "compare").click()
    message = _wait_for(browser, "#error").text
    assert "does not decode" in message and "Traceback" not in browser.page_source
    assert browser.find_element(By.ID, "compare").is_enabled()  # the page is usable again
