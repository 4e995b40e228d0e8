"""Schemathesis against the API's own OpenAPI schema: generated requests, with an admin's token, never get a 5xx.

The app runs under uvicorn with the demo devices, a few cases and the real case engine behind its command bus
(tests/engine_bus.py), so that generated actions reach the state machine. The event stream is left out: it
never ends, and tests/test_api_live.py covers it against real Kafka.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from api.app import create_app
from core.settings import load_settings
from domain.case_records import encode_case_event
from domain.cases import Source, report
from storage.cases import CaseSink
from storage.devices import seed_devices
from tests.engine_bus import install
from tests.streams import T0
from tests.test_api_live import serving
from tests.test_api_roles import MATRIX
from tests.tokens import bearer, mint

OPERATIONS = [(method, path) for method, path in MATRIX if path != "/api/v1/events"]


@dataclass(frozen=True)
class Served:
    schema: schemathesis.BaseSchema
    base_url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state = tmp_path_factory.mktemp("schema")
    token = mint(state, "admin")
    settings_ = load_settings(overrides={"state_dir": state, "api.write_rate_per_s": 10_000,
                                         "api.write_burst": 10_000, "api.citizen_rate_per_min": 1_000_000},
                              environ={})
    app = create_app(settings_)
    seed_devices(app.state.engine, app.state.city, demo=True)
    case = report("310104003001001-0406-20260310T020000000", grid_code="310104003001001", category="0406",
                  source=Source.SENSOR, at=T0, actor="rules", title="rain")
    filed = case.file(T0 + timedelta(minutes=1), "rules")
    CaseSink(app.state.engine).write([encode_case_event(c, c.history[-1]) for c in (case, filed)])
    with serving(app) as base:
        httpx.get(f"{base}/healthz").raise_for_status()  # the lifespan has run: the bus can be replaced now
        install(app)
        yield Served(schemathesis.openapi.from_dict(app.openapi()), base, bearer(token))


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_generated_request_is_a_server_error(served: Served, method: str, path: str) -> None:
    operation = served.schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def generated(case: schemathesis.Case) -> None:
        response = case.call(base_url=served.base_url, headers=served.headers)
        case.validate_response(response, checks=[checks.not_a_server_error])

    generated()
