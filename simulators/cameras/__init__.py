"""Synthetic camera scenes with ground truth (issue #5): street stalls and construction dust, rendered on the CPU.

Public API (everything else in this package is an implementation detail):

    parse_sim_url(url) -> SceneSpec
        "sim://street?seed=101" or "sim://construction?seed=303", plus optional `&name=value` overrides of
        any `SceneParams` field (e.g. `&stalls_per_hour=30&noise_sigma=2`, or `&first_event_s=20&event_every_s=300`
        for a stall or dust plume cued at 20 s and every 5 minutes after); raises `SimUrlError` (a ValueError)
        with a readable message on anything else.
    Scene(spec, zones=None, *, fps=5.0, width=640, height=360, camera_id="sim")
    Scene.for_camera(camera, width=640, height=360)       # a domain.registry.Camera with a sim:// source
        .frame_at(t_s) -> np.ndarray (H, W, 3) BGR uint8   # any time, deterministic, ~4 ms per frame
        .frames(start_s=0.0, count=None) -> Iterator[(t_s, frame)]   # at the scene's fps; endless if no count
        .truth(duration_s) -> list[TruthEvent]            # true events in [0, duration_s)
        .truth_document(duration_s) -> dict               # {"camera_id", "scene", "dwell_s", "conditions", "events"}
        .zones, .params, .fps, .width, .height, .camera_id
    open_live(url_or_camera, width=640, height=360) -> LiveCapture
        cv2.VideoCapture-like: .read() -> (ok, frame) paced at the scene's fps in real time (drops frames
        rather than lagging), .isOpened(), .release(). Pass the domain Camera to get its zones, fps and id.
    TruthEvent(camera_id, zone_id, kind "stall"|"dust", start_s, end_s, bbox (x, y, w, h) | None).to_json()
    default_zones(kind, width, height) -> tuple[Zone, ...]   # used when a scene is given no zones
    write_clip(scene, seconds, out_dir, grid_code=...) -> ClipFiles   # clip.avi (MJPG), truth.json, camera.yaml
    MjpegServer(scene, host="127.0.0.1", port=0)           # .start()/.stop() or `with`; .url ends in /stream.mjpg

The same spec, zones, fps and size always give the same frames and the same truth, and a live scene never
runs out of events: its timeline is planned lazily, 15 minutes at a time. What counts as a true event
(stalls for at least the zone's dwell time, dust for at least 30 s) is documented in `truth`.
"""

from simulators.cameras.clip import ClipError, ClipFiles, write_clip
from simulators.cameras.live import LiveCapture, open_live
from simulators.cameras.mjpeg import MjpegServer
from simulators.cameras.scene import Scene
from simulators.cameras.spec import SceneKind, SceneParams, SceneSpec, SimUrlError, parse_sim_url
from simulators.cameras.truth import TruthEvent
from simulators.cameras.zones import default_zones

__all__ = [
    "ClipError",
    "ClipFiles",
    "LiveCapture",
    "MjpegServer",
    "Scene",
    "SceneKind",
    "SceneParams",
    "SceneSpec",
    "SimUrlError",
    "TruthEvent",
    "default_zones",
    "open_live",
    "parse_sim_url",
    "write_clip",
]
