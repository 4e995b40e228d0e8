"""The web console in headless Chromium on a running demo hub: what an operator and a commander do on a shift.

`gridhub up --demo` runs as a user runs it; Playwright drives Debian's Chromium (its own browser download cannot
work here). The screenshots the README shows are taken here, at 1366×768, so they stay current.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from playwright.sync_api import Browser, Page, expect, sync_playwright

from core import kafka
from core.city import load_city
from core.settings import Settings
from domain.detections import Detection, DetectionKind, Phase, encode_detection
from domain.registry import ZoneKind
from gridhub.runtime.up import DEMO_SPEED
from simulators.cameras.scene import Scene
from simulators.scenario import IncidentKind, Scenario, ScenarioConfig
from tests.integration.test_streams_pipeline import eventually

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


CAMERA = "cam-hunan-02"
BOX = (40, 260, 80, 60)


def snapshot_jpeg(box: tuple[int, int, int, int] | None = None) -> bytes:
    """A JPEG frame of the demo camera's own scene, with the detection's box drawn if there is one."""
    camera = load_city(Settings()).registry.cameras[CAMERA]
    frame = Scene.for_camera(camera, camera.width, camera.height).frame_at(45.0)
    if box is not None:
        cv2.rectangle(frame, box[:2], (box[0] + box[2], box[1] + box[3]), (0, 0, 255), 2)
    return bytes(cv2.imencode(".jpg", frame)[1].tobytes())


def pending_detections(hub: Hub, cells: list[str]) -> None:
    """A stall detection awaiting review in each cell, as the demo cameras report them (confidence under
    auto-filing), each with a snapshot in the hub's evidence store: a frame of the camera's own scene, box drawn."""
    now_ms = int(time.time() * 1000)
    jpeg = snapshot_jpeg(BOX)
    camera = CAMERA
    (hub.evidence / camera).mkdir(parents=True, exist_ok=True)
    events = []
    for n, cell in enumerate(cells):
        snapshot = f"{camera}/console-test-{now_ms}-{n}.jpg"
        (hub.evidence / snapshot).write_bytes(jpeg)
        events.append((cell, encode_detection(Detection(
            f"console-test/{now_ms}/{n}", Phase.START, camera, "crossing", ZoneKind.NO_VENDING,
            DetectionKind.STALL, cell, now_ms - 60_000, now_ms, 0.62, BOX, snapshot))))

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=hub.kafka)
        await producer.start()
        try:
            for cell, value in events:
                await producer.send(kafka.DETECTIONS, value, key=cell.encode())
            await producer.flush()
        finally:
            await producer.stop()

    # Playwright's sync API runs an event loop in this thread: the producer gets a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, produce()).result()


def pending_detection(hub: Hub) -> None:
    """One stall detection awaiting review in STALL_CELL."""
    pending_detections(hub, [STALL_CELL])


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
    # The routing table dispatched it when the operator confirmed it (立案即派遣).
    expect(commander.locator('[data-testid="timeline-entry"][data-action="dispatch"]')).to_have_count(1)
    for action, note in (("handle", "vendor moved on"), ("verify_pass", "")):
        commander.get_by_test_id(f"action-{action}").click()
        if note:
            commander.get_by_test_id("action-note").fill(note)
        if action == "handle":  # the street team's photo of the cleared kerb
            commander.get_by_test_id("action-photo").set_input_files(
                files=[{"name": "cleared.jpg", "mimeType": "image/jpeg", "buffer": snapshot_jpeg()}])
        commander.get_by_test_id("action-submit").click()
        expect(commander.locator(f'[data-testid="timeline-entry"][data-action="{action}"]')).to_have_count(
            1, timeout=15_000)
    expect(detail.locator(".ev-photo img[src^='blob:']")).to_have_count(1)  # the handling photo, as evidence
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


def test_screenshots_of_the_map_and_the_board(browser: Browser, hub: Hub) -> None:
    page = console(browser, hub, "commander", "map")
    expect(page.get_by_test_id("cell").first).to_be_visible(timeout=15_000)
    page.screenshot(path=str(SCREENSHOTS / "map.png"))
    page.goto(f"{hub.api_url}/#/board")
    page.get_by_test_id("case-row").first.click()
    expect(page.get_by_test_id("case-detail")).to_be_visible(timeout=15_000)
    page.screenshot(path=str(SCREENSHOTS / "board.png"))


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


def test_the_console_says_when_the_api_is_unreachable_and_recovers(browser: Browser, hub: Hub) -> None:
    page = console(browser, hub, "commander", "board")
    expect(page.get_by_test_id("case-row").first).to_be_visible(timeout=15_000)
    page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))
    page.goto(f"{hub.api_url}/#/devices")  # the view's requests fail now
    banner = page.locator("#banner")
    expect(banner).to_be_visible(timeout=15_000)
    expect(banner).to_have_class("banner down")
    page.unroute("**/api/v1/**")
    expect(banner).to_have_class("banner ok", timeout=15_000)  # the retried requests answer
    expect(page.get_by_test_id("device-row").first).to_be_visible(timeout=15_000)
    expect(banner).to_be_hidden(timeout=15_000)


SHIFT_ROUND = 60  # the demo city has 67 cells no camera watches: one pending stall in each of 60 of them a round


def test_the_review_queue_is_as_light_after_a_long_shift(browser: Browser, hub: Hub) -> None:
    """An hour of review, compressed: two rounds of 60 detections decided from the keyboard, paging back and
    forth between them. The page must end with the nodes it had and without a growing heap."""
    city = load_city(Settings())
    watched = {camera.grid_code for camera in city.registry.cameras.values()} | {STALL_CELL}
    cells = sorted(str(cell.code) for cell in city.cells if str(cell.code) not in watched)[:SHIFT_ROUND]
    assert len(cells) == SHIFT_ROUND
    page = console(browser, hub, "operator", "review")
    item = page.locator('[data-testid="review-item"][data-case-id]')
    remaining = page.get_by_test_id("review-remaining")
    devtools = page.context.new_cdp_session(page)

    def weigh() -> tuple[int, int]:
        """DOM nodes, and the JS heap after a collection (not whatever garbage happens to be left)."""
        devtools.send("HeapProfiler.collectGarbage")
        return (page.evaluate("document.getElementsByTagName('*').length"),
                int(devtools.send("Runtime.getHeapUsage")["usedSize"]))

    def left() -> int:
        return int(re.sub(r"\D", "", remaining.text_content() or ""))

    seconds = []
    # Round 1 dismisses every one (the cases are voided), so round 2's detections open new cases in the same cells.
    for round_ in (1, 2):
        pending_detections(hub, cells)
        eventually(lambda: left() >= SHIFT_ROUND, 60, f"{SHIFT_ROUND} detections queued", 1)
        for n in range(SHIFT_ROUND):
            if (round_, n) == (1, 10):
                nodes_before, heap_before = weigh()  # the first items' images and caches are loaded by now
            case_id = item.get_attribute("data-case-id")
            for key in "jjjkkk":
                page.keyboard.press(key)
            expect(item).to_have_attribute("data-case-id", case_id or "")
            started = time.perf_counter()
            if round_ == 2 and n % 2:
                page.keyboard.press("c")
            else:
                page.keyboard.press("d")
                page.keyboard.press("1")  # not a stall: the number dismisses
            try:
                expect(page.locator(f'[data-testid="review-item"][data-case-id="{case_id}"]')).to_have_count(
                    0, timeout=15_000)
            except AssertionError as exc:
                said = page.locator(".review-message").text_content()
                focus = page.evaluate("[document.querySelector('.review-reasons').open, "
                                      "document.activeElement?.outerHTML.slice(0, 160)]")
                shot = Path(tempfile.gettempdir()) / "gridhub-review-failure.png"
                page.screenshot(path=str(shot))
                raise AssertionError(f"decision {n} of round {round_} on {case_id} did not leave the queue; "
                                     f"the page says {said!r}; reasons open, focus: {focus}; see {shot}") from exc
            seconds.append(time.perf_counter() - started)
    nodes_after, heap_after = weigh()
    print(f"\nreview shift: {len(seconds)} decisions; decision to next item, median of the first 20 "
          f"{1000 * sorted(seconds[:20])[10]:.0f} ms, of the last 20 {1000 * sorted(seconds[-20:])[10]:.0f} ms; "
          f"DOM {nodes_before} → {nodes_after} nodes, JS heap {heap_before / 2**20:.1f} → {heap_after / 2**20:.1f} MiB")
    assert nodes_after <= nodes_before + 20  # the message line and the thumbnails may differ a little
    assert heap_after - heap_before < 4 * 2**20


def blocked_sewer_well() -> str:
    """The well of the demo's opening blocked sewer (seed 0): its water climbs to the cover a minute in."""
    city = load_city(Settings())
    scenario = Scenario(list(city.registry.devices.values()), ScenarioConfig(seed=0, speed=DEMO_SPEED), time.time())
    return next(i.device_id for i in scenario.incidents(0) if i.kind is IncidentKind.SEWER_BLOCKED)


def test_screenshot_of_a_telemetry_chart_of_the_blocked_sewer(browser: Browser, hub: Hub) -> None:
    """A manhole's water level against its well depth and the alarm line, the water at the alarm line."""
    well = blocked_sewer_well()
    device = httpx.get(f"{hub.api_url}/api/v1/devices/{well}", headers=hub.headers("viewer")).json()
    alarm_cm = device["well_depth_cm"] - Settings().streams.manhole_water_margin_cm
    eventually(lambda: any((w["water_level_cm_max"] or 0) >= alarm_cm for w in httpx.get(
        f"{hub.api_url}/api/v1/devices/{well}/telemetry", headers=hub.headers("viewer")).json()["windows"]),
        120, f"{well}'s water at the alarm line", poll_s=2)
    page = console(browser, hub, "commander", f"charts?device={well}&range=1h")
    expect(page.get_by_test_id("threshold")).to_have_count(2, timeout=15_000)
    expect(page.locator("#view")).to_contain_text(well)
    page.screenshot(path=str(SCREENSHOTS / "telemetry.png"))
