"""`gridhub bench api`: the case list under concurrent clients on a large case table, and the action round trip.

A fresh database is seeded with `cases` cases over about 90 days (every state, category, department, source
and severity, across the city's cells) through the case sink, as the stream worker's sink writes them. The
embedded Kafka, a real stream worker and the API run in their own processes. `clients` concurrent clients then
page through `GET /api/v1/cases` with a mix of filters (the district, a street, a community, a cell, a state,
a category, a department, a source, a severity, a week, overdue cases by deadline), each first page followed by
up to three `next_cursor` pages. The baseline is the same mix of `list_cases` calls run directly against the
database from this process by as many threads: what is left is the cost of HTTP, validation, auth and JSON.

Each client pauses between requests for a random think time (exponential, mean `think_ms`), as a person paging
through a console does: 50 clients that never pause measure the API's capacity, not the latency people get
(with no pause, by Little's law, p95 ≤ 50 ms at 50 clients would take over 1,000 requests/s from one process).
`--think-ms 0` measures that capacity.

The action round trip (API → gridhub.case-commands → the worker's engine → reply → API) is timed on camera
detections produced to gridhub.detections: each is confirmed, handled and verified, one action at a time.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy import Engine

from core import kafka
from core.city import load_city
from core.lifecycle import READY_FILE_ENV
from core.settings import Settings
from domain.case_records import encode_case_event
from domain.cases import Case, CaseEvent, CaseState, Severity, Source, report
from domain.city import City
from domain.detections import Detection, DetectionKind, Phase, encode_detection
from domain.epoch import EPOCH
from domain.gridcode import COMMUNITY_DIGITS, COUNTY_DIGITS, STREET_DIGITS
from domain.registry import ZoneKind
from gridhub import localbrokers
from gridhub.bench import BenchResult
from gridhub.bench.e2e import _service, _wait
from storage.cases import CaseCursor, CaseFilter, CaseOrder, CaseSink, count_cases, list_cases
from storage.db import connect
from storage.devices import seed_devices
from storage.schema import init_db
from storage.tokens import create_token
from streams.engine import case_id, correlation_key

TARGET_LIST_P95_MS = 50.0
TARGET_ACTION_P95_S = 1.0
SEED_BATCH = 5_000
SEED_WEEKS = 13  # about 90 days of reports
SLOT = timedelta(hours=4)  # templates are built every 4 hours of one week; cases land anywhere in their slot
SLOTS = timedelta(weeks=1) // SLOT
MAX_FOLLOW_PAGES = 3
ACTION_STEPS = ("confirm", "handle", "verify_pass")

#: States of the cases reported in the latest week, and of older ones (a small backlog still open).
RECENT_STATES = {CaseState.REPORTED: 8, CaseState.FILED: 5, CaseState.DISPATCHED: 25, CaseState.SUSPENDED: 3,
                 CaseState.HANDLED: 9, CaseState.CLOSED: 45, CaseState.VOIDED: 5}
OLDER_STATES = {CaseState.DISPATCHED: 2, CaseState.SUSPENDED: 1, CaseState.HANDLED: 1, CaseState.CLOSED: 88,
                CaseState.VOIDED: 8}
SEVERITIES = [Severity.NORMAL] * 6 + [Severity.WARNING, Severity.URGENT, Severity.BLUE, Severity.YELLOW,
                                      Severity.ORANGE, Severity.RED]


@dataclass(frozen=True, slots=True)
class Session:
    """One client's visit: a first page with `params`, then up to `pages - 1` cursor pages."""

    kind: str
    params: dict[str, str]
    where: CaseFilter
    order: CaseOrder
    pages: int


