"""Lockdown-proof CPU-wait source: samples /proc/PID/task/TID/schedstat and /proc/pressure/cpu and diffs them.

``/proc/PID/task/TID/schedstat`` holds three cumulative counters per thread (CONFIG_SCHED_INFO, always
populated since Linux 5.14): time on a CPU (ns), time runnable but waiting on a run queue (``run_delay``,
ns) and the number of timeslices run (``pcount``). ``/proc/pressure/cpu`` (PSI) holds the share of time in
which at least one task waited for a CPU. Neither is refused by lockdown, so they answer "who waits for a
CPU" where tracefs is blocked — as sampled totals and averages per interval, not a histogram of single
waits (``NOTE`` says so in one line).

Source protocol (as the stream drives sources): ``open()`` takes the baseline, ``batches()`` yields one list
of records per period (``ThreadDelta`` for each thread whose counters moved, then one ``Pressure``), an
empty list when nothing moved, until ``stop()``; ``close()`` is idempotent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from rawtrace.errors import NotSupported, TracingBlocked
from rawtrace.host import Host

NOTE = ("note: sampled from /proc/PID/task/TID/schedstat and /proc/pressure/cpu: per-thread wait totals per "
        "interval and PSI averages, not a histogram of single waits")


class ThreadDelta(NamedTuple):
    """What one thread did since the previous sample: `delay_ns` waiting for a CPU, `slices` timeslices run,
    `run_ns` on a CPU. `new` is true for a thread first seen in this sample (its totals are all counted).
    `process_comm` is the main thread's comm (/proc/PID/comm), the name a process is ranked under."""

    ts: int
    pid: int
    tid: int
    comm: str
    delay_ns: int
    slices: int
    run_ns: int
    new: bool = False
    process_comm: str = ""


class Pressure(NamedTuple):
    """/proc/pressure/cpu at `ts`: the `some` line's averages (percent) and `stall_us`, its total's growth
    since the previous sample (µs in which at least one task was runnable and waiting)."""

    ts: int
    avg10: float
    avg60: float
    avg300: float
    total_us: int
    stall_us: int


def parse_schedstat(text: str) -> tuple[int, int, int] | None:
    """(run_ns, run_delay_ns, pcount) from a schedstat line, None if it is not three integers."""
    parts = text.split()
    if len(parts) < 3:
        return None
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None


