"""The camera detection format on gridhub.detections: round trip, records written before the format moved to
msgspec, rejection of anything else, and the taxonomy code a detection raises by the kind of zone it happened in."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.detections import (
    CATEGORY_BY_ZONE,
    Detection,
    DetectionFormatError,
    DetectionKind,
    Phase,
    decode_detection,
    encode_detection,
)
from domain.registry import ZoneKind

START = Detection("cam-tianping-01:17", Phase.START, "cam-tianping-01", "sidewalk-north", ZoneKind.NO_VENDING,
                  DetectionKind.STALL, "310104003001002", 1_773_108_000_000, 1_773_108_000_000, 0.93,
                  (120, 240, 64, 48), "evidence/cam-tianping-01/17.jpg")
DUST_END = Detection("cam-xujiahui-site-03:4", Phase.END, "cam-xujiahui-site-03", "site-a", ZoneKind.CONSTRUCTION,
                     DetectionKind.DUST, "310104014001005", 1_773_108_000_000, 1_773_108_600_000, 0.71)


@pytest.mark.parametrize("detection", [START, DUST_END], ids=["stall start with box", "dust end without box"])
def test_a_detection_round_trips(detection: Detection) -> None:
    assert decode_detection(encode_detection(detection)) == detection


@settings(max_examples=100, deadline=None)
@given(phase=st.sampled_from(Phase), zone_kind=st.sampled_from(ZoneKind), confidence=st.floats(0, 1),
       at_ms=st.integers(0, 4_102_444_800_000), bbox=st.none() | st.tuples(*[st.integers(0, 4096)] * 4))
def test_any_detection_round_trips(phase: Phase, zone_kind: ZoneKind, confidence: float, at_ms: int,
                                   bbox: tuple[int, int, int, int] | None) -> None:
    detection = Detection("e", phase, "cam", "zone", zone_kind, DetectionKind.STALL, "310104003001002", at_ms, at_ms,
                          confidence, bbox)
    assert decode_detection(encode_detection(detection)) == detection


@pytest.mark.parametrize(("zone_kind", "category"), [
    (ZoneKind.NO_VENDING, "0501"), (ZoneKind.SHOPFRONT, "0504"), (ZoneKind.CONSTRUCTION, "0302"),
])
def test_a_detection_raises_the_category_of_its_zone_kind(zone_kind: ZoneKind, category: str) -> None:
    assert Detection("e", Phase.START, "cam", "zone", zone_kind, DetectionKind.STALL, "c", 0, 0, 1.0).category \
        == category


def test_every_zone_kind_has_a_category() -> None:
    assert set(CATEGORY_BY_ZONE) == set(ZoneKind)


@pytest.mark.parametrize("confidence", [-0.01, 1.01, 7])
def test_a_confidence_outside_0_to_1_is_rejected(confidence: float) -> None:
    doc = orjson.loads(encode_detection(START)) | {"confidence": confidence}
    with pytest.raises(DetectionFormatError, match=r"Expected `float` [<>]= [01]\.0 - at `\$\.confidence`"):
        decode_detection(orjson.dumps(doc))


def test_a_confidence_of_exactly_0_or_1_is_accepted() -> None:
    for confidence in (0, 1):
        doc = orjson.loads(encode_detection(START)) | {"confidence": confidence}
        assert decode_detection(orjson.dumps(doc)).confidence == confidence


@pytest.mark.parametrize("changes", [
    pytest.param({"v": 2}, id="unknown format version"),
    pytest.param({"phase": "middle"}, id="unknown phase"),
    pytest.param({"zone_kind": "parking"}, id="unknown zone kind"),
    pytest.param({"kind": "fire"}, id="unknown detection kind"),
    pytest.param({"confidence": "high"}, id="confidence not a number"),
    pytest.param({"confidence": None}, id="no confidence"),
    pytest.param({"bbox": [1, 2, 3]}, id="box of three numbers"),
    pytest.param({"bbox": ["a", 2, 3, 4]}, id="box not of numbers"),
    pytest.param({"at_ms": "noon"}, id="time not a number"),
])
def test_a_malformed_detection_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(DetectionFormatError):
        decode_detection(orjson.dumps(orjson.loads(encode_detection(START)) | changes))


@pytest.mark.parametrize("data", [b"", b"garbage", b"null", b"[]", b"42", b'{"v": 1}'])
def test_bytes_that_are_not_a_detection_are_rejected(data: bytes) -> None:
    with pytest.raises(DetectionFormatError):
        decode_detection(data)


def test_a_detection_without_a_snapshot_gets_an_empty_reference() -> None:
    doc = orjson.loads(encode_detection(START))
    del doc["snapshot"]
    assert decode_detection(orjson.dumps(doc)).snapshot == ""


#: START and DUST_END as the detectors wrote them before the move to msgspec.
START_BEFORE_MSGSPEC = (
    b'{"v":1,"event_id":"cam-tianping-01:17","phase":"start","camera_id":"cam-tianping-01",'
    b'"zone_id":"sidewalk-north","zone_kind":"no_vending","kind":"stall","grid_code":"310104003001002",'
    b'"start_ms":1773108000000,"at_ms":1773108000000,"confidence":0.93,"bbox":[120,240,64,48],'
    b'"snapshot":"evidence/cam-tianping-01/17.jpg"}'
)
DUST_END_BEFORE_MSGSPEC = (
    b'{"v":1,"event_id":"cam-xujiahui-site-03:4","phase":"end","camera_id":"cam-xujiahui-site-03",'
    b'"zone_id":"site-a","zone_kind":"construction","kind":"dust","grid_code":"310104014001005",'
    b'"start_ms":1773108000000,"at_ms":1773108600000,"confidence":0.71,"bbox":null,"snapshot":""}'
)


@pytest.mark.parametrize(("data", "detection"), [(START_BEFORE_MSGSPEC, START), (DUST_END_BEFORE_MSGSPEC, DUST_END)],
                         ids=["stall start with box", "dust end without box"])
def test_a_detection_written_before_msgspec_decodes(data: bytes, detection: Detection) -> None:
    assert decode_detection(data) == detection


@pytest.mark.parametrize(("data", "detection"), [(START_BEFORE_MSGSPEC, START), (DUST_END_BEFORE_MSGSPEC, DUST_END)],
                         ids=["stall start with box", "dust end without box"])
def test_a_detection_is_written_as_before_msgspec(data: bytes, detection: Detection) -> None:
    assert encode_detection(detection) == data


def test_a_detection_of_another_format_version_is_rejected_naming_it() -> None:
    with pytest.raises(DetectionFormatError, match="unsupported detection format version 2"):
        decode_detection(orjson.dumps(orjson.loads(START_BEFORE_MSGSPEC) | {"v": 2}))
