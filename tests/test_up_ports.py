"""`gridhub up` picks the embedded broker's two listener ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from core.settings import MqttSettings
from gridhub.runtime import up


def picking(ports: Iterator[int]) -> Callable[[str, int, str], int]:
    """A `_reserve_port` that gives a configured port back and answers 0 with the next of `ports`."""
    return lambda host, port, key: port or next(ports)


def test_any_free_hub_port_is_picked_again_when_the_kernel_hands_out_the_device_port_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each port is reserved and let go in turn, so "any free port" may well be the one just freed.
    monkeypatch.setattr(up, "_reserve_port", picking(iter([41000, 41000, 41000, 41001])))
    assert up._mqtt_ports(MqttSettings(port=0)) == (41000, 41001)


def test_a_configured_hub_port_equal_to_the_device_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "_reserve_port", picking(iter([])))
    with pytest.raises(up.StartupError, match=r"mqtt.hub_port: the hub listener needs a port of its own"):
        up._mqtt_ports(MqttSettings(port=41000, hub_port=41000))