@dataclass
class Timings:
    """Request latencies in seconds, by the kind of session that made them, the wall time of the run, and the
    requests that got no answer (their sessions are given up)."""

    by_kind: dict[str, list[float]]
    elapsed_s: float
    errors: int = 0
    api_cpu_s: float = 0.0  # CPU the API process used during the run
    client_cpu_s: float = 0.0  # CPU the load generator (this process) used: it shares the machine

    @property
    def all(self) -> list[float]:
        """Every latency of the run."""
        return [value for values in self.by_kind.values() for value in values]


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds a process has used (Linux /proc)."""
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


def _quantiles(values: list[float]) -> list[float]:
    """The 1st to 99th percentiles."""
    return statistics.quantiles(values, n=100, method="inclusive")


def run(case_count: int, clients: int, requests: int, action_cases: int, think_ms: float) -> BenchResult:
    """Seed the database, start the worker and the API, run the list load, its baseline and the actions."""
    settings = Settings()
    city = load_city(settings)
    cells = sorted(str(cell.code) for cell in city.cells)
    if action_cases > len(cells):
        raise ValueError(f"the city has {len(cells)} cells, one open detection each; ask for at most that many "
                         "action cases")
    rng = random.Random(11)
    with tempfile.TemporaryDirectory(prefix="gridhub-bench-api-") as tmp, localbrokers.tansu() as bootstrap:
        directory = Path(tmp)
        state = directory / "state"
        state.mkdir()
        asyncio.run(kafka.ensure_topics(bootstrap, settings.kafka.partitions))
        engine = connect(Settings(state_dir=state).database_url)
        init_db(engine)
        seed_devices(engine, city, demo=True)
        scope = city.county_code
        viewer = create_token(engine, role="viewer", scope=scope, name="bench api viewer", expires_in=None)[0]
        commander = create_token(engine, role="commander", scope=scope, name="bench api", expires_in=None)[0]
        api_port = localbrokers.free_port()
        env = dict(os.environ, GRIDHUB_STATE_DIR=str(state), GRIDHUB_KAFKA__BOOTSTRAP=bootstrap,
                   GRIDHUB_LOG_LEVEL="warning", GRIDHUB_API__PORT=str(api_port),
                   GRIDHUB_API__WRITE_RATE_PER_S="10000", GRIDHUB_API__WRITE_BURST="10000")
        ready = directory / "worker.ready"
        # The worker starts while the cases are seeded: it owns none of them, they only fill the tables.
        with _service(["worker"], {**env, READY_FILE_ENV: str(ready)}, directory / "worker.log"):
            started = time.perf_counter()
            seeded = _seed(engine, city, case_count, rng)
            seed_s = time.perf_counter() - started
            sessions = _mix(city, scope, rng, requests)
            think_s = think_ms / 1000
            _bare(engine, sessions[: clients * 2], clients, 0.0)  # warm-up: the connection pool, the page cache
            bare = _bare(engine, sessions, clients, think_s)
            engine.dispose()
            _wait(ready.exists, 90, "the worker's partitions")
            with _service(["api"], env, directory / "api.log") as api_process, \
                    httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30,
                                 headers={"Authorization": f"Bearer {commander}"}) as api:
                _wait(lambda: api.get("/healthz").json()["commands"] == "ok", 60, "the API's command bus")
                base_url = f"http://127.0.0.1:{api_port}"
                asyncio.run(_http(base_url, viewer, sessions[: clients * 2], clients, 0.0))
                cpu_before, own_before = _cpu_s(api_process.pid), time.process_time()
                served = asyncio.run(_http(base_url, viewer, sessions, clients, think_s))
                served.api_cpu_s = _cpu_s(api_process.pid) - cpu_before
                served.client_cpu_s = time.process_time() - own_before
                trips = _round_trips(api, bootstrap, cells[:action_cases])
    return _result(seeded, seed_s, clients, think_ms, served, bare, trips)


def _result(seeded: int, seed_s: float, clients: int, think_ms: float, served: Timings, bare: Timings,
            trips: dict[str, list[float]]) -> BenchResult:
    listed, floor = _quantiles(served.all), _quantiles(bare.all)
    actions = [t for step in ACTION_STEPS for t in trips[step]]
    action_q = _quantiles(actions)
    slowest = sorted(((_quantiles(v)[94], k) for k, v in served.by_kind.items() if len(v) > 1), reverse=True)[:3]
    return BenchResult(
        name="api", value=listed[94] * 1000, unit="ms p95", baseline=floor[94] * 1000,
        target=f"case list p95 <= {TARGET_LIST_P95_MS:.0f} ms at {clients} clients; "
               f"action round trip p95 < {TARGET_ACTION_P95_S:.0f} s",
        met=listed[94] * 1000 <= TARGET_LIST_P95_MS and action_q[94] < TARGET_ACTION_P95_S and not served.errors,
        details={
            "cases": seeded, "seed_s": round(seed_s, 1), "clients": clients, "think_ms": think_ms,
            "requests": len(served.all),
            "list_errors": served.errors,
            "list_p50_ms": round(listed[49] * 1000, 1), "list_p99_ms": round(listed[98] * 1000, 1),
            "list_req_per_s": round(len(served.all) / served.elapsed_s),
            "api_cpu_ms_per_request": round(served.api_cpu_s * 1000 / len(served.all), 2),
            "client_cpu_ms_per_request": round(served.client_cpu_s * 1000 / len(served.all), 2),
            "bare_p50_ms": round(floor[49] * 1000, 1), "bare_p99_ms": round(floor[98] * 1000, 1),
            "bare_req_per_s": round(len(bare.all) / bare.elapsed_s),
            "slowest_mixes_p95_ms": ", ".join(f"{kind} {p95 * 1000:.0f}" for p95, kind in slowest),
            "actions": len(actions), "action_p50_ms": round(action_q[49] * 1000, 1),
            "action_p95_ms": round(action_q[94] * 1000, 1),
            **{f"{step}_p50_ms": round(statistics.median(trips[step]) * 1000, 1) for step in ACTION_STEPS},
        },
    )


# --- seeding -----------------------------------------------------------------------------------------------


def _seed(engine: Engine, city: City, count: int, rng: random.Random) -> int:
    """Write `count` cases through the case sink; return how many distinct cases the table holds."""
    now = datetime.now(UTC).astimezone(city.calendar.tz)
    first = now - timedelta(weeks=SEED_WEEKS)
    categories = [entry.code for entry in city.taxonomy if entry.code in city.routing]
    cells = sorted(str(cell.code) for cell in city.cells)
    templates = {(category, state, slot): _template(city, category, state, first + slot * SLOT, rng)
                 for category in categories for state in CaseState for slot in range(SLOTS)}
    sink = CaseSink(engine)
    batch: list[bytes | None] = []
    for _ in range(count):
        week = rng.randrange(SEED_WEEKS)
        mix = RECENT_STATES if week == SEED_WEEKS - 1 else OLDER_STATES
        state = rng.choices(list(mix), weights=list(mix.values()))[0]
        template = templates[(rng.choice(categories), state, rng.randrange(SLOTS))]
        by = timedelta(weeks=week, milliseconds=rng.randrange(SLOT // timedelta(milliseconds=1)))
        batch.append(encode_case_event(*_moved(template, rng.choice(cells), by)))
        if len(batch) == SEED_BATCH:
            sink.write(batch)
            batch.clear()
    if batch:
        sink.write(batch)
    return count_cases(engine, CaseFilter())


def _template(city: City, category: str, state: CaseState, at: datetime, rng: random.Random) -> Case:
    """A case reported at `at` and taken by the domain's own transitions to `state`."""
    route = city.routing[category]
    severity = rng.choice(SEVERITIES)
    case = report("template", grid_code="0", category=category, source=rng.choice(list(Source)), at=at,
                  actor="bench", severity=severity, urgent=route.urgent or severity is Severity.URGENT,
                  title=f"bench case {category}")
    if state is CaseState.REPORTED:
        return case
    if state is CaseState.VOIDED:
        return case.void(at + timedelta(minutes=15), "operator-1", reason="duplicate")
    case = case.file(at + timedelta(minutes=10), "operator-1")
    if state is CaseState.FILED:
        return case
    case = case.dispatch(at + timedelta(minutes=20), "operator-1", department=route.department, term=route.term,
                         calendar=city.calendar, tier=route.tier)
    if rng.random() < 0.1:  # 改派: some cases end up with another department than their category's
        others = sorted(set(_departments(city)) - {route.department})
        if others:
            case = case.reassign(at + timedelta(minutes=40), "operator-1", department=rng.choice(others))
    if state is CaseState.DISPATCHED:
        return case
    if state is CaseState.SUSPENDED:
        return case.suspend(at + timedelta(hours=1), "dept-lead", reason="waiting for the owner",
                            calendar=city.calendar)
    case = case.handle(at + timedelta(hours=3), route.department, note="done")
    if state is CaseState.HANDLED:
        return case
    return case.verify(at + timedelta(hours=5), "inspector-7", passed=True)


