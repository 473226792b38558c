#!/usr/bin/env python3
"""Time `rawtrace doctor` in a clean virtualenv against `bpftrace -l`, same run; and preflight() in-process.

As tools/bench_list_syscalls.py does (see tools/startup_venv.py): a venv from the system interpreter with
this checkout pip-installed, `rawtrace doctor` and `doctor --json` through the console script and `python
-m rawtrace`, interleaved with `bpftrace -l`. Own cost (minus a bare `python -c pass`): target <= 20 ms.
The in-process cost of `preflight()` (what every tracing command pays) is timed in the venv too.

    tools/bench_doctor.py [-n 20] [--venv DIR] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import startup_venv  # a sibling in tools/, not a package

PREFLIGHT = """
import statistics, time
from rawtrace.doctor import preflight
from rawtrace.host import Host
needs = {"tracefs", "syscalls", "tracepoints", "uprobes"}
times = []
for _ in range(ROUNDS):
    start = time.perf_counter()
    preflight(Host(), needs)  # a fresh Host each time: nothing cached between calls
    times.append((time.perf_counter() - start) * 1e6)
print(f"{min(times):.0f} {statistics.median(times):.0f}")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    startup_venv.add_venv_arguments(parser)
    args = parser.parse_args()
    venv = startup_venv.make_venv(args.venv, args.python)
    try:
        commands = {"python -c pass": [venv.python, "-c", "pass"]}
        main_commands = startup_venv.startup_commands(venv, ["doctor"], "doctor")
        main_commands.update(startup_venv.startup_commands(venv, ["doctor", "--json"], "doctor --json"))
        commands.update(main_commands)
        peers = startup_venv.bpftrace_command()
        commands.update(peers)
        samples = startup_venv.measure(commands, args.n, startup_venv.clean_env())
        print(f"clean venv {venv.root} from {args.python}; {args.n} interleaved rounds; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        targets = {label: startup_venv.TARGETS_MS["doctor"] for label in main_commands}
        verdict = startup_venv.report(samples, "python -c pass", targets, next(iter(peers), None))
        done = subprocess.run([venv.python, "-c", PREFLIGHT.replace("ROUNDS", str(max(args.n * 10, 100)))],
                              capture_output=True, text=True, env=startup_venv.clean_env(), cwd="/", check=True)
        best_us, median_us = done.stdout.split()
        print(f"preflight(tracefs, syscalls, tracepoints, uprobes) in-process: best {best_us} us, "
              f"median {median_us} us")
        return verdict
    finally:
        venv.close()


if __name__ == "__main__":
    sys.exit(main())
