#!/usr/bin/env python3
"""Overhead of run-queue latency tracing: a scheduler-heavy workload untraced and under rawtrace sched,
bpftrace's runqlat.bt and perf sched record, interleaved round by round in one run.

The workload is `perf bench sched messaging` (groups of senders and receivers over sockets: a context
switch per message), or a Python pipe ping-pong when perf is missing; its own reported time is used.
Prints the median time per mode and the slowdown against the untraced run, and for each tracer what it
reported lost: rawtrace's summary (lost events, and waits dropped at a gap), bpftrace's "Lost N events",
perf's lost chunks/samples. rawtrace also reports the waits it measured and its CPU time per wait.

Run as root:  flock /tmp/rawtrace-live-tests.lock python3 tools/bench_sched.py [--groups 10 --loops 200]"""

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
RUNQLAT_BT = "/usr/sbin/runqlat.bt"
# runqlat.bt's own probes written against the tracepoint fields, for machines where the installed script
# cannot compile (it includes <linux/sched.h>, which needs kernel headers or BTF). Same logic, including
# its `prev_state == TASK_RUNNING` test.
RUNQLAT_INLINE = ("tracepoint:sched:sched_wakeup, tracepoint:sched:sched_wakeup_new { @qtime[args->pid] = nsecs; } "
                  "tracepoint:sched:sched_switch { if (args->prev_state == 0) { @qtime[args->prev_pid] = nsecs; } "
                  "$ns = @qtime[args->next_pid]; if ($ns) { @usecs = hist((nsecs - $ns) / 1000); } "
                  "delete(@qtime[args->next_pid]); }")

PINGPONG = r"""
import os, sys, time
n = int(sys.argv[1])
a, b = os.pipe(), os.pipe()
t = time.monotonic()
if os.fork() == 0:
    for _ in range(n):
        os.read(a[0], 1); os.write(b[1], b"x")
    os._exit(0)
for _ in range(n):
    os.write(a[1], b"x"); os.read(b[0], 1)
os.wait()
print(f"Total time: {time.monotonic() - t:.3f} [sec]")
"""


def workload(args) -> list[str]:
    if shutil.which("perf") and not args.pingpong:
        return ["perf", "bench", "sched", "messaging", "-g", str(args.groups), "-l", str(args.loops)]
    return [sys.executable, "-c", PINGPONG, str(args.loops * 500)]


def total_time(text: str) -> float:
    match = re.search(r"Total time:\s*([0-9.]+)", text)
    if not match:
        raise RuntimeError(f"no time in the workload's output: {text[-300:]!r}")
    return float(match.group(1))


def run_plain(cmd: list[str]) -> float:
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return total_time(done.stdout + done.stderr)


FIGURES: dict[str, list[str]] = {}


def note(mode: str, text: str) -> None:
    FIGURES.setdefault(mode, []).append(text)


def background(cmd: list[str], ready: str, timeout: float = 60.0, quiet_stdout: bool = False,
               **kwargs) -> subprocess.Popen:
    """Start a tracer and return once its output (stderr only with quiet_stdout) shows `ready`."""
    if quiet_stdout:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)
        stream = proc.stderr
    else:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
        stream = proc.stdout
    deadline = time.monotonic() + timeout
    seen = ""
    while ready not in seen:
        line = stream.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"did not start: {seen[-300:]!r}")
        seen += line
    return proc


def run_under_rawtrace(cmd: list[str]) -> float:
    tracer = background([sys.executable, "-m", "rawtrace", "sched", "-P"], "Tracing", cwd=ROOT, quiet_stdout=True)
    time.sleep(0.3)
    try:
        took = run_plain(cmd)
    finally:
        tracer.send_signal(signal.SIGINT)
        err = tracer.stderr.read()
        # wait4 for the CPU time (it includes the reaped spooler child).
        _, _status, usage = os.wait4(tracer.pid, 0)
    summary = [line for line in err.splitlines() if re.search(r"\d+ waits, \d+ lost", line)]
    if not summary:
        raise RuntimeError(f"no summary from rawtrace: {err[-300:]!r}")
    waits = int(re.search(r"(\d+) waits", summary[-1]).group(1))
    cpu = usage.ru_utime + usage.ru_stime
    note("rawtrace sched", summary[-1].removeprefix("rawtrace: ") +
         f"; CPU {cpu:.2f} s = {cpu / max(waits, 1) * 1e6:.1f} us per wait")
    return took