def parse_pressure(text: str) -> dict[str, dict[str, float]]:
    """{"some": {"avg10": .., "avg60": .., "avg300": .., "total": ..}, "full": {...}} from a PSI file."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        values = {}
        for item in rest.split():
            key, _, value = item.partition("=")
            try:
                values[key] = float(value) if "." in value else int(value)
            except ValueError:
                continue
        if kind and values:
            out[kind] = values
    return out


class SchedstatSampler:
    """Samples every thread's schedstat (or only `pids`) and PSI, every `period` seconds.

    `clock` gives CLOCK_MONOTONIC ns (injectable for tests). Threads that exit between two samples take
    their last interval with them: `exited` counts them."""

    def __init__(self, host: Host | None = None, period: float = 1.0, pids: set[int] | None = None,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.host = host or Host()
        self.period = period
        self.pids = set(pids) if pids else None
        self.clock = clock
        self.previous: dict[int, tuple[int, int, int]] = {}
        self.previous_psi: int | None = None
        self.exited = 0
        self.samples = 0
        self.psi_available = False
        self.schedstat_available = False
        self._stop = threading.Event()
        self._opened = False

    # -- source protocol ----------------------------------------------------------------------------

    def open(self) -> None:
        """Take the baseline: waits before this moment are never reported."""
        self.sample()
        self._opened = True

    def batches(self) -> Iterator[list]:
        if not self._opened:
            self.open()
        while not self._stop.wait(self.period):
            yield self.sample()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self.previous.clear()

    # -- sampling -----------------------------------------------------------------------------------

    def _threads(self) -> Iterator[tuple[int, int, str]]:
        """(pid, tid, schedstat path) of every thread, from the process directories under /proc."""
        proc = self.host.path("/proc")
        try:
            names = os.listdir(proc)
        except OSError:
            return
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            if self.pids is not None and pid not in self.pids:
                continue
            task = proc / name / "task"
            try:
                tids = os.listdir(task)
            except OSError:
                continue  # exited while listing
            for tid in tids:
                if tid.isdigit():
                    yield pid, int(tid), str(task / tid)

    def sample(self) -> list:
        """One sample: ThreadDelta for each thread whose counters moved since the last one, then Pressure."""
        ts = self.clock()
        first = not self._opened and self.samples == 0
        out: list = []
        current: dict[int, tuple[int, int, int]] = {}
        process_comm: dict[int, str] = {}
        for pid, tid, path in self._threads():
            try:
                with open(f"{path}/schedstat") as f:
                    values = parse_schedstat(f.read())
                if values is None:
                    continue
                with open(f"{path}/comm", errors="surrogateescape") as f:
                    comm = f.read().rstrip("\n")
            except OSError:
                continue  # exited between listing and reading
            self.schedstat_available = True
            current[tid] = values
            if first:
                continue
            before = self.previous.get(tid)
            # A counter that went backwards is a new thread that reused the tid.
            new = before is None or values[0] < before[0] or values[1] < before[1] or values[2] < before[2]
            base = (0, 0, 0) if new else before
            delta = (values[0] - base[0], values[1] - base[1], values[2] - base[2])
            if new or delta[1] or delta[2]:
                if pid not in process_comm:
                    process_comm[pid] = comm if pid == tid else self._comm(pid, comm)
                out.append(ThreadDelta(ts, pid, tid, comm, delta[1], delta[2], delta[0], new, process_comm[pid]))
        if not first:
            self.exited += sum(1 for tid in self.previous if tid not in current)
        self.previous = current
        pressure = self._pressure(ts)
        if pressure is not None and not first:
            out.append(pressure)
        self.samples += 1
        return out

    def _comm(self, pid: int, fallback: str) -> str:
        text = self.host.read_text(f"/proc/{pid}/comm")
        return text.rstrip("\n") if text else fallback

    def _pressure(self, ts: int) -> Pressure | None:
        text = self.host.read_text("/proc/pressure/cpu")
        some = parse_pressure(text).get("some") if text else None
        if not some or "total" not in some:
            return None
        self.psi_available = True
        total = int(some["total"])
        stall = total - self.previous_psi if self.previous_psi is not None else 0
        self.previous_psi = total
        return Pressure(ts, float(some.get("avg10", 0.0)), float(some.get("avg60", 0.0)),
                        float(some.get("avg300", 0.0)), total, max(stall, 0))


class ProcessWait(NamedTuple):
    """Waiting for a CPU summed over a process's (or one thread's) ThreadDeltas."""

    pid: int
    tid: int | None
    comm: str
    delay_ns: int
    slices: int
    run_ns: int
    threads: int

    @property
    def avg_wait_ns(self) -> int:
        """Mean wait per timeslice (Δrun_delay / Δpcount), 0 without a timeslice."""
        return self.delay_ns // self.slices if self.slices else 0


def rank(records: list, per_thread: bool = False) -> list[ProcessWait]:
    """Per-process (or per-thread) sums of ThreadDeltas, most time spent waiting first.

    A process is named by its main thread's comm (`process_comm`), a thread by its own."""
    sums: dict[tuple[int, int | None], list] = {}
    for rec in records:
        if not isinstance(rec, ThreadDelta):
            continue
        key = (rec.pid, rec.tid if per_thread else None)
        row = sums.get(key)
        if row is None:
            name = rec.comm if per_thread or not rec.process_comm else rec.process_comm
            sums[key] = [name, rec.delay_ns, rec.slices, rec.run_ns, {rec.tid}]
            continue
        row[1] += rec.delay_ns
        row[2] += rec.slices
        row[3] += rec.run_ns
        row[4].add(rec.tid)
    out = [ProcessWait(pid, tid, comm, delay, slices, run, len(tids))
           for (pid, tid), (comm, delay, slices, run, tids) in sums.items()]
    out.sort(key=lambda row: (-row.delay_ns, row.pid, row.tid or 0))
    return out


def tracefs_refusal(host: Host) -> str | None:
    """Why the sched tracepoints cannot be used here (the doctor's one-line reason), or None if they can.

    Confidentiality lockdown, an unusable tracefs or a kernel without sched tracepoints all mean the
    schedstat sampler is the only source left."""
    from rawtrace.doctor import preflight  # the doctor's checks are only needed on this path
    try:
        preflight(host, {"tracepoints"})
    except (TracingBlocked, NotSupported) as exc:
        return exc.message
    return None
