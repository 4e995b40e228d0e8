"""The embedded MQTT broker for installs without Mosquitto: amqtt 0.12.1, made to keep the hub's promises.

amqtt speaks MQTT 3.1.1 only. As shipped it breaks three of GridHub's promises, each fixed here in a
subclass that replaces the upstream method named:

- **Bursts lost half their messages.** `Broker._client_message_loop` stops at a publisher's DISCONNECT
  while messages it has already PUBACKed still wait in the session's `delivered_message_queue`, and the
  clean session is then deleted with them. With the ACL checks in the loop, a `mosquitto_pub -l` burst of
  2,000 readings left ~1,000 behind. `_handle_disconnect` now delivers what was acknowledged first.
- **Slow subscribers lost messages** (a gateway acknowledges after Kafka has them): amqtt forgets a QoS 1
  message 5 s after sending it, or when the connection closes. Delivery goes through an `Outbox` per
  session instead (`gridhub.runtime.mqtt_outbox`), which keeps it until the PUBACK, sends it again with
  DUP after a reconnect, and queues messages for an offline persistent session within bounds, logging
  and counting what does not fit.
- **Anyone could end anyone's session.** `Broker._initialize_client_session` deletes or takes over the
  session of a client id before the login is checked. `_client_connected` now checks the login first,
  on the listener the client came to: devices on the device listener, whose client id is always their
  username (as Mosquitto's `use_username_as_clientid`); service accounts on the hub listener. A client id
  belongs to the account that created its session; another account's CONNECT with it is refused.

Also: packets over `mqtt.max_packet_bytes` close the connection before they are read; wills with a
wildcard topic are refused at CONNECT; a session whose account is removed, disabled or given a new secret
is ended within a second; and with `--state-file` the persistent sessions (subscriptions, messages in
flight and queued) and retained messages survive a restart of the broker (they are saved when it stops on
SIGTERM; a crash loses what was in memory).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from amqtt.adapters import ReaderAdapter, StreamReaderAdapter, StreamWriterAdapter, WriterAdapter
from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import BAD_USERNAME_PASSWORD, IDENTIFIER_REJECTED, NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.session import ApplicationMessage, Session
from amqtt.utils import gen_client_id

from core import metrics
from core.files import write_atomically
from core.lifecycle import stop_event
from core.settings import ConfigError, MqttSettings, load_settings
from gridhub.runtime.mqtt_auth import Accounts, Listener, will_refusal
from gridhub.runtime.mqtt_outbox import Message, Outbox
from storage.broker_files import Access, BrokerAuthError, topic_matches

log = logging.getLogger("gridhub.mqtt")

#: Session attributes this broker keeps (amqtt's `Session.attributes` is for extensions).
OWNER, LISTENER, OUTBOX = "gridhub.owner", "gridhub.listener", "gridhub.outbox"
HUB_LISTENER = "hub"
ACCOUNT_CHECK_S = 1.0
DROP_LOG_EVERY_S = 10.0
STATE_VERSION = 1
STATE_FILE = "mqtt-sessions.json"  # in the state directory, under `gridhub up`


class PacketTooLarge(ConnectionResetError):
    """A client announced a packet over the limit; amqtt's reader treats this as the connection ending."""


class _BoundedReader(ReaderAdapter):  # type: ignore[misc]
    """Follows MQTT framing on a connection and refuses a packet whose announced length is over the limit.

    amqtt reads a whole packet into memory before anyone can look at it; this stops at the fixed header.
    """

    def __init__(self, inner: ReaderAdapter, limit: int, peer: str) -> None:
        self._inner = inner
        self._limit = limit
        self._peer = peer
        self._body_left = 0  # bytes of the current packet's body still to come
        self._header: bytearray | None = None  # the fixed header being read, None between packets

    async def read(self, n: int = -1) -> bytes:
        data: bytes = await self._inner.read(n)
        view = memoryview(data)
        while view:
            if self._body_left:
                step = min(self._body_left, len(view))
                self._body_left -= step
                view = view[step:]
                continue
            byte = view[0]
            view = view[1:]
            if self._header is None:
                self._header = bytearray()  # the packet type byte; the remaining length follows
                continue
            self._header.append(byte)
            if byte & 0x80 and len(self._header) < 4:
                continue
            length = _remaining_length(self._header)
            self._header = None
            if length + 5 > self._limit:
                log.warning("closed the connection of %s: a packet of %d bytes (mqtt.max_packet_bytes is %d)",
                            self._peer, length, self._limit)
                raise PacketTooLarge(f"packet of {length} bytes")
            self._body_left = length
        return data

    def feed_eof(self) -> None:
        self._inner.feed_eof()


