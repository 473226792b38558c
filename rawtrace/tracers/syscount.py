"""`rawtrace syscount`: system-wide syscall counts, errors and latency (strace -c -f for the whole machine).

Through raw_syscalls:sys_enter/sys_exit only (two cheap events, whatever the syscall), decoding just the
syscall number and return value. Calls are paired per thread: a call counts once, at its exit (exit and
exit_group, which never return, at their entry); an exit whose entry came before the trace (or was
lost) still counts, without a latency. Names come from the syscall table of the traced machine's arch,
compat 32-bit tasks through their own table (as strace does).
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

from rawtrace.tracers.base import Needs, Tool, report_run

MAX_ERRNO = 4095
NO_RETURN = ("exit", "exit_group")


def _errno_text(text: str) -> str:
    """-e ERRNO as argparse checks it (before anything is set up); the name is looked up later."""
    if not text.strip():
        import argparse
        raise argparse.ArgumentTypeError("-e ERRNO must not be empty (a name like ENOENT, or a number)")
    return text


class _Enter(NamedTuple):
    """A raw_syscalls:sys_enter record as syscount's batch loop reads it (no arguments)."""

    ts: int
    cpu: int
    pid: int
    nr: int


class _Row:
    __slots__ = ("count", "errnos", "errors", "max", "min", "timed", "total")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.total = 0
        self.max = 0
        self.min = -1
        self.timed = 0
        self.errnos: dict[int, int] = {}