BPFTRACE_PROGRAM: list[str] = [RUNQLAT_BT]


def run_under_bpftrace(cmd: list[str]) -> float:
    try:
        tracer = background(["bpftrace", *BPFTRACE_PROGRAM], "Attaching")
    except RuntimeError:
        if BPFTRACE_PROGRAM != [RUNQLAT_BT]:
            raise
        BPFTRACE_PROGRAM[:] = ["-e", RUNQLAT_INLINE]
        note("bpftrace runqlat.bt", f"{RUNQLAT_BT} does not compile here (kernel headers/BTF missing): its "
                                    "probes run inline instead")
        tracer = background(["bpftrace", *BPFTRACE_PROGRAM], "Attaching")
    try:
        took = run_plain(cmd)
    finally:
        tracer.send_signal(signal.SIGINT)
        out, _ = tracer.communicate(timeout=60)
    lost = re.findall(r"Lost (\d+) events", out)
    note("bpftrace runqlat.bt", f"lost {sum(map(int, lost))} events (bpftrace's own report)")
    return took


def run_under_perf(cmd: list[str], tmp: Path) -> float:
    done = subprocess.run(["perf", "sched", "record", "-o", str(tmp / "perf.data"), "--", *cmd],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "perf failed")
    lost = re.findall(r"(?:lost|LOST)\s+(\d+)|(\d+)\s+(?:chunks|samples) LOST", done.stderr)
    count = sum(int(a or b) for a, b in lost)
    wrote = re.search(r"Captured and wrote ([0-9.]+ MB)", done.stderr)
    note("perf sched record", f"lost {count} (perf's warnings)" + (f", wrote {wrote.group(1)}" if wrote else ""))
    return total_time(done.stdout + done.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=4, help="perf bench sched messaging -g (default 4)")
    parser.add_argument("--loops", type=int, default=100, help="messaging -l (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--pingpong", action="store_true", help="the Python pipe ping-pong even if perf exists")
    parser.add_argument("--skip", action="append", default=[], metavar="PEER", help="bpftrace or perf")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    cmd = workload(args)
    with tempfile.TemporaryDirectory(prefix="rtbench-sched-") as tmpdir:
        tmp = Path(tmpdir)
        modes = [("untraced", lambda: run_plain(cmd)), ("rawtrace sched", lambda: run_under_rawtrace(cmd))]
        if shutil.which("bpftrace") and os.path.exists(RUNQLAT_BT) and "bpftrace" not in args.skip:
            modes.append(("bpftrace runqlat.bt", lambda: run_under_bpftrace(cmd)))
        if shutil.which("perf") and "perf" not in args.skip:
            modes.append(("perf sched record", lambda: run_under_perf(cmd, tmp)))
        times: dict[str, list[float]] = {name: [] for name, _ in modes}
        skipped: dict[str, str] = {}
        print(f"workload: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:6]))}; "
              f"median of {args.runs} interleaved rounds")
        for _ in range(args.runs):
            for name, run in modes:
                if name in skipped:
                    continue
                try:
                    times[name].append(run())
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    skipped[name] = str(exc)
        base = statistics.median(times["untraced"])
        for name, _ in modes:
            if name in skipped:
                print(f"{name:<20} skipped: {skipped[name]}")
                continue
            value = statistics.median(times[name])
            print(f"{name:<20} {value:7.3f} s [{min(times[name]):.3f}-{max(times[name]):.3f}]  {value / base:5.2f}x")
        for name, lines in FIGURES.items():
            print(f"{name}: " + " | ".join(lines))
        peers = [n for n in ("bpftrace runqlat.bt", "perf sched record") if times.get(n) and n not in skipped]
        if times["rawtrace sched"] and "rawtrace sched" not in skipped:
            mine = statistics.median(times["rawtrace sched"]) / base
            for peer in peers:
                ratio = mine / (statistics.median(times[peer]) / base)
                print(f"rawtrace sched slowdown / {peer} slowdown: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
