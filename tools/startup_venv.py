#!/usr/bin/env python3
"""Start-up timing in a clean virtualenv: shared by the bench_list_syscalls/format/doctor scripts.

rawtrace's start-up is judged as a user gets it: `python3 -m venv` on the system interpreter, `pip install`
of this checkout (bytecode compiled by pip), then the `rawtrace` console script and `python -m rawtrace`.
A developer's interpreter with site packages preloaded, or a checkout run without .pyc files, says little
about that. "Own cost" is a command's time minus a bare `python -c pass` of the same venv, measured in the
same run; commands are interleaved round by round so that other load on the machine hits all alike.
Times are wall clock (best and median of N rounds) and the child's CPU time (user + system, best), which
other processes on a busy machine disturb less.

Run alone it times the three start-up commands:
  tools/startup_venv.py [-n 20] [--venv DIR] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
# The targets of rawtrace's own cost (ms) in such a venv, judged on the best run.
TARGETS_MS = {"list-syscalls": 15.0, "format": 15.0, "doctor": 20.0}


@dataclass
class Venv:
    root: Path
    temporary: bool

    @property
    def python(self) -> str:
        return str(self.root / "bin" / "python")

    @property
    def script(self) -> str:
        return str(self.root / "bin" / "rawtrace")

    def close(self) -> None:
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)


def make_venv(path: str | None = None, python: str = SYSTEM_PYTHON, reinstall: bool = True) -> Venv:
    """A venv made with `python -m venv` and this checkout pip-installed into it (in a temporary directory
    unless `path` names one; an existing one is reused, with rawtrace reinstalled if `reinstall`)."""
    if not Path(python).exists():
        raise SystemExit(f"{python} not found: pass --python")
    temporary = path is None
    root = Path(path or tempfile.mkdtemp(prefix="rawtrace-startup-venv-"))
    fresh = not (root / "bin" / "python").exists()
    if fresh:
        subprocess.run([python, "-m", "venv", str(root)], check=True)
    venv = Venv(root, temporary)
    if fresh or reinstall:
        # A copy of the checkout: pip builds in place otherwise and would leave build/ in the work tree.
        with tempfile.TemporaryDirectory(prefix="rawtrace-src-") as src:
            shutil.copytree(REPO, src, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".*cache"))
            args = [venv.python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            if not fresh:
                args += ["--force-reinstall", "--no-deps"]
            done = subprocess.run(args + [src], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            venv.close()
            raise SystemExit(f"pip install of the checkout failed:\n{done.stdout}{done.stderr}")
    return venv


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.wall)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def best_cpu(self) -> float:
        return min(self.cpu)


def time_once(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall ms, child CPU ms) of one run; SystemExit if it fails (exit status 1 is an answer: the doctor's
    when something is blocked)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd="/")
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - start) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def measure(commands: dict[str, list[str]], rounds: int, env: dict | None = None) -> dict[str, Samples]:
    """Each command once to warm caches, then `rounds` rounds of every command in turn."""
    for argv in commands.values():
        time_once(argv, env)
    samples = {label: Samples() for label in commands}
    for _ in range(rounds):
        for label, argv in commands.items():
            wall, cpu = time_once(argv, env)
            samples[label].wall.append(wall)
            samples[label].cpu.append(cpu)
    return samples


def clean_env() -> dict:
    """The environment for timed runs: no PYTHON* variables that would change what the venv imports."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def startup_commands(venv: Venv, rawtrace_args: list[str], label: str) -> dict[str, list[str]]:
    return {f"rawtrace {label}": [venv.script, *rawtrace_args],
            f"python -m rawtrace {label}": [venv.python, "-m", "rawtrace", *rawtrace_args]}


def bpftrace_command(args: tuple[str, ...] = ("-l",)) -> dict[str, list[str]]:
    path = shutil.which("bpftrace")
    return {f"bpftrace {' '.join(args)}": [path, *args]} if path else {}


def report(samples: dict[str, Samples], bare: str, targets: dict[str, float], peer: str | None,
           out=sys.stdout) -> int:
    """Print the table, own costs against their targets and ratios against the peer; 1 if a target is missed."""
    out.write(f"{'command':<44} {'best ms':>8} {'median ms':>10} {'best CPU ms':>12}\n")
    for label, s in samples.items():
        out.write(f"{label:<44} {s.best:>8.1f} {s.median:>10.1f} {s.best_cpu:>12.1f}\n")
    base = samples[bare]
    verdict = 0
    out.write("\n")
    for label, target in targets.items():
        s = samples[label]
        own, own_median, own_cpu = s.best - base.best, s.median - base.median, s.best_cpu - base.best_cpu
        ok = own <= target
        verdict |= not ok
        out.write(f"own cost of {label:<38} best {own:5.1f} ms, median {own_median:5.1f} ms, CPU {own_cpu:5.1f} ms"
                  f"  ({'ok' if ok else 'OVER'} target {target:.0f} ms)\n")
    if peer and peer in samples:
        for label in targets:
            ratio = samples[label].median / samples[peer].median
            out.write(f"{label} / {peer}: {ratio:.2f}x (median wall), "
                      f"{samples[label].best / samples[peer].best:.2f}x (best)\n")
    return verdict


def add_venv_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--venv", metavar="DIR",
                        help="make (or reuse) the venv here instead of a temporary directory")
    parser.add_argument("--python", default=SYSTEM_PYTHON,
                        help=f"interpreter to make the venv from (default {SYSTEM_PYTHON}, the system one)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_venv_arguments(parser)
    args = parser.parse_args()
    venv = make_venv(args.venv, args.python)
    try:
        commands = {"python -c pass": [venv.python, "-c", "pass"]}
        targets = {}
        for label, argv in (("list-syscalls", ["list-syscalls"]), ("format", ["format", "sys_enter_open"]),
                            ("doctor", ["doctor"])):
            both = startup_commands(venv, argv, " ".join(argv))
            commands.update(both)
            targets.update({name: TARGETS_MS[label] for name in both})
        peer = bpftrace_command()
        commands.update(peer)
        samples = measure(commands, args.n, clean_env())
        print(f"venv: {venv.root} ({args.python}, {args.n} rounds)")
        return report(samples, "python -c pass", targets, next(iter(peer), None))
    finally:
        venv.close()


if __name__ == "__main__":
    sys.exit(main())
