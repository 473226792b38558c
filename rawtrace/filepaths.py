"""Where file paths come from: syscall string fields (6.19+), libc uprobes joined by thread and pointer, fanotify."""

from __future__ import annotations

import bisect
import io
import os
import re
import struct
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rawtrace.host import Host

# path_source values, best first; the summary counts events per source.
SOURCE_KERNEL = "syscall"        # the syscall event's own __X_val string (6.19+)
SOURCE_UPROBE = "uprobe"         # a libc uprobe fetched the string in the kernel, joined by tid + pointer
SOURCE_EPROBE = "eprobe"         # an event probe on the syscall's enter event fetched it (same join)
SOURCE_FANOTIFY = "fanotify"     # fanotify named the file for the same pid
SOURCE_FDTABLE = "fdtable"       # an fd mapped through the fd table (its open had one of the above)
SOURCE_PROC = "proc"             # /proc/PID/fd/N read late (racy)
SOURCE_UNKNOWN = "unknown"
SOURCES = (SOURCE_KERNEL, SOURCE_EPROBE, SOURCE_UPROBE, SOURCE_FANOTIFY, SOURCE_FDTABLE, SOURCE_PROC, SOURCE_UNKNOWN)


@dataclass(frozen=True, slots=True)
class PathArg:
    """A path argument of a syscall: its tracepoint field name and the dirfd field it is relative to."""

    name: str
    dfd: str | None = None


# Syscalls whose arguments name files, with tracepoint argument names as this kernel's formats spell
# them (events/syscalls/sys_enter_*/format). Renames and links have a second path.
PATH_SYSCALLS: dict[str, tuple[PathArg, ...]] = {
    "open": (PathArg("filename"),),
    "openat": (PathArg("filename", "dfd"),),
    "openat2": (PathArg("filename", "dfd"),),
    "creat": (PathArg("pathname"),),
    "execve": (PathArg("filename"),),
    "execveat": (PathArg("filename", "fd"),),
    "unlink": (PathArg("pathname"),),
    "unlinkat": (PathArg("pathname", "dfd"),),
    "rmdir": (PathArg("pathname"),),
    "mkdir": (PathArg("pathname"),),
    "mkdirat": (PathArg("pathname", "dfd"),),
    "rename": (PathArg("oldname"), PathArg("newname")),
    "renameat": (PathArg("oldname", "olddfd"), PathArg("newname", "newdfd")),
    "renameat2": (PathArg("oldname", "olddfd"), PathArg("newname", "newdfd")),
    "truncate": (PathArg("path"),),
    "chmod": (PathArg("filename"),),
    "fchmodat": (PathArg("filename", "dfd"),),
    "fchmodat2": (PathArg("filename", "dfd"),),
    "chown": (PathArg("filename"),),
    "lchown": (PathArg("filename"),),
    "fchownat": (PathArg("filename", "dfd"),),
    "utimensat": (PathArg("filename", "dfd"),),
    "utimes": (PathArg("filename"),),
    "utime": (PathArg("filename"),),
    "chdir": (PathArg("filename"),),
}


@dataclass(frozen=True, slots=True)
class LibcFunction:
    """A libc entry point that takes path arguments (1-based positions) and issues a path syscall."""

    name: str
    path_args: tuple[int, ...]


# The C library's entry points (x86_64 glibc names; aliases such as open/open64 share an address and
# are probed once). glibc's open()/fopen() reach the kernel from open64 without calling openat(), and
# opendir() and friends from __open_nocancel, so each entry point is probed itself.
LIBC_FUNCTIONS: tuple[LibcFunction, ...] = (
    LibcFunction("open64", (1,)),
    LibcFunction("__open64_2", (1,)),
    LibcFunction("__open64_nocancel", (1,)),
    LibcFunction("openat64", (2,)),
    LibcFunction("__openat64_2", (2,)),
    LibcFunction("creat64", (1,)),
    LibcFunction("execve", (1,)),
    LibcFunction("execveat", (2,)),
    LibcFunction("unlink", (1,)),
    LibcFunction("unlinkat", (2,)),
    LibcFunction("rmdir", (1,)),
    LibcFunction("mkdir", (1,)),
    LibcFunction("mkdirat", (2,)),
    LibcFunction("rename", (1, 2)),
    LibcFunction("renameat", (2, 4)),
    LibcFunction("renameat2", (2, 4)),
    LibcFunction("truncate64", (1,)),
    LibcFunction("chmod", (1,)),
    LibcFunction("fchmodat", (2,)),
    LibcFunction("chown", (1,)),
    LibcFunction("lchown", (1,)),
    LibcFunction("fchownat", (2,)),
    LibcFunction("utimensat", (2,)),
    LibcFunction("utimes", (1,)),
    LibcFunction("chdir", (1,)),
)

