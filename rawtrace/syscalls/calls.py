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

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from rawtrace.parse.record import Event
from rawtrace.syscalls import pairing

COMPLETE, UNFINISHED, RESUMED, NORETURN = "complete", "unfinished", "resumed", "noreturn"
MAX_ERRNO = 4095
_new = tuple.__new__


class Signature(NamedTuple):
    """What is known of one syscall number (or syscalls:* event), worked out once."""

    nr: int | None
    name: str
    params: tuple[tuple[str, str], ...]    # (argument name, C type) in order
    abi: str = ""
    system: str = "raw_syscalls"           # the events it came from: raw_syscalls, or syscalls (sys_enter_X)


class Syscall(NamedTuple):
    """One syscall of one thread. `ts`/`exit_ts` are trace-clock units (ns for the usual clocks);
    `values` the raw argument values in `signature.params` order (None for a resumed call). A named
    tuple: one is made per call on the hot path, where tuple.__new__ is the cheapest constructor."""

    status: str
    ts: int | None
    exit_ts: int | None
    cpu: int | None
    exit_cpu: int | None
    tid: int
    pid: int
    comm: str
    signature: Signature
    values: tuple | None
    ret: int | None
    note: str | None = None
    strings: dict | None = None

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
        sig = self.signature
        return formatter.call_text(sig.name, sig.params, self.values, self.ret, self.status, self.strings)

    def args_text(self, formatter) -> dict[str, str]:
        return formatter.symbolic_args(self.signature.name, self.triples(), self.strings) if self.values else {}

    def __repr__(self) -> str:
        return (f"Syscall({self.status} {self.signature.name} tid={self.tid} pid={self.pid} comm={self.comm!r} "
                f"ret={self.ret} ts={self.ts})")


class SysEnter(NamedTuple):
    """A raw_syscalls:sys_enter record as the joiner reads it (decoded straight to this where the joiner's
    batch loop takes every such record: no Event, no fields dict)."""

    ts: int
    cpu: int
    pid: int            # the thread (common_pid), as in Event
    nr: int
    args: tuple | None


class SysExit(NamedTuple):
    """A raw_syscalls:sys_exit record as the joiner reads it (see SysEnter)."""

    ts: int
    cpu: int
    pid: int
    nr: int
    ret: int | None


