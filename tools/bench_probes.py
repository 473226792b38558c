#!/usr/bin/env python3
"""Benchmark probe set-up: symbol → uprobe definition, and a live create + remove, against perf and bpftrace.

Command runs are interleaved (one of each per round) so machine noise hits all alike; best and median of
N rounds are printed, with rawtrace's own cost (its time minus a bare `python3 -c pass`) and ratios
against the peers measured in the same run. A peer that is not installed is skipped. The live part
(root, tracefs) holds /tmp/rawtrace-live-tests.lock and leaves no probe behind.

    python3 tools/bench_probes.py [-n 15] [--no-live]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = "uprobe:libc:openat path=arg2:ustring"


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, check=False, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-300:]}")
    return elapsed


def _summary(times: list[float]) -> tuple[float, float]:
    return min(times), statistics.median(times)


def resolution(rounds: int, libc: str) -> None:
    cache = tempfile.mkdtemp(prefix="rawtrace-bench-pyc-")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONPYCACHEPREFIX=cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)     # measure with .pyc files, as an installed rawtrace has
    commands = {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        "rawtrace probes --show": [sys.executable, "-m", "rawtrace", "probes", "--show", SPEC],
        "rawtrace probes --json (listing)": [sys.executable, "-m", "rawtrace", "probes", "--json"],
    }
    if shutil.which("perf"):
        commands["perf probe -n -x libc openat"] = ["perf", "probe", "-q", "-n", "-x", libc, "openat"]
    if shutil.which("bpftrace"):
        commands["bpftrace -l uprobe:libc:openat"] = ["bpftrace", "-l", f"uprobe:{libc}:openat"]
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():
        _time(argv, env)                        # warm caches (and the .pyc files)
    for _ in range(rounds):
        for name, argv in commands.items():
            times[name].append(_time(argv, env))
    shutil.rmtree(cache, ignore_errors=True)
    print(f"symbol -> definition, {rounds} interleaved rounds (ms):")
    for name, values in times.items():
        best, median = _summary(values)
        print(f"  {name:<34} best {best:7.1f}  median {median:7.1f}")
    base = statistics.median(times["python3 -c pass"])
    ours = statistics.median(times["rawtrace probes --show"])
    print(f"  rawtrace own cost (median - python3 -c pass): {ours - base:.1f} ms")
    listing = statistics.median(times["rawtrace probes --json (listing)"])
    print(f"  rawtrace probes listing own cost: {listing - base:.1f} ms")
    for name in commands:
        if not name.startswith(("python3", "rawtrace")):
            print(f"  ratio rawtrace / {name}: {ours / statistics.median(times[name]):.2f}")


def in_process(rounds: int) -> None:
    code = ("import time; t = time.perf_counter(); from rawtrace.probes import ProbeSpec, resolve; "
            f"r = resolve(ProbeSpec.parse({SPEC!r})); print((time.perf_counter() - t) * 1000)")
    cache = tempfile.mkdtemp(prefix="rawtrace-bench-pyc-")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONPYCACHEPREFIX=cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)   # write .pyc
    values = []
    for _ in range(rounds):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
        values.append(float(out.stdout))
    shutil.rmtree(cache, ignore_errors=True)
    best, median = _summary(values)
    print(f"resolve() in a fresh interpreter incl. imports (ms): best {best:.1f}  median {median:.1f}")


def live(rounds: int, libc: str) -> None:
    tracefs = Path("/sys/kernel/tracing")
    if os.geteuid() != 0 or not (tracefs / "uprobe_events").exists():
        print("live create+remove: skipped (needs root and uprobe_events)")
        return
    sys.path.insert(0, str(REPO))
    from rawtrace.probes import ProbeSpec, resolve, run_group
    from rawtrace.tracefs.dynevents import DynamicEvents
    with open("/tmp/rawtrace-live-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = resolve(ProbeSpec.parse(SPEC))
        dyn = DynamicEvents(tracefs)
        ours = []
        for _ in range(rounds):
            start = time.perf_counter()
            dyn.create(probe, run_group(), "bench")
            dyn.remove(run_group(), "bench")
            ours.append((time.perf_counter() - start) * 1000)
        best, median = _summary(ours)
        print(f"live uprobe create+remove, in process (ms): best {best:.2f}  median {median:.2f}")
        existing = (tracefs / "uprobe_events").read_text()
        if not shutil.which("perf") or "probe_libc/" in existing:
            print("  perf probe: skipped (not installed, or a probe_libc group already exists)")
            return
        theirs = []
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run(["perf", "probe", "-q", "-x", libc, "openat"], check=True, capture_output=True)
            subprocess.run(["perf", "probe", "-q", "-d", "probe_libc:openat"], check=True, capture_output=True)
            theirs.append((time.perf_counter() - start) * 1000)
        pbest, pmedian = _summary(theirs)
        print(f"  perf probe -x libc openat + perf probe -d (ms): best {pbest:.1f}  median {pmedian:.1f}")
        print(f"  ratio perf / rawtrace (median): {pmedian / median:.0f}x (perf includes its process start)")
        assert (tracefs / "uprobe_events").read_text() == existing, "a benchmark probe was left behind"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--no-live", action="store_true", help="skip the live create+remove part")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from rawtrace.elf import resolve_target
    from rawtrace.host import Host
    libc = resolve_target("libc", Host())
    resolution(args.n, libc)
    in_process(args.n)
    if not args.no_live:
        live(args.n, libc)


if __name__ == "__main__":
    main()