# Probe event names: a prefix plus the function, so handlers can tell them apart.
EVENT_PREFIX = "files_"


def kernel_string_args(fields: Iterable[str]) -> set[str]:
    """The arguments whose user string the syscall event itself carries: `__<arg>_val` fields.

    Linux 6.19 (kernel/trace/trace_syscalls.c, syscall_enter_define_fields) adds one such
    `__data_loc char[]` field after the argument slots, for the first user pointer only (renameat2's
    `oldname`, not `newname`)."""
    names = set(fields)
    return {name[2:-4] for name in names if name.startswith("__") and name.endswith("_val")
            and name[2:-4] in names}


def kernel_string_value(data: object) -> str | None:
    """The path a `__X_val` field holds: NUL-terminated (non-printable bytes already '.'), else None
    when the copy faulted (an empty dynamic string)."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if not isinstance(data, str):
        return None
    data = data.split("\0", 1)[0]
    return data or None


@dataclass(frozen=True, slots=True)
class PlannedProbe:
    """One uprobe to create: its spec text for rawtrace.probes and what its fields mean."""

    function: str
    event: str
    spec: str
    fields: tuple[tuple[str, str], ...]      # (pointer field, string field) per path it records


@dataclass(frozen=True, slots=True)
class UprobePlan:
    library: str | None
    probes: tuple[PlannedProbe, ...]
    missing: tuple[str, ...]         # functions this libc does not export
    reason: str | None = None        # why there is no plan at all
    loader: str | None = None        # the dynamic linker, when its own opens are probed too


# Every uprobe of a plan records the same two fields, the pointer to join on and the string, so all are
# probe points of one event: the kernel enables and disables an event's probes together and waits for
# one grace period (about 50 ms here) per event, not per probe, when rawtrace ends.
UPROBE_EVENT = f"{EVENT_PREFIX}path"
UPROBE_FIELDS = (("p", "s"),)


def probe_specs(library: str, function: LibcFunction, offset: int = 0) -> list[str]:
    """One probe point per path argument: `files_path=uprobe:LIB:open64 p=arg1:x64 s=arg1:ustring`. One
    string per hit: the kernel copies a hit's fetched data through one page, and strings that add up to
    more than that get a WARN_ON_ONCE (a panic where panic_on_warn is set) and a cut record; rename's two
    paths of 2 KiB each would overflow one hit. A single string over the kernel's 4096-byte
    MAX_STRING_SIZE is recorded as empty, but one of 4084-4095 characters still overflows with the event's
    12 fixed bytes: rawtrace.probes says what is done about that. `offset`: where in the
    function the probe goes (x86_64 only, see rawtrace.x86entry; the arguments are then named by their
    registers, as argN means "at the entry")."""
    if not offset:
        return [f"{UPROBE_EVENT}=uprobe:{library}:{function.name} p=arg{n}:x64 s=arg{n}:ustring"
                for n in function.path_args]
    where = f"{function.name}+{offset:#x}"
    return [f"{UPROBE_EVENT}=uprobe:{library}:{where} p=%{_X86_64_ARGS[n - 1]}:x64 s=+0(%{_X86_64_ARGS[n - 1]}):ustring"
            for n in function.path_args]


def plan_uprobes(host: Host | None = None, library: str = "libc", skip_syscalls: Iterable[str] = (),
                 functions: Sequence[LibcFunction] = LIBC_FUNCTIONS) -> UprobePlan:
    """Resolve the C library programs load and each entry point in it; one probe per address.

    Functions whose syscalls already carry their only path in the event (`skip_syscalls`) are left out."""
    from rawtrace import elf
    from rawtrace.errors import UsageError
    host = host or Host()
    try:
        path = elf.resolve_target(library, host)
    except UsageError as exc:
        return UprobePlan(None, (), (), f"no C library to probe: {exc.message}")
    skip = set(skip_syscalls)
    probes, missing, offsets = [], [], set()
    # x86_64: each probe at the first instruction of its entry block the kernel emulates, where that is safe
    # (a single-stepped probe costs several times more per hit). The library's bytes are read once.
    code = _regular_file_bytes(host.path(path)) if host.machine() == "x86_64" else None
    entries: list[int] = []
    if code is not None:
        # Another symbol inside the stretch skipped over is an entry point of its own: no moving past it.
        try:
            entries = sorted({e.file_offset for e in elf.list_functions(path, "*", host) if e.file_offset is not None})
        except UsageError:
            code = None
    for function in functions:
        syscall = _FUNCTION_SYSCALL.get(function.name, function.name)
        if syscall in skip:
            continue
        try:
            found = elf.resolve_symbol(path, function.name, host)
        except UsageError:
            missing.append(function.name)
            continue
        if found.file_offset in offsets:
            continue
        offsets.add(found.file_offset)
        offset = 0
        if code is not None:
            from rawtrace.x86entry import emulated_offset
            reads = {_X86_64_ARGS[n - 1] for n in function.path_args}
            offset = emulated_offset(code[found.file_offset:found.file_offset + found.size], found.size, reads)
            inside = bisect.bisect_right(entries, found.file_offset)
            if offset and inside < len(entries) and entries[inside] <= found.file_offset + offset:
                offset = 0
        for spec in probe_specs(path, function, offset):
            probes.append(PlannedProbe(function.name, UPROBE_EVENT, spec, UPROBE_FIELDS))
    loader = loader_path(host)
    sites = [site for site in loader_sites(loader, host) if site[1] not in skip] if loader else []
    for address, syscall, registers in sites:
        for reg in registers:
            spec = f"{UPROBE_EVENT}=uprobe:{loader}:{address:#x} p={reg}:x64 s=+0({reg}):ustring"
            probes.append(PlannedProbe(f"ld.so {syscall}", UPROBE_EVENT, spec, UPROBE_FIELDS))
    return UprobePlan(path, tuple(probes), tuple(missing), loader=loader if sites else None)


# The dynamic linker opens the libraries it loads (and ld.so.cache) with its own copy of open, which no
# libc entry point sees and which exports no symbol. Its syscall instructions are found by their bytes
# instead and probed themselves: there the registers hold exactly the syscall's arguments. On x86_64 a
# glibc inline syscall is `syscall; cmp $-4096 (or -4095),%rax` (8 bytes that pin the instruction
# boundary), with the number loaded by a `mov $NR,%eax` a few instructions before.
_X86_64_SYSCALL = re.compile(rb"\x0f\x05\x48\x3d[\x00\x01]\xf0\xff\xff")
_X86_64_NUMBER = re.compile(rb"(?=\xb8(....))", re.DOTALL)      # (overlapping: a b8 byte inside another)
_X86_64_SITE_SYSCALLS = {257: ("openat", ("%si",)), 2: ("open", ("%di",))}
_X86_64_ARGS = ("di", "si", "dx", "cx", "r8", "r9")          # argN for a uprobe at a function
_NUMBER_WINDOW = 16          # bytes before the syscall searched for its number


_LOADER_MAX_BYTES = 64 << 20


def _regular_file_bytes(path) -> bytes | None:
    """The bytes of `path` if it is a regular file of at most 64 MiB (a FIFO or a device in a --root
    tree must neither block nor run on), else None."""
    import stat
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _LOADER_MAX_BYTES:
            return None
        with open(path, "rb") as f:
            return f.read(_LOADER_MAX_BYTES)
    except OSError:
        return None


def loader_path(host: Host) -> str | None:
    """The dynamic linker the system's programs name (PT_INTERP of /bin/sh), or None."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    data = _regular_file_bytes(host.path("/bin/sh"))
    if data is None:
        return None
    try:
        for segment in ELFFile(io.BytesIO(data)).iter_segments():
            if segment["p_type"] == "PT_INTERP":
                return segment.get_interp_name()
    except (ELFError, ValueError, struct.error, IndexError, KeyError):
        pass
    return None


