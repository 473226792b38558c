"""One time-ordered stream: a source's records dispatched to the task table, the syscall joiner and a tool.

`Stream(source, tool_class, args)` sets everything up (the tool's events, the helper events that keep
the task table, syscall pairing), then `run()` feeds each record, in time order, to the handlers
registered for its event ID, calls the tool's interval ticks, and its finish step. Lost markers reach
the joiner (calls in flight become suspect) and the tool. The same code runs live and offline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rawtrace.errors import UsageError
from rawtrace.parse.record import Event, Lost, UnknownEvent
from rawtrace.tasks import HELPER_EVENTS, TaskTable


class Context:
    """What a tool sees besides its arguments: the task table, the output layer, the source, and the
    syscall formatter of the traced machine's arch."""

    def __init__(self, source, out, arch: str) -> None:
        self.source = source
        self.out = out
        self.arch = arch
        proc, comms, tgids = source.task_seed()
        self.tasks = TaskTable(proc, comms, tgids, arch)
        self.stream: Stream | None = None
        self._formatter = None
        self.live = source.kind == "live"

    @property
    def clock(self) -> str:
        return self.source.clock

    @property
    def ns(self) -> bool:
        return self.source.ns

    def seconds(self, ts: int) -> float:
        return ts / 1e9 if self.source.ns else float(ts)

    @property
    def formatter(self):
        if self._formatter is None:
            from rawtrace.syscalls.calls import table_resolver
            from rawtrace.syscalls.render import SyscallFormatter
            resolve = table_resolver(self.arch, self.source.format)

            def resolver(nr: int):
                signature = resolve(nr, "")
                return (signature.name, list(signature.params)) if signature else None
            self._formatter = SyscallFormatter(self.arch, resolver=resolver)
        return self._formatter

    def stop(self, now: bool = False) -> None:
        """End the trace: what was recorded is still delivered, unless `now`."""
        if self.stream is not None:
            self.stream.stop(now)


