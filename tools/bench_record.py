#!/usr/bin/env python3
"""Recording overhead and losslessness: `rawtrace record` against `trace-cmd record`, then decode speed of the
recording with print fmt evaluation against `trace-cmd report`, in one run.

The workload (tools/workload.c built with cc, else a Python loop) does N x (openat + read + close) and prints
its loop time. Each recorder records raw_syscalls for that command only (rawtrace: `-- CMD`, the kernel's
event pid filter with event-fork; trace-cmd: `-F -c -- CMD`). Printed per mode: the median loop time and
the slowdown against the untraced run; for each recorder the events in its file (counted by rawtrace's
reader), the events the file marks lost (page flags) and the file size. Then, over the trace-cmd file:
`trace-cmd report` to /dev/null against `rawtrace decode --no-pair` (the same lines: every event with
its print fmt), `rawtrace decode` (syscalls paired) and rawtrace's decoding plus print fmt rendering in
this process (rawtrace.printfmt), as events per second, with the speed ratios to trace-cmd report.

Run as root:  flock /tmp/rawtrace-live-tests.lock python3 tools/bench_record.py [--iterations 100000]"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
TRACE_CMD_HERE = os.environ.get("RAWTRACE_TRACE_CMD_HERE") or str(ROOT.parent / "shared/tools/trace-cmd-here")

from bench_overhead import build_workload, loop_times


def file_figures(path: Path) -> tuple[int, int, int]:
    """(events, lost events marked in the pages, bytes) of a trace.dat, by rawtrace's reader."""
    from rawtrace.parse.record import Event, Lost
    from rawtrace.parse.ringbuf import iter_pages
    from rawtrace.parse.tracedat import read_tracedat
    dat = read_tracedat(path)
    buf = dat.buffer()
    layout = dat.page_layout(buf)
    decoders = layout.decoders(dat.formats())
    events = lost = 0
    for cpu in buf.cpus:
        for item in iter_pages(layout, dat.cpu_data(buf, cpu), cpu, decoders):
            if item.__class__ is Event:
                events += 1
            elif isinstance(item, Lost):
                lost += max(item.count, 0)
    return events, lost, path.stat().st_size


def run_untraced(cmd: list[str]) -> float:
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return loop_times(done.stdout)[0]


def run_rawtrace(cmd: list[str], out: Path, extra: list[str]) -> float:
    if out.exists():
        out.unlink()
    done = subprocess.run([sys.executable, "-m", "rawtrace", "record", "-o", str(out), "raw_syscalls:*", *extra,
                           "--", *cmd], cwd=ROOT, capture_output=True, text=True, check=False)
    times = loop_times(done.stdout)
    if done.returncode != 0 or not times:
        raise RuntimeError(f"rawtrace record failed: {done.stderr[-400:]}")
    return times[0]


def run_trace_cmd(cmd: list[str], out: Path) -> float:
    done = subprocess.run([TRACE_CMD_HERE, "record", "-B", "rtbenchrec", "-e", "raw_syscalls", "-F", "-c",
                           "-o", str(out), "--", *cmd], capture_output=True, text=True, check=False)
    times = loop_times(done.stdout)
    if not times:
        raise RuntimeError(f"trace-cmd record failed: {done.stderr[-400:]}")
    return times[0]


def _timed(cmd: list[str], **kw) -> float:
    """Seconds of one command run to /dev/null."""
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, **kw)
    return time.perf_counter() - start


