"""`rawtrace sched`: which tasks are runnable but wait for a CPU, and for how long (runqlat and runqslower).

Three sources, one vocabulary of flags and output:

* the ring buffer (default): sched_switch, sched_wakeup, sched_wakeup_new and sched_migrate_task fed to
  rawtrace.sched_latency, live or over a recording (-i FILE): every single wait, exactly;
* the kernel's hist triggers (--in-kernel, where the kernel has them): rawtrace.tracefs.histtrigger;
* /proc/PID/task/TID/schedstat and PSI (--source schedstat, and automatically when tracefs is refused,
  e.g. by confidentiality lockdown): rawtrace.schedstat, sampled totals per interval.

This module is a command module (HELP, EPILOG, add_arguments, run) rather than a bare `TOOL`, because
the choice of source happens before the event pipeline exists; the ring-buffer path is the `SchedTool`
below, run by rawtrace.cli.tool like every other tool.
"""

from __future__ import annotations

import argparse
import math
import time

from rawtrace.errors import UsageError
from rawtrace.histogram import Log2Histogram
from rawtrace.sched_latency import SchedLatency, task_report_max
from rawtrace.tasks import UNKNOWN
from rawtrace.tracers.base import Needs, Tool

SWITCH, WAKEUP, WAKEUP_NEW, MIGRATE, EXIT = (("sched", "sched_switch"), ("sched", "sched_wakeup"),
                                             ("sched", "sched_wakeup_new"), ("sched", "sched_migrate_task"),
                                             ("sched", "sched_process_exit"))
LIST_DEFAULT_MS = 10.0      # runqslower's default threshold (10000 us)