class Stream:
    """Drives one tool over one source. See the module docstring."""

    def __init__(self, source, tool_class, args, out, *, arch: str | None = None, interval: float | None = None,
                 count: int | None = None, duration: float | None = None, pids: list[int] | None = None,
                 tids: list[int] | None = None, comm: str | None = None) -> None:
        self.source = source
        self.ctx = ctx = Context(source, out, arch or source.arch())
        ctx.stream = self
        self.tool = tool_class(args, ctx)
        self.interval = interval
        self.count = count
        self.duration = duration
        self.pids = set(pids or ())
        self.tids = set(tids or ())
        self.comm = comm
        self.joiner = None
        self._stopped = False
        self.records = 0
        self.ticks = 0

    # -- setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        source, tool, ctx = self.source, self.tool, self.ctx
        live = source.kind == "live"
        if live:
            source.prepare(tool.patterns(), getattr(tool, "preflight_needs", set()))
        needs = tool.needs()
        self.all_events = needs.events is None
        if self.all_events:
            if live:
                raise UsageError("tracing every event live is not supported: name the events")
            needs.events = []
        if live and needs.probes and not source.probe_events:
            source.options.probes = list(needs.probes)
            source.prepare([])
        events = list(dict.fromkeys(needs.events))
        for pair in events:
            if not source.available(*pair):
                raise UsageError(f"this {'kernel' if live else 'recording'} has no event {pair[0]}:{pair[1]}")
        events += [e for e in needs.optional_events if e not in events and source.available(*e)]
        if live:
            events += [e for e in source.probe_events if e not in events]
        helpers = [h for h in HELPER_EVENTS if needs.tasks and h not in events and source.available(*h)]
        self.helpers = helpers
        all_events = events + helpers
        wanted = dict(needs.fields)
        if live:
            if self.duration is not None:
                source.options.duration = self.duration
            source.open(all_events, wanted=wanted, unfiltered=set(helpers) | needs.unfiltered)
            if needs.tasks:
                ctx.tasks.snapshot(source.pids or None)
        else:
            source.open(None if self.all_events else all_events, wanted=wanted)
        self.events = events
        self._build_dispatch(needs, helpers)
        # The -d timer starts now, before rawtrace lowers its priority (a thread created later would
        # inherit nice 19 and could be starved under a flood: recording would stop late).
        self._timer_started = False
        if live and self.duration is not None:
            source.stop_after(self.duration)
            self._timer_started = True

    def _build_dispatch(self, needs, helpers) -> None:
        source, tool, ctx = self.source, self.tool, self.ctx
        self._per_event: dict[tuple[str, str], list[Callable]] = {}
        per_event = self._per_event
        if needs.tasks:
            for pair, fn in ctx.tasks.handlers().items():
                per_event.setdefault(pair, []).append(fn)
        self._syscall_events = None if self.all_events else set(self.events)
        if needs.syscalls:
            from rawtrace.syscalls.calls import SyscallJoiner, table_resolver
            from rawtrace.syscalls.tables import load_table
            resolve = table_resolver(ctx.arch, source.format)
            native = load_table(ctx.arch).arch.abis[0].name
            self.joiner = joiner = SyscallJoiner(ctx.tasks, tool.on_syscall, resolve, native, abis=ctx.tasks.abis)
            ctx.joiner = joiner
            per_event.setdefault(("sched", "sched_process_exit"), []).append(
                lambda rec: joiner.thread_exit(rec.fields.get("pid", rec.pid)))
        self._tool_handlers = tool.handlers()
        self._fallback = getattr(tool, "on_event", None)
        self.dispatch: dict[int, Callable] = {}
        self._user_filter = self._make_filter()
        for event_id, pair in source.ids.items():
            self.dispatch[event_id] = self._handler_for(pair)

    def _handler_for(self, pair: tuple[str, str]) -> Callable:
        """The one function that handles every record of an event: task table, joiner, tool, chained."""
        # The task table sees every task; -p/-t/-n (where not done in the kernel) filter the rest.
        table_fns = list(self._per_event.get(pair, ()))
        fns = []
        if self.joiner is not None:
            joined = self.joiner.handler_for(pair, self.source.format, self._syscall_events)
            if joined is not None:
                fns.append(joined)
        tool_fn = self._tool_handlers.get(pair)
        if tool_fn is not None:
            fns.append(tool_fn)
        elif not fns and not table_fns and self._fallback is not None:
            fns.append(self._fallback)
        if fns and self._user_filter is not None:
            fns = [_filtered(self._user_filter, fns[0] if len(fns) == 1 else _chain(fns))]
        fns = table_fns + fns
        if not fns:
            return _ignore
        return fns[0] if len(fns) == 1 else _chain(fns)

    def handler_of(self, rec) -> Callable:
        """The one function that handles every record of `rec`'s event (set up on first sight when the
        events were not known in advance)."""
        handler = self.dispatch.get(rec.id)
        if handler is None:
            handler = self._late_handler(rec)
        return handler

    def _late_handler(self, rec) -> Callable:
        """A record of an event not set up in advance (decoding every event of a recording)."""
        fmt = rec.format
        handler = self.dispatch[rec.id] = self._handler_for((fmt.system, fmt.name))
        return handler

    def _make_filter(self) -> Callable[[Any], bool] | None:
        """User-space -p/-t/-n filtering, where the kernel did not already do it."""
        source = self.source
        live = source.kind == "live"
        pids = set() if live else set(self.pids)         # live: set_event_pid with event-fork
        tids = set(self.tids)
        comm = None if (live and source.comm_filter_in_kernel) else self.comm
        if not pids and not tids and comm is None:
            return None
        tasks = self.ctx.tasks
        if pids:
            # Children forked during the trace belong to the traced process tree.
            def follow(what: str, rec) -> None:
                if what in ("newtask", "fork"):
                    child = rec.fields.get("child_pid", rec.fields.get("pid"))
                    if tasks.pid(rec.pid) in pids and child is not None:
                        pids.add(tasks.pid(child))
            tasks.listeners.append(follow)

        def keep(rec) -> bool:
            tid = rec.pid
            if tids and tid not in tids:
                return False
            if pids and tasks.pid(tid) not in pids:
                return False
            return comm is None or tasks.comm(tid) == comm
        return keep

    # -- running ---------------------------------------------------------------------------------
    def stop(self, now: bool = False) -> None:
        """Stop recording; with `now`, also stop delivering (what is left is dropped, e.g. after -c N)."""
        self._stopped = True
        if now:
            self._halted = True
        self.source.stop_recording()

    def give_up(self) -> None:
        """Stop decoding what is left (after a signal, when the drain took too long): what the spool still
        holds is counted as recorded but not decoded, and said in the summary."""
        backlog = getattr(self.source, "backlog_bytes", None)
        self.undecoded_bytes = backlog() if backlog is not None else 0
        self.source.summary.undecoded_bytes = self.undecoded_bytes
        self.stop(now=True)

    def _status(self, now: float) -> None:
        """The status line on stderr (a terminal only) while recording or draining."""
        source = self.source
        summary = source.summary
        if source.recording:
            text = f"{self.records} records, {summary.lost} lost"
            if summary.max_lag >= 1:
                text += f", decoding {summary.max_lag:.0f} s behind"
        else:
            left = source.backlog_bytes() / 2 ** 20
            text = f"recording stopped; decoding what was recorded: {left:.1f} MiB left ({self.records} records so far)"
        self.ctx.out.status(text + " ")

    def run(self) -> None:
        """Set up (unless done), deliver every record, tick, finish."""
        for _ in self.steps():
            pass

    def steps(self):
        """run() one batch at a time: yields after each batch (the library facade pulls through this)."""
        if not hasattr(self, "dispatch"):
            self.setup()
        source, tool = self.source, self.tool
        live = source.kind == "live"
        if live and self.duration is not None and not self._timer_started:
            source.stop_after(self.duration)
        tool.start()
        dispatch = self.dispatch
        get = dispatch.get
        joiner = self.joiner
        interval_ns = int(self.interval * 1e9) if self.interval and source.ns else \
            (int(self.interval) if self.interval else None)
        next_tick = None
        end_ts = None
        first_ts = None
        records = 0
        self._halted = False
        all_events = self.all_events
        drain = self.ctx.out.drain

        def other(rec) -> None:
            """Lost markers, undecoded records and the records of other sources."""
            if isinstance(rec, Lost):
                if joiner is not None:
                    joiner.lost(rec.cpu, rec.count)
                tool.on_lost(rec)
            elif rec.__class__ is UnknownEvent:
                if all_events or rec.id in source.ids or getattr(rec, "reason", None):
                    tool.on_unknown(rec)
            else:
                tool.on_record(rec)

        def deliver(rec) -> None:
            """One record, as the loop below handles it (for a tool's own batch loop)."""
            if rec.__class__ is Event:
                self.handler_of(rec)(rec)
            else:
                other(rec)
        # A tool may take whole batches (its hot loop without a call per record); what it does not
        # handle itself it hands back to deliver().
        fast = tool.batch_handler(deliver) if self._user_filter is None else None
        if fast is None and joiner is not None and self._user_filter is None:
            fast = joiner.batch_handler(dispatch, deliver, getattr(source, "decoders", None))
        show_status = live and self.ctx.out.wants_status(getattr(tool, "summary_tool", False))
        next_status = time.monotonic() + 1.0
        for batch in source.batches():
            if not batch:
                if interval_ns is not None and live:
                    now = source.now()
                    if now is not None and next_tick is not None and now >= next_tick:
                        next_tick = self._tick(now, next_tick, interval_ns)
                yield
                continue
            if first_ts is None:
                first_ts = batch[0].ts
                if interval_ns is not None:
                    next_tick = first_ts + interval_ns
                if not live and self.duration is not None:
                    end_ts = first_ts + (int(self.duration * 1e9) if source.ns else int(self.duration))
            if end_ts is not None and batch[-1].ts > end_ts:
                batch = [rec for rec in batch if rec.ts <= end_ts]
                self._stopped = self._halted = True
            records += len(batch)
            if fast is not None:
                fast(batch)
            else:
                for rec in batch:
                    if rec.__class__ is Event:
                        handler = get(rec.id)
                        if handler is None:
                            handler = self._late_handler(rec)
                        handler(rec)
                    else:
                        other(rec)
            if next_tick is not None and batch and batch[-1].ts >= next_tick:
                next_tick = self._tick(batch[-1].ts, next_tick, interval_ns)
            drain()
            if show_status and time.monotonic() >= next_status:
                next_status = time.monotonic() + 1.0
                self.records = records
                self._status(next_status)
            yield
            if self._halted or (self._stopped and not live):
                break
        self.records = records
        self.ctx.out.clear_status()
        if joiner is not None and not self._halted:
            joiner.flush()
        if interval_ns is not None and not self._stopped_by_count():
            tool.on_tick(end_ts or (source.now() if live else None) or 0)
        tool.finish()
        self.ctx.out.drain()

    def _tick(self, now: int, next_tick: int, interval_ns: int) -> int:
        while now >= next_tick:
            self.tool.on_tick(next_tick)
            self.ticks += 1
            next_tick += interval_ns
            if self.count is not None and self.ticks >= self.count:
                self.stop()
                break
        return next_tick

    def _stopped_by_count(self) -> bool:
        return self.count is not None and self.ticks >= self.count


def _filtered(keep: Callable, fn: Callable) -> Callable:
    def filtered(rec) -> None:
        if keep(rec):
            fn(rec)
    return filtered


def _ignore(rec) -> None:
    pass


def _chain(fns: list[Callable]) -> Callable:
    def call_all(rec) -> None:
        for fn in fns:
            fn(rec)
    return call_all