def _departments(city: City) -> list[str]:
    return sorted({city.routing[entry.code].department for entry in city.taxonomy if entry.code in city.routing})


def _moved(template: Case, grid_code: str, by: timedelta) -> tuple[Case, CaseEvent]:
    """The template as a case of its own in `grid_code`, every moment `by` later, with its latest event.

    Only the latest event is moved: a case-event record carries the case without its timeline.
    """
    times: dict[str, Any] = {f.name: value + by for f in fields(template)
                             if isinstance(value := getattr(template, f.name), datetime)}
    reported_ms = (template.reported_at + by - EPOCH) // timedelta(milliseconds=1)
    new_id = case_id(grid_code, correlation_key(template.category), reported_ms)
    case = replace(template, id=new_id, grid_code=grid_code, **times)
    latest = template.history[-1]
    data = dict(latest.data)
    if "grid_code" in data:
        data["grid_code"] = grid_code
    if "deadline_at" in data and case.deadline_at is not None:
        data["deadline_at"] = case.deadline_at.isoformat()
    return case, replace(latest, at=latest.at + by, data=data)


# --- the list load -------------------------------------------------------------------------------------------


def _mix(city: City, scope: str, rng: random.Random, requests: int) -> list[Session]:
    """Sessions of random filters whose pages add up to at least `requests` requests."""
    cells = sorted(str(cell.code) for cell in city.cells)
    streets = sorted({cell[: COUNTY_DIGITS + STREET_DIGITS] for cell in cells})
    communities = sorted({cell[: COUNTY_DIGITS + STREET_DIGITS + COMMUNITY_DIGITS] for cell in cells})
    categories = [entry.code for entry in city.taxonomy]
    departments = _departments(city)
    now = datetime.now(UTC)
    kinds: dict[str, Callable[[], dict[str, str]]] = {
        "district": lambda: {},
        "street": lambda: {"grid": rng.choice(streets)},
        "community": lambda: {"grid": rng.choice(communities)},
        "cell": lambda: {"grid": rng.choice(cells)},
        "status": lambda: {"status": rng.choice([s.value for s in CaseState])},
        "street+status": lambda: {"grid": rng.choice(streets), "status": rng.choice(["dispatched", "handled"])},
        "category": lambda: {"category": rng.choice(categories)},
        "department": lambda: {"department": rng.choice(departments)},
        "source": lambda: {"source": rng.choice([s.value for s in Source])},
        "severity": lambda: {"severity": rng.choice([Severity.RED.value, Severity.URGENT.value])},
        "week": lambda: _week(now, rng),
        "overdue": lambda: {"overdue": "true", "sort": CaseOrder.DEADLINE.value},
    }
    sessions: list[Session] = []
    planned = 0
    while planned < requests:
        kind = rng.choice(list(kinds))
        params = kinds[kind]()
        pages = rng.randint(1, 1 + MAX_FOLLOW_PAGES)
        where, order = _filter(params, scope, now, city.cells.code_length)
        sessions.append(Session(kind, params, where, order, pages))
        planned += pages
    return sessions