class SyscallJoiner:
    """Pairs enter/exit events per thread into Syscall records and hands each to `emit`.

    `tasks` (rawtrace.tasks.TaskTable) gives pid and comm at entry; `resolve(nr, abi)` names raw syscall
    numbers (→ Signature or None); `abis` maps the threads whose raw numbers are in another ABI than
    `native_abi` to theirs (compat 32-bit tasks on a 64-bit kernel use their own table)."""

    def __init__(self, tasks, emit: Callable[[Syscall], None], resolve: Callable[[int, str], Signature | None],
                 native_abi: str = "", abis: Mapping[int, str] | None = None,
                 no_return: Sequence[str] = tuple(pairing.NO_RETURN_NAMES)) -> None:
        self.tasks = tasks
        self.emit = emit
        self.resolve = resolve
        self.native_abi = native_abi
        self.abis = abis if abis is not None else {}
        self._no_return = frozenset(no_return)
        # tid -> (ts, cpu, key, signature, values, pid, comm, strings, loss epoch) of the call in flight;
        # key is the syscall number (raw_syscalls) or name (syscalls:*): an exit pairs only with an
        # enter of the same key. One table per event family: a syscall traced both ways pairs twice.
        self._pending = {"syscalls": {}, "raw_syscalls": {}}
        self._epoch = 0
        self.max_pending = 1 << 16
        self._signatures: dict[tuple[int, str], Signature] = {}
        # nr -> (Signature, its argument count) of native-ABI calls that return: raw_enter's common case
        self._native_returning: dict[int, tuple[Signature, int]] = {}
        self._named: dict[str, Signature] = {}
        self._strings: dict[int, dict] = {}
        self.counts = {COMPLETE: 0, UNFINISHED: 0, RESUMED: 0, NORETURN: 0}
        self.fork_returns = 0
        # A consumer's shortcut for the most common record, set by a tool before the first batch:
        # fn(ts, exit_ts, cpu, exit_cpu, tid, pid, comm, signature, values, ret), called instead of `emit`
        # for a complete call without strings (no Syscall is built for it: the function does that itself,
        # by complete_call(), for what it does not handle).
        self.complete: Callable | None = None
        # fn(record) per raw_syscalls event (instance attributes: closures over the tables above).
        self.raw_enter, self.raw_exit = self._raw_handlers()

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
        """Events were lost: every call in flight may have lost its exit (a thread may have migrated to
        the CPU that lost them), so none of them is paired across the gap."""
        self._epoch += 1
        # A string waiting for its syscall may belong to a call whose events were lost.
        self._strings.clear()

    def thread_exit(self, tid: int) -> None:
        for pending in self._pending.values():
            entry = pending.pop(tid, None)
            if entry is not None:
                self._unfinished(tid, entry, pairing.NOTE_THREAD_EXIT)
        self._strings.pop(tid, None)

    def flush(self) -> None:
        """End of the trace: calls still in flight come out as unfinished, oldest first."""
        entries = [(entry, tid) for pending in self._pending.values() for tid, entry in pending.items()]
        for pending in self._pending.values():
            pending.clear()
        for entry, tid in sorted(entries, key=lambda item: (item[0][0], item[1])):
            self._unfinished(tid, entry, pairing.NOTE_FLUSH)

    @property
    def pending(self) -> int:
        return sum(len(p) for p in self._pending.values())

    # -- raw_syscalls ---------------------------------------------------------------------------
    def signature(self, nr: int, abi: str) -> Signature:
        key = (nr, abi)
        found = self._signatures.get(key)
        if found is None:
            found = self.resolve(nr, abi) or Signature(nr, f"syscall_{nr}",
                                                      tuple((f"arg{i}", "unsigned long") for i in range(6)), abi)
            self._signatures[key] = found
            if abi == self.native_abi and found.name not in self._no_return:
                self._native_returning[nr] = (found, len(found.params))
        return found

    def batch_handler(self, dispatch: Mapping[int, Callable], deliver: Callable,
                      decoders=None) -> Callable | None:
        """fn(records) pairing a whole batch of raw_syscalls records in one loop, other records handed
        to `deliver`; None unless raw_syscalls' enter and exit are both dispatched to this joiner (its
        raw_enter and raw_exit) and to nothing else. With the source's `decoders` (a DecoderSet), their
        records are decoded straight to SysEnter/SysExit from then on: only this loop sees them."""
        ids = self._raw_ids(dispatch)
        if ids is None:
            return None
        enter_id, exit_id = ids
        enter, exit_ = self.raw_enter, self.raw_exit
        enter_tuple, exit_tuple = self._enter_tuple, self._exit_tuple
        self.tuple_handlers(dispatch, decoders)

        def batch(records) -> None:
            for rec in records:
                cls = rec.__class__
                if cls is SysExit:
                    exit_tuple(rec)
                    continue
                if cls is SysEnter:
                    enter_tuple(rec)
                    continue
                if cls is Event:
                    event_id = rec.id
                    if event_id == exit_id:
                        exit_(rec)
                        continue
                    if event_id == enter_id:
                        enter(rec)
                        continue
                deliver(rec)
        return batch

    def tuple_handlers(self, dispatch: Mapping[int, Callable], decoders) -> dict[type, Callable]:
        """{SysEnter: fn, SysExit: fn} for a batch loop, once raw_syscalls' records are decoded straight to
        those (by the source's `decoders`, a DecoderSet); empty unless raw_syscalls' enter and exit are
        dispatched to this joiner's raw_enter and raw_exit alone (then no one else needs their Events)."""
        ids = self._raw_ids(dispatch)
        if decoders is None or ids is None:
            return {}
        out = {}
        if decoders.install_tuple(ids[0], SysEnter, ("id", "args")):
            out[SysEnter] = self._enter_tuple
        if decoders.install_tuple(ids[1], SysExit, ("id", "ret")):
            out[SysExit] = self._exit_tuple
        return out

    def _raw_ids(self, dispatch: Mapping[int, Callable]) -> tuple[int, int] | None:
        """(enter ID, exit ID) of raw_syscalls where `dispatch` hands them to raw_enter and raw_exit alone."""
        enter_id = exit_id = None
        for event_id, handler in dispatch.items():
            if handler is self.raw_enter:
                enter_id = event_id
            elif handler is self.raw_exit:
                exit_id = event_id
        return None if enter_id is None or exit_id is None else (enter_id, exit_id)

    def _raw_handlers(self) -> tuple[Callable, Callable]:
        """(raw_enter, raw_exit): fn(Event) for raw_syscalls:sys_enter and sys_exit; they hand the record on
        as a SysEnter/SysExit to _enter_tuple/_exit_tuple (made here once with the tables they use bound:
        the common case of each inline, no further call, no attribute lookup)."""
        pending = self._pending["raw_syscalls"]
        pending_pop = pending.pop
        abis = self.abis
        native_abi = self.native_abi
        no_return = self._no_return
        tasks = self.tasks
        tgids_get = tasks.tgids.get
        names_get = tasks.names.get
        counts = self.counts
        returning_get = self._native_returning.get
        strings = self._strings
        joiner = self

        def exit_tuple(rec) -> None:
            ts, cpu, tid, nr, ret = rec
            entry = pending_pop(tid, None)
            if entry is not None and entry[2] == nr and entry[8] == joiner._epoch:
                # The common case: the enter of the same call is in flight (as _exit() does it).
                counts[COMPLETE] += 1
                complete = joiner.complete
                if complete is not None and entry[7] is None:
                    complete(entry[0], ts, entry[1], cpu, tid, entry[5], entry[6], entry[3], entry[4], ret)
                else:
                    joiner.emit(_new(Syscall, (COMPLETE, entry[0], ts, entry[1], cpu, tid, entry[5], entry[6],
                                               entry[3], entry[4], ret, None, entry[7])))
            elif nr < 0 and entry is None:
                # A new task's first return to user space (from fork/clone) carries no syscall number: it
                # is no call of its own (strace does not show one either).
                joiner.fork_returns += 1
            else:
                if entry is not None:
                    pending[tid] = entry         # (_exit() judges it)
                joiner._exit(pending, rec, nr, ret)

        def enter_tuple(rec) -> None:
            ts, cpu, tid, nr, values = rec
            abi = abis.get(tid, native_abi) if abis else native_abi
            known = returning_get(nr) if abi == native_abi else None
            if known is None:
                signature = joiner.signature(nr, abi)
                count = len(signature.params)
            else:
                signature, count = known
            if values is not None:
                values = values[:count]
            if tid in pending or strings or (known is None and signature.name in no_return):
                joiner._enter(pending, tid, rec, nr, signature, values)
                return
            # The common case: nothing in flight for the thread, no strings waiting, a call that returns.
            pid = tgids_get(tid)
            comm = names_get(tid)
            if pid is None or comm is None:
                pid, comm = tasks.pid(tid), tasks.comm(tid)
            pending[tid] = (ts, cpu, nr, signature, values, pid, comm, None, joiner._epoch)
            if len(pending) > joiner.max_pending:
                oldest = next(iter(pending))
                joiner._unfinished(oldest, pending.pop(oldest), pairing.NOTE_EVICTED)
        self._enter_tuple, self._exit_tuple = enter_tuple, exit_tuple

        def raw_exit(rec) -> None:
            fields = rec.fields
            exit_tuple(_new(SysExit, (rec.ts, rec.cpu, rec.pid, fields["id"], fields.get("ret"))))

        def raw_enter(rec) -> None:
            fields = rec.fields
            enter_tuple(_new(SysEnter, (rec.ts, rec.cpu, rec.pid, fields["id"], fields.get("args"))))
        return raw_enter, raw_exit

    def _enter(self, pending: dict, tid: int, rec, key, signature: Signature, values) -> None:
        tasks = self.tasks
        earlier = pending.pop(tid, None)
        entry = (rec.ts, rec.cpu, key, signature, values, tasks.pid(tid), tasks.comm(tid),
                 self._strings.pop(tid, None) if self._strings else None, self._epoch)
        if earlier is not None:
            # The exit of the earlier call was lost or never came (thread killed, lost events).
            self._unfinished(tid, earlier, pairing.NOTE_NEW_ENTER)
        if signature.name in self._no_return:
            # No exit follows a successful exit/exit_group: emitted now, kept out of the table.
            self._make(NORETURN, tid, entry, None, None, None, None)
            return
        pending[tid] = entry
        if len(pending) > self.max_pending:
            oldest = next(iter(pending))
            self._unfinished(oldest, pending.pop(oldest), pairing.NOTE_EVICTED)

    def _exit(self, pending: dict, rec, key, ret) -> None:
        tid = rec.pid
        entry = pending.pop(tid, None)
        if entry is not None and entry[2] == key and entry[8] == self._epoch:
            self.counts[COMPLETE] += 1
            if self.complete is not None and entry[7] is None:
                self.complete(entry[0], rec.ts, entry[1], rec.cpu, tid, entry[5], entry[6], entry[3], entry[4], ret)
            else:
                self.emit(Syscall(COMPLETE, entry[0], rec.ts, entry[1], rec.cpu, tid, entry[5], entry[6],
                                  entry[3], entry[4], ret, None, entry[7]))
            return
        note = None
        if entry is not None:
            # Never join halves that may belong to different calls: another syscall's enter, or one
            # from before lost events.
            note = pairing.NOTE_MISMATCH if entry[2] != key else pairing.NOTE_LOST
            self._unfinished(tid, entry, note)
        elif self._epoch:
            note = pairing.NOTE_BEFORE_LOSS
        tasks = self.tasks
        if key.__class__ is int:
            signature = self.signature(key, self.abis.get(tid, self.native_abi))
        else:
            signature = self._named.get(key) or Signature(None, key, (), self.native_abi, "syscalls")
        self._make(RESUMED, tid, None, rec, ret, note, (tasks.pid(tid), tasks.comm(tid), signature))

    def _unfinished(self, tid: int, entry: tuple, note: str) -> None:
        if note == pairing.NOTE_NEW_ENTER and entry[8] != self._epoch:
            note = pairing.NOTE_NEW_ENTER + "; " + pairing.NOTE_LOST
        self._make(UNFINISHED, tid, entry, None, None, note, None)

    def _make(self, status: str, tid: int, entry, exit_rec, ret, note, who) -> None:
        self.counts[status] += 1
        if entry is not None:
            self.emit(Syscall(status, entry[0], None, entry[1], None, tid, entry[5], entry[6], entry[3], entry[4],
                              None, note, entry[7]))
        else:
            pid, comm, signature = who
            self.emit(Syscall(status, None, exit_rec.ts, None, exit_rec.cpu, tid, pid, comm, signature, None, ret,
                              note, None))

    # -- syscalls:sys_enter_X / sys_exit_X -------------------------------------------------------
    def _named_enter(self, signature: Signature, names: list[str]) -> Callable:
        pending = self._pending["syscalls"]
        enter_ = self._enter
        call = signature.name
        numbered = [signature]

        def enter(rec) -> None:
            fields = rec.fields
            values = tuple([fields.get(n) for n in names])
            sig = numbered[0]
            if sig.nr is None and fields.get("__syscall_nr") is not None:
                sig = numbered[0] = self._named[call] = sig._replace(nr=fields["__syscall_nr"])
            enter_(pending, rec.pid, rec, call, sig, values)
        return enter

    def _named_exit(self, signature: Signature) -> Callable:
        pending = self._pending["syscalls"]
        exit_ = self._exit
        call = signature.name

        def on_exit(rec) -> None:
            exit_(pending, rec, call, rec.fields.get("ret"))
        return on_exit


def complete_call(ts: int, exit_ts: int, cpu: int, exit_cpu: int, tid: int, pid: int, comm: str,
                  signature: Signature, values, ret) -> Syscall:
    """The Syscall of a complete call without strings or note, from SyscallJoiner.complete's arguments."""
    return _new(Syscall, (COMPLETE, ts, exit_ts, cpu, exit_cpu, tid, pid, comm, signature, values, ret, None, None))


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
