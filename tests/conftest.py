"""Shared fixtures: live-tracefs access is serialised by a lock and must leave tracefs as it found it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LIVE_TRACEFS = Path("/sys/kernel/tracing")
LOCK_PATH = "/tmp/rawtrace-live-tests.lock"


def _ensure_tracefs() -> str | None:
    """Mount tracefs if we are root and it is not mounted; return a skip reason if it cannot be had."""
    if (LIVE_TRACEFS / "events").is_dir():
        return None
    if os.geteuid() != 0:
        return "live tracefs tests need root (tracefs is not mounted or not readable)"
    if not LIVE_TRACEFS.is_dir():
        return "this kernel has no tracefs mount point (/sys/kernel/tracing missing)"
    rc = os.system(f"mount -t tracefs nodev {LIVE_TRACEFS} 2>/dev/null")
    if rc != 0 or not (LIVE_TRACEFS / "events").is_dir():
        return "tracefs cannot be mounted here"
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def tracefs_state(tracefs: Path = LIVE_TRACEFS) -> dict:
    """Everything rawtrace could conceivably change at the top level, as text, for before/after comparison."""
    state = {"instances": sorted(p.name for p in (tracefs / "instances").iterdir())}
    for name in ("set_event", "set_event_pid", "tracing_on", "buffer_size_kb", "current_tracer",
                 "trace_clock", "dynamic_events", "uprobe_events", "kprobe_events", "tracing_cpumask",
                 "buffer_percent", "trace_options"):
        state[name] = _read(tracefs / name)
    for enable in ("events/enable", "events/syscalls/enable", "events/raw_syscalls/enable",
                   "events/sched/enable"):
        state[enable] = _read(tracefs / enable)
    return state


@pytest.fixture(scope="session")
def live_tracefs_available():
    reason = _ensure_tracefs()
    if reason:
        pytest.skip(reason)
    return LIVE_TRACEFS


@pytest.fixture
def live_tracefs(live_tracefs_available):
    """A live tracefs path, held under a lock (one live-tracing run at a time on this machine),
    asserting afterwards that the top level and the instance list are exactly as before."""
    with open(LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = tracefs_state(live_tracefs_available)
        yield live_tracefs_available
        after = tracefs_state(live_tracefs_available)
        assert after == before, "tracefs was not left as found"