def _week(now: datetime, rng: random.Random) -> dict[str, str]:
    start = now - timedelta(days=rng.randrange(7, SEED_WEEKS * 7))
    return {"from": start.isoformat(), "to": (start + timedelta(weeks=1)).isoformat()}


def _filter(params: dict[str, str], scope: str, now: datetime, code_length: int) -> tuple[CaseFilter, CaseOrder]:
    """What the API makes of these query parameters for a caller whose scope is `scope`."""
    def ms(moment: datetime) -> int:
        return (moment - EPOCH) // timedelta(milliseconds=1)

    grid = params.get("grid", scope)
    cell = len(grid) == code_length
    where = CaseFilter(
        grid_prefix=None if cell else grid, grid_code=grid if cell else None, category=params.get("category"),
        state=params.get("status"),
        source=params.get("source"), department=params.get("department"), severity=params.get("severity"),
        overdue_at_ms=ms(now) if "overdue" in params else None,
        reported_from_ms=ms(datetime.fromisoformat(params["from"])) if "from" in params else None,
        reported_to_ms=ms(datetime.fromisoformat(params["to"])) if "to" in params else None,
    )
    return where, CaseOrder(params.get("sort", CaseOrder.NEWEST.value))


def _bare(engine: Engine, sessions: list[Session], clients: int, think_s: float) -> Timings:
    """The sessions as direct `list_cases` calls from `clients` threads, each pausing as a client does."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()

    def visit(session: Session) -> None:
        after: CaseCursor | None = None
        pause = random.Random(hash(session.kind) ^ session.pages)
        for _ in range(session.pages):
            if think_s:
                time.sleep(pause.expovariate(1 / think_s))  # the client's think time, not a wait for anything
            started = time.perf_counter()
            page = list_cases(engine, session.where, order=session.order, after=after)
            took = time.perf_counter() - started
            with lock:
                by_kind[session.kind].append(took)
            if page.next_cursor is None:
                return
            after = page.next_cursor

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(visit, sessions))
    return Timings(dict(by_kind), time.perf_counter() - started)


async def _http(base_url: str, token: str, sessions: list[Session], clients: int, think_s: float) -> Timings:
    """The sessions as `GET /api/v1/cases` requests from `clients` concurrent connections, each pausing between
    requests for its think time."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    errors = 0
    queue: Iterator[Session] = iter(sessions)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=60) as client:
        async def visitor() -> None:
            nonlocal errors
            for session in queue:
                cursor: str | None = None
                pause = random.Random(hash(session.kind) ^ session.pages)
                for _ in range(session.pages):
                    if think_s:
                        await asyncio.sleep(pause.expovariate(1 / think_s))  # think time, not a wait for anything
                    params = {**session.params, **({"cursor": cursor} if cursor else {})}
                    started = time.perf_counter()
                    try:
                        response = await client.get("/api/v1/cases", params=params)
                    except httpx.TransportError:
                        # Counted and reported, not retried: a dropped connection is part of what clients see.
                        errors += 1
                        break
                    by_kind[session.kind].append(time.perf_counter() - started)
                    if response.status_code != 200:
                        raise RuntimeError(f"GET /api/v1/cases {params}: {response.status_code} {response.text}")
                    cursor = orjson.loads(response.content)["next_cursor"]
                    if cursor is None:
                        break

        started = time.perf_counter()
        await asyncio.gather(*(visitor() for _ in range(clients)))
    return Timings(dict(by_kind), time.perf_counter() - started, errors)


