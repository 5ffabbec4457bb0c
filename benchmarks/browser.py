"""A real headless browser for the dashboard's tests and benchmarks: Debian's chromium, driven by Selenium.

The paths are fixed (``/usr/bin/chromium``, ``/usr/bin/chromedriver``: the ``chromium`` and
``chromium-driver`` packages, which ``make test`` installs) so Selenium never tries to download a
browser — there is no internet to download it from, and a silent different browser would not be
the one tested.
"""

from __future__ import annotations

import os
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("EDGE_MCEPL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("EDGE_MCEPL_CHROMEDRIVER", "/usr/bin/chromedriver")


def headless_chromium(width: int = 1400, height: int = 1000) -> webdriver.Chrome:
    """A headless Chromium that records its console (``driver.get_log("browser")``)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            raise RuntimeError(f"{path} not found: run scripts/ensure-system-packages.sh (make test does)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def console_errors(driver: webdriver.Chrome) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
