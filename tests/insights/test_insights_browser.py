"""Insights end to end in headless Chromium: pick one of our methods, fetch, see the map.

The server runs in a subprocess (Insights' server thread is not a daemon); Chromium is driven
through selenium and Debian's chromedriver. The screenshot is kept in out/insights/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = ROOT / "out" / "insights"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Debian chromium and chromium-driver are not installed "
        "(make insights-env installs them with apt-get as root)",
    ),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Insights server exited: {process.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the Insights server did not listen on port {port}")


@pytest.fixture
def server_url() -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ)
    tests_app = str(ROOT / "tests" / "app")  # cli_models
    env["PYTHONPATH"] = os.pathsep.join([tests_app, str(ROOT), env.get("PYTHONPATH", "")])
    command = [
        sys.executable,
        "-m",
        "captum_smooth",
        "insights",
        "--port",
        str(port),
        "--model",
        "cli_models:tiny_cnn",
        "--images",
        "skimage:coffee",
        "skimage:rocket",
        "skimage:chelsea",
        "--size",
        "64",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
    )
    try:
        _wait_for(port, process, timeout=120)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="insights-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_insights_page_fetches_smoothgrad(server_url: str, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    driver.get(server_url)
    wait = WebDriverWait(driver, 60)
    method = wait.until(ec.presence_of_element_located((By.NAME, "selected_method")))
    wait.until(lambda d: "SmoothGrad" in [o.text for o in Select(method).options])
    options = [o.text for o in Select(method).options]
    for name in ("SmoothGrad", "AdaptGrad", "NoiseGrad", "FusionGrad", "SmoothTaylor"):
        assert name in options
    Select(method).select_by_visible_text("SmoothGrad")
    # Our float argument is a choice field (the page would parseInt a number field).
    noise = wait.until(ec.presence_of_element_located((By.NAME, "noise_level")))
    assert noise.tag_name == "select"
    Select(noise).select_by_visible_text("0.1")
    samples = driver.find_element(By.NAME, "nt_samples")
    samples.clear()
    samples.send_keys("4")
    driver.find_element(By.XPATH, "//button[normalize-space()='Fetch']").click()

    images = WebDriverWait(driver, 240).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "img[alt='attribution']")
    )
    assert images
    source = images[0].get_attribute("src")
    assert source.startswith("data:image/png;base64,") and len(source) > 200
    natural_width = driver.execute_script("return arguments[0].naturalWidth", images[0])
    assert natural_width > 0  # the browser decoded the rendered attribution image
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / "insights-smoothgrad.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 0
