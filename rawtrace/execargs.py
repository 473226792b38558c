"""exec argument capture: uprobe plans that fetch argv in the kernel, and joining them with the exec events."""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rawtrace.errors import UsageError
from rawtrace.tasks import exec_comm

# Kernel limits behind the plan (kernel/trace/trace_probe.h):
# - MAX_ARRAY_LEN 64: a fixed array fetch has at most 64 elements, so one fetch is at most 64 u64 words.
# - MAX_PROBE_EVENT_SIZE 3072: the fixed part of a probe event may not exceed 3 KiB (E2BIG, seen on 6.18.44).
# - MAX_TRACE_ARGS 128 fetchargs per event.
# - One page per hit for fetched data (trace_uprobe.c MAX_UCB_BUFFER_SIZE): a `ustring` of 4 KiB or more
#   overflows it, which the kernel answers with a WARN_ON_ONCE and a truncated record. That is why the plan
#   fetches strings as fixed u64 arrays only: every event's size is known when it is created and can never
#   overflow, whatever the traced program passes.
MAX_ARRAY_WORDS = 64
EVENT_BYTES = 3072
EVENT_ARGS = 127
WORD = 8

# Default coverage: argv[0..HEAD_ARGS) up to `max_arg_len` bytes each, later arguments up to TAIL_LEN bytes
# (a length of 8n-1 bytes fills n words with the NUL). A slot whose pointer is NULL or garbage (past the end
# of argv) still costs one failed user-memory read per word, the main cost of a wide plan.
# Measured with tools/bench_exec.py on a busy 2-CPU VM (noisy): this default (with the program-start site)
# added ~0.6 ms per exec of /bin/true where bpftrace's execsnoop added ~1.0 ms in the same run; the wide
# plan of the live test (320 args, 2 x 10 KiB) ~8 ms.
DEFAULT_MAX_ARGS = 32
DEFAULT_MAX_ARG_LEN = 1023
DEFAULT_HEAD_ARGS = 1
DEFAULT_TAIL_LEN = 63
DEFAULT_PATH_LEN = 256

SOURCE_UPROBE = "uprobe"
SOURCE_UPROBE_PROC = "uprobe+proc"
SOURCE_START = "uprobe-start"
SOURCE_START_PROC = "uprobe-start+proc"
SOURCE_PROC = "proc"
SOURCE_HELD = "fanotify"         # read from the caller's memory while fanotify held the exec (rawtrace.exechold)
SOURCE_NONE = "none"


@dataclass(frozen=True, slots=True)
class ExecSite:
    """A C library function that enters execve/execveat, with the argument positions (1-based) it takes.

    glibc's execv, execl, execle, execlp, execvp, execvpe, posix_spawn and system all reach the code at
    `execve` (calls to its internal alias __execve land on the same address), so three sites cover the
    family; fexecve issues execveat itself. Verified with objdump on glibc 2.36 (Debian 12)."""

    symbol: str
    syscall: str
    path_arg: int | None
    argv_arg: int
    envp_arg: int | None
    argc_arg: int | None = None     # where argc is known (the start site): exact guards


SITES: tuple[ExecSite, ...] = (
    ExecSite("execve", "execve", 1, 2, 3),
    ExecSite("execveat", "execveat", 2, 3, 4),
    ExecSite("fexecve", "execveat", None, 2, 3),
)
# Where every dynamically linked program starts: glibc's __libc_start_main(main, argc, argv, ...) runs in
# the new process, with argv on its fresh stack. It catches what the call sites cannot see (execs by static
# binaries, Go programs and raw syscall(2) callers, of dynamically linked programs), as the program received
# it (a script's argv as rewritten for its interpreter). `syscall` "start" marks it.
START_SITE = ExecSite("__libc_start_main", "start", None, 3, None, argc_arg=2)

# psABI argument registers (verify against rawtrace.probes.ARCHES, which carries the same lists).
_ARG_REGISTERS = {
    "x86_64": ("di", "si", "dx", "cx", "r8", "r9"),
    "aarch64": tuple(f"x{i}" for i in range(8)),
}
_ARG_REGISTERS["arm64"] = _ARG_REGISTERS["aarch64"]