def loader_sites(path: str, host: Host) -> list[tuple[int, str, tuple[str, ...]]]:
    """(virtual address, syscall, registers holding its paths) of the open syscall instructions in the
    dynamic linker `path` (x86_64 only; none elsewhere or for a file that cannot be read)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    if host.machine() != "x86_64":
        return []
    data = _regular_file_bytes(host.path(path))
    if data is None:
        return []
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64":
            return []                 # (a 32-bit /bin/sh names a 32-bit loader: other code, other numbers)
        segments = [(seg["p_offset"], seg["p_filesz"], seg["p_vaddr"])
                    for seg in elf.iter_segments()
                    if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & 1]       # PF_X
    except (ELFError, ValueError, struct.error, IndexError, KeyError):
        return []
    return code_sites(data, segments)


def code_sites(data: bytes, segments: Sequence[tuple[int, int, int]]) -> list[tuple[int, str, tuple[str, ...]]]:
    """loader_sites() over a file's bytes and its executable segments (file offset, size, address)."""
    out = []
    for offset, size, vaddr in segments:
        for match in _X86_64_SYSCALL.finditer(data, offset, offset + size):
            at = match.start()
            # `mov $NR,%eax` (b8 imm32): the one right before the syscall if it is there, else the nearest.
            # A b8 after a REX prefix is a move to r8d..r15d (41 b8), not to eax.
            numbers = [m for m in _X86_64_NUMBER.finditer(data, max(offset, at - _NUMBER_WINDOW), at)
                       if m.start() + 5 <= at and not (m.start() > offset and 0x40 <= data[m.start() - 1] <= 0x4f)]
            if not numbers:
                continue
            number = next((m for m in numbers if m.start() == at - 5), numbers[-1])
            known = _X86_64_SITE_SYSCALLS.get(int.from_bytes(number.group(1), "little"))
            if known is not None:
                out.append((at - offset + vaddr, *known))
    return out


