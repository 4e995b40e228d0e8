"""What moves in a scene, drawn in 3-D through the pole camera: people, stalls, vehicles and diggers.

People are jointed stick figures with volume: legs and arms swing with the gait, a talking person gestures,
a sitting one folds at hip and knee; their size and lean come from the projection, not from a sprite. Stalls
are built from boxes and poles: a tricycle cart with a canopy, a mat of goods on the ground, a clothes rack,
crates spilling out of a shop. Their overall box (`extent`) is what the ground truth's bounding box frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from simulators.cameras.second.camera import NEAR_M, Floats, PoleCamera
from simulators.cameras.second.shapes import (
    ONE,
    SHIFT,
    Colour,
    Image,
    Light,
    box_corners,
    draw_box,
    draw_boxes,
    draw_pole,
    fixed,
    ground_to_image,
    lit,
)

Item = tuple[float, float, float, float, float, float, Colour]  # (along, across, z, length, width, height, colour)
Place = Callable[[float, float], tuple[float, float]]  # (along, across) of a figure → world (x, y)
GLASS: Colour = (62, 56, 50)
SHOULDER, HIP, LEG_SIDE, ARM_SIDE = 0.11, 0.075, 0.055, 0.12  # half widths, as shares of a person's height
TYRE: Colour = (30, 30, 32)


@dataclass(frozen=True, slots=True)
class Look:
    """How a person looks."""

    height_m: float
    skin: Colour
    hair: Colour
    top: Colour
    legs: Colour
    hat: Colour | None = None  # a worker's hard hat
    vest: Colour | None = None  # a worker's hi-vis vest


@dataclass(frozen=True, slots=True)
class Pose:
    """What a person is doing at an instant."""

    x: float
    y: float
    heading: float  # radians, world yaw of where they face
    phase: float | None  # gait phase while walking, None when still
    seat_m: float | None = None  # sitting, on a seat this high
    gesture: float = 0.0  # 0-1, a talking arm
    carrying: Colour | None = None  # a bundle in both hands


def draw_person(image: Image, camera: PoleCamera, look: Look, pose: Pose, light: Light) -> None:
    """A person in this pose; legs swing with the gait phase, a sitting person folds at hip and knee."""
    h = look.height_m
    fx, fy = math.cos(pose.heading), math.sin(pose.heading)
    sx, sy = fy, -fx  # to their right
    x, y = pose.x, pose.y

    def at(forward: float, side: float, z: float) -> tuple[float, float, float]:
        return x + forward * fx + side * sx, y + forward * fy + side * sy, z

    hip_z, shoulder_z, leg = 0.52 * h, 0.81 * h, 0.5 * h
    points: list[tuple[float, float, float]]
    if pose.seat_m is not None:
        hip_z = pose.seat_m + 0.05 * h
        shoulder_z = hip_z + 0.29 * h
        knee_f, foot_z = 0.26 * h, max(pose.seat_m - 0.26 * h, -0.1)
        points = []
        for side in (-LEG_SIDE * h, LEG_SIDE * h):
            points += [at(0, side, hip_z), at(knee_f, side, hip_z), at(knee_f + 0.03, side, foot_z)]
        hands = (at(0.2 * h, -ARM_SIDE * h, hip_z + 0.05), at(0.2 * h, ARM_SIDE * h, hip_z + 0.05))
    else:
        swing = 0.42 * math.sin(pose.phase) if pose.phase is not None else 0.0
        lift = 0.06 * h * max(math.cos(pose.phase), 0.0) if pose.phase is not None else 0.0
        points = []
        for side, angle, up in ((-LEG_SIDE * h, swing, lift), (LEG_SIDE * h, -swing, 0.0)):
            knee = at(0.5 * leg * math.sin(angle) + 0.02 * h, side, hip_z - 0.5 * leg * math.cos(angle))
            foot = at(leg * math.sin(angle), side, up)
            points += [at(0, side, hip_z), knee, foot]
        arm = 0.36 * h
        if pose.carrying is not None:
            hands = (at(0.25, -0.07 * h, 0.62 * h), at(0.25, 0.07 * h, 0.62 * h))
        else:
            gesture = pose.gesture
            hands = (at(-arm * 0.6 * math.sin(swing), -ARM_SIDE * h, shoulder_z - arm * math.cos(0.6 * swing)),
                     at(arm * (0.6 * math.sin(swing) + 0.55 * gesture), ARM_SIDE * h,
                        shoulder_z - arm * math.cos(0.6 * swing) + 0.45 * arm * gesture))
    shoulders = (at(0, -SHOULDER * h, shoulder_z), at(0, SHOULDER * h, shoulder_z))
    hips = (at(0, -HIP * h, hip_z), at(0, HIP * h, hip_z))
    head = at(0, 0, shoulder_z + 0.12 * h)
    all_points = np.array([*points, *hands, *shoulders, *hips, head])
    xy, depth = camera.project(all_points)
    if (depth < NEAR_M).any():
        return
    ppm = camera.focal_px / float(depth.mean())
    if ppm * h < 3:
        return
    legs, top, skin = lit(look.legs, light), lit(look.vest or look.top, light), lit(look.skin, light)
    limb = max(1, round(0.13 * h / 1.7 * ppm))
    for start in (0, 3):
        hip, knee, foot = xy[start], xy[start + 1], xy[start + 2]
        cv2.line(image, _p(hip), _p(knee), legs, limb, cv2.LINE_AA, SHIFT)
        cv2.line(image, _p(knee), _p(foot), legs, limb, cv2.LINE_AA, SHIFT)
    torso = np.array([xy[8], xy[9], xy[11], xy[10]])
    cv2.fillConvexPoly(image, fixed(torso), top, cv2.LINE_AA, SHIFT)
    if look.vest is not None:
        band = 0.5 * (torso[0] + torso[3]), 0.5 * (torso[1] + torso[2])
        cv2.line(image, _p(band[0]), _p(band[1]), lit((210, 230, 230), light), max(1, limb // 2), cv2.LINE_AA, SHIFT)
    arm_width = max(1, round(0.09 * h / 1.7 * ppm))
    for hand, shoulder in ((xy[6], xy[8]), (xy[7], xy[9])):
        cv2.line(image, _p(shoulder), _p(hand), lit(look.top, light), arm_width, cv2.LINE_AA, SHIFT)
    if pose.carrying is not None:
        middle = 0.5 * (xy[6] + xy[7])
        size = max(2, round(0.22 * ppm))
        cv2.rectangle(image, _p(middle - size), _p(middle + size), lit(pose.carrying, light), -1, cv2.LINE_AA, SHIFT)
    radius = max(1.0, 0.075 * h * ppm)
    centre = xy[12]
    cv2.circle(image, _p(centre), round(radius * ONE), lit(look.hat or look.hair, light), -1, cv2.LINE_AA, SHIFT)
    if look.hat is None:  # a face below the hair; a hard hat from above hides it
        face = centre + np.array([0.0, 0.3 * radius])
        cv2.circle(image, _p(face), round(0.72 * radius * ONE), skin, -1, cv2.LINE_AA, SHIFT)


def _p(point: Floats) -> tuple[int, int]:
    return round(float(point[0]) * (1 << SHIFT)), round(float(point[1]) * (1 << SHIFT))


@dataclass(frozen=True, slots=True)
class StallLook:
    """A street stall: its type, overall size (the truth's box) and its parts."""

    kind: str  # "cart" | "mat" | "rack" | "spill"
    extent: tuple[float, float, float]  # length (along its heading), width, height
    body: Colour
    cover: Colour  # canopy, cloth or sign
    items: tuple[Item, ...]  # goods, garments or crates, relative to its centre


def stall_look(rng: np.random.Generator, kind: str) -> StallLook:
    """A stall of this kind with its goods laid out at random."""

    def colour() -> Colour:
        return tuple(int(c) for c in rng.integers(30, 240, size=3))  # type: ignore[return-value]

    items: list[Item] = []
    if kind == "cart":
        for _ in range(int(rng.integers(4, 9))):
            items.append((float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.3, 0.3)), 1.15,
                          float(rng.uniform(0.15, 0.3)), float(rng.uniform(0.15, 0.3)), float(rng.uniform(0.1, 0.25)),
                          colour()))
        return StallLook(kind, (1.9, 1.4, 2.1), colour(), colour(), tuple(items))
    if kind == "mat":
        length, width = float(rng.uniform(1.4, 2.2)), float(rng.uniform(1.0, 1.4))
        for _ in range(int(rng.integers(8, 16))):
            items.append((float(rng.uniform(-0.42, 0.42)) * length, float(rng.uniform(-0.4, 0.4)) * width, 0.03,
                          float(rng.uniform(0.12, 0.3)), float(rng.uniform(0.12, 0.3)), float(rng.uniform(0.06, 0.3)),
                          colour()))
        return StallLook(kind, (length, width, 0.35), colour(), colour(), tuple(items))
    if kind == "rack":
        length = float(rng.uniform(1.2, 1.8))
        count = int(rng.integers(6, 12))
        for index in range(count):
            along = (index + 0.5) / count * (length - 0.2) - (length - 0.2) / 2
            drop = float(rng.uniform(0.6, 1.0))
            items.append((along, 0.0, 1.55 - drop, 0.05, float(rng.uniform(0.35, 0.5)), drop, colour()))
        return StallLook(kind, (length, 0.6, 1.7), (70, 70, 75), colour(), tuple(items))
    length, width = float(rng.uniform(1.6, 2.4)), float(rng.uniform(0.9, 1.3))
    for _ in range(int(rng.integers(4, 9))):
        size = float(rng.uniform(0.35, 0.55))
        stacked = rng.random() < 0.3
        items.append((float(rng.uniform(-0.4, 0.4)) * length, float(rng.uniform(-0.3, 0.3)) * width,
                      size if stacked else 0.0, size, size * 0.8, size * float(rng.uniform(0.6, 1.0)), colour()))
    return StallLook("spill", (length, width, 1.1), colour(), colour(), tuple(items))


