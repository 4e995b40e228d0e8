"""`gridhub detect run`: many cameras in one process, their detections produced to `gridhub.detections`.

One `LiveSource` thread per camera decodes and keeps the latest frame; one worker thread per camera samples it
at the camera's fps and runs its pipeline (OpenCV releases the GIL in its kernels, so cameras share the cores).
A camera whose pipeline raises logs the error and goes on with the next frame; a source that fails retries on
its own with backoff; the watchdog restarts a reader that stopped delivering without saying why. Detections
go through one asyncio producer, keyed by the camera's grid cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from queue import SimpleQueue

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core import kafka
from core.metrics import DETECT_DETECTIONS, DETECT_DROPPED, DETECT_FAILURES, DETECT_FRAMES
from core.retry import Retry
from core.settings import DetectSettings
from detectors.events import ZoneEvent
from detectors.evidence import render_snapshot, snapshot_name
from detectors.pipeline import CameraPipeline
from detectors.sources import LiveSource, SceneRenderer, SimCapture
from domain.detections import Detection, Phase, encode_detection
from domain.detector_feedback import FeedbackFormatError, Lesson, decode_lesson
from domain.registry import Camera
from storage.evidence import EvidenceStore

log = logging.getLogger("gridhub.detect")

STUCK_AFTER_S = 20.0  # a reader that delivered nothing this long without reporting an error is restarted
WATCHDOG_EVERY_S = 2.0
QUEUE_LIMIT = 10_000  # detections waiting for Kafka; beyond this the oldest are dropped (and counted)
RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)

Sink = Callable[[Detection], None]


def source_for(camera: Camera, scenes: SceneRenderer | None = None) -> LiveSource:
    """The live source of a camera: the rendered scene for `sim://`, else OpenCV on the file or URL."""
    if camera.source.startswith("sim://"):
        return LiveSource(camera.source, lambda: SimCapture.open(camera, scenes), name=camera.id)
    return LiveSource(camera.source, name=camera.id)


class CameraWorker:
    """Runs one camera's pipeline on the latest frames of its source at the camera's fps."""

    def __init__(self, camera: Camera, source: LiveSource, sink: Sink, evidence: EvidenceStore,
                 settings: DetectSettings | None = None) -> None:
        self.camera = camera
        self.source = source
        self._sink = sink
        self._evidence = evidence
        self._pipeline = CameraPipeline(camera, settings)
        self._snapshots: dict[str, str] = {}  # event id → reference of its latest snapshot
        self._lessons: SimpleQueue[Lesson] = SimpleQueue()  # taken in by the worker thread
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera.id}", daemon=True)
        self.processed = 0
        self.failures = 0
        self.dropped = 0
        self._frames = DETECT_FRAMES.labels(camera.id)
        self._failures = DETECT_FAILURES.labels(camera.id)
        self._dropped = DETECT_DROPPED.labels(camera.id)

    def start(self) -> None:
        """Start the source and the worker."""
        self.source.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop both and end the camera's open events."""
        self._stop.set()
        self.source.stop()
        self._thread.join(timeout=5)

    def learn(self, lesson: Lesson) -> None:
        """Hand an operator's lesson to the pipeline (any thread; applied before the next frame)."""
        self._lessons.put(lesson)

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread.is_alive()

    def _run(self) -> None:
        period = 1.0 / self.camera.fps
        seq = 0
        behind = 0.0
        image: npt.NDArray[np.uint8] | None = None
        while not self._stop.is_set():
            began = time.monotonic()
            frame = self.source.next_frame(seq, timeout=1.0)
            if frame is None:
                continue
            got = time.monotonic()
            seq, image = frame.seq, frame.image
            while not self._lessons.empty():
                self._pipeline.lessons.learn(self._lessons.get_nowait())
            try:
                self._emit(self._pipeline.process(frame.image, frame.t), frame.image)
                self.processed += 1
                self._frames.inc()
            except Exception:  # one camera's failure must not stop it for good, nor the others
                self.failures += 1
                self._failures.inc()
                log.exception("camera %s: the pipeline failed on a frame; going on with the next", self.camera.id)
            # Sample at the camera's rate: the source keeps decoding meanwhile and we take its latest frame.
            # Analysing a frame for longer than a period costs the frames due meanwhile: they are dropped
            # (waiting for a slow source drops nothing: there was no frame to analyse).
            busy = time.monotonic() - got
            if busy > period:
                behind += busy / period - 1  # in fractions of a frame: one taking 1.5 periods loses half a frame
                if behind >= 1:
                    self.dropped += int(behind)
                    self._dropped.inc(int(behind))
                    behind -= int(behind)
            self._stop.wait(max(0.0, period - (time.monotonic() - began)))
        if image is not None:
            self._emit(self._pipeline.close(), image)

    def _emit(self, events: Iterable[ZoneEvent], image: npt.NDArray[np.uint8]) -> None:
        for event in events:
            if event.phase is Phase.END:
                snapshot = self._snapshots.pop(event.event_id, "")
            else:
                if event.phase is Phase.START:
                    DETECT_DETECTIONS.labels(self.camera.id, event.kind.value).inc()
                snapshot = self._snapshot(event, image)
                self._snapshots[event.event_id] = snapshot
            self._sink(to_detection(self.camera, event, snapshot))

    def _snapshot(self, event: ZoneEvent, image: npt.NDArray[np.uint8]) -> str:
        try:
            return self._evidence.put(snapshot_name(self.camera.id, event), render_snapshot(image, event))
        except (OSError, ValueError) as exc:  # no evidence is better than no detection
            log.warning("camera %s: snapshot not stored: %s", self.camera.id, exc)
            return ""


