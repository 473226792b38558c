#!/usr/bin/env python3
"""Time `rawtrace format` in a clean virtualenv against `bpftrace -l` and the peers that show a format.

As tools/bench_list_syscalls.py does (see tools/startup_venv.py): a venv from the system interpreter with
this checkout pip-installed, the console script and `python -m rawtrace`, interleaved with
`bpftrace -l`, `bpftrace -lv tracepoint:syscalls:sys_enter_open` and `trace-cmd list -e ... -F`.
Own cost of `rawtrace format sys_enter_open` (minus a bare `python -c pass`): target <= 15 ms.
`rawtrace format '*:*' --json` is timed whole (target < 0.5 s) with the number of events it printed.
Needs a readable tracefs (root).

  tools/bench_format.py [-n 15] [--venv DIR] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import startup_venv  # a sibling in tools/, not a package

ALL_TARGET_MS = 500.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    startup_venv.add_venv_arguments(parser)
    parser.set_defaults(n=15)
    args = parser.parse_args()
    venv = startup_venv.make_venv(args.venv, args.python)
    try:
        commands = {"python -c pass": [venv.python, "-c", "pass"]}
        main_commands = startup_venv.startup_commands(venv, ["format", "sys_enter_open"], "format sys_enter_open")
        commands.update(main_commands)
        commands["rawtrace format '*:*' --json"] = [venv.script, "format", "*:*", "--json"]
        commands["rawtrace events"] = [venv.script, "events"]
        peers = startup_venv.bpftrace_command()
        peers.update(startup_venv.bpftrace_command(("-lv", "tracepoint:syscalls:sys_enter_open")))
        if shutil.which("trace-cmd"):
            peers["trace-cmd list -e syscalls:sys_enter_open -F"] = [
                "trace-cmd", "list", "-e", "syscalls:sys_enter_open", "-F"]
        commands.update(peers)
        samples = startup_venv.measure(commands, args.n, startup_venv.clean_env())
        everything = subprocess.run([venv.script, "format", "*:*", "--json"], capture_output=True, text=True,
                                    env=startup_venv.clean_env(), check=True).stdout
        count = len(json.loads(everything))
        print(f"clean venv {venv.root} from {args.python}; {args.n} interleaved rounds")
        targets = {label: startup_venv.TARGETS_MS["format"] for label in main_commands}
        verdict = startup_venv.report(samples, "python -c pass", targets, next(iter(peers), None))
        for peer in list(peers)[1:]:
            for label in main_commands:
                print(f"{label} / {peer}: {samples[label].median / samples[peer].median:.2f}x (median wall)")
        total = samples["rawtrace format '*:*' --json"].best
        ok = total < ALL_TARGET_MS
        print(f"rawtrace format '*:*' --json: {total:.0f} ms for {count} events "
              f"({total / max(count, 1) * 1000:.0f} us/event; target < {ALL_TARGET_MS:.0f} ms): "
              f"{'ok' if ok else 'OVER'}")
        return verdict | (not ok)
    finally:
        venv.close()


if __name__ == "__main__":
    sys.exit(main())
