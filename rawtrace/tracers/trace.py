"""`rawtrace trace` and `rawtrace decode`: every selected event as a line (ftrace-like, or strace-like for
syscalls), live or over a recording, through the one pipeline and the one NDJSON schema."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rawtrace.tracers.base import Needs, Tool, report_run


class Trace(Tool):
    name = "trace"
    help = "trace tracepoints, syscalls and probes from the binary ring buffer"
    has_events_argument = True
    epilog = """\
examples:
  rawtrace trace syscalls:sys_enter_openat syscalls:sys_exit_openat -p 1234
  rawtrace trace 'syscalls:sys_*_openat' -n bash -d 10
  rawtrace trace raw_syscalls:sys_enter --filter 'id == 257' -c 100 --json
  rawtrace trace 'sched:sched_process_*' --cgroup /sys/fs/cgroup/system.slice/ssh.service
  rawtrace trace sched_switch --buffer-kb 8192 --clock boot
  rawtrace trace 'raw_syscalls:*' --json --spool-mb 256 > flood.ndjson
  rawtrace trace -i trace.dat 'syscalls:*'       # the same over a recording

Output: `comm-tid [cpu] seconds: event: fields`, one line per event (ftrace's layout: the number is the
thread id); syscall enter/exit pairs of one thread are joined into one strace-like line with the call's
duration (--no-pair keeps both raw halves). Lost events appear as their own LOST lines and in the
summary; they are never hidden. Pages are copied out of the kernel buffer by a small spooler process at
normal priority (no decoding, so it keeps up with syscall floods) into unlinked files under $TMPDIR;
rawtrace decodes them at nice +19 (--nice), so under a flood it falls behind and catches up later
instead of slowing the traced programs or losing events. -d stops recording on time whatever the lag,
then drains what was recorded. --spool-mb caps that backlog (then the kernel overwrites and the loss
is reported). --no-spool reads the kernel buffer directly. Timestamps are seconds on the instance's
trace clock (mono = CLOCK_MONOTONIC by default). -n is a kernel filter (`comm == "NAME"`: the name at
event time); -p/--cgroup use set_event_pid with event-fork, so children started later are traced too.
Everything rawtrace creates is removed on exit, Ctrl-C, SIGTERM and SIGHUP; after a kill -9 run
`rawtrace reset`."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        from rawtrace.cli.tool import positive_int
        parser.add_argument("events", nargs="*", metavar="EVENT",
                            help="event names, system:event or globs (as `rawtrace format` takes them)")
        parser.add_argument("--probe", action="append", default=[], metavar="SPEC",
                            help="add a uprobe (repeatable; see `rawtrace probes --help`)")
        parser.add_argument("--filter", metavar="EXPR",
                            help="kernel filter expression for the events that have its fields")
        parser.add_argument("-c", "--count", dest="max_events", type=positive_int, metavar="N",
                            help="stop after N events")
        parser.add_argument("--no-pair", action="store_true", help="show syscall enter and exit events separately")
        parser.add_argument("--show-helpers", action="store_true",
                            help="also show the fork/exec/rename/exit events used to track process names")
        parser.add_argument("--raw", action="store_true",
                            help="show event fields as name=value (like trace-cmd report -R), not as the "
                                 "event's print fmt renders them")

    def __init__(self, args, ctx) -> None:
        super().__init__(args, ctx)
        self.shown = 0
        self.done = False
        self.max_events = getattr(args, "max_events", None)
        self.out = ctx.out
        self.write = ctx.out.write
        self.json = ctx.out.json
        self.tasks = ctx.tasks
        self.text = None                 # rawtrace.printfmt.TextRenderer, made in start() unless --raw
        self._shortcut_count = None      # fn() -> the lines the joiner's shortcut wrote (_first_complete)

    def patterns(self) -> list[str]:
        return list(self.args.events)

    def needs(self) -> Needs:
        from rawtrace.errors import UsageError
        source = self.ctx.source
        if not self.args.events and not getattr(self.args, "probe", None) and not getattr(self, "every", False):
            raise UsageError("name at least one EVENT or --probe SPEC")
        if getattr(self, "every", False) and not self.args.events:
            events = None
        else:
            events = source.resolve(self.args.events) if self.args.events else []
        self.selected = set(events or ())
        return Needs(events=events, probes=list(getattr(self.args, "probe", []) or []),
                     syscalls=not self.args.no_pair)

    def handlers(self):
        from rawtrace.tasks import HELPER_EVENTS
        out = {}
        for pair in HELPER_EVENTS:
            if self.args.show_helpers or pair in self.selected or getattr(self, "every", False):
                out[pair] = self.on_event
        return out

    # -- per record -------------------------------------------------------------------------------
    def on_event(self, rec) -> None:
        if self.done:
            return
        tasks = self.tasks
        tid = rec.pid
        if self.json:
            self.write(self.out.event_json(rec, tasks.pid(tid), tasks.comm(tid)) + "\n")
        else:
            self.write(self._event_text(rec, tasks.comm(tid)))
        self._count()

    def _event_text(self, rec, comm: str) -> str:
        from rawtrace.emit import safe, text_timestamp
        from rawtrace.render_event import fields_text, line_prefix, prefixes
        prefix = prefixes.get((comm, rec.pid, rec.cpu)) or line_prefix(comm, rec.pid, rec.cpu)
        fmt = rec.format
        body = self.text.body(rec) if self.text is not None else fields_text(rec.fields, fmt)   # escaped
        return f"{prefix}{text_timestamp(rec.ts, self.ctx.ns)}: {safe(fmt.system)}:{safe(fmt.name)}: {body}\n"

    def batch_handler(self, deliver):
        """Text lines of whole batches in one loop: for each event shown by on_event alone (no task
        table, joiner or filter step), one compiled function per format makes the whole line
        (render_event.compile_line); what it cannot render goes the general way (_event_text, which
        counts the fallback). Other records go to `deliver`."""
        if self.json:
            return None
        stream = self.ctx.stream
        if self.ctx.source.ids and self.on_event not in stream.dispatch.values():
            # No event is shown by on_event (`trace 'raw_syscalls:*'`): the joiner's batch loop, which
            # hands its records on with less work per record than the loop below.
            return None
        from operator import attrgetter

        from rawtrace.parse.record import Event, Rendered
        from rawtrace.printfmt import RENDER_ERRORS
        from rawtrace.render_event import compile_line, fields_body_code
        from rawtrace.render_event import line_prefix as make_prefix
        from rawtrace.render_event import prefixes as known_prefixes
        ns = self.ctx.ns
        names = self.tasks.names.get
        comm_of = self.tasks.comm
        prefixes = known_prefixes.get
        write = self.write
        event_text = self._event_text
        on_event = self.on_event
        text = self.text
        # event ID -> (its line function, None) for on_event's events, (None, the stream's handler) else
        table: dict[int, tuple[Callable | None, Callable | None]] = {}
        table_get = table.get

        def entry_of(rec) -> tuple[Callable | None, Callable | None]:
            fmt = rec.format
            handler = stream.handler_of(rec)
            entry = (None, handler)
            if handler == on_event:
                body = text.body_code(fmt) if text is not None else fields_body_code(fmt)
                try:
                    entry = (compile_line(fmt, body, ns), None)
                except (SyntaxError, ValueError, RecursionError):
                    pass                     # on_event's way
            table[rec.id] = entry
            return entry

        full_lines = self._install_text_decoders(RENDER_ERRORS, names, comm_of)
        # The syscall joiner's raw_syscalls records, decoded straight to its own small tuples.
        joiner = getattr(self.ctx, "joiner", None)
        tuple_handler = (joiner.tuple_handlers(stream.dispatch, getattr(self.ctx.source, "decoders", None))
                         if joiner is not None else {}).get
        text_of = attrgetter("text")
        skip_joins = 0           # batches left before joining a whole batch is tried again

        def batch(records) -> None:
            nonlocal skip_joins
            if self.done:
                return
            # Lines made here are counted in `made`; with -c, self.shown is brought up to date before a
            # handler that may count too. Other records (lost, undecoded) never count.
            room = -1 if self.max_events is None else self.max_events - self.shown
            made = 0
            if full_lines and room < 0:
                if skip_joins:
                    skip_joins -= 1
                else:
                    # Whole lines only (the usual batch when every event has a text decoder): one join.
                    try:
                        write("".join(map(text_of, records)))
                        self.shown += len(records)
                        return
                    except AttributeError:        # a record of another kind: the loop below
                        skip_joins = 16
            for rec in records:
                cls = rec.__class__
                if cls is Rendered and full_lines:
                    line_text = rec.text
                else:
                    if cls is Event:
                        line, handler = table_get(rec.id) or entry_of(rec)
                    elif cls is Rendered:
                        line = handler = None
                    else:
                        line, handler = None, tuple_handler(cls)
                        if handler is None:
                            deliver(rec)
                            continue
                    if line is None and handler is not None:
                        # Another handler's record (the syscall joiner's, the task table's).
                        if room < 0:
                            handler(rec)
                            continue
                        self.shown += made
                        made = 0
                        handler(rec)
                        if self.done:
                            return
                        room = self.max_events - self.shown
                        continue
                    if cls is Event:
                        ts, cpu, tid = rec[0], rec[1], rec[2]
                    else:
                        # Decoded straight to its text (_install_text_decoders) but for the line's start.
                        ts, cpu, tid, _id, body = rec
                    comm = names(tid)
                    if comm is None:
                        comm = comm_of(tid)
                    prefix = prefixes((comm, tid, cpu)) or make_prefix(comm, tid, cpu)
                    if line is not None:
                        try:
                            line_text = line(prefix, rec)
                        except RENDER_ERRORS:
                            line_text = event_text(rec, comm)
                    elif ns:
                        # Seconds and microseconds, rounded (format_timestamp), by slicing the digits.
                        digits = str(ts + 500)
                        if len(digits) < 10:
                            digits = digits.rjust(10, "0")
                        line_text = f"{prefix}{digits[:-9]}.{digits[-9:-3]}: {body}"
                    else:
                        line_text = f"{prefix}{ts}: {body}"
                write(line_text)
                made += 1
                if made == room:
                    self.shown += made - 1
                    self._count()
                    return
            self.shown += made
        return batch

    def _install_text_decoders(self, errors: tuple, names: Callable, comm_of: Callable) -> bool:
        """Have the source decode the records of each event that on_event alone shows (the condition
        batch()'s compiled lines have) straight to their text, remembered per payload: no Event or
        fields dict is built for them, and a record repeating an earlier one is not decoded again.

        When no event can change a task's name during the run (a recording without the task-name
        events), the decoders make whole lines, the line's start included: True then."""
        from rawtrace.render_event import fields_body_code, line_prefix, prefixes, text_template
        from rawtrace.tasks import HELPER_EVENTS
        ctx = self.ctx
        decoders = getattr(ctx.source, "decoders", None)      # (sources of pages have them)
        stream = ctx.stream
        if decoders is None:
            return False
        prefix = None
        if not ctx.live and not set(HELPER_EVENTS) & set(ctx.source.ids.values()):
            def prefix(tid: int, cpu: int) -> str:
                comm = names(tid)
                if comm is None:
                    comm = comm_of(tid)
                return prefixes.get((comm, tid, cpu)) or line_prefix(comm, tid, cpu)
        for event_id, handler in list(stream.dispatch.items()):
            fmt = decoders.format(event_id) if handler == self.on_event else None
            if fmt is None:
                continue
            body = self.text.body_code(fmt) if self.text is not None else fields_body_code(fmt)
            if body.pure:
                decoders.install_text(event_id, text_template(fmt, body), body.values, body.namespace, errors,
                                      prefix=prefix, ns=ctx.ns)
        return prefix is not None

    def on_syscall(self, call) -> None:
        if self.done:
            return
        line = self._call_line
        if line is None:
            line = self._call_line = self.ctx.out.syscall_lines(self.ctx.formatter)
        self.write(line(call))
        self._count()

    def _first_complete(self, *call) -> None:
        """The joiner's shortcut for complete calls (SyscallJoiner.complete), made at the first one: the
        line written by out.complete_writer() where it makes one, else on_syscall's way. (Not with
        -c N: on_syscall counts every line against N.)"""
        from rawtrace.syscalls.calls import complete_call
        on_syscall = self.on_syscall

        def general(*parts) -> None:
            on_syscall(complete_call(*parts))
        made = self.ctx.out.complete_writer(self.ctx.formatter, general)
        if made is None:
            complete = general
        else:
            complete, self._shortcut_count = made
        self.ctx.joiner.complete = complete
        complete(*call)

    def on_lost(self, lost) -> None:
        if self.done:
            return
        from rawtrace.sources import LostFromStats
        self.out.lost(lost, "stats" if isinstance(lost, LostFromStats) else "page")

    def on_unknown(self, rec) -> None:
        self.out.unknown(rec)

    def _count(self) -> None:
        self.shown += 1
        if self.max_events is not None and self.shown >= self.max_events:
            # -c N reached: nothing more is shown, and the trace stops.
            self.max_events = None
            self.done = True
            self.ctx.stop(now=True)

    # -- start and end ----------------------------------------------------------------------------
    def start(self) -> None:
        ctx = self.ctx
        source = ctx.source
        out = ctx.out
        self._call_line = None           # out.syscall_lines(), made at the first syscall
        joiner = getattr(ctx, "joiner", None)
        if joiner is not None and self.max_events is None:
            joiner.complete = self._first_complete
        if not self.json and not getattr(self.args, "raw", False):
            from rawtrace import printfmt
            if source.kind == "trace.dat":
                self.text = printfmt.renderer_for_tracedat(source.dat)
            elif ctx.live:
                self.text = printfmt.renderer_for_host(source.host, source.tracefs)
            else:
                # Raw pages from another machine: its printk_formats if the tracefs copy has them, but
                # not this machine's kallsyms or BTF.
                self.text = printfmt.TextRenderer()
        events = [f"{s}:{n}" for s, n in source.selected if (s, n) in self.selected or not self.selected]
        out.meta(self.name, source.kind, ctx.clock, events=events if self.selected else "all",
                 **({"instance": source.instance.name} if ctx.live else {}))
        if ctx.live:
            scope = []
            if source.pids:
                scope.append(f"pid {','.join(map(str, source.pids))} and children")
            if source.options.comm is not None:
                from rawtrace.emit import safe
                scope.append(f"comm {safe(source.options.comm)}" +
                             ("" if source.comm_filter_in_kernel else " (user-space filter)"))
            if source.filter_skipped:
                out.note(f"note: --filter not applied to {', '.join(source.filter_skipped)} (fields missing)")
            count = len(self.selected | set(source.probe_events))
            out.note(f"Tracing {count} event{'s' if count != 1 else ''}"
                     f"{' for ' + ', '.join(scope) if scope else ''} "
                     f"(clock {ctx.clock}, instance {source.instance.name})... Ctrl-C to end.", prefix=False)

    def finish(self) -> None:
        ctx = self.ctx
        out = ctx.out
        out.flush()
        if self._shortcut_count is not None:
            self.shown += self._shortcut_count()
            self._shortcut_count = None
        summary = ctx.source.summary
        joiner = getattr(ctx, "joiner", None)
        info = {"events": self.shown, "lost": summary.lost, "lost_unknown_pages": summary.lost_unknown_pages,
                "duration": round(summary.duration, 6), "pages": summary.pages,
                "kernel_overrun": summary.kernel_overrun, "spooled": summary.spooled,
                "spool_peak_bytes": summary.spool_peak_bytes, "max_lag": round(summary.max_lag, 6),
                "undecoded_bytes": summary.undecoded_bytes, "recorded": summary.recorded,
                "drain": round(summary.drain, 3)}
        if joiner is not None:
            info["syscalls"] = dict(joiner.counts)
        report_run(out, ctx.source, f"{self.shown} events", info, quiet_offline=True)
        if self.text is not None and self.text.fallbacks:
            shown = ", ".join(f"{name} x{n} ({self.text.reasons.get(name, '?')})"
                              for name, n in self.text.fallbacks.most_common(5))
            out.note(f"note: {self.text.fallback_count()} events shown as raw fields (print fmt not "
                     f"evaluated): {shown}")
        decoders = getattr(ctx.source, "decoders", None)
        if decoders is not None:
            for event_id, reason in sorted(decoders.broken.items()):
                out.note(f"note: event ID {event_id} shown undecoded: {reason}")
            malformed = getattr(decoders, "malformed", {})
            for event_id, count in sorted(malformed.items()):
                reason = getattr(decoders, "malformed_reasons", {}).get(event_id, "")
                out.note(f"note: {count} records of event ID {event_id} did not fit their format and are shown "
                         f"undecoded{': ' + reason if reason else ''}")
            for problem in getattr(getattr(ctx.source, "dat", None), "format_errors", ()) or ():
                out.note(f"note: a format in the recording could not be read: {problem}")
            unknown = {i: n for i, n in decoders.unknown.items() if i not in decoders.broken}
            if unknown:
                ids = ", ".join(f"{i} ({n})" for i, n in sorted(unknown.items()))
                where = getattr(ctx.source, "formats_from", None) or getattr(ctx.source, "path", "the recording")
                out.note(f"note: records of event IDs with no format in {where}: {ids}")
        if ctx.source.summary.decode_errors:
            self.exit_status = 1