def stall_box(camera: PoleCamera, x: float, y: float, heading: float, look: StallLook,
              ) -> tuple[float, float, float, float] | None:
    """The image box (x, y, w, h) of a stall's overall extent standing at (x, y), or None if behind the lens."""
    xy, depth = camera.project(box_corners(x, y, 0.0, heading, *look.extent))
    if (depth < NEAR_M).any():
        return None
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def draw_stall(image: Image, camera: PoleCamera, x: float, y: float, heading: float, look: StallLook,
               light: Light, setup: float) -> None:
    """A stall at (x, y); `setup` (0-1) is how far it is unpacked: a folded bundle at 0, fully laid out at 1."""
    c, s = math.cos(heading), math.sin(heading)

    def place(along: float, across: float) -> tuple[float, float]:
        return x + along * c - across * s, y + along * s + across * c

    length, width, _ = look.extent
    if look.kind == "cart":
        bx, by = place(-0.15, 0.0)
        wheels = [[*place(along, across), 0.0, 0.5, 0.08, 0.5] for along, across in ((0.8, 0.0), (-0.45, -0.5),
                                                                                      (-0.45, 0.5))]
        draw_boxes(image, camera, np.array([*wheels, [bx, by, 0.45, 1.3, 0.9, 0.7]]), heading,
                   [TYRE, TYRE, TYRE, look.body], light)
        _draw_items(image, camera, look.items, place, heading, light, len(look.items))
        draw_pole(image, camera, (bx, by, 1.15), (bx, by, 2.05), 0.025, (80, 80, 80), light)
        draw_box(image, camera, bx, by, 2.05, heading, (1.7, 1.3, 0.05), look.cover, light)
    elif look.kind == "mat":
        spread = 0.25 + 0.75 * setup
        draw_box(image, camera, x, y, 0.0, heading, (length * spread, width * spread, 0.03), look.cover, light)
        if setup > 0.6:
            shown = round(len(look.items) * (setup - 0.6) / 0.4)
            _draw_items(image, camera, look.items, place, heading, light, shown)
    elif look.kind == "rack":
        feet = [[*place(end, 0.0), 0.0, 0.06, 0.55, 0.04] for end in (-length / 2, length / 2)]
        draw_boxes(image, camera, np.array(feet), heading, [look.body, look.body], light)
        for px, py, *_ in feet:
            draw_pole(image, camera, (px, py, 0.0), (px, py, 1.6), 0.02, look.body, light)
        left, right = place(-length / 2, 0.0), place(length / 2, 0.0)
        draw_pole(image, camera, (*left, 1.6), (*right, 1.6), 0.02, look.body, light)
        _draw_items(image, camera, look.items, place, heading, light, round(len(look.items) * setup))
    else:
        _draw_items(image, camera, look.items, place, heading, light, max(1, round(len(look.items) * setup)))


