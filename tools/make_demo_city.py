"""Regenerate the demo city shipped in core/city/demo (Xuhui, 310104): cells, devices, cameras.

Run `python tools/make_demo_city.py [OUT_DIR]`. The output is deterministic; a test checks that the
shipped files equal a fresh run, so edit this script rather than the generated files.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from pathlib import Path

from shapely.geometry import Point, Polygon

from domain.taxonomy import RAIN_WATER_COVER, SEWAGE_COVER, WATER_SUPPLY_COVER

COUNTY = "310104"
ORIGIN_LON, ORIGIN_LAT = 121.4300, 31.1950
STEP_LON, STEP_LAT = 0.00105, 0.0009  # about 100 m × 100 m at 31.2° N
COLS, ROWS = 12, 6
STREETS = [  # (code, name, [(community code, name), (community code, name)]) each 4 columns wide
    ("003", "天平路街道", [("001", "宛南社区"), ("002", "建襄社区")]),
    ("004", "湖南路街道", [("001", "五原社区"), ("002", "武康社区")]),
    ("014", "徐家汇街道", [("001", "汇站社区"), ("002", "乐山社区")]),
]
SEED = 310104


def lattice(rng: random.Random) -> list[list[tuple[float, float]]]:
    """Lattice points jittered inside so that the cells tile the district without gaps."""
    points = []
    for row in range(ROWS + 1):
        line = []
        for col in range(COLS + 1):
            jitter = 0.0 if row in (0, ROWS) or col in (0, COLS) else 0.15
            lon = ORIGIN_LON + (col + rng.uniform(-jitter, jitter)) * STEP_LON
            lat = ORIGIN_LAT + (row + rng.uniform(-jitter, jitter)) * STEP_LAT
            line.append((round(lon, 6), round(lat, 6)))
        points.append(line)
    return points


def cells(rng: random.Random) -> list[dict[str, object]]:
    """GeoJSON features, 12 cells per community."""
    grid = lattice(rng)
    features = []
    for street_index, (street_code, street_name, communities) in enumerate(STREETS):
        for community_index, (community_code, community_name) in enumerate(communities):
            sequence = 0
            for row in range(community_index * 3, community_index * 3 + 3):
                for col in range(street_index * 4, street_index * 4 + 4):
                    sequence += 1
                    ring = [grid[row][col], grid[row][col + 1], grid[row + 1][col + 1], grid[row + 1][col]]
                    code = f"{COUNTY}{street_code}{community_code}{sequence:03d}"
                    features.append({
                        "type": "Feature",
                        "properties": {
                            "code": code,
                            "name": f"{street_name}{community_name}第{sequence}网格",
                            "street": street_name,
                            "community": community_name,
                        },
                        "geometry": {"type": "Polygon", "coordinates": [[*map(list, ring), list(ring[0])]]},
                    })
    return features


def point_in(rng: random.Random, ring: list[list[float]]) -> tuple[float, float]:
    """A random point well inside the cell (5 m or more from its edges)."""
    polygon = Polygon(ring).buffer(-0.00005)
    min_lon, min_lat, max_lon, max_lat = polygon.bounds
    while True:
        lon, lat = rng.uniform(min_lon, max_lon), rng.uniform(min_lat, max_lat)
        if polygon.contains(Point(lon, lat)):
            return round(lon, 6), round(lat, 6)


def devices(rng: random.Random, features: list[dict[str, object]]) -> list[dict[str, object]]:
    """36 rain gauges, 48 crowd counters and 120 manhole-cover sensors."""
    rows: list[dict[str, object]] = []

    def place(feature: dict[str, object]) -> tuple[str, float, float]:
        props, geometry = feature["properties"], feature["geometry"]
        assert isinstance(props, dict) and isinstance(geometry, dict)
        lon, lat = point_in(rng, geometry["coordinates"][0])
        return str(props["code"]), lon, lat

    for i, feature in enumerate(features[::2], start=1):
        code, lon, lat = place(feature)
        rows.append({"id": f"rain-{i:04d}", "kind": "rain", "grid_code": code, "lon": lon, "lat": lat,
                     "report_interval_s": 60, "battery_floor_v": 3.4})
    for i, feature in enumerate(rng.sample(features, 48), start=1):
        code, lon, lat = place(feature)
        rows.append({"id": f"crowd-{i:04d}", "kind": "crowd", "grid_code": code, "lon": lon, "lat": lat,
                     "report_interval_s": 30, "zone_area_m2": rng.choice([150, 300, 600, 1200, 2500])})
    for i in range(1, 121):
        feature = features[i - 1] if i <= len(features) else rng.choice(features)
        code, lon, lat = place(feature)
        # The component id carries the cover's taxonomy code; rain-water covers are the most common.
        cover = rng.choice([WATER_SUPPLY_COVER, SEWAGE_COVER, RAIN_WATER_COVER, RAIN_WATER_COVER])
        rows.append({"id": f"manhole-{i:04d}", "kind": "manhole", "grid_code": code, "lon": lon, "lat": lat,
                     "report_interval_s": 120, "battery_floor_v": 3.3,
                     "component_id": f"{COUNTY}{cover}{i:06d}",
                     "well_depth_cm": rng.choice([120, 150, 180, 220, 260, 300])})
    return rows


def cameras(features: list[dict[str, object]]) -> str:
    """Four cameras: two on shopping streets, two on construction sites (640×360 source pixels)."""
    codes = [str(f["properties"]["code"]) for f in features]  # type: ignore[index]
    return f"""\
