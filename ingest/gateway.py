"""The MQTT ingestion gateway: broker → validate → per-cell batches → Kafka → PUBACK.

paho's network thread validates each message as it arrives and queues the outcome; the asyncio
thread packs the queue into one `TelemetryBatch` per grid cell every few milliseconds, one record per
partition (each cell has its partition, `kafka.partition_of`), produces the records and the dead letters,
and only when Kafka has acknowledged a record are the MQTT messages in it acknowledged to the broker (in
arrival order). A gateway killed at any moment has acknowledged nothing that Kafka does not hold; the
broker redelivers the rest to the same persistent session.

When Kafka is slow or down, records are retried and nothing new is acknowledged; the broker stops
sending once the session's in-flight window (the broker's `max_inflight_messages`, or the MQTT 5
Receive Maximum) is full, so memory stays bounded and the backlog waits in the broker.

What the broker replays is not news: retained telemetry (sent because the gateway subscribed) is
acknowledged and counted, never produced; a retained status goes on marked `replayed`. A subscription
the broker refuses, a lost connection and a session the broker did not keep are logged and shown on
`gridhub_gateway_subscribed`, and the subscription is tried again with backoff until the broker grants it.

A stopped gateway's persistent session keeps its share of the readings: the broker queues them until the
gateway returns. `retire()` removes a gateway for good: it opens the session again, unsubscribes, drains
what the session holds into Kafka and ends the session. The end of the queue is found with a marker: after
the UNSUBACK the gateway publishes one message to its own `gridhub/retire/<client id>`, which the broker
queues behind everything already routed to the session (Mosquitto keeps one queue per session, in order).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core import kafka, metrics
from core.lifecycle import mark_ready, stop_event
from core.retry import Retry
from core.settings import KafkaSettings, Settings
from domain.registry import Registry
from domain.telemetry import Reading, StatusChange, TelemetryBatch, encode_record
from ingest.acks import AckTracker, Pending
from ingest.dedupe import Seen, SequenceTracker
from ingest.mqtt_client import ReadAheadClient
from ingest.payloads import Limits, Reason, Rejection, Validator
from storage.broker_files import RETIRE_TOPIC_PATTERN

log = logging.getLogger("gridhub.gateway")

TELEMETRY_FILTER = "gridhub/v1/+/+/telemetry"
STATUS_FILTER = "gridhub/v1/+/+/status"
DEADLETTER_PAYLOAD_BYTES = 1024
SESSION_EXPIRY_S = 7 * 24 * 3600
RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
SHUTDOWN_DRAIN_S = 5.0
KAFKA_STALL_S = 5.0
REGISTRY_REFRESH_S = 10.0
RESUBSCRIBE_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
REGRESSION_LOG_INTERVAL_S = 10.0
RETIRE_TOPIC = RETIRE_TOPIC_PATTERN.replace("%c", "{client_id}")
RETIRE_QUIET_WARNING_S = 30.0


@dataclass(frozen=True, slots=True)
class Received:
    """One message's outcome with what is needed to acknowledge it."""

    outcome: Reading | StatusChange | Rejection
    topic: str
    payload: bytes | bytearray
    handle: Pending | None  # None for QoS 0
    received_ns: int


