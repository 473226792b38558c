#!/usr/bin/env python3
"""The clean-up campaign: many runs of `rawtrace trace` under a syscall flood, ended every way there is.

Per round and exit path — the -d deadline, SIGINT, SIGTERM and SIGHUP at a random moment, every third
run with a uprobe as well — it checks afterwards: no instance, probe, spool directory or child process
left; no traceback; the exit status; and how long rawtrace took after its deadline or signal (the
drain it reports; target: within 2 s of deadline + reported drain). Then kill -9 of a run beside a second live session, `rawtrace reset`, and a check
that the killed run's leftovers are gone while the other session's instance is untouched.

Run as root:  flock /tmp/rawtrace-live-tests.lock python3 tools/soak.py [--runs 50]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACEFS = Path("/sys/kernel/tracing")
FLOOD = "import os\nwhile True:\n    os.close(os.open('/etc/hostname', os.O_RDONLY))\n"


def leftovers(pid: int) -> list[str]:
    tag = f"rawtrace-{pid}-"
    found = [f"instance {n}" for n in os.listdir(TRACEFS / "instances") if n.startswith(tag)]
    for name in ("uprobe_events", "dynamic_events"):
        text = (TRACEFS / name).read_text() if (TRACEFS / name).exists() else ""
        found += [f"{name}: {line}" for line in text.splitlines() if f"rawtrace_{pid}_" in line]
    found += [f"spool {n}" for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"rawtrace-spool-{pid}-")]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(f"child process {entry}")
    return found


def one_run(path: str, probe: bool) -> dict:
    args = [sys.executable, "-m", "rawtrace", "trace", "raw_syscalls:*", "--json"]
    if probe:
        args += ["--probe", "uprobe:libc:getppid"]
    if path == "deadline":
        args += ["-d", "1"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    started = time.monotonic()
    if path == "deadline":
        end_at = started + 1.0
    else:
        time.sleep(random.uniform(0.05, 1.5))
        end_at = time.monotonic()
        proc.send_signal({"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}[path])
    _, err = proc.communicate(timeout=300)
    after = time.monotonic() - end_at
    # What the run says it spent decoding what was recorded after recording stopped.
    found = re.search(r"then ([\d.]+) s decoding", err)
    drain = float(found.group(1)) if found else 0.0
    return {"path": path, "probe": probe, "code": proc.returncode, "after": after, "beyond_drain": after - drain,
            "traceback": "Traceback" in err or "Traceback" in first, "summary": " events, " in err,
            "leftovers": leftovers(proc.pid), "started": first.startswith("Tracing")}


def kill_and_reset(rounds: int) -> tuple[int, list[str]]:
    """kill -9 a run while another one traces; reset must remove the first's leftovers, not the second's."""
    problems = []
    for _ in range(rounds):
        keeper = subprocess.Popen([sys.executable, "-m", "rawtrace", "trace", "sched:sched_switch"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        victim = subprocess.Popen([sys.executable, "-m", "rawtrace", "trace", "raw_syscalls:*",
                                   "--probe", "uprobe:libc:getppid"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        keeper.stderr.readline()
        victim.stderr.readline()
        time.sleep(random.uniform(0.1, 0.6))
        victim.kill()
        victim.wait()
        time.sleep(0.2)         # the spooler child dies with its parent (PR_SET_PDEATHSIG)
        subprocess.run([sys.executable, "-m", "rawtrace", "reset"], cwd=ROOT, capture_output=True, check=False)
        left = leftovers(victim.pid)
        if left:
            problems.append(f"after reset, killed run {victim.pid}: {left}")
        if not any(n.startswith(f"rawtrace-{keeper.pid}-") for n in os.listdir(TRACEFS / "instances")):
            problems.append(f"reset removed the live session {keeper.pid}'s instance")
        keeper.send_signal(signal.SIGINT)
        keeper.communicate(timeout=60)
        if leftovers(keeper.pid):
            problems.append(f"live session {keeper.pid} left {leftovers(keeper.pid)}")
    return rounds, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs per exit path (default 20)")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 + reset rounds (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    random.seed(args.seed)
    floods = [subprocess.Popen([sys.executable, "-c", FLOOD]) for _ in range(1)]
    results = []
    try:
        for n in range(args.runs):
            for path in ("deadline", "SIGINT", "SIGTERM", "SIGHUP"):
                results.append(one_run(path, probe=n % 3 == 2))
        kills, problems = kill_and_reset(args.kills)
    finally:
        for flood in floods:
            flood.kill()
            flood.wait()
    print(f"{len(results)} runs under a flood ({args.runs} per exit path, every third with a uprobe)")
    for path in ("deadline", "SIGINT", "SIGTERM", "SIGHUP"):
        runs = [r for r in results if r["path"] == path]
        after = [r["after"] for r in runs]
        beyond = [r["beyond_drain"] for r in runs]
        codes = sorted({r["code"] for r in runs})
        print(f"  {path:<9} clean {sum(not r['leftovers'] for r in runs)}/{len(runs)}  tracebacks "
              f"{sum(r['traceback'] for r in runs)}  summary printed {sum(r['summary'] for r in runs)}/{len(runs)}  "
              f"exit codes {codes}  s after deadline/signal: median {statistics.median(after):.2f}, "
              f"max {max(after):.2f}; beyond the drain it reported: max {max(beyond):.2f}")
    bad = [r for r in results if r["leftovers"] or r["traceback"]]
    for r in bad[:10]:
        print(f"  problem: {r}")
    print(f"kill -9 + reset beside a live session: {kills} rounds, {len(problems)} problems")
    for problem in problems[:10]:
        print(f"  {problem}")
    return 1 if bad or problems else 0


if __name__ == "__main__":
    sys.exit(main())
