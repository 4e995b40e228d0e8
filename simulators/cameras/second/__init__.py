"""A second, independent camera-scene generator, to evaluate the detectors on material they were not tuned on.

It shares only output formats with the first generator (`simulators.cameras.truth.TruthEvent` and the clip
writer), none of its drawing or planning: a tilted pole camera (verticals lean), zones as ground quadrilaterals,
jointed 3-D people, stalls of other shapes (tricycle carts, ground mats, clothes racks, goods spilling from a
shop), parked cars, groups and sitters as distractors, dust as streams of billows, and camera conditions.

Public API (everything else in this package is an implementation detail):

    Spec.of(kind, seed=0, overrides=()) -> Spec          # kind "street" | "construction"; overrides
        as (name, text) pairs of any `Params` field, e.g. ("night", "1"), ("weather", "rain"),
        ("stalls_per_hour", "60"); raises ParamError (a ValueError) with a readable message.
        .params -> Params, .label -> "second:street?seed=7&night=1"
    draw_params(kind, seed) -> Params                    # what the seed draws, before overrides
    SecondScene(spec, *, fps=10.0, width=640, height=360, camera_id="sim2")
        .frames(start_s=0.0, count=None) -> Iterator[(t_s, frame)]   # BGR uint8, at the scene's fps
        .frame(index) -> frame                           # as delivered (dropped frames repeat an earlier one)
        .render(index) -> frame                          # as rendered at index / fps, before any dropout
        .truth(duration_s) -> list[TruthEvent]          # true events in [0, duration_s)
        .truth_document(duration_s) -> dict              # camera_id, scene, generator, seed, dwell_s,
                                                         # conditions, events (and the parameters)
        .conditions() -> dict, .zones, .params, .fps, .width, .height, .camera_id
    Kind, Weather, Compression, Params, ParamError

Any `SecondScene` can be written with `simulators.cameras.clip.write_clip` like a first-generator scene
(`gridhub simulate cameras --generator second`). Conditions and their probabilities are listed in `params`;
what counts as truth in `truth`; `python -m simulators.cameras.second.bench` measures the render speed.
"""

from simulators.cameras.second.params import Compression, Kind, ParamError, Params, Spec, Weather, draw_params
from simulators.cameras.second.scene import SecondScene

__all__ = ["Compression", "Kind", "ParamError", "Params", "SecondScene", "Spec", "Weather", "draw_params"]
