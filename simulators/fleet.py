"""The sensor fleet on the wire: one MQTT client per device, all driven from one asyncio loop.

Each device is its own paho client, because the broker lets a device publish only under its own id.
Hundreds of clients stay cheap because none of them runs a network thread: paho's socket callbacks
register every client's socket with the asyncio loop, which calls `loop_read`/`loop_write` when the
socket is ready, and one task calls `loop_misc` for keep-alives. The scenario says what each device
sends and when; this module only carries it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, tzinfo
from enum import StrEnum
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from core.credentials import demo_secret
from domain.registry import Device, DeviceKind
from simulators.scenario import (
    SHANGHAI,
    ConnectionChange,
    Defect,
    Message,
    Scenario,
    ScenarioConfig,
    status_topic,
)

log = logging.getLogger("gridhub.simulate")

KEEPALIVE_S = 60
RECONNECT_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
REFUSED_RETRY_S = 30.0  # credentials may be provisioned meanwhile
PENDING_LIMIT = 1000  # readings a device holds while it cannot reach the broker
PAHO_QUEUE_LIMIT = 1000  # readings paho may hold for a connected device before we count them dropped
MAX_INFLIGHT = 100
BATCH = 256  # actions carried out before the loop gets a turn for network I/O
STOP_GRACE_S = 3.0
LAG_WARNING_S = 10.0


class FleetError(Exception):
    """The fleet cannot run: the broker is unreachable or refuses every device."""


class DeviceState(StrEnum):
    """Where a device's connection stands."""

    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"  # a scripted outage: the broker has published its will
    LOST = "lost"  # the connection failed unexpectedly; reconnecting with back-off
    REFUSED = "refused"  # the broker rejected its credentials
    STOPPED = "stopped"


@dataclass
class KindCounts:
    """Telemetry messages of one device kind."""

    sent: int = 0  # handed to the client library
    acked: int = 0  # acknowledged by the broker (PUBACK)
    malformed: int = 0  # of those sent, deliberately malformed
    dropped: int = 0  # never sent: queues full while the broker was away or slow


@dataclass
class FleetStats:
    """Counters the progress display and the exit summary read."""

    devices: int
    started_at: float = field(default_factory=time.time)
    stopped_at: float | None = None  # when the scenario stopped playing
    kinds: dict[DeviceKind, KindCounts] = field(default_factory=lambda: {k: KindCounts() for k in DeviceKind})
    defects: Counter[Defect] = field(default_factory=Counter)
    connects: int = 0
    outages: int = 0
    refusals: int = 0
    lag_s: float = 0.0  # how far behind its schedule the fleet is sending

    @property
    def sent(self) -> int:
        """Telemetry messages sent, all kinds."""
        return sum(k.sent for k in self.kinds.values())

    @property
    def acked(self) -> int:
        """Telemetry messages the broker acknowledged, all kinds."""
        return sum(k.acked for k in self.kinds.values())