def _draw_items(image: Image, camera: PoleCamera, items: tuple[Item, ...], place: Place, heading: float,
                light: Light, count: int) -> None:
    """The first `count` items, farthest first."""
    chosen = items[:count]
    if chosen:
        boxes = np.array([[*place(item[0], item[1]), item[2], item[3], item[4], item[5]] for item in chosen])
        draw_boxes(image, camera, boxes, heading, [item[6] for item in chosen], light)


@dataclass(frozen=True, slots=True)
class VehicleLook:
    """A car, van, scooter or dump truck."""

    kind: str
    length: float
    width: float
    colour: Colour


def vehicle_look(rng: np.random.Generator, kind: str) -> VehicleLook:
    """A vehicle of this kind in a common colour."""
    palette: tuple[Colour, ...] = ((235, 235, 235), (30, 30, 30), (160, 160, 165), (40, 40, 150), (140, 80, 30),
                                   (200, 200, 190), (60, 110, 60))
    colour = palette[int(rng.integers(0, len(palette)))]
    if kind == "van":
        return VehicleLook(kind, float(rng.uniform(4.6, 5.4)), 1.95, colour)
    if kind == "scooter":
        return VehicleLook(kind, 1.7, 0.6, colour)
    if kind == "truck":
        return VehicleLook(kind, 7.5, 2.5, (30, 160, 220) if rng.random() < 0.6 else (40, 60, 170))
    return VehicleLook("car", float(rng.uniform(4.1, 4.8)), float(rng.uniform(1.75, 1.85)), colour)