def _remaining_length(encoded: bytearray) -> int:
    value = 0
    for i, byte in enumerate(encoded):
        value += (byte & 0x7F) << (7 * i)
    return value


class _Handler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's protocol handler, with PUBACKs going to the session's outbox."""

    outbox: Outbox | None = None
    sender: asyncio.Task[None] | None = None
    replaced = False  # a newer connection took its session over

    async def handle_puback(self, puback: PubackPacket) -> None:
        """Release the acknowledged message from the outbox."""
        packet_id = puback.variable_header.packet_id
        if self.outbox is None or not self.outbox.acked(packet_id):
            log.debug("PUBACK for packet %s, which is not in flight", packet_id)


class GridBroker(Broker):  # type: ignore[misc]
    """amqtt's broker with lossless QoS 1 delivery, identities bound to accounts, and limits."""

    def __init__(self, config: dict[str, Any], limits: MqttSettings, accounts: Accounts | None,
                 state_file: Path | None = None) -> None:
        super().__init__(config)
        self._limits = limits
        self._accounts = accounts
        self._state_file = state_file
        self._closing = False
        self._watcher: asyncio.Task[None] | None = None
        self.dropped = 0
        self._drop_logged_at = -DROP_LOG_EVERY_S

    # --- start, stop, state ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening, after loading the saved sessions and retained messages, if any."""
        await super().start()  # clears sessions and retained messages: load after it
        if self._state_file is not None and self._state_file.exists():
            self._load_state(self._state_file)
        if self._accounts is not None:
            self._watcher = asyncio.create_task(self._watch_accounts())

    async def stop_gracefully(self) -> None:
        """Stop taking connections and messages, save what is owed to whom, then shut down."""
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
        for server in self._servers.values():
            if server.instance is not None:
                server.instance.close()
        for session, handler in list(self._sessions.values()):
            if session.transitions.is_connected():
                await handler.stop()  # no more reads; what was acknowledged is in its queue
                self._deliver_acknowledged(session)
        while not self._broadcast_queue.empty():
            self._route(self._broadcast_queue.get_nowait())
        if self._state_file is not None:
            self._save_state(self._state_file)
        await self.shutdown()

    def _save_state(self, path: Path) -> None:
        sessions = []
        for client_id, (session, _) in self._sessions.items():
            outbox = session.attributes.get(OUTBOX)
            if session.clean_session or outbox is None:
                continue
            outbox.drop_qos0()
            sessions.append({
                "client_id": client_id,
                "owner": session.attributes.get(OWNER),
                "listener": session.attributes.get(LISTENER),
                "subscriptions": [[f, qos] for f, subs in self._subscriptions.items()
                                  for s, qos in subs if s.client_id == client_id],
                "inflight": [[pid, *_encode(m)] for pid, m in outbox.unacked()],
                "waiting": [_encode(m) for m in outbox.waiting],
            })
        retained = [[m.topic, base64.b64encode(bytes(m.data)).decode(), m.qos or 0]
                    for m in self._retained_messages.values()]
        write_atomically(path, orjson.dumps({"version": STATE_VERSION, "sessions": sessions, "retained": retained}))
        queued = sum(len(s["inflight"]) + len(s["waiting"]) for s in sessions)
        log.info("saved %d persistent sessions with %d messages owed, and %d retained messages, to %s",
                 len(sessions), queued, len(retained), path)

    def _load_state(self, path: Path) -> None:
        try:
            state = orjson.loads(path.read_bytes())
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"version {state.get('version')!r}, expected {STATE_VERSION}")
            for saved in state["sessions"]:
                _, session = self.create_offline_session(saved["client_id"])
                session.clean_session = False
                session.username = saved["owner"]
                session.attributes.update({OWNER: saved["owner"], LISTENER: saved["listener"]})
                outbox = self._new_outbox()
                for packet_id, *message in saved["inflight"]:
                    outbox.inflight[packet_id] = _decode(message)
                    outbox.bytes += len(outbox.inflight[packet_id].data)
                for message in saved["waiting"]:
                    outbox.waiting.append(_decode(message))
                    outbox.bytes += len(outbox.waiting[-1].data)
                session.attributes[OUTBOX] = outbox
                self._sessions[session.client_id] = (session, _Handler(self.plugins_manager, session))
                for topic_filter, qos in saved["subscriptions"]:
                    self._subscriptions.setdefault(topic_filter, []).append((session, qos))
            for topic, data, qos in state["retained"]:
                self._retained_messages[topic] = _retained(topic, base64.b64decode(data), qos)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("%s: cannot load the saved sessions (%s); starting without them", path, exc)
            self._sessions.clear()
            self._subscriptions.clear()
            self._retained_messages.clear()
            return
        owed = sum(len(s.attributes[OUTBOX]) for s, _ in self._sessions.values())
        log.info("loaded %d persistent sessions with %d messages owed, and %d retained messages, from %s",
                 len(self._sessions), owed, len(self._retained_messages), path)
        path.unlink()  # saved again at the next stop; a crash must not bring back messages already delivered

    # --- connections ------------------------------------------------------------------------------

    async def stream_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               listener_name: str) -> None:
        """A TCP client connected: read its packets through the size limit."""
        peer = writer.get_extra_info("peername")
        bounded = _BoundedReader(StreamReaderAdapter(reader), self._limits.max_packet_bytes, f"{peer}")
        await self._client_connected(listener_name, bounded, StreamWriterAdapter(writer))

    async def _client_connected(self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        """Replaces amqtt's: the login is checked before any existing session is touched."""
        server = self._servers[listener_name]
        await server.acquire_connection()
        try:
            try:
                handler, incoming = await _Handler.init_from_connect(reader, writer, self.plugins_manager)
            except (AMQTTError, MQTTError, NoDataError) as exc:
                log.info("dropped a connection from %s before CONNECT completed: %s", writer.get_peer_info(), exc)
                await writer.close()
                return
            if self._closing:
                await writer.close()
                return
            listener = _listener(listener_name)
            refusal = self._admit(listener, incoming)
            if refusal is not None:
                code, reason = refusal
                log.info("refused %s (user %s, client %s) on the %s listener: %s", incoming.remote_address,
                         incoming.username, incoming.client_id, listener, reason)
                await ConnackPacket.build(0, code).to_stream(writer)
                await writer.close()
                return
            session = await self._take_session(incoming)
            await self._serve(session, handler, reader, writer)
        except (AMQTTError, MQTTError, NoDataError) as exc:
            log.warning("error in the session of %s: %s", writer.get_peer_info(), exc)
        finally:
            server.release_connection()

    def _admit(self, listener: Listener, incoming: Session) -> tuple[int, str] | None:
        """Check a CONNECT; set the client id and owner it will have. Returns (CONNACK code, reason) to refuse."""
        if incoming.will_flag and (why := will_refusal(incoming.will_topic)):
            return NOT_AUTHORIZED, why
        if self._accounts is None:  # anonymous mode, for tests and benchmarks
            incoming.attributes[OWNER] = incoming.username
        else:
            if not self._accounts.login(listener, incoming.username, incoming.password):
                return BAD_USERNAME_PASSWORD, f"unknown username or wrong password for the {listener} listener"
            if listener is Listener.DEVICES:
                incoming.client_id = incoming.username  # a device is its own client id, whatever it sent
            if incoming.will_flag and not self._accounts.allows(
                    listener, incoming.username, incoming.client_id, incoming.will_topic, Access.WRITE):
                return NOT_AUTHORIZED, f"it may not publish its will topic {incoming.will_topic}"
            incoming.attributes[OWNER] = incoming.username
        incoming.attributes[LISTENER] = listener.value
        if not incoming.client_id:
            incoming.client_id = gen_client_id()
        existing = self._sessions.get(incoming.client_id)
        if existing is not None and existing[0].attributes.get(OWNER) != incoming.attributes[OWNER]:
            return IDENTIFIER_REJECTED, f"client id {incoming.client_id} belongs to another account"
        return None

    async def _take_session(self, incoming: Session) -> Session:
        """The session this connection continues (persistent) or starts (clean), ending any live connection of it."""
        client_id = incoming.client_id
        existing = self._sessions.get(client_id)
        if existing is not None:
            old_session, old_handler = existing
            if old_session.transitions.is_connected():
                log.info("client %s connected again; closing its previous connection", client_id)
                old_handler.replaced = True  # its disconnect must not publish the will or touch the session
                self._stop_sender(old_handler)
                await old_handler.stop()
                self._deliver_acknowledged(old_session)
                old_session.transitions.disconnect()
            if incoming.clean_session:
                await self._delete_session(client_id)
            else:
                for name in ("will_flag", "will_message", "will_topic", "will_qos", "will_retain", "keep_alive",
                             "username", "password", "remote_address", "remote_port"):
                    setattr(old_session, name, getattr(incoming, name))
                old_session.attributes.update(incoming.attributes)
                old_session.parent = 1  # CONNACK session present
                return old_session
        incoming.parent = 0
        incoming.attributes[OUTBOX] = self._new_outbox()
        return incoming

    async def _serve(self, session: Session, handler: _Handler, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        session.transitions.connect()
        handler.attach(session, reader, writer)
        self._sessions[session.client_id] = (session, handler)
        await handler.mqtt_connack_authorize(True)
        await handler.start()
        handler.outbox = session.attributes[OUTBOX]
        handler.sender = asyncio.create_task(self._send(session, handler))
        await self._client_message_loop(session, handler)

    def _new_outbox(self) -> Outbox:
        return Outbox(self._limits.max_inflight_messages, self._limits.max_queued_messages,
                      self._limits.max_queued_bytes)

    async def _send(self, session: Session, handler: _Handler) -> None:
        """Send the session's outbox for as long as this connection lasts: what was in flight first, with DUP."""
        outbox = handler.outbox
        assert outbox is not None
        try:
            for unacked_id, unacked in outbox.unacked():
                await handler._send_packet(_publish(unacked_id, unacked, dup=True))
            while True:
                outbox.wake.clear()
                while (item := outbox.next_to_send()) is not None:
                    packet_id, message = item
                    await handler._send_packet(_publish(packet_id, message, dup=False))
                await outbox.wake.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection is going; what is in flight stays there for the next one
            log.info("stopped sending to %s: %r", session.client_id, exc)

    @staticmethod
    def _stop_sender(handler: _Handler) -> None:
        if handler.sender is not None:
            handler.sender.cancel()
            handler.sender = None

    async def _handle_disconnect(self, client_session: Session, handler: _Handler,
                                 disconnect_waiter: asyncio.Future[Any]) -> None:
        """Replaces amqtt's: first deliver every message already acknowledged to the publisher."""
        self._stop_sender(handler)
        await self._stop_handler(handler)
        # After the reader has stopped: a PUBLISH it was still handling may have been queued and PUBACKed.
        self._deliver_acknowledged(client_session)
        current = self._sessions.get(client_session.client_id)
        if handler.replaced or current is None or current[1] is not handler:
            return  # taken over by a newer connection, or deleted: it is no longer this connection's session
        abnormal = not disconnect_waiter.cancelled() and disconnect_waiter.result() is None
        if abnormal and client_session.will_flag and not self._closing:
            await self._broadcast_message(client_session, client_session.will_topic, client_session.will_message,
                                          client_session.will_qos)
            if client_session.will_retain:
                await self.retain_message(client_session, client_session.will_topic, client_session.will_message,
                                          client_session.will_qos)
        client_session.transitions.disconnect()
        outbox = client_session.attributes.get(OUTBOX)
        if outbox is not None:
            outbox.drop_qos0()

    def _deliver_acknowledged(self, session: Session) -> None:
        """Route the publisher's messages that were PUBACKed but not yet taken from its queue."""
        queue = session.delivered_message_queue
        while not queue.empty():
            message = queue.get_nowait()
            if self._may_publish(session, message):
                self._route(self._broadcast_of(session, message))

    # --- messages ---------------------------------------------------------------------------------

    async def _handle_message_delivery(self, client_session: Session, handler: _Handler,
                                       wait_deliver: asyncio.Future[Any]) -> bool:
        """Replaces amqtt's: the message keeps its QoS and retain flag on the way to the subscribers."""
        message: ApplicationMessage | None = wait_deliver.result()
        if message is None:
            return True
        if not message.topic or "#" in message.topic or "+" in message.topic or message.topic.startswith("$"):
            log.info("closing %s: it published to the invalid topic %r", client_session.client_id, message.topic)
            return False
        if self._may_publish(client_session, message):
            await self._broadcast_queue.put(self._broadcast_of(client_session, message))
        return True

    def _may_publish(self, session: Session, message: ApplicationMessage) -> bool:
        if self._allowed(session, message.topic, Access.WRITE):
            return True
        log.info("%s may not publish to %s; message dropped", session.client_id, message.topic)
        return False

    @staticmethod
    def _broadcast_of(session: Session, message: ApplicationMessage) -> dict[str, Any]:
        retain = bool(message.publish_packet is not None and message.publish_packet.retain_flag)
        return {"session": session, "topic": message.topic, "data": bytes(message.data), "qos": message.qos or 0,
                "retain": retain}

    async def _run_broadcast(self, running_tasks: Any) -> None:
        """Replaces amqtt's: one message from the broadcast queue into its subscribers' outboxes."""
        self._route(await self._broadcast_queue.get())

    def _route(self, broadcast: dict[str, Any]) -> None:
        topic, data = broadcast["topic"], bytes(broadcast["data"] or b"")
        if broadcast.get("retain"):  # stored here, not in _handle_message_delivery: in order with delivery
            self._retain(topic, data, broadcast.get("qos", 0))
        for topic_filter, subscriptions in self._subscriptions.items():
            if not topic_matches(topic_filter, topic):
                continue
            for session, sub_qos in subscriptions:
                qos = min(sub_qos, broadcast.get("qos", sub_qos) or 0)
                connected = session.transitions.is_connected()
                if not connected and (session.clean_session or qos == 0):
                    continue  # MQTT 3.1.1 §3.1.2.4: only a persistent session keeps QoS 1 messages
                if not self._allowed(session, topic, Access.READ):
                    continue
                self._put(session, Message(topic, data, qos))

    def _put(self, session: Session, message: Message) -> None:
        outbox: Outbox | None = session.attributes.get(OUTBOX)
        if outbox is None or outbox.put(message):
            return
        self.dropped += 1
        metrics.MQTT_QUEUE_DROPPED.inc()
        now = time.monotonic()
        if now - self._drop_logged_at >= DROP_LOG_EVERY_S:
            log.error("the queue of %s is full (%d messages, %d bytes; mqtt.max_queued_messages %d, "
                      "mqtt.max_queued_bytes %d): %d messages dropped so far", session.client_id, len(outbox),
                      outbox.bytes, outbox.max_messages, outbox.max_bytes, self.dropped)
            self._drop_logged_at = now

    def _retain(self, topic: str, data: bytes, qos: int) -> None:
        if data:
            self._retained_messages[topic] = _retained(topic, data, qos)
        else:
            self._retained_messages.pop(topic, None)  # [MQTT-3.3.1-10]

    async def _broadcast_message(self, session: Session | None, topic: str | None, data: bytes | bytearray | None,
                                 force_qos: int | None = None) -> None:
        """amqtt's internal broadcasts (wills): with their QoS; a retained will is stored by the caller."""
        await self._broadcast_queue.put({"session": session, "topic": topic, "data": data,
                                         "qos": 1 if force_qos is None else force_qos})

    async def retain_message(self, source_session: Session | None, topic_name: str | None,
                             data: bytes | bytearray | None, qos: int | None = None) -> None:
        """Store or clear a retained message (amqtt calls this for retained wills)."""
        if topic_name:
            self._retain(topic_name, bytes(data or b""), qos or 0)

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Session) -> None:
        """Replaces amqtt's: the retained messages a new subscription matches, through the outbox."""
        topic_filter, sub_qos = subscription
        for topic, retained in list(self._retained_messages.items()):
            if topic_matches(topic_filter, topic) and self._allowed(session, topic, Access.READ):
                self._put(session, Message(topic, bytes(retained.data), min(sub_qos, retained.qos or 0), retain=True))

    async def _publish_session_retained_messages(self, session: Session) -> None:
        """Not used: messages for an offline session wait in its outbox."""

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        """Grant at most QoS 1: the outbox delivers QoS 0 and 1 (GridHub has no use for QoS 2)."""
        topic_filter, qos = subscription
        granted: int = await super().add_subscription((topic_filter, min(qos, 1)), session)
        return granted

    async def _topic_filtering(self, session: Session, topic: str, action: Any) -> bool:
        """SUBSCRIBE checks (the only caller left in amqtt: `add_subscription`)."""
        if self._accounts is None:
            return True
        listener = Listener(session.attributes[LISTENER])
        return self._accounts.may_subscribe(listener, session.username, session.client_id or "", topic)

    def _allowed(self, session: Session, topic: str, access: Access) -> bool:
        if self._accounts is None:
            return True
        listener = Listener(session.attributes[LISTENER])
        return self._accounts.allows(listener, session.username, session.client_id or "", topic, access)

    # --- accounts -----------------------------------------------------------------------------------

    async def _watch_accounts(self) -> None:
        """End the sessions of accounts that were removed, disabled or given a new secret."""
        assert self._accounts is not None
        while True:
            await asyncio.sleep(ACCOUNT_CHECK_S)
            if not self._accounts.refresh():
                continue
            for client_id, (session, handler) in list(self._sessions.items()):
                if not session.transitions.is_connected():
                    continue  # an offline session must log in again anyway
                listener = Listener(session.attributes[LISTENER])
                if self._accounts.login(listener, session.username, session.password):
                    continue  # still valid: a rewrite of the files with the same secret changes nothing
                log.info("ending the session of %s: account %s was removed, disabled or given a new secret",
                         client_id, session.username)
                await handler.handle_connection_closed()


def _publish(packet_id: int | None, message: Message, *, dup: bool) -> PublishPacket:
    return PublishPacket.build(message.topic, message.data, packet_id, dup, message.qos, message.retain)


def _encode(message: Message) -> list[Any]:
    return [message.topic, base64.b64encode(message.data).decode(), message.qos, message.retain]


def _decode(fields: list[Any]) -> Message:
    topic, data, qos, retain = fields
    return Message(topic, base64.b64decode(data), qos, retain)


def _retained(topic: str, data: bytes, qos: int) -> RetainedApplicationMessage:
    return RetainedApplicationMessage(None, topic, data, qos)


def argv(*, host: str, port: int, hub_host: str, hub_port: int, auth_dir: Path, state_file: Path) -> list[str]:
    """The command line of the embedded amqtt broker, as `gridhub up` runs it."""
    return [sys.executable, "-m", "gridhub.runtime.mqtt_broker", "--host", host, "--port", str(port),
            "--hub-host", hub_host, "--hub-port", str(hub_port), "--auth-dir", str(auth_dir),
            "--state-file", str(state_file)]


def broker_config(host: str, port: int, hub_host: str | None = None, hub_port: int | None = None) -> dict[str, Any]:
    """amqtt configuration: the device listener (amqtt's required `default`), the hub listener, no plugins."""
    listeners: dict[str, Any] = {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}}
    if hub_port is not None:
        listeners[HUB_LISTENER] = {"type": "tcp", "bind": f"{hub_host or host}:{hub_port}", "max_connections": 0}
    return {"listeners": listeners, "plugins": {}}


