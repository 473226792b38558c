"""Live tracing as a library: a thin facade over the event pipeline (rawtrace.sources, rawtrace.stream).

Example::

    import rawtrace.session as rs

    with rs.Session(events=["syscalls:sys_enter_openat", "syscalls:sys_exit_openat"], pid=1234) as s:
        for ev in s.events(duration=5):
            if isinstance(ev, rs.LostEvents):
                print("lost", ev.count, "on cpu", ev.cpu)
            else:
                print(f"{ev.ts:.6f} {ev.comm}-{ev.tid} {ev.name} {ev.fields} {ev.syscall or ''}")
    print(s.summary)          # events, lost, duration, per-CPU kernel overrun counts

`Session(...)` options: `events` (names, system:event, globs, as `rawtrace format` takes them), `probes`
(uprobe specs), `filter` (kernel filter expression), `pid` / `pids`, `comm`, `cgroup` (a cgroup directory),
`buffer_kb`, `clock` ("mono" by default: timestamps are CLOCK_MONOTONIC seconds), `pair` (pair syscall
enter/exit per thread into one strace-like line), `show_helpers` (also yield the fork/exec/rename events
used for process names), `spool` (copy pages through a spooler child process, see
rawtrace.tracefs.spool: lossless under floods however slowly events are consumed; off by default in the
library so that no child process appears in the caller's program unasked; `rawtrace trace` turns it on),
`spool_mb` (the most unconsumed spool kept before the kernel is left to overwrite). Entering the context
creates everything; leaving it (normally, by an exception, or by SIGTERM/SIGHUP turned into SystemExit by
`rawtrace trace`) removes everything again.

Each yielded TraceEvent has `pid` (the process, tgid) and `tid` (the thread); a paired syscall is one
TraceEvent whose `syscall` is the strace-like text and whose `call` is the structured
rawtrace.syscalls.calls.Syscall.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rawtrace.errors import UsageError
from rawtrace.host import Host
from rawtrace.sources import LiveOptions, LiveSource, LostFromStats, cgroup_pids, filter_identifiers
from rawtrace.tracers.base import Needs, Tool

__all__ = ["LostEvents", "Session", "Summary", "TraceEvent", "cgroup_pids", "filter_identifiers"]


@dataclass(slots=True)
class TraceEvent:
    """One traced event, with its process and name at event time. `ts` is seconds on `Session.clock`
    (raw counts for the counter/x86-tsc clocks); `ts_raw` the trace-clock value."""

    ts: float
    ts_raw: int
    cpu: int
    pid: int
    comm: str
    system: str
    event: str
    fields: dict
    syscall: str | None = None        # strace-like rendering of a paired enter/exit (or unpaired half)
    duration: float | None = None     # seconds between a paired enter and exit
    flags: int = 0
    preempt_count: int = 0
    format: Any = field(default=None, repr=False, compare=False)   # the EventFormat
    tid: int = -1
    call: Any = field(default=None, repr=False, compare=False)     # the Syscall, for paired syscalls

    @property
    def name(self) -> str:
        return f"{self.system}:{self.event}"


@dataclass(frozen=True, slots=True)
class LostEvents:
    """`count` events the kernel overwrote on `cpu` before `ts` (-1: it did not say how many).
    `source` is "page" (the sub-buffer's missed-events flag) or "stats" (per_cpu stats at the end)."""

    ts: float
    cpu: int
    count: int
    source: str = "page"


@dataclass
class Summary:
    events: int = 0
    lost: int = 0
    lost_unknown_pages: int = 0
    duration: float = 0.0
    pages: int = 0
    spooled: bool = False
    spool_peak_bytes: int = 0
    max_lag: float = 0.0
    spool_max_gap: float = 0.0
    kernel_overrun: dict = field(default_factory=dict)
    decode_errors: list = field(default_factory=list)


class _Collector(Tool):
    """The facade's tool: turns records and syscalls into TraceEvents for Session.events()."""

    name = "session"

    def __init__(self, args, ctx) -> None:
        super().__init__(args, ctx)
        self.queue: list = []
        self.session = args.session

    def patterns(self) -> list[str]:
        return list(self.session.patterns)

    def needs(self) -> Needs:
        events = self.ctx.source.resolve(self.session.patterns)
        self.selected = set(events)
        return Needs(events=events, syscalls=self.session.pair)

    def handlers(self):
        from rawtrace.tasks import HELPER_EVENTS
        return {pair: self.on_event for pair in HELPER_EVENTS
                if self.session.show_helpers or pair in self.selected}

    def _seconds(self, ts: int) -> float:
        return ts / 1e9 if self.ctx.ns else float(ts)

    def on_event(self, rec) -> None:
        tasks = self.ctx.tasks
        tid = rec.pid
        fmt = rec.format
        ev = TraceEvent(self._seconds(rec.ts), rec.ts, rec.cpu, tasks.pid(tid), tasks.comm(tid), fmt.system,
                        fmt.name, rec.fields, None, None, rec.flags, rec.preempt_count, fmt, tid)
        if fmt.system in ("syscalls", "raw_syscalls"):
            ev.syscall = self._half_text(ev)
        self.queue.append(ev)

    def _half_text(self, ev: TraceEvent) -> str | None:
        """An enter or exit that is not paired, strace-style (`openat(...` / `<... openat resumed>`)."""
        formatter = self.ctx.formatter
        fields = ev.fields
        if ev.system == "raw_syscalls":
            nr = fields.get("id")
            if ev.event == "sys_enter":
                return formatter.format_raw_call(nr, list(fields.get("args") or ()))
            return f"<... {formatter.resolve(nr)[0] if formatter.resolve(nr) else f'syscall_{nr}'} resumed> = " \
                   f"{formatter.format_raw_return(nr, fields.get('ret'))}"
        if ev.event.startswith("sys_enter_"):
            name = ev.event[10:]
            args = [(f.name, f.type, fields.get(f.name)) for f in ev.format.fields if f.name != "__syscall_nr"]
            return formatter.format_call(name, args)
        if ev.event.startswith("sys_exit_"):
            return formatter.format_resumed(ev.event[9:], fields.get("ret"))
        return None

    def on_syscall(self, call) -> None:
        ctx = self.ctx
        fmt_system = call.signature.system
        ts = call.time
        fields = dict(call.args)
        if call.ret is not None:
            fields["ret"] = call.ret
        event = "sys_enter" if fmt_system == "raw_syscalls" else f"sys_enter_{call.name}"
        if call.status == "resumed":
            event = "sys_exit" if fmt_system == "raw_syscalls" else f"sys_exit_{call.name}"
        duration = call.duration_ns
        if duration is not None:
            duration = duration / 1e9 if ctx.ns else float(duration)
        cpu = call.cpu if call.cpu is not None else call.exit_cpu
        self.queue.append(TraceEvent(self._seconds(ts), ts, cpu, call.pid, call.comm, fmt_system, event, fields,
                                     call.text(ctx.formatter), duration, tid=call.tid, call=call))

    def on_lost(self, lost) -> None:
        self.queue.append(LostEvents(self._seconds(lost.ts), lost.cpu, lost.count,
                                     "stats" if isinstance(lost, LostFromStats) else "page"))


class _Args:
    def __init__(self, session: Session) -> None:
        self.session = session


class Session:
    """A live trace: see the module docstring. Not reusable: one start, one close."""

    def __init__(self, events: list[str] | None = None, *, probes: list[str] | None = None,
                 filter: str | None = None, pid: int | None = None, pids: list[int] | None = None,
                 comm: str | None = None, cgroup: str | Path | None = None, buffer_kb: int | None = None,
                 clock: str = "mono", pair: bool = True, show_helpers: bool = False,
                 host: Host | None = None, instance_name: str | None = None, preflight: bool = True,
                 tick: float = 0.1, spool: bool = False, spool_mb: int | None = None) -> None:
        self.patterns = list(events or [])
        self.probe_specs = list(probes or [])
        if not self.patterns and not self.probe_specs:
            raise UsageError("nothing to trace: name at least one event or --probe")
        self.pair = pair
        self.show_helpers = show_helpers
        self.clock = clock
        self.comm_name = comm
        self.host = host or Host.from_env()
        all_pids = ([pid] if pid is not None else []) + list(pids or [])
        self.options = LiveOptions(probes=self.probe_specs, filter=filter, pids=all_pids, comm=comm, cgroup=cgroup,
                                   buffer_kb=buffer_kb, clock=clock, spool=spool, spool_mb=spool_mb,
                                   instance_name=instance_name, preflight=preflight, tick=tick)
        self.source = LiveSource(self.options, self.host)
        self.summary = Summary(spooled=spool)
        self.stream = None
        self._closed = False

    # -- the pieces callers used to reach ----------------------------------------------------------
    @property
    def instance(self):
        return self.source.instance

    @property
    def pids(self) -> list[int]:
        return self.source.pids

    @property
    def selected(self) -> list[tuple[str, str]]:
        return self.source.selected

    @property
    def filter_skipped(self) -> list[str]:
        return self.source.filter_skipped

    @property
    def comm_filter_in_kernel(self) -> bool:
        return self.source.comm_filter_in_kernel

    @property
    def _source(self):
        return self.source._source

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> Session:  # noqa: PYI034
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        from rawtrace.emit import Emitter
        from rawtrace.stream import Stream
        self.stream = Stream(self.source, _Collector, _Args(self), Emitter(), comm=self.comm_name)
        self.stream.setup()

    def stop(self) -> None:
        """Ask events() to drain what is buffered and return (safe from a signal handler)."""
        self.source.stop_recording()

    def events(self, duration: float | None = None, count: int | None = None) -> Iterator[TraceEvent | LostEvents]:
        """Yield events in timestamp order until `duration` seconds pass, `count` events were yielded,
        stop() is called, or the consumer stops iterating. Lost events are yielded as LostEvents."""
        if self.stream is None:
            raise RuntimeError("Session not started (use it as a context manager)")
        stream = self.stream
        stream.duration = duration
        queue = stream.tool.queue
        yielded = 0
        try:
            for _ in stream.steps():
                if queue:
                    items = list(queue)
                    queue.clear()
                    for item in items:
                        yield item
                        if isinstance(item, TraceEvent):
                            yielded += 1
                            if count is not None and yielded >= count:
                                stream.stop(now=True)
                                return
            for item in queue:
                yield item
            queue.clear()
        finally:
            self._sync_summary(yielded)

    def _sync_summary(self, yielded: int) -> None:
        src = self.source.summary
        summary = self.summary
        summary.events += yielded
        summary.lost = src.lost
        summary.lost_unknown_pages = src.lost_unknown_pages
        summary.duration = src.duration
        summary.pages = src.pages
        summary.spooled = src.spooled
        summary.spool_peak_bytes = src.spool_peak_bytes
        summary.max_lag = src.max_lag
        summary.spool_max_gap = src.spool_max_gap
        summary.kernel_overrun = dict(src.kernel_overrun)
        summary.decode_errors = list(src.decode_errors)

    def close(self) -> None:
        """Remove everything this session created. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self.source.close()