def draw_vehicle(image: Image, camera: PoleCamera, look: VehicleLook, x: float, y: float, heading: float,
                 light: Light, rider: Look | None = None, lamps_on: bool = False) -> None:
    """A vehicle at (x, y) facing `heading`, with its lamps lit at night."""
    c, s = math.cos(heading), math.sin(heading)
    length, width = look.length, look.width

    def place(along: float, across: float = 0.0) -> tuple[float, float]:
        return x + along * c - across * s, y + along * s + across * c

    if look.kind == "scooter":
        draw_box(image, camera, *place(0.0), 0.2, heading, (length, 0.35, 0.45), look.colour, light)
        if rider is not None:
            draw_person(image, camera, rider, Pose(*place(-0.15), heading, None, seat_m=0.65), light)
        return
    wheels = [[*place(along, across), 0.0, 0.62, 0.22, 0.62] for along in (-0.32 * length, 0.32 * length)
              for across in (-0.45 * width, 0.45 * width)]
    draw_boxes(image, camera, np.array(wheels), heading, [TYRE] * 4, light)
    if look.kind == "truck":
        draw_box(image, camera, *place(0.36 * length), 0.6, heading, (1.9, width, 2.1), look.colour, light)
        draw_box(image, camera, *place(-0.14 * length), 0.9, heading, (0.68 * length, width, 1.5), (70, 90, 110),
                 light)
    elif look.kind == "van":
        draw_box(image, camera, *place(0.0), 0.3, heading, (length, width, 1.75), look.colour, light)
        draw_box(image, camera, *place(0.45 * length), 1.2, heading, (0.12, width * 0.96, 0.7), GLASS, light)
    else:
        draw_box(image, camera, *place(0.0), 0.28, heading, (length, width, 0.72), look.colour, light)
        draw_box(image, camera, *place(-0.08 * length), 1.0, heading, (0.52 * length, 0.9 * width, 0.52), GLASS,
                 light, top=lit(look.colour, (1.0, 1.0, 1.0)))
    if lamps_on:
        _draw_lamps(image, camera, place, length, width)