# --- the action round trip ----------------------------------------------------------------------------------


def _round_trips(api: httpx.Client, bootstrap: str, cells: list[str]) -> dict[str, list[float]]:
    """Open one camera case per cell, then confirm, handle and verify each; the seconds of every action."""
    at_ms = int(time.time() * 1000)
    detections = [Detection(f"bench/{cell}", Phase.START, "cam-hunan-02", "crossing", ZoneKind.NO_VENDING,
                            DetectionKind.STALL, cell, at_ms - 60_000, at_ms, 0.6, (40, 260, 80, 60))
                  for cell in cells]
    asyncio.run(_produce(bootstrap, detections))
    pending = {opened: _version(api, opened) for opened in
               (case_id(d.grid_code, correlation_key(d.category), d.at_ms) for d in detections)}
    trips: dict[str, list[float]] = {step: [] for step in ACTION_STEPS}
    for expected, version in pending.items():
        for step in ACTION_STEPS:
            url, body = ((f"/api/v1/detections/{expected}/confirm", {"note": "seen on the camera"})
                         if step == "confirm" else
                         (f"/api/v1/cases/{expected}/actions", {"action": step, "note": "bench"}))
            started = time.perf_counter()
            response = api.post(url, json={**body, "expected_version": version})
            if response.status_code == 412:  # the engine moved the case on meanwhile: reload, as an operator would
                version = _version(api, expected)
                started = time.perf_counter()
                response = api.post(url, json={**body, "expected_version": version})
            trips[step].append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{step} on {expected}: {response.status_code} {response.text}")
            version = int(response.json()["version"])
    return trips


def _version(api: httpx.Client, opened: str) -> int:
    """The case's version once the API can read it."""
    _wait(lambda: api.get(f"/api/v1/cases/{opened}").status_code == 200, 60, f"case {opened}")
    return int(api.get(f"/api/v1/cases/{opened}").json()["version"])


async def _produce(bootstrap: str, detections: list[Detection]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for detection in detections:
            await producer.send_and_wait(kafka.DETECTIONS, encode_detection(detection),
                                         key=detection.grid_code.encode())
    finally:
        await producer.stop()
