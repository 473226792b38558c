#!/usr/bin/env python3
"""Workload slowdown under `rawtrace syscount` against bpftrace's syscount.bt, `perf trace -s` and
`strace -c -f`, measured in one run.

The workload is tools/workload.c's `open` loop (N x openat+read+close, built with cc; it prints its own
loop time, so every mode is timed the same way). rawtrace and bpftrace count system-wide (as their
syscount tools do); perf trace -s and strace -c -f follow the workload only (they cannot do otherwise
at this cost). Modes are interleaved round by round; prints the median loop time and the slowdown
against the untraced run, rawtrace's ratio to each peer, and what rawtrace lost.

Run as root:  flock /tmp/rawtrace-live-tests.lock python3 tools/bench_syscount.py [--iterations 100000]
"""

from __future__ import annotations

import argparse
import json
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
sys.path.insert(0, str(ROOT / "tools"))
from bench_overhead import interleaved, run_plain, workload_command

LOST: list[int] = []


def under_rawtrace(cmd: list[str]) -> list[float]:
    tracer = subprocess.Popen([sys.executable, "-m", "rawtrace", "syscount", "--json"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tracer.stderr.readline()
    if not first.startswith("Tracing"):
        tracer.kill()
        raise RuntimeError(f"rawtrace did not start: {first}{tracer.stderr.read()}")
    time.sleep(0.3)
    try:
        times = run_plain(cmd, 1)
    finally:
        tracer.send_signal(signal.SIGINT)
        out, _err = tracer.communicate(timeout=600)
    summary = json.loads(out.splitlines()[-1])
    LOST.append(summary["lost"])
    return times


def under_bpftrace(cmd: list[str]) -> list[float]:
    script = "/usr/sbin/syscount.bt"
    if not os.path.exists(script):
        raise RuntimeError("no /usr/sbin/syscount.bt")
    tracer = subprocess.Popen(["bpftrace", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tracer.stdout.readline()
    if "Attaching" not in first and "Counting" not in first:
        tracer.kill()
        raise RuntimeError(f"bpftrace did not start: {first.strip()} {tracer.stderr.read().strip()[-200:]}")
    time.sleep(0.5)
    try:
        times = run_plain(cmd, 1)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.communicate(timeout=120)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip", action="append", default=[], metavar="PEER",
                        help="leave a peer out: bpftrace, perf, strace")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rtbench-") as tmpdir:
        cmd = workload_command(Path(tmpdir), args.iterations)
        modes = [("untraced", lambda: run_plain(cmd, 1)), ("rawtrace syscount", lambda: under_rawtrace(cmd))]
        if shutil.which("bpftrace") and "bpftrace" not in args.skip:
            modes.append(("bpftrace syscount.bt", lambda: under_bpftrace(cmd)))
        if shutil.which("perf") and "perf" not in args.skip:
            modes.append(("perf trace -s", lambda: run_plain(cmd, 1, ["perf", "trace", "-s", "-o", "/dev/null", "--"])))
        if shutil.which("strace") and "strace" not in args.skip:
            modes.append(("strace -c -f", lambda: run_plain(cmd, 1, ["strace", "-c", "-f", "-o", "/dev/null"])))
        times, skipped = interleaved(modes, args.runs, (RuntimeError, subprocess.CalledProcessError))
        print(f"workload: {args.iterations} x (openat+read+close); median of {args.runs} interleaved rounds")
        base = statistics.median(times["untraced"])
        ours = statistics.median(times["rawtrace syscount"])
        for name, _ in modes:
            if name in skipped:
                print(f"  {name:<22} skipped: {skipped[name]}")
                continue
            value = statistics.median(times[name])
            ratio = "" if name in ("untraced", "rawtrace syscount") else f"   rawtrace / this: {ours / value:.2f}"
            print(f"  {name:<22} {value:7.3f} s  {value / base:5.2f}x{ratio}")
        print(f"rawtrace events lost per run: {LOST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