@dataclass(frozen=True, slots=True)
class Slot:
    """Bytes [offset, offset + words*8) of string `index` of a vector (argv or envp; -1 = the path)."""

    vector: str
    index: int
    offset: int
    words: int

    @property
    def field(self) -> str:
        if self.index < 0:
            return f"path_{self.offset}"
        return f"{self.vector[0]}{self.index}_{self.offset}"


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One uprobe event of a plan: its name, the rawtrace probe spec, the filter that drops it when it
    carries nothing, and which slots and pointer fields it holds."""

    name: str
    site: ExecSite
    spec: str
    filter: str | None
    slots: tuple[Slot, ...]
    pointers: tuple[tuple[str, int], ...]       # (vector, index) whose pointer value this event carries
    head: bool
    size: int


@dataclass(frozen=True, slots=True)
class PlanLimits:
    max_args: int = DEFAULT_MAX_ARGS
    max_arg_len: int = DEFAULT_MAX_ARG_LEN
    head_args: int = DEFAULT_HEAD_ARGS
    tail_len: int = DEFAULT_TAIL_LEN
    path_len: int = DEFAULT_PATH_LEN
    max_env: int = 0
    env_len: int = 256

    def check(self) -> None:
        for name in ("max_args", "max_arg_len", "tail_len", "path_len"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name.replace('_', '-')} must be at least 1")
        if self.max_args > 4096 or self.max_env > 4096:
            raise UsageError("at most 4096 arguments or environment strings can be planned for uprobes")
        if self.max_arg_len > 131072 or self.env_len > 131072:
            raise UsageError("--max-arg-len is at most 131072 (the kernel's MAX_ARG_STRLEN)")


def _words(length: int) -> int:
    """Words to hold `length` bytes of text plus its NUL (the NUL proves the string was not cut)."""
    return (length + 1 + WORD - 1) // WORD


def vector_slots(vector: str, count: int, head: int, head_len: int, tail_len: int) -> list[list[Slot]]:
    """Per string, the slots covering it: the first `head` strings get `head_len` bytes, the rest `tail_len`."""
    out = []
    for index in range(count):
        words = _words(head_len if index < head else tail_len)
        slots, offset = [], 0
        while words > 0:
            take = min(words, MAX_ARRAY_WORDS)
            slots.append(Slot(vector, index, offset, take))
            offset += take * WORD
            words -= take
        out.append(slots)
    return out


def plan(arch: str, limits: PlanLimits, sites: Iterable[ExecSite] = SITES, library: str = "libc") -> list[PlannedEvent]:
    """The uprobe events capturing argv (and envp when asked) at every exec site of the C library.

    Every event's fixed size stays within EVENT_BYTES. Each event after the first carries a guard: the
    pointer of its first string (dropped when NULL: past the end of argv) and, for a continuation chunk,
    the byte just before it (dropped when 0: the string ended in an earlier chunk). A guard that passes
    on garbage (memory past argv's NULL) only costs ring-buffer space; the assembler trusts only data
    before the first NULL pointer and the first NUL byte."""
    limits.check()
    registers = _ARG_REGISTERS.get(arch)
    if registers is None:
        raise UsageError(f"exec argument capture is not known for architecture {arch}")
    events: list[PlannedEvent] = []
    for site in sites:
        events.extend(_plan_site(site, registers, limits, library))
    return events


def _plan_site(site: ExecSite, registers: tuple[str, ...], limits: PlanLimits, library: str) -> list[PlannedEvent]:
    argv_reg = registers[site.argv_arg - 1]
    argc_reg = registers[site.argc_arg - 1] if site.argc_arg is not None else ""
    envp_reg = registers[site.envp_arg - 1] if site.envp_arg is not None else ""
    max_env = limits.max_env if site.envp_arg is not None else 0
    units: list[tuple[Slot, str]] = []      # (slot, register holding its vector, or the path itself)
    if site.path_arg is not None:
        units.extend((Slot("path", -1, slot.offset, slot.words), registers[site.path_arg - 1])
                     for slot in vector_slots("path", 1, 1, limits.path_len, limits.path_len)[0])
    for slots in vector_slots("argv", limits.max_args, limits.head_args, limits.max_arg_len, limits.tail_len):
        units.extend((slot, argv_reg) for slot in slots)
    for slots in vector_slots("envp", max_env, 0, limits.env_len, limits.env_len):
        units.extend((slot, envp_reg) for slot in slots)

    events: list[PlannedEvent] = []
    builder = _EventBuilder(site, library, head=True, argv_reg=argv_reg, envp_reg=envp_reg)
    # The pointer just past the plan: NULL when argv has exactly max_args strings, not more.
    builder._field(f"amore=+{WORD * limits.max_args}(%{argv_reg}):x64", WORD)
    if max_env:
        builder._field(f"emore=+{WORD * max_env}(%{envp_reg}):x64", WORD)
    for slot, register in units:
        need = slot.words * WORD + (WORD if slot.offset == 0 and slot.index >= 0 else 0)
        # envp never shares an event guarded by an argv pointer: it would vanish with short argvs.
        new_vector = slot.vector == "envp" and any(s.vector != "envp" for s in builder.slots) and not builder.head
        # An event guarded by a continuation's byte holds only that string: the guard drops it whenever
        # the string is short, which says nothing about the strings after it.
        first = builder.slots[0] if builder.slots else None
        other_string = (not builder.head and first is not None and first.offset > 0
                        and (slot.vector, slot.index) != (first.vector, first.index))
        if builder.slots and (new_vector or other_string or builder.size + need > EVENT_BYTES
                              or len(builder.args) + 2 > EVENT_ARGS):
            events.append(builder.build(len(events)))
            builder = _EventBuilder(site, library, head=False, first=slot, register=register, argv_reg=argv_reg,
                                    argc_reg=argc_reg)
        builder.add(slot, register)
    if builder.slots:
        events.append(builder.build(len(events)))
    return events


class _EventBuilder:
    """Fields of one planned event, laid out as the kernel will (packed, in order)."""

    def __init__(self, site: ExecSite, library: str, *, head: bool, first: Slot | None = None,
                 register: str | None = None, argv_reg: str = "", envp_reg: str = "",
                 argc_reg: str = "") -> None:
        self.site, self.library, self.head = site, library, head
        self.args: list[str] = []
        self.slots: list[Slot] = []
        self.pointers: list[tuple[str, int]] = []
        self.size = 0
        self.guard: str | None = None
        # Every event carries the argv pointer: the kernel runs the consumers of one probe address
        # newest first, so a hit's events come in no useful order; this pointer (and the thread) joins them.
        self._field(f"argv=%{argv_reg}:x64", WORD)
        if head and envp_reg:
            self._field(f"envp=%{envp_reg}:x64", WORD)
        elif first is not None and first.index >= 0:
            self._pointer(first, register or "")
            self.guard = f"{_pointer_name(first.vector, first.index)} != 0"
            if argc_reg and first.vector == "argv":
                # argc known: past argv's end are envp's (non-NULL) pointers, so guard on the count.
                self._field(f"argc=%{argc_reg}:x64", WORD)
                self.guard = f"argc > {first.index}"
            if first.offset:
                # The last byte before this chunk: NUL (0) when the string ended earlier.
                name = f"{first.vector[0]}b{first.index}_{first.offset}"
                self._field(f"{name}=+{first.offset - 1}(+{WORD * first.index}(%{register})):u8", 1)
                self.guard += f" && {name} != 0"

    def _field(self, text: str, nbytes: int) -> None:
        self.args.append(text)
        self.size += nbytes

    def _pointer(self, slot: Slot, register: str) -> None:
        key = (slot.vector, slot.index)
        if key not in self.pointers:
            self.pointers.append(key)
            self._field(f"{_pointer_name(*key)}=+{WORD * slot.index}(%{register}):x64", WORD)

    def add(self, slot: Slot, register: str) -> None:
        if slot.index >= 0 and slot.offset == 0:
            self._pointer(slot, register)
        if slot.index >= 0:
            fetch = f"+{slot.offset}(+{WORD * slot.index}(%{register}))"
        else:
            fetch = f"+{slot.offset}(%{register})"
        self._field(f"{slot.field}={fetch}:u64[{slot.words}]", slot.words * WORD)
        self.slots.append(slot)

    def build(self, number: int) -> PlannedEvent:
        name = f"{self.site.symbol}_{number}"
        spec = f"{name}=uprobe:{self.library}:{self.site.symbol} " + " ".join(self.args)
        assert self.size <= EVENT_BYTES and len(self.args) <= EVENT_ARGS, (name, self.size)
        return PlannedEvent(name, self.site, spec, None if self.head else self.guard, tuple(self.slots),
                            tuple(self.pointers), self.head, self.size)


def _pointer_name(vector: str, index: int) -> str:
    return f"{vector[0]}p{index}"


# ---------------------------------------------------------------------------------------------------
# Assembling the strings of one probe hit


_NATIVE_WORDS: dict[int, struct.Struct] = {}


def words_to_bytes(value) -> bytes:
    """A decoded u64[N] field (tuple of ints, or raw bytes) as the bytes it was read from."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, int):
        value = (value,)
    count = len(value)
    packer = _NATIVE_WORDS.get(count)
    if packer is None:
        packer = _NATIVE_WORDS[count] = struct.Struct(("<" if sys.byteorder == "little" else ">") + f"{count}Q")
    return packer.pack(*(v & 0xFFFFFFFFFFFFFFFF for v in value))


@dataclass(slots=True)
class Capture:
    """Strings read by the uprobes of one exec call: argv (and envp) as bytes, with truncation marks."""

    ts: int
    tid: int
    site: str
    syscall: str
    argv_pointer: int
    envp_pointer: int
    path: bytes | None = None
    path_truncated: bool = False
    argv: list[bytes] = field(default_factory=list)
    argv_cut: list[bool] = field(default_factory=list)      # per argument: cut at the plan's length
    argv_more: bool = False                                  # more arguments than the plan covers
    envp: list[bytes] | None = None
    envp_cut: list[bool] = field(default_factory=list)
    envp_more: bool = False
    incomplete: bool = False        # an event of the hit is missing although its guard should have passed

    @property
    def truncated(self) -> bool:
        return self.argv_more or any(self.argv_cut)


class HitAssembler:
    """Collects the events of probe hits per thread and turns each hit into a Capture.

    Feed every plan event with `add(name, ts, tid, fields)`, in any order; `take(tid, argv_pointer)` at the
    syscall's entry returns the capture made of the thread's events with that argv pointer, and forgets
    the thread's events (a later hit is a later call)."""

    def __init__(self, events: Iterable[PlannedEvent], max_args: int, max_env: int = 0) -> None:
        self.by_name = {event.name: event for event in events}
        self.max_args = max_args
        self.max_env = max_env
        self._bags: dict[int, dict[str, tuple[int, dict]]] = {}
        self._suspect: set[int] = set()

    def add(self, name: str, ts: int, tid: int, fields: dict) -> None:
        if name in self.by_name:
            self._bags.setdefault(tid, {})[name] = (ts, fields)

    def forget(self, tid: int) -> None:
        self._bags.pop(tid, None)

    def lost(self) -> None:
        """Events were lost: the hits collected so far may lack some (their captures are marked)."""
        self._suspect.update(self._bags)

    def take(self, tid: int, argv_pointer: int | None = None, site: str | None = None) -> Capture | None:
        """The capture of `tid`'s events with that argv pointer (any, if None) at `site` (the call sites,
        if None: not the program-start site)."""
        bag = self._bags.pop(tid, None)
        suspect = tid in self._suspect
        self._suspect.discard(tid)
        if not bag:
            return None
        by_name = self.by_name
        got = {name: fields for name, (_ts, fields) in bag.items()
               if (argv_pointer is None or fields.get("argv") == argv_pointer)
               and ((by_name[name].site.syscall == "start") == (site is not None))
               and (site is None or by_name[name].site.symbol == site)}
        heads = sorted((bag[name][0], name) for name in got if by_name[name].head)
        if not heads:
            return None
        # Heads of two sites (fexecve falling back to execve after a lost syscall event): the latest is
        # this call; the events of other sites are dropped below.
        head = by_name[heads[-1][1]]
        got = {name: fields for name, fields in got.items() if self.by_name[name].site == head.site}
        capture = self._assemble(head, bag[head.name][0], tid, got)
        capture.incomplete = capture.incomplete or suspect
        return capture

    def _assemble(self, head: PlannedEvent, ts: int, tid: int, got: dict[str, dict]) -> Capture:
        site_events = [e for e in self.by_name.values() if e.site == head.site]
        head_fields = got[head.name]
        capture = Capture(ts, tid, head.site.symbol, head.site.syscall, head_fields.get("argv", 0),
                          head_fields.get("envp", 0))
        pointers: dict[tuple[str, int], int] = {}
        chunks: dict[tuple[str, int], dict[int, bytes]] = {}
        absent_first: dict[tuple[str, int], bool] = {}
        for event in site_events:
            values = got.get(event.name)
            if values is None:
                if event.slots:
                    first = event.slots[0]
                    if first.offset == 0:
                        absent_first[(first.vector, first.index)] = True
                continue
            for vector, index in event.pointers:
                value = values.get(_pointer_name(vector, index))
                if value is not None:
                    pointers[(vector, index)] = value
            for slot in event.slots:
                data = values.get(slot.field)
                if data is not None:
                    chunks.setdefault((slot.vector, slot.index), {})[slot.offset] = words_to_bytes(data)
        if head.site.path_arg is not None:
            capture.path, capture.path_truncated = _join_string(chunks.get(("path", -1), {}))
        if capture.argv_pointer == 0:
            # execve(path, NULL, ...): Linux runs it with an empty argv; every fetch through it faulted,
            # leaving stale bytes that must not be read as arguments.
            pointers = {key: value for key, value in pointers.items() if key[0] != "argv"}
            absent_first = {key: True for key in absent_first if key[0] != "argv"} | {("argv", 0): True}
            pointers[("argv", 0)] = 0
        capture.argv, capture.argv_cut, capture.argv_more, gap = self._vector(
            "argv", self.max_args, pointers, chunks, absent_first)
        capture.argv_more = capture.argv_more and head_fields.get("amore", 1) != 0
        capture.incomplete = gap
        if capture.envp_pointer == 0:
            pointers[("envp", 0)] = 0
        if self.max_env and head.site.envp_arg is not None:
            capture.envp, capture.envp_cut, capture.envp_more, gap = self._vector(
                "envp", self.max_env, pointers, chunks, absent_first)
            capture.envp_more = capture.envp_more and head_fields.get("emore", 1) != 0
            capture.incomplete = capture.incomplete or gap
        return capture

    @staticmethod
    def _vector(vector: str, limit: int, pointers, chunks, absent_first):
        strings: list[bytes] = []
        cut: list[bool] = []
        gap = False
        for index in range(limit):
            key = (vector, index)
            pointer = pointers.get(key)
            if pointer is None:
                # Its event was dropped by its guard (pointer NULL: the end of the vector), unless lost.
                if not absent_first.get(key):
                    gap = True
                return strings, cut, False, gap
            if pointer == 0:
                return strings, cut, False, gap
            text, was_cut = _join_string(chunks.get(key, {}))
            strings.append(text)
            cut.append(was_cut)
        return strings, cut, True, gap


def _join_string(chunks: dict[int, bytes]) -> tuple[bytes, bool]:
    """The string in consecutive chunks up to its NUL; (text, True) when no NUL was seen (cut)."""
    out = bytearray()
    offset = 0
    while offset in chunks:
        data = chunks[offset]
        nul = data.find(b"\0")
        if nul >= 0:
            out += data[:nul]
            return bytes(out), False
        out += data
        offset += len(data)
    # A missing continuation chunk means its guard byte (the last byte before it) was NUL, which the
    # previous chunk would have shown; so only running past the plan (or a lost event) ends here.
    return bytes(out), True


# ---------------------------------------------------------------------------------------------------
# 6.19+ syscall events with the user string recorded in the event


def syscall_string_fields(field_names: Iterable[str]) -> dict[str, str]:
    """{argument: field} for the `__<arg>_val` string fields a syscall event carries (6.19+), e.g.
    {'filename': '__filename_val'}. Only the filename of execve/execveat is recorded there; argv stays
    an array of pointers, so argument capture still needs probes."""
    out = {}
    for name in field_names:
        match = re.fullmatch(r"__(\w+?)_val", name)
        if match:
            out[match.group(1)] = name
    return out


# ---------------------------------------------------------------------------------------------------
# Joining: probe hits, sys_enter/sys_exit of execve/execveat, sched_process_exec


@dataclass(slots=True)
class ExecAttempt:
    """One execve/execveat call, as shown by `rawtrace exec`."""

    ts: int
    pid: int                # process (tgid) after the exec; the caller's tgid for a failed one
    tid: int
    ppid: int | None
    comm: str | None        # before the exec
    new_comm: str | None    # after it (None when it failed)
    syscall: str
    filename: str | None    # as resolved by the kernel (sched_process_exec); else the path given
    argv: list[bytes]
    argv_cut: list[bool]
    argv_more: bool
    argv_source: str
    ret: int | None
    envp: list[bytes] | None = None
    envp_more: bool = False
    end_ts: int | None = None
    incomplete: bool = False

    @property
    def ok(self) -> bool:
        return self.ret == 0

    @property
    def truncated(self) -> bool:
        return self.argv_more or any(self.argv_cut)


@dataclass(slots=True)
class _Pending:
    ts: int
    tid: int
    syscall: str
    comm: str | None
    capture: Capture | None
    given_path: str | None
    filename: str | None = None
    new_pid: int | None = None
    exec_seen: bool = False
    incomplete: bool = False
    new_comm: str | None = None
    argv_pointer: int | None = None
    held: Capture | None = None


def _agrees(capture: Capture, started: Capture) -> bool:
    """Whether the argv read at the program's start continues what the call site captured (a script's
    argv, rewritten for its interpreter, does not: the call site's then stands)."""
    if len(started.argv) < len(capture.argv):
        return False
    for index, text in enumerate(capture.argv):
        other = started.argv[index]
        if not (other.startswith(text) if capture.argv_cut[index] else other == text):
            return False
    return len(started.argv) == len(capture.argv) or capture.argv_more


def merge_cmdline(argv: list[bytes], cut: list[bool], more: bool, cmdline: bytes | None
                  ) -> tuple[list[bytes], list[bool], bool, bool]:
    """Complete a cut capture from /proc/PID/cmdline when the cmdline agrees with what was captured.

    Returns (argv, cut, more, used_cmdline). The cmdline is only trusted when every captured string is a
    prefix of (or equal to) the cmdline's string at the same place: a process may rewrite its cmdline."""
    if cmdline is None or not (more or any(cut)):
        return argv, cut, more, False
    parts = cmdline.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    if len(parts) < len(argv):
        return argv, cut, more, False
    for index, text in enumerate(argv):
        if cut[index] and not parts[index].startswith(text):
            return argv, cut, more, False
        if not cut[index] and parts[index] != text:
            return argv, cut, more, False
    if not more and len(parts) != len(argv):
        return argv, cut, more, False
    return parts, [False] * len(parts), False, True


class ExecJoiner:
    """Turns the event sequence of exec calls into ExecAttempt records.

    Pure: the caller feeds events in time order and supplies `tgid_of(tid)`, `comm_of(tid)`,
    `ppid_of(tgid)` and optionally `cmdline_of(pid, ts)` (the program's /proc cmdline as near as can be to
    its exec at `ts`; racy, used only when a capture was cut or missing) and `held_of(tid, argv_pointer)`
    (the Capture read while fanotify held the exec, rawtrace.exechold: whole and exact, preferred to every
    other; argv_pointer None for an exec whose entry was not seen), called as held_of(tid, argv_pointer,
    since, until) with the trace times the exec must have been held between (its entry, or a second
    before an exec seen alone, and the event now at hand). Attempts come out of
    `enter`/`exit`/`process_exec`/`thread_exit` calls as lists."""

    def __init__(self, assembler: HitAssembler | None, *, tgid_of: Callable[[int], int],
                 comm_of: Callable[[int], str | None], ppid_of: Callable[[int], int | None],
                 cmdline_of: Callable[[int, int], bytes | None] | None = None, start_site: str | None = None,
                 wait_ns: int = 200_000_000,
                 held_of: Callable[[int, int | None, int, int], Capture | None] | None = None) -> None:
        self.assembler = assembler
        self.tgid_of = tgid_of
        self.comm_of = comm_of
        self.ppid_of = ppid_of
        self.cmdline_of = cmdline_of
        self.held_of = held_of
        self._pending: dict[int, _Pending] = {}
        self._cmdlines: dict[int, bytes | None] = {}
        # Successful execs whose argv the call site did not (fully) capture, waiting for the new
        # program's start-site hit: pid -> (pending, ret, exit ts).
        self.start_site = start_site
        self.wait_ns = wait_ns
        self._waiting: dict[int, tuple[_Pending, int | None, int]] = {}

    def lost(self) -> None:
        """Events were lost somewhere: every call in flight may miss probe events or its exit."""
        if self.assembler is not None:
            self.assembler.lost()
        for pending in self._pending.values():
            pending.incomplete = True

    def probe(self, name: str, ts: int, tid: int, fields: dict) -> list[ExecAttempt]:
        """A probe event. A waiting exec is finished when its program-start hit's head event arrives: the
        kernel runs the consumers of one address newest first, so the head (defined first) comes last."""
        if self.assembler is None:
            return []
        self.assembler.add(name, ts, tid, fields)
        event = self.assembler.by_name.get(name)
        if tid in self._waiting and event is not None and event.head and event.site.symbol == self.start_site:
            pending, ret, _since = self._waiting.pop(tid)
            return [self._finish(pending, ret, ts)]
        return []

    def enter(self, ts: int, tid: int, syscall: str, fields: dict) -> list[ExecAttempt]:
        """sys_enter_execve / sys_enter_execveat. `fields` as decoded (argv pointer, maybe __filename_val)."""
        out = self.settle(ts, tid)
        stale = self._pending.pop(tid, None)
        if stale is not None:       # its exit was lost; say what we know
            out.append(self._finish(stale, None, ts))
        capture = None
        if self.assembler is not None:
            capture = self.assembler.take(tid, fields.get("argv"))
            if capture is None:
                self.assembler.forget(tid)
        given = fields.get("__filename_val")
        if isinstance(given, bytes):
            given = given.decode("utf-8", "surrogateescape")
        if given is None and capture is not None and capture.path is not None:
            given = capture.path.decode("utf-8", "surrogateescape")
        pointer = fields.get("argv")
        self._pending[tid] = _Pending(ts, tid, syscall, self.comm_of(tid), capture, given,
                                      argv_pointer=pointer if isinstance(pointer, int) else None)
        return out

    def process_exec(self, ts: int, pid: int, old_pid: int, filename: str) -> list[ExecAttempt]:
        """sched_process_exec: the exec succeeded; a non-leader thread's exec also changes its tid to `pid`.

        An exec without a seen entry (a 32-bit compat task: the syscall events skip compat calls; or a
        lost event) is reported at once, with what /proc still shows."""
        early = self.settle(ts, pid)
        pending = self._pending.pop(old_pid, None)
        caller_comm = None
        if pending is not None and pending.exec_seen:
            # Two execs without an exit between: the first loaded a 32-bit program, whose syscall exit
            # (and its own execs' entries and exits) the syscall events skip. The first succeeded.
            first = self._finish(pending, 0, ts)
            early.append(first)
            caller_comm = first.new_comm
            pending = None
        alone = pending is None
        if pending is None:
            pending = _Pending(ts, old_pid, "execve", caller_comm, None, None)
        pending.filename = filename
        pending.new_pid = pid
        pending.exec_seen = True
        pending.new_comm = exec_comm(filename)
        if self.held_of is not None and pending.held is None:
            # Read before this event could be written: the exec waited for it.
            pending.held = self.held_of(old_pid, pending.argv_pointer, ts - 1_000_000_000 if alone else pending.ts, ts)
        if self.cmdline_of is not None and pending.held is None and (
                pending.capture is None or pending.capture.truncated):
            # Read now: this is the earliest moment the caller sees the new process.
            self._cmdlines[pid] = self.cmdline_of(pid, ts)
        if alone:
            return early + self._wait_or_finish(pending, 0, ts)     # sched_process_exec: it succeeded
        self._pending[pid] = pending
        return early

    def exit(self, ts: int, tid: int, ret: int) -> list[ExecAttempt]:
        """sys_exit_execve / sys_exit_execveat."""
        pending = self._pending.pop(tid, None)
        if pending is None:
            return []
        if self.held_of is not None and pending.held is None and not pending.exec_seen and ret < 0:
            # Failed after the file was opened (ENOEXEC, E2BIG...): held and read all the same.
            pending.held = self.held_of(tid, pending.argv_pointer, pending.ts, ts)
        return self._wait_or_finish(pending, ret, ts)

    def _wait_or_finish(self, pending: _Pending, ret: int | None, ts: int) -> list[ExecAttempt]:
        capture = pending.capture
        if (pending.held is None and self.start_site is not None and pending.exec_seen and ret in (0, None)
                and (capture is None or capture.truncated) and pending.new_pid is not None):
            self._waiting[pending.new_pid] = (pending, ret, ts)
            return []
        return [self._finish(pending, ret, ts)]

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    def settle(self, ts: int, tid: int | None = None) -> list[ExecAttempt]:
        """Finish the waiting attempts of `tid` (its program has moved on) and those older than wait_ns."""
        if not self._waiting:
            return []
        out = []
        for pid in [p for p, (_pending, _ret, since) in self._waiting.items()
                    if p == tid or ts - since > self.wait_ns]:
            pending, ret, _since = self._waiting.pop(pid)
            out.append(self._finish(pending, ret, ts))
        return out

    def thread_exit(self, ts: int, tid: int) -> list[ExecAttempt]:
        """sched_process_exit: an exec that never reported its return (lost event, killed) ends here."""
        out = self.settle(ts, tid)
        pending = self._pending.pop(tid, None)
        if self.assembler is not None:
            self.assembler.forget(tid)
        if pending is None:
            return out
        return out + [self._finish(pending, 0 if pending.exec_seen else None, ts)]

    def flush(self, ts: int) -> list[ExecAttempt]:
        out = [self._finish(p, ret, ts) for p, ret, _since in self._waiting.values()]
        self._waiting.clear()
        out += [self._finish(p, 0 if p.exec_seen else None, ts) for p in self._pending.values()]
        self._pending.clear()
        return out

    def _finish(self, pending: _Pending, ret: int | None, ts: int) -> ExecAttempt:
        capture = pending.capture
        cmdline = self._cmdlines.pop(pending.new_pid, None) if pending.new_pid is not None else None
        started = None
        if self.start_site is not None and self.assembler is not None and pending.new_pid is not None \
                and pending.exec_seen:
            started = self.assembler.take(pending.new_pid, None, self.start_site)
        held = pending.held
        if held is not None:
            argv, cut, more, source = list(held.argv), list(held.argv_cut), held.argv_more, SOURCE_HELD
            capture = held              # (its envp too: whole where --env asked for it)
        elif started is not None and (capture is None or _agrees(capture, started)):
            # The program's own argv, read at its start: complete where the call site's was cut.
            argv, cut, more = list(started.argv), list(started.argv_cut), started.argv_more
            source = SOURCE_START
            if capture is None or started.truncated:
                argv, cut, more, used = merge_cmdline(argv, cut, more, cmdline)
                if used:
                    source = SOURCE_START_PROC
        elif capture is not None:
            argv, cut, more = list(capture.argv), list(capture.argv_cut), capture.argv_more
            source = SOURCE_UPROBE
            if pending.exec_seen and ret in (0, None):
                argv, cut, more, used = merge_cmdline(argv, cut, more, cmdline)
                if used:
                    source = SOURCE_UPROBE_PROC
        elif pending.exec_seen and cmdline is not None:
            argv = [part for part in cmdline.split(b"\0")]
            if argv and argv[-1] == b"":
                argv.pop()
            cut, more, source = [False] * len(argv), False, SOURCE_PROC
        else:
            argv, cut, more, source = [], [], False, SOURCE_NONE
        pid = pending.new_pid if pending.new_pid is not None else self.tgid_of(pending.tid)
        filename = pending.filename if pending.exec_seen else pending.given_path
        new_comm = pending.new_comm if pending.exec_seen else None
        return ExecAttempt(
            ts=pending.ts, pid=pid, tid=pending.tid, ppid=self.ppid_of(pid), comm=pending.comm,
            new_comm=new_comm, syscall=pending.syscall, filename=filename, argv=argv, argv_cut=cut,
            argv_more=more, argv_source=source, ret=ret,
            envp=capture.envp if capture is not None else None,
            envp_more=capture.envp_more if capture is not None else False, end_ts=ts,
            incomplete=pending.incomplete or (capture.incomplete if capture is not None else False))
