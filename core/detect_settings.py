"""The camera detectors' tunables: settings `detect.stall.*` and `detect.dust.*`.

The defaults are the values the detectors were tuned with on the simulator's clips (`gridhub detect eval`);
the bounds keep each one where its meaning holds. Lengths are in working pixels (a frame scaled to 240 pixels
across), times in seconds, log units are differences of natural-log intensity.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Tunables(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StallSettings(_Tunables):
    """The stall detector (0501 in `no_vending` zones, 0504 in `shopfront` zones): see `detectors/stall.py`."""

    # The first background is the median of this much video, so walkers at start leave no ghosts.
    bootstrap_s: float = Field(4.0, gt=0, le=60)
    long_term_s: float = Field(60.0, gt=0, le=3600)  # time constant of the long-term background where it sees it
    log_offset: float = Field(16.0, gt=0, le=255)  # keeps log intensities of dark, noisy pixels tame
    gain_columns: int = Field(8, ge=1, le=64)  # cells of the coarse gain field across...
    gain_rows: int = Field(5, ge=1, le=64)  # ...and down
    chroma_min: float = Field(0.10, ge=0, le=5)  # the chromaticity threshold never goes below this (log units)
    gradient_min: float = Field(0.22, ge=0, le=5)  # nor does the log-gradient threshold
    noise_factor: float = Field(4.0, gt=0, le=50)  # thresholds are this × each measure's median over the frame
    brightness_change: float = Field(0.7, gt=0, le=5)  # a log brightness change beyond this is an object, always
    shadow_min: float = Field(0.03, ge=0, le=5)  # a darkening (log) between these without a change of chroma...
    shadow_max: float = Field(1.2, gt=0, le=5)  # ...is a shadow
    stationary_on_s: float = Field(2.0, gt=0, le=60)  # pixels stationary this long form candidate blobs
    miss_reset_s: float = Field(1.0, gt=0, le=60)  # a pixel seen as background this long loses its stationary time
    min_area_share: float = Field(0.0006, gt=0, le=1)  # smallest blob, as a share of the frame
    # A stall's box covers at least this share of the frame: smaller still things are a bag, a sitter, a bollard...
    min_box_share: float = Field(0.003, gt=0, le=1)
    # ...at mid-height; lower is nearer the camera: the share's square root scales by 1 ± this from the top of the
    # frame to its bottom (0: the same share everywhere; 0.5: a quarter of it at the top, 2.25 times at the foot).
    perspective: float = Field(0.5, ge=0, lt=1)
    # This much foreground means the camera moved or the light failed: relearn the background.
    reset_share: float = Field(0.6, gt=0, le=1)
    track_grace_s: float = Field(4.0, gt=0, le=600)  # a track unseen this long has left...
    # ...or this long once reported: a stall hidden by a crowd is still the same stall.
    confirmed_grace_s: float = Field(12.0, gt=0, le=600)
    # A box that overlaps where it settled less than this is an object still arriving.
    settled_overlap: float = Field(0.6, gt=0, le=1)
    # Blobs closer than this share of their height are pieces of one object (goods, vendor, shadow)...
    group_reach: float = Field(0.25, ge=0, le=5)
    compact: float = Field(1.6, ge=1, le=10)  # ...when their union box is no bigger than this × their boxes
    # Stationary pixels whose ages differ by more than this arrived apart: separate objects (a cart by a parked car).
    age_split_s: float = Field(20.0, gt=0, le=3600)
    # A new blob this close to a reported object is a part of it (an umbrella over its table).
    known_reach: float = Field(1.0, ge=0, le=5)
    person_aspect: float = Field(1.8, gt=0, le=20)  # a static blob this much taller than wide is a person standing
    # A blob wider than this share of the frame is walkers and their shadows merged, not a stall.
    max_width_share: float = Field(0.4, gt=0, le=1)
    # With a ground calibration (the camera's `ground`), an object wider than this on the ground (where its box's
    # bottom edge stands) is a vehicle: a car is 4-5 m long; a stall's box, with its umbrella and a customer, reaches
    # 3.7 m. (Seen end on, a car is 1.8 m wide.)
    max_width_m: float = Field(4.0, gt=0, le=50)
    # ...when it has been that wide most of the last this many seconds or so (walkers merging into a stall's blob
    # make it that wide for moments); a calibrated camera reports nothing it has watched for less.
    vehicle_s: float = Field(6.0, gt=0, le=600)
    # A stall is solid: its stationary pixels fill at least this share of its box (outlines do not).
    min_fill: float = Field(0.3, ge=0, le=1)
    # An object is in a zone when its box's bottom centre is, or the point this share of its height above it.
    foot_reach: float = Field(0.2, ge=0, le=1)
    # A track that stood outside every zone this long restarts its dwell on entering one.
    outside_s: float = Field(10.0, ge=0, le=3600)
    # Unreported tracks are checked this often for being a ghost (something that left).
    ghost_check_s: float = Field(5.0, gt=0, le=600)

    @model_validator(mode="after")
    def _ordered(self) -> StallSettings:
        if self.shadow_min >= self.shadow_max:
            raise ValueError("shadow_min must be below shadow_max")
        if self.confirmed_grace_s < self.track_grace_s:
            raise ValueError("confirmed_grace_s must be at least track_grace_s: a reported stall is kept longer")
        return self


class DustSettings(_Tunables):
    """The dust detector (0302, `construction` zones): see `detectors/dust.py`."""

    cell_px: int = Field(12, ge=2, le=120)  # working pixels per side of a cell of the haze grid
    # The first clear baseline is the median of this much video (workers standing at the start walk off).
    bootstrap_s: float = Field(20.0, ge=0, le=600)
    step_s: float = Field(0.5, gt=0, le=10)  # the score is computed this often (dust is slow)
    smooth_s: float = Field(2.0, gt=0, le=60)  # time constant of each cell's measures
    sample_s: float = Field(2.0, gt=0, le=60)  # the clear baseline takes a sample this often...
    samples: int = Field(120, ge=1, le=1000)  # ...and is the median of this many (four minutes by default)
    dusty_s: float = Field(3.0, gt=0, le=60)  # time constant of "hazy lately"...
    dusty_share: float = Field(0.6, gt=0, le=1)  # ...and how much of it makes a cell dusty
    min_cv: float = Field(0.03, ge=0, le=1)  # cells flatter than this in clear air cannot show a loss of contrast...
    min_texture: float = Field(0.02, ge=0, le=1)  # ...nor cells with less texture energy than this
    overexposed: float = Field(235.0, gt=0, le=255)  # cells brighter than this lose texture to clipping, not dust
    hazy: float = Field(0.2, gt=0, lt=1)  # a loss of this share of the baseline contrast is haze
    airlight: float = Field(0.035, ge=0, le=5)  # a brightening (log) beyond the frame's upper quartile is airlight...
    # ...when contrast, as a ratio to its baseline, did not grow beyond this with it (a bright object has edges)...
    airlight_max_contrast: float = Field(1.05, gt=0, le=5)
    airlight_max: float = Field(0.25, gt=0, le=5)  # ...and it stays below this; more is light (a cloud moving off)
    # Over flat ground (no contrast in clear air, none now) a brightening of this much is airlight on its own...
    flat_airlight: float = Field(0.05, ge=0, le=5)
    flat_cells: int = Field(4, ge=1, le=9)  # ...where this many of the 3×3 cells around brightened so (a veil is wide)
    reference_quantile: float = Field(75.0, ge=0, le=100)  # the frame's change of light is this percentile of cells
    # A cell whose log brightness jumped by this much in one step, beyond the frame's median jump (machinery)...
    busy_change: float = Field(0.1, gt=0, le=5)
    busy_cells: int = Field(3, ge=1, le=9)  # ...together with enough of the 3×3 cells around it (a machine is big)...
    busy_s: float = Field(5.0, ge=0, le=600)  # ...is not judged for this long; its baseline restarts from what it shows
    # For this long after, a cell that looks more like its baseline from before goes back to it (the machine left).
    restart_hold_s: float = Field(60.0, ge=0, le=3600)
    # When such jumps cover at most this share of the frame (a machine, not the camera's shake or exposure), the
    # cells around them are not judged either: a digger's arm near its pivot sweeps them too slowly to jump.
    machine_share: float = Field(0.05, ge=0, le=1)
    veil_cells: int = Field(2, ge=1, le=9)  # a hazy cell is dust, not taught, with this many hazy in its 3×3
    plume_cells: int = Field(3, ge=1, le=10000)  # a patch of dust this big passes where it rose on as it drifts
    score_on: float = Field(0.03, gt=0, le=1)  # share of dusty cells that starts an episode...
    score_off: float = Field(0.015, gt=0, le=1)  # ...and that it needs to go on
    # An episode starts on at least this many dusty cells (a plume, not a parked wheelbarrow); once confirmed, fewer
    # go on for at most thin_s: a plume thinning out for a while is still the plume, a few cells that stay hazy for
    # minutes after it are ground it changed (a digger's tracks), and a plume rising later is another one.
    min_cells: int = Field(6, ge=1)
    thin_s: float = Field(45.0, ge=0, le=3600)
    # The score may dip below its threshold this long without breaking an episode (one plume, one event).
    gap_s: float = Field(15.0, ge=0, le=600)
    # An episode starts when the zone's first cells went dusty, at most this long before its score reaches score_on.
    backdate_s: float = Field(10.0, ge=0, le=600)
    # Dust rises: the air above a zone, up to this share of the zone's height, is watched with it.
    air_rise: float = Field(0.5, ge=0, le=5)

    @model_validator(mode="after")
    def _ordered(self) -> DustSettings:
        if self.score_off > self.score_on:
            raise ValueError("score_off must not exceed score_on: an episode goes on at a lower score than it starts")
        if self.airlight >= self.airlight_max:
            raise ValueError("airlight must be below airlight_max")
        return self
