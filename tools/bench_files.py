#!/usr/bin/env python3
"""`rawtrace files` overhead: a file-heavy workload untraced, under rawtrace files, fatrace and opensnoop.bt.

The workload (tools/workload.c `open PATH N`: N x (open + read + close) through the C library, so every
call also hits rawtrace's uprobe on open64) prints its own loop time; `--spawn N` adds a second workload
that starts N short processes (`cat FILE`): the loader's opens hit its probed syscall instructions, the C
library's locale loading its internal open (about 30 opens per `cat` with a UTF-8 locale). Modes,
measured in one run: untraced, `rawtrace files` (tracefs + uprobes + fanotify), `rawtrace files --source
fanotify`, fatrace, and bpftrace's /usr/sbin/opensnoop.bt; and `floor`: the syscall events `rawtrace files`
enables, enabled in a private tracefs instance that nobody reads (the kernel's cost of writing them, the
least any tracefs syscall source can cost). Prints the median loop time per mode, the slowdown against
untraced and the ratio against fatrace; for rawtrace also the events it emitted and the events it
reported lost. Missing peers are skipped.

Run as root:  flock /tmp/rawtrace-live-tests.lock python3 tools/bench_files.py [--iterations 20000] [--spawn 200]"""

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
OPENSNOOP = "/usr/sbin/opensnoop.bt"
FIGURES: dict[str, list[dict]] = {}


def build_workload(tmp: Path) -> list[str]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("bench_files needs cc to build tools/workload.c")
    exe = tmp / "rtworkload"
    subprocess.run([cc, "-O2", "-o", str(exe), str(ROOT / "tools" / "workload.c")], check=True)
    return [str(exe)]


def spawn_script(tmp: Path, target: Path, count: int) -> list[str]:
    script = tmp / "spawn.sh"
    script.write_text(f"start=$(date +%s.%N); for i in $(seq {count}); do cat {target} >/dev/null; done; "
                      "end=$(date +%s.%N); echo \"$end - $start\" | bc\n")
    return ["bash", str(script)]


def timed(cmd: list[str]) -> float:
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def runs_of(cmd: list[str], runs: int) -> list[float]:
    return [timed(cmd) for _ in range(runs)]


class Tracer:
    """A tracer started in the background, ready when `ready` returns, stopped with SIGINT."""

    def __init__(self, name: str, argv: list[str], ready_text: str | None, settle: float) -> None:
        self.name = name
        self.argv = argv
        self.ready_text = ready_text
        self.settle = settle
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        if self.ready_text is not None:
            seen = ""
            while self.ready_text not in seen:
                line = self.proc.stderr.readline()
                if not line:
                    raise RuntimeError(f"{self.name} did not start: {seen}")
                seen += line
        time.sleep(self.settle)
        return self

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.err = self.proc.stderr.read()
            self.proc.wait(timeout=120)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def floor_child() -> int:
    """`--floor-child`: enable `rawtrace files`' syscall events in a private instance, say "ready", and
    keep them on (nobody reads; the ring buffer overwrites) until SIGINT; then remove the instance."""
    sys.path.insert(0, str(ROOT))
    from rawtrace.host import Host
    from rawtrace.tracefs.discover import find_tracefs
    from rawtrace.tracefs.instance import Instance
    from rawtrace.tracers.files import STATE_SYSCALLS, SYSCALLS
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    tracefs = find_tracefs(Host()).path
    with Instance.create(tracefs) as inst:
        count = 0
        for name in list(SYSCALLS) + list(STATE_SYSCALLS):
            for half in ("enter", "exit"):
                if (tracefs / "events" / "syscalls" / f"sys_{half}_{name}").is_dir():
                    inst.enable_event("syscalls", f"sys_{half}_{name}")
                    count += 1
        inst.set_tracing_on(True)
        print(f"{count} events on, ready", file=sys.stderr, flush=True)
        while not stop:
            signal.pause()
    return 0


