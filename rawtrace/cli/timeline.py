"""`rawtrace timeline`: a picture of a trace (Chrome trace-event JSON for Perfetto's UI or chrome://tracing)."""

from __future__ import annotations

import argparse
import errno

from rawtrace.errors import UsageError
from rawtrace.perfetto import Timeline
from rawtrace.tracers.base import Needs, Tool

SWITCH = ("sched", "sched_switch")
EXEC = ("sched", "sched_process_exec")
EXIT = ("sched", "sched_process_exit")
ENTER, LEAVE = ("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit")

# prev_state bits as sched_switch's print fmt names them (TASK_REPORT; 0x100 = preempted, "R+").
_STATES = ((0x01, "S"), (0x02, "D"), (0x04, "T"), (0x08, "t"), (0x10, "X"), (0x20, "Z"), (0x40, "P"),
           (0x80, "I"))


def state_text(prev_state: int) -> str:
    """sched_switch's prev_state as the kernel prints it: R, R+, S, D|K..."""
    low = prev_state & 0xFF
    if not low:
        return "R+" if prev_state & 0x100 else "R"
    return "|".join(name for bit, name in _STATES if low & bit)


class TimelineTool(Tool):
    name = "timeline"
    help = "write a timeline (CPUs, syscalls, losses) as Chrome trace-event JSON for Perfetto's UI"
    epilog = """\
examples:
  rawtrace timeline -o out.json -d 5            # trace 5 s system-wide, then write out.json
  rawtrace timeline -o out.json -p 1234         # process 1234 (and children started meanwhile)
  rawtrace timeline -i trace.dat -o out.json    # from a recording (rawtrace record, trace-cmd record)
  rawtrace timeline -i trace.dat -o out.json --no-syscalls

Open the file in https://ui.perfetto.dev (Open trace file) or chrome://tracing. Tracks: a "CPUs"
process with one thread per CPU showing the task running on it (from sched_switch; a slice per
stretch of running, named "comm tid", with the state the task left in); one track per thread with its
syscalls as slices (name, arguments, return value); exec and exit as instant markers; lost events as
global instant markers on the CPU's track. Time stamps are microseconds of the trace clock.
With -p/-t/-n only the selected tasks' syscall tracks are written and the CPU tracks are left out
(they need every task's context switches)."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the JSON file to write")
        parser.add_argument("--no-syscalls", action="store_true", help="leave the syscall slices out")
        parser.add_argument("--no-sched", action="store_true", help="leave the CPU tracks out")

    def __init__(self, args, ctx) -> None:
        super().__init__(args, ctx)
        self.sched = not args.no_sched and not (args.pid or args.tid or args.comm)
        if args.no_syscalls and not self.sched:
            raise UsageError("--no-syscalls leaves nothing to show" + (" with -p/-t/-n (no CPU tracks)"
                                                                      if not args.no_sched else ""))
        self.timeline = Timeline(ns=ctx.ns)
        self.unfinished = 0

    def needs(self) -> Needs:
        ctx = self.ctx
        source = ctx.source
        # A recording shows what it has; live, both are traced unless left out.
        self.syscalls = not self.args.no_syscalls and (ctx.live or (source.available(*ENTER)
                                                                    and source.available(*LEAVE)))
        self.sched = self.sched and (ctx.live or source.available(*SWITCH))
        if not self.syscalls and not self.sched:
            raise UsageError("nothing to show: the recording has neither sched:sched_switch nor "
                             "raw_syscalls:sys_enter/sys_exit events (or they were left out)")
        events, fields = [], {}
        if self.sched:
            events.append(SWITCH)
            fields[SWITCH] = {"prev_state", "next_comm", "next_pid"}
        if self.syscalls:
            events += [ENTER, LEAVE]
        return Needs(events=events, syscalls=self.syscalls, fields=fields,
                     preflight={"syscalls"} if self.syscalls else set())

    def handlers(self):
        timeline = self.timeline
        tasks = self.ctx.tasks
        out = {}
        if self.sched:
            def switch(rec) -> None:
                f = rec.fields
                tid = f["next_pid"]
                timeline.switch(rec.ts, rec.cpu, tid, f["next_comm"], tasks.pid(tid), state_text(f["prev_state"]))
            out[SWITCH] = switch

        def exec_(rec) -> None:
            timeline.instant(rec.ts, rec.pid, tasks.pid(rec.pid), "exec",
                             {"filename": rec.fields.get("filename", "")})

        def exit_(rec) -> None:
            timeline.instant(rec.ts, rec.pid, tasks.pid(rec.pid), "exit")
        out[EXEC] = exec_
        out[EXIT] = exit_
        return out

    def on_syscall(self, call) -> None:
        timeline = self.timeline
        timeline.thread(call.tid, call.pid, call.comm)
        if call.ts is None or call.exit_ts is None:
            self.unfinished += 1
            return
        try:
            args = call.args_text(self.ctx.formatter)
        except Exception:  # noqa: BLE001 - a formatting problem must not lose the slice
            args = {name: value for name, value in call.args.items()}
        error = call.errno
        timeline.syscall(call.ts, call.exit_ts, call.tid, call.pid, call.name, args, call.ret,
                         errno.errorcode.get(error, f"errno {error}") if error else None)

    def on_lost(self, lost) -> None:
        self.timeline.lost(lost.ts, lost.cpu, lost.count)

    def finish(self) -> None:
        timeline = self.timeline
        tasks = self.ctx.tasks
        for tid, comm in tasks.names.items():
            if tid:
                timeline.thread(tid, tasks.tgids.get(tid, tid), comm)
        written = timeline.write(self.args.output)
        out = self.ctx.out
        if out.json:
            out.record("summary", {"output": self.args.output, "trace_events": written, "slices": timeline.slices,
                                   "cpus": len(timeline.cpus), "lost": timeline.lost_events,
                                   "unfinished_syscalls": self.unfinished})
        else:
            out.note(f"{written} trace events ({timeline.slices} slices, {len(timeline.cpus)} CPUs, "
                     f"{timeline.lost_events} events lost) -> {self.args.output}", prefix=False)


TOOL = TimelineTool
