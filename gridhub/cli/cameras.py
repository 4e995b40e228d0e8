"""`gridhub simulate cameras`: render synthetic street and construction-site scenes with ground truth."""

from __future__ import annotations

import time
from pathlib import Path

import click

from domain.registry import Camera
from gridhub.cli.common import EXIT_CONFIG, fail
from simulators.cameras.clip import DEFAULT_GRID_CODE, ClipError, load_camera, write_clip
from simulators.cameras.mjpeg import MjpegServer
from simulators.cameras.scene import Scene
from simulators.cameras.second import SecondScene, Spec
from simulators.cameras.spec import SceneKind, SceneSpec, SimUrlError, override, parse_sim_url


def _spec(scene: str | None, seed: int | None, params: tuple[str, ...], camera: Camera | None) -> SceneSpec:
    """The scene to render: --scene/--seed, else the camera's sim:// source, with --param overrides on top."""
    base = parse_sim_url(camera.source) if camera and camera.source.startswith("sim://") else None
    overrides = dict(base.overrides if base else ())
    for item in params:
        name, sep, value = item.partition("=")
        if not sep:
            raise SimUrlError(f"--param {item!r} must be NAME=VALUE")
        overrides.update([override(name.strip(), value.strip())])
    kind = SceneKind(scene) if scene else (base.kind if base else SceneKind.STREET)
    return SceneSpec(kind, seed if seed is not None else (base.seed if base else 0), tuple(overrides.items()))


@click.command("cameras")
@click.option("--scene", type=click.Choice([k.value for k in SceneKind]), default=None,
              help="Scene kind (default: the camera's sim:// source, else street).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Scene seed (default: the camera's, else 0).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Override a scene parameter drawn from the seed, e.g. stalls_per_hour=30 (repeatable).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Clip length.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Frames per second (default: the camera's, else 5).")
@click.option("--size", default="640x360", show_default=True, help="Frame size WIDTHxHEIGHT.")
@click.option("--camera", "camera_file", type=click.Path(path_type=Path), default=None,
              help="Camera YAML (as in the city's cameras.yaml) to take the id, grid code, fps and zones from.")
@click.option("--camera-id", default=None, help="Which camera of a YAML list of cameras.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Directory for clip.avi, truth.json and camera.yaml.")
@click.option("--clips", type=click.IntRange(min=1), default=None,
              help="Write this many clips with consecutive seeds into OUT/clip-NNN/.")
@click.option("--serve", "port", type=click.IntRange(0, 65535), default=None,
              help="Serve the scene live as MJPEG on this port instead of writing a clip (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--generator", type=click.Choice(["first", "second"]), default="first", show_default=True,
              help="Scene generator: the first (the detectors were tuned on it) or the independent second one, "
                   "which writes clips only, with its own zones and camera conditions.")
def simulate_cameras(scene: str | None, seed: int | None, params: tuple[str, ...], seconds: float,
                     fps: float | None, size: str, camera_file: Path | None, camera_id: str | None,
                     out_dir: Path | None, clips: int | None, port: int | None, host: str, generator: str) -> None:
    """Render synthetic street and construction-site scenes with ground truth, or serve one live as MJPEG."""
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        fail(f"--size {size!r} must be WIDTHxHEIGHT, e.g. 640x360", EXIT_CONFIG)
    if generator == "second":
        if port is not None or camera_file is not None:
            fail("--serve and --camera work with the first generator only; the second writes clips (--out) with "
                 "zones of its own", EXIT_CONFIG)
        if out_dir is None:
            fail("give --out DIR to write a clip of the second generator", EXIT_CONFIG)
        try:
            _write_second(scene, seed, params, seconds, fps or 5.0, (width, height), out_dir, clips)
        except (ClipError, ValueError) as exc:
            fail(str(exc), EXIT_CONFIG)
        return
    try:
        camera = load_camera(camera_file, camera_id) if camera_file else None
        spec = _spec(scene, seed, params, camera)
        rate = fps or (camera.fps if camera else 5.0)
        zones = camera.zones if camera and camera.zones else None
        name = camera.id if camera else f"sim-{spec.kind.value}"
        if port is not None:
            _serve(Scene(spec, zones, fps=rate, width=width, height=height, camera_id=name), host, port)
            return
        if out_dir is None:
            fail("give --out DIR to write a clip, or --serve PORT to stream", EXIT_CONFIG)
        grid_code = camera.grid_code if camera and camera.grid_code else DEFAULT_GRID_CODE
        for number in range(clips or 1):
            clip_spec = SceneSpec(spec.kind, spec.seed + number, spec.overrides)
            target = out_dir / f"clip-{number:03d}" if clips else out_dir
            started = time.monotonic()
            files = write_clip(Scene(clip_spec, zones, fps=rate, width=width, height=height, camera_id=name),
                               seconds, target, grid_code)
            click.echo(f"{clip_spec.url}: {files.frames} frames in {time.monotonic() - started:.1f} s, "
                       f"{files.events} true events -> {files.video}, {files.truth}, {files.camera}")
    except (ClipError, SimUrlError, ValueError) as exc:
        fail(str(exc), EXIT_CONFIG)


def _write_second(scene: str | None, seed: int | None, params: tuple[str, ...], seconds: float, fps: float,
                  size: tuple[int, int], out_dir: Path, clips: int | None) -> None:
    """Write clips of the second generator, with consecutive seeds when --clips is given."""
    overrides = []
    for item in params:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param {item!r} must be NAME=VALUE")
        overrides.append((name.strip(), value.strip()))
    base = Spec.of(scene or SceneKind.STREET.value, seed or 0, overrides)
    width, height = size
    for number in range(clips or 1):
        spec = Spec(base.kind, base.seed + number, base.overrides)
        target = out_dir / f"clip-{number:03d}" if clips else out_dir
        started = time.monotonic()
        files = write_clip(SecondScene(spec, fps=fps, width=width, height=height, camera_id=f"sim2-{spec.kind.value}"),
                           seconds, target, DEFAULT_GRID_CODE)
        click.echo(f"{spec.label}: {files.frames} frames in {time.monotonic() - started:.1f} s, "
                   f"{files.events} true events -> {files.video}, {files.truth}, {files.camera}")


def _serve(scene: Scene, host: str, port: int) -> None:
    try:
        server = MjpegServer(scene, host, port)
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}", EXIT_CONFIG)
    with server:
        click.echo(f"{scene.spec.url}: serving {server.url} at {scene.fps:g} fps; Ctrl-C stops")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopped")
