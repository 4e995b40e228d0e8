"""The embedded MQTT broker (amqtt), run as a supervised child process of `gridhub up`.

amqtt speaks MQTT 3.1.1 only; clients fall back from v5 when they talk to it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from amqtt.broker import Broker

log = logging.getLogger("gridhub.mqtt")


def broker_config(host: str, port: int) -> dict[str, object]:
    """amqtt configuration: one TCP listener, no $SYS publishing, no per-packet logging."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


async def serve(host: str, port: int) -> None:
    """Run the broker until SIGTERM or SIGINT."""
    broker = Broker(broker_config(host, port))
    await broker.start()
    log.info("embedded MQTT broker listening on %s:%d", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main() -> None:
    """Entry point: `python -m gridhub.runtime.mqtt_broker --host H --port P`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
