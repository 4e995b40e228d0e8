"""The package layout of docs/architecture.md: every module imports on its own (`make lint` checks the layers)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("domain", "core", "storage", "ingest", "streams", "detectors", "api", "simulators", "gridhub")

# One interpreter for all modules: before each import, every GridHub module is forgotten, so each is imported
# as a fresh interpreter would (third-party libraries stay loaded, which only saves time). An import cycle
# shows up as "partially initialized module". core.metrics stays: it registers the process's metrics once, and
# imports nothing of GridHub's.
ALONE = """
import importlib, sys, traceback
ours = {PACKAGES!r}
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ours and m != "core.metrics"]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        found.append(package)
        for info in pkgutil.walk_packages([str(ROOT / package)], f"{package}."):
            if not info.name.endswith("__main__"):  # running the CLI is not importing it
                found.append(info.name)
    return found


def test_every_module_imports_on_its_own() -> None:
    names = modules()
    assert len(names) > 100  # the walk found the tree, not an empty directory
    done = subprocess.run([sys.executable, "-c", ALONE.format(PACKAGES=PACKAGES), *names], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