class _Producer:
    """The gateway's Kafka producer, replaced by a new one when aiokafka's gives up on sending.

    aiokafka retries what it can; an error it does not retry may have ended its sender task, after which
    every send fails the same way. Kafka stopped while an idempotent producer's batch was in flight does
    that: the batch fails (no leader) after it was numbered, the restarted broker refuses the next number
    (OutOfOrderSequenceNumber), and the sender stops for good. Kafka's Java client starts a new producer
    epoch there; aiokafka does not, so the gateway starts a new producer and its records are sent again.
    """

    def __init__(self, settings: KafkaSettings, stop: asyncio.Event) -> None:
        self._settings, self._stop = settings, stop
        self._current = self._new()
        self._renewing: asyncio.Task[None] | None = None

    def _new(self) -> AIOKafkaProducer:
        # Idempotent on a Kafka cluster: a batch resent after a lost answer is written once and in order.
        return AIOKafkaProducer(bootstrap_servers=self._settings.bootstrap_servers, acks="all", linger_ms=5,
                                max_batch_size=1_048_576, request_timeout_ms=10_000, retry_backoff_ms=200,
                                enable_idempotence=self._settings.idempotent)

    async def start(self) -> None:
        """Start the producer, waiting for Kafka as long as it takes."""
        await kafka.start_producer(self._current, self._settings.bootstrap_servers, self._stop)

    async def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions."""
        partitions: set[int] = await self._current.partitions_for(topic)
        return partitions

    async def send_and_wait(self, topic: str, value: bytes, *, key: bytes | None, partition: int | None) -> object:
        """Send one record and wait for Kafka's answer; after an error aiokafka does not retry, renew."""
        if self._renewing is not None:
            await asyncio.shield(self._renewing)
        producer = self._current
        try:
            return await producer.send_and_wait(topic, value, key=key, partition=partition)
        except KafkaError as exc:
            if not exc.retriable and producer is self._current and self._renewing is None and not self._stop.is_set():
                self._renewing = asyncio.ensure_future(self._renew(producer, exc))
            raise

    async def _renew(self, spent: AIOKafkaProducer, error: KafkaError) -> None:
        log.warning("the Kafka producer gave up (%r); starting a new one and sending its records again", error)
        fresh = self._new()
        try:
            await kafka.start_producer(fresh, self._settings.bootstrap_servers, self._stop)
        except BaseException:
            await fresh.stop()
            raise
        finally:
            self._renewing = None
        self._current = fresh
        with contextlib.suppress(Exception):
            await spent.stop()

    async def stop(self) -> None:
        """Stop the producer (and one being started)."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(BaseException):
                await self._renewing
        await self._current.stop()


class Gateway:
    """One gateway process: a persistent MQTT session feeding Kafka."""

    def __init__(self, settings: Settings, registry: Registry, *, client_id: str | None = None,
                 reload_registry: Callable[[], Registry] | None = None) -> None:
        self.settings = settings
        self._reload_registry = reload_registry
        gw = settings.gateway
        self.client_id = client_id or gw.client_id
        self.validator = Validator(registry, Limits.of(gw))
        self.sequences = SequenceTracker(gw.dedupe_cache_size)
        # (device, seq) of readings not yet in Kafka → handles of their duplicates, acknowledged only with them:
        # a redelivered copy must not be PUBACKed while the first copy could still die with this process.
        self._unproduced: dict[tuple[str, int], list[Pending]] = {}
        self._unproduced_lock = threading.Lock()
        self.queue: collections.deque[Received] = collections.deque()
        self.protocol = MQTTProtocolVersion.MQTTv5 if gw.protocol == "5" else MQTTProtocolVersion.MQTTv311
        self._refusal = ""
        self._client: mqtt.Client | None = None
        self.tracker = AckTracker(self._send_ack)
        self._connected = threading.Event()
        # Set by the first accepted connection and never cleared: a connection lost at once (a session taken
        # over) must not look like no answer to the thread that waits for it.
        self._accepted = threading.Event()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Future[object]] = set()
        self._last_kafka_ack = time.monotonic()
        # One account of failed sends for all records: an outage is logged once (again if the error changes),
        # not once per record — that was 1,700 lines per gateway for a 20 s Kafka outage under load.
        self._send_failures = Retry(RETRY_BACKOFF_S, log)
        self._received = self._duplicates = 0
        self._counted = (0, 0)
        self._stalled_since: float | None = None
        self._partitions = 1  # of gridhub.telemetry, read from Kafka once the producer is up
        self._regression_log_due = 0.0
        self._regressions_unlogged = 0
        self._filters = [f"$share/{gw.share_group}/{TELEMETRY_FILTER}" if gw.shared_subscription
                         else TELEMETRY_FILTER, STATUS_FILTER]
        self._subscribe_lock = threading.Lock()  # a SUBACK may come back before subscribe() has returned
        self._subscribing: dict[int, list[str]] = {}  # SUBSCRIBE packet id → its filters, until the SUBACK
        self._refused: set[str] = set()
        self._resubscribing = Retry(RESUBSCRIBE_BACKOFF_S)  # no outage log: every refusal is an error worth a line
        self._had_session = False
        self._stopping = False
        self._retiring = False
        self._marker_topic = RETIRE_TOPIC.format(client_id=self.client_id)
        self._marker_subscribe_mid: int | None = None
        self._marker_seen = threading.Event()
        self._retire_failed = ""

    # --- MQTT side (paho's thread) -------------------------------------------------------------

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._marker_topic:
            if message.qos > 0:
                self.tracker.complete([self.tracker.receive(message.mid)])  # after everything received before it
            self._marker_seen.set()
            return
        self._received += 1  # only this thread writes it; the flusher publishes the count
        received_ns = time.time_ns()
        if message.dup:
            metrics.GATEWAY_REDELIVERED.inc()
        handle = self.tracker.receive(message.mid) if message.qos > 0 else None
        if handle is None and len(self.queue) > self.settings.gateway.max_inflight:
            metrics.GATEWAY_REJECTED.labels("overload").inc()  # QoS 0 has no redelivery to wait for
            return
        if message.retain and message.topic.endswith("/telemetry"):
            # The broker's stored copy, sent because the gateway subscribed: the reading itself reached
            # an established subscription live, with retain=0 (MQTT 3.1.1 and 5, §3.3.1.3).
            metrics.GATEWAY_RETAINED_SKIPPED.inc()
            if handle is not None:
                self.tracker.complete([handle])
            return
        outcome = self.validator.check(message.topic, message.payload, received_ns // 1_000_000)
        if isinstance(outcome, Reading):
            verdict = self.sequences.check(outcome)
            if verdict.seen is Seen.DUPLICATE:
                self._duplicates += 1
                if handle is not None:
                    with self._unproduced_lock:
                        waiting = self._unproduced.get((outcome.device_id, outcome.seq))
                        if waiting is not None:
                            waiting.append(handle)  # acknowledged when the first copy is in Kafka
                            return
                    self.tracker.complete([handle])  # the first copy is in Kafka already
                return
            if verdict.seen is Seen.CONFLICT:
                outcome = Rejection(Reason.CONFLICTING_DUPLICATE,
                                    f"seq {outcome.seq} was received before with other content (ts_ms "
                                    f"{verdict.earlier_ts_ms}); this one has ts_ms {outcome.ts_ms}", outcome.device_id)
            elif verdict.seen is Seen.REGRESSED:
                assert verdict.previous_seq is not None
                self._seq_regressed(outcome, verdict.previous_seq)
        elif isinstance(outcome, StatusChange) and message.retain:
            outcome = dataclasses.replace(outcome, replayed=True)
        if isinstance(outcome, Reading):
            with self._unproduced_lock:
                self._unproduced[(outcome.device_id, outcome.seq)] = []
        self.queue.append(Received(outcome, message.topic, message.payload, handle, received_ns))
        if len(self.queue) == 2000 and self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)  # a burst: flush before the linger ends

    def _seq_regressed(self, reading: Reading, previous_seq: int) -> None:
        """Count a seq that went backwards; say so at most once per interval, naming the device."""
        metrics.GATEWAY_SEQ_REGRESSIONS.inc()
        now = time.monotonic()
        if now < self._regression_log_due:
            self._regressions_unlogged += 1
            return
        more = f" ({self._regressions_unlogged} more since the last such line)" if self._regressions_unlogged else ""
        log.warning("seq of %s went back from %d to %d (the device restarted, or sends out of order); "
                    "reading accepted%s", reading.device_id, previous_seq, reading.seq, more)
        self._regression_log_due = now + REGRESSION_LOG_INTERVAL_S
        self._regressions_unlogged = 0

    def _on_connect(self, client: mqtt.Client, _userdata: object, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    _properties: object) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
            log.error("MQTT broker refused the connection: %s", reason)
            return
        log.info("connected to MQTT at %s:%d as %s (MQTT %s)", self._host(), self._port(), self.client_id,
                 self.settings.gateway.protocol)
        self._accepted.set()
        if not flags.session_present:
            if self._had_session:
                metrics.GATEWAY_SESSIONS_LOST.inc()
                log.warning("the broker did not keep the session of %s: messages published while the gateway was "
                            "away may have been lost", self.client_id)
            else:
                log.info("the broker holds no session for %s: a new one starts", self.client_id)
        self._had_session = True
        with self._subscribe_lock:
            self._subscribing.clear()  # packet ids of the previous connection: those SUBACKs never come
        self._refused = set()
        if self._retiring:
            client.unsubscribe(self._filters)  # the UNSUBACK goes on in _on_unsubscribe
            self._connected.set()
            return
        # Every connection subscribes again, kept session or not: that is what tells whether the broker
        # still grants the subscriptions (an ACL may have changed while the gateway was away).
        # Retained status messages are never sent to shared subscriptions (MQTT 5 §4.8.2), so every
        # gateway subscribes to status topics directly; downstream handles the duplicates.
        self._subscribe(client, self._filters)
        self._connected.set()
        mark_ready()

    def _subscribe(self, client: mqtt.Client, filters: list[str]) -> None:
        with self._subscribe_lock:
            result, mid = client.subscribe([(f, 1) for f in filters])
            if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._subscribing[mid] = filters
        self._show_subscribed()

    def _on_subscribe(self, client: mqtt.Client, _userdata: object, mid: int, reasons: list[ReasonCode],
                      _properties: object) -> None:
        if mid == self._marker_subscribe_mid:
            self._marker_subscribed(client, reasons[0])
            return
        with self._subscribe_lock:
            filters = self._subscribing.pop(mid, [])
        refused = [f"{f} ({reason})" for f, reason in zip(filters, reasons, strict=False) if reason.is_failure]
        self._refused = {f for f, reason in zip(filters, reasons, strict=False) if reason.is_failure} | (
            self._refused - set(filters))
        self._show_subscribed()
        if refused:
            delay = self._resubscribing.failed()
            log.error("the broker refused the subscription to %s: no messages arrive there; trying again in %.0f s",
                      ", ".join(refused), delay)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.call_later, delay, self._resubscribe, client)
        else:
            self._resubscribing.recovered()
            log.info("subscribed to %s", ", ".join(filters))

    def _on_unsubscribe(self, client: mqtt.Client, _userdata: object, _mid: int, _reasons: object,
                        _properties: object) -> None:
        """Retiring: the broker routes nothing new to the session; queue the marker behind what it holds."""
        if self._retiring:
            # On paho's thread, like _on_subscribe: the SUBACK cannot be handled before the mid is stored.
            _, self._marker_subscribe_mid = client.subscribe(self._marker_topic, 1)

    def _marker_subscribed(self, client: mqtt.Client, reason: ReasonCode) -> None:
        self._marker_subscribe_mid = None
        if reason.is_failure:
            self._retire_failed = (f"the broker refused the subscription to {self._marker_topic} ({reason}); grant "
                                    f"the hub accounts `pattern readwrite {RETIRE_TOPIC_PATTERN}`")
            self._marker_seen.set()
            return
        client.publish(self._marker_topic, self.client_id.encode(), qos=1)

    def _resubscribe(self, client: mqtt.Client) -> None:
        """Ask again for the refused subscriptions (a reconnect in between has asked for all of them)."""
        refused = [f for f in self._filters if f in self._refused]
        if refused and self._connected.is_set() and client is self._client:
            self._subscribe(client, refused)

    def _show_subscribed(self) -> None:
        holding = self._connected.is_set() and not self._refused and not self._subscribing
        metrics.GATEWAY_SUBSCRIBED.labels(client_id=self.client_id).set(1 if holding else 0)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object, reason: ReasonCode,
                       _properties: object) -> None:
        self._connected.clear()
        self._show_subscribed()
        self.tracker.reconnected()
        if self._stopping:
            return
        if self._retiring:  # no reconnect: the likeliest cause is a running gateway taking its session back
            self._retire_failed = (f"lost the connection while retiring {self.client_id} ({reason}): is a gateway "
                                    "with this client id still running? Stop it and run --retire again")
            self._marker_seen.set()
            return
        metrics.GATEWAY_DISCONNECTS.inc()
        log.warning("disconnected from MQTT (%s): no messages arrive until the gateway is back; reconnecting, "
                    "un-acknowledged messages will be redelivered", reason)

    def _send_ack(self, mid: int) -> None:
        assert self._client is not None
        self._client.ack(mid, 1)

    def _connect(self) -> None:
        """Open the persistent session; raise ConnectionError if the broker cannot be reached or refuses."""
        client = self._new_client(self.protocol)
        self._client = client
        try:
            if self.protocol == MQTTProtocolVersion.MQTTv5:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                props.ReceiveMaximum = min(self.settings.gateway.max_inflight, 65535)
                client.connect(self._host(), self._port(), keepalive=30, clean_start=False, properties=props)
            else:
                client.connect(self._host(), self._port(), keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot reach MQTT broker {self._host()}:{self._port()}: {exc}") from None
        client.loop_start()
        if not self._accepted.wait(10.0):
            client.loop_stop()
            raise ConnectionError(f"MQTT broker {self._host()}:{self._port()} did not accept the "
                                  f"session ({self._refusal or 'no answer'})")

    def _new_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
        client = ReadAheadClient(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol, manual_ack=True,
            clean_session=False if protocol == mqtt.MQTTv311 else None,
            reconnect_on_failure=not self._retiring,
        )
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 30)
        client.username_pw_set(self.settings.mqtt.username, self.settings.mqtt_password())
        client.on_message = self._on_message
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_disconnect = self._on_disconnect
        return client

    def _host(self) -> str:
        return self.settings.mqtt.host or "127.0.0.1"

    def _port(self) -> int:
        """The hub listener, where the hub's own accounts log in (the device listener when there is none)."""
        return self.settings.mqtt.hub_port or self.settings.mqtt.port

    # --- Kafka side (asyncio thread) -----------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect both sides and forward until `stop` is set; then flush what was received."""
        await self._forward(stop, lambda: False)

    async def retire(self, stop: asyncio.Event) -> int | None:
        """Drain this gateway's persistent session into Kafka and end the session.

        Return how many messages were drained, or None if `stop` came first (the session then stays,
        unsubscribed, and a later `retire` finishes the work). Raise ConnectionError if the broker cannot be
        reached or refuses the marker's subscription.
        """
        self._retiring = True
        if not await self._forward(stop, self._drained):
            return None
        if self._retire_failed:
            raise ConnectionError(self._retire_failed)
        await asyncio.to_thread(self._end_session)
        return self._received

    def _drained(self) -> bool:
        """The marker came back and everything received before it is in Kafka and acknowledged."""
        if not self._marker_seen.is_set():
            return False
        return bool(self._retire_failed) or not (self.queue or self._sending or len(self.tracker))

    def _end_session(self) -> None:
        """Connect with a clean session, which discards the persistent one, and leave."""
        connected = threading.Event()
        refusal: list[ReasonCode] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol,
                             clean_session=True if self.protocol == mqtt.MQTTv311 else None)
        client.username_pw_set(self.settings.mqtt.username, self.settings.mqtt_password())

        def on_connect(_client: mqtt.Client, _userdata: object, _flags: object, reason: ReasonCode,
                       _properties: object) -> None:
            if reason.is_failure:
                refusal.append(reason)
            connected.set()

        client.on_connect = on_connect
        try:
            if self.protocol == MQTTProtocolVersion.MQTTv5:
                client.connect(self._host(), self._port(), keepalive=30, clean_start=True)
            else:
                client.connect(self._host(), self._port(), keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot reach MQTT broker {self._host()}:{self._port()} to end the session of "
                                  f"{self.client_id}: {exc}") from None
        client.loop_start()
        try:
            if not connected.wait(10.0) or refusal:
                raise ConnectionError(f"MQTT broker {self._host()}:{self._port()} did not accept the clean session "
                                      f"that ends {self.client_id}'s ({refusal[0] if refusal else 'no answer'})")
            client.disconnect()
        finally:
            client.loop_stop()

    async def _forward(self, stop: asyncio.Event, finished: Callable[[], bool]) -> bool:
        """Connect both sides and forward until `stop` is set or `finished()`; flush what was received.

        Return whether it ended because `finished()` held."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        producer = _Producer(self.settings.kafka, stop)
        await producer.start()
        self._partitions = len(await producer.partitions_for(kafka.TELEMETRY))
        try:
            await asyncio.to_thread(self._connect)
            linger = self.settings.gateway.batch_linger_ms / 1000
            refresh = asyncio.create_task(self._refresh_registry(stop))
            watch = asyncio.create_task(self._watch_retirement()) if self._retiring else None
            while not stop.is_set() and not finished():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), linger)
                self._wake.clear()
                self._flush(producer)
            refresh.cancel()
            if watch is not None:
                watch.cancel()
            # Drain: produce what was received and acknowledge it before leaving; anything later
            # stays un-acknowledged in the persistent session and is redelivered on the next start.
            self._flush(producer)
            if self._sending:
                await asyncio.wait(set(self._sending), timeout=SHUTDOWN_DRAIN_S)
            done = finished()  # before the disconnect, which forgets the un-acknowledged messages
            if self._client is not None:
                self._stopping = True
                self._client.disconnect()
                self._client.loop_stop()
            return done
        finally:
            await producer.stop()

    def _flush(self, producer: _Producer) -> None:
        """Pack everything queued into per-cell batches and dead letters, and send them."""
        received, duplicates = self._received, self._duplicates
        metrics.GATEWAY_RECEIVED.inc(received - self._counted[0])
        metrics.GATEWAY_DUPLICATES.inc(duplicates - self._counted[1])
        self._counted = (received, duplicates)
        metrics.GATEWAY_INFLIGHT.set(len(self.tracker))
        self._watch_kafka()
        if not self.queue:
            return
        partitions: dict[int, dict[str, list[Received]]] = {}
        for _ in range(len(self.queue)):
            item = self.queue.popleft()
            if isinstance(item.outcome, Rejection):
                key = (item.outcome.device_id or item.topic[:200]).encode()
                self._send(producer, kafka.DEADLETTER, key, _dead_letter(item), [item])
            else:
                partition = kafka.partition_of(item.outcome.grid_code, self._partitions)
                partitions.setdefault(partition, {}).setdefault(item.outcome.grid_code, []).append(item)
        for partition, cells in partitions.items():
            batches = [
                TelemetryBatch(grid_code,
                               tuple(i.outcome for i in items if isinstance(i.outcome, Reading)),
                               tuple(i.outcome for i in items if isinstance(i.outcome, StatusChange)))
                for grid_code, items in cells.items()
            ]
            value = encode_record(batches)
            self._send(producer, kafka.TELEMETRY, None, value, [i for items in cells.values() for i in items],
                       partition=partition)

    def _send(self, producer: _Producer, topic: str, key: bytes | None, value: bytes, items: list[Received],
              retry: Retry | None = None, partition: int | None = None) -> None:
        task = asyncio.ensure_future(producer.send_and_wait(topic, value, key=key, partition=partition))
        self._sending.add(task)

        def done(future: asyncio.Future[object]) -> None:
            self._sending.discard(task)
            if future.cancelled() or future.exception() is not None:
                again = retry or Retry(RETRY_BACKOFF_S)  # the record's own backoff, made on its first failure
                error = "cancelled" if future.cancelled() else type(future.exception()).__name__
                self._send_failures.failed("Kafka did not take records (%s); retrying them, nothing is "
                                           "acknowledged meanwhile", error)
                assert self._loop is not None
                self._loop.call_later(again.failed(), self._send, producer, topic, key, value, items, again,
                                      partition)
                return
            self._send_failures.recovered("Kafka takes records again (%d sends were retried)",
                                          self._send_failures.failures)
            self._produced(topic, items)

        task.add_done_callback(done)

    def _produced(self, topic: str, items: list[Received]) -> None:
        """Kafka has the record: acknowledge its messages, and the redelivered copies that waited for them."""
        self._last_kafka_ack = time.monotonic()
        _count(topic, items)
        handles = [i.handle for i in items if i.handle is not None]
        with self._unproduced_lock:
            for item in items:
                if isinstance(item.outcome, Reading):
                    handles += self._unproduced.pop((item.outcome.device_id, item.outcome.seq), ())
        self.tracker.complete(handles)

    async def _refresh_registry(self, stop: asyncio.Event) -> None:
        """Pick up devices added or removed in the database (`gridhub devices add`) without a restart."""
        if self._reload_registry is None:
            return
        while not stop.is_set():
            await asyncio.sleep(REGISTRY_REFRESH_S)
            try:
                registry = await asyncio.to_thread(self._reload_registry)
            except Exception as exc:  # a database hiccup must not stop ingestion; keep the last registry
                log.warning("could not reload the device registry: %s", exc)
                continue
            if registry.devices.keys() != self.validator.registry.devices.keys():
                log.info("device registry now has %d devices", len(registry))
            self.validator.registry = registry  # one attribute swap: the MQTT thread sees old or new

    async def _watch_retirement(self) -> None:
        """While retiring, say every so often how far the drain has come, and why it may be waiting."""
        while True:
            await asyncio.sleep(RETIRE_QUIET_WARNING_S)
            if self._marker_seen.is_set():
                log.info("retiring %s: all queued messages received; %d not yet in Kafka", self.client_id,
                         len(self.tracker))
            else:
                log.warning("retiring %s: %d messages drained so far and the end-of-queue marker on %s has not "
                            "come back; the broker may not let this account publish there", self.client_id,
                            self._received, self._marker_topic)

    def _watch_kafka(self) -> None:
        """Say once when Kafka stops acknowledging (the producer retries quietly) and when it is back."""
        now = time.monotonic()
        if self._sending and now - self._last_kafka_ack > KAFKA_STALL_S and self._stalled_since is None:
            self._stalled_since = self._last_kafka_ack
            log.warning("Kafka has acknowledged nothing for %.0f s; holding %d MQTT messages un-acknowledged "
                        "(the broker keeps the rest)", now - self._last_kafka_ack, len(self.tracker))
        elif self._stalled_since is not None and self._last_kafka_ack > self._stalled_since:
            log.info("Kafka acknowledges again after %.0f s", self._last_kafka_ack - self._stalled_since)
            self._stalled_since = None


def _count(topic: str, items: list[Received]) -> None:
    """Count a record's messages and observe its latency (oldest message in it to Kafka's acknowledgement)."""
    metrics.GATEWAY_PRODUCE_SECONDS.observe((time.time_ns() - min(i.received_ns for i in items)) / 1e9)
    if topic == kafka.DEADLETTER:
        for item in items:
            metrics.GATEWAY_REJECTED.labels(item.outcome.reason.value).inc()  # type: ignore[union-attr]
        return
    statuses = [i.outcome for i in items if isinstance(i.outcome, StatusChange)]
    metrics.GATEWAY_ACCEPTED.inc(len(items) - len(statuses))
    for status in statuses:
        metrics.GATEWAY_STATUS.labels("online" if status.online else "offline").inc()


def _dead_letter(item: Received) -> bytes:
    rejection = item.outcome
    assert isinstance(rejection, Rejection)
    return orjson.dumps({
        "reason": rejection.reason.value,
        "detail": rejection.detail,
        "topic": item.topic[:512],
        "device_id": rejection.device_id,
        "received_ms": item.received_ns // 1_000_000,
        "size": len(item.payload),
        "payload_b64": base64.b64encode(item.payload[:DEADLETTER_PAYLOAD_BYTES]).decode(),
        "truncated": len(item.payload) > DEADLETTER_PAYLOAD_BYTES,
    })


def main(settings: Settings, registry: Registry, *, client_id: str | None = None,
         reload_registry: Callable[[], Registry] | None = None, retire: bool = False) -> int:
    """Run one gateway until SIGINT or SIGTERM, or retire it (`Gateway.retire`); 0 on a clean stop or a
    finished retirement, 1 if the broker cannot be reached or refuses, 2 if a signal stopped a retirement."""

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # it logs every retry; we report outages once

    async def _main() -> int:
        stop = stop_event()
        gateway = Gateway(settings, registry, client_id=client_id, reload_registry=reload_registry)
        try:
            if not retire:
                await gateway.run(stop)
                return 0
            drained = await gateway.retire(stop)
        except ConnectionError as exc:
            log.error("%s", exc)
            return 1
        if drained is None:
            log.warning("stopped before %s was drained: its session stays, unsubscribed; run --retire again to "
                        "finish", gateway.client_id)
            return 2
        log.info("retired %s: %d messages drained into Kafka and its session ended; the other gateways of the "
                 "shared subscription take every reading now", gateway.client_id, drained)
        return 0

    return asyncio.run(_main())
