"""`rawtrace trace`: trace events live from the binary ring buffer of a private tracefs instance."""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys

HELP = "trace tracepoints, syscalls and probes from the binary ring buffer"
EPILOG = """\
examples:
  rawtrace trace syscalls:sys_enter_openat syscalls:sys_exit_openat --pid 1234
  rawtrace trace 'syscalls:sys_*_openat' --comm bash --duration 10
  rawtrace trace raw_syscalls:sys_enter --filter 'id == 257' --count 100 --json
  rawtrace trace 'sched:sched_process_*' --cgroup /sys/fs/cgroup/system.slice/ssh.service
  rawtrace trace sched_switch --buffer-kb 8192 --clock boot
  rawtrace trace 'raw_syscalls:*' --json --spool-mb 256 > flood.ndjson

Output: `comm-pid [cpu] seconds: event: fields`, one line per event; syscall enter/exit pairs of
one thread are joined into one strace-like line with the call's duration (--no-pair keeps both
raw halves). Lost events appear as their own LOST lines and in the summary; they are never hidden.
Pages are copied out of the kernel buffer by a small spooler process at normal priority (no decoding,
so it keeps up with syscall floods) into unlinked files under $TMPDIR; rawtrace decodes them at
nice +19 (--nice), so under a flood it falls behind and catches up later instead of slowing the traced
programs or losing events. --spool-mb caps that backlog (then the kernel overwrites and the loss is
reported); the summary says how far decoding lagged. --no-spool reads the kernel buffer directly.
Timestamps are seconds on the instance's trace clock (mono = CLOCK_MONOTONIC by default).
--comm is a kernel filter (`comm == "NAME"`: the name at event time); --pid/--cgroup use
set_event_pid with event-fork, so children started later are traced too.
Everything rawtrace creates is removed on exit, Ctrl-C, SIGTERM and SIGHUP; after a kill -9 run
`rawtrace reset`."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", nargs="*", metavar="EVENT",
                        help="event names, system:event or globs (as `rawtrace format` takes them)")
    parser.add_argument("--probe", action="append", default=[], metavar="SPEC",
                        help="add a uprobe (repeatable; see `rawtrace probes --help`)")
    parser.add_argument("--filter", metavar="EXPR", help="kernel filter expression for the events that have its fields")
    parser.add_argument("-p", "--pid", action="append", type=_pid, default=[], metavar="PID",
                        help="trace only this process and its future children (repeatable)")
    parser.add_argument("-n", "--comm", metavar="NAME", help="trace only tasks named NAME at event time")
    parser.add_argument("--cgroup", metavar="DIR", help="trace the processes of this cgroup directory (v1 or v2)")
    parser.add_argument("-d", "--duration", type=_positive_float, metavar="SECONDS", help="stop after SECONDS")
    parser.add_argument("-c", "--count", type=_positive_int, metavar="N", help="stop after N events")
    parser.add_argument("--buffer-kb", type=_positive_int, metavar="N", help="per-CPU ring buffer size in KiB")
    parser.add_argument("--clock", default="mono", metavar="CLOCK",
                        help="trace clock (default mono = CLOCK_MONOTONIC; see the instance's trace_clock)")
    parser.add_argument("--no-pair", action="store_true", help="show syscall enter and exit events separately")
    parser.add_argument("--show-helpers", action="store_true",
                        help="also show the fork/exec/rename events used to track process names")
    parser.add_argument("--nice", type=int, default=19, metavar="N",
                        help="lower rawtrace's CPU priority by N (default 19, the lowest; 0 keeps it): "
                             "when events come faster than rawtrace decodes them, rawtrace falls behind "
                             "and reports the loss instead of slowing the traced programs")
    parser.add_argument("--no-spool", action="store_true",
                        help="decode straight from the kernel buffer (no spooler process; loses events "
                             "when decoding falls behind)")
    parser.add_argument("--spool-mb", type=_positive_int, metavar="N",
                        help="most unconsumed spool data kept, in MiB per run (default 1024)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _positive(convert, bad: str = "not a number", small: str = "must be positive"):
    """An argparse type: `convert(text)`, which must be > 0 (NaN is not)."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{bad}: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{small}: {text!r}")
        return value
    return parse


_pid = _positive(int, "not a pid", "not a pid")
_positive_int = _positive(int)
_positive_float = _positive(float)


FORCED_EXIT_AFTER = 5    # seconds a SIGTERM/SIGHUP drain may take


