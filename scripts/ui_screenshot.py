"""Screenshot of the web page for the docs: the shipped demo LSMs and the cascade answering one
example clip, in headless Chromium (Debian's chromium + chromium-driver).

    .venv/bin/python scripts/ui_screenshot.py docs/ui.png [--example demo-rms] [--instruction "..."]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_serve import _free_port  # noqa: E402


def main() -> None:
    import subprocess
    import time

    import httpx
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--example", default="demo-rms")
    parser.add_argument("--instruction", default="Give a short title for this text")
    args = parser.parse_args()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "selfpowered.cli", "serve", "--port", str(port)], cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1320,760",
                     f"--user-data-dir={tempfile.mkdtemp()}"):  # fmt: skip
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        browser.get(f"{base}/ui")
        wait = WebDriverWait(browser, 300)
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, f'#examples button[data-id="{args.example}"]'))).click()
        browser.find_element(By.ID, "instruction").send_keys(args.instruction)
        browser.find_element(By.ID, "compare").click()
        wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "tr.result-row")))
        # the whole page in one picture: grow the window to the document's height, back to the top
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1320, min(int(height) + 40, 2400))
        browser.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)
        args.out.write_bytes(browser.get_screenshot_as_png())
        browser.quit()
        print(f"wrote {args.out}")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
