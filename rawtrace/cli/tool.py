"""The command-line side of every tool: the shared flags, live or offline (-i FILE), signals, the summary.

A tool module (rawtrace/tracers/NAME.py) defines `TOOL = SomeTool`; rawtrace.cli finds it through the
registry and runs it here, so that every tool gets the same flags, the same error handling and the
same clean-up on every exit path."""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys

FORCED_EXIT_AFTER = 5    # seconds a drain after SIGTERM/SIGHUP may take before the exit is forced


def _positive(convert, bad: str = "not a number", small: str = "must be positive", limit: float | None = None):
    """An argparse type: `convert(text)`, which must be > 0 and finite (NaN and inf are not)."""
    def parse(text: str):
        try:
            value = convert(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{bad}: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{small}: {text!r}")
        if limit is not None and not value <= limit:
            raise argparse.ArgumentTypeError(f"too large: {text!r} (at most {limit:g})")
        return value
    return parse


def _ascii_int(text: str) -> int:
    text = text.strip()
    if not (text.isascii() and (text.isdigit() or (text[:1] in "+-" and text[1:].isdigit()))):
        raise ValueError(text)
    return int(text)


pid_type = _positive(_ascii_int, "not a pid", "not a pid", limit=2 ** 22)
positive_int = _positive(_ascii_int, limit=2 ** 62)
# A year of seconds is more than any trace; inf, 1e308 and NaN are refused, not overflowed.
def ascii_float(text: str) -> float:
    # float() takes other scripts' digits ("٣" is 3.0) and "inf"/"nan" spelled any way: ASCII only here.
    if not text.strip().isascii():
        raise ValueError(text)
    return float(text)


seconds_type = _positive(ascii_float, limit=366 * 86400.0)


def int_between(low: int, high: int):
    """An argparse type: an ASCII integer from `low` to `high`."""
    def parse(text: str) -> int:
        try:
            value = _ascii_int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}: {text!r}")
        return value
    return parse


def add_shared_arguments(parser: argparse.ArgumentParser, tool_class) -> None:
    """The flag vocabulary every tool shares (see rawtrace.tracers.base)."""
    group = parser.add_argument_group("common options")
    group.add_argument("-p", "--pid", action="append", type=pid_type, default=[], metavar="PID",
                       help="only this process and its children started during the trace (repeatable)")
    group.add_argument("-t", "--tid", action="append", type=pid_type, default=[], metavar="TID",
                       help="only this thread (repeatable)")
    group.add_argument("-n", "--comm", metavar="NAME", help="only tasks named NAME at event time")
    group.add_argument("-d", "--duration", type=seconds_type, metavar="SECONDS",
                       help="stop after SECONDS (offline: of trace time from the first event)")
    group.add_argument("-i", "--input", action="append", default=[], metavar="FILE",
                       help="read a recording (trace.dat, or raw pages with --tracefs DIR) instead of tracing")
    group.add_argument("--json", action="store_true", help="NDJSON output (schema: see the README)")
    live = parser.add_argument_group("live tracing")
    live.add_argument("--buffer-kb", type=positive_int, metavar="N", help="per-CPU ring buffer size in KiB")
    live.add_argument("--clock", default="mono", metavar="CLOCK",
                      help="trace clock (default mono = CLOCK_MONOTONIC)")
    live.add_argument("--cgroup", metavar="DIR", help="only the processes of this cgroup directory")
    live.add_argument("--nice", type=_nice_type, default=19, metavar="N",
                      help="lower rawtrace's CPU priority by N, 0..19 (default 19): when events come faster "
                           "than rawtrace decodes them it falls behind instead of slowing the traced programs")
    live.add_argument("--no-spool", action="store_true",
                      help="decode straight from the kernel buffer (loses events when decoding falls behind)")
    live.add_argument("--spool-mb", type=positive_int, metavar="N",
                      help="most undecoded spool data kept, in MiB (default 1024)")
    if tool_class.summary_tool:
        parser.add_argument("interval", nargs="?", type=seconds_type,
                            help="print a summary every INTERVAL seconds")
        parser.add_argument("count", nargs="?", type=positive_int, help="stop after COUNT intervals")


def _nice_type(text: str) -> int:
    try:
        value = _ascii_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 19:
        raise argparse.ArgumentTypeError(f"--nice lowers priority by 0..19, not {text!r} "
                                         "(rawtrace never raises its own priority)")
    return value


