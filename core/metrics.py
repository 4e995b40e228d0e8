"""Prometheus metrics of every GridHub service, defined once.

Under `gridhub up` every child process writes its metrics to the shared directory named by
`PROMETHEUS_MULTIPROC_DIR`, and the API's `/metrics` serves them all together. A service run on
its own (production) serves its metrics with `--metrics-port` on `metrics.host` (`serve_metrics`).
"""

from __future__ import annotations

import logging
import os
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

log = logging.getLogger("gridhub.metrics")

GATEWAY_RECEIVED = Counter("gridhub_gateway_received_total", "MQTT messages the gateway received")
GATEWAY_ACCEPTED = Counter("gridhub_gateway_accepted_total", "Readings accepted and produced to Kafka")
GATEWAY_REJECTED = Counter("gridhub_gateway_rejected_total", "Messages dead-lettered, by reason", ["reason"])
GATEWAY_DUPLICATES = Counter("gridhub_gateway_duplicates_total", "Exact (device, seq) duplicates dropped")
GATEWAY_STATUS = Counter("gridhub_gateway_status_total", "Device status changes forwarded", ["status"])
GATEWAY_PRODUCE_SECONDS = Histogram(
    "gridhub_gateway_produce_seconds", "Per Kafka record: from its oldest MQTT message's receipt to Kafka's ack",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
GATEWAY_INFLIGHT = Gauge("gridhub_gateway_inflight", "Messages received but not yet acknowledged to the broker",
                         multiprocess_mode="livesum")

STORE_WRITTEN = Counter("gridhub_store_written_total", "Telemetry rows written to the store", ["kind"])
STORE_LAG = Gauge("gridhub_store_consumer_lag", "Records on gridhub.telemetry not yet written to the store",
                  ["partition"], multiprocess_mode="livemax")
STORE_WRITE_SECONDS = Histogram("gridhub_store_write_seconds", "Time to write one batch to the store")
STORE_SKIPPED = Counter("gridhub_store_skipped_total",
                        "Records, readings or status changes the store could not take as they were", ["reason"])
STORE_RETRIES = Counter("gridhub_store_write_retries_total", "Batch writes that failed and were tried again")

# What the broker replays, sequences that go wrong, and whether the gateway still holds its subscription.
GATEWAY_RETAINED_SKIPPED = Counter("gridhub_gateway_retained_skipped_total",
                                   "Retained telemetry replayed at subscribe time: acknowledged, not produced")
GATEWAY_REDELIVERED = Counter("gridhub_gateway_redelivered_total",
                              "Messages the broker sent again (DUP flag): delivered before and never acknowledged")
GATEWAY_SEQ_REGRESSIONS = Counter("gridhub_gateway_seq_regressions_total",
                                  "Readings whose seq was below the device's previous one (accepted: devices restart)")
GATEWAY_SUBSCRIBED = Gauge("gridhub_gateway_subscribed",
                           "1 while the gateway is connected and holds every subscription, else 0", ["client_id"],
                           multiprocess_mode="livemax")
GATEWAY_DISCONNECTS = Counter("gridhub_gateway_disconnects_total", "Connections to the MQTT broker lost unexpectedly")
GATEWAY_SESSIONS_LOST = Counter("gridhub_gateway_sessions_lost_total",
                                "Reconnections on which the broker had not kept the gateway's persistent session")
STORE_REPLAYED_STATUS_SKIPPED = Counter("gridhub_store_replayed_status_skipped_total",
                                        "Replayed retained statuses not written: the device's latest status already")

MQTT_QUEUE_DROPPED = Counter("gridhub_mqtt_queue_dropped_total",
                             "QoS 1 messages the embedded amqtt broker could not queue for a session: its queue was "
                             "full (mqtt.max_queued_messages / max_queued_bytes)")

STREAMS_RECORDS = Counter("gridhub_streams_records_total", "Records the stream worker decided on, by topic",
                          ["topic"])
STREAMS_READINGS = Counter("gridhub_streams_readings_total", "Readings and status changes the rules looked at")
STREAMS_SKIPPED = Counter("gridhub_streams_skipped_total", "Records the stream worker could not decode", ["topic"])
STREAMS_CASE_EVENTS = Counter("gridhub_streams_case_events_total", "Case events published, by action", ["action"])
STREAMS_CHECKPOINT_SECONDS = Histogram("gridhub_streams_checkpoint_seconds",
                                       "Time to flush case events and save the changed cells' state")
STREAMS_CHECKPOINT_RETRIES = Counter("gridhub_streams_checkpoint_retries_total",
                                     "Checkpoints that failed (database unavailable) and were tried again")

DETECT_FRAMES = Counter("gridhub_detect_frames_total", "Frames a camera's detectors analysed", ["camera"])
DETECT_DROPPED = Counter("gridhub_detect_frames_dropped_total",
                         "Frames due at a camera's fps that its detectors could not analyse: they fell behind",
                         ["camera"])
DETECT_RECONNECTS = Counter("gridhub_detect_reconnects_total",
                            "Times a camera's source could not be opened, or ended or dropped, and was tried again",
                            ["camera"])
DETECT_FAILURES = Counter("gridhub_detect_failures_total", "Frames on which a camera's pipeline raised", ["camera"])
DETECT_DETECTIONS = Counter("gridhub_detect_detections_total", "Detections a camera raised, by kind",
                            ["camera", "kind"])
DETECT_SOURCE_UP = Gauge("gridhub_detect_source_up", "1 while a camera's source delivers frames, 0 while it fails",
                         ["camera"], multiprocess_mode="livemax")


def exposition() -> bytes:
    """Metrics in Prometheus text format: all processes' when multi-process, else this process's."""
    return bytes(generate_latest(_registry()))


def serve_metrics(host: str, port: int) -> WSGIServer:
    """Serve `exposition()`'s metrics at http://host:port/metrics from a daemon thread; return the bound server."""
    server, _ = start_http_server(port, addr=host, registry=_registry())
    log.info("metrics on http://%s:%d/metrics", *server.server_address[:2])
    return server


def _registry() -> CollectorRegistry:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY
