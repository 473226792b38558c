"""Structured syscalls: enter/exit events of one thread joined into `Syscall` records (data, not text).

A `Syscall` carries the call's name and number, its arguments by name (raw values; the rendered text on
demand through a SyscallFormatter), the return value and errno name, the duration, the thread, process and
name at entry, and any user strings that arrived for the same thread (string fields such as 6.19's
`__filename_val`, or a probe's `ustring` fetched in the C library just before the syscall).

`SyscallJoiner` is fed decoded enter/exit events of `syscalls:sys_enter_*`/`sys_exit_*` or
`raw_syscalls:sys_enter`/`sys_exit` in time order (the stream does that) and calls `emit(call)` for every
finished or given-up call. Pairing is per thread and survives lost events: an exit without its enter is a
`resumed` call, an enter whose exit never came is `unfinished`, never paired with the wrong half
(rawtrace.syscalls.pairing does the bookkeeping).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from rawtrace.syscalls import pairing

COMPLETE, UNFINISHED, RESUMED, NORETURN = "complete", "unfinished", "resumed", "noreturn"
_STATUS = {pairing.PAIR: COMPLETE, pairing.UNFINISHED: UNFINISHED, pairing.RESUMED: RESUMED,
           pairing.NO_RETURN: NORETURN}
MAX_ERRNO = 4095


class Signature(NamedTuple):
    """What is known of one syscall number (or syscalls:* event), worked out once."""

    nr: int | None
    name: str
    params: tuple[tuple[str, str], ...]    # (argument name, C type) in order
    abi: str = ""
    system: str = "raw_syscalls"           # the events it came from: raw_syscalls, or syscalls (sys_enter_X)


class Syscall:
    """One syscall of one thread. `ts`/`exit_ts` are trace-clock units (ns for the usual clocks);
    `values` the raw argument values in `signature.params` order (None for a resumed call)."""

    __slots__ = ("status", "ts", "exit_ts", "cpu", "exit_cpu", "tid", "pid", "comm", "signature", "values",
                 "ret", "note", "strings")

    def __init__(self, status: str, ts: int | None, exit_ts: int | None, cpu: int | None, exit_cpu: int | None,
                 tid: int, pid: int, comm: str, signature: Signature, values: tuple | None, ret: int | None,
                 note: str | None = None, strings: dict | None = None) -> None:
        self.status = status
        self.ts = ts
        self.exit_ts = exit_ts
        self.cpu = cpu
        self.exit_cpu = exit_cpu
        self.tid = tid
        self.pid = pid
        self.comm = comm
        self.signature = signature
        self.values = values
        self.ret = ret
        self.note = note
        self.strings = strings

    @property
    def name(self) -> str:
        return self.signature.name

    @property
    def nr(self) -> int | None:
        return self.signature.nr

    @property
    def time(self) -> int:
        """When the call is shown: its entry, or its exit for a resumed call."""
        return self.ts if self.ts is not None else self.exit_ts

    @property
    def duration_ns(self) -> int | None:
        if self.ts is None or self.exit_ts is None:
            return None
        return self.exit_ts - self.ts

    @property
    def failed(self) -> bool:
        ret = self.ret
        return ret is not None and -MAX_ERRNO <= ret < 0

    @property
    def errno(self) -> int | None:
        return -self.ret if self.failed else None

    @property
    def args(self) -> dict[str, Any]:
        """Argument name → raw value (strings fetched for the call included, under their argument's name
        in `strings`, not here)."""
        if self.values is None:
            return {}
        return {p[0]: v for p, v in zip(self.signature.params, self.values)}

    def arg(self, name: str, default: Any = None) -> Any:
        if self.values is not None:
            for (param, _ctype), value in zip(self.signature.params, self.values):
                if param == name:
                    return value
        return default

    def string(self, name: str) -> str | None:
        """The user string of argument `name` (`filename`, `pathname`...), if one arrived for this call:
        from a probe, or from the event's own `__<name>_val` field (6.19+)."""
        if self.strings and name in self.strings:
            return self.strings[name]
        value = self.arg(f"__{name}_val")
        return value if isinstance(value, str) else None

    def triples(self) -> list[tuple[str, str, Any]]:
        """(name, C type, value) per argument, as SyscallFormatter takes them."""
        if self.values is None:
            return []
        return [(p[0], p[1], v) for p, v in zip(self.signature.params, self.values)]

    def text(self, formatter) -> str:
        """The strace-like line body: `openat(AT_FDCWD, "/etc/passwd", O_RDONLY) = 3`."""
        name = self.signature.name
        status = self.status
        if status == RESUMED:
            return formatter.format_resumed(name, self.ret)
        args = self.triples()
        strings = self.strings
        if status == COMPLETE:
            return formatter.render(name, args, self.ret, strings)
        if status == UNFINISHED:
            return formatter.format_unfinished(name, args, strings)
        return formatter.format_call(name, args, strings) + " = ?"

    def args_text(self, formatter) -> dict[str, str]:
        return formatter.symbolic_args(self.signature.name, self.triples(), self.strings) if self.values else {}

    def __repr__(self) -> str:
        return (f"Syscall({self.status} {self.signature.name} tid={self.tid} pid={self.pid} comm={self.comm!r} "
                f"ret={self.ret} ts={self.ts})")


