"""Fixtures for the UI's browser tests (what they share is in ``ui_browser.py``,
imported under its own name: a test module importing ``conftest`` would get
whichever directory's conftest was imported first)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_browser import CHROMEDRIVER, CHROMIUM, DOCS_IMG, HEIGHT, WIDTH, Browser


@pytest.fixture(scope="session")
def ui_loop() -> Iterator[Any]:
    """The thread that runs the scripted backends (tests/proxy/backends.py)."""
    from backends import BackendLoop  # noqa: PLC0415 - on the path set above

    loop = BackendLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        from selenium import webdriver  # noqa: PLC0415
    except ImportError:
        pytest.fail("the UI's browser tests need selenium: pip install 'selenium>=4.20'")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(
                f"{path} is missing: run `bash scripts/install_browser.sh` (make test does)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={WIDTH},{HEIGHT}",
        "--force-device-scale-factor=1",
        "--lang=en-GB",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
    )
    driver.set_page_load_timeout(30)
    try:
        yield Browser(driver)
    finally:
        driver.quit()


@pytest.fixture
def screenshot(browser: Browser, tmp_path: Path) -> Callable[..., Path]:
    """``screenshot("trace")`` saves ``<tmp_path>/screenshots/trace.png`` (and copies it to
    ``docs/telemetry/img/ui-trace.png`` when ``SEAWALL_UPDATE_SCREENSHOTS=1``, unless
    ``docs=False``)."""
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)

    def take(name: str, *, docs: bool = True) -> Path:
        path = folder / f"{name}.png"
        assert browser.driver.save_screenshot(str(path)), f"no screenshot {path}"
        if docs and os.environ.get("SEAWALL_UPDATE_SCREENSHOTS") == "1":
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_IMG / f"ui-{name}.png")
        return path

    return take
