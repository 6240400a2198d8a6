"""The viewer in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven by
Selenium): list, filter, play a clip, reject an item; the export then lacks it. Screenshots
of the list and item pages go to the test's tmp folder."""

from __future__ import annotations

import shutil
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest

from pipeline.storage import Warehouse
from pipeline.tasks import export_task
from pipeline.viewer.app import create_app

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"


def find_browser() -> tuple[str, str] | None:
    browser = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    driver = shutil.which(DRIVER)
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    found = find_browser()
    if found is None:
        message = (
            "NO HEADLESS BROWSER: the viewer's browser tests are SKIPPED. Install Debian's "
            "`chromium` and `chromium-driver` (`make test` does this with apt-get)."
        )
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(viewer_warehouse: Warehouse):
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(viewer_warehouse, reviewer="browser-test"),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline, "viewer did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


def test_list_filter_play_reject_then_export_lacks_it(
    browser, server, viewer_warehouse: Warehouse, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{server}/items")
    assert "Items" in browser.title
    Select(browser.find_element(By.ID, "filter-task")).select_by_value("auditorybench-pitch")
    Select(browser.find_element(By.ID, "filter-split")).select_by_value("test")
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("valid")
    browser.find_element(By.ID, "apply-filters").click()
    WebDriverWait(browser, 30).until(lambda d: "task=auditorybench-pitch" in d.current_url)
    expected = viewer_warehouse.rows(
        "SELECT count(*) AS n FROM items_current WHERE task = 'auditorybench-pitch' "
        "AND split = 'test' AND validation_status = 'valid'"
    )[0]["n"]
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.item-row")
    assert len(rows) == min(expected, 50) > 0
    assert browser.find_element(By.ID, "total").text.startswith(f"{expected} items")
    browser.save_screenshot(str(tmp_path / "list.png"))

    item_id = rows[-1].get_attribute("data-item-id")
    rows[-1].find_element(By.TAG_NAME, "a").click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith(f"/items/{item_id}"))
    players = browser.find_elements(By.CSS_SELECTOR, "audio.clip-audio")
    assert len(players) == 2  # a pitch pair: one player per clip
    duration = browser.execute_async_script(
        """
        const [audio, done] = [arguments[0], arguments[arguments.length - 1]];
        const report = () => done(audio.duration);
        audio.addEventListener('error', () => done('error ' + (audio.error && audio.error.code)));
        if (audio.readyState >= 1) { report(); } else { audio.addEventListener('loadedmetadata', report); }
        audio.load();
        audio.play().catch(() => {});
        """,
        players[0],
    )
    assert isinstance(duration, int | float) and 0 < duration < 3600, duration
    browser.save_screenshot(str(tmp_path / "item.png"))

    browser.find_element(By.ID, "reason").send_keys("clip is not what the span says")
    browser.find_element(By.ID, "reject").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "reviews"))
    assert "clip is not what the span says" in browser.find_element(By.ID, "reviews").text
    assert "browser-test" in browser.find_element(By.ID, "reviews").text

    out = tmp_path / "export"
    export_task(viewer_warehouse, "auditorybench-pitch", "jsonl", out)
    exported = (out / "test.jsonl").read_text()
    assert item_id not in exported and rows and exported.count('"key"') == expected - 1
    for name in ("list.png", "item.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
