"""`runctl dashboard` in a real headless Chromium (Debian's package, driven by Playwright through
``executable_path``: no browser is ever downloaded), against a real `runctl dashboard` process
and a real `runctl local` job.

Where Chromium or Playwright is missing these tests skip and say why (``./dev test`` installs
Chromium when it runs as root with apt-get); under ``CI=true`` they fail instead, so a CI
machine without a browser cannot pass them silently. With ``DOCS_SCREENSHOTS=1`` they
also refresh the guide's screenshots in docs/images/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runctl.core.ledger import Ledger
from tests.conftest import REPO
from tests.support.dashboard_ledger import known_ledger

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCRIPT = REPO / "tests" / "scripts" / "dashboard_train.py"
DOCS_IMAGES = REPO / "docs" / "images"
TIMEOUT_MS = 45_000  # generous: a loaded 2-core machine

pytestmark = pytest.mark.slow


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    if not Path(CHROMIUM).exists():
        _missing("Debian's chromium is not installed: ./dev test installs it when run as root with apt-get")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is missing: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _poll(condition: Callable[[], Any], what: str, timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Dashboard:
    """A `runctl dashboard` process on a free port."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runctl", "dashboard", "--port", str(self.port), "--interval", "0.5",
             *args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.banner = self.proc.stdout.readline()  # printed before the server starts
        assert "runctl dashboard: http" in self.banner, self.banner
        self.url = f"http://127.0.0.1:{self.port}"
        _poll(self._answers, "the dashboard to answer")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/static/dashboard.css", timeout=5)
        except urllib.error.HTTPError:
            return True  # it answered (401 when it needs its token)
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Ctrl-C, while the test's page still holds its event stream open: it must stop."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("runctl dashboard did not stop on Ctrl-C with a page open") from None


@pytest.fixture
def dashboards(tmp_path: Path) -> Iterator[Callable[..., Dashboard]]:
    started: list[Dashboard] = []

    def start(*args: str) -> Dashboard:
        started.append(Dashboard(tmp_path, *args))
        return started[-1]

    yield start
    for board in started:
        board.close()


def _screenshot(page: Any, name: str, tmp_path: Path) -> bytes:
    """A PNG of the window (1280×900); kept for the guide when DOCS_SCREENSHOTS=1."""
    data: bytes = page.screenshot(type="png")
    if os.environ.get("DOCS_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(exist_ok=True)
        (DOCS_IMAGES / f"dashboard-{name}.png").write_bytes(data)
    (tmp_path / f"{name}.png").write_bytes(data)
    return data


def _distinct_pixel_bytes(png: bytes) -> int:
    """How many distinct byte values the PNG's image data holds: a blank (one-colour) picture
    has a handful, a drawn chart many more. Enough to tell the two apart without an image library."""
    pos, idat = 8, b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        if kind == b"IDAT":
            idat += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


def test_now_shows_a_running_local_job_whose_cost_grows_and_cancel_stops_it_gracefully(
    page: Any, dashboards: Callable[..., Dashboard], tmp_path: Path
) -> None:
    env = {**os.environ, "RUNCTL_LOCAL__RATE_USD_PER_HOUR": "36"}  # a cent every second
    job_proc = subprocess.Popen(
        [sys.executable, "-m", "runctl", "local", str(SCRIPT), "--name", "vision.browser"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with Ledger.open_default() as ledger:
            job = _poll(lambda: next(iter(ledger.list_jobs(states=("running",))), None), "the job to run")
            log = Path(job.log_path)
            _poll(lambda: log.exists() and "ready step=" in log.read_text(), "the script to start")
            board = dashboards()
            page.goto(f"{board.url}/now")
            row = page.locator("table.jobs tbody tr", has_text=job.id)
            row.wait_for()
            assert "vision.browser" in row.inner_text() and "vision" in row.inner_text()  # name, project
            first = float(row.locator("span.cost").get_attribute("data-usd"))
            page.wait_for_function(  # refreshed by server-sent events, no reload
                "([id, before]) => [...document.querySelectorAll('table.jobs tbody tr')].some(r =>"
                " r.textContent.includes(id)"
                " && parseFloat(r.querySelector('span.cost').dataset.usd) > before)",
                arg=[job.id, first],
            )
            _screenshot(page, "now", tmp_path)

            page.goto(f"{board.url}/jobs/{job.id}")
            page.locator("#log", has_text="ready step=").wait_for()
            assert "<script>window.pwned" in page.locator("#log").inner_text()  # shown as text...
            assert page.evaluate("window.pwned") is None  # ...never run, neither the script nor the img
            assert page.locator("#log img").count() == 0
            _screenshot(page, "job", tmp_path)

            page.goto(f"{board.url}/now")
            page.on("dialog", lambda dialog: dialog.accept())
            page.locator("table.jobs tbody tr", has_text=job.id).get_by_role("button", name="cancel").click()
            page.wait_for_url(re.compile(rf"/jobs/{job.id}$"))
            page.locator("#job-state", has_text="cancelled").wait_for()
            assert job_proc.wait(timeout=60) is not None
            ended = ledger.get_job(job.id)
        assert ended.state == "cancelled"
        stopped = re.search(r"stopped at step (\d+)", log.read_text())
        assert stopped, log.read_text()
        saved = Path(ended.last_checkpoint or "")  # the step it stopped at, saved on the way out
        assert saved.is_file() and saved.name == f"ckpt-{int(stopped.group(1)):08d}.pkl", saved
    finally:
        if job_proc.poll() is None:
            job_proc.kill()
            job_proc.wait()


def test_money_chart_renders_one_series_per_provider(
    page: Any, dashboards: Callable[..., Dashboard], tmp_path: Path
) -> None:
    with Ledger.open_default() as ledger:
        known_ledger(ledger)
    board = dashboards()
    page.goto(f"{board.url}/money")
    chart = page.locator("svg.chart")
    chart.wait_for()
    assert chart.locator("g.series").count() == 3  # aws, local, runpod
    assert chart.locator("g.series rect").count() >= 4
    assert page.locator("table.numbers tbody tr").count() == 30  # the same numbers, a row a day
    assert _distinct_pixel_bytes(chart.screenshot(type="png")) > 16  # drawn, not blank
    _screenshot(page, "money", tmp_path)
    page.goto(f"{board.url}/reliability")
    page.locator("svg.chart").first.wait_for()
    assert page.locator("svg.chart").count() == 2
    _screenshot(page, "reliability", tmp_path)


def test_bound_beyond_loopback_a_request_without_the_token_is_refused(
    page: Any, dashboards: Callable[..., Dashboard]
) -> None:
    board = dashboards("--host", "0.0.0.0")  # listens everywhere; this test talks to loopback only
    token = re.search(r"token=([\w-]+)", board.banner)
    assert token, board.banner
    refused = page.goto(f"{board.url}/now")
    assert refused is not None and refused.status == 401
    assert "token" in page.content()
    opened = page.goto(f"{board.url}/now?token={token.group(1)}")
    assert opened is not None and opened.status == 200
    later = page.goto(f"{board.url}/money")  # the cookie carries the token from then on
    assert later is not None and later.status == 200
