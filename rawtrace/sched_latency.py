"""Run-queue latency from sched tracepoints: a per-task state machine that turns events into completed waits.

A task waits for a CPU from the moment it is on a run queue until the ``sched_switch`` that puts it on a
CPU (``next_pid``). It gets on a run queue in three ways:

* ``sched_wakeup``: the tracepoint fires in ``ttwu_do_activate()`` *after* the task was enqueued, on the
  CPU whose queue it joined. ``sched_waking`` is not used: it fires earlier, at the start of
  ``try_to_wake_up()``, before the task may even have finished switching out (``p->on_cpu``) and before a
  remote wakeup's IPI enqueues it, so an interval starting there would include time in which the task is
  not yet runnable anywhere. The kernel's own accounting (``run_delay`` in ``/proc/PID/schedstat``,
  ``sched_info_enqueue()``) starts at enqueue too, which makes it usable as an oracle.
* ``sched_wakeup_new``: a new task's first enqueue (fork/clone). It always starts a fresh interval, which is
  also the defence against pid reuse: whatever was known about an earlier task with that tid is dropped.
* ``sched_switch`` switching a task *out* while it is still runnable: ``prev_state`` R (0, e.g. yield) or
  R+ (``TASK_REPORT_MAX``, 0x100 since Linux 4.14: preempted). The test is
  ``prev_state & (TASK_REPORT_MAX - 1) == 0`` — comparing with 0 alone misses every preemption.
  TASK_REPORT_MAX is read from the format's print fmt when given (``task_report_max()``).

A ``sched_wakeup`` for a task that already waits keeps the earlier start (it was runnable all along: a
task preempted between ``set_current_state()`` and ``schedule()`` is woken while queued). A wakeup of a
task seen running is ignored (``ttwu_runnable()`` on a running task queues nothing). ``sched_migrate_task``
moves a waiting task's queue; the wait goes on (the kernel adds both parts to ``run_delay`` too).
Switching out in any other state (S, D, I, X, Z ...) ends what is known about the task. The idle task
(pid 0, one per CPU) never waits and is never charged.

Lost events: a gap on any CPU may have hidden a switch-in, a switch-out or a wakeup of any task (tasks
migrate), so ``lost()`` invalidates *every* open interval and forgets which tasks run; they are counted
in ``invalidated``, never turned into waits. Waits can be missed but not charged wrongly, except in one
case the stream cannot show: a wait completed on another CPU after the gap began but before its Lost
marker (the marker carries the time of the page after the gap).

A switch-out of a task believed to be waiting means its switch-in was never recorded (some kernels do
not record switches away from some tasks; a wakeup of a task running since before the trace looks the
same): the open wait is dropped and counted in ``unseen_switch_in``, never charged.
"""

from __future__ import annotations

import ast
import re
from typing import NamedTuple

# TASK_REPORT_MAX since Linux 4.14 (include/linux/sched.h): the "+" bit of a preempted task's prev_state.
TASK_REPORT_MAX_DEFAULT = 0x100

CAUSE_WAKEUP, CAUSE_NEW, CAUSE_PREEMPTED = "wakeup", "new", "preempted"


class Wait(NamedTuple):
    """One completed wait for a CPU: `tid` (comm at switch-in) waited from `start` to `end` (trace clock
    ns) and then ran on `cpu`, replacing `prev_tid`/`prev_comm`. `cause`: wakeup, new or preempted."""

    tid: int
    comm: str
    start: int
    end: int
    cpu: int
    prev_tid: int
    prev_comm: str
    cause: str

    @property
    def wait_ns(self) -> int:
        return self.end - self.start


_PLUS_RE = re.compile(r"REC->prev_state\s*&\s*(\(.*?\)|\w+)\s*\?\s*\"\+\"")
_ALLOWED = (ast.Expression, ast.BinOp, ast.BitOr, ast.Add, ast.LShift, ast.Constant)


def task_report_max(print_fmt: str | None) -> int:
    """TASK_REPORT_MAX as sched_switch's print fmt spells it (`prev_state & (...) ? "+" : ""`), else 0x100.

    Only integer constants combined with | + << are evaluated; anything else means the default."""
    match = _PLUS_RE.search(print_fmt or "")
    if not match:
        return TASK_REPORT_MAX_DEFAULT
    try:
        tree = ast.parse(match.group(1), mode="eval")
    except SyntaxError:
        return TASK_REPORT_MAX_DEFAULT
    if not all(isinstance(node, _ALLOWED) for node in ast.walk(tree)):
        return TASK_REPORT_MAX_DEFAULT
    value = eval(compile(tree, "<print fmt>", "eval"), {"__builtins__": {}})  # checked: constants and | + << only
    return value if isinstance(value, int) and value > 0 else TASK_REPORT_MAX_DEFAULT