HELP = "run-queue latency: which tasks wait for a CPU and how long (runqlat/runqslower)"
EPILOG = """\
examples:
  rawtrace sched                        # one histogram of every wait for a CPU, until Ctrl-C
  rawtrace sched -P --min-ms 5          # per process, only waits over 5 ms, most waiting first
  rawtrace sched --list --min-ms 5      # each wait over 5 ms as it ends (runqslower), then a ranking
  rawtrace sched -L -p 1234 -m 1 10     # threads of process 1234, in ms, every second, 10 times
  rawtrace sched -i trace.dat --json    # over a recording, as NDJSON
  rawtrace sched --source schedstat -d 10   # /proc/PID/schedstat totals (works under lockdown)
  rawtrace sched --in-kernel -d 10      # histogram computed by the kernel's hist triggers

What is measured: the time from the moment a task is on a run queue until the sched_switch that puts it
on a CPU. It is on a run queue after sched_wakeup (fired once the task is enqueued; sched_waking fires
earlier, before the task may even have left its previous CPU, so it is not used), after
sched_wakeup_new (a new task; this also resets whatever was known about a reused tid), and after being
switched out still runnable: prev_state R, or R+ (TASK_REPORT_MAX, 0x100 since Linux 4.14: preempted),
tested as prev_state & (TASK_REPORT_MAX-1) == 0 -- bpftrace's runqlat.bt compares with 0 and misses
every preemption. A wakeup of a task that already waits keeps the earlier start; migration between
run queues does not end a wait. The idle task (pid 0) is never counted.

Lost events: a gap on any CPU drops every wait open at that moment (it may have ended, or the task
moved, inside the gap); they are counted and reported, never guessed. -p/-t/-n select by the task that
waits (not by the task that woke it or ran before it). With -p the kernel records only switches and
wakeups that involve the process (and its new children); otherwise expect one sched_switch per context
switch on the machine. rawtrace's own threads are left out of the trace, and so are their waits.

Output: bcc runqlat's "usecs : count distribution" rows (--hist-style bpftrace for [lo, hi) rows).
--list columns: TIME(s) COMM PID TID LAT PREV_COMM PREV_TID CPU (runqslower's, plus the CPU).
--json: `sched` records per interval, one per process (-P, the default in JSON) or thread (-L) and one
with group "all": pid, tid, comm, count, total_ns, max_ns, unit and buckets [{lo, hi, count}] in that
unit; `sched_wait` records for --list; a `summary` at the end.

On a kernel whose tracefs is refused (confidentiality lockdown) rawtrace samples
/proc/PID/task/TID/schedstat (run_delay, pcount) and /proc/pressure/cpu instead and says so: totals per
interval and PSI averages, not per-wakeup histograms. --in-kernel needs CONFIG_HIST_TRIGGERS and
CONFIG_SYNTH_EVENTS; it measures wakeup-to-run waits only (not waits after a preemption), in whole us."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rawtrace.cli.tool import add_shared_arguments
    SchedTool.add_arguments(parser)
    add_shared_arguments(parser, SchedTool)


def run(args, host) -> int:
    """Choose the source (schedstat, in-kernel, ring buffer) and run."""
    _check_args(args)
    source = args.source
    if source == "auto":
        source = "tracefs"
        if not args.input:
            from rawtrace.schedstat import tracefs_refusal
            refusal = tracefs_refusal(host)
            if refusal is not None:
                if args.in_kernel or args.list:
                    from rawtrace.errors import TracingBlocked
                    raise TracingBlocked(refusal, hint="leave out --in-kernel/--list to get the schedstat "
                                                       "fallback, which needs no tracefs")
                import sys
                sys.stderr.write(f"rawtrace: tracefs cannot be used ({refusal}); falling back to "
                                 "/proc/PID/task/TID/schedstat\n")
                source = "schedstat"
    if source == "schedstat":
        return run_schedstat(args, host)
    if args.in_kernel:
        return run_in_kernel(args, host)
    from rawtrace.cli.tool import run_tool
    return run_tool(SchedTool, args, host)


def _check_args(args) -> None:
    if args.source == "schedstat" and args.input:
        raise UsageError("--source schedstat samples the running machine; it cannot read a recording (-i)")
    if args.source == "schedstat" and (args.list or args.in_kernel):
        raise UsageError("--source schedstat has per-thread totals only: no --list and no --in-kernel")
    if args.in_kernel and args.input:
        raise UsageError("--in-kernel computes the histogram in the running kernel; it cannot read a recording")
    if args.in_kernel and args.list:
        raise UsageError("--in-kernel gives histograms only; --list needs the ring buffer")
    if sum((args.per_process, args.per_thread, args.per_cgroup)) > 1:
        raise UsageError("-P (per process), -L (per thread), --per-cgroup: choose one")
    if args.per_cgroup and args.input:
        raise UsageError("--per-cgroup reads /proc/PID/cgroup of the running machine; a recording has none")


def _positive_float(text: str) -> float:
    from rawtrace.cli.tool import ascii_float
    try:
        value = ascii_float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"must be a positive number of milliseconds: {text!r}")
    return value


# -- aggregation shared by the ring-buffer and in-kernel paths ---------------------------------------

class _Group:
    """One process's or thread's waits: binned in display units, with exact totals in ns beside."""

    __slots__ = ("comm", "hist", "max_ns", "pid", "tid", "total_ns")

    def __init__(self, pid: int | None, tid: int | None, comm: str) -> None:
        self.pid, self.tid, self.comm = pid, tid, comm
        self.hist = Log2Histogram()
        self.total_ns = 0
        self.max_ns = 0


class WaitSummary:
    """Waits binned per `by` (process, thread, cgroup; "all" keeps process rows for the ranking only), in ns
    in and histograms in `unit_ns` units, filtered by `min_ns` and reported as text or NDJSON."""

    def __init__(self, out, *, unit_ns: int, min_ns: int, by: str, histograms_by_group: bool,
                 top: int | None, style: str, seconds) -> None:
        self.out = out
        self.unit_ns = unit_ns
        self.unit = "msecs" if unit_ns == 1_000_000 else "usecs"
        self.min_ns = min_ns
        self.by = by
        self.histograms_by_group = histograms_by_group
        self.top = top
        self.style = style
        self.seconds = seconds
        self.all = Log2Histogram()
        self.all_ns: list[int] = [0, 0, 0]      # count, total, max of the counted waits in ns
        self.groups: dict[tuple, _Group] = {}
        self.counted = 0
        self.below = 0
        self.intervals = 0

    def add(self, pid: int, tid: int, comm: str, process_comm: str, wait_ns: int, times: int = 1,
            cgroup: str | None = None) -> bool:
        if wait_ns <= self.min_ns and self.min_ns:
            self.below += times
            return False
        self.counted += times
        value = wait_ns // self.unit_ns
        self.all.add(value, times)
        totals = self.all_ns
        totals[0] += times
        totals[1] += wait_ns * times
        totals[2] = max(totals[2], wait_ns)
        by = self.by
        if by == "thread":
            key, make = (pid, tid), (pid, tid, comm)
        elif by == "cgroup":
            key, make = (cgroup,), (None, None, cgroup or "?")
        else:
            key, make = (pid,), (pid, None, process_comm)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(*make)
        group.hist.add(value, times)
        group.total_ns += wait_ns * times
        group.max_ns = max(group.max_ns, wait_ns)
        return True

    def ranked(self) -> list[_Group]:
        rows = sorted(self.groups.values(), key=lambda g: (-g.total_ns, g.pid or 0, g.tid or 0, g.comm))
        return rows[:self.top] if self.top else rows

    def reset(self) -> None:
        self.groups.clear()
        self.all = Log2Histogram()
        self.all_ns = [0, 0, 0]

    def _who(self, group: _Group) -> str:
        from rawtrace.emit import safe
        if self.by == "thread":
            return f"tid = {group.tid} pid = {group.pid} {safe(group.comm)}"
        if self.by == "cgroup":
            return f"cgroup = {safe(group.comm)}"
        return f"pid = {group.pid} {safe(group.comm)}"

    def report(self, ts: int | None, *, ranking: bool, histograms: bool) -> None:
        """Print one interval (ts = its end) or the whole trace (ts None)."""
        from rawtrace.emit import text_timestamp
        out = self.out
        if ts is not None:
            self.intervals += 1
        if out.json:
            stamp = {"interval": self.intervals, "ts": self.seconds(ts)} if ts is not None else {}
            count, total, most = self.all_ns
            out.record("sched", {**stamp, "group": "all", "pid": None, "tid": None, "comm": None, "count": count,
                                 "total_ns": total, "max_ns": most, "unit": self._unit_short(),
                                 "buckets": self.all.buckets()})
            kind = "process" if self.by == "all" else self.by
            for group in self.ranked():
                record = {**stamp, "group": kind, "pid": group.pid, "tid": group.tid, "comm": group.comm}
                if self.by == "cgroup":
                    record = {**stamp, "group": kind, "pid": None, "tid": None, "comm": None, "cgroup": group.comm}
                out.record("sched", {**record, "count": group.hist.count, "total_ns": group.total_ns,
                                     "max_ns": group.max_ns, "unit": self._unit_short(),
                                     "buckets": group.hist.buckets()})
            return
        if ts is not None:
            out.line(f"[{text_timestamp(ts, True)}]")
        per_group = histograms and self.histograms_by_group
        if per_group:
            for group in self.ranked():
                out.line(f"{self._who(group)}: {group.hist.count} waits, total {group.total_ns / 1e6:.3f} ms, "
                         f"max {group.max_ns / 1e6:.3f} ms")
                for line in group.hist.render(self.unit, self.style):
                    out.line(line)
                out.line("")
            if not self.groups:
                out.line("(no waits" + (f" over {self.min_ns / 1e6:g} ms)" if self.min_ns else ")"))
        elif histograms:
            for line in self.all.render(self.unit, self.style):
                out.line(line)
            count, total, most = self.all_ns
            out.line(f"{count} waits" + (f" over {self.min_ns / 1e6:g} ms" if self.min_ns else "") +
                     (f", total {total / 1e6:.3f} ms, max {most / 1e6:.3f} ms" if count else ""))
        if ranking and not per_group:
            self._ranking()
        if ts is not None:
            out.line("")

    def _ranking(self) -> None:
        from rawtrace.emit import safe
        rows = []
        for group in self.ranked():
            if self.by == "cgroup":
                lead = [safe(group.comm)]
            else:
                lead = ([group.tid] if self.by == "thread" else []) + [group.pid, safe(group.comm)]
            rows.append(lead + [group.hist.count, f"{group.total_ns / 1e6:.3f}", f"{group.max_ns / 1e6:.3f}"])
        if rows:
            if self.by == "cgroup":
                lead_headers = ["CGROUP"]
            else:
                lead_headers = (["TID"] if self.by == "thread" else []) + ["PID", "COMM"]
            self.out.table("sched_rank", lead_headers + ["WAITS", "TOTAL ms", "MAX ms"], rows)

    def _unit_short(self) -> str:
        return "ms" if self.unit_ns == 1_000_000 else "us"


def _summary_options(args, out, seconds) -> WaitSummary:
    min_ms = args.min_ms if args.min_ms is not None else (LIST_DEFAULT_MS if args.list else 0.0)
    by = "thread" if args.per_thread else "cgroup" if args.per_cgroup else "process" if args.per_process else "all"
    return WaitSummary(out, unit_ns=1_000_000 if args.milliseconds else 1000, min_ns=int(min_ms * 1e6),
                       by=by, histograms_by_group=by != "all", top=args.top, style=args.hist_style,
                       seconds=seconds)


# -- the ring-buffer tool ------------------------------------------------------------------------------

class SchedTool(Tool):
    name = "sched"
    help = HELP
    epilog = EPILOG
    summary_tool = True
    record_types = ("sched", "sched_wait", "sched_rank")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        from rawtrace.cli.tool import positive_int
        parser.add_argument("-P", "--per-process", action="store_true",
                            help="a histogram per process (pid and name at event time)")
        parser.add_argument("-L", "--per-thread", action="store_true", help="a histogram per thread")
        parser.add_argument("--per-cgroup", action="store_true",
                            help="a histogram per cgroup (v2 path of the process, read from /proc; live only)")
        parser.add_argument("--min-ms", type=_positive_float, metavar="N",
                            help="count only waits longer than N ms; processes sorted by time waited")
        parser.add_argument("--list", action="store_true",
                            help=f"print each wait over --min-ms (default {LIST_DEFAULT_MS:g}) as it ends "
                                 "(runqslower)")
        parser.add_argument("-m", "--milliseconds", action="store_true", help="histograms in ms (default us)")
        parser.add_argument("--top", type=positive_int, metavar="N", help="only the N processes that waited most")
        parser.add_argument("--hist-style", choices=("bcc", "bpftrace"), default="bcc",
                            help="histogram rows like bcc's runqlat (default) or bpftrace's hist()")
        parser.add_argument("--source", choices=("auto", "tracefs", "schedstat"), default="auto",
                            help="auto (default): tracefs, or /proc schedstat when tracefs is refused")
        parser.add_argument("--in-kernel", action="store_true",
                            help="let the kernel's hist triggers compute the histogram (if it has them)")

    def __init__(self, args, ctx) -> None:
        super().__init__(args, ctx)
        fmt = ctx.source.format(*SWITCH)
        self.machine = SchedLatency(task_report_max(fmt.print_fmt if fmt is not None else None))
        self.summary = _summary_options(args, ctx.out, ctx.seconds)
        self.list_ns = self.summary.min_ns
        self.pids: set[int] = set()
        self.tids = set(args.tid)
        self.comm = args.comm
        self.filtered_out = 0
        self.lost_events = 0
        self.lost_after_end = 0
        self._list_header = False
        self.cgroups: dict[int, str] = {}
        self.own: set[int] = set()      # rawtrace's own threads (live), filled in start()

    def needs(self) -> Needs:
        ctx, args = self.ctx, self.args
        if not ctx.ns:
            raise UsageError(f"rawtrace sched needs a nanosecond trace clock, not {ctx.clock!r}")
        # -p/-t/-n are about the task that waits, so the waits are filtered here. In the kernel, -p (and
        # --cgroup) stay as the source sets them, set_event_pid with event-fork: for the sched events the
        # kernel tests the right task -- a switch is kept if either side is listed, a wakeup if the woken
        # task is -- so every event about a listed task arrives and most others do not. A comm filter
        # expression would test common_pid's name (the waker's, the task switched out), so -n is not
        # given to the kernel.
        source, stream = ctx.source, ctx.stream
        if ctx.live:
            self.pids = set(source.pids)
            source.options.comm = None
        else:
            self.pids = set(args.pid)
        if stream is not None:
            stream.pids, stream.tids, stream.comm = set(), set(), None
        if self.pids:
            tasks = ctx.tasks
            pids = self.pids

            def follow(what: str, rec) -> None:
                if what in ("newtask", "fork"):
                    child = rec.fields.get("child_pid", rec.fields.get("pid"))
                    if child is not None and tasks.pid(rec.pid) in pids:
                        pids.add(tasks.pid(child))
            tasks.listeners.append(follow)
        switch_fields = {"prev_comm", "prev_pid", "prev_state", "next_comm", "next_pid"}
        return Needs(events=[SWITCH, WAKEUP], optional_events=[WAKEUP_NEW, MIGRATE],
                     fields={SWITCH: switch_fields, WAKEUP: {"pid", "target_cpu"},
                             WAKEUP_NEW: {"pid", "target_cpu"}, MIGRATE: {"pid", "dest_cpu"}},
                     unfiltered={SWITCH, WAKEUP, WAKEUP_NEW, MIGRATE}, preflight={"tracepoints"})

    def handlers(self):
        machine = self.machine
        on_switch, machine_switch = machine.on_switch, machine.switch
        on_wakeup, on_wakeup_new = machine.on_wakeup, machine.on_wakeup_new
        counted = self._wait
        own = self.own

        def switch(rec) -> None:
            f = rec.fields
            prev, nxt = f["prev_pid"], f["next_pid"]
            if prev in own or nxt in own:
                # rawtrace's own threads count as idle: the kernel leaves most of their events out.
                wait = machine_switch(rec.ts, rec.cpu, 0 if prev in own else prev, f["prev_comm"], f["prev_state"],
                                      0 if nxt in own else nxt, f["next_comm"])
            else:
                wait = on_switch(rec)
            if wait is not None:
                counted(wait)

        def wakeup(rec) -> None:
            if rec.fields["pid"] not in own:
                on_wakeup(rec)

        def wakeup_new(rec) -> None:
            if rec.fields["pid"] not in own:
                on_wakeup_new(rec)
        return {SWITCH: switch, WAKEUP: wakeup, WAKEUP_NEW: wakeup_new, MIGRATE: machine.on_migrate,
                EXIT: self._exit}

    def _wait(self, wait) -> None:
        tasks = self.ctx.tasks
        tid = wait.tid
        pid = tasks.pid(tid)
        if (self.tids and tid not in self.tids) or (self.pids and pid not in self.pids) or \
                (self.comm is not None and wait.comm != self.comm):
            self.filtered_out += 1
            return
        process_comm = wait.comm if pid == tid else tasks.comm(pid)
        if process_comm == UNKNOWN:     # the main thread never seen: name the process after this thread
            process_comm = wait.comm
        cgroup = self._cgroup(pid) if self.summary.by == "cgroup" else None
        if self.summary.add(pid, tid, wait.comm, process_comm, wait.wait_ns, cgroup=cgroup) and self.args.list:
            self._list(wait, pid)

    def _cgroup(self, pid: int) -> str:
        found = self.cgroups.get(pid)
        if found is None:
            found = self.cgroups[pid] = cgroup_of(self.ctx.tasks.proc, pid)
        return found

    def _exit(self, rec) -> None:
        self.machine.on_exit(rec)
        self.cgroups.pop(rec.fields.get("pid"), None)    # a reused pid may live in another cgroup

    def _list(self, wait, pid: int) -> None:
        out = self.ctx.out
        if out.json:
            out.record("sched_wait", {"ts": self.ctx.seconds(wait.end), "comm": wait.comm, "pid": pid,
                                      "tid": wait.tid, "wait_ns": wait.wait_ns, "start": self.ctx.seconds(wait.start),
                                      "prev_tid": wait.prev_tid, "prev_comm": wait.prev_comm, "cpu": wait.cpu,
                                      "cause": wait.cause})
            return
        from rawtrace.emit import safe, text_timestamp
        unit = "ms" if self.args.milliseconds else "us"
        if not self._list_header:
            out.line(f"{'TIME(s)':<16} {'COMM':<16} {'PID':>7} {'TID':>7} {'LAT(' + unit + ')':>12} "
                     f"{'PREV_COMM':<16} {'PREV_TID':>8} CPU")
            self._list_header = True
        lat = wait.wait_ns / (1e6 if self.args.milliseconds else 1e3)
        out.line(f"{text_timestamp(wait.end, True):<16} {safe(wait.comm):<16} {pid:>7} {wait.tid:>7} {lat:>12.3f} "
                 f"{safe(wait.prev_comm):<16} {wait.prev_tid:>8} {wait.cpu}")
        out.flush()

    def on_lost(self, lost) -> None:
        from rawtrace.sources import LostFromStats
        if isinstance(lost, LostFromStats):
            # Found by the kernel's overrun counters at the end: the gap's time is unknown.
            self.lost_after_end += max(lost.count, 0)
        self.lost_events += max(lost.count, 0)
        self.machine.lost(lost.cpu, lost.count)

    def start(self) -> None:
        ctx = self.ctx
        out = ctx.out
        if ctx.live:
            # The source leaves rawtrace's own tasks out (set_event_notrace_pid). For the sched events the
            # kernel applies that to the right task: a switch is kept unless both sides are rawtrace's, a
            # wakeup unless the woken task is. So only rawtrace's own waits go unmeasured. (Clearing the list
            # here would be worse: while the kernel unregisters its pid probes, a CPU whose flag says
            # "ignore" drops every event for a moment, with no lost-events marker.)
            self.own.update(_own_tids(ctx.source))
            out.meta("sched", "live", ctx.clock)
            what = "waits for a CPU" + (f" over {self.summary.min_ns / 1e6:g} ms" if self.summary.min_ns else "")
            out.note(f"Tracing {what} (sched_switch, sched_wakeup)... Ctrl-C to end.")
        else:
            out.meta("sched", ctx.source.kind, ctx.clock)

    def on_tick(self, ts: int) -> None:
        self._report(ts)
        self.summary.reset()

    def finish(self) -> None:
        if not self.args.interval:
            self._report(None)
        from rawtrace.tracers.base import report_run
        machine = self.machine
        info = {"waits": machine.waits, "counted": self.summary.counted, "below_threshold": self.summary.below,
                "filtered_out": self.filtered_out, "invalidated_by_lost": machine.invalidated,
                "lost_gaps": machine.lost_gaps, "start_unknown": machine.unknown_start,
                "unseen_switch_in": machine.unseen_switch_in,
                "open_at_end": machine.open_waits(), "lost": self.ctx.source.summary.lost,
                "duration": round(self.ctx.source.summary.duration, 6)}
        extra = []
        if machine.invalidated:
            extra.append(f"{machine.invalidated} waits open at a lost-events gap dropped")
        if machine.unseen_switch_in:
            extra.append(f"{machine.unseen_switch_in} waits dropped because the switch that ended them was "
                         "not in the trace")
        if self.lost_after_end:
            extra.append(f"{self.lost_after_end} lost events found only in the kernel's counters at the end: "
                         "some waits may be missing")
        report_run(self.ctx.out, self.ctx.source, f"{machine.waits} waits", info, extra=extra)

    def _report(self, ts: int | None) -> None:
        args = self.args
        self.summary.report(ts, ranking=bool(args.min_ms is not None or args.list),
                            histograms=not args.list or self.summary.by != "all")


def _own_tids(source) -> set[int]:
    """The threads of this process and the source's spooler child (the tasks set_event_notrace_pid lists)."""
    import os
    try:
        tids = {int(name) for name in os.listdir("/proc/self/task") if name.isdigit()}
    except OSError:
        tids = {os.getpid()}
    child = getattr(getattr(source, "_source", None), "child", None)   # the Spool's reader process
    if isinstance(child, int) and child > 0:
        tids.add(child)
    return tids


