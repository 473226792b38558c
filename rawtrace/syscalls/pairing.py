"""Pairs sys_enter/sys_exit events per thread into whole syscalls, strace-style, in bounded memory."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

# Record kinds.
PAIR = "pair"              # enter and exit of the same call
UNFINISHED = "unfinished"  # an enter whose exit was not seen (strace: `openat(... <unfinished ...>`)
RESUMED = "resumed"        # an exit whose enter was not seen (strace: `<... openat resumed> = 3`)
NO_RETURN = "noreturn"     # exit/exit_group: no exit event ever follows (strace: `exit_group(0) = ?`)

# Notes: why a record is not a plain, trustworthy pair.
NOTE_LOST = "events lost during call"       # the pair may join an enter and exit of different calls
NOTE_MISMATCH = "enter/exit syscall mismatch"  # exit of another syscall than the pending enter
NOTE_NEW_ENTER = "new enter before exit"    # the exit was lost or never came (thread killed, lost event)
NOTE_FLUSH = "trace ended"                  # still in flight when the trace stopped
NOTE_THREAD_EXIT = "thread exited"          # the thread died inside the call
NOTE_EVICTED = "pending table full"         # dropped to keep memory bounded
NOTE_BEFORE_LOSS = "events were lost earlier"  # resumed after a loss: the enter may be among the lost
NOTE_TIME_BACKWARDS = "exit before enter"   # timestamps out of order: the merge or the clocks are wrong

NO_RETURN_NAMES = frozenset(("exit", "exit_group"))


class SyscallRecord(NamedTuple):
    """One finished (or given-up) syscall. Fields not known for a kind are None."""

    kind: str
    tid: int
    nr: int | None
    name: str | None
    args: object            # the enter's payload exactly as fed (None for RESUMED)
    ret: int | None         # None for UNFINISHED and NO_RETURN
    enter_ts: int | None
    exit_ts: int | None
    duration_ns: int | None
    enter_cpu: int | None
    exit_cpu: int | None
    note: str | None


_NOTHING: tuple[SyscallRecord, ...] = ()


class SyscallPairer:
    """Feed enters and exits in merged timestamp order; get SyscallRecords back.

    Keyed by thread id (the events' common_pid): a thread has at most one syscall in flight, so
    concurrent calls on many CPUs pair correctly. Memory holds one pending entry per thread with a
    call in flight, capped at `max_pending`. An enter and an exit are paired only when their syscall
    numbers agree; lost events (`lost()`) flag every call in flight at that time, since the ring
    buffer of any CPU the thread ran on may have dropped its exit.
    """

    __slots__ = ("_loss_epoch", "_no_return_names", "_no_return_nrs", "_pending", "max_pending", "stats")

    def __init__(self, no_return_names: Iterable[str] = NO_RETURN_NAMES,
                 no_return_nrs: Iterable[int] = (), max_pending: int = 1 << 16) -> None:
        # tid → (enter_ts, enter_cpu, nr, name, args, loss_epoch_at_enter)
        self._pending: dict[int, tuple] = {}
        self._loss_epoch = 0
        self._no_return_names = frozenset(no_return_names)
        self._no_return_nrs = frozenset(no_return_nrs)
        self.max_pending = max_pending
        self.stats = {"pairs": 0, "unfinished": 0, "resumed": 0, "noreturn": 0, "mismatches": 0,
                      "flagged_lost": 0, "lost_reports": 0}

    def __len__(self) -> int:
        return len(self._pending)

    def enter(self, tid: int, ts: int, cpu: int | None, nr: int | None, name: str | None,
              args: object) -> tuple[SyscallRecord, ...]:
        """A sys_enter event. Returns the thread's previous call as UNFINISHED if one was pending."""
        if name in self._no_return_names or nr in self._no_return_nrs:
            # No exit will follow on success; emitting now keeps dead threads out of the table.
            self.stats["noreturn"] += 1
            earlier = self._pending.pop(tid, None)
            record = SyscallRecord(NO_RETURN, tid, nr, name, args, None, ts, None, None, cpu, None, None)
            if earlier is None:
                return (record,)
            return (self._unfinished(tid, earlier, NOTE_NEW_ENTER), record)
        pending = self._pending
        earlier = pending.pop(tid, None)  # pop, so that insertion order stays oldest-first
        pending[tid] = (ts, cpu, nr, name, args, self._loss_epoch)
        if earlier is not None:
            return (self._unfinished(tid, earlier, NOTE_NEW_ENTER),)
        if len(pending) > self.max_pending:
            return self._evict()
        return _NOTHING

    def exit(self, tid: int, ts: int, cpu: int | None, nr: int | None, name: str | None,
             ret: int | None) -> tuple[SyscallRecord, ...]:
        """A sys_exit event. Returns the PAIR, or RESUMED (plus the mismatching UNFINISHED)."""
        earlier = self._pending.pop(tid, None)
        if earlier is None:
            self.stats["resumed"] += 1
            note = NOTE_BEFORE_LOSS if self._loss_epoch else None
            return (SyscallRecord(RESUMED, tid, nr, name, None, ret, None, ts, None, None, cpu, note),)
        enter_ts, enter_cpu, enter_nr, enter_name, args, epoch = earlier
        if enter_nr is not None and nr is not None:
            same = enter_nr == nr
        else:
            same = enter_name == name
        if not same:
            # Never pair calls of different syscalls: something in between was lost or never traced.
            self.stats["mismatches"] += 1
            self.stats["resumed"] += 1
            return (self._unfinished(tid, earlier, NOTE_MISMATCH),
                    SyscallRecord(RESUMED, tid, nr, name, None, ret, None, ts, None, None, cpu,
                                  NOTE_MISMATCH))
        duration = ts - enter_ts
        note = None
        if epoch != self._loss_epoch:
            note = NOTE_LOST
            self.stats["flagged_lost"] += 1
        elif duration < 0:
            note = NOTE_TIME_BACKWARDS
        self.stats["pairs"] += 1
        return (SyscallRecord(PAIR, tid, enter_nr, enter_name if enter_name is not None else name, args, ret,
                              enter_ts, ts, duration, enter_cpu, cpu, note),)

    def lost(self, cpu: int | None = None, count: int | None = None) -> None:
        """Events were lost (on `cpu`, if known): every call now in flight becomes suspect.

        A thread may have migrated to the CPU that lost events, so the CPU does not narrow it down.
        """
        self._loss_epoch += 1
        self.stats["lost_reports"] += 1

    def thread_exit(self, tid: int) -> tuple[SyscallRecord, ...]:
        """The thread is gone (sched_process_exit): its call in flight will never return."""
        earlier = self._pending.pop(tid, None)
        return _NOTHING if earlier is None else (self._unfinished(tid, earlier, NOTE_THREAD_EXIT),)

    def flush(self) -> list[SyscallRecord]:
        """End of trace: every call still in flight, as UNFINISHED, oldest first."""
        pending = sorted(self._pending.items(), key=lambda item: (item[1][0], item[0]))
        self._pending.clear()
        return [self._unfinished(tid, entry, NOTE_FLUSH) for tid, entry in pending]

    def pending(self) -> dict[int, tuple]:
        """A copy of the in-flight table: tid → (enter_ts, cpu, nr, name, args, loss_epoch)."""
        return dict(self._pending)

    def _unfinished(self, tid: int, entry: tuple, note: str) -> SyscallRecord:
        self.stats["unfinished"] += 1
        enter_ts, enter_cpu, nr, name, args, epoch = entry
        if note == NOTE_NEW_ENTER and epoch != self._loss_epoch:
            note = NOTE_NEW_ENTER + "; " + NOTE_LOST
        return SyscallRecord(UNFINISHED, tid, nr, name, args, None, enter_ts, None, None, enter_cpu, None,
                             note)

    def _evict(self) -> tuple[SyscallRecord, ...]:
        # dicts keep insertion order, so the first key is the longest-waiting call.
        oldest = next(iter(self._pending))
        return (self._unfinished(oldest, self._pending.pop(oldest), NOTE_EVICTED),)