def to_detection(camera: Camera, event: ZoneEvent, snapshot: str) -> Detection:
    """The Kafka record of an event phase."""
    return Detection(
        event_id=event.event_id, phase=event.phase, camera_id=camera.id, zone_id=event.zone.id,
        zone_kind=event.zone.kind, kind=event.kind, grid_code=camera.grid_code,
        start_ms=round(event.start_t * 1000), at_ms=round(event.at_t * 1000), confidence=event.confidence,
        bbox=event.bbox, snapshot=snapshot,
    )


class Fleet:
    """All cameras of the process, with the watchdog that restarts stuck readers and dead workers."""

    def __init__(self, cameras: Sequence[Camera], sink: Sink, evidence: EvidenceStore,
                 source_factory: Callable[[Camera], LiveSource] = source_for,
                 settings: DetectSettings | None = None) -> None:
        self._sink = sink
        self._evidence = evidence
        self._source_factory = source_factory
        self._settings = settings
        self.workers = {camera.id: CameraWorker(camera, source_factory(camera), sink, evidence, settings)
                        for camera in cameras}
        self._lessons: dict[str, dict[str, Lesson]] = defaultdict(dict)  # camera → lesson id → lesson

    def learn(self, lesson: Lesson) -> bool:
        """Teach a camera's pipeline an operator's lesson (kept, while in force, for a worker that replaces it);
        whether the camera is one of this process's."""
        worker = self.workers.get(lesson.camera_id)
        if worker is None:
            return False
        kept = self._lessons[lesson.camera_id]
        kept[lesson.lesson_id] = lesson
        now_ms = time.time() * 1000
        for lesson_id in [i for i, kept_lesson in kept.items() if kept_lesson.until_ms <= now_ms]:
            del kept[lesson_id]  # withdrawn or expired (the whole topic is read at start: most have expired)
        worker.learn(lesson)
        return True

    def lessons(self, camera_id: str) -> list[Lesson]:
        """The lessons in force for a camera, as a worker that replaces its worker is taught them."""
        return list(self._lessons[camera_id].values())

    def start(self) -> None:
        """Start every camera."""
        for worker in self.workers.values():
            worker.start()

    def stop(self) -> None:
        """Stop every camera, ending their open events."""
        for worker in self.workers.values():
            worker.stop()

    def watchdog(self, stuck_after_s: float = STUCK_AFTER_S) -> None:
        """Restart readers that went silent and workers that died."""
        now = time.monotonic()
        for camera_id, worker in list(self.workers.items()):
            if not worker.alive:
                log.error("camera %s: its worker stopped; starting a new one", camera_id)
                worker.source.stop()
                fresh = CameraWorker(worker.camera, self._source_factory(worker.camera), self._sink, self._evidence,
                                     self._settings)
                for lesson in self.lessons(camera_id):
                    fresh.learn(lesson)
                self.workers[camera_id] = fresh
                fresh.start()
            elif not worker.source.last_error and now - worker.source.last_frame_at > stuck_after_s:
                worker.source.restart()


