"""Properties of the case engine over generated telemetry of one cell: duplicates in any order decide nothing
new, a replay changes nothing, and a snapshot taken anywhere continues exactly like the original."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.telemetry import Reading
from streams.engine import CaseEngine, Change, cell_doc
from tests.streams import HOUR, MINUTE, SECOND, T0_MS, crowd, feed_each, manhole, new_engine, rain

# Delays between measurement and receipt: on time, a little late, buffered through an outage, too late.
DELAYS = [0, 0, 0, 30 * SECOND, 2 * HOUR, 7 * HOUR]



@st.composite
def rain_spells(draw: st.DrawFn) -> list[Reading]:
    """rain-0004 reporting the same amount every minute for a while."""
    start, minutes = draw(st.integers(0, 300)), draw(st.integers(1, 40))
    mm, delay = draw(st.sampled_from([0.0, 0.5, 1.0, 4.0, 25.0])), draw(st.sampled_from(DELAYS))
    return [rain(T0_MS + m * MINUTE, mm, received_ms=T0_MS + m * MINUTE + delay) for m in range(start, start + minutes)]


@st.composite
def crowd_spells(draw: st.DrawFn) -> list[Reading]:
    """crowd-0029 counting the same crowd every 30 s for a while."""
    start, steps = draw(st.integers(0, 600)), draw(st.integers(1, 8))
    count, delay = draw(st.sampled_from([0.0, 250.0, 330.0, 700.0])), draw(st.sampled_from(DELAYS))
    times = [T0_MS + step * 30 * SECOND for step in range(start, start + steps)]
    return [crowd(ts, count, received_ms=ts + delay) for ts in times]


covers_water_batteries = st.builds(
    lambda minute, tilt, cover_open, level, battery, delay: manhole(
        T0_MS + minute * MINUTE, received_ms=T0_MS + minute * MINUTE + delay,
        tilt_deg=tilt, cover_open=cover_open, water_level_cm=level, battery_v=battery),
    st.integers(0, 300), st.sampled_from([0.0, 20.0]), st.booleans(), st.sampled_from([50.0, 95.0]),
    st.sampled_from([3.2, 3.6]), st.sampled_from(DELAYS),
)


@st.composite
def telemetry(draw: st.DrawFn) -> list[Reading]:
    """Readings of cell CELL in the order the gateway received them, one per device and measurement time."""
    spells = draw(st.lists(st.one_of(rain_spells(), crowd_spells(), covers_water_batteries.map(lambda r: [r])),
                           max_size=8))
    unique = {(r.device_id, r.ts_ms): r for spell in spells for r in spell}
    return sorted(unique.values(), key=lambda r: r.received_ms)




@st.composite
def with_duplicates(draw: st.DrawFn, readings: list[Reading]) -> list[Reading]:
    """`readings` with redeliveries inserted anywhere after their first delivery."""
    delivered = list(readings)
    for index, offset in draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), max_size=30)):
        if not readings:
            break
        original = readings[index % len(readings)]
        first = next(i for i, r in enumerate(delivered) if r is original)
        delivered.insert(first + 1 + offset % (len(delivered) - first), original)
    return delivered


def outcome(engine: CaseEngine) -> set[tuple[Any, ...]]:
    """The open cases as (id, category, severity, urgent, state, version)."""
    return {(c.id, c.category, c.severity, c.urgent, c.state, c.version)
            for cell in engine.cells.values() for c in cell.cases.values()}


@settings(max_examples=150, deadline=None)
@given(data=st.data(), readings=telemetry())
def test_duplicates_delivered_in_any_order_open_the_same_cases(data: st.DataObject, readings: list[Reading]) -> None:
    once, redelivered = new_engine(), new_engine()
    feed_each(once, readings)
    feed_each(redelivered, data.draw(with_duplicates(readings)))
    assert outcome(redelivered) == outcome(once)


@settings(max_examples=150, deadline=None)
@given(readings=telemetry())
def test_replaying_everything_after_it_was_processed_changes_nothing(readings: list[Reading]) -> None:
    engine = new_engine()
    feed_each(engine, readings)
    assert feed_each(engine, readings) == []


def restarted(engine: CaseEngine) -> CaseEngine:
    """A fresh engine that loads every cell from its snapshot after a trip through JSON bytes, as a worker
    does when it is assigned the cells' partitions."""
    docs: dict[str, dict[str, Any]] = orjson.loads(
        orjson.dumps({code: cell_doc(cell) for code, cell in engine.cells.items()}))
    fresh = new_engine(load_cell=docs.get)
    for code in docs:
        fresh.cell(code)
    return fresh


@settings(max_examples=150, deadline=None)
@given(readings=telemetry(), split=st.integers(0, 100))
def test_a_snapshot_taken_mid_stream_yields_the_same_changes_after_it(readings: list[Reading], split: int) -> None:
    original = new_engine()
    feed_each(original, readings[:split])
    copy = restarted(original)
    rest: list[Change] = feed_each(original, readings[split:])
    assert feed_each(copy, readings[split:]) == rest
    assert copy.check_silence() == original.check_silence()
