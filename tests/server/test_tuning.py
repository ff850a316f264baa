"""The server process's collector settings (in a child process: they are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import gc, json
from modelyard.server.tuning import YOUNG_THRESHOLD, tune_gc
before = gc.get_threshold()
tune_gc()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "young": YOUNG_THRESHOLD}))
"""


def test_tune_gc_freezes_what_startup_built_and_collects_the_young_generation_less_often() -> None:
    """After tune_gc the imported modules are frozen and gen0 waits for 20,000 net allocations."""
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60)
    seen = json.loads(done.stdout)
    assert seen["before"][0] < seen["young"] == seen["after"][0] == 20_000
    assert seen["after"][1:] == seen["before"][1:]
    assert seen["frozen"] > 10_000


PAUSED = """
import gc, json
from modelyard.server.tuning import paused_gc
seen = {}
with paused_gc():
    seen["inside"] = gc.isenabled()
seen["after"] = gc.isenabled()
gc.disable()
with paused_gc():
    pass
seen["after_disabled"] = gc.isenabled()
print(json.dumps(seen))
"""


def test_paused_gc_turns_the_collector_off_and_restores_its_previous_state() -> None:
    """Inside the block no automatic collections; after it the collector is as it was (on, or still off)."""
    done = subprocess.run([sys.executable, "-c", PAUSED], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(done.stdout) == {"inside": False, "after": True, "after_disabled": False}
