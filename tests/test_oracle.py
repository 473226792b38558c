"""Oracle: the kernel's own text rendering (the instance's `trace` file) agrees with rawtrace's decoding
of the same buffer, field by field, for a mixed workload (syscalls, sched, __data_loc strings, arrays)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from rawtrace.parse.format import parse_format, parse_header_event, parse_header_page
from rawtrace.parse.record import DecoderSet, Event
from rawtrace.parse.ringbuf import PageLayout, decode_page
from rawtrace.tracefs.instance import Instance
from rawtrace.tracefs.reader import BufferReader

EVENTS = [("syscalls", "sys_enter_openat"), ("syscalls", "sys_exit_openat"), ("raw_syscalls", "sys_enter"),
          ("raw_syscalls", "sys_exit"), ("sched", "sched_process_exec"), ("sched", "sched_process_fork"),
          ("sched", "sched_process_exit"), ("sched", "sched_switch"), ("task", "task_rename"),
          ("task", "task_newtask")]

LINE_RE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S{4,5}\s+)?"
                     r"(?P<ts>\d+\.\d{6}): (?P<event>\w+)(?:: |(?=[( ]))(?P<body>.*)$")
CONVERSION_RE = re.compile(r"(\w+)=%[-0-9.]*(?:ll|l|h|hh|z)?([dusxXpc])(?:S)?")
DIRECT_ARG_RE = re.compile(r"^(?:REC->(\w+)|__get_str\((\w+)\))$")
MASK64 = (1 << 64) - 1

WORKLOAD = r"""
import os, subprocess, sys
sys.stdin.read(1)
for i in range(5):
    try:
        os.close(os.open(sys.argv[1] if i % 2 else sys.argv[1] + ".missing", os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        pass
with open("/proc/self/comm", "w") as f:
    f.write("oracle-renamed")
subprocess.run([sys.argv[2]])
subprocess.run(["/bin/sh", "-c", "cat /etc/hostname > /dev/null; exec " + sys.argv[2]])
"""


def print_fields(fmt) -> dict[str, tuple[str, str]]:
    """text key -> (field name, conversion) for the `key=%x` parts whose argument is a plain field."""
    text = fmt.print_fmt_string or ""
    conversions = re.findall(r"%[-0-9.]*(?:ll|l|h|hh|z)?[dusxXpc]", text.replace("%%", ""))
    args = list(fmt.print_fmt_args)
    if len(conversions) != len(args):
        return {}
    out = {}
    keyed = CONVERSION_RE.findall(text)
    # Walk conversions in order, pairing each `key=` conversion with its argument.
    keyed_iter = iter(keyed)
    pending = next(keyed_iter, None)
    for conversion, arg in zip(conversions, args):
        if pending is None:
            break
        if not conversion.endswith(pending[1]):
            continue
        m = DIRECT_ARG_RE.match(arg.strip())
        if m:
            out[pending[0]] = (m.group(1) or m.group(2), pending[1])
        pending = next(keyed_iter, None)
    return out


def compare(decoded: Event, body: str, mapping: dict) -> tuple[int, list[str]]:
    """Compare one decoded event with the kernel's text body; returns (fields compared, mismatches)."""
    fields = decoded.fields
    name = decoded.format.name
    compared, bad = 0, []

    def check(what, want, got):
        nonlocal compared
        compared += 1
        if want != got:
            bad.append(f"{name}.{what}: kernel {want!r} != rawtrace {got!r}")

    if decoded.format.system == "syscalls" and name.startswith("sys_enter_"):
        for key, value in re.findall(r"(\w+): (0x[0-9a-f]+|\d+)", body):
            check(key, int(value, 0), fields[key] & MASK64)
    elif decoded.format.system == "syscalls" and name.startswith("sys_exit_"):
        check("ret", int(body.split("-> 0x")[1], 16), fields["ret"] & MASK64)
    elif name == "sys_enter" and decoded.format.system == "raw_syscalls":
        m = re.match(r"NR (-?\d+) \(([0-9a-f, ]*)\)", body)
        check("id", int(m.group(1)), fields["id"])
        check("args", [int(v, 16) for v in m.group(2).split(", ")], [a & MASK64 for a in fields["args"]])
    elif name == "sys_exit" and decoded.format.system == "raw_syscalls":
        m = re.match(r"NR (-?\d+) = (-?\d+)", body)
        check("id", int(m.group(1)), fields["id"])
        check("ret", int(m.group(2)), fields["ret"])
    else:
        # Values never contain spaces in this workload; `==>` and other decoration is skipped.
        for key, value in re.findall(r"(\w+)=(\S*)", body):
            if key not in mapping:
                continue
            field, conv = mapping[key]
            got = fields[field]
            if conv == "s":
                check(field, value, got)
            elif conv in "du":
                check(field, int(value), got)
            elif conv in "xXp":
                check(field, int(value, 16), got & MASK64)
    return compared, bad


@pytest.mark.live
def test_kernel_text_agrees_with_decoder(live_tracefs, tmp_path):
    target = tmp_path / "oracle-target"
    target.write_text("x")
    binary = tmp_path / "rtoracle-exec-name-long"
    shutil.copy("/bin/true", binary)
    child = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(target), str(binary)], stdin=subprocess.PIPE)
    inst = Instance.create(live_tracefs)
    try:
        inst.set_clock("mono")
        inst.set_option("event-fork", True)
        inst.set_event_pids([child.pid])
        formats = {}
        for system, event in EVENTS:
            fmt = parse_format(inst.read(f"events/{system}/{event}/format"), system=system, long_size=8)
            formats[fmt.id] = fmt
            inst.enable_event(system, event)
        inst.set_tracing_on(True)
        child.stdin.write(b"g")
        child.stdin.close()
        assert child.wait(30) == 0
        inst.set_tracing_on(False)
        # The text first: reading `trace` does not consume; trace_pipe_raw does.
        text = inst.read("trace")
        layout = PageLayout.from_headers(parse_header_page(inst.read("events/header_page")),
                                         parse_header_event(inst.read("events/header_event")))
        decoders = DecoderSet(formats)
        buffers = BufferReader(inst.path, inst.cpus(), layout.subbuf_size)
        decoded: dict[int, list] = {}
        try:
            for _ in range(1000):
                pages = 0
                for cpu, got, _drained in buffers.drain():
                    pages += len(got)
                    for page in got:
                        decoded.setdefault(cpu, []).extend(decode_page(layout, page, cpu, decoders))
                if not pages:
                    break
        finally:
            buffers.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        inst.destroy()

    lines: dict[int, list] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = LINE_RE.match(line)
        assert m, f"unparsed kernel line: {line!r}"
        lines.setdefault(int(m.group("cpu")), []).append(m)
    assert "LOST" not in text
    mappings = {fid: print_fields(fmt) for fid, fmt in formats.items()}
    total_events = total_fields = 0
    kinds = set()
    for cpu in sorted(set(lines) | set(decoded)):
        ours = [e for e in decoded.get(cpu, []) if isinstance(e, Event)]
        theirs = lines.get(cpu, [])
        assert len(ours) == len(theirs), f"cpu {cpu}: kernel shows {len(theirs)} events, rawtrace decoded {len(ours)}"
        for event, m in zip(ours, theirs):
            assert m.group("event") in (event.format.name, "sys_" + event.format.name[10:],
                                        "sys_" + event.format.name[9:]) or \
                (event.format.system == "syscalls" and m.group("event").startswith("sys_")), (event, m.group(0))
            assert int(m.group("pid")) == event.pid
            # ftrace rounds nanoseconds to the nearest microsecond.
            assert m.group("ts") == f"{(event.ts + 500) // 1000 // 1000000}.{(event.ts + 500) // 1000 % 1000000:06d}"
            count, bad = compare(event, m.group("body"), mappings[event.id])
            assert not bad, bad
            total_events += 1
            total_fields += count
            kinds.add(f"{event.format.system}:{event.format.name}")
    # A mixed workload really was compared: syscalls, exec (a __data_loc string), fork, rename, arrays.
    for needed in ("syscalls:sys_enter_openat", "syscalls:sys_exit_openat", "raw_syscalls:sys_enter",
                   "sched:sched_process_exec", "sched:sched_process_fork", "task:task_rename"):
        assert needed in kinds, f"{needed} not exercised ({sorted(kinds)})"
    assert total_events > 100 and total_fields >= 2 * total_events, (total_events, total_fields)
    execs = [e for events in decoded.values() for e in events
             if isinstance(e, Event) and e.format.name == "sched_process_exec"]
    assert any(e.fields["filename"] == str(binary) for e in execs)