class Syscount(Tool):
    name = "syscount"
    help = "count syscalls system-wide, with errors and latency (strace -c for the whole machine)"
    summary_tool = True
    epilog = """\
examples:
  rawtrace syscount                     # every process until Ctrl-C: top 10 syscalls
  rawtrace syscount -P -T 20            # the 20 busiest (process, name) pairs
  rawtrace syscount -p 1234 -L          # one process and its children, with min latency and errnos
  rawtrace syscount -x -e ENOENT        # only calls that failed with ENOENT
  rawtrace syscount --syscall openat --syscall read 1 5   # two syscalls, every second, 5 times
  rawtrace syscount -i trace.dat --json # over a recording, as NDJSON

Columns: COUNT calls (counted at their exit; exit/exit_group at entry), ERRORS calls that returned an
error, TOTAL/AVG/MAX the time between entry and exit (ms / us / us). With -P a row is a process and
the name it had when it made the calls (an exited process keeps its name). With -L also MIN (us) and
the most frequent errno names. An exit whose entry was not seen (a call in flight when tracing began,
or lost events) counts without a latency; calls still in flight at the end are reported, not counted.
bcc's syscount counts at sys_exit too; its -p is a process, as here; bcc's -T (top) is -T here as well.
Overhead: two events per syscall, decoded to the number and return value only."""

    record_types = ("syscount",)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        from rawtrace.cli.tool import positive_int
        parser.add_argument("-P", "--process", action="store_true", help="count per process (pid and name)")
        parser.add_argument("-L", "--latency", action="store_true", help="also min latency and errno names")
        parser.add_argument("-x", "--failures", action="store_true", help="only calls that failed")
        parser.add_argument("-e", "--errno", metavar="ERRNO", type=_errno_text, help="only calls that failed with this errno "
                                                                   "(name like ENOENT, or number)")
        parser.add_argument("--syscall", action="append", default=[], metavar="NAME",
                            help="only these syscalls (repeatable; names or numbers)")
        parser.add_argument("-T", "--top", type=positive_int, default=10, metavar="N",
                            help="show the top N rows (default 10; 0 = all is not allowed, use a big N)")
        parser.add_argument("--sort", choices=("count", "errors", "time", "max"), default="count",
                            help="order of the rows (default count)")

    def __init__(self, args, ctx) -> None:
        super().__init__(args, ctx)
        from rawtrace.syscalls.tables import load_table
        self.table = load_table(ctx.arch)
        self.native_abi = self.table.arch.abis[0].name
        self.rows: dict[tuple, _Row] = {}
        self.pending: dict[int, tuple[int, int]] = {}
        self.in_flight_at_end = 0
        self.unpaired_exits = 0
        self.lost_events = 0
        self.suspect = 0
        self.intervals = 0
        self.calls = 0
        self._names: dict[tuple[int, str], str] = {}
        self._errno_filter = self._parse_errno(args.errno) if args.errno is not None else None
        self._only = self._parse_syscalls(args.syscall) if args.syscall else None
        self._no_return_by_abi: dict[str, set] = {}
        self._no_number = [0]                # exits with syscall number -1 (new tasks returning from fork)
        self._no_return_nrs = self._no_return_of(self.native_abi)

    # -- options ---------------------------------------------------------------------------------
    def _parse_errno(self, text: str) -> int:
        from rawtrace.errors import UsageError
        from rawtrace.syscalls import constants as C
        if not text:
            raise UsageError("-e ERRNO must not be empty (a name like ENOENT, or a number)")
        if text.isascii() and text.isdigit():
            return int(text)
        number = C.errno_number(self.ctx.arch, text.upper()) if hasattr(C, "errno_number") else None
        if number is None:
            for n in range(1, MAX_ERRNO):
                if C.errno_name(self.ctx.arch, n) == text.upper():
                    number = n
                    break
        if number is None:
            raise UsageError(f"unknown errno {text!r} (a name like ENOENT, or a number)")
        return number

    def _parse_syscalls(self, names: list[str]) -> set[str]:
        from rawtrace.errors import UsageError
        out = set()
        for text in names:
            if not text:
                raise UsageError("--syscall NAME must not be empty")
            if text.isascii() and text.isdigit():
                row = self.table.by_nr(int(text), self.native_abi)
                if row is None:
                    raise UsageError(f"no syscall number {text} on {self.table.arch.name}")
                out.add(row.name)
            elif self.table.by_name(text) is None:
                self.table.match([text])          # raises UsageError naming the nearest names
            else:
                out.add(text)
        return out

    # -- pipeline --------------------------------------------------------------------------------
    def needs(self) -> Needs:
        enter, exit_ = ("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit")
        return Needs(events=[enter, exit_], fields={enter: {"id"}, exit_: {"id", "ret"}},
                     preflight={"syscalls"})

    def handlers(self):
        return {("raw_syscalls", "sys_enter"): self._enter(), ("raw_syscalls", "sys_exit"): self._exit()}

    def name_of(self, nr: int, abi: str) -> str:
        key = (nr, abi)
        name = self._names.get(key)
        if name is None:
            row = self.table.by_nr(nr, abi)
            name = self._names[key] = row.name if row is not None else f"syscall_{nr}"
        return name

    def _no_return_of(self, abi: str) -> set:
        found = self._no_return_by_abi.get(abi)
        if found is None:
            found = self._no_return_by_abi[abi] = {
                s.nr for name in NO_RETURN if (s := self.table.by_name(name, abi)) is not None}
        return found

    def _enter(self):
        entered = self._entered()

        def enter(rec) -> None:
            entered(rec.ts, rec.pid, rec.fields["id"])
        return enter

    def _entered(self):
        """fn(ts, tid, nr): a call entered (what _enter() does with a sys_enter record)."""
        pending = self.pending
        no_return = self._no_return_nrs
        count = self._count
        abis = self.ctx.tasks.abis

        def entered(ts: int, tid: int, nr: int) -> None:
            # The ABI at entry names the call: an execve into a 32-bit program returns as a compat task.
            abi = abis.get(tid) if abis else None
            if nr in (no_return if abi is None else self._no_return_of(abi)):
                # No exit follows a successful exit/exit_group: count it now.
                pending.pop(tid, None)
                count(tid, nr, 0, None, abi)
                return
            pending[tid] = (ts, nr, abi)
        return entered

    def _exit(self):
        """The hot path: one dict pop, one dict lookup and a few additions per call."""
        pending = self.pending
        count = self._count
        abis = self.ctx.tasks.abis
        if self.args.process or self.args.failures or self._errno_filter is not None or self._only is not None \
                or self.args.latency:
            def exit_(rec) -> None:
                fields = rec.fields
                tid = rec.pid
                nr = fields["id"]
                started = pending.pop(tid, None)
                if started is not None and (started[1] == nr or self._same_exec(started, nr, tid)):
                    count(tid, started[1], fields["ret"], rec.ts - started[0], started[2])
                elif nr < 0:
                    self._no_number[0] += 1          # a new task returning from fork: no call
                else:
                    self.unpaired_exits += 1
                    count(tid, nr, fields["ret"], None, abis.get(tid) if abis else None)
            return exit_
        rows = self.rows
        new_row = _Row
        unpaired = self._unpaired_fast = getattr(self, "_unpaired_fast", [0])
        same_exec = self._same_exec

        def exit_fast(rec) -> None:
            fields = rec.fields
            nr = fields["id"]
            started = pending.pop(rec.pid, None)
            if started is not None and (started[1] == nr or (abis and same_exec(started, nr, rec.pid))):
                # Compat (32-bit) tasks number their syscalls in their own table.
                nr = started[1]
                key = nr if started[2] is None else (nr, started[2])
                row = rows.get(key)
                if row is None:
                    row = rows[key] = new_row()
                duration = rec.ts - started[0]
                row.timed += 1
                row.total += duration
                row.max = max(row.max, duration)
                if row.min < 0 or duration < row.min:
                    row.min = duration
            else:
                if nr < 0:
                    self._no_number[0] += 1          # a new task returning from fork: no call
                    return
                unpaired[0] += 1
                abi = abis.get(rec.pid) if abis else None
                key = nr if abi is None else (nr, abi)
                row = rows.get(key)
                if row is None:
                    row = rows[key] = new_row()
            row.count += 1
            if -MAX_ERRNO <= fields["ret"] < 0:
                row.errors += 1
        return exit_fast

    def _same_exec(self, started: tuple, nr: int, tid: int) -> bool:
        """An execve into a program of another ABI returns with that ABI's number for execve: the same
        call as the entry, not a mismatch."""
        abis = self.ctx.tasks.abis
        now = abis.get(tid) if abis else None
        if now == started[2]:
            return False
        execs = ("execve", "execveat")
        return self.name_of(started[1], started[2] or self.native_abi) in execs and \
            self.name_of(nr, now or self.native_abi) in execs

    def batch_handler(self, deliver):
        """The common case (no -P, -x, -e, --syscall, -L) as one loop over each batch: the pairing and
        counting of _enter/_exit inlined, no call per record. Other records go to `deliver`."""
        args = self.args
        if args.process or args.failures or self._errno_filter is not None or self._only is not None \
                or args.latency:
            return None
        ids = {pair: event_id for event_id, pair in self.ctx.source.ids.items()}
        enter_id, exit_id = ids.get(("raw_syscalls", "sys_enter")), ids.get(("raw_syscalls", "sys_exit"))
        if enter_id is None or exit_id is None:
            return None
        from rawtrace.parse.record import Event
        from rawtrace.syscalls.calls import SysExit
        # Only this loop sees raw_syscalls' records: they can be decoded straight to small tuples (no
        # Event, no fields dict), as the syscall joiner has them. Either may stay an Event (no format
        # for the tuple): the loop takes both forms.
        decoders = getattr(self.ctx.source, "decoders", None)
        if decoders is not None:
            decoders.install_tuple(enter_id, _Enter, ("id",))
            decoders.install_tuple(exit_id, SysExit, ("id", "ret"))
        entered = self._entered()
        pending = self.pending
        pop = pending.pop
        rows = self.rows
        get_row = rows.get
        new_row = _Row
        unpaired = self._unpaired_fast = getattr(self, "_unpaired_fast", [0])
        no_number = self._no_number
        abis = self.ctx.tasks.abis
        no_return = self._no_return_nrs
        same_exec = self._same_exec
        low = -MAX_ERRNO

        def batch(records) -> None:
            for rec in records:
                cls = rec.__class__
                if cls is SysExit:
                    ts, _cpu, tid, nr, ret = rec
                elif cls is _Enter:
                    ts, _cpu, tid, nr = rec
                    if abis or nr in no_return:
                        entered(ts, tid, nr)     # compat tasks, exit/exit_group: the general way
                    else:
                        pending[tid] = (ts, nr, None)
                    continue
                elif cls is Event:
                    # (Records decoded before the tuples were installed, or where they could not be.)
                    ts, _cpu, tid, event_id, _fmt, fields, _flags, _preempt = rec
                    if event_id == enter_id:
                        entered(ts, tid, fields["id"])
                        continue
                    if event_id != exit_id:
                        deliver(rec)
                        continue
                    nr = fields["id"]
                    ret = fields["ret"]
                else:
                    deliver(rec)
                    continue
                started = pop(tid, None)
                if started is not None and (started[1] == nr or (abis and same_exec(started, nr, tid))):
                    nr = started[1]
                    key = nr if started[2] is None else (nr, started[2])
                    row = get_row(key)
                    if row is None:
                        row = rows[key] = new_row()
                    duration = ts - started[0]
                    row.timed += 1
                    row.total += duration
                    if duration > row.max:  # noqa: PLR1730 - a compare is cheaper than max()
                        row.max = duration
                    if row.min < 0 or duration < row.min:
                        row.min = duration
                else:
                    if nr < 0:
                        # A new task's first return to user space (from fork/clone) has no
                        # syscall number: not a call of its own.
                        no_number[0] += 1
                        continue
                    unpaired[0] += 1
                    abi = abis.get(tid) if abis else None
                    key = nr if abi is None else (nr, abi)
                    row = get_row(key)
                    if row is None:
                        row = rows[key] = new_row()
                row.count += 1
                if low <= ret < 0:
                    row.errors += 1
        return batch

    def _count(self, tid: int, nr: int, ret: int, duration: int | None, abi: str | None) -> None:
        failed = -MAX_ERRNO <= ret < 0
        if (self.args.failures or self._errno_filter is not None) and not failed:
            return
        if self._errno_filter is not None and -ret != self._errno_filter:
            return
        tasks = self.ctx.tasks
        if self._only is not None and self.name_of(nr, abi or self.native_abi) not in self._only:
            return
        number = nr if abi is None else (nr, abi)
        key = (number, tasks.pid(tid), tasks.comm(tid)) if self.args.process else number
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = _Row()
        row.count += 1
        if failed:
            row.errors += 1
            if self.args.latency:
                row.errnos[-ret] = row.errnos.get(-ret, 0) + 1
        if duration is not None:
            row.timed += 1
            row.total += duration
            row.max = max(row.max, duration)
            if row.min < 0 or duration < row.min:
                row.min = duration

    def on_lost(self, lost) -> None:
        # A thread's exit may be among the lost events: never pair across the gap.
        self.lost_events += max(lost.count, 0)
        self.suspect += len(self.pending)
        self.pending.clear()

    def start(self) -> None:
        ctx = self.ctx
        out = ctx.out
        what = "syscalls"
        if self._only:
            what = ", ".join(sorted(self._only))
        if ctx.live:
            out.meta("syscount", "live", ctx.clock)
            out.note(f"Tracing {what} through raw_syscalls... Ctrl-C to end.", prefix=False)
        else:
            out.meta("syscount", ctx.source.kind, ctx.clock)

    def on_tick(self, ts: int) -> None:
        self.intervals += 1
        self.calls += sum(row.count for row in self.rows.values())
        self._print(ts)
        self.rows.clear()

    def finish(self) -> None:
        self.in_flight_at_end = len(self.pending)
        self.unpaired_exits += getattr(self, "_unpaired_fast", [0])[0]
        if not self.args.interval:
            self.calls += sum(row.count for row in self.rows.values())
            self._print(None)
        self._summary()

    # -- output ----------------------------------------------------------------------------------
    def _sorted(self) -> list[tuple[tuple, _Row]]:
        key = {"count": lambda item: (item[1].count, item[1].total),
               "errors": lambda item: (item[1].errors, item[1].count),
               "time": lambda item: (item[1].total, item[1].count),
               "max": lambda item: (item[1].max, item[1].count)}[self.args.sort]
        return sorted(self.rows.items(), key=key, reverse=True)[:self.args.top]

    def _print(self, ts: int | None) -> None:
        ctx = self.ctx
        out = ctx.out
        ns = ctx.ns
        unit = 1e6 if ns else 1
        rows, records = [], []
        from rawtrace.emit import safe
        from rawtrace.syscalls import constants as C
        for key, row in self._sorted():
            number = key[0] if self.args.process else key
            nr, abi = number if isinstance(number, tuple) else (number, self.native_abi)
            name = self.name_of(nr, abi)
            avg = row.total / row.timed if row.timed else None
            record = {"syscall": name, "nr": nr, "abi": abi, "count": row.count, "errors": row.errors, "total_ns": row.total,
                      "max_ns": row.max if row.timed else None, "avg_ns": round(avg) if avg is not None else None,
                      "timed": row.timed}
            line = []
            if self.args.process:
                record["pid"], record["comm"] = key[1], key[2]
                line += [key[1], safe(key[2])]
            line += [name if abi == self.native_abi else f"{name} ({abi})", row.count, row.errors, f"{row.total / unit:.3f}",
                     f"{avg / 1e3:.3f}" if avg is not None else "-", f"{row.max / 1e3:.3f}" if row.timed else "-"]
            if self.args.latency:
                record["min_ns"] = row.min if row.timed else None
                top = sorted(row.errnos.items(), key=lambda kv: -kv[1])[:3]
                record["errnos"] = {C.errno_name(ctx.arch, n) or str(n): c for n, c in top}
                line += [f"{row.min / 1e3:.3f}" if row.timed else "-",
                         " ".join(f"{C.errno_name(ctx.arch, n) or n}:{c}" for n, c in top)]
            if ts is not None:
                record["interval"] = self.intervals
                record["ts"] = ctx.seconds(ts)
            rows.append(line)
            records.append(record)
        headers = (["PID", "COMM"] if self.args.process else []) + \
            ["SYSCALL", "COUNT", "ERRORS", "TOTAL ms" if ns else "TOTAL", "AVG us", "MAX us"] + \
            (["MIN us", "ERRNOS"] if self.args.latency else [])
        if not out.json and ts is not None:
            from rawtrace.emit import text_timestamp
            out.line(f"[{text_timestamp(ts, ns)}]")
        if rows or out.json:
            out.table("syscount", headers, rows, records)
        else:
            out.line("(no syscalls)")
        if not out.json and ts is not None:
            out.line("")

    def _summary(self) -> None:
        ctx = self.ctx
        out = ctx.out
        summary = ctx.source.summary
        info = {"calls": self.calls, "recorded": summary.recorded, "drain": round(summary.drain, 3),
                "unpaired_exits": self.unpaired_exits, "in_flight_at_end": self.in_flight_at_end,
                "fork_returns": self._no_number[0],
                "lost": summary.lost, "lost_unknown_pages": summary.lost_unknown_pages,
                "suspect_pairs_dropped": self.suspect, "duration": round(summary.duration, 6),
                "kernel_overrun": summary.kernel_overrun}
        report_run(out, ctx.source, f"{self.calls} calls", info,
                   extra=[f"{self.unpaired_exits} without a seen entry"] if self.unpaired_exits else [])


TOOL = Syscount
