"""Drawing people, stalls, props, shadows and haze onto a frame with OpenCV primitives, at the right scale."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from simulators.cameras.actors import Colour, Look, Point, Stall, StallShape
from simulators.cameras.geometry import View
from simulators.cameras.layout import Prop

Image = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]
SHIFT = 2  # sub-pixel bits for cv2 drawing, so that slow movement is smooth rather than in whole-pixel steps
ONE = 1 << SHIFT


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x * ONE), round(y * ONE)


def _rect(image: Image, x0: float, y0: float, x1: float, y1: float, colour: Colour) -> None:
    corners = np.array([_pt(x0, y0), _pt(x1, y0), _pt(x1, y1), _pt(x0, y1)], dtype=np.int32)
    cv2.fillConvexPoly(image, corners, colour, cv2.LINE_AA, SHIFT)


def _line(image: Image, a: tuple[float, float], b: tuple[float, float], colour: Colour, thickness: float) -> None:
    cv2.line(image, _pt(*a), _pt(*b), colour, max(1, round(thickness)), cv2.LINE_AA, SHIFT)


def _disc(image: Image, x: float, y: float, radius: float, colour: Colour) -> None:
    cv2.circle(image, _pt(x, y), max(1, round(radius * ONE)), colour, -1, cv2.LINE_AA, SHIFT)


def darken_polygon(image: Image, points: npt.NDArray[np.float64], strength: float) -> None:
    """Darken the inside of a polygon by `strength` (0..1), with a soft edge like a penumbra."""
    height, width = image.shape[:2]
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if strength <= 0 or x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round((points - (x0, y0)) * ONE).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
    mask = cv2.blur(mask, (3, 3))
    gain = 1.0 - (strength / 255.0) * mask.astype(np.float32)
    roi = image[y0:y1, x0:x1]
    roi[:] = (roi * gain[..., None]).astype(np.uint8)


def cast_shadow(image: Image, view: View, ground: Point, half_width_m: float, height_m: float, sun: Point,
                strength: float) -> None:
    """The shadow an upright object of this size throws on the ground away from the sun."""
    length = math.hypot(*sun)
    if strength <= 0 or length < 1e-6:
        return
    side = (-sun[1] / length * half_width_m, sun[0] / length * half_width_m)
    tip = (ground[0] + sun[0] * height_m, ground[1] + sun[1] * height_m)
    corners = [(ground[0] + side[0], ground[1] + side[1]), (tip[0] + side[0] * 0.7, tip[1] + side[1] * 0.7),
               (tip[0] - side[0] * 0.7, tip[1] - side[1] * 0.7), (ground[0] - side[0], ground[1] - side[1])]
    nearest = 0.5  # a shadow reaching behind the camera is cut where it leaves the view
    points = np.array([view.to_image(x, max(z, nearest)) for x, z in corners])
    darken_polygon(image, points, strength)


def draw_person(image: Image, x: float, y: float, ppm: float, look: Look, stride_phase: float | None) -> None:
    """A person standing (phase None) or walking, feet at (x, y)."""
    tall = look.height_m * ppm
    if tall < 3:
        return
    if tall < 10:  # too small for limbs: a blob in the shirt's colour
        _rect(image, x - tall * 0.12, y - tall, x + tall * 0.12, y, look.shirt)
        return
    swing = 0.0 if stride_phase is None else math.sin(stride_phase * 2 * math.pi) * 0.13 * tall
    hip = y - 0.5 * tall
    shoulder = y - 0.8 * tall
    half = look.build * tall / 2
    for side, reach in ((-1, swing), (1, -swing)):
        _line(image, (x + side * 0.04 * tall, hip), (x + reach * 0.6, y - 0.02 * tall), look.trousers, 0.075 * tall)
    torso = np.array([_pt(x - half, shoulder), _pt(x + half, shoulder), _pt(x + half * 0.8, hip + 0.03 * tall),
                      _pt(x - half * 0.8, hip + 0.03 * tall)], dtype=np.int32)
    cv2.fillConvexPoly(image, torso, look.vest or look.shirt, cv2.LINE_AA, SHIFT)
    if look.vest is not None:
        _rect(image, x - half, hip - 0.12 * tall, x + half, hip - 0.09 * tall, (200, 200, 200))
    for side, reach in ((-1, -swing), (1, swing)):
        _line(image, (x + side * half, shoulder + 0.02 * tall), (x + side * half * 1.1 + reach * 0.5, hip),
              look.shirt, 0.05 * tall)
    head_y = y - 0.92 * tall
    _disc(image, x, head_y, 0.065 * tall, look.skin)
    _rect(image, x - 0.06 * tall, head_y - 0.07 * tall, x + 0.06 * tall, head_y - 0.02 * tall, look.hat or look.hair)


def standing_box(width_m: float, height_m: float, x: float, y: float, ppm: float) -> Box:
    """The box (x, y, w, h) in pixels of an object this size standing with its bottom centre at (x, y)."""
    return x - width_m * ppm / 2, y - height_m * ppm, width_m * ppm, height_m * ppm


def _goods(image: Image, stall: Stall, x0: float, x1: float, top: float, ppm: float) -> None:
    step = (x1 - x0) / len(stall.goods)
    for i, colour in enumerate(stall.goods):
        size = (0.12 + 0.05 * (i % 3)) * ppm
        _rect(image, x0 + i * step + 0.1 * step, top - size, x0 + (i + 0.9) * step, top, colour)


def draw_stall(image: Image, x: float, y: float, ppm: float, stall: Stall) -> None:
    """A table, a parasol over a table, or a tricycle cart, standing with its bottom centre at (x, y)."""
    half = stall.width_m * ppm / 2
    if stall.shape is StallShape.CART:
        top = y - 1.05 * ppm
        _rect(image, x - half * 0.95, top, x + half * 0.95, y - 0.3 * ppm, stall.body)
        _rect(image, x - half * 0.95, top, x + half * 0.95, top + 0.1 * ppm, stall.trim)
        _goods(image, stall, x - half * 0.85, x + half * 0.85, top, ppm)
        for wheel_x in (x - half * 0.7, x + half * 0.7):
            _disc(image, wheel_x, y - 0.28 * ppm, 0.28 * ppm, (35, 35, 35))
        if stall.height_m > 1.5:
            roof = y - stall.height_m * ppm
            for pole_x in (x - half * 0.9, x + half * 0.9):
                _line(image, (pole_x, top - 0.3 * ppm), (pole_x, roof), (90, 90, 90), 0.04 * ppm)
            _rect(image, x - half, roof, x + half, roof + 0.15 * ppm, stall.trim)
        return
    table_half = half * (0.7 if stall.shape is StallShape.UMBRELLA else 1.0)
    top = y - 0.8 * ppm
    for leg_x in (x - table_half * 0.9, x + table_half * 0.9):
        _line(image, (leg_x, top), (leg_x, y), (60, 60, 60), 0.04 * ppm)
    _rect(image, x - table_half, top, x + table_half, y - 0.25 * ppm, stall.trim)
    _rect(image, x - table_half, top - 0.06 * ppm, x + table_half, top, stall.body)
    _goods(image, stall, x - table_half * 0.9, x + table_half * 0.9, top - 0.06 * ppm, ppm)
    if stall.shape is StallShape.UMBRELLA:
        apex = y - stall.height_m * ppm
        rim = apex + 0.5 * ppm
        _line(image, (x, top), (x, apex), (80, 80, 80), 0.05 * ppm)
        segments = 6
        for i in range(segments):
            left, right = x - half + 2 * half * i / segments, x - half + 2 * half * (i + 1) / segments
            wedge = np.array([_pt(x, apex), _pt(left, rim), _pt(right, rim)], dtype=np.int32)
            cv2.fillConvexPoly(image, wedge, stall.body if i % 2 else stall.trim, cv2.LINE_AA, SHIFT)


def _shade(colour: Colour, gain: float) -> Colour:
    return round(colour[0] * gain), round(colour[1] * gain), round(colour[2] * gain)


def draw_prop(image: Image, view: View, prop: Prop, sun: Point) -> None:
    """A static object of the scene: a tree, a lamp post, a pile of sand, a stack of material or a site hut."""
    x, y = view.to_image(*prop.ground)
    ppm = view.ppm(y)
    if ppm * prop.height_m < 2:
        return
    half = prop.width_m * ppm / 2
    cast_shadow(image, view, prop.ground, prop.width_m / 2, prop.height_m, sun, 0.35)
    if prop.kind == "tree":
        _line(image, (x, y), (x, y - prop.height_m * 0.55 * ppm), (40, 55, 75), 0.25 * ppm)
        crown_y = y - prop.height_m * 0.72 * ppm
        _disc(image, x, crown_y, half, prop.colour)
        _disc(image, x + half * 0.35, crown_y + half * 0.3, half * 0.55, _shade(prop.colour, 0.7))
    elif prop.kind == "lamp":
        top = y - prop.height_m * ppm
        _line(image, (x, y), (x, top), (70, 70, 72), max(1.0, 0.15 * ppm))
        _line(image, (x, top), (x + 0.8 * ppm, top), (70, 70, 72), max(1.0, 0.1 * ppm))
        _rect(image, x + 0.6 * ppm, top, x + 1.0 * ppm, top + 0.15 * ppm, (200, 220, 225))
    elif prop.kind == "pile":
        cv2.ellipse(image, _pt(x, y), (round(half * ONE), round(prop.height_m * ppm * ONE)), 0, 180, 360,
                    prop.colour, -1, cv2.LINE_AA, SHIFT)
    else:
        top = y - prop.height_m * ppm
        _rect(image, x - half, top, x + half, y, prop.colour)
        for i in range(1, 4):
            band_y = top + (y - top) * i / 4
            _line(image, (x - half, band_y), (x + half, band_y), _shade(prop.colour, 0.8), max(1.0, 0.05 * ppm))
        if prop.kind == "hut":
            _rect(image, x - half * 1.05, top - 0.2 * ppm, x + half * 1.05, top, (150, 150, 150))


def blend_haze(image: Image, x0: int, y0: int, alpha: npt.NDArray[np.float32], colour: Colour) -> None:
    """Blend a colour into the image through an alpha patch placed at (x0, y0), as airborne dust scatters light."""
    height, width = image.shape[:2]
    ax0, ay0 = max(0, -x0), max(0, -y0)
    ax1, ay1 = min(alpha.shape[1], width - x0), min(alpha.shape[0], height - y0)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    a = alpha[ay0:ay1, ax0:ax1, None]
    roi = image[y0 + ay0:y0 + ay1, x0 + ax0:x0 + ax1]
    roi[:] = (roi + (np.array(colour, dtype=np.float32) - roi) * a).astype(np.uint8)