def _draw_lamps(image: Image, camera: PoleCamera, place: Place, length: float, width: float) -> None:
    for along, colour in ((length / 2 + 0.02, (230, 250, 255)), (-length / 2 - 0.02, (40, 40, 230))):
        for across in (-0.36 * width, 0.36 * width):
            lx, ly = place(along, across)
            xy, depth = camera.project(np.array([[lx, ly, 0.7]]))
            if depth[0] < NEAR_M:
                continue
            radius = max(1, round(0.14 * camera.focal_px / float(depth[0])))
            cv2.circle(image, _p(xy[0]), radius << SHIFT, colour, -1, cv2.LINE_AA, SHIFT)


def headlight_beam(camera: PoleCamera, x: float, y: float, heading: float, length: float, reach: float
                   ) -> Floats | None:
    """The image outline of the patch of road a vehicle's headlights light up ahead of it."""
    c, s = math.cos(heading), math.sin(heading)
    front = length / 2
    corners = [(front, -0.8), (front, 0.8), (front + reach, 0.45 * reach), (front + reach, -0.45 * reach)]
    ground = np.array([(x + a * c - b * s, y + a * s + b * c) for a, b in corners])
    return ground_to_image(camera, ground)


def excavator_bucket(x: float, y: float, heading: float, swing: float, lift: float) -> tuple[float, float, float]:
    """Where a digger's bucket is, for its arm's swing (radians) and lift (0 dug in, 1 raised)."""
    angle = heading + swing
    reach = 6.2 - 1.2 * lift
    return x + reach * math.cos(angle), y + reach * math.sin(angle), 0.3 + 3.2 * lift


def draw_excavator(image: Image, camera: PoleCamera, x: float, y: float, heading: float, swing: float,
                   lift: float, colour: Colour, light: Light) -> None:
    """A tracked digger: tracks, a house turned by `swing`, a cab, and a two-part arm holding the bucket."""
    c, s = math.cos(heading), math.sin(heading)
    tracks = [[x - side * s, y + side * c, 0.0, 4.0, 0.7, 0.8] for side in (-1.1, 1.1)]
    draw_boxes(image, camera, np.array(tracks), heading, [(40, 40, 42)] * 2, light)
    angle = heading + swing
    ca, sa = math.cos(angle), math.sin(angle)
    draw_box(image, camera, x - 0.3 * ca, y - 0.3 * sa, 0.85, angle, (3.0, 2.4, 1.1), colour, light)
    draw_box(image, camera, x + 0.6 * ca + 0.6 * sa, y + 0.6 * sa - 0.6 * ca, 1.95, angle, (1.0, 0.9, 1.2), GLASS,
             light, top=colour)
    root = (x + 1.1 * ca, y + 1.1 * sa, 1.9)
    elbow = (x + 3.6 * ca, y + 3.6 * sa, 2.6 + 2.2 * lift)
    bucket = excavator_bucket(x, y, heading, swing, lift)
    draw_pole(image, camera, root, elbow, 0.28, colour, light)
    draw_pole(image, camera, elbow, bucket, 0.18, colour, light)
    draw_box(image, camera, bucket[0], bucket[1], bucket[2] - 0.35, angle, (0.8, 1.0, 0.7), (50, 50, 55), light)
