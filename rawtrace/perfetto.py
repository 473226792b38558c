"""A timeline as Chrome trace-event JSON (Perfetto UI, chrome://tracing): CPU tracks, syscall slices, losses.

``Timeline`` collects, in time order: context switches (``switch``), which give one track per CPU with the
task running on it; finished syscalls (``syscall``), one complete slice (``ph: "X"``) each on the thread's
track, with its arguments and return value; lost events (``lost``), global instant markers; other
moments (``instant``: exec, exit...) on a thread's track. Thread and process names become metadata
events (``thread_name``/``process_name``). ``write(path)`` writes ``{"traceEvents": [...]}`` with
time stamps in microseconds (floats keep the nanoseconds). Timestamps in are trace-clock nanoseconds.

The CPU tracks are threads of a pseudo process (``CPU_PROCESS``, above any real pid) named "CPUs", one
thread per CPU, so that every viewer of the JSON format shows them without extensions.
"""

from __future__ import annotations

import json
import os
from typing import Any

# PID_MAX_LIMIT is 4194304 (2^22): ids above it are never real tasks.
CPU_PROCESS = 4194304 + 1
CPU_THREAD_BASE = 4194304 + 16


def _us(ts_ns: int) -> float:
    return round(ts_ns / 1000, 3)


def _dur(start_ns: int, end_ns: int) -> float:
    # From the rounded ends, so that back-to-back slices meet (up to float rounding) instead of overlapping.
    return round(_us(end_ns) - _us(start_ns), 3)


