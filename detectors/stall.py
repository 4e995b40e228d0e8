"""The stall detector (0501 in `no_vending` zones, 0504 in `shopfront` zones): objects that arrived and stayed.

Two backgrounds, the abandoned-object approach: the long-term background learns only what is not foreground,
so an arrived object stays foreground in it, while the motion gate's short-term average absorbs the object
within a couple of seconds of it stopping. A pixel that is foreground against the long-term background and
no longer moving accumulates stationary time; walkers never do, a person pausing does for a few seconds,
a stall for as long as it stays. Passers-by occluding a stall do not interrupt its count.

Objects: stationary pixels that touch but arrived at different times (a cart set down by a parked car) are
split into separate blobs, and blobs are grouped and matched to tracks only with blobs and tracks of about
their own age. A reported stall keeps the younger pieces of itself that come back after being hidden, but not a
blob more than twice its size: that is a new object set down over it; nor one at least half its size that stands
mostly outside its box, arrived after it: another stall set down beside it. An object stands in the zone its box's
foot is in, the foot reaching a little up the box (legs, wheels, a shadow past the zone's edge). A track is
reported only if it is shaped like an object: not taller than a standing person's
shape, not smaller than a share of the frame (a bag, a sitter; a smaller share up the frame, farther away, and a
larger one near its foot), not wider than a share of it (merged walkers), and filled; on a camera with a ground
calibration, not as wide as a vehicle on the ground for most of the last few seconds (a car parked side on).

Lighting: images are compared as log intensities, so a change of illumination is an additive offset. A coarse
gain field (the median offset over large cells) removes global and large-scale changes, sudden or gradual;
what is left is judged by its chromaticity change and by its change of log-gradient (texture and edges),
both blind to a local gain such as a shadow or a pool of light, plus large changes of brightness that are not
such a gain (a colourless darkening or brightening over unchanged texture).

The tunables (thresholds, time constants, shape rules) are settings `detect.stall.*`, `core/detect_settings.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from core.detect_settings import StallSettings
from detectors.arrays import f32, u8
from detectors.events import Box, Observation
from detectors.ground import GroundPlane
from detectors.zones import STALL_ZONES, ZoneArea
from domain.detections import DetectionKind

Image = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


@dataclass
class _Track:
    id: int
    box: tuple[int, int, int, int]  # working pixels
    since_t: float
    seen_t: float
    area: ZoneArea | None
    fill: float
    anchor: tuple[int, int, int, int]  # the box when it last settled: a stall stands still
    ghost_checked_t: float = 0.0  # the last check for being a ghost: a track starts ghost-free
    outside_t: float = math.inf  # since when the track has stood outside every zone (inf: it is in one)
    confirmed: bool = False  # reported once: reported until it leaves, even if its blob wavers meanwhile
    born_t: float = 0.0  # when the track was made (its blob may have stood long before: a track lost and found)
    wide: float = 0.0  # how much of late its box has been as wide on the ground as a vehicle's (calibrated cameras)

    def resettle(self, box: tuple[int, int, int, int], t: float, settings: StallSettings) -> None:
        """Restart the dwell clock if the object left the box where it settled: it is still on its way.
        Something joining it (its vendor, a customer) or hiding part of it keeps the overlap high."""
        if _overlap(box, self.anchor) < settings.settled_overlap:
            self.since_t, self.anchor = t - settings.stationary_on_s, box


class StallDetector:
    """Stationary objects in stall zones, from frames at the working resolution."""

    def __init__(self, areas: Sequence[ZoneArea], shape: tuple[int, int], to_source: float,
                 settings: StallSettings, ground: GroundPlane | None = None) -> None:
        self.areas = [area for area in areas if area.zone.kind in STALL_ZONES]
        self._ground = ground
        self._settings = settings
        self._shape = shape
        self._max_width = settings.max_width_share * shape[1]  # working pixels: wider is not one stall
        self._to_source = to_source
        self._bootstrap: list[Image] = []
        self._bootstrap_t: float | None = None
        self._background: Image | None = None
        self._log_background: Image | None = None
        self._stationary = np.zeros(shape, np.float32)  # seconds each pixel has been stationary foreground
        self._missing = np.zeros(shape, np.float32)  # seconds each pixel has looked like background since
        self._learn_t = 0.0
        self._t: float | None = None
        self._tracks: list[_Track] = []
        self._next_id = 1
        self.foreground = np.zeros(shape, np.bool_)

    def update(self, frame: Image, moving: Mask, t: float) -> list[Observation]:
        """Feed one frame (BGR float32 at the working resolution) and its motion mask; observations due now."""
        if not self.areas:
            return []
        if self._background is None:
            self._learn_first_background(frame, t)
            self._t = t
            return []
        dt = min(max(t - (self._t or t), 0.0), 1.0)
        self._t = t
        self.foreground = self._foreground(frame, moving)
        if cv2.countNonZero(self.foreground.view(np.uint8)) > self._settings.reset_share * self.foreground.size:
            self._relearn(frame)
            return []
        self._accumulate(self.foreground, moving, dt)
        self._learn(frame, moving, t)
        self._track(frame, t)
        return self._observations(t)

    # --- backgrounds -----------------------------------------------------------------------------

    def _learn_first_background(self, frame: Image, t: float) -> None:
        if self._bootstrap_t is None:
            self._bootstrap_t = t
        self._bootstrap.append(frame)
        if t - self._bootstrap_t >= self._settings.bootstrap_s:
            step = max(1, len(self._bootstrap) // 15)
            self._set_background(np.median(np.stack(self._bootstrap[::step]), axis=0).astype(np.float32))
            self._bootstrap = []
            self._learn_t = t

    def _set_background(self, background: Image) -> None:
        self._background = background
        self._log_background = f32(cv2.log(background + np.float32(self._settings.log_offset)))

    def _relearn(self, frame: Image) -> None:
        self._set_background(frame.copy())
        self._stationary[:] = 0
        self._missing[:] = 0

    def _learn(self, frame: Image, moving: Mask, t: float) -> None:
        """Blend background pixels into the long-term background, once a second (it changes slowly)."""
        if t - self._learn_t < 1.0 or self._background is None:
            return
        alpha = 1.0 - math.exp(-(t - self._learn_t) / self._settings.long_term_s)
        # Pixels of a stationary object stay out even when they briefly look like background.
        quiet = (~self.foreground & ~moving & (self._stationary == 0)).view(np.uint8)
        for track in self._tracks:  # nor does any of an object's box, or its edges would be learned as background
            x, y, w, h = _grown(track.box, self._settings.group_reach)
            quiet[max(y, 0):y + h, max(x, 0):x + w] = 0
        cv2.accumulateWeighted(frame, self._background, alpha, mask=quiet)
        self._set_background(self._background)
        self._learn_t = t

    # --- per-pixel foreground and stationary time ------------------------------------------------

    def _foreground(self, frame: Image, moving: Mask) -> Mask:
        assert self._log_background is not None
        s = self._settings
        difference = f32(cv2.log(frame + np.float32(s.log_offset))) - self._log_background
        difference -= self._gain_field(difference, moving)
        brightness = f32(cv2.transform(difference, _MEAN))
        # |d − mean(d)|² over the channels = Σd² − 3·mean², the part of the change a gain cannot explain.
        squares = f32(cv2.transform(difference * difference, _SUM))
        chroma = f32(cv2.sqrt(np.maximum(squares - 3 * brightness * brightness, 0)))
        gradient = f32(cv2.magnitude(cv2.Sobel(brightness, cv2.CV_32F, 1, 0, ksize=3),
                                 cv2.Sobel(brightness, cv2.CV_32F, 0, 1, ksize=3))) * np.float32(0.25)
        chroma_limit = max(s.chroma_min, s.noise_factor * _noise(chroma))
        gradient_limit = max(s.gradient_min, s.noise_factor * _noise(gradient))
        # A shadow or a pool of light (a headlight's beam, a lamp) changes every channel alike: no chroma change, so
        # no large change of brightness there is a thing; a shadow's edges are edges of light too, while in a pool
        # of light a change of texture is still a thing.
        magnitude = np.abs(brightness)
        colourless = (magnitude > s.shadow_min) & (magnitude < s.shadow_max) & (chroma <= chroma_limit)
        shadow = colourless & (brightness < 0)
        changed = ((chroma > chroma_limit) | ((gradient > gradient_limit) & ~shadow)
                   | ((magnitude > s.brightness_change) & ~colourless))
        changed_u8 = cv2.morphologyEx(changed.view(np.uint8), cv2.MORPH_OPEN, _SMALL)
        return u8(cv2.morphologyEx(changed_u8, cv2.MORPH_CLOSE, _CLOSE)).view(np.bool_)

    def _gain_field(self, difference: Image, moving: Mask) -> Image:
        """The illumination change per pixel: the mean log change of large cells, from what is background
        (the last foreground and what moves are left out, or a big stall would pass for a change of light)."""
        excluded = cv2.dilate((self.foreground | moving).view(np.uint8), _CLOSE)
        weight = np.float32(1) - excluded.astype(np.float32)
        if cv2.countNonZero(weight) < 0.2 * weight.size:  # almost everything changed: take the whole frame
            weight[:] = 1
        overall = f32(cv2.mean(difference, mask=(weight > 0).view(np.uint8))[:3])
        grid = (self._settings.gain_columns, self._settings.gain_rows)
        sums = cv2.resize(difference * weight[..., None], grid, interpolation=cv2.INTER_AREA)
        weights = cv2.resize(weight, grid, interpolation=cv2.INTER_AREA)[..., None]
        field = np.where(weights > 0.25, sums / np.maximum(weights, np.float32(1e-6)), overall).astype(np.float32)
        field = f32(cv2.GaussianBlur(field, (3, 3), 0))
        return f32(cv2.resize(field, (self._shape[1], self._shape[0]), interpolation=cv2.INTER_LINEAR))

    def _accumulate(self, foreground: Mask, moving: Mask, dt: float) -> None:
        still = foreground & ~moving
        # Occluded by passers-by: keep counting what was already stationary.
        counting = still | (foreground & moving & (self._stationary > 0))
        self._stationary[counting] += dt
        self._missing[foreground] = 0
        # Looking like the long-term background again, moving or not, means the object is gone.
        self._missing[~foreground] += dt
        gone = self._missing >= self._settings.miss_reset_s
        self._stationary[gone] = 0

    # --- blobs, tracks and ghosts ----------------------------------------------------------------

    def _track(self, frame: Image, t: float) -> None:
        s = self._settings
        static = (self._stationary >= s.stationary_on_s).view(np.uint8)
        static = u8(cv2.morphologyEx(static, cv2.MORPH_CLOSE, _CLOSE))
        # Things that arrived at different times are different things, even touching (a cart set down by a
        # parked car): cut the static mask where the stationary time jumps. That also peels the outline, and thin
        # parts such as a pole, off whatever has stood longer than the jump; a track keeps its object regardless.
        static[cv2.morphologyEx(self._stationary, cv2.MORPH_GRADIENT, _SMALL) > s.age_split_s] = 0
        count, labelled, stats, _ = cv2.connectedComponentsWithStats(static, connectivity=8)
        labels = np.asarray(labelled, np.int32)
        min_area = s.min_area_share * self._shape[0] * self._shape[1]
        blobs = [_Blob((int(x), int(y), int(w), int(h)), int(area), self._age(labels, label, (x, y, w, h)))
                 for label, (x, y, w, h, area) in enumerate(stats[1:count], 1) if area >= min_area]
        seen: dict[int, tuple[tuple[int, int, int, int], int]] = {}
        for blob in _group(blobs, s, self._max_width):
            box, area = blob.box, blob.area
            track = self._match(blob, t)
            if track is None:
                if self._near_known(box, blob.age_s, t):
                    continue  # a piece of a reported object (goods, a customer): not another object
                track = _Track(self._next_id, box, t - max(blob.age_s, s.stationary_on_s), t, None, 0.0, box, t,
                               born_t=t)
                self._next_id += 1
                self._tracks.append(track)
            if track.id in seen and seen[track.id][1] >= area:  # two objects now match one track: keep the larger
                continue
            seen[track.id] = (box, area)
        for track in self._tracks:
            if track.id not in seen:
                continue
            box, area = seen[track.id]
            if not track.confirmed:
                track.resettle(box, t, s)
                self._count_vehicle(track, box, t)
            track.box, track.seen_t = box, t
            track.fill = area / float(box[2] * box[3])
            if not track.confirmed:
                area_now = self._area_of(box)
                if area_now is None:
                    track.outside_t = min(track.outside_t, t)
                elif t - track.outside_t >= s.outside_s:
                    # The dwell is time in the zone: something that stood beside it and that a passer-by's
                    # blob stretches into the zone has not been standing in it.
                    track.since_t = max(track.since_t, t - s.stationary_on_s)
                if area_now is not None:
                    track.outside_t = math.inf
                track.area = area_now
            if not track.confirmed and t - track.ghost_checked_t >= s.ghost_check_s:
                track.ghost_checked_t = t
                if self._is_ghost(frame, box):
                    self._absorb(frame, box)
                    track.seen_t = -math.inf
        self._tracks = [track for track in self._tracks
                        if t - track.seen_t <= (s.confirmed_grace_s if track.confirmed else s.track_grace_s)]

    def _near_known(self, box: tuple[int, int, int, int], age_s: float, t: float) -> bool:
        """Whether the box, which has stood `age_s`, touches an object already reported, and is not an object of its
        own that arrived later beside it (an umbrella over a table arrives with it)."""
        s = self._settings
        return any(track.confirmed and track.box != box and not _bigger(box, track.box)
                   and not (t - track.since_t - age_s > s.age_split_s and _beside(box, track.box))
                   and _overlap(box, _grown(track.box, s.known_reach)) > 0 for track in self._tracks)

    def _count_vehicle(self, track: _Track, box: tuple[int, int, int, int], t: float) -> None:
        """Average, over the last `vehicle_s` or so, whether the track's box is as wide on the ground as a vehicle's
        (on a calibrated camera)."""
        width_m = self._ground.width_m(self._source_box(box)) if self._ground is not None else None
        wide = float(width_m is not None and width_m > self._settings.max_width_m)
        track.wide += (wide - track.wide) * (1 - math.exp(-(t - track.seen_t) / self._settings.vehicle_s))

    def _vehicle(self, track: _Track, t: float) -> bool:
        """Whether, on a calibrated camera, the track is not yet judged (watched for less than `vehicle_s`, even if
        its blob stood long before: a parked car's track lost and found again) or is a vehicle: as wide as one most
        of the last `vehicle_s` or so (passers-by merging into a stall's blob make it that wide for moments)."""
        if self._ground is None:
            return False
        return t - track.born_t < self._settings.vehicle_s or track.wide >= 0.5

    def _age(self, labels: npt.NDArray[np.int32], label: int, box: tuple[int, int, int, int]) -> float:
        """How long a blob has stood: the median stationary time of its pixels."""
        x, y, w, h = box
        pixels = self._stationary[y:y + h, x:x + w][labels[y:y + h, x:x + w] == label]
        return float(np.median(pixels))

    def _match(self, blob: _Blob, t: float) -> _Track | None:
        """The track the blob continues: the one it overlaps most, among those that arrived when it did (a
        reported stall keeps any blob over it not much bigger than itself and not standing beside it: pieces of it
        hidden for a while come back younger)."""
        best, best_overlap = None, 0.0
        for track in self._tracks:
            if (not track.confirmed or _bigger(blob.box, track.box) or _beside(blob.box, track.box)) \
                    and abs((t - track.since_t) - blob.age_s) > self._settings.age_split_s:
                continue
            overlap = _overlap(blob.box, track.box)
            if overlap > best_overlap:
                best, best_overlap = track, overlap
        return best if best_overlap >= 0.3 else None

    def _area_of(self, box: tuple[int, int, int, int]) -> ZoneArea | None:
        """The zone the object stands in: the one its foot is in, where its box's foot may reach a little past the
        zone's edge (legs, a shadow, a wheel the box takes in)."""
        x, y, w, h = self._source_box(box)
        reach = self._settings.foot_reach
        return next((area for area in self.areas
                     if area.contains(x + w / 2, y + h) or area.contains(x + w / 2, y + (1 - reach) * h)), None)

    def _is_ghost(self, frame: Image, box: tuple[int, int, int, int]) -> bool:
        """Whether the blob is where something left rather than arrived: its outline is an edge of the background,
        not of the frame."""
        assert self._background is not None
        x, y, w, h = box
        pad = 2
        y0, x0 = max(0, y - pad), max(0, x - pad)
        y1, x1 = y + h + pad, x + w + pad
        mask = (self._stationary[y0:y1, x0:x1] >= self._settings.stationary_on_s).view(np.uint8)
        mask = u8(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _CLOSE))
        outline = (cv2.dilate(mask, _SMALL) - cv2.erode(mask, _SMALL)).view(np.bool_)
        if not outline.any():
            return False
        now = _edges(frame[y0:y1, x0:x1], self._settings.log_offset)[outline].mean()
        before = _edges(self._background[y0:y1, x0:x1], self._settings.log_offset)[outline].mean()
        return bool(before > 1.3 * now)

    def _absorb(self, frame: Image, box: tuple[int, int, int, int]) -> None:
        assert self._background is not None
        x, y, w, h = box
        self._background[y:y + h, x:x + w] = frame[y:y + h, x:x + w]
        self._set_background(self._background)
        self._stationary[y:y + h, x:x + w] = 0

    def _observations(self, t: float) -> list[Observation]:
        observations = []
        for track in sorted(self._tracks, key=lambda track: -track.box[2] * track.box[3]):
            if track.area is None:
                continue
            dwell = track.area.zone.dwell_s
            stationary_s = track.seen_t - track.since_t
            if not track.confirmed and (stationary_s < dwell or not self._plausible(track)
                                        or self._near_known(track.box, stationary_s, t) or self._vehicle(track, t)):
                continue
            track.confirmed = True
            confidence = 0.5 + 0.3 * min(1.0, stationary_s / (2 * dwell) if dwell else 1.0) + 0.2 * track.fill
            observations.append(Observation(
                f"stall-{track.id}", track.area.zone, DetectionKind.STALL, track.since_t, track.seen_t,
                round(min(confidence, 0.99), 3), self._source_box(track.box),
            ))
        return observations

    def _plausible(self, track: _Track) -> bool:
        """Whether the track is shaped like one object rather than a merge of shadows and passers-by."""
        s = self._settings
        _, y, width, height = track.box
        # Lower in the frame is nearer the camera, where the same thing looks bigger: the smallest stall's size is
        # the one at mid-height, smaller up the frame and larger towards its foot (its side linear in the row).
        nearness = 1 + s.perspective * (2 * (y + height) / self._shape[0] - 1)
        return (width <= self._max_width and track.fill >= s.min_fill
                and width * height >= s.min_box_share * nearness ** 2 * self._shape[0] * self._shape[1]
                and not _person_shaped(track.box, s.person_aspect))

    def _source_box(self, box: tuple[int, int, int, int]) -> Box:
        s = self._to_source
        x, y, w, h = box
        return (round(x * s), round(y * s), round(w * s), round(h * s))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box: a stall whose blob grows or shrinks stays the same track."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / min(a[2] * a[3], b[2] * b[3])


def _bigger(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether box a is more than twice as big as box b: another object than b, not a piece of it."""
    return a[2] * a[3] > 2 * b[2] * b[3]


def _beside(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether box a, arrived after b, is an object of its own beside it: at least half as big, and mostly outside
    it (a piece of b that was hidden for a while comes back inside b's box)."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inside = max(width, 0) * max(height, 0)
    return 2 * a[2] * a[3] >= b[2] * b[3] and 2 * inside < a[2] * a[3]


def _noise(measure: Image) -> float:
    """The median of a measure over the frame, on every other pixel (the median is the costly part)."""
    return float(np.median(measure[::2, ::2]))


def _grown(box: tuple[int, int, int, int], reach: float) -> tuple[int, int, int, int]:
    """The box with a margin of `reach` × its height (and at least two pixels) on every side."""
    x, y, w, h = box
    margin = max(2, round(reach * h))
    return (x - margin, y - margin, w + 2 * margin, h + 2 * margin)


@dataclass(frozen=True, slots=True)
class _Blob:
    """Stationary pixels that belong together: box (working pixels), pixel count, and how long they have stood."""

    box: tuple[int, int, int, int]
    area: int
    age_s: float


def _group(blobs: list[_Blob], settings: StallSettings, max_width: float) -> list[_Blob]:
    """Blobs merged into objects where their grown boxes meet, their union is compact (side by side, not two
    objects diagonally apart) and no wider than a stall can be (a stall set down by a car parking at the same
    time stays apart from it), and they arrived at about the same time."""
    groups = list(blobs)
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                a, b = groups[i].box, groups[j].box
                box = _union([a, b])
                near = _overlap(_grown(a, settings.group_reach), _grown(b, settings.group_reach)) > 0
                compact = box[2] * box[3] <= settings.compact * (a[2] * a[3] + b[2] * b[3])
                aspect = settings.person_aspect
                together = abs(groups[i].age_s - groups[j].age_s) <= settings.age_split_s
                if near and compact and together and box[2] <= max_width and (
                        _side_by_side(a, b) or not (_person_shaped(a, aspect) or _person_shaped(b, aspect))):
                    larger = max(groups[i], groups[j], key=lambda blob: blob.area)
                    groups[i] = _Blob(box, groups[i].area + groups[j].area, larger.age_s)
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return groups


def _person_shaped(box: tuple[int, int, int, int], aspect: float) -> bool:
    return box[3] > aspect * box[2]


def _side_by_side(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether the boxes share at least half the smaller height: standing on the same ground (a vendor by
    the stall), not one above the other (a passer-by in front of a stall farther away)."""
    shared = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return shared >= 0.5 * min(a[3], b[3])


def _union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def _edges(image: Image, log_offset: float) -> Image:
    gray = cv2.log(cv2.transform(image, _MEAN) + np.float32(log_offset))
    return f32(cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)))


_MEAN = np.full((1, 3), 1 / 3, np.float32)
_SUM = np.ones((1, 3), np.float32)
_SMALL = np.ones((2, 2), np.uint8)
_CLOSE = np.ones((5, 5), np.uint8)