def cgroup_of(proc, pid: int) -> str:
    """The cgroup v2 path of a process (/proc/PID/cgroup's "0::" line; else its first hierarchy), or "?"."""
    from rawtrace.host import read_text_or_none
    text = read_text_or_none(proc / str(pid) / "cgroup") if proc is not None else None
    if not text:
        return "?"
    lines = text.splitlines()
    for line in lines:
        if line.startswith("0::"):
            return line[3:] or "/"
    return lines[0].split(":", 2)[-1] if lines else "?"


# -- the in-kernel path --------------------------------------------------------------------------------

def run_in_kernel(args, host) -> int:
    """Hist triggers and a synthetic event compute (tid, latency) counts; rawtrace bins and prints them."""
    from rawtrace import doctor
    from rawtrace.emit import Emitter
    from rawtrace.tasks import TaskTable
    from rawtrace.tracefs.discover import find_tracefs
    from rawtrace.tracefs.histtrigger import InKernelLatency, support
    from rawtrace.tracefs.instance import Instance
    doctor.preflight(host, {"tracefs", "tracepoints"})
    tracefs = find_tracefs(host).path
    reason = support(tracefs, tracefs)
    if reason:
        from rawtrace.errors import NotSupported
        raise NotSupported(f"in-kernel histograms (--in-kernel): not supported by this kernel: {reason}",
                           hint="leave out --in-kernel: rawtrace sched measures the same waits from the ring "
                                "buffer")
    out = Emitter(json=args.json, ns=True)
    summary = _summary_options(args, out, lambda ts: ts / 1e9)
    tasks = TaskTable(host.path("/proc"))
    pids, tids = set(args.pid), set(args.tid)
    with Instance.create(tracefs) as inst:
        recipe = InKernelLatency(tracefs, inst.path)
        try:
            recipe.create()
            inst.set_tracing_on(True)
            out.meta("sched", "in-kernel", "mono")
            out.note("Counting waits in the kernel (hist triggers, wakeup to run only)... Ctrl-C to end.")
            previous: dict[tuple[int, int], int] = {}
            dropped = 0
            deadline = time.monotonic() + args.duration if args.duration else None
            intervals = 0
            try:
                while True:
                    wait_for = args.interval or 1.0
                    if deadline is not None:
                        wait_for = min(wait_for, max(0.0, deadline - time.monotonic()))
                    time.sleep(wait_for)
                    done = deadline is not None and time.monotonic() >= deadline
                    if args.interval or done:
                        rows, dropped = recipe.read()
                        previous = _add_in_kernel(summary, rows, previous, tasks, pids, tids, args.comm)
                        if args.interval:
                            summary.report(time.monotonic_ns(), ranking=args.min_ms is not None, histograms=True)
                            summary.reset()
                            intervals += 1
                    if done or (args.count and intervals >= args.count):
                        break
            except KeyboardInterrupt:
                rows, dropped = recipe.read()
                previous = _add_in_kernel(summary, rows, previous, tasks, pids, tids, args.comm)
            if not args.interval:
                summary.report(None, ranking=args.min_ms is not None, histograms=True)
            if dropped:
                out.note(f"warning: the kernel's map was full: {dropped} waits dropped")
        finally:
            failures = recipe.remove()
            for failure in failures:
                out.note(f"warning: could not remove {failure}")
    out.flush()
    return 0