class Decode(Trace):
    """`rawtrace decode FILE...`: the trace tool over a recording, every event by default."""

    name = "decode"
    help = "decode a trace.dat or saved trace_pipe_raw sub-buffers offline"
    every = True
    epilog = """\
Each FILE holds raw sub-buffers as read from per_cpu/cpuN/trace_pipe_raw, for example saved on a
device without rawtrace by:  cat /sys/kernel/tracing/per_cpu/cpu0/trace_pipe_raw > cpu0.raw
The formats and sub-buffer layout come from --tracefs DIR: a copy of that device's tracefs (or of
its events/ directory); by default the live tracefs of this machine. A FILE's CPU comes from --cpu,
else from a name like cpu0.raw (or a per_cpu/cpu0/ directory), else from its position.
A trace-cmd trace.dat FILE is decoded with the formats it carries (zstd needs the zstd program).
Output and --json are those of `rawtrace trace` (the same pipeline): syscall enter/exit pairs are
joined unless --no-pair; -e keeps only some events.

examples:
  rawtrace decode trace.dat
  rawtrace decode cpu0.raw cpu1.raw --tracefs ./device-tracefs
  rawtrace decode --tracefs ./events --cpu 2 capture.bin
  rawtrace decode trace.dat -e 'sched:*' --json | head
"""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        import sys

        from rawtrace.cli.tool import positive_int
        parser.add_argument("files", nargs="*", metavar="FILE",
                            help="raw sub-buffer files, one per CPU ('-' = stdin); or one trace-cmd trace.dat "
                                 "(-i FILE says the same, as for every tool)")
        parser.add_argument("-e", "--event", dest="events", action="append", default=[], metavar="EVENT",
                            help="only these events (names or globs; repeatable)")
        parser.add_argument("--cpu", type=int, metavar="N", help="the CPU the (single) FILE was read from")
        parser.add_argument("--byteorder", choices=("little", "big"), default=sys.byteorder,
                            help=f"byte order of the traced kernel (default: this machine's, {sys.byteorder})")
        parser.add_argument("-c", "--count", dest="max_events", type=positive_int, metavar="N",
                            help="stop after N events")
        parser.add_argument("--no-pair", action="store_true", help="show syscall enter and exit events separately")
        parser.add_argument("--show-helpers", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--raw", action="store_true",
                            help="show event fields as name=value (like trace-cmd report -R), not as the "
                                 "event's print fmt renders them")


TOOL = Trace
