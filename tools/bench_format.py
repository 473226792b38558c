#!/usr/bin/env python3
"""Time `rawtrace format` against peers that show an event's format, and the whole-kernel parse.

Measured in one run, interleaved so that machine noise hits every command alike (best and median wall
times of N runs):
  * `rawtrace format sys_enter_open` against `bpftrace -lv tracepoint:syscalls:sys_enter_open`,
    `trace-cmd list -e syscalls:sys_enter_open -F` and a bare `python3 -c pass`; rawtrace's own cost is
    its time minus the bare interpreter's (target: <= 20 ms);
  * `rawtrace format '*:*' --json`: total time (target: < 0.5 s) and the number of events it printed;
  * `rawtrace events` (every event with its ID) for reference.
Peers that are not installed are skipped. Needs a readable tracefs (root).

  tools/bench_format.py [-n 15] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OWN_TARGET_MS = 20.0
ALL_TARGET_MS = 500.0


def commands() -> list[tuple[str, list[str]]]:
    py = sys.executable
    out = [
        ("python3 -c pass", [py, "-c", "pass"]),
        ("rawtrace format sys_enter_open", [py, "-m", "rawtrace", "format", "sys_enter_open"]),
        ("rawtrace format '*:*' --json", [py, "-m", "rawtrace", "format", "*:*", "--json"]),
        ("rawtrace events", [py, "-m", "rawtrace", "events"]),
    ]
    if shutil.which("bpftrace"):
        out.append(
            (
                "bpftrace -lv tracepoint:syscalls:sys_enter_open",
                ["bpftrace", "-lv", "tracepoint:syscalls:sys_enter_open"],
            )
        )
    if shutil.which("trace-cmd"):
        out.append(
            (
                "trace-cmd list -e syscalls:sys_enter_open -F",
                ["trace-cmd", "list", "-e", "syscalls:sys_enter_open", "-F"],
            )
        )
    return out


def time_once(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd="/", check=False
    )
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="runs per command (default 15)")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile every module on every run, as a checkout with PYTHONDONTWRITEBYTECODE=1 does",
    )
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    pycache = None
    if args.no_bytecode_cache:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        # An installed package has compiled .pyc files; keep ours in a temporary directory, not the checkout.
        pycache = tempfile.mkdtemp(prefix="rawtrace-bench-pycache-")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    try:
        cmds = commands()
        for _label, argv in cmds:  # warm the page cache and the bytecode cache
            time_once(argv, env)
        samples: dict[str, list[float]] = {label: [] for label, _ in cmds}
        for _ in range(args.n):
            for label, argv in cmds:
                samples[label].append(time_once(argv, env))
        everything = subprocess.run(
            [sys.executable, "-m", "rawtrace", "format", "*:*", "--json"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        count = len(json.loads(everything))
    finally:
        if pycache:
            shutil.rmtree(pycache, ignore_errors=True)

    best = {label: min(values) for label, values in samples.items()}
    median = {label: statistics.median(values) for label, values in samples.items()}
    bare = best["python3 -c pass"]
    one = best["rawtrace format sys_enter_open"]
    print(f"{'command':<52} {'best ms':>8} {'median ms':>10} {'vs rawtrace':>12}")
    for label in samples:
        ratio = f"{best[label] / one:.2f}x" if label != "rawtrace format sys_enter_open" else "1.00x"
        print(f"{label:<52} {best[label]:8.1f} {median[label]:10.1f} {ratio:>12}")
    print()
    own = one - bare
    print(
        f"rawtrace format sys_enter_open own cost: {own:.1f} ms above python3 -c pass "
        f"(target <= {OWN_TARGET_MS:.0f} ms): {'ok' if own <= OWN_TARGET_MS else 'OVER'}"
    )
    total = best["rawtrace format '*:*' --json"]
    print(
        f"rawtrace format '*:*' --json: {total:.0f} ms for {count} events "
        f"({total / max(count, 1) * 1000:.0f} us/event; target < {ALL_TARGET_MS:.0f} ms): "
        f"{'ok' if total < ALL_TARGET_MS else 'OVER'}"
    )
    print(
        f"bytecode cache: {'off (PYTHONDONTWRITEBYTECODE=1)' if args.no_bytecode_cache else 'on'}; "
        f"{args.n} runs each; ratios are best-time ratios (peer / rawtrace format sys_enter_open)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
