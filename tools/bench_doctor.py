#!/usr/bin/env python3
"""Benchmark `rawtrace doctor`'s own cost: its wall time minus a bare `python3 -c pass`, same run.

Runs are interleaved (one of each command per round) so machine noise hits all of them alike, and the
best and median of N rounds are printed. Bytecode is cached under a temporary PYTHONPYCACHEPREFIX (an
installed rawtrace has .pyc files); --cold measures with compilation on every run instead.
The in-process cost of `preflight()` (what every tracing command pays) is timed separately.

    python3 tools/bench_doctor.py [-n 30] [--cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 30.0

COMMANDS = {
    "python3 -c pass": [sys.executable, "-c", "pass"],
    "rawtrace --version": [sys.executable, "-m", "rawtrace", "--version"],
    "rawtrace doctor --json": [sys.executable, "-m", "rawtrace", "doctor", "--json"],
    "rawtrace doctor": [sys.executable, "-m", "rawtrace", "doctor"],
}


def _env(cold: bool, cache: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if cold:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
    return env


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, check=False, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode not in (0, 1, 2):
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-300:]}")
    return elapsed


def _preflight_us(rounds: int) -> tuple[float, float]:
    sys.path.insert(0, str(REPO))
    from rawtrace.doctor import preflight
    from rawtrace.host import Host
    needs = {"tracefs", "syscalls", "tracepoints", "uprobes"}
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        preflight(Host(), needs)  # a fresh Host each time: nothing cached between calls
        times.append((time.perf_counter() - start) * 1e6)
    return min(times), statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=30, help="rounds (default 30)")
    parser.add_argument("--cold", action="store_true", help="no bytecode cache: compile on every run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rawtrace-bench-pycache-") as cache:
        env = _env(args.cold, cache)
        for argv in COMMANDS.values():  # warm the page cache and, unless --cold, the bytecode cache
            _time(argv, env)
        samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.rounds):
            for name, argv in COMMANDS.items():
                samples[name].append(_time(argv, env))
    base = samples["python3 -c pass"]
    base_best, base_median = min(base), statistics.median(base)
    mode = "cold (compiling every run)" if args.cold else "bytecode cached"
    print(f"{args.rounds} interleaved rounds, {mode}, {sys.executable} {sys.version.split()[0]}")
    print(f"{'command':<26}{'best ms':>9}{'median ms':>11}{'own best':>10}{'own median':>12}")
    for name, values in samples.items():
        best, median = min(values), statistics.median(values)
        own = "" if name == "python3 -c pass" else f"{best - base_best:>10.1f}{median - base_median:>12.1f}"
        print(f"{name:<26}{best:>9.1f}{median:>11.1f}{own}")
    for stat, base_value in (("best", base_best), ("median", base_median)):
        pick = min if stat == "best" else statistics.median
        own = max(pick(samples["rawtrace doctor --json"]), pick(samples["rawtrace doctor"])) - base_value
        verdict = "met" if own <= TARGET_MS else "MISSED"
        print(f"doctor's own cost ({stat}, worse of text/--json): {own:.1f} ms; target <= {TARGET_MS:.0f} ms: "
              f"{verdict}")
    print(f"load average while measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          "(medians are only meaningful on an idle machine)")
    best_us, median_us = _preflight_us(max(args.rounds * 10, 100))
    print(f"preflight(tracefs, syscalls, tracepoints, uprobes) in-process: best {best_us:.0f} us, "
          f"median {median_us:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
