"""The embedded MQTT broker (amqtt), run as a supervised child process of `gridhub up`.

amqtt speaks MQTT 3.1.1 only; clients fall back from v5 when they talk to it. With `--auth-dir` it
authenticates against the Mosquitto password file there and enforces the ACL file beside it
(`gridhub.runtime.mqtt_auth`); without it, anyone may connect and do anything.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from amqtt.broker import Broker
from amqtt.session import Session

from gridhub.broker_auth import ACL_FILE, PASSWORD_FILE, BrokerAuthError, read_acl_file, read_password_file
from gridhub.runtime import stop_event

log = logging.getLogger("gridhub.mqtt")


class _Broker(Broker):  # type: ignore[misc]
    """amqtt's broker, sending retained messages only for subscriptions the client actually holds.

    On every CONNECT amqtt 0.12 walks all clients' subscriptions and sends the new client each retained
    message that matches any of them, without a topic check: a device would receive every other device's
    retained status.
    """

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter = subscription[0]
        holders = self._subscriptions.get(topic_filter, ())
        if any(holder.client_id == session.client_id for holder, _ in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)


def broker_config(host: str, port: int, auth_dir: Path | None = None) -> dict[str, object]:
    """amqtt configuration: one TCP listener, no $SYS publishing, no per-packet logging; auth from `auth_dir`."""
    if auth_dir is None:
        plugins: dict[str, object] = {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        }
    else:
        files = {"password_file": str(auth_dir / PASSWORD_FILE), "acl_file": str(auth_dir / ACL_FILE)}
        plugins = {
            "gridhub.runtime.mqtt_auth.PasswordFileAuthPlugin": files,
            "gridhub.runtime.mqtt_auth.AclTopicPlugin": {"acl_file": files["acl_file"]},
        }
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "plugins": plugins,
    }


async def serve(host: str, port: int, auth_dir: Path | None = None) -> None:
    """Run the broker until SIGTERM or SIGINT."""
    broker = _Broker(broker_config(host, port, auth_dir))
    await broker.start()
    mode = f"accounts and ACL from {auth_dir}" if auth_dir else "anonymous"
    log.info("embedded MQTT broker listening on %s:%d (%s)", host, port, mode)
    stop = stop_event()
    await stop.wait()
    await broker.shutdown()


def main() -> None:
    """Entry point: `python -m gridhub.runtime.mqtt_broker --host H --port P [--auth-dir DIR]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth-dir", type=Path, help=f"directory with the {PASSWORD_FILE} and {ACL_FILE} files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    auth_dir = args.auth_dir.resolve() if args.auth_dir else None
    if auth_dir is not None:
        try:  # fail with the reason here, not wrapped in amqtt's plugin errors
            read_password_file(auth_dir / PASSWORD_FILE)
            read_acl_file(auth_dir / ACL_FILE)
        except BrokerAuthError as exc:
            sys.exit(f"gridhub mqtt: {exc}")
    asyncio.run(serve(args.host, args.port, auth_dir))


if __name__ == "__main__":
    main()