# The syscall an entry point's only path would show up in on a 6.19+ kernel; renames keep their probe
# because the kernel copies only the first of their two paths.
_FUNCTION_SYSCALL = {
    "open64": "openat", "__open64_2": "openat", "__open64_nocancel": "openat", "openat64": "openat",
    "__openat64_2": "openat", "creat64": "creat", "truncate64": "truncate",
    "rename": "-", "renameat": "-", "renameat2": "-",
}


EPROBE_PREFIX = "files_e_"


def plan_eprobes(syscalls: Iterable[str]) -> UprobePlan:
    """Event probes on the syscall enter events (kernels with CONFIG_EPROBE_EVENTS): the string is read
    in the kernel at syscall entry for every program, libc or not, static or not. Each probe fetches,
    per path argument, the pointer (to join on, as for uprobes) and the user string behind it."""
    probes = []
    for name in syscalls:
        path_args = PATH_SYSCALLS.get(name)
        if not path_args:
            continue
        args = []
        for position, arg in enumerate(path_args, 1):
            args += [f"p{position}={arg.name}:x64", f"s{position}={arg.name}:ustring"]
        event = f"{EPROBE_PREFIX}{name}"
        spec = f"{event}=eprobe:syscalls:sys_enter_{name} " + " ".join(args)
        fields = tuple((f"p{n}", f"s{n}") for n in range(1, len(path_args) + 1))
        probes.append(PlannedProbe(name, event, spec, fields))
    return UprobePlan("kernel (eprobes on the syscall events)", tuple(probes), ())


class Capture:
    """Strings a uprobe fetched on one thread, keyed by the user pointer they were read from."""

    __slots__ = ("strings", "ts")

    def __init__(self, ts: int, strings: dict[int, str]) -> None:
        self.ts = ts
        self.strings = strings