class _DeviceClient:
    """One device's MQTT client and connection state."""

    def __init__(self, fleet: Fleet, device: Device) -> None:
        self.fleet = fleet
        self.device = device
        self.state = DeviceState.CONNECTING
        self.pending: deque[Message] = deque()
        self.telemetry_mids: set[int] = set()
        self.unacked = 0
        self.failures = 0
        self.retry: asyncio.TimerHandle | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device.id, userdata=self,
                                  protocol=mqtt.MQTTv311, clean_session=True)
        self.client.username_pw_set(device.id, demo_secret(device.id))
        self.client.will_set(status_topic(device), "offline", qos=1, retain=True)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.max_queued_messages_set(PAHO_QUEUE_LIMIT)
        self.client.on_socket_open = fleet.on_socket_open
        self.client.on_socket_close = fleet.on_socket_close
        self.client.on_socket_register_write = fleet.on_socket_register_write
        self.client.on_socket_unregister_write = fleet.on_socket_unregister_write
        self.client.on_connect = _on_connect
        self.client.on_disconnect = _on_disconnect
        self.client.on_publish = _on_publish

    def connect(self) -> None:
        """Open the connection; the outcome arrives in `connected` or `disconnected`."""
        self.state = DeviceState.CONNECTING
        self.retry = None
        try:
            # Blocking TCP connect on the loop thread: fast on the LAN or loopback the fleet runs on,
            # and bounded by paho's connect timeout otherwise.
            self.client.connect(self.fleet.host, self.fleet.port, KEEPALIVE_S)
        except OSError as exc:
            log.debug("%s: cannot connect: %s", self.device.id, exc)
            self.fleet.connect_error = exc.strerror or str(exc)
            self.state = DeviceState.LOST
            self._retry_later()

    def connected(self, reason: ReasonCode) -> None:
        """CONNACK: announce the device online and send what it held back."""
        if self.fleet.stopping:  # the answer came after the stop began
            self.client.disconnect()
            return
        if reason.is_failure:
            if self.state is not DeviceState.REFUSED:
                self.fleet.stats.refusals += 1
                log.warning("%s: broker refused the connection: %s", self.device.id, reason)
            self.state = DeviceState.REFUSED
            return
        self.state = DeviceState.ONLINE
        self.failures = 0
        self.fleet.stats.connects += 1
        self._announce("online")
        while self.pending and self.state is DeviceState.ONLINE:
            self._publish(self.pending.popleft())

    def disconnected(self) -> None:
        """The connection closed: expected for outages and the stop, otherwise reconnect."""
        if self.state in (DeviceState.OFFLINE, DeviceState.STOPPED):
            return
        if self.state is not DeviceState.REFUSED:
            self.state = DeviceState.LOST
        self._retry_later()

    def acked(self, mid: int) -> None:
        """PUBACK for one of this device's messages."""
        self.unacked -= 1
        if mid in self.telemetry_mids:
            self.telemetry_mids.discard(mid)
            self.fleet.stats.kinds[self.device.kind].acked += 1

    def send(self, message: Message) -> None:
        """Publish a reading now, or hold it until the device is connected again."""
        if self.state is DeviceState.ONLINE:
            self._publish(message)
            return
        if len(self.pending) >= PENDING_LIMIT:
            self.pending.popleft()
            self.fleet.stats.kinds[self.device.kind].dropped += 1
        self.pending.append(message)

    def drop_off(self) -> None:
        """Leave the network without DISCONNECT, so that the broker publishes the last will."""
        self.fleet.stats.outages += 1
        self.state = DeviceState.OFFLINE
        self._cancel_retry()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            # A half-close is what a dead link looks like to the broker; paho then sees EOF on its
            # socket, closes it and reports the disconnect, which `disconnected` expects.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def come_back(self) -> None:
        """The outage is over: reconnect."""
        if self.state is DeviceState.OFFLINE:
            self.connect()

    def stop(self) -> None:
        """Announce the device offline and disconnect cleanly; give up reconnecting."""
        self._cancel_retry()
        if self.state is DeviceState.ONLINE:
            self._announce("offline")
        self.state = DeviceState.STOPPED

    def _announce(self, status: str) -> None:
        info = self.client.publish(status_topic(self.device), status, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self.unacked += 1

    def _publish(self, message: Message) -> None:
        counts = self.fleet.stats.kinds[self.device.kind]
        info = self.client.publish(message.topic, message.payload, qos=1)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            counts.dropped += 1
            return
        self.unacked += 1
        self.telemetry_mids.add(info.mid)
        counts.sent += 1
        if message.defect is not None:
            counts.malformed += 1
            self.fleet.stats.defects[message.defect] += 1

    def _retry_later(self) -> None:
        if self.fleet.stopping:
            return
        delay = REFUSED_RETRY_S if self.state is DeviceState.REFUSED else (
            RECONNECT_BACKOFF_S[min(self.failures, len(RECONNECT_BACKOFF_S) - 1)])
        self.failures += 1
        self._cancel_retry()
        self.retry = asyncio.get_running_loop().call_later(delay, self.connect)

    def _cancel_retry(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None


def _on_connect(client: mqtt.Client, device: _DeviceClient, flags: Any, reason: ReasonCode, props: Any) -> None:
    device.connected(reason)


def _on_disconnect(client: mqtt.Client, device: _DeviceClient, flags: Any, reason: ReasonCode, props: Any) -> None:
    device.disconnected()


def _on_publish(client: mqtt.Client, device: _DeviceClient, mid: int, reason: ReasonCode, props: Any) -> None:
    device.acked(mid)


class Fleet:
    """Runs the scenario's devices against one broker until stopped."""

    def __init__(
        self,
        devices: Sequence[Device],
        config: ScenarioConfig,
        host: str,
        port: int,
        *,
        tz: tzinfo = SHANGHAI,
        is_workday: Callable[[date], bool] = lambda day: day.weekday() < 5,
        connect_timeout_s: float = 15.0,
    ) -> None:
        self.devices = list(devices)
        self.config = config
        self.host = host
        self.port = port
        self.tz = tz
        self.is_workday = is_workday
        self.connect_timeout_s = connect_timeout_s
        self.stats = FleetStats(devices=len(self.devices))
        self.scenario: Scenario | None = None
        self.stopping = False
        self.connect_error: str | None = None  # the last reason a device could not reach the broker
        self._clients: dict[str, _DeviceClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # paho's socket callbacks: the asyncio loop watches every client's socket.

    def device_states(self) -> Counter[DeviceState]:
        """How many devices are in each connection state."""
        return Counter(client.state for client in self._clients.values())

    def on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        """Watch a new socket for incoming packets."""
        self._running_loop().add_reader(sock, client.loop_read)

    def on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        """Stop watching a socket that is about to close."""
        self._running_loop().remove_reader(sock)

    def on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        """The client has packets to write: write them when the socket can take them."""
        self._running_loop().add_writer(sock, client.loop_write)

    def on_socket_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        """Nothing left to write."""
        self._running_loop().remove_writer(sock)

    async def run(self, stop: asyncio.Event, duration_s: float | None = None) -> FleetStats:
        """Connect every device, play the scenario until `stop` is set or `duration_s` passes, disconnect."""
        self._loop = asyncio.get_running_loop()
        self._clients = {device.id: _DeviceClient(self, device) for device in self.devices}
        keepalive = asyncio.create_task(self._keep_alive())
        try:
            await self._connect_all(stop)
            start = time.time()
            self.stats.started_at = start
            self.scenario = Scenario(self.devices, self.config, start, self.tz, self.is_workday)
            deadline = None if duration_s is None else start + duration_s
            await self._play(self.scenario, stop, deadline)
            self.stats.stopped_at = time.time()
        finally:
            await self._stop_all()
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
        return self.stats

    async def _connect_all(self, stop: asyncio.Event) -> None:
        for index, client in enumerate(self._clients.values()):
            client.connect()
            if index % 16 == 15:
                await asyncio.sleep(0)  # let CONNACKs in while the rest connect

        await _wait_until(lambda: stop.is_set() or not self.device_states()[DeviceState.CONNECTING],
                          self.connect_timeout_s)
        states = self.device_states()
        if states[DeviceState.ONLINE] == 0 and not stop.is_set():
            if states[DeviceState.REFUSED]:
                why = "the broker refused every device's credentials"
            elif states[DeviceState.CONNECTING]:
                why = f"no answer to CONNECT within {self.connect_timeout_s:.0f} s"
            else:
                why = self.connect_error or "the connection failed"
            raise FleetError(f"MQTT broker {self.host}:{self.port}: no device could connect: {why}")
        if states[DeviceState.ONLINE] < len(self._clients):
            log.warning("%d of %d devices connected to %s:%d; the rest keep retrying",
                        states[DeviceState.ONLINE], len(self._clients), self.host, self.port)

    async def _play(self, scenario: Scenario, stop: asyncio.Event, deadline: float | None) -> None:
        scripts: list[Iterator[Message | ConnectionChange]] = [scenario.script(d) for d in self.devices]
        order = itertools.count()  # ties keep each device's own order
        queue: list[tuple[float, int, int, Message | ConnectionChange]] = []
        for index, script in enumerate(scripts):
            action = next(script)
            heapq.heappush(queue, (action.at, next(order), index, action))
        warned = False
        while not stop.is_set():
            now = time.time()
            if deadline is not None and now >= deadline:
                return
            if queue[0][0] > now:
                self.stats.lag_s = 0.0
                wait = min(queue[0][0] - now, 0.25)
                await asyncio.sleep(wait if deadline is None else min(wait, deadline - now))
                continue
            for _ in range(BATCH):
                if not queue or queue[0][0] > now:
                    break
                at, _, index, action = heapq.heappop(queue)
                self.stats.lag_s = now - at
                if self.stats.lag_s > LAG_WARNING_S and not warned:
                    warned = True
                    log.warning("the fleet cannot keep up with speed ×%.4g: readings leave %.0f s after their "
                                "timestamps; lower --speed or --rate", self.config.speed, self.stats.lag_s)
                self._carry_out(action)
                upcoming = next(scripts[index])
                heapq.heappush(queue, (upcoming.at, next(order), index, upcoming))
            await asyncio.sleep(0)

    def _carry_out(self, action: Message | ConnectionChange) -> None:
        client = self._clients[action.device.id]
        if isinstance(action, Message):
            client.send(action)
        elif action.online:
            client.come_back()
        else:
            client.drop_off()

    async def _stop_all(self) -> None:
        """Announce every connected device offline, wait for acknowledgements, then DISCONNECT."""
        self.stopping = True
        clients = list(self._clients.values())
        online = [c for c in clients if c.state is DeviceState.ONLINE]
        for client in clients:
            client.stop()
        await _wait_until(lambda: all(c.unacked <= 0 for c in online), STOP_GRACE_S)
        for client in online:
            client.client.disconnect()
        await _wait_until(lambda: all(c.client.socket() is None for c in clients), STOP_GRACE_S)
        for client in clients:
            sock = client.client.socket()
            if sock is not None:  # the broker did not let go in time: close it ourselves
                self.on_socket_close(client.client, client, sock)
                self.on_socket_unregister_write(client.client, client, sock)
                sock.close()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for client in self._clients.values():
                if client.client.socket() is not None:
                    client.client.loop_misc()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the fleet is not running")
        return self._loop


async def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll until `condition` holds or the time is up; paho offers nothing to await."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