def under(tracer: Tracer, cmd: list[str], runs: int) -> list[float]:
    with tracer:
        times = runs_of(cmd, runs)
    if tracer.name.startswith("rawtrace"):
        summary = tracer.err.strip().splitlines()[-1] if tracer.err.strip() else ""
        events = re.search(r"(\d+) events", summary)
        lost = re.search(r"(\d+) lost", summary)
        unknown = re.search(r"(\d+) unknown paths", summary)
        FIGURES.setdefault(tracer.name, []).append(
            {"events": int(events.group(1)) if events else -1, "lost": int(lost.group(1)) if lost else 0,
             "unknown": int(unknown.group(1)) if unknown else -1,
             "overflow": "overflowed" in tracer.err})
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20000, help="open+read+close per workload run")
    parser.add_argument("--runs", type=int, default=3, help="workload runs per mode (median shown)")
    parser.add_argument("--spawn", type=int, default=0, help="also a workload starting N `cat` processes")
    parser.add_argument("--skip", action="append", default=[], help="leave out a mode (rawtrace, "
                        "rawtrace-fanotify, floor, fatrace, opensnoop)")
    parser.add_argument("--parts", action="store_true", help="also rawtrace files without its uprobes, "
                        "without fanotify, and without both (what each source costs)")
    parser.add_argument("--floor-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        return floor_child()
    if os.geteuid() != 0:
        raise SystemExit("run as root (tracefs, uprobes, fanotify)")
    with tempfile.TemporaryDirectory(prefix="rtbench-files-", dir="/var/tmp") as tmpdir:
        tmp = Path(tmpdir)
        target = tmp / "target.txt"
        target.write_text("x" * 64)
        workloads = {"open": build_workload(tmp) + ["open", str(target), str(args.iterations)]}
        if args.spawn:
            workloads["spawn"] = spawn_script(tmp, target, args.spawn)
        raw = [sys.executable, "-m", "rawtrace", "files"]
        tracers = {
            "rawtrace": Tracer("rawtrace", raw, "Ctrl-C", 0.3),
            "rawtrace-fanotify": Tracer("rawtrace-fanotify", raw + ["--source", "fanotify"], "Ctrl-C", 0.3),
            "floor": Tracer("floor", [sys.executable, __file__, "--floor-child"], "ready", 0.3),
            "fatrace": Tracer("fatrace", ["fatrace"], None, 1.0) if shutil.which("fatrace") else None,
            "opensnoop": Tracer("opensnoop", ["bpftrace", OPENSNOOP], None, 3.0)
            if shutil.which("bpftrace") and os.path.exists(OPENSNOOP) else None,
        }
        if args.parts:
            for name, flags in (("rawtrace-no-uprobes", ["--no-uprobes"]), ("rawtrace-no-fanotify", ["--no-fanotify"]),
                                ("rawtrace-syscalls", ["--no-uprobes", "--no-fanotify"])):
                tracers[name] = Tracer(name, raw + flags, "Ctrl-C", 0.3)
        for name in args.skip:
            tracers.pop(name, None)
        results: dict[str, dict[str, float]] = {}
        for workload, cmd in workloads.items():
            results[workload] = {"untraced": statistics.median(runs_of(cmd, args.runs))}
            for name, tracer in tracers.items():
                if tracer is None:
                    continue
                try:
                    results[workload][name] = statistics.median(under(tracer, cmd, args.runs))
                except (RuntimeError, subprocess.CalledProcessError) as exc:
                    print(f"{name}: skipped ({exc})", file=sys.stderr)
        for workload, row in results.items():
            base = row["untraced"]
            fatrace = row.get("fatrace")
            what = f"{args.iterations} x open+read+close" if workload == "open" else f"{args.spawn} x cat"
            print(f"workload {workload} ({what}), median of {args.runs}:")
            print(f"  {'mode':<18} {'seconds':>9} {'slowdown':>9} {'vs fatrace':>10}")
            for name, seconds in row.items():
                ratio = f"{seconds / fatrace:.2f}x" if fatrace else "-"
                print(f"  {name:<18} {seconds:9.4f} {seconds / base:8.2f}x {ratio:>10}")
        for name, figures in FIGURES.items():
            events = sum(f["events"] for f in figures)
            lost = sum(f["lost"] for f in figures)
            unknown = sum(f["unknown"] for f in figures)
            overflow = any(f["overflow"] for f in figures)
            print(f"{name}: {events} events, {lost} lost, {unknown} unknown paths"
                  + (", fanotify queue overflowed" if overflow else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