class UprobeJoiner:
    """Joins libc uprobe strings to the same thread's next path syscall by pointer value.

    The uprobe fires at the libc entry; the syscall enter follows on the same thread and carries the
    same user pointer in its path slot, so a pointer match confirms the join (a libc function that
    issues another syscall, or a nested call, never gets a wrong string). Captures older than
    `max_age_ns` or beyond `per_thread` per thread are dropped (counted as `stale`)."""

    def __init__(self, max_age_ns: int = 2_000_000_000, per_thread: int = 4, max_threads: int = 1 << 15) -> None:
        self.max_age_ns = max_age_ns
        self.per_thread = per_thread
        self.max_threads = max_threads
        self._pending: dict[int, deque[Capture]] = {}
        self.joined = 0
        self.stale = 0

    def capture(self, tid: int, ts: int, pointers_and_strings: Sequence[tuple[int, object]]) -> None:
        """A uprobe hit: (pointer, fetched string) per path argument."""
        strings = {}
        for pointer, text in pointers_and_strings:
            value = _probe_string(text)
            if pointer and value is not None:
                strings[pointer] = value
        if not strings:
            return
        queue = self._pending.get(tid)
        if queue is None:
            if len(self._pending) >= self.max_threads:
                oldest = next(iter(self._pending))
                self.stale += len(self._pending.pop(oldest))
            queue = self._pending[tid] = deque()
        queue.append(Capture(ts, strings))
        while len(queue) > self.per_thread:
            queue.popleft()
            self.stale += 1

    def join(self, tid: int, ts: int, pointers: Sequence[int]) -> list[str | None]:
        """The strings for a syscall enter's path pointers (None where no capture matches)."""
        queue = self._pending.get(tid)
        found: list[str | None] = [None] * len(pointers)
        if not queue:
            return found
        while queue and ts - queue[0].ts > self.max_age_ns:
            queue.popleft()
            self.stale += 1
        for index, pointer in enumerate(pointers):
            for capture in reversed(queue):
                text = capture.strings.get(pointer)
                if text is not None:
                    found[index] = text
                    break
        if any(text is not None for text in found):
            self.joined += 1
            # The captures up to the matching one are used up: libc made its syscall.
            for position in range(len(queue) - 1, -1, -1):
                if any(queue[position].strings.get(p) is not None for p in pointers):
                    for _ in range(position + 1):
                        queue.popleft()
                    break
        if not queue:
            self._pending.pop(tid, None)
        return found

    def forget(self, tid: int) -> None:
        self._pending.pop(tid, None)


def _probe_string(text: object) -> str | None:
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if not isinstance(text, str) or text == "" or text == "(fault)":
        return None
    return text


class PendingOpen:
    """A syscall whose path no string source gave, waiting for fanotify to name it."""

    __slots__ = ("call", "kind", "pid", "ts")

    def __init__(self, pid: int, ts: int, kind: str, call: object) -> None:
        self.pid = pid
        self.ts = ts
        self.kind = kind      # "open", "exec", "create", "delete", "modify"...
        self.call = call


