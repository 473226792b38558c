#!/usr/bin/env python3
"""Benchmark ring-buffer decoding: raw pages -> decoded events (fields included) vs `trace-cmd report`.

The pages come from a trace-cmd trace.dat (default: the shared 1.9 M-event raw_syscalls capture); they are
read and decompressed before timing. Timed per round, interleaved so machine noise hits both alike:
  * rawtrace: decode_page() over every sub-buffer of every CPU into Event objects with their fields dicts;
  * trace-cmd: `trace-cmd report FILE > /dev/null` (wall time; it also decompresses and prints text).
With --render, the text rendering of `rawtrace decode` (render_event.text_lines) is timed as well.
With --check, every event is first compared with `trace-cmd report -t -R` (time stamp in ns, CPU, pid,
event name, integer and array fields, and strings without spaces), per CPU, as an oracle.
Prints best and median events/s and the ratio rawtrace / trace-cmd (target: >= 1.0).

    python3 tools/bench_decode.py [--file F] [-n 3] [--render] [--check]
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_FILE = Path("/work/shared/data/raw_syscalls_1905722ev.dat")


def load(path: Path):
    from rawtrace.comm import parse_saved_cmdlines
    from rawtrace.parse.tracedat import read_tracedat

    dat = read_tracedat(path)
    buf = dat.buffer()
    cpus = {cpu: dat.cpu_data(buf, cpu) for cpu in sorted(buf.cpus)}
    return dat.page_layout(buf), dat.formats(), cpus, parse_saved_cmdlines(dat.cmdlines)


def decode_all(layout, formats, cpus) -> tuple[int, float, float]:
    """(events, wall seconds, CPU seconds) for decoding every page into Event objects."""
    from rawtrace.parse.record import DecoderSet, Event
    from rawtrace.parse.ringbuf import decode_page

    decoders = DecoderSet(formats, layout.byteorder)
    step = layout.subbuf_size
    count = 0
    start, start_cpu = time.perf_counter(), time.process_time()
    for cpu, data in cpus.items():
        for offset in range(0, len(data), step):
            items = decode_page(layout, data[offset:offset + step], cpu, decoders)
            count += len(items)
    elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    # Check, outside the timing, that what was counted is events with their fields.
    sample = decode_page(layout, cpus[min(cpus)][:step], min(cpus), decoders)
    assert sample and all(isinstance(e, Event) and e.fields for e in sample)
    return count, elapsed, elapsed_cpu


def render_all(layout, formats, cpus, comms) -> tuple[int, float, float]:
    from rawtrace.parse.record import DecoderSet
    from rawtrace.parse.ringbuf import decode_page
    from rawtrace.render_event import text_lines

    decoders = DecoderSet(formats, layout.byteorder)
    step = layout.subbuf_size
    count = 0
    start, start_cpu = time.perf_counter(), time.process_time()
    for cpu, data in cpus.items():
        for offset in range(0, len(data), step):
            lines = text_lines(decode_page(layout, data[offset:offset + step], cpu, decoders), comms)
            count += len(lines)
    return count, time.perf_counter() - start, time.process_time() - start_cpu


def trace_cmd_report(path: Path) -> tuple[float, float] | None:
    """(wall seconds, CPU seconds) of `trace-cmd report FILE > /dev/null`, or None without trace-cmd."""
    program = shutil.which("trace-cmd")
    if program is None:
        return None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([program, "report", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


_REPORT_LINE = re.compile(r"^\S*:?\s*.*-(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d{9}): (\w+):\s+(.*)$")
_TOKEN = re.compile(r"(\w+)=(ARRAY\[[0-9a-f, ]*\]|\S*)")


def as_bytes(values, size: int, byteorder: str) -> bytes:
    if isinstance(values, bytes):
        return values
    return b"".join(v.to_bytes(size, byteorder, signed=v < 0) for v in values)


def _numbers(text: str) -> list[int]:
    """The integers trace-cmd's text can mean: decimal, hex with or without 0x, or octal (modes)."""
    found = []
    for base in (10, 16, 8):
        try:
            found.append(int(text, base))
        except ValueError:
            pass
    return found


def field_disagreement(fmt, fields: dict, tokens: dict, byteorder: str, compared: dict) -> str | None:
    """The first field whose value differs from trace-cmd's raw (-R) text, or None. trace-cmd prints
    integers in decimal or hex (long and pointer-sized ones), arrays as ARRAY[bytes], strings bare."""
    from rawtrace.parse.descriptors import FieldKind
    for field in fmt.fields:
        text = tokens.get(field.name)
        if text is None:
            continue
        value = fields[field.name]
        if field.kind in (FieldKind.INTEGER, FieldKind.POINTER) and field.size in (1, 2, 4, 8):
            candidates = _numbers(text)
            if not candidates:
                continue                        # printed symbolically
            mask = (1 << (8 * field.size)) - 1
            # trace-cmd may print an 8-byte syscall slot by its C type (int dfd -> 0xffffff9c)
            same = any((value & mask) == (theirs & mask) or (
                field.size == 8 and 0 <= theirs <= 0xFFFFFFFF and value & 0xFFFFFFFF == theirs)
                for theirs in candidates)
            kind = "integer"
        elif field.kind == FieldKind.ARRAY and text.startswith("ARRAY["):
            same = as_bytes(value, field.element_size, byteorder) == bytes.fromhex(text[6:-1].replace(", ", ""))
            kind = "array"
        elif isinstance(value, str) and value and value.isprintable() and " " not in value:
            same = value == text
            kind = "string"
        else:
            continue
        compared[kind] = compared.get(kind, 0) + 1
        if not same:
            return f"{field.name}: rawtrace {value!r}, trace-cmd {text!r}"
    return None