def _add_in_kernel(summary: WaitSummary, rows, previous, tasks, pids, tids, comm) -> dict:
    """Add the growth of each (tid, latency) count since the previous read."""
    current = {}
    for tid, lat_us, count in rows:
        current[(tid, lat_us)] = count
        grown = count - previous.get((tid, lat_us), 0)
        if grown <= 0:
            continue
        pid = tasks.pid(tid)
        name = tasks.comm(tid)
        if (tids and tid not in tids) or (pids and pid not in pids) or (comm is not None and name != comm):
            continue
        cgroup = cgroup_of(tasks.proc, pid) if summary.by == "cgroup" else None
        summary.add(pid, tid, name, name if pid == tid else tasks.comm(pid), lat_us * 1000, grown, cgroup=cgroup)
    return current


# -- the schedstat path --------------------------------------------------------------------------------

def run_schedstat(args, host) -> int:
    """Sample /proc/PID/task/TID/schedstat and PSI; rank processes by time spent waiting for a CPU."""
    from rawtrace.cli.tool import Signals
    from rawtrace.emit import Emitter, safe, text_timestamp
    from rawtrace.schedstat import NOTE, Pressure, SchedstatSampler, rank
    out = Emitter(json=args.json, ns=True)
    period = args.interval or 1.0
    if args.duration and not args.interval:
        # Whole periods that end at the duration (a thread exiting takes its last period with it).
        period = args.duration / max(1, math.ceil(args.duration / period))
    elif args.duration:
        period = min(period, args.duration)
    sampler = SchedstatSampler(host, period=period, pids=set(args.pid) or None)
    min_ns = int((args.min_ms or 0) * 1e6)
    signals = Signals(sampler.stop)
    pending: list = []
    intervals = 0
    started = time.monotonic()

    def report(ts: int | None) -> None:
        records = [r for r in pending if not isinstance(r, Pressure)
                   and (not args.tid or r.tid in args.tid) and (args.comm is None or r.comm == args.comm)]
        rows = [r for r in rank(records, per_thread=args.per_thread) if r.delay_ns > min_ns]
        if args.top:
            rows = rows[:args.top]
        stall = sum(p.stall_us for p in pending if isinstance(p, Pressure))
        last_psi = next((p for p in reversed(pending) if isinstance(p, Pressure)), None)
        unit = 1e6 if args.milliseconds else 1e3
        stamp = {"interval": intervals, "ts": ts / 1e9} if ts is not None else {}
        if not out.json and ts is not None:
            out.line(f"[{text_timestamp(ts, True)}]")
        table, records_json = [], []
        for row in rows:
            table.append(([row.tid] if args.per_thread else []) +
                         [row.pid, safe(row.comm), f"{row.delay_ns / 1e6:.3f}", row.slices,
                          f"{row.avg_wait_ns / unit:.3f}", f"{row.run_ns / 1e6:.3f}"])
            records_json.append({**stamp, "pid": row.pid, "tid": row.tid, "comm": row.comm,
                                 "wait_ns": row.delay_ns, "timeslices": row.slices,
                                 "avg_wait_ns": row.avg_wait_ns, "run_ns": row.run_ns, "threads": row.threads})
        headers = (["TID"] if args.per_thread else []) + \
            ["PID", "COMM", "WAIT ms", "SLICES", "AVG " + ("ms" if args.milliseconds else "us"), "RUN ms"]
        if table or out.json:
            out.table("sched_schedstat", headers, table, records_json)
        else:
            out.line("(no thread waited" + (f" over {min_ns / 1e6:g} ms)" if min_ns else ")"))
        if last_psi is not None:
            if out.json:
                out.record("psi", {**stamp, "avg10": last_psi.avg10, "avg60": last_psi.avg60,
                                   "avg300": last_psi.avg300, "stall_us": stall})
            else:
                out.line(f"cpu pressure (PSI some): avg10={last_psi.avg10:.2f}% avg60={last_psi.avg60:.2f}% "
                         f"avg300={last_psi.avg300:.2f}%, {stall / 1e3:.3f} ms with a task waiting")
        if not out.json and ts is not None:
            out.line("")

    try:
        sampler.open()
        if not sampler.schedstat_available:
            from rawtrace.errors import NotSupported
            raise NotSupported("/proc/PID/task/TID/schedstat is not readable here (CONFIG_SCHED_INFO off?)")
        out.meta("sched", "schedstat", "mono")
        out.note(NOTE)
        out.note(f"Sampling every {period:g} s... Ctrl-C to end.")
        for batch in sampler.batches():
            pending.extend(batch)
            elapsed = time.monotonic() - started
            if args.interval:
                intervals += 1
                report(time.monotonic_ns())
                pending.clear()
                if args.count and intervals >= args.count:
                    break
            if args.duration and elapsed >= args.duration - 1e-3:
                break
        if not args.interval:
            report(None)
        if out.json:
            out.record("summary", {"samples": sampler.samples, "exited_between_samples": sampler.exited,
                                   "duration": round(time.monotonic() - started, 6)})
        else:
            out.note(f"{sampler.samples} samples, {sampler.exited} threads exited between samples "
                     f"(their last interval is missing), {time.monotonic() - started:.3f} s")
    finally:
        signals.restore()
        sampler.close()
    out.flush()
    return 0
