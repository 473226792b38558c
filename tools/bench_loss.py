#!/usr/bin/env python3
"""Event loss: the highest event rate `rawtrace trace` sustains without loss on the default buffer, and the
exact losses above it, checked against the kernel's per-CPU overrun counts.

A paced C workload (tools/workload.c `rate`) makes RATE getppid() calls per second for a few seconds;
`rawtrace trace syscalls:sys_enter_getppid --comm <workload> --json` records them. For each rate the
script prints calls made, events received, losses reported (LOST lines with counts from sub-buffer flags,
sub-buffers flagged "lost, count not stored" (?pages), and the end-of-run per-CPU stats cross-check that
supplies the exact total), the kernel's overrun sum, and whether events + lost == calls exactly.

Run as root:  flock /tmp/rawtrace-live-tests.lock python3 tools/bench_loss.py [--rates 20000,50000,...]"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_rate(exe: str, rate: int, seconds: float, extra: list[str]) -> dict:
    name = Path(exe).name[:15]
    tracer = subprocess.Popen([sys.executable, "-m", "rawtrace", "trace", "syscalls:sys_enter_getppid",
                               "--comm", name, "--json", "--no-pair", *extra], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tracer.stderr.readline()
    if not first.startswith("Tracing"):
        tracer.kill()
        raise SystemExit(f"rawtrace did not start: {first}{tracer.stderr.read()}")
    time.sleep(0.3)
    done = subprocess.run([exe, "rate", str(rate), str(seconds)], capture_output=True, text=True, check=True)
    calls = int(done.stdout.strip())
    time.sleep(0.5)
    tracer.send_signal(signal.SIGINT)
    out, err = tracer.communicate(timeout=600)
    events = lost_page = lost_stats = unknown = 0
    for line in out.splitlines()[1:]:
        item = json.loads(line)
        if "lost" in item:
            if item["lost"] < 0:
                unknown += 1
            elif item.get("source") == "stats":
                lost_stats += item["lost"]
            else:
                lost_page += item["lost"]
        elif item["comm"] == name:
            events += 1
    summary = err.strip().splitlines()[-1] if err.strip() else ""
    overrun = sum(int(v) for v in re.findall(r"cpu\d+=(\d+)", summary))
    return {"rate": rate, "calls": calls, "events": events, "lost_page": lost_page, "lost_stats": lost_stats,
            "unknown_pages": unknown, "kernel_overrun": overrun, "summary": summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10000,25000,50000,100000,200000,400000,800000,1600000,3200000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--buffer-kb", type=int, help="rawtrace --buffer-kb (default: the kernel's default)")
    parser.add_argument("--nice", type=int, help="rawtrace --nice (default: rawtrace's default, 19)")
    parser.add_argument("--no-spool", action="store_true", help="rawtrace --no-spool (direct reads)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print("needs cc to build tools/workload.c", file=sys.stderr)
        return 2
    extra = ["--buffer-kb", str(args.buffer_kb)] if args.buffer_kb else []
    if args.nice is not None:
        extra += ["--nice", str(args.nice)]
    if args.no_spool:
        extra += ["--no-spool"]
    with tempfile.TemporaryDirectory(prefix="rtloss-") as tmp:
        exe = str(Path(tmp) / "rtloadgen")
        subprocess.run([cc, "-O2", "-o", exe, str(ROOT / "tools" / "workload.c")], check=True)
        print(f"{args.seconds:.0f} s per rate; buffer: {args.buffer_kb or 'default'} KiB per CPU; "
              f"nice: {19 if args.nice is None else args.nice}; {'direct reads' if args.no_spool else 'spool'}")
        print(f"{'rate/s':>8} {'calls':>9} {'events':>9} {'lost(page)':>10} {'lost(stats)':>11} "
              f"{'?pages':>6} {'overrun':>8} {'exact':>6}")
        best = 0
        for rate in [int(r) for r in args.rates.split(",")]:
            r = one_rate(exe, rate, args.seconds, extra)
            lost = r["lost_page"] + r["lost_stats"]
            exact = r["events"] + lost == r["calls"]
            print(f"{rate:>8} {r['calls']:>9} {r['events']:>9} {r['lost_page']:>10} {r['lost_stats']:>11} "
                  f"{r['unknown_pages']:>6} {r['kernel_overrun']:>8} {'yes' if exact else 'NO':>6}", flush=True)
            if lost == 0 and r["events"] == r["calls"]:
                # The rate the workload reached (a paced loop may fall short of the one asked for).
                best = max(best, min(rate, int(r["calls"] / args.seconds)))
        print(f"highest rate without loss: {best}/s (calls made per second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
