"""Numbered slots for the replicas of a scaled service (`gateway.slots_dir`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.lifecycle import NoFreeSlot, claim_slot

HOLD_SLOT = """
import sys
from pathlib import Path
from core.lifecycle import claim_slot
print(claim_slot(Path(sys.argv[1])), flush=True)
sys.stdin.read()
"""


def holder(directory: Path) -> tuple[subprocess.Popen[str], int]:
    """Another process holding the lowest free slot until it is stopped; and that slot."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_SLOT, str(directory)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def test_replicas_take_the_lowest_free_slots_and_a_killed_ones_slot_goes_to_its_replacement(tmp_path: Path) -> None:
    first, one = holder(tmp_path)
    second, two = holder(tmp_path)
    try:
        assert (one, two) == (1, 2)
        first.kill()  # SIGKILL: no clean-up ran, the kernel released the lock
        first.wait(10)
        replacement, slot = holder(tmp_path)
        assert slot == 1
        replacement.kill()
    finally:
        second.kill()


def test_a_process_claims_one_slot_per_call_and_none_when_all_are_held(tmp_path: Path) -> None:
    assert [claim_slot(tmp_path, limit=2), claim_slot(tmp_path, limit=2)] == [1, 2]
    with pytest.raises(NoFreeSlot, match="all 2 slots"):
        claim_slot(tmp_path, limit=2)
