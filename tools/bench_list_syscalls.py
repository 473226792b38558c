#!/usr/bin/env python3
"""Time `rawtrace list-syscalls` in a clean virtualenv against `bpftrace -l` (and ausyscall), same run.

The venv is made from the system interpreter (/usr/bin/python3 -m venv) in a temporary directory and this
checkout pip-installed into it, so the figures are what a user gets: compiled bytecode, no preloaded site
packages. Both entry points are timed, the `rawtrace` console script pip generated and `python -m
rawtrace`, interleaved round by round with the peers. rawtrace's own cost is its time minus a bare
`python -c pass` of the venv; target <= 15 ms (best run: the one other load disturbs least; medians and
the child's CPU time are printed too). `--json` and `--args` are timed for information.

  tools/bench_list_syscalls.py [-n 20] [--venv DIR] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import startup_venv  # a sibling in tools/, not a package


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    startup_venv.add_venv_arguments(parser)
    args = parser.parse_args()
    venv = startup_venv.make_venv(args.venv, args.python)
    try:
        commands = {"python -c pass": [venv.python, "-c", "pass"]}
        main_commands = startup_venv.startup_commands(venv, ["list-syscalls"], "list-syscalls")
        commands.update(main_commands)
        for extra in (["--json"], ["--arch", "arm64"], ["--json", "--args"]):
            commands[f"rawtrace list-syscalls {' '.join(extra)}"] = [venv.script, "list-syscalls", *extra]
        peers = startup_venv.bpftrace_command()
        peers.update(startup_venv.bpftrace_command(("-l", "tracepoint:syscalls:*")))
        if shutil.which("ausyscall"):
            peers["ausyscall --dump"] = ["ausyscall", "--dump"]
        commands.update(peers)
        samples = startup_venv.measure(commands, args.n, startup_venv.clean_env())
        print(f"clean venv {venv.root} from {args.python}; {args.n} interleaved rounds")
        targets = {label: startup_venv.TARGETS_MS["list-syscalls"] for label in main_commands}
        verdict = startup_venv.report(samples, "python -c pass", targets, next(iter(peers), None))
        for peer in list(peers)[1:]:
            for label in main_commands:
                print(f"{label} / {peer}: {samples[label].median / samples[peer].median:.2f}x (median wall)")
        return verdict
    finally:
        venv.close()


if __name__ == "__main__":
    sys.exit(main())
