"""The telemetry record format on gridhub.telemetry: round trip, records written before the format moved to
msgspec, and rejection of anything else."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.registry import DeviceKind
from domain.telemetry import (
    Reading,
    StatusChange,
    TelemetryBatch,
    TelemetryFormatError,
    decode_record,
    encode_record,
)

CELL = "310104003001001"


def manhole_reading(seq: int = 7) -> Reading:
    return Reading("manhole-0001", DeviceKind.MANHOLE, CELL, 1_763_800_000_000, 1_763_800_000_250, seq,
                   {"tilt_deg": 2.5, "cover_open": False, "water_level_cm": 40.0, "battery_v": 3.7},
                   late=False, component_id="3101040103000012", well_depth_cm=180.0)


def test_a_record_of_several_cells_round_trips() -> None:
    batch = TelemetryBatch(CELL, (manhole_reading(), manhole_reading(8)),
                           (StatusChange("rain-0001", DeviceKind.RAIN, CELL, 1_763_800_001_000, False),))
    other = TelemetryBatch("310104003001002", (), (StatusChange("rain-0002", DeviceKind.RAIN, "310104003001002",
                                                                1_763_800_001_000, True),))
    assert decode_record(encode_record([batch, other])) == (batch, other)
    assert len(batch) == 3


def test_reading_time_is_utc() -> None:
    assert manhole_reading().ts == datetime(2025, 11, 22, 8, 26, 40, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(list(DeviceKind)),
    seq=st.integers(min_value=0, max_value=2**53),
    ts_ms=st.integers(min_value=0, max_value=4_102_444_800_000),
    value=st.floats(allow_nan=False, allow_infinity=False),
    late=st.booleans(),
)
def test_any_reading_round_trips(kind: DeviceKind, seq: int, ts_ms: int, value: float, late: bool) -> None:
    reading = Reading("dev-1", kind, CELL, ts_ms, ts_ms + 5, seq, {"x": value}, late=late, zone_area_m2=300.0)
    assert decode_record(encode_record([TelemetryBatch(CELL, (reading,))]))[0].readings == (reading,)


@pytest.mark.parametrize("data", [
    b"not json",
    b"[]",
    b'{"v": 1, "grid_code": "x", "readings": [], "statuses": []}',
    b'{"v": 2, "cells": [{"readings": [], "statuses": []}]}',
    b'{"v": 2, "cells": [{"grid_code": "x", "readings": [{"device_id": "d"}], "statuses": []}]}',
    b'{"v": 2, "cells": [{"grid_code": "x", "readings": [], "statuses": [{"device_id": "d", "kind": "lamp", '
    b'"ts_ms": 1, "online": true}]}]}',
    b'{"v": 2}',
])
def test_anything_else_is_a_format_error(data: bytes) -> None:
    with pytest.raises(TelemetryFormatError):
        decode_record(data)


def test_wire_names_are_stable() -> None:
    doc = orjson.loads(encode_record([TelemetryBatch(CELL, (manhole_reading(),))]))
    assert set(doc) == {"v", "cells"}
    assert set(doc["cells"][0]) == {"grid_code", "readings", "statuses"}
    assert set(doc["cells"][0]["readings"][0]) == {"device_id", "kind", "ts_ms", "received_ms", "seq", "values", "late",
                                       "component_id", "well_depth_cm", "zone_area_m2"}


def test_a_replayed_status_round_trips() -> None:
    batch = TelemetryBatch(CELL, (), (StatusChange("rain-0001", DeviceKind.RAIN, CELL, 1_763_800_001_000, True,
                                                   replayed=True),))
    doc = orjson.loads(encode_record([batch]))
    assert doc["cells"][0]["statuses"] == [{"device_id": "rain-0001", "kind": "rain", "ts_ms": 1_763_800_001_000,
                                            "online": True, "replayed": True}]
    assert decode_record(encode_record([batch])) == (batch,)


def test_a_status_written_before_replayed_existed_is_live() -> None:
    data = (b'{"v": 2, "cells": [{"grid_code": "310104003001001", "readings": [], "statuses": '
            b'[{"device_id": "rain-0001", "kind": "rain", "ts_ms": 5, "online": true}]}]}')
    (batch,) = decode_record(data)
    assert batch.statuses == (StatusChange("rain-0001", DeviceKind.RAIN, CELL, 5, True, replayed=False),)


#: Two cells as the gateway wrote them before the move to msgspec: a late manhole reading with its well depth, a
#: crowd count (an integer), a replayed and a live status; a rain gauge in the second cell.
RECORD_BEFORE_MSGSPEC = (
    b'{"v":2,"cells":[{"grid_code":"310104003001001","readings":[{"device_id":"manhole-0001","kind":"manhole",'
    b'"ts_ms":1763800000000,"received_ms":1763800000250,"seq":7,"values":{"tilt_deg":2.5,"cover_open":false,'
    b'"water_level_cm":40.0,"battery_v":3.7},"late":true,"component_id":"3101040103000012",'
    b'"well_depth_cm":180.0,"zone_area_m2":null},{"device_id":"crowd-0002","kind":"crowd",'
    b'"ts_ms":1763800000500,"received_ms":1763800000600,"seq":8,"values":{"count":41},"late":false,'
    b'"component_id":null,"well_depth_cm":null,"zone_area_m2":300.0}],"statuses":[{"device_id":"rain-0001",'
    b'"kind":"rain","ts_ms":1763800001000,"online":true,"replayed":true},{"device_id":"rain-0003",'
    b'"kind":"rain","ts_ms":1763800001500,"online":false,"replayed":false}]},{"grid_code":"310104003001002",'
    b'"readings":[{"device_id":"rain-0002","kind":"rain","ts_ms":1763800000000,"received_ms":1763800000010,'
    b'"seq":9,"values":{"rain_mm":0.2},"late":false,"component_id":null,"well_depth_cm":null,'
    b'"zone_area_m2":null}],"statuses":[]}]}'
)
BATCHES_BEFORE_MSGSPEC = (
    TelemetryBatch(CELL, (
        Reading("manhole-0001", DeviceKind.MANHOLE, CELL, 1_763_800_000_000, 1_763_800_000_250, 7,
                {"tilt_deg": 2.5, "cover_open": False, "water_level_cm": 40.0, "battery_v": 3.7}, late=True,
                component_id="3101040103000012", well_depth_cm=180.0),
        Reading("crowd-0002", DeviceKind.CROWD, CELL, 1_763_800_000_500, 1_763_800_000_600, 8, {"count": 41},
                zone_area_m2=300.0),
    ), (
        StatusChange("rain-0001", DeviceKind.RAIN, CELL, 1_763_800_001_000, True, replayed=True),
        StatusChange("rain-0003", DeviceKind.RAIN, CELL, 1_763_800_001_500, False),
    )),
    TelemetryBatch("310104003001002", (Reading("rain-0002", DeviceKind.RAIN, "310104003001002", 1_763_800_000_000,
                                               1_763_800_000_010, 9, {"rain_mm": 0.2}),)),
)


def test_a_record_written_before_msgspec_decodes() -> None:
    decoded = decode_record(RECORD_BEFORE_MSGSPEC)
    assert decoded == BATCHES_BEFORE_MSGSPEC
    assert type(decoded[0].readings[1].values["count"]) is int  # a count stays a whole number


def test_a_record_is_written_as_before_msgspec() -> None:
    assert encode_record(BATCHES_BEFORE_MSGSPEC) == RECORD_BEFORE_MSGSPEC


def test_a_record_of_another_format_version_is_rejected_naming_it() -> None:
    with pytest.raises(TelemetryFormatError, match="unsupported telemetry format version 3"):
        decode_record(b'{"v": 3, "cells": {"310104003001001": []}}')


def test_a_format_error_names_the_field_at_fault() -> None:
    doc = orjson.loads(RECORD_BEFORE_MSGSPEC)
    doc["cells"][1]["readings"][0]["seq"] = "9"
    where = re.escape("$.cells[1].readings[0].seq")
    with pytest.raises(TelemetryFormatError, match=f"Expected `int`, got `str` - at `{where}`"):
        decode_record(orjson.dumps(doc))
