#!/usr/bin/env python3
"""Tracing overhead: a syscall-heavy workload untraced, under rawtrace, trace-cmd, strace -f and bpftrace.

The workload (tools/workload.c, built with cc into a temp dir; a Python loop if cc is missing) does
N x (openat + read + close) and prints its own loop time, so every mode is timed the same way. Each
tracer traces raw_syscalls system-wide, as `trace-cmd record -e raw_syscalls` does. Prints the median
loop time per mode and the slowdown against the untraced run. Missing peers are skipped.

Run as root:  flock /tmp/rawtrace-live-tests.lock python3 tools/bench_overhead.py [--iterations 200000]"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACE_CMD_HERE = "/work/shared/tools/trace-cmd-here"

PY_WORKLOAD = r"""
import os, sys, time
path, n = sys.argv[1], int(sys.argv[2])
t = time.monotonic()
for _ in range(n):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    os.read(fd, 64)
    os.close(fd)
print(f"{time.monotonic() - t:.6f}")
"""


def build_workload(tmp: Path) -> list[str]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        exe = tmp / "rtworkload"
        subprocess.run([cc, "-O2", "-o", str(exe), str(ROOT / "tools" / "workload.c")], check=True)
        return [str(exe)]
    script = tmp / "rtworkload.py"
    script.write_text(PY_WORKLOAD)
    return [sys.executable, str(script)]


def loop_times(output: str) -> list[float]:
    out = []
    for line in output.splitlines():
        try:
            out.append(float(line.strip()))
        except ValueError:
            pass
    return out


def run_plain(cmd: list[str], runs: int, prefix: list[str] | None = None) -> list[float]:
    times = []
    for _ in range(runs):
        done = subprocess.run((prefix or []) + cmd, capture_output=True, text=True, check=True)
        times += loop_times(done.stdout)
    return times


def run_under_rawtrace(cmd: list[str], runs: int, extra: list[str]) -> tuple[list[float], str]:
    tracer = subprocess.Popen([sys.executable, "-m", "rawtrace", "trace", "raw_syscalls:*", "--json", *extra],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = tracer.stderr.readline()
    if not first.startswith("Tracing"):
        tracer.kill()
        raise RuntimeError(f"rawtrace did not start: {first}{tracer.stderr.read()}")
    time.sleep(0.3)
    try:
        times = run_plain(cmd, runs)
    finally:
        tracer.send_signal(signal.SIGINT)
        _, err = tracer.communicate(timeout=600)
    return times, err.strip().splitlines()[-1] if err.strip() else ""


def run_under_trace_cmd(cmd: list[str], runs: int, tmp: Path) -> list[float]:
    loop = " ; ".join([" ".join(cmd)] * runs)
    done = subprocess.run([TRACE_CMD_HERE, "record", "-B", "rtbench", "-e", "raw_syscalls", "-o",
                           str(tmp / "tc.dat"), "--", "sh", "-c", loop],
                          capture_output=True, text=True, check=False)
    times = loop_times(done.stdout)
    if len(times) != runs:
        raise RuntimeError(f"trace-cmd failed: {done.stderr[-400:]}")
    return times


def run_under_bpftrace(cmd: list[str], runs: int) -> list[float]:
    times = []
    prog = ("tracepoint:raw_syscalls:sys_enter { @enter = count(); } "
            "tracepoint:raw_syscalls:sys_exit { @exit = count(); }")
    for _ in range(runs):
        done = subprocess.run(["bpftrace", "-e", prog, "-c", " ".join(cmd)], capture_output=True, text=True,
                              check=False)
        got = loop_times(done.stdout)
        if done.returncode != 0 or not got:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
        times += got[:1]
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rtbench-") as tmpdir:
        tmp = Path(tmpdir)
        target = tmp / "target"
        target.write_text("hello\n")
        cmd = build_workload(tmp) + [str(target), str(args.iterations)]
        if not cmd[0].endswith(".py"):
            cmd.insert(1, "open")
        # Modes are interleaved round by round so that load from other processes hits them all alike.
        modes: list[tuple[str, object]] = [
            ("untraced", lambda: run_plain(cmd, 1)),
            ("rawtrace (all)", lambda: run_under_rawtrace(cmd, 1, [])),
            ("rawtrace --comm", lambda: run_under_rawtrace(cmd, 1, ["--comm", Path(cmd[0]).name[:15]])),
        ]
        if shutil.which("trace-cmd") and os.path.exists(TRACE_CMD_HERE):
            modes.append(("trace-cmd record", lambda: run_under_trace_cmd(cmd, 1, tmp)))
        if shutil.which("strace"):
            modes.append(("strace -f", lambda: run_plain(cmd, 1, ["strace", "-f", "-o", "/dev/null"])))
        if shutil.which("bpftrace"):
            modes.append(("bpftrace (count)", lambda: run_under_bpftrace(cmd, 1)))
        times: dict[str, list[float]] = {name: [] for name, _ in modes}
        notes: dict[str, str] = {}
        skipped: dict[str, str] = {}
        print(f"workload: {args.iterations} x (openat+read+close), {Path(cmd[0]).name}; "
              f"median of {args.runs} interleaved rounds")
        for _ in range(args.runs):
            for name, run in modes:
                if name in skipped:
                    continue
                try:
                    got = run()
                except RuntimeError as exc:
                    skipped[name] = str(exc)
                    continue
                if isinstance(got, tuple):
                    got, notes[name] = got
                times[name] += got
        base = statistics.median(times["untraced"])
        for name, _ in modes:
            if name in skipped:
                print(f"{name:<18} skipped: {skipped[name]}")
                continue
            value = statistics.median(times[name])
            spread = f"[{min(times[name]):.3f}-{max(times[name]):.3f}]"
            print(f"{name:<18} {value:7.3f} s {spread:>15}  {value / base:5.2f}x  {notes.get(name, '')}")
        if times.get("trace-cmd record") and "trace-cmd record" not in skipped:
            ratio = statistics.median(times["rawtrace (all)"]) / statistics.median(times["trace-cmd record"])
            print(f"rawtrace / trace-cmd slowdown ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