class FanotifyJoiner:
    """Names syscalls no string source named from fanotify events of the same pid, in order.

    fanotify reports the file of each open, exec, create, delete for the process that did it. For each
    pid the syscalls still unnamed are matched, oldest first, to that pid's fanotify events of the same
    kind that no named syscall accounts for (a named syscall consumes the first event with its path).
    Events and syscalls left over after `settle_ns` are released: fanotify-only events are reported on
    their own (a file access fatrace would show is never dropped), unnamed syscalls as unknown."""

    def __init__(self, settle_ns: int = 300_000_000, canonical=None, margin_ns: int = 10_000_000,
                 give_up_ns: int = 5_000_000_000) -> None:
        self.settle_ns = settle_ns
        self.margin_ns = margin_ns
        self.give_up_ns = give_up_ns
        self._caught_up = 0
        self._caught_up_at = 0
        # fanotify names a file by its real path; a syscall by what the program wrote (symlinks kept).
        # canonical(path) gives an opened file's real path, canonical.entry(path) a created or deleted
        # entry's (its directory resolved, the entry itself kept).
        self.canonical = canonical
        self._calls: dict[tuple[int, str], deque[PendingOpen]] = {}
        self._events: dict[tuple[int, str], deque] = {}
        self._named: dict[tuple[int, str], deque[tuple[int, str]]] = {}
        self.joined = 0

    def unnamed(self, pending: PendingOpen, epoch: int = 0) -> None:
        self._calls.setdefault((pending.pid, pending.kind, epoch), deque()).append(pending)

    def named(self, pid: int, kind: str, path: str, ts: int, epoch: int = 0) -> None:
        """A syscall named by another source: its fanotify twin must not name another call.

        `epoch` (here and in unnamed/event) counts the process's execs: fanotify merges an event with an
        identical one of the same pid still queued (env exec'ing bash opens ld.so.cache and libc again),
        so calls are only matched to events of the same program image."""
        if self.canonical is not None:
            try:
                # A created or deleted entry as fanotify names it: its directory resolved, not the entry.
                entry = getattr(self.canonical, "entry", self.canonical)
                path = entry(path) if kind in ("create", "delete") else self.canonical(path)
            except (OSError, ValueError):
                pass
        self._named.setdefault((pid, kind, epoch), deque()).append((ts, path))

    def event(self, pid: int, kind: str, event: object, path: str | None, ts: int, epoch: int = 0) -> None:
        self._events.setdefault((pid, kind, epoch), deque()).append((ts, path, event))

    def match(self, now: int, final: bool = False, caught_up: int | None = None, drained: int | None = None,
              compatible=None) -> tuple[list[tuple[PendingOpen, object]], list[object], list[PendingOpen]]:
        """(joined (call, fanotify event) pairs, fanotify events alone, calls given up) as of `now`.

        Exact when `caught_up` (every syscall up to this time has been processed) and `drained` (fanotify
        was read empty at this time) are given on the events' clock: an event is decided once the syscall
        side is past its read time, so every call that could have caused it has been seen; a call is given
        up once fanotify was drained after its exit and the events read by then are decided. Without them,
        or while the syscall side is idle for `settle_ns`, ages against `now` decide.

        fanotify merges an event into an identical queued one of the same pid, which can move it ahead of
        others (an exec's CLOSE of the old image's libc absorbs the new image's OPEN of libc). So an event
        goes to the oldest waiting call that `compatible(call, event)` accepts (for instance: the call's fd
        was read before the event was, exactly when the event has FAN_ACCESS), else to the oldest."""
        margin = self.margin_ns
        if caught_up is not None and caught_up != self._caught_up:
            self._caught_up, self._caught_up_at = caught_up, now
        idle = caught_up is None or now - self._caught_up_at > self.settle_ns
        if caught_up is not None and idle:
            # No syscall for a while: the syscall side has nothing left to deliver.
            caught_up = max(caught_up, now - self.settle_ns)

        def decided(ts: int) -> bool:
            if final:
                return True
            if caught_up is not None and ts + margin <= caught_up:
                return True
            return idle and now - ts >= (self.settle_ns if caught_up is not None else self.settle_ns // 3)

        joined: list[tuple[PendingOpen, object]] = []
        alone: list[object] = []
        given_up: list[PendingOpen] = []
        for key in list(self._events):
            events = self._events[key]
            named = self._named.get(key)
            calls = self._calls.get(key)
            remaining = deque()
            for ts, path, event in events:
                if remaining or not decided(ts):
                    remaining.append((ts, path, event))      # keep the pid's order
                    continue
                if named and self._consume_named(named, path):
                    continue
                if calls:
                    pending = self._pick(calls, event, compatible)
                    joined.append((pending, event))
                    self.joined += 1
                    continue
                if final or caught_up is not None or now - ts > self.settle_ns:
                    alone.append(event)
                else:
                    remaining.append((ts, path, event))
            if remaining:
                self._events[key] = remaining
            else:
                del self._events[key]
        exact_ready = (drained is not None and caught_up is not None and drained + margin <= caught_up
                       and not any(q and q[0][0] <= drained for q in self._events.values()))
        for key in list(self._calls):
            calls = self._calls[key]
            while calls and (final or (exact_ready and calls[0].ts + margin <= drained)
                             or (caught_up is None and now - calls[0].ts > self.settle_ns)
                             or (caught_up is not None and caught_up - calls[0].ts > self.give_up_ns)):
                given_up.append(calls.popleft())
            if not calls:
                del self._calls[key]
        horizon = caught_up if caught_up is not None else now
        for key in list(self._named):
            named = self._named[key]
            while named and (final or horizon - named[0][0] > self.give_up_ns):
                named.popleft()
            if not named:
                del self._named[key]
        return joined, alone, given_up

    @staticmethod
    def _pick(calls: deque, event: object, compatible) -> PendingOpen:
        if compatible is not None:
            for index, pending in enumerate(calls):
                if compatible(pending, event):
                    del calls[index]
                    return pending
        return calls.popleft()

    @staticmethod
    def _consume_named(named: deque, path: str | None) -> bool:
        if path is None:
            return False
        for index, (_ts, seen) in enumerate(named):
            if seen == path:
                del named[index]
                return True
        return False

    def waiting(self) -> int:
        return sum(len(q) for q in self._calls.values())


def pointers_of(syscall: str, args: Mapping[str, object]) -> list[int]:
    """The user pointers of a syscall enter's path arguments, in PATH_SYSCALLS order."""
    out = []
    for arg in PATH_SYSCALLS.get(syscall, ()):
        value = args.get(arg.name)
        out.append(value if isinstance(value, int) else 0)
    return out