class _Signals:
    """SIGINT/SIGTERM/SIGHUP: the first asks the session to drain and stop; a second one exits at once
    (the session's context manager still removes the instance)."""

    def __init__(self, session) -> None:
        self.session = session
        self.received: int | None = None
        self.previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        if self.received is None:
            self.received = signum
            self.session.stop()
            if signum != signal.SIGINT:
                # SIGTERM/SIGHUP must end the run even if output is stuck (a full pipe nobody reads):
                # the drain gets a few seconds, then the exit is forced (cleanup still runs).
                self.previous.setdefault(signal.SIGALRM, signal.signal(signal.SIGALRM, self._force))
                signal.alarm(FORCED_EXIT_AFTER)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def _force(self, _signum, _frame) -> None:
        raise SystemExit(128 + (self.received or signal.SIGTERM))

    def restore(self) -> None:
        signal.alarm(0)
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace, host) -> int:
    from rawtrace.errors import UsageError
    from rawtrace.session import Session

    if not args.events and not args.probe:
        raise UsageError("name at least one EVENT or --probe SPEC")
    session = Session(args.events, probes=args.probe, filter=args.filter, pids=args.pid, comm=args.comm,
                      cgroup=args.cgroup, buffer_kb=args.buffer_kb, clock=args.clock, pair=not args.no_pair,
                      show_helpers=args.show_helpers, host=host, spool=not args.no_spool,
                      spool_mb=args.spool_mb)
    # Last resort for paths the context manager cannot cover (an exception inside a signal handler).
    atexit.register(session.close)
    signals = _Signals(session)
    try:
        with session:
            # Only now: the spooler child, forked during start, keeps the normal priority.
            if args.nice > 0:
                os.nice(min(args.nice, 19))
            return _trace(session, args)
    finally:
        signals.restore()
        atexit.unregister(session.close)


def _trace(session, args) -> int:
    from rawtrace.session import LostEvents, TraceEvent
    from rawtrace.session import json_line as event_json
    out = sys.stdout
    err = sys.stderr
    what = f"{len(session.selected)} event{'s' if len(session.selected) != 1 else ''}"
    scope = []
    if session.pids:
        scope.append(f"pid {','.join(map(str, session.pids))} and children")
    if session.comm_name is not None:
        scope.append(f"comm {session.comm_name}" + ("" if session.comm_filter_in_kernel else " (user-space filter)"))
    if session.filter_skipped:
        err.write(f"note: --filter not applied to {', '.join(session.filter_skipped)} (fields missing)\n")
    err.write(f"Tracing {what}{' for ' + ', '.join(scope) if scope else ''} "
              f"(clock {session.clock}, instance {session.instance.name})... Ctrl-C to end.\n")
    err.flush()
    if args.json:
        import json

        from rawtrace.output import json_line
        encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
        meta = {"meta": {"clock": session.clock, "ts_unit": "s" if session.clock != "counter" else "count",
                         "instance": session.instance.name,
                         "events": [f"{s}:{n}" for s, n in session.selected]}}
        json_line(meta, out)
        render = None
    else:
        render = _text_renderer(session)
    write = out.write
    for item in session.events(duration=args.duration, count=args.count):
        if args.json:
            write((event_json(item) if item.__class__ is TraceEvent else encode(item.to_json())) + "\n")
        elif isinstance(item, LostEvents):
            count = "an unknown number of" if item.count < 0 else str(item.count)
            write(f"LOST {count} events on cpu {item.cpu} before {item.ts:.6f} ({item.source})\n")
        else:
            write(render(item))
    out.flush()
    summary = session.summary
    lost = f"{summary.lost} lost" + (f" (+{summary.lost_unknown_pages} pages with an unknown count)"
                                     if summary.lost_unknown_pages else "")
    overrun = ""
    if summary.lost or any(summary.kernel_overrun.values()):
        per_cpu = " ".join(f"cpu{cpu}={count}" for cpu, count in sorted(summary.kernel_overrun.items()))
        overrun = f" (kernel per-CPU overrun: {per_cpu})"
    lag = ""
    if summary.spooled and summary.max_lag >= 0.5:
        lag = (f"; decoding lagged up to {summary.max_lag:.1f} s behind the trace "
               f"(spool peak {summary.spool_peak_bytes / 2**20:.1f} MiB, "
               f"spooler longest pause {summary.spool_max_gap * 1000:.0f} ms)")
    err.write(f"{summary.events} events, {lost}, {summary.duration:.3f} s{overrun}{lag}\n")
    if summary.decode_errors:
        err.write(f"warning: {len(summary.decode_errors)} sub-buffers could not be fully decoded: "
                  f"{summary.decode_errors[0]}\n")
    return 0


def _text_renderer(session):
    """`comm-pid [cpu] seconds: system:event: fields` (ftrace's own layout), or the strace-like syscall line."""
    from rawtrace.render_event import event_line, fields_text, safe_text
    ns = session.clock not in ("counter", "x86-tsc")

    def render(ev) -> str:
        ts = f"{ev.ts:.6f}" if ns else str(ev.ts_raw)
        if ev.syscall is not None:
            tail = f" <{ev.duration:.6f}>" if ev.duration is not None else ""
            shown = safe_text(ev.comm) if ev.comm else "<...>"
            return f"{shown:>16}-{ev.pid:<7} [{ev.cpu:03d}] {ts}: {safe_text(ev.syscall)}{tail}\n"
        return event_line(ev.comm, ev.pid, ev.cpu, ts, ev.name, fields_text(ev.fields, ev.format)) + "\n"
    return render