def check_against_trace_cmd(path: Path, layout, formats, cpus) -> bool:
    """Compare every event with `trace-cmd report -t -R`; print the first difference per CPU."""
    from rawtrace.parse.record import DecoderSet, Event
    from rawtrace.parse.ringbuf import iter_pages

    program = shutil.which("trace-cmd")
    if program is None:
        print("check: trace-cmd not installed, skipped")
        return True
    report = subprocess.run([program, "report", "-t", "-R", str(path)], capture_output=True, text=True,
                            check=True, errors="replace").stdout
    theirs: dict[int, list] = {cpu: [] for cpu in cpus}
    for line in report.splitlines():
        match = _REPORT_LINE.match(line)
        if match:
            pid, cpu, sec, nsec, name, rest = match.groups()
            theirs.setdefault(int(cpu), []).append((int(sec) * 10**9 + int(nsec), int(pid), name,
                                                    dict(_TOKEN.findall(rest))))
    decoders = DecoderSet(formats, layout.byteorder)
    ok = True
    compared: dict[str, int] = {}
    for cpu, data in cpus.items():
        ours = [e for e in iter_pages(layout, data, cpu, decoders) if isinstance(e, Event)]
        reference = theirs.get(cpu, [])
        problem = None if len(ours) == len(reference) else f"{len(ours)} events, trace-cmd has {len(reference)}"
        for event, (ts, pid, name, tokens) in zip(ours, reference):
            if problem:
                break
            if (event.ts, event.pid, event.format.name) != (ts, pid, name):
                problem = f"event {(event.ts, event.pid, event.format.name)} vs trace-cmd {(ts, pid, name)}"
            else:
                wrong = field_disagreement(event.format, event.fields, tokens, layout.byteorder, compared)
                if wrong:
                    problem = f"{name} at {ts}: {wrong}"
        ok &= problem is None
        print(f"check cpu {cpu}: {len(ours)} events: {problem or 'identical to trace-cmd'}")
    print(f"check: values compared: {compared}")
    return ok


def summary(label: str, events: int, runs: list[tuple[float, float]]) -> tuple[float, float]:
    """Print wall and CPU rates; return (best wall rate, best CPU rate)."""
    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    best, median, best_cpu = events / min(walls), events / statistics.median(walls), events / min(cpus)
    print(f"{label:<34} wall: best {best / 1e3:6.0f} k/s median {median / 1e3:6.0f} k/s ({min(walls):.2f} s)  "
          f"CPU: best {best_cpu / 1e3:6.0f} k/s ({min(cpus):.2f} s)")
    return best, best_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("-n", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--render", action="store_true", help="also time decode + text rendering")
    parser.add_argument("--check", action="store_true", help="first compare every event with trace-cmd")
    args = parser.parse_args()
    if not args.file.exists():
        print(f"skip: {args.file} is absent")
        return 0
    t0 = time.perf_counter()
    layout, formats, cpus, comms = load(args.file)
    pages = sum(len(d) for d in cpus.values()) // layout.subbuf_size
    print(f"{args.file.name}: {pages} pages of {layout.subbuf_size} bytes on {len(cpus)} CPUs, "
          f"loaded and decompressed in {time.perf_counter() - t0:.2f} s (not timed below)")
    print(f"python {sys.version.split()[0]}")
    if args.check and not check_against_trace_cmd(args.file, layout, formats, cpus):
        return 1

    ours, theirs, rendered = [], [], []
    events = 0
    for _ in range(args.n):
        events, wall, cpu = decode_all(layout, formats, cpus)
        ours.append((wall, cpu))
        tc = trace_cmd_report(args.file)
        if tc is not None:
            theirs.append(tc)
        if args.render:
            _, wall, cpu = render_all(layout, formats, cpus, comms)
            rendered.append((wall, cpu))
    print(f"events decoded: {events} (rates in events per second; CPU = user+sys time, less sensitive "
          f"to other load on the machine)")
    best, best_cpu = summary("rawtrace decode_page (fields)", events, ours)
    if args.render:
        r_best, r_cpu = summary("rawtrace decode_page + text lines", events, rendered)
    if theirs:
        tc_best, tc_cpu = summary("trace-cmd report > /dev/null", events, theirs)
        print(f"ratio decode / trace-cmd report: wall {best / tc_best:.2f}x  CPU {best_cpu / tc_cpu:.2f}x "
              f"(target >= 1.0)")
        if args.render:
            print(f"ratio decode+text / trace-cmd report: wall {r_best / tc_best:.2f}x  CPU {r_cpu / tc_cpu:.2f}x")
    else:
        print("trace-cmd: not installed, skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
