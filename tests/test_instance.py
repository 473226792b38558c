"""tracefs Instance: naming, settings, filters, pid lists, teardown; and two sessions side by side."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from rawtrace.errors import KernelRefused, UsageError
from rawtrace.session import Session, TraceEvent
from rawtrace.tracefs.instance import Instance, instance_name, parse_owner, read_stats

STATS = """entries: 47
overrun: 127
commit overrun: 0
bytes: 3120
oldest event ts:   282.705628
now ts:   282.782597
dropped events: 0
read events: 12
"""


def test_read_stats():
    stats = read_stats(STATS)
    assert stats["overrun"] == 127 and stats["read events"] == 12 and stats["now ts"] == 282.782597


def test_second_session_names_parse_as_same_owner():
    owner = parse_owner(instance_name() + "-3")
    assert owner is not None and owner.pid == os.getpid()


def test_refuses_bad_names(tmp_path):
    with pytest.raises(UsageError):
        Instance(tmp_path, "a/b")


@pytest.mark.live
def test_settings_and_teardown(live_tracefs):
    with Instance.create(live_tracefs) as inst:
        assert inst.path.parent == live_tracefs / "instances" and inst.name.startswith("rawtrace-")
        assert inst.read("tracing_on").strip() == "0"
        inst.set_clock("mono")
        assert inst.clocks()[1] == "mono"
        with pytest.raises(UsageError):
            inst.set_clock("no-such-clock")
        inst.set_buffer_kb(64)
        assert 64 <= inst.buffer_kb() < 80          # rounded up to whole sub-buffers
        inst.set_option("event-fork", True)
        assert inst.read("options/event-fork").strip() == "1"
        inst.set_event_pids([os.getpid(), 1])
        assert inst.event_pids() == {1, os.getpid()}
        inst.enable_event("syscalls", "sys_enter_openat")
        inst.set_filter("syscalls", "sys_enter_openat", "flags == 0x80000 && comm == \"cat\"")
        with pytest.raises(KernelRefused, match="rejected filter"):
            inst.set_filter("syscalls", "sys_enter_openat", "no_such_field == 1")
        with pytest.raises(UsageError):
            inst.enable_event("syscalls", "sys_enter_no_such_call")
        assert inst.subbuf_size() >= 4096 and inst.cpus()
        assert set(inst.stats(inst.cpus()[0])) >= {"overrun", "entries"}
        # (The live_tracefs fixture checks that the top level is exactly as before.)
        path = inst.path
    assert not path.exists()


@pytest.mark.live
def test_two_sessions_at_once_each_see_everything(live_tracefs, tmp_path):
    """Instances are independent: two sessions tracing the same process both get every event."""
    child = subprocess.Popen([sys.executable, "-c", ("import os, sys\nsys.stdin.read(1)\n"
                              "for _ in range(50):\n    os.getppid()\n")], stdin=subprocess.PIPE)
    try:
        with Session(["syscalls:sys_enter_getppid"], pid=child.pid) as first, \
                Session(["syscalls:sys_enter_getppid"], pid=child.pid) as second:
            assert first.instance.name != second.instance.name
            assert parse_owner(first.instance.name) == parse_owner(second.instance.name)
            child.stdin.write(b"g")
            child.stdin.close()
            child.wait(30)
            time.sleep(0.1)
            results = {}

            def collect(session, key):
                session.stop()
                results[key] = [e for e in session.events(duration=10) if isinstance(e, TraceEvent)]
            threads = [threading.Thread(target=collect, args=(s, k)) for k, s in (("a", first), ("b", second))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert len(results["a"]) == len(results["b"]) == 50
    # Each instance stamps its own copy, so times differ by the write order; the streams match otherwise.
    assert [(e.pid, e.comm) for e in results["a"]] == [(e.pid, e.comm) for e in results["b"]]
    assert all(abs(a.ts - b.ts) < 0.01 for a, b in zip(results["a"], results["b"]))
