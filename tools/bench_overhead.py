#!/usr/bin/env python3
"""Tracing overhead: a syscall-heavy workload untraced, under rawtrace, trace-cmd, strace -f and bpftrace.

The workload (tools/workload.c, built with cc into a temp dir; a Python loop if cc is missing) does
N x (openat + read + close) and prints its own loop time, so every mode is timed the same way. Each
tracer traces raw_syscalls system-wide, as `trace-cmd record -e raw_syscalls` does. Prints the median
loop time per mode and the slowdown against the untraced run; for rawtrace also the events it emitted,
the events it reported lost (never hidden: LOST lines plus the kernel's per-CPU overrun), the time it
needed after the workload to finish decoding (the spool lets it lag), and its CPU time per emitted event
(spooler child included; rawtrace runs with .pyc files, as an installed copy does). rawtrace modes: the
default (spooler child, decoder at nice 19), with --json and in text, and --json --no-spool (direct
reads, nice 19). Target: 150 k emitted lines (paired calls) per CPU-second. Missing peers are skipped.

Run as root:  flock /tmp/rawtrace-live-tests.lock python3 tools/bench_overhead.py [--iterations 200000]"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# trace-cmd record needs this wrapper on this kind of machine; it lives beside the checkout (../shared/tools).
TRACE_CMD_HERE = os.environ.get("RAWTRACE_TRACE_CMD_HERE") or str(ROOT.parent / "shared/tools/trace-cmd-here")

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


def workload_command(tmp: Path, iterations: int) -> list[str]:
    """The `open` workload (N x openat+read+close of a file in `tmp`), built there."""
    target = tmp / "target"
    target.write_text("hello\n")
    cmd = build_workload(tmp) + [str(target), str(iterations)]
    if not cmd[0].endswith(".py"):
        cmd.insert(1, "open")
    return cmd


def interleaved(modes: list, runs: int, errors: tuple = (RuntimeError,)) -> tuple[dict, dict]:
    """Run every (name, fn) mode once per round, `runs` rounds, so load from other processes hits them all
    alike. Returns ({name: loop times}, {name: why it was skipped})."""
    times: dict[str, list[float]] = {name: [] for name, _ in modes}
    skipped: dict[str, str] = {}
    for _ in range(runs):
        for name, run in modes:
            if name in skipped:
                continue
            try:
                times[name] += run()
            except errors as exc:
                skipped[name] = str(exc)[:200]
    return times, skipped


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


RAWTRACE_FIGURES: dict[str, list[dict]] = {}
# rawtrace runs with .pyc files, as an installed copy has them (pip compiles them): without the variable that
# stops Python from writing them, the first run writes them and the others use them.
RAWTRACE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_under_rawtrace(cmd: list[str], runs: int, extra: list[str], mode: str) -> list[float]:
    tracer = subprocess.Popen([sys.executable, "-m", "rawtrace", "trace", "raw_syscalls:*", *extra],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=RAWTRACE_ENV)
    first = tracer.stderr.readline()
    if not first.startswith("Tracing"):
        tracer.kill()
        raise RuntimeError(f"rawtrace did not start: {first}{tracer.stderr.read()}")
    time.sleep(0.3)
    try:
        times = run_plain(cmd, runs)
    finally:
        stopped = time.monotonic()
        tracer.send_signal(signal.SIGINT)
        err = tracer.stderr.read()
        # wait4 for the CPU time (it includes the reaped spooler child).
        _, status, usage = os.wait4(tracer.pid, 0)
        tracer.returncode = os.waitstatus_to_exitcode(status)
        drain = time.monotonic() - stopped
    summary = err.strip().splitlines()[-1] if err.strip() else ""
    m = re.match(r"(\d+) events, (\d+) lost", summary)
    if not m:
        raise RuntimeError(f"no summary from rawtrace: {summary}")
    events, lost = int(m.group(1)), int(m.group(2))
    overrun = sum(int(v) for v in re.findall(r"cpu\d+=(\d+)", summary))
    cpu = usage.ru_utime + usage.ru_stime
    RAWTRACE_FIGURES.setdefault(mode, []).append(
        {"events": events, "lost": lost, "overrun": overrun, "drain": drain,
         "us_per_event": cpu / events * 1e6 if events else 0.0})
    return times


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
    parser.add_argument("--skip", action="append", default=[], metavar="PEER",
                        help="leave a peer out (trace-cmd, strace, bpftrace); strace takes ~1 min per round")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rtbench-") as tmpdir:
        tmp = Path(tmpdir)
        cmd = workload_command(tmp, args.iterations)
        # Modes are interleaved round by round so that load from other processes hits them all alike.
        modes: list[tuple[str, object]] = [
            ("untraced", lambda: run_plain(cmd, 1)),
            ("rawtrace (spool)", lambda: run_under_rawtrace(cmd, 1, ["--json"], "rawtrace (spool)")),
            ("rawtrace (spool) text", lambda: run_under_rawtrace(cmd, 1, [], "rawtrace (spool) text")),
            ("rawtrace --no-spool", lambda: run_under_rawtrace(cmd, 1, ["--json", "--no-spool"],
                                                               "rawtrace --no-spool")),
        ]
        if shutil.which("trace-cmd") and os.path.exists(TRACE_CMD_HERE) and "trace-cmd" not in args.skip:
            modes.append(("trace-cmd record", lambda: run_under_trace_cmd(cmd, 1, tmp)))
        if shutil.which("strace") and "strace" not in args.skip:
            modes.append(("strace -f", lambda: run_plain(cmd, 1, ["strace", "-f", "-o", "/dev/null"])))
        if shutil.which("bpftrace") and "bpftrace" not in args.skip:
            modes.append(("bpftrace (count)", lambda: run_under_bpftrace(cmd, 1)))
        print(f"workload: {args.iterations} x (openat+read+close), {Path(cmd[0]).name}; "
              f"median of {args.runs} interleaved rounds")
        times, skipped = interleaved(modes, args.runs)
        base = statistics.median(times["untraced"])
        for name, _ in modes:
            if name in skipped:
                print(f"{name:<18} skipped: {skipped[name]}")
                continue
            value = statistics.median(times[name])
            spread = f"[{min(times[name]):.3f}-{max(times[name]):.3f}]"
            print(f"{name:<20} {value:7.3f} s {spread:>15}  {value / base:5.2f}x")
        print("rawtrace figures, median per run (events emitted / lost reported / kernel overrun; seconds "
              "from the workload's end to rawtrace's exit; CPU us per emitted event):")
        for mode, runs in RAWTRACE_FIGURES.items():
            def med(key, runs=runs):
                return statistics.median(r[key] for r in runs)
            lost_runs = ", ".join(str(r["lost"]) for r in runs)
            print(f"  {mode:<20} events {med('events'):>9.0f}  lost {med('lost'):>7.0f} (per run: {lost_runs})"
                  f"  overrun {med('overrun'):>7.0f}  drain {med('drain'):5.1f} s  {med('us_per_event'):5.1f} us/event"
                  f" ({1e3 / med('us_per_event'):.0f} k/CPU-s)")
        if times.get("trace-cmd record") and "trace-cmd record" not in skipped:
            for mode in ("rawtrace (spool)", "rawtrace (spool) text", "rawtrace --no-spool"):
                if mode in skipped:
                    continue
                ratio = statistics.median(times[mode]) / statistics.median(times["trace-cmd record"])
                print(f"{mode} / trace-cmd slowdown ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