def _listener(name: str) -> Listener:
    return Listener.HUB if name == HUB_LISTENER else Listener.DEVICES


async def serve(host: str, port: int, auth_dir: Path | None, *, hub_host: str | None = None,
                hub_port: int | None = None, state_file: Path | None = None,
                limits: MqttSettings | None = None) -> None:
    """Run the broker until SIGTERM or SIGINT, then save its sessions (with `state_file`) and stop."""
    accounts = Accounts(auth_dir) if auth_dir is not None else None
    broker = GridBroker(broker_config(host, port, hub_host, hub_port), limits or MqttSettings(), accounts,
                        state_file)
    await broker.start()
    hub = f", hub accounts on {hub_host or host}:{hub_port}" if hub_port is not None else ""
    mode = f"accounts and ACLs from {auth_dir}" if auth_dir else "anonymous"
    log.info("embedded MQTT broker (amqtt) listening for devices on %s:%d%s (%s)", host, port, hub, mode)
    await stop_event().wait()
    await broker.stop_gracefully()


def main() -> None:
    """Entry point: `python -m gridhub.runtime.mqtt_broker --host H --port P [--hub-port P2] [--auth-dir DIR]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hub-host")
    parser.add_argument("--hub-port", type=int)
    parser.add_argument("--auth-dir", type=Path, help="directory with the password and ACL files")
    parser.add_argument("--state-file", type=Path, help="where sessions are saved on stop and loaded on start")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        limits = load_settings().mqtt
        accounts_dir = args.auth_dir.resolve() if args.auth_dir else None
        if accounts_dir is not None:
            Accounts(accounts_dir)  # fail with the reason here, not later inside amqtt
    except (ConfigError, BrokerAuthError) as exc:
        sys.exit(f"gridhub mqtt: {exc}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, accounts_dir, hub_host=args.hub_host, hub_port=args.hub_port,
                          state_file=args.state_file, limits=limits))


if __name__ == "__main__":
    main()