def decode_speed(path: Path) -> dict[str, float]:
    """Events per second: trace-cmd report, `rawtrace decode` (syscalls paired), `rawtrace decode
    --no-pair` (every event with its print fmt, the same lines as trace-cmd report shows), and rawtrace's
    decoding plus print fmt rendering in this process."""
    from rawtrace.parse.record import Event
    from rawtrace.parse.ringbuf import iter_pages
    from rawtrace.parse.tracedat import read_tracedat
    from rawtrace.parse.tracedat_write import extra_sections
    from rawtrace.printfmt import Symbols, TextRenderer, parse_printk_formats
    events, _lost, _size = file_figures(path)
    out = {"events": events}
    rawtrace = [sys.executable, "-m", "rawtrace", "decode"]
    out["trace-cmd report"] = events / _timed(["trace-cmd", "report", "-i", str(path)])
    out["rawtrace decode (paired)"] = events / _timed([*rawtrace, str(path)], cwd=ROOT)
    out["rawtrace decode --no-pair"] = events / _timed([*rawtrace, "--no-pair", str(path)], cwd=ROOT)
    start = time.perf_counter()
    dat = read_tracedat(path)
    buf = dat.buffer()
    layout = dat.page_layout(buf)
    decoders = layout.decoders(dat.formats())
    kallsyms, printk = extra_sections(dat)
    text = TextRenderer(parse_printk_formats(printk), Symbols.from_kallsyms(kallsyms))
    line_body = text.line_body
    with open(os.devnull, "w") as sink:
        for cpu in buf.cpus:
            lines = [line_body(e) for e in iter_pages(layout, dat.cpu_data(buf, cpu), cpu, decoders)
                     if e.__class__ is Event]
            sink.write("\n".join(lines))
    out["rawtrace print fmt (in process)"] = events / (time.perf_counter() - start)
    return out


def print_decode_speed(speed: dict[str, float]) -> None:
    """decode_speed()'s figures, and the speed ratios against trace-cmd report."""
    speed = dict(speed)
    print(f"decode of the trace-cmd file ({speed.pop('events')} events), events per second:")
    for name, rate in speed.items():
        print(f"  {name:<34} {rate:>10.0f}/s")
    for name in ("rawtrace decode --no-pair", "rawtrace print fmt (in process)"):
        print(f"{name} / trace-cmd report speed ratio: {speed[name] / speed['trace-cmd report']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    have_trace_cmd = shutil.which("trace-cmd") is not None and os.path.exists(TRACE_CMD_HERE)
    with tempfile.TemporaryDirectory(prefix="rtbenchrec-") as tmpdir:
        tmp = Path(tmpdir)
        target = tmp / "target"
        target.write_text("hello\n")
        cmd = build_workload(tmp) + [str(target), str(args.iterations)]
        if not cmd[0].endswith(".py"):
            cmd.insert(1, "open")
        files = {"rawtrace record": tmp / "rt.dat", "rawtrace record --no-spool": tmp / "rt-nospool.dat",
                 "rawtrace record (zstd)": tmp / "rt-zstd.dat", "trace-cmd record": tmp / "tc.dat"}
        modes = [("untraced", lambda: run_untraced(cmd)),
                 ("rawtrace record", lambda: run_rawtrace(cmd, files["rawtrace record"], [])),
                 ("rawtrace record --no-spool", lambda: run_rawtrace(cmd, files["rawtrace record --no-spool"],
                                                                      ["--no-spool"]))]
        if shutil.which("zstd"):
            modes.append(("rawtrace record (zstd)", lambda: run_rawtrace(cmd, files["rawtrace record (zstd)"],
                                                                         ["--compression", "zstd"])))
        if have_trace_cmd:
            modes.append(("trace-cmd record", lambda: run_trace_cmd(cmd, files["trace-cmd record"])))
        times: dict[str, list[float]] = {name: [] for name, _ in modes}
        figures: dict[str, list[tuple[int, int, int]]] = {}
        print(f"workload: {args.iterations} x (openat+read+close), {Path(cmd[0]).name}; median of {args.runs} "
              f"interleaved rounds; raw_syscalls of the command only (expect ~{6 * args.iterations} events)")
        for _ in range(args.runs):
            for name, run in modes:
                times[name].append(run())
                if name in files:
                    figures.setdefault(name, []).append(file_figures(files[name]))
        base = statistics.median(times["untraced"])
        for name, _ in modes:
            value = statistics.median(times[name])
            line = f"{name:<28} {value:7.3f} s  {value / base:5.2f}x"
            if name in figures:
                events = statistics.median(f[0] for f in figures[name])
                lost = statistics.median(f[1] for f in figures[name])
                size = statistics.median(f[2] for f in figures[name])
                line += f"   events {events:>9.0f}  lost {lost:>7.0f}  file {size / 2**20:6.1f} MiB"
            print(line)
        if have_trace_cmd:
            for name in ("rawtrace record", "rawtrace record --no-spool"):
                ratio = statistics.median(times[name]) / statistics.median(times["trace-cmd record"])
                print(f"{name} / trace-cmd record slowdown ratio: {ratio:.2f}")
            print_decode_speed(decode_speed(files["trace-cmd record"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
