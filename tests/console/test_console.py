"""The web console in headless Chromium on a running demo hub: what an operator and a commander do on a shift.

`gridhub up --demo` runs as a user runs it; Playwright drives Debian's Chromium (its own browser download cannot
work here). The screenshots the README shows are taken here, at 1366×768, so they stay current.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from core import kafka
from core.city import load_city
from core.settings import Settings
from domain.detections import Detection, DetectionKind, Phase, encode_detection
from domain.registry import ZoneKind
from simulators.cameras.scene import Scene
from tests.integration.test_streams_pipeline import _produce, eventually

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1366, "height": 768}
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
STALL_CELL = "310104004002003"  # 湖南路街道: no demo camera watches it, so the injected stalls are its only ones


@dataclass
class Hub:
    api_url: str
    kafka: str
    tokens: dict[str, str]
    evidence: Path

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    state = tmp_path_factory.mktemp("console-hub")
    process = subprocess.Popen(
        [sys.executable, "-m", "gridhub", "up", "--demo", "--state-dir", str(state), "--api-port", "0",
         "--mqtt-port", "0", "--kafka-port", "0"],
        stdout=(state / "up.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "GRIDHUB_LOG_LEVEL": "warning"})
    try:
        ready_file = state / "ready.json"
        ready = eventually(lambda: ready_file.exists() and orjson.loads(ready_file.read_bytes()), 120,
                           "the demo hub's ready.json")
        hub = Hub(ready["api_url"], ready["kafka_bootstrap"], ready["tokens"], state / "evidence")
        eventually(lambda: httpx.get(f"{hub.api_url}/healthz").json()["commands"] == "ok", 60, "the command bus")
        yield hub
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which("chromium") is None:
        pytest.fail("the console's browser test needs Debian's Chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


def console(browser: Browser, hub: Hub, role: str, view: str = "board") -> Page:
    page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    page.goto(f"{hub.api_url}/#token={hub.tokens[role]}")
    page.wait_for_selector("#tabs a")
    page.goto(f"{hub.api_url}/#/{view}")
    return page


def pending_detection(hub: Hub) -> None:
    """A stall detection awaiting review, as the demo cameras report them (confidence under auto-filing)."""
    now_ms = int(time.time() * 1000)
    box = (40, 260, 80, 60)
    # Its snapshot: a frame of the demo camera's own scene with the box drawn, in the hub's evidence store.
    camera = load_city(Settings()).registry.cameras["cam-hunan-02"]
    frame = Scene.for_camera(camera, camera.width, camera.height).frame_at(45.0)
    cv2.rectangle(frame, box[:2], (box[0] + box[2], box[1] + box[3]), (0, 0, 255), 2)
    snapshot = f"{camera.id}/console-test-{now_ms}.jpg"
    (hub.evidence / camera.id).mkdir(parents=True, exist_ok=True)
    (hub.evidence / snapshot).write_bytes(cv2.imencode(".jpg", frame)[1].tobytes())
    event = Detection(f"console-test/{now_ms}", Phase.START, camera.id, "crossing", ZoneKind.NO_VENDING,
                      DetectionKind.STALL, STALL_CELL, now_ms - 60_000, now_ms, 0.62, box, snapshot)
    # Playwright's sync API runs an event loop in this thread: the producer gets a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _produce(hub.kafka, kafka.DETECTIONS, STALL_CELL, encode_detection(event))).result()


def kpi(page: Page, field: str) -> str:
    """The total of one figure on the figures view, today, as its cell holds it ('' when there is no data)."""
    page.goto(page.url.split("#")[0] + "#/figures")
    cell = page.get_by_test_id(f"kpi-total-{field}")
    expect(cell).to_be_attached(timeout=15_000)
    return cell.get_attribute("data-value") or ""


def test_an_operator_confirms_a_detection_and_a_commander_runs_it_to_closed(browser: Browser, hub: Hub) -> None:
    commander = console(browser, hub, "commander", "figures")
    grassroots_before = kpi(commander, "grassroots_rate")
    pending_detection(hub)
    operator = console(browser, hub, "operator", "review")
    item = operator.locator('[data-testid="review-item"][data-case-id]')
    expect(item).to_be_visible(timeout=30_000)
    case_id = item.get_attribute("data-case-id")
    assert case_id
    operator.screenshot(path=str(SCREENSHOTS / "review.png"))
    operator.keyboard.press("c")  # confirm, with the keyboard
    expect(operator.locator(f'[data-testid="review-item"][data-case-id="{case_id}"]')).to_have_count(0,
                                                                                                      timeout=15_000)

    grid_code = httpx.get(f"{hub.api_url}/api/v1/cases/{case_id}", headers=hub.headers("viewer")).json()["grid_code"]
    commander.goto(f"{hub.api_url}/#/map")
    cell = commander.locator(f'[data-testid="cell"][data-code="{grid_code}"]')
    expect(cell).not_to_have_attribute("data-open", "0", timeout=15_000)  # the confirmed case, on the map
    commander.goto(f"{hub.api_url}/#/board")
    row = commander.locator(f'[data-testid="case-row"][data-case-id="{case_id}"]')
    expect(row).to_be_visible(timeout=15_000)
    row.click()
    detail = commander.get_by_test_id("case-detail")
    expect(detail).to_have_attribute("data-case-id", case_id)
    for action, note in (("handle", "vendor moved on"), ("verify_pass", "")):
        commander.get_by_test_id(f"action-{action}").click()
        if note:
            commander.get_by_test_id("action-note").fill(note)
        commander.get_by_test_id("action-submit").click()
        expect(commander.locator(f'[data-testid="timeline-entry"][data-action="{action}"]')).to_have_count(
            1, timeout=15_000)
    expect(commander.locator(f'[data-testid="case-row"][data-case-id="{case_id}"]')).to_have_attribute(
        "data-state", "closed", timeout=15_000)
    assert kpi(commander, "grassroots_rate") != grassroots_before  # 基层处置率 counts the case closed today


def test_a_citizen_report_shows_on_the_open_cases_timeline(browser: Browser, hub: Hub) -> None:
    pending_detection(hub)
    detections = eventually(lambda: httpx.get(f"{hub.api_url}/api/v1/detections", params={"grid": STALL_CELL},
                                              headers=hub.headers("viewer")).json()["items"], 30, "the detection")
    case_id = detections[0]["case_id"]
    cell = httpx.get(f"{hub.api_url}/api/v1/grids/geojson", params={"prefix": STALL_CELL},
                     headers=hub.headers("viewer")).json()["features"][0]["geometry"]["coordinates"][0]
    lon, lat = sum(p[0] for p in cell[:-1]) / (len(cell) - 1), sum(p[1] for p in cell[:-1]) / (len(cell) - 1)
    posted = httpx.post(f"{hub.api_url}/open311/v2/requests.json", data={
        "service_code": "0501", "lat": str(lat), "long": str(lon), "description": "小贩占道 a cart on the kerb"})
    assert posted.status_code == 201, posted.text
    assert posted.json()[0]["service_request_id"] == case_id

    commander = console(browser, hub, "commander", f"board?case={case_id}")
    detail = commander.get_by_test_id("case-detail")
    expect(detail).to_have_attribute("data-case-id", case_id, timeout=15_000)
    expect(detail).to_contain_text("小贩占道 a cart on the kerb", timeout=15_000)


def test_a_viewer_sees_cases_but_no_action_buttons(browser: Browser, hub: Hub) -> None:
    viewer = console(browser, hub, "viewer", "board")
    row = viewer.get_by_test_id("case-row").first
    expect(row).to_be_visible(timeout=30_000)
    row.click()
    expect(viewer.get_by_test_id("case-detail")).to_be_visible()
    expect(viewer.locator('[data-testid^="action-"]')).to_have_count(0)


def test_screenshots_of_the_map_the_board_and_a_telemetry_chart(browser: Browser, hub: Hub) -> None:
    page = console(browser, hub, "commander", "map")
    expect(page.get_by_test_id("cell").first).to_be_visible(timeout=15_000)
    page.screenshot(path=str(SCREENSHOTS / "map.png"))
    page.goto(f"{hub.api_url}/#/board")
    page.get_by_test_id("case-row").first.click()
    expect(page.get_by_test_id("case-detail")).to_be_visible(timeout=15_000)
    page.screenshot(path=str(SCREENSHOTS / "board.png"))
    page.goto(f"{hub.api_url}/#/charts?device=rain-0001")
    expect(page.get_by_test_id("threshold").first).to_be_attached(timeout=15_000)
    page.screenshot(path=str(SCREENSHOTS / "telemetry.png"))


def test_the_first_load_is_measured_with_its_page_weight(browser: Browser, hub: Hub) -> None:
    """Not a timing assertion (that would flake on two cores): the figures of this run, printed for the note."""
    page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    started = time.perf_counter()
    page.goto(f"{hub.api_url}/#token={hub.tokens['commander']}")
    expect(page.get_by_test_id("case-row").first).to_be_visible(timeout=30_000)
    shown_s = time.perf_counter() - started
    weight = page.evaluate("performance.getEntriesByType('resource').concat(performance.getEntriesByType("
                           "'navigation')).filter(e => !e.name.includes('/api/')).reduce((s, e) => s + "
                           "(e.encodedBodySize || 0), 0)")
    print(f"\nconsole first load: board with cases shown after {shown_s * 1000:.0f} ms; "
          f"page weight {weight / 1024:.0f} KiB (HTML, CSS, JS)")
    assert weight > 0