class SyscallJoiner:
    """Pairs enter/exit events per thread into Syscall records and hands each to `emit`.

    `tasks` (rawtrace.tasks.TaskTable) gives pid and comm at entry; `resolve(nr, abi)` names raw syscall
    numbers (→ Signature or None); `abi_of(tid)` says which ABI a thread's raw numbers are in (compat
    32-bit tasks on a 64-bit kernel use their own table)."""

    def __init__(self, tasks, emit: Callable[[Syscall], None], resolve: Callable[[int, str], Signature | None],
                 native_abi: str = "", abi_of: Callable[[int], str] | None = None,
                 no_return: Sequence[str] = tuple(pairing.NO_RETURN_NAMES)) -> None:
        self.tasks = tasks
        self.emit = emit
        self.resolve = resolve
        self.native_abi = native_abi
        self.abi_of = abi_of
        self._no_return = frozenset(no_return)
        self._pairers = {"syscalls": pairing.SyscallPairer(no_return_names=no_return),
                         "raw_syscalls": pairing.SyscallPairer(no_return_names=no_return)}
        self._signatures: dict[tuple[int, str], Signature] = {}
        self._named: dict[str, Signature] = {}
        self._strings: dict[int, dict] = {}
        self.counts = {COMPLETE: 0, UNFINISHED: 0, RESUMED: 0, NORETURN: 0}

    # -- what the stream calls ------------------------------------------------------------------
    def handlers(self, events: Sequence[tuple[str, str]], formats: Callable[[str, str], Any]) -> dict:
        """(system, event) → handler for the syscall events among `events`. Enter and exit of a syscall
        are paired only when both are traced; a lone half is left to the caller."""
        chosen = set(events)
        out: dict[tuple[str, str], Callable] = {}
        for pair in chosen:
            handler = self.handler_for(pair, formats, chosen)
            if handler is not None:
                out[pair] = handler
        return out

    def handler_for(self, pair: tuple[str, str], formats: Callable[[str, str], Any],
                    chosen: set | None = None) -> Callable | None:
        """The handler of one syscall event, or None if it is not one (or its other half is not traced;
        `chosen` None: every event is traced, as when decoding a whole recording)."""
        system, name = pair
        if system == "raw_syscalls":
            if chosen is not None and not {("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit")} <= chosen:
                return None
            return {"sys_enter": self.raw_enter, "sys_exit": self.raw_exit}.get(name)
        if system != "syscalls":
            return None
        if name.startswith("sys_enter_"):
            call, other = name[10:], ("syscalls", "sys_exit_" + name[10:])
        elif name.startswith("sys_exit_"):
            call, other = name[9:], ("syscalls", "sys_enter_" + name[9:])
        else:
            return None
        if chosen is not None and other not in chosen:
            return None
        signature = self._named.get(call)
        if signature is None:
            fmt = formats(system, "sys_enter_" + call)
            params = tuple((f.name, f.type) for f in fmt.fields if f.name != "__syscall_nr") if fmt else ()
            signature = self._named[call] = Signature(None, call, params, self.native_abi, "syscalls")
        if name.startswith("sys_enter_"):
            return self._named_enter(signature, [p[0] for p in signature.params])
        return self._named_exit(signature)

    def add_strings(self, tid: int, strings: dict) -> None:
        """User strings fetched for the next syscall of `tid` (a probe in the C library fires just
        before the syscall it wraps); they are attached to that thread's next enter."""
        pending = self._strings.get(tid)
        if pending is None:
            self._strings[tid] = dict(strings)
        else:
            pending.update(strings)

    def lost(self, cpu: int | None, count: int) -> None:
        for pairer in self._pairers.values():
            pairer.lost(cpu, count)
        # A string waiting for its syscall may belong to a call whose events were lost.
        self._strings.clear()

    def thread_exit(self, tid: int) -> None:
        for pairer in self._pairers.values():
            for record in pairer.thread_exit(tid):
                self._emit(record, None)
        self._strings.pop(tid, None)

    def flush(self) -> None:
        """End of the trace: calls still in flight come out as unfinished, oldest first."""
        records = [r for pairer in self._pairers.values() for r in pairer.flush()]
        for record in sorted(records, key=lambda r: r.enter_ts or 0):
            self._emit(record, None)

    @property
    def pending(self) -> int:
        return sum(len(p) for p in self._pairers.values())

    # -- raw_syscalls ---------------------------------------------------------------------------
    def signature(self, nr: int, abi: str) -> Signature:
        key = (nr, abi)
        found = self._signatures.get(key)
        if found is None:
            found = self.resolve(nr, abi) or Signature(nr, f"syscall_{nr}",
                                                      tuple((f"arg{i}", "unsigned long") for i in range(6)), abi)
            self._signatures[key] = found
        return found

    def raw_enter(self, rec) -> None:
        tid = rec.pid
        fields = rec.fields
        nr = fields["id"]
        abi = self.abi_of(tid) if self.abi_of is not None else self.native_abi
        signature = self.signature(nr, abi)
        values = fields.get("args")
        if values is not None:
            values = tuple(values[:len(signature.params)])
        payload = (signature, values, self.tasks.pid(tid), self.tasks.comm(tid), self._strings.pop(tid, None))
        for record in self._pairers["raw_syscalls"].enter(tid, rec.ts, rec.cpu, nr, signature.name, payload):
            self._emit(record, None)

    def raw_exit(self, rec) -> None:
        tid = rec.pid
        fields = rec.fields
        nr = fields["id"]
        for record in self._pairers["raw_syscalls"].exit(tid, rec.ts, rec.cpu, nr, None, fields.get("ret")):
            self._emit(record, rec)

    # -- syscalls:sys_enter_X / sys_exit_X -------------------------------------------------------
    def _named_enter(self, signature: Signature, names: list[str]) -> Callable:
        pairer = self._pairers["syscalls"]
        tasks = self.tasks
        strings = self._strings
        emit = self._emit
        call = signature.name

        numbered = [signature]

        def enter(rec) -> None:
            tid = rec.pid
            fields = rec.fields
            values = tuple([fields.get(n) for n in names])
            sig = numbered[0]
            if sig.nr is None and fields.get("__syscall_nr") is not None:
                sig = numbered[0] = self._named[call] = sig._replace(nr=fields["__syscall_nr"])
            payload = (sig, values, tasks.pid(tid), tasks.comm(tid), strings.pop(tid, None))
            for record in pairer.enter(tid, rec.ts, rec.cpu, None, call, payload):
                emit(record, None)
        return enter

    def _named_exit(self, signature: Signature) -> Callable:
        pairer = self._pairers["syscalls"]
        emit = self._emit
        call = signature.name

        def exit_(rec) -> None:
            for record in pairer.exit(rec.pid, rec.ts, rec.cpu, None, call, rec.fields.get("ret")):
                emit(record, rec)
        return exit_

    # -- records → Syscall ----------------------------------------------------------------------
    def _emit(self, record: pairing.SyscallRecord, exit_rec) -> None:
        if record.kind == pairing.PAIR and record.note == pairing.NOTE_LOST:
            # Events were lost between this enter and exit: they may belong to different calls of the
            # same syscall. Shown as what is known for sure, never joined.
            self._emit(record._replace(kind=pairing.UNFINISHED, ret=None, exit_ts=None, exit_cpu=None,
                                       duration_ns=None), None)
            self._emit(record._replace(kind=pairing.RESUMED, args=None, enter_ts=None, enter_cpu=None,
                                       duration_ns=None), exit_rec)
            return
        status = _STATUS[record.kind]
        self.counts[status] += 1
        tid = record.tid
        if record.args is not None:
            signature, values, pid, comm, strings = record.args
        else:
            # An exit whose enter was not seen: name it from the exit alone.
            tasks = self.tasks
            pid, comm, values, strings = tasks.pid(tid), tasks.comm(tid), None, None
            if record.nr is not None:
                abi = self.abi_of(tid) if self.abi_of is not None else self.native_abi
                signature = self.signature(record.nr, abi)
            else:
                signature = self._named.get(record.name) or \
                    Signature(None, record.name or "?", (), self.native_abi, "syscalls")
        self.emit(Syscall(status, record.enter_ts, record.exit_ts, record.enter_cpu, record.exit_cpu, tid, pid,
                          comm, signature, values, record.ret, record.note, strings))


def table_resolver(arch: str, formats: Callable[[str, str], Any] | None = None) -> Callable[[int, str], Signature | None]:
    """resolve(nr, abi) for SyscallJoiner from rawtrace's syscall table of `arch`: names from the table
    of that ABI, argument names and types from the syscall's tracepoint format where there is one."""
    from rawtrace.syscalls.tables import load_table
    table = load_table(arch)
    native = table.arch.abis[0].name

    def resolve(nr: int, abi: str) -> Signature | None:
        row = table.by_nr(nr, abi or native)
        if row is None:
            return None
        params: tuple = ()
        fmt = None
        if formats is not None and (abi or native) == native:
            try:
                fmt = formats("syscalls", f"sys_enter_{row.tracepoint or row.name}")
            except Exception:  # noqa: BLE001 - a format we cannot read only costs argument names
                fmt = None
        if fmt is not None:
            params = tuple((f.name, f.type) for f in fmt.fields if f.name != "__syscall_nr")
        else:
            params = tuple((f"arg{i}", "unsigned long") for i in range(6))
        return Signature(nr, row.name, params, abi or native)
    return resolve