class Signals:
    """SIGINT/SIGTERM/SIGHUP: the first stops recording at once and lets what was recorded be decoded;
    after SIGTERM/SIGHUP that drain is bounded (`drain_limit` seconds, then `on_timeout` stops the
    decoding and the summary says how much was left undecoded). A second signal ends at once, saying so
    (clean-up still runs)."""

    def __init__(self, on_first, on_timeout=None, err=None, drain_limit: float = FORCED_EXIT_AFTER) -> None:
        self.on_first = on_first
        self.on_timeout = on_timeout
        self.err = err or sys.stderr
        self.drain_limit = drain_limit
        self.received: int | None = None
        self.timed_out = False
        self.previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.previous[sig] = signal.signal(sig, self._handle)
        from rawtrace.cli import early_signal
        dropped = early_signal()
        if dropped is not None:
            # A signal during start-up whose quiet exit Python dropped: it stops this run now.
            self._handle(dropped, None)

    def _handle(self, signum, _frame) -> None:
        if self.received is None:
            self.received = signum
            self.on_first()
            if signum != signal.SIGINT:
                self.previous.setdefault(signal.SIGALRM, signal.signal(signal.SIGALRM, self._alarm))
                signal.setitimer(signal.ITIMER_REAL, self.drain_limit)
            return
        self._say("\nrawtrace: second signal: ending now, without the rest of the output\n")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def _alarm(self, _signum, _frame) -> None:
        if not self.timed_out and self.on_timeout is not None:
            # Stop decoding; the summary is still printed. If even that is stuck (a full pipe nobody
            # reads), the next alarm ends the run.
            self.timed_out = True
            self.on_timeout()
            signal.setitimer(signal.ITIMER_REAL, 2.0)
            return
        self._say(f"\nrawtrace: still not done {self.drain_limit:g} s after the signal: ending now\n")
        raise SystemExit(128 + (self.received or signal.SIGTERM))

    def _say(self, text: str) -> None:
        try:
            self.err.write(text)
            self.err.flush()
        except (OSError, ValueError):
            pass

    def restore(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def make_source(args, host, tool_class):
    """The live source, or the offline one for -i FILE."""
    if args.input:
        from rawtrace.sources import open_input
        return open_input(args.input, host, cpu=getattr(args, "cpu", None),
                          byteorder=getattr(args, "byteorder", None))
    from rawtrace.sources import LiveOptions, LiveSource
    options = LiveOptions(probes=list(getattr(args, "probe", []) or []), filter=getattr(args, "filter", None),
                          pids=list(args.pid), comm=args.comm, cgroup=args.cgroup, buffer_kb=args.buffer_kb,
                          clock=args.clock, spool=not args.no_spool, spool_mb=args.spool_mb)
    return LiveSource(options, host)


def run_tool(tool_class, args, host) -> int:
    """Run one tool over its source, with signals, priority and clean-up handled."""
    from rawtrace.emit import Emitter
    from rawtrace.sources import check_comm
    from rawtrace.stream import Stream
    if args.comm is not None:
        check_comm(args.comm)
    source = make_source(args, host, tool_class)
    out = Emitter(json=args.json, ns=True)
    atexit.register(source.close)
    holder: list = []

    def give_up() -> None:
        if holder:
            holder[0].give_up()
    signals = Signals(source.stop_recording, give_up)
    try:
        with source:
            out.ns = source.ns
            stream = Stream(source, tool_class, args, out, interval=getattr(args, "interval", None),
                            count=getattr(args, "count", None), duration=args.duration, pids=args.pid,
                            tids=args.tid, comm=args.comm)
            holder.append(stream)
            stream.setup()
            if source.kind == "live" and args.nice > 0:
                # Only now: the spooler child, forked during setup, keeps the normal priority.
                os.nice(args.nice)
            stream.run()
            out.flush()
            return getattr(stream.tool, "exit_status", 0)
    finally:
        signals.restore()
        atexit.unregister(source.close)


class ToolCommand:
    """Adapts a Tool class to the CLI's command-module protocol (HELP, EPILOG, add_arguments, run)."""

    def __init__(self, tool_class) -> None:
        self.tool = tool_class
        self.HELP = tool_class.help
        self.EPILOG = tool_class.epilog

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        self.tool.add_arguments(parser)
        add_shared_arguments(parser, self.tool)

    def run(self, args, host) -> int:
        files = getattr(args, "files", None)
        if files:
            args.input = list(args.input) + list(files)
        if files is not None and not args.input:
            from rawtrace.errors import UsageError
            raise UsageError("name the recording: FILE (a trace.dat, or raw sub-buffer files) or -i FILE")
        return run_tool(self.tool, args, host)
