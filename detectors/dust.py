"""The dust detector (0302, `construction` zones): a haze score over the site against its clear baseline.

Airborne dust veils the scene: I = J·t + A·(1 − t), with A the dust's colour and t < 1 its transmission. Two
cues follow, measured per cell of a grid and each compared with the cell's clear baseline:
- contrast loss: the veil scales local contrast by t whatever A is. Measured as the coefficient of variation
  (local std / local mean) and the texture energy (|Laplacian| / local mean), both ratios to the local mean,
  hence blind to a change of illumination. Only cells with structure in clear air can show it;
- airlight: the veil adds (1 − t)·A, so a cell under dust over darker ground gets brighter than the rest of the
  frame, without gaining contrast. Brightness is taken relative to the frame's upper-quartile change, which is
  the sunlit clear ground under an exposure jump (global), a cloud's shadow (it darkens what it covers and
  leaves the upper quartile alone) or a slow drift of light. Over flat, bare ground (no contrast in clear air)
  a larger brightening, shared by the cells around, counts alone: there the ratio of contrasts is noise over
  noise, and a plume's own soft edge raises it.
Contrast is read relative to the frame's upper-quartile change too, so that a camera that loses sharpness all
over (shaken, refocusing, compressed harder) is not a plume.
The clear baseline of a cell is the median of its measures over the last minutes in which it was not hazy: walkers
and vehicles crossing it are brief, and dust does not teach it. Its brightness is kept relative to the frame's light
(the median change of the clear cells), so that a baseline started again in other light compares with the rest. The
first baseline is the median of the first seconds of video, so workers standing at the start are not part of it; a
cell hazy on its own (no hazy cell beside it, as a veil would have) is something that left it, and its baseline
follows. Machinery and vehicles change a cell's brightness by much from one step to the next, over several cells at
once; dust drifts in. Such a cell shows something else now (an arm swung away, a truck's flat side): it is not
judged for a few seconds, and its baseline starts again from what it settles into; for a minute after, it goes back
to its baseline from before whenever it looks more like that (the machine was passing: a truck that drove on, an arm
that crept back, too slowly to jump, uncovering ground without the arm's edges, which would pass for a veil). A cell
is dusty when it has been hazy most of the last few seconds (walkers pass on). A plume rises from the ground, so its
cloud stands over its source, largely above the zone's ground outline in the image: a zone's cells are its own and
those of the air above it, and its dust is what rose there and what drifted on from that, cell by cell (two clouds
that meet stay two). The zone's score is the share of its cells that are dusty; an episode starts when its first
cells went dusty and needs the score above its threshold, on enough cells, with gaps of a few seconds allowed, for
the zone's dwell time; once confirmed it goes on while the score stays above a lower threshold, on fewer cells for
up to `thin_s` (a plume thinning out for a while is still the plume; a few cells that stay hazy for minutes after it
are ground it changed, and a plume that rises later is another plume).

The tunables (grid, time constants, thresholds) are settings `detect.dust.*`, `core/detect_settings.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from core.detect_settings import DustSettings
from detectors.arrays import f32, u8
from detectors.events import Observation
from detectors.zones import ZoneArea
from domain.detections import DetectionKind
from domain.registry import ZoneKind

Image = npt.NDArray[np.float32]
Cells = npt.NDArray[np.bool_]


@dataclass
class _Episode:
    since_t: float
    seen_t: float
    peak: float
    thin_t: float | None = None  # since when a confirmed episode has been on fewer cells than it takes to start one


class _ZoneDust:
    """Score and persistence state of one construction zone."""

    def __init__(self, area: ZoneArea, cells: Cells, ground: Cells) -> None:
        self.area = area
        self.cells = cells  # the zone's ground and the air above it
        self.ground = ground
        self.episode: _Episode | None = None
        self.clear_t = 0.0  # the last time no cell of the zone was dusty
        self.number = 0


class DustDetector:
    """Dust over construction zones, from frames at the working resolution."""

    def __init__(self, areas: Sequence[ZoneArea], shape: tuple[int, int], settings: DustSettings) -> None:
        self._settings = settings
        self._grid = (max(1, shape[1] // settings.cell_px), max(1, shape[0] // settings.cell_px))
        self._zones = []
        for area in areas:
            if area.zone.kind is ZoneKind.CONSTRUCTION:
                with_air, ground = (cv2.resize(mask.astype(np.float32), self._grid, interpolation=cv2.INTER_AREA)
                                    for mask in (_with_air(area.mask, settings.air_rise), area.mask))
                self._zones.append(_ZoneDust(area, with_air >= 0.5, ground >= 0.5))
        self._t: float | None = None
        self._start_t = 0.0
        self._smooth = np.empty((0,), np.float32)  # (rows, cols, 3): cv, texture, log brightness
        self._last = np.empty((0,), np.float32)  # the measures of the last step, unsmoothed
        self._samples = np.empty((0,), np.float32)  # (samples, rows, cols, 3), a ring
        self._baseline = np.empty((0,), np.float32)  # brightness relative to the frame's light level (below)
        self._level = 0.0  # the frame's change of light: the median change of brightness of its clear cells
        self._dusty = np.empty((0,), np.float32)
        self._busy_t = np.full((self._grid[1], self._grid[0]), -math.inf)  # when each cell last saw hard motion
        self._before = np.empty((0,), np.float32)  # each cell's clear baseline from before it last went busy
        # Per cell, the zones where the dust over it rose (one bit each), or -1 where no plume is established.
        self._rose_in: npt.NDArray[np.int64] = np.full((self._grid[1], self._grid[0]), -1, np.int64)
        self._sample_t = 0.0
        self._count = 0
        self.scores: dict[str, float] = {}

    def update(self, frame: Image, t: float) -> list[Observation]:
        """Feed one frame (BGR float32 at the working resolution); observations due now."""
        if not self._zones:
            return []
        if self._t is None or t - self._t >= self._settings.step_s:
            self._measure(frame, t)
        return [obs for zone in self._zones if (obs := self._observe(zone)) is not None]

    def _measures(self, frame: Image) -> tuple[Image, Image]:
        """Per cell: coefficient of variation, texture energy and log brightness; and the cell means."""
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        mean = f32(cv2.resize(gray, self._grid, interpolation=cv2.INTER_AREA))
        square = cv2.resize(gray * gray, self._grid, interpolation=cv2.INTER_AREA)
        # Texture of a slightly smoothed image: the structure of the scene rather than its sensor noise.
        detail = np.abs(cv2.Laplacian(cv2.GaussianBlur(gray, (5, 5), 1.0), cv2.CV_32F))
        texture = cv2.resize(detail, self._grid, interpolation=cv2.INTER_AREA)
        denominator = mean + np.float32(1)
        cv = np.sqrt(np.maximum(square - mean * mean, 0)) / denominator
        return f32(np.dstack([cv, texture / denominator, np.log(denominator)])), mean

    def _measure(self, frame: Image, t: float) -> None:
        measures, mean = self._measures(frame)
        s = self._settings
        if self._t is None:
            self._smooth, self._last = measures, measures
            self._samples = np.full((s.samples, *measures.shape), np.nan, np.float32)
            self._samples[0] = self._unlit(measures)
            self._baseline, self._sample_t, self._count = self._samples[0].copy(), t, 1
            self._before = self._baseline.copy()
            self._dusty = np.zeros(measures.shape[:2], np.float32)
            self._t = self._start_t = t
            return
        dt = t - self._t
        self._t = t
        self._smooth += (measures - self._smooth) * np.float32(1 - math.exp(-dt / s.smooth_s))
        exposed = mean < s.overexposed
        # Baselines keep brightness relative to the frame's light, so that one started again now, in other light
        # than the others' samples were taken in, compares with them (a cell a worker crossed while clouds came).
        # The light is read from clear cells, each against its own baseline (a wide plume brightens those it veils).
        clear = exposed & (t - self._busy_t > s.busy_s) & (self._dusty <= 0.3)
        if clear.any():
            self._level = float(np.median(self._smooth[..., 2][clear] - self._baseline[..., 2][clear]))
        # Machinery and vehicles change a cell's brightness by much in a moment; dust drifts in, rain streaks are
        # thin. Such a cell shows something else now (an arm swung away, a truck's flat side): its clear baseline
        # starts again from what it shows, and it is not judged until that has settled.
        # A baseline started again on a machine is the cell's for good once it has held this long.
        held = t - self._busy_t > s.busy_s + s.restart_hold_s
        self._before[held] = self._baseline[held]
        change = measures[..., 2] - self._last[..., 2]
        jumped = (np.abs(change - np.median(change)) >= s.busy_change).astype(np.float32)
        # Machines are big: a jump counts where enough of the 3×3 cells around it jumped with it (not a walker).
        moved = (jumped > 0) & (cv2.boxFilter(jumped, -1, (3, 3), normalize=False) >= s.busy_cells)
        self._last = measures
        if moved.any():
            self._busy_t[moved] = t
            if moved.mean() <= s.machine_share:
                self._busy_t[cv2.dilate(moved.view(np.uint8), np.ones((3, 3), np.uint8)) > 0] = t
            fresh = self._unlit(measures)
            self._restart(moved, (self._count - 1) % s.samples, fresh)
            self._smooth[moved] = measures[moved]
            self._baseline[moved] = fresh[moved]
        busy = t - self._busy_t <= s.busy_s
        unlit = self._unlit(self._smooth)  # what the cells show, as their baselines keep it
        self._go_back(~busy, unlit)
        # The first baseline is what the cells show most of the first seconds: nothing is judged meanwhile.
        learning = t - self._start_t < s.bootstrap_s
        hazy = self._hazy(exposed & ~busy, unlit) & (not learning)
        self._dusty += (hazy.astype(np.float32) - self._dusty) * np.float32(1 - math.exp(-dt / s.dusty_s))
        dusty = self._dusty >= s.dusty_share
        if t - self._sample_t >= s.sample_s:
            # Dust does not teach the baseline. A plume veils cells side by side; a cell hazy on its own is
            # something that left it (a worker who stood there at the start), and its baseline follows.
            unclear = (hazy | (self._dusty > 0.3)).astype(np.float32)
            veiled = cv2.boxFilter(unclear, -1, (3, 3), normalize=False) >= s.veil_cells
            self._sample((unclear > 0) & veiled & ~busy, busy, unlit, t)
        rose_in = self._attribute(dusty)
        for index, zone in enumerate(self._zones):
            cells = zone.cells & exposed
            count = int((((rose_in >> index) & 1) > 0).sum())
            score = count / max(int(cells.sum()), 1)
            self.scores[zone.area.zone.id] = score
            if count == 0:
                zone.clear_t = t
            self._persist(zone, score, count, t)

    def _attribute(self, dusty: Cells) -> npt.NDArray[np.int64]:
        """Per dusty cell, the zones its plume rose in, one bit each. Dust rises from its source: a new patch of dust
        rose in the zones that hold most of its lowest cells. A patch that was there a step ago keeps where its cells
        came from as it drifts, spreads or merges, so that dust drifting in from outside, or from one zone over
        another, is not the zone's: each of its cells takes the zones of the nearest cells that were dust a step ago
        (two clouds that meet are side by side, the one does not become the other's). A patch of a cell or two is not
        yet a plume: it passes nothing on."""
        count, labels = cv2.connectedComponents(dusty.view(np.uint8), connectivity=8)
        rose_in = np.zeros(dusty.shape, np.int64)
        established = np.full(dusty.shape, -1, np.int64)
        for label in range(1, count):
            patch = labels == label
            rows = np.flatnonzero(patch.any(axis=1))
            foot = np.zeros_like(patch)
            foot[rows[-1]] = patch[rows[-1]]
            before = patch & (self._rose_in >= 0)
            if before.any():
                bits = _nearest_bits(patch, before, self._rose_in)
                # Cells below all that was dust a step ago are nearer the source: a column thickening down towards
                # where it rose (first seen against the sky) rose where its new foot stands on a zone's ground.
                lowest = int(np.flatnonzero(before.any(axis=1))[-1])
                if rows[-1] > lowest and (ground := self._rose_from(foot, on_ground=True)):
                    bits[np.argwhere(patch)[:, 0] > lowest] = ground
            else:
                # Where the foot stands on a zone's ground, the dust rose there, not in the air of another zone.
                bits = np.full(int(patch.sum()), self._rose_from(foot, on_ground=True)
                               or self._rose_from(foot, on_ground=False), np.int64)
            rose_in[patch] = bits
            if int(patch.sum()) >= self._settings.plume_cells:
                established[patch] = bits
        self._rose_in = established
        return rose_in

    def _rose_from(self, foot: Cells, *, on_ground: bool) -> int:
        """The zones (one bit each) holding most of a patch's foot: on their ground, or on it and the air above."""
        size = int(foot.sum())
        return sum(1 << index for index, zone in enumerate(self._zones)
                   if 2 * int((foot & (zone.ground if on_ground else zone.cells)).sum()) > size)

    def _hazy(self, candidates: Cells, unlit: Image) -> Cells:
        """Which of the candidate cells (exposed, not busy) look veiled now: contrast lost, or brighter than the
        frame's light explains; the frame's changes of light and contrast are read over the candidates."""
        s = self._settings
        ratio = self._smooth[..., :2] / np.maximum(self._baseline[..., :2], np.float32(1e-6))
        contrast = np.sqrt(np.clip(ratio[..., 0], 0, None) * np.clip(ratio[..., 1], 0, None))
        structured = (self._baseline[..., 0] >= s.min_cv) & (self._baseline[..., 1] >= s.min_texture)
        # A loss of contrast over most of the frame is the camera's (shaken, defocused, compressed harder), not
        # dust: contrast is taken relative to the frame's upper quartile when that fell.
        judged = candidates & structured
        if judged.any():
            contrast = contrast / min(1.0, max(float(np.percentile(contrast[judged], s.reference_quantile)), 1e-3))
        brightening = unlit[..., 2] - self._baseline[..., 2]
        reference = float(np.percentile(brightening[candidates], s.reference_quantile)) if candidates.any() else 0.0
        lighter = brightening - reference
        # Flat ground that stays flat has no contrast to check a brightening by (its ratio is noise over noise): a
        # veil over it is taken on a larger brightening alone, shared by enough cells around (a veil is wide).
        flat = (~structured & (self._smooth[..., 1] < s.min_texture) & (lighter >= s.flat_airlight)
                & (lighter <= s.airlight_max))
        flat &= cv2.boxFilter(flat.astype(np.float32), -1, (3, 3), normalize=False) >= s.flat_cells
        airlight = ((lighter >= s.airlight) & (lighter <= s.airlight_max)
                    & ((contrast <= s.airlight_max_contrast) | flat))
        return candidates & ((structured & (contrast <= 1 - s.hazy)) | airlight)

    def _sample(self, unclear: Cells, busy: Cells, unlit: Image, t: float) -> None:
        """Add the clear cells' measures to the baseline's samples (the others keep theirs) and update it; a busy
        cell's samples are only its latest, so that its baseline is what it settled into."""
        slot = self._count % self._settings.samples
        self._samples[slot] = np.where(unclear[..., None], self._samples[slot - 1], unlit)
        self._restart(busy, slot, unlit)
        self._count += 1
        self._sample_t = t
        self._baseline = np.nanmedian(self._samples, axis=0).astype(np.float32)

    def _go_back(self, cells: Cells, unlit: Image) -> None:
        """Those of the cells whose baseline started again on a machine lately and that look more like what they
        showed before it than like that go back to the baseline from before: the machine was passing (a truck that
        drove through, an arm that swung away again, too slowly to jump), it did not stay."""
        back = cells & (_distance(unlit, self._before) < _distance(unlit, self._baseline))
        if back.any():
            self._restart(back, (self._count - 1) % self._settings.samples, self._before)
            self._baseline[back] = self._before[back]
            self._busy_t[back] = -math.inf  # back where it was: that baseline holds again

    def _unlit(self, measures: Image) -> Image:
        """The measures with brightness relative to the frame's light level, as baselines keep it."""
        unlit = measures.copy()
        unlit[..., 2] -= np.float32(self._level)
        return unlit

    def _restart(self, cells: Cells, slot: int, values: Image) -> None:
        """Forget the cells' samples, all but their `values` in `slot`: their baseline starts again from these."""
        self._samples[:, cells] = np.nan
        self._samples[slot, cells] = values[cells]

    def _persist(self, zone: _ZoneDust, score: float, count: int, t: float) -> None:
        s = self._settings
        episode = zone.episode
        if episode is not None and episode.seen_t - episode.since_t >= zone.area.zone.dwell_s:
            # A plume is confirmed on enough cells; thinning out to fewer for a while, it is still the plume.
            if count >= s.min_cells:
                episode.thin_t = None
            elif episode.thin_t is None:
                episode.thin_t = t
            going = score >= s.score_off and (episode.thin_t is None or t - episode.thin_t <= s.thin_s)
        else:
            going = score >= s.score_on and count >= s.min_cells
        if going:
            if episode is None:
                zone.number += 1
                # The dust rose when its first cells went dusty; the thresholds only confirm it is a plume.
                zone.episode = _Episode(max(zone.clear_t, t - s.backdate_s), t, score)
            else:
                episode.seen_t, episode.peak = t, max(episode.peak, score)
        elif episode is not None and t - episode.seen_t > s.gap_s:
            zone.episode = None

    def _observe(self, zone: _ZoneDust) -> Observation | None:
        episode = zone.episode
        if episode is None or episode.seen_t - episode.since_t < zone.area.zone.dwell_s:
            return None
        confidence = 0.6 + 0.4 * min(1.0, episode.peak / 0.2)
        return Observation(f"dust-{zone.area.zone.id}-{zone.number}", zone.area.zone, DetectionKind.DUST,
                           episode.since_t, episode.seen_t, round(min(confidence, 0.99), 3))


def _distance(measures: Image, baseline: Image) -> npt.NDArray[np.float32]:
    """How unlike the baseline the measures are: contrast and texture as log ratios, brightness as it is (log)."""
    ratios = np.log((measures[..., :2] + np.float32(1e-3)) / (baseline[..., :2] + np.float32(1e-3)))
    return f32(np.abs(ratios).sum(axis=-1) + np.abs(measures[..., 2] - baseline[..., 2]))


def _nearest_bits(patch: Cells, seeds: Cells, bits: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each cell of the patch (in `np.nonzero` order), the bits of its nearest seed."""
    cells = np.argwhere(patch)
    seeded = np.argwhere(seeds)
    distance = ((cells[:, None, :] - seeded[None, :, :]) ** 2).sum(axis=-1)
    return np.asarray(bits[seeds][distance.argmin(axis=1)], np.int64)


def _with_air(mask: npt.NDArray[np.bool_], air_rise: float) -> npt.NDArray[np.bool_]:
    """The zone and the air above it, up to `air_rise` × its height: a plume rises from the ground, so in the image
    its cloud stands over its source, much of it above the zone's ground outline."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return mask
    rise = max(1, round(air_rise * (rows[-1] - rows[0] + 1)))
    column = np.ones((rise + 1, 1), np.uint8)
    return u8(cv2.dilate(mask.view(np.uint8), column, anchor=(0, 0))).view(np.bool_)
