"""Timeline JSON (Chrome trace-event format): structure of the document, and `rawtrace timeline` over a
hand-built recording with context switches, syscalls and a loss."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from test_ringbuf_support import PageBuilder, common

from rawtrace.cli import main
from rawtrace.cli.timeline import state_text
from rawtrace.parse.format import parse_format
from rawtrace.parse.tracedat_write import TraceDatContent, write_tracedat
from rawtrace.perfetto import CPU_PROCESS, CPU_THREAD_BASE, Timeline

FORMATS = Path(__file__).parent / "fixtures" / "formats" / "6.18.44-fc-v769" / "events"


def check_document(doc: dict) -> dict:
    """What every timeline must satisfy; returns the complete events per (pid, tid)."""
    events = doc["traceEvents"]
    assert isinstance(events, list) and events
    tracks: dict[tuple, list] = {}
    named_threads = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    for e in events:
        assert e["ph"] in ("X", "M", "i"), e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "M":
            assert e["args"]["name"] if e["name"].endswith("_name") else True
            continue
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
        assert e["name"]
        if e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
            tracks.setdefault((e["pid"], e["tid"]), []).append(e)
    for key, slices in tracks.items():
        assert key in named_threads, f"track {key} has no thread_name"
        # Slices on one track nest: each one ends before the next begins, or contains it.
        open_ends: list[float] = []
        for e in sorted(slices, key=lambda e: (e["ts"], -e["dur"])):
            # Half a nanosecond of slack: ts + dur of back-to-back slices differs from the next ts only by
            # float rounding, which grows with the clock (4e-6 us past 2**34 us, 4.8 hours of uptime); the
            # times themselves are whole nanoseconds.
            while open_ends and open_ends[-1] <= e["ts"] + 5e-4:
                open_ends.pop()
            end = e["ts"] + e["dur"]
            assert not open_ends or end <= open_ends[-1] + 5e-4, f"partial overlap on {key}: {e}"
            open_ends.append(end)
    return tracks


def test_timeline_document_structure(tmp_path):
    t = Timeline()
    t.thread(100, 100, "main")
    t.thread(101, 100, "worker")
    t.switch(1_000_000, 0, 100, "main", 100)
    t.switch(1_000_500, 1, 101, "worker", 100)
    t.syscall(1_000_100, 1_000_400, 100, 100, "read", {"fd": "3"}, 5)
    t.syscall(1_000_600, 1_002_000, 101, 100, "futex", {}, -110, "ETIMEDOUT")
    t.switch(1_001_000, 0, 0, "swapper/0", 0, "S")
    t.lost(1_001_500, 1, 12)
    t.instant(1_001_700, 101, 100, "exit")
    path = tmp_path / "t.json"
    count = t.write(path)
    doc = json.loads(path.read_text())
    assert len(doc["traceEvents"]) == count
    tracks = check_document(doc)
    cpu0 = tracks[(CPU_PROCESS, CPU_THREAD_BASE + 0)]
    assert [(e["name"], e["ts"], e["dur"], e["args"]["state_after"]) for e in cpu0] == [("main 100", 1000.0, 1.0, "S")]
    # CPU 1's task still runs at the end: its slice is closed at the last time stamp seen.
    assert tracks[(CPU_PROCESS, CPU_THREAD_BASE + 1)][0]["dur"] == 1.5
    read = tracks[(100, 100)][0]
    assert (read["name"], read["ts"], read["dur"], read["args"]) == ("read", 1000.1, 0.3, {"fd": "3", "ret": 5})
    assert tracks[(100, 101)][0]["args"]["error"] == "ETIMEDOUT"
    lost = [e for e in doc["traceEvents"] if e.get("cat") == "lost"]
    assert lost[0]["s"] == "g" and lost[0]["args"]["count"] == 12 and "12 events lost" in lost[0]["name"]
    names = {(e["pid"], e.get("tid")): e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M"
             and e["name"] in ("thread_name", "process_name")}
    assert names[(100, 101)] == "worker" and names[(100, 100)] == "main" and names[(CPU_PROCESS, 0)] == "CPUs"
    assert doc["otherData"]["lost_events"] == 12


def test_state_text():
    assert [state_text(s) for s in (0, 0x100, 1, 2, 3, 0x80)] == ["R", "R+", "S", "D", "S|D", "I"]


def payload(fmt, pid: int, **values) -> bytes:
    size = max(f.offset + f.size for f in fmt.all_fields)
    out = bytearray(common("little", fmt.id, pid) + bytes(size - 8))
    for f in fmt.fields:
        if f.name not in values:
            continue
        value = values[f.name]
        if isinstance(value, str):
            struct.pack_into(f"{f.size}s", out, f.offset, value.encode())
        elif isinstance(value, tuple):
            struct.pack_into(f"<{len(value)}Q", out, f.offset, *value)
        else:
            struct.pack_into({1: "<b", 2: "<h", 4: "<i", 8: "<q"}[f.size], out, f.offset, value)
    return bytes(out)


def recording(tmp_path: Path) -> Path:
    texts = {name: (FORMATS / system / name / "format").read_text()
             for system, name in (("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit"),
                                  ("sched", "sched_switch"))}
    fmts = {name: parse_format(text, system="x", long_size=8) for name, text in texts.items()}
    enter, leave, switch = fmts["sys_enter"], fmts["sys_exit"], fmts["sched_switch"]
    base = 5_000_000_000
    cpu0 = PageBuilder()
    cpu0.event(payload(switch, 0, prev_comm="swapper/0", prev_pid=0, prev_state=0, next_comm="app",
                       next_pid=300, next_prio=120), delta=10)
    cpu0.event(payload(enter, 300, id=0, args=(3, 0x1000, 10, 0, 0, 0)), delta=1000)      # read(3, ...)
    cpu0.event(payload(leave, 300, id=0, ret=10), delta=2000)
    cpu0.event(payload(enter, 300, id=257, args=(0xFFFFFF9C, 0x2000, 0, 0, 0, 0)), delta=1000)
    cpu0.event(payload(leave, 300, id=257, ret=-2), delta=500)
    cpu0.event(payload(switch, 300, prev_comm="app", prev_pid=300, prev_state=1, next_comm="swapper/0",
                       next_pid=0, next_prio=120), delta=100)
    cpu1 = PageBuilder()
    cpu1.event(payload(switch, 0, prev_comm="swapper/1", prev_pid=0, prev_state=0, next_comm="other",
                       next_pid=400, next_prio=120), delta=50)
    cpu1_page2 = PageBuilder()
    cpu1_page2.event(payload(switch, 400, prev_comm="other", prev_pid=400, prev_state=0, next_comm="app",
                             next_pid=300, next_prio=120), delta=10)
    data = {0: cpu0.build(base), 1: cpu1.build(base) + cpu1_page2.build(base + 10_000, missed=True, stored=3)}
    path = tmp_path / "rec.dat"
    write_tracedat(path, TraceDatContent(
        header_page=(FORMATS / "header_page").read_text(), header_event=(FORMATS / "header_event").read_text(),
        event_formats=[("raw_syscalls", texts["sys_enter"]), ("raw_syscalls", texts["sys_exit"]),
                       ("sched", texts["sched_switch"])],
        cmdlines="300 app\n400 other\n", clock="mono", cpu_data=data))
    return path


def test_timeline_command_over_a_recording(tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main(["timeline", "-i", str(recording(tmp_path)), "-o", str(out)]) == 0
    assert "slices" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    tracks = check_document(doc)
    calls = tracks[(300, 300)]
    assert [c["name"] for c in calls] == ["read", "openat"]
    assert calls[0]["ts"] == pytest.approx((5_000_000_000 + 10 + 1000) / 1000) and calls[0]["dur"] == 2.0
    assert calls[0]["args"]["ret"] == 10 and calls[1]["args"]["ret"] == -2 and "error" in calls[1]["args"]
    # Without the syscalls:* formats in the recording the arguments are numbered, not named.
    assert calls[1]["args"]["error"] == "ENOENT" and calls[0]["args"]["arg0"] == "3"
    cpu0 = [e["name"] for e in tracks[(CPU_PROCESS, CPU_THREAD_BASE)]]
    assert cpu0 == ["app 300"]
    assert [e["name"] for e in tracks[(CPU_PROCESS, CPU_THREAD_BASE + 1)]] == ["other 400", "app 300"]
    assert [e["args"]["count"] for e in doc["traceEvents"] if e.get("cat") == "lost"] == [3]


def test_timeline_errors(tmp_path, capsys):
    rec = recording(tmp_path)
    assert main(["timeline", "-i", str(rec), "-o", str(tmp_path / "x.json"), "--no-syscalls", "--no-sched"]) == 2
    assert "nothing to show" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["timeline", "-i", str(rec)])                  # -o is required
    assert exc.value.code == 2
    assert not (tmp_path / "x.json").exists()