class SchedLatency:
    """Feed events in time order; `switch()` returns the Wait it completes (or None).

    Counters: `waits` completed, `invalidated` open intervals dropped by lost events, `lost_gaps` Lost
    markers seen, `unknown_start` switch-ins of tasks whose wait began before tracing or a gap,
    `unseen_switch_in` switch-outs of a task thought to be waiting (its switch-in was not in the trace)."""

    def __init__(self, report_max: int = TASK_REPORT_MAX_DEFAULT) -> None:
        self.state_mask = report_max - 1
        # tid -> [start, cpu, cause]: tasks on a run queue, not running.
        self.waiting: dict[int, list] = {}
        # tid -> cpu: tasks known to be on a CPU right now.
        self.running: dict[int, int] = {}
        self.waits = 0
        self.invalidated = 0
        self.lost_gaps = 0
        self.unknown_start = 0
        self.unseen_switch_in = 0

    # -- the transitions ----------------------------------------------------------------------------

    def wakeup(self, ts: int, tid: int, target_cpu: int) -> None:
        if tid <= 0 or tid in self.running or tid in self.waiting:
            return
        self.waiting[tid] = [ts, target_cpu, CAUSE_WAKEUP]

    def wakeup_new(self, ts: int, tid: int, target_cpu: int) -> None:
        if tid <= 0:
            return
        self.running.pop(tid, None)
        self.waiting[tid] = [ts, target_cpu, CAUSE_NEW]

    def migrate(self, tid: int, dest_cpu: int) -> None:
        entry = self.waiting.get(tid)
        if entry is not None:
            entry[1] = dest_cpu

    def exit(self, tid: int) -> None:
        """The task exited (sched_process_exit): nothing about this tid carries over to a later task."""
        self.waiting.pop(tid, None)
        self.running.pop(tid, None)

    def switch(self, ts: int, cpu: int, prev_tid: int, prev_comm: str, prev_state: int,
               next_tid: int, next_comm: str) -> Wait | None:
        if prev_tid > 0:
            if self.running.pop(prev_tid, None) is None and prev_tid in self.waiting:
                # It ran, so a switch that put it on a CPU was not recorded: that wait is dropped.
                self.unseen_switch_in += 1
            if prev_state & self.state_mask == 0:
                self.waiting[prev_tid] = [ts, cpu, CAUSE_PREEMPTED]
            else:
                self.waiting.pop(prev_tid, None)
        if next_tid <= 0:
            return None
        self.running[next_tid] = cpu
        entry = self.waiting.pop(next_tid, None)
        if entry is None:
            self.unknown_start += 1
            return None
        start, _, cause = entry
        start = min(start, ts)  # clock disorder between CPUs: never a negative wait
        self.waits += 1
        return Wait(next_tid, next_comm, start, ts, cpu, prev_tid, prev_comm, cause)

    def lost(self, cpu: int, count: int = -1) -> int:
        """A lost-events gap on `cpu`: drop every open interval (returned and added to `invalidated`)."""
        dropped = len(self.waiting)
        self.invalidated += dropped
        self.lost_gaps += 1
        self.waiting.clear()
        self.running.clear()
        return dropped

    def open_waits(self) -> int:
        """Tasks still waiting (not counted as waits: their end is unknown)."""
        return len(self.waiting)

    # -- decoded tracepoint records (rawtrace.parse.record.Event) -----------------------------------

    def on_switch(self, rec) -> Wait | None:
        f = rec.fields
        return self.switch(rec.ts, rec.cpu, f["prev_pid"], f["prev_comm"], f["prev_state"],
                           f["next_pid"], f["next_comm"])

    def on_wakeup(self, rec) -> None:
        f = rec.fields
        self.wakeup(rec.ts, f["pid"], f.get("target_cpu", rec.cpu))

    def on_wakeup_new(self, rec) -> None:
        f = rec.fields
        self.wakeup_new(rec.ts, f["pid"], f.get("target_cpu", rec.cpu))

    def on_migrate(self, rec) -> None:
        self.migrate(rec.fields["pid"], rec.fields["dest_cpu"])

    def on_exit(self, rec) -> None:
        self.exit(rec.fields["pid"])
