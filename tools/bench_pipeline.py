#!/usr/bin/env python3
"""The event pipeline over a recording: CPU time per event of rawtrace's tools against `trace-cmd report`.

Over one trace.dat (default: the shared 1.9 M-event raw_syscalls capture), in interleaved rounds:
  * `trace-cmd report -i FILE > /dev/null` (it only prints);
  * `rawtrace syscount -i FILE` (count, errors, latency per syscall);
  * `rawtrace decode FILE --json` and `rawtrace decode FILE` (paired syscall lines) > /dev/null;
  * `rawtrace decode --no-pair FILE` (every event rendered by its print fmt, as trace-cmd report does).
Each is a whole command (start-up, decompression, decoding, output), timed by wait4 (CPU of the process
and its children: the zstd program included), with .pyc files written and used as an installed copy
would. Prints best-of-N CPU seconds, events per CPU-second,
paired lines per CPU-second for decode, and the ratio syscount / trace-cmd (target: trace-cmd's CPU
time at least 1.5 x syscount's) and decode lines per CPU-second (target: 150 k).

    python3 tools/bench_pipeline.py [--file F] [-n 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "data" / "raw_syscalls_1905722ev.dat"
# Timed with .pyc files, as an installed rawtrace has them (pip compiles them): without the variable that
# stops Python from writing them, the first round writes them and best-of-N takes a later one.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> tuple[float, float, int]:
    """(wall s, CPU s with children, lines of output) of one command with stdout counted, not kept."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
    lines = 0
    while True:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            break
        lines += chunk.count(b"\n")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return wall, usage.ru_utime + usage.ru_stime, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=DEFAULT)
    parser.add_argument("-n", "--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.file.is_file():
        print(f"no recording at {args.file} (pass --file)", file=sys.stderr)
        return 2
    events = int("".join(ch for ch in args.file.stem.split("_")[-1] if ch.isdigit()) or 0)
    py = sys.executable
    modes = {
        "rawtrace syscount -i": [py, "-m", "rawtrace", "syscount", "-i", str(args.file)],
        "rawtrace decode --json": [py, "-m", "rawtrace", "decode", str(args.file), "--json"],
        "rawtrace decode (text)": [py, "-m", "rawtrace", "decode", str(args.file)],
        "rawtrace decode --no-pair": [py, "-m", "rawtrace", "decode", "--no-pair", str(args.file)],
    }
    if shutil.which("trace-cmd"):
        modes = {"trace-cmd report -i": ["trace-cmd", "report", "-i", str(args.file)], **modes}
    best: dict[str, tuple[float, float, int]] = {}
    for _ in range(args.rounds):
        for name, cmd in modes.items():
            got = timed(cmd)
            if name not in best or got[1] < best[name][1]:
                best[name] = got
    print(f"{args.file.name}: {events or '?'} events; best of {args.rounds} interleaved rounds (CPU incl. children)")
    for name, (wall, cpu, lines) in best.items():
        rate = f"{events / cpu / 1e3:8.0f} k events/CPU-s" if events else ""
        extra = f"  {lines / cpu / 1e3:6.0f} k lines/CPU-s ({lines} lines)" \
            if name.startswith("rawtrace decode") and "--no-pair" not in name else ""
        print(f"  {name:<24} wall {wall:6.2f} s  CPU {cpu:6.2f} s  {rate}{extra}")
    if "trace-cmd report -i" in best:
        ratio = best["trace-cmd report -i"][1] / best["rawtrace syscount -i"][1]
        print(f"syscount is {ratio:.2f}x as fast as trace-cmd report (CPU; target >= 1.5)")
        ratio = best["trace-cmd report -i"][1] / best["rawtrace decode --no-pair"][1]
        print(f"decode --no-pair (each event by its print fmt) is {ratio:.2f}x as fast as trace-cmd report "
              "(CPU; target >= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