class Timeline:
    """Builds the trace events; see the module docstring."""

    def __init__(self, *, ns: bool = True) -> None:
        self.ns = ns                           # False: time stamps are raw counts, shown as if ns
        self.events: list[dict] = []
        self.threads: dict[int, tuple[int, str]] = {}       # tid -> (pid, name)
        self.processes: dict[int, str] = {}
        self._running: dict[int, tuple[int, int, str, int]] = {}   # cpu -> (since ts, tid, comm, pid)
        self.cpus: set[int] = set()
        self.slices = 0
        self.lost_events = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    # -- input -----------------------------------------------------------------------------------
    def _seen(self, ts: int | None) -> None:
        if ts is None:
            return
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts

    def thread(self, tid: int, pid: int, comm: str) -> None:
        """Name a thread (the latest name wins); its process is named after its main thread."""
        self.threads[tid] = (pid, comm)
        if tid == pid or pid not in self.processes:
            self.processes[pid] = comm

    def switch(self, ts: int, cpu: int, next_tid: int, next_comm: str, next_pid: int | None = None,
               prev_state: str | None = None) -> None:
        """`next_tid` runs on `cpu` from `ts` on (the idle task, tid 0, leaves the track empty)."""
        self._seen(ts)
        self.cpus.add(cpu)
        self._close_cpu(cpu, ts, prev_state)
        if next_tid != 0:
            self._running[cpu] = (ts, next_tid, next_comm, next_pid if next_pid is not None else next_tid)

    def _close_cpu(self, cpu: int, ts: int, prev_state: str | None = None) -> None:
        running = self._running.pop(cpu, None)
        if running is None:
            return
        since, tid, comm, pid = running
        args: dict[str, Any] = {"tid": tid, "pid": pid}
        if prev_state is not None:
            args["state_after"] = prev_state
        self.events.append({"ph": "X", "name": f"{comm} {tid}", "cat": "sched", "pid": CPU_PROCESS,
                            "tid": CPU_THREAD_BASE + cpu, "ts": _us(since), "dur": _dur(since, ts),
                            "args": args})
        self.slices += 1

    def syscall(self, ts: int, end_ts: int, tid: int, pid: int, name: str, args: dict | None = None,
                ret: int | None = None, error: str | None = None) -> None:
        """One finished syscall as a slice on its thread's track."""
        self._seen(ts)
        self._seen(end_ts)
        detail: dict[str, Any] = dict(args or {})
        if ret is not None:
            detail["ret"] = ret
        if error:
            detail["error"] = error
        self.events.append({"ph": "X", "name": name, "cat": "syscall", "pid": pid, "tid": tid,
                            "ts": _us(ts), "dur": _dur(ts, max(ts, end_ts)), "args": detail})
        self.slices += 1
        if tid not in self.threads:
            self.threads[tid] = (pid, "")

    def instant(self, ts: int, tid: int, pid: int, name: str, args: dict | None = None) -> None:
        self._seen(ts)
        self.events.append({"ph": "i", "s": "t", "name": name, "cat": "task", "pid": pid, "tid": tid,
                            "ts": _us(ts), "args": dict(args or {})})

    def lost(self, ts: int, cpu: int, count: int) -> None:
        """Events the kernel lost on `cpu` before `ts` (count -1: unknown)."""
        self._seen(ts)
        self.lost_events += max(count, 0)
        what = f"{count} events lost" if count >= 0 else "events lost (count unknown)"
        self.events.append({"ph": "i", "s": "g", "name": f"{what} on CPU {cpu}", "cat": "lost",
                            "pid": CPU_PROCESS, "tid": CPU_THREAD_BASE + cpu, "ts": _us(ts),
                            "args": {"cpu": cpu, "count": count}})

    # -- output ----------------------------------------------------------------------------------
    def finish(self, end_ts: int | None = None) -> None:
        """Close the CPU slices still open at the end of the trace."""
        end = end_ts if end_ts is not None else self.last_ts
        for cpu in list(self._running):
            self._close_cpu(cpu, end if end is not None else self._running[cpu][0])

    def metadata(self) -> list[dict]:
        out = []
        if self.cpus:
            out.append({"ph": "M", "name": "process_name", "pid": CPU_PROCESS, "tid": 0, "args": {"name": "CPUs"}})
            out.append({"ph": "M", "name": "process_sort_index", "pid": CPU_PROCESS, "tid": 0,
                        "args": {"sort_index": -1}})
            for cpu in sorted(self.cpus):
                tid = CPU_THREAD_BASE + cpu
                out.append({"ph": "M", "name": "thread_name", "pid": CPU_PROCESS, "tid": tid,
                            "args": {"name": f"CPU {cpu}"}})
                out.append({"ph": "M", "name": "thread_sort_index", "pid": CPU_PROCESS, "tid": tid,
                            "args": {"sort_index": cpu}})
        for pid, name in sorted(self.processes.items()):
            if name:
                out.append({"ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": name}})
        for tid, (pid, name) in sorted(self.threads.items()):
            if name:
                out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
        return out

    def trace_events(self) -> list[dict]:
        self.finish()
        # Sorted by time, longer slices first at equal start: viewers nest them in that order.
        body = sorted(self.events, key=lambda e: (e["ts"], -e.get("dur", 0)))
        return self.metadata() + body

    def document(self) -> dict:
        return {"traceEvents": self.trace_events(), "displayTimeUnit": "ns",
                "otherData": {"producer": "rawtrace", "clock_ns": self.ns, "slices": self.slices,
                              "lost_events": self.lost_events}}

    def write(self, path: str | os.PathLike) -> int:
        """Write the JSON document; returns the number of trace events written."""
        document = self.document()
        from rawtrace.output import replacing_file
        with replacing_file(path, "w", encoding="utf-8") as f:
            f.write('{"traceEvents": [\n')
            events = document["traceEvents"]
            for i, event in enumerate(events):
                f.write(json.dumps(event, ensure_ascii=True, separators=(",", ":")))
                f.write(",\n" if i + 1 < len(events) else "\n")
            f.write("],\n")
            f.write(f'"displayTimeUnit": "ns", "otherData": {json.dumps(document["otherData"])}}}\n')
        return len(document["traceEvents"])