# Cameras of the demo city. Zones are polygons in source pixels (640x360).
# The sim:// sources are rendered by `gridhub simulate cameras`. Besides each seed's own events, every camera
# has a stall or a dust plume cued soon after the demo starts and every five minutes after that.
- id: cam-tianping-01
  source: sim://street?seed=101&first_event_s=20&event_every_s=300
  grid_code: "{codes[1]}"
  fps: 5
  zones:
    - {{id: sidewalk-north, kind: no_vending, polygon: [[40, 230], [600, 230], [630, 350], [10, 350]], dwell_s: 60}}
- id: cam-hunan-02
  source: sim://street?seed=202&first_event_s=140&event_every_s=300
  grid_code: "{codes[30]}"
  fps: 5
  zones:
    - {{id: shopfront-east, kind: shopfront, polygon: [[320, 200], [630, 200], [630, 350], [320, 350]], dwell_s: 60}}
    - {{id: crossing, kind: no_vending, polygon: [[10, 220], [310, 220], [310, 350], [10, 350]], dwell_s: 60}}
- id: cam-xujiahui-site-03
  source: sim://construction?seed=303&first_event_s=25&event_every_s=300
  grid_code: "{codes[52]}"
  fps: 5
  zones:
    - {{id: site-a, kind: construction, polygon: [[60, 80], [580, 80], [580, 330], [60, 330]], dwell_s: 30}}
- id: cam-tianping-site-04
  source: sim://construction?seed=404&first_event_s=100&event_every_s=300
  grid_code: "{codes[17]}"
  fps: 5
  zones:
    - {{id: site-b, kind: construction, polygon: [[100, 60], [540, 60], [540, 300], [100, 300]], dwell_s: 30}}
"""


DEVICE_COLUMNS = ["id", "kind", "grid_code", "lon", "lat", "report_interval_s", "battery_floor_v",
                  "component_id", "well_depth_cm", "zone_area_m2"]


def render() -> dict[str, str]:
    """File name → content of the generated demo city files."""
    rng = random.Random(SEED)
    features = cells(rng)
    out = io.StringIO()
    writer = csv.DictWriter(out, DEVICE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(devices(rng, features))
    geojson = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False, indent=1)
    return {"cells.geojson": geojson + "\n", "devices.csv": out.getvalue(), "cameras.yaml": cameras(features)}


def main() -> None:
    """Write the generated files into OUT_DIR (default: the shipped demo city)."""
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "core/city/demo"
    target.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (target / name).write_text(text, encoding="utf-8")
    print(f"wrote {', '.join(render())} to {target}")


if __name__ == "__main__":
    main()
