"""What a tool is: its events and options, what it does per event and per interval, what it prints at the end.

A tool subclasses `Tool`; the stream (rawtrace.stream) drives it live or over a recording with the same
code, and the CLI (rawtrace.cli.tool) gives it the shared flag vocabulary:

    -p PID      only this process (and its children started during the trace)
    -t TID      only this thread
    -n NAME     only tasks with this name at event time (the kernel's 15-byte name)
    -d SECONDS  stop after SECONDS (live: of recording; offline: of trace time from the first event)
    -i FILE     read a recording (trace.dat, or raw pages with --tracefs DIR) instead of tracing live
    --json      NDJSON output (one schema, see rawtrace.emit)
    [interval [count]]  print (and reset) every `interval` seconds, `count` times (summary tools)

Where bcc tools disagree (bcc's `-p` is a process everywhere; `-t` is a thread in most tools but
"timestamps" in a few), rawtrace's `-p` is always a process and `-t` always a thread.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Needs:
    """What a tool wants from a source.

    `events`: (system, event) pairs to enable and dispatch; `optional_events`: enabled where the kernel
    (or recording) has them; `probes`: probe specs (rawtrace.probes syntax); `syscalls`: pair syscall
    enter/exit into Syscall records for `on_syscall` (the events must be among `events`); `fields`:
    (system, event) → field names to decode (others are skipped: cheaper), None for all; `tasks`: keep
    the task table (pid and comm at event time) fed by the helper events; `unfiltered`: events the -p/-n
    filters must not drop in the kernel (the tool filters them itself)."""

    events: list[tuple[str, str]] = field(default_factory=list)
    optional_events: list[tuple[str, str]] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)
    syscalls: bool = False
    fields: dict[tuple[str, str], set[str] | None] = field(default_factory=dict)
    tasks: bool = True
    unfiltered: set[tuple[str, str]] = field(default_factory=set)
    preflight: set[str] = field(default_factory=set)      # extra doctor needs ("syscalls", "uprobes"...)


class Tool:
    """Base of every tool. Subclasses set `name`, `help`, `epilog`, and override what they use."""

    name = "?"
    help = ""
    epilog = ""
    summary_tool = False       # True: takes [interval [count]] positionals
    has_events_argument = False
    record_types: tuple[str, ...] = ()

    def __init__(self, args: argparse.Namespace, ctx) -> None:
        self.args = args
        self.ctx = ctx

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The tool's own flags (the shared ones are added by rawtrace.cli.tool)."""

    def patterns(self) -> list[str]:
        """Event names or globs the tool needs resolved against the source before needs() (live probes
        and tracepoints are set up from them)."""
        return []

    def needs(self) -> Needs:
        raise NotImplementedError

    def handlers(self) -> dict[tuple[str, str], Callable]:
        """(system, event) → fn(record) for decoded events (record: rawtrace.parse.record.Event)."""
        return {}

    def batch_handler(self, deliver: Callable) -> Callable | None:
        """Optionally, fn(records) to take whole time-ordered batches (a tool's hot loop without a
        function call per record); records it does not handle it passes to `deliver(rec)`. Only used
        when no -p/-t/-n filtering is left to user space."""
        return None

    def on_syscall(self, call) -> None:
        """A finished (or given-up) syscall, when needs().syscalls is set."""

    def on_record(self, rec: Any) -> None:
        """A record of a non-tracefs source (fanotify, proc connector, samplers)."""

    def on_unknown(self, rec: Any) -> None:
        """A record whose event could not be decoded (no or broken format)."""

    def on_lost(self, lost) -> None:
        """Events the kernel lost (overwritten) on a CPU."""

    def on_tick(self, ts: int) -> None:
        """An interval ended at trace time `ts` (summary tools print and reset here)."""

    def start(self) -> None:
        """Everything is set up and recording: the 'Tracing ... Ctrl-C to end.' moment."""

    def finish(self) -> None:
        """The trace ended: print what is left."""


def report_run(out, source, what: str, info: dict, extra: list[str] | None = None,
               quiet_offline: bool = False) -> None:
    """The closing summary every tool prints: NDJSON `summary` record, and one stderr line (with losses
    and decode problems said out loud; offline with `quiet_offline` only when there were some)."""
    summary = source.summary
    if out.json:
        out.record("summary", info)
    if quiet_offline and source.kind != "live" and not summary.lost and not summary.lost_unknown_pages:
        _decode_problems(out, summary)
        return
    parts = [what]
    lost = f"{summary.lost} lost"
    if summary.lost_unknown_pages:
        lost += f" (+{summary.lost_unknown_pages} pages with an unknown count)"
    parts.append(lost)
    parts += extra or []
    if source.kind == "live":
        parts.append(f"{summary.duration:.3f} s")
        if summary.recorded is not None and summary.drain >= 0.5:
            parts.append(f"recorded for {summary.recorded:.3f} s, then {summary.drain:.1f} s decoding what was "
                         "recorded")
        if summary.lost or any(summary.kernel_overrun.values()):
            per_cpu = " ".join(f"cpu{cpu}={n}" for cpu, n in sorted(summary.kernel_overrun.items()))
            parts.append(f"kernel per-CPU overrun: {per_cpu}")
        if summary.spooled and summary.max_lag >= 0.5:
            parts.append(f"decoding lagged up to {summary.max_lag:.1f} s behind the trace")
    out.note(", ".join(parts), prefix=False)
    note_kernel_warning(out, source)
    if summary.undecoded_bytes:
        out.note(f"warning: the drain after the signal was cut short: {summary.undecoded_bytes / 2**20:.1f} MiB "
                 f"of recorded sub-buffers were not decoded")
    if summary.spooler_exit:
        out.note(f"warning: the spooler process died ({summary.spooler_exit}); pages were read directly "
                 "after that, and what the kernel overwrote meanwhile is counted as lost")
    _decode_problems(out, summary)


def note_kernel_warning(out, source) -> None:
    """Say so when the kernel warned while string-fetching uprobes were set (rawtrace.probes says why)."""
    before = getattr(source, "taint_at_start", None)
    if before is None:
        return
    from rawtrace.probes import new_kernel_warning
    line = new_kernel_warning(before, getattr(source, "host", None))
    if line is not None:
        out.note(line)


def _decode_problems(out, summary) -> None:
    errors = summary.decode_errors
    if errors:
        more = f" (and {len(errors) - 1} more sub-buffers)" if len(errors) > 1 else ""
        out.note(f"{errors[0]}{more}")