async def produce(bootstrap: str, queue: asyncio.Queue[Detection], stop: asyncio.Event) -> None:
    """Send queued detections to Kafka, keyed by grid cell, retrying each until Kafka takes it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, request_timeout_ms=10_000)
    await kafka.start_producer(producer, bootstrap, stop)
    retry = Retry(RETRY_BACKOFF_S, log)
    try:
        while not (stop.is_set() and queue.empty()):
            try:
                detection = await asyncio.wait_for(queue.get(), 0.5)
            except TimeoutError:
                continue
            while True:
                try:
                    await producer.send_and_wait(kafka.DETECTIONS, encode_detection(detection),
                                                 key=detection.grid_code.encode())
                except Exception as exc:
                    delay = retry.failed("Kafka did not take detection %s (%s); retrying", detection.event_id, exc)
                    # At shutdown a detection still gets one round of the schedule, not the outage's whole length.
                    if stop.is_set() and retry.failures > len(RETRY_BACKOFF_S):
                        log.error("giving up on detection %s at shutdown", detection.event_id)
                        retry.recovered()  # the next detection gets its own round
                        break
                    await asyncio.sleep(delay)  # not cut short by stop: that round is what the detection gets
                    continue
                retry.recovered("Kafka took detections again (after %d retries)", retry.failures)
                break
    finally:
        await producer.stop()


async def learn_from(bootstrap: str, fleet: Fleet, stop: asyncio.Event) -> None:
    """Read operators' lessons from `gridhub.detector-feedback`, the whole topic first, and teach the fleet;
    reconnect with backoff while Kafka is away."""
    retry = Retry(RETRY_BACKOFF_S, log)
    while not stop.is_set():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", request_timeout_ms=10_000)
        try:
            await consumer.start()
            await consumer.topics()  # the cluster's metadata, which names the topic's partitions
            partitions = sorted(consumer.partitions_for_topic(kafka.DETECTOR_FEEDBACK) or ())
            if not partitions:
                raise RuntimeError(f"topic {kafka.DETECTOR_FEEDBACK} does not exist yet")
            tps = [TopicPartition(kafka.DETECTOR_FEEDBACK, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            retry.recovered("reading operators' lessons from Kafka again")
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        _teach(fleet, record.value)
        except Exception as exc:  # Kafka away, or the topic not made yet: detections go on without new lessons
            delay = retry.failed("cannot read operators' lessons from Kafka (%s); retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        finally:
            await consumer.stop()


def _teach(fleet: Fleet, value: bytes | None) -> None:
    try:
        lesson = decode_lesson(value or b"")
    except FeedbackFormatError as exc:
        log.warning("skipped a %s record that does not decode: %s", kafka.DETECTOR_FEEDBACK, exc)
        return
    if fleet.learn(lesson):
        log.info("camera %s zone %s: %s", lesson.camera_id, lesson.zone_id,
                 "lesson withdrawn" if lesson.withdrawn else f"{lesson.lesson.value} lesson for {lesson.kind.value}")


async def run(cameras: Sequence[Camera], bootstrap: str, evidence: EvidenceStore, stop: asyncio.Event,
              ready: Callable[[], None] = lambda: None, scenes: SceneRenderer | None = None,
              settings: DetectSettings | None = None) -> None:
    """Run the cameras and produce their detections until `stop` is set."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Detection] = asyncio.Queue()

    def enqueue(detection: Detection) -> None:
        if queue.qsize() >= QUEUE_LIMIT:
            dropped = queue.get_nowait()
            log.warning("detection queue full (Kafka down?); dropped %s %s", dropped.event_id, dropped.phase)
        queue.put_nowait(detection)

    def emit(detection: Detection) -> None:
        loop.call_soon_threadsafe(enqueue, detection)

    fleet = Fleet(cameras, emit, evidence, lambda camera: source_for(camera, scenes), settings)
    producing = asyncio.create_task(produce(bootstrap, queue, stop))
    learning = asyncio.create_task(learn_from(bootstrap, fleet, stop))
    fleet.start()
    log.info("detecting on %d camera(s): %s", len(cameras), ", ".join(c.id for c in cameras))
    ready()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCHDOG_EVERY_S)
            fleet.watchdog()
    finally:
        await asyncio.to_thread(fleet.stop)  # ends open events, which the producer still sends
        stop.set()
        await producing
        await learning
