"""`rawtrace files`: who opens, reads, writes, creates, renames and deletes which file (a better fatrace).

Through the syscall tracepoints (name at event time, flags, sizes, errors), with each path taken from the
best source the kernel offers (rawtrace.filepaths): the event's own string (6.19+), uprobes on the C
library's entry points joined by thread and pointer, fanotify for programs that bypass that library, the
fd table (rawtrace.fdtable) for fd arguments. Under confidentiality lockdown, or with `--source fanotify`,
fanotify alone (rawtrace.fanotify).
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
from collections import deque

from rawtrace import filepaths as FP
from rawtrace.errors import NotSupported, TracingBlocked, UsageError
from rawtrace.fdtable import AT_FDCWD, FILE, FdTables
from rawtrace.sources import Source
from rawtrace.tracers.base import Needs, Tool

MAX_ERRNO = 4095
AT_REMOVEDIR = 0x200
O_ACCMODE = 3
TYPE_LETTERS = "RCWO+D<>A"

# syscall → what it does to files: (kind, fatrace letters). Kinds drive the fd table and path lookup.
OPEN, EXEC, READ, WRITE, CLOSE, UNLINK, MKDIR, RENAME, TRUNCATE, FTRUNCATE, ATTR, FATTR, COPY = (
    "open", "exec", "read", "write", "close", "unlink", "mkdir", "rename", "truncate", "ftruncate", "attr",
    "fattr", "copy")
SYSCALLS: dict[str, tuple[str, str]] = {
    "open": (OPEN, "O"), "openat": (OPEN, "O"), "openat2": (OPEN, "O"), "creat": (OPEN, "O"),
    "execve": (EXEC, "O"), "execveat": (EXEC, "O"),
    "read": (READ, "R"), "pread64": (READ, "R"), "readv": (READ, "R"), "preadv": (READ, "R"),
    "preadv2": (READ, "R"),
    "write": (WRITE, "W"), "pwrite64": (WRITE, "W"), "writev": (WRITE, "W"), "pwritev": (WRITE, "W"),
    "pwritev2": (WRITE, "W"),
    "sendfile64": (COPY, "RW"), "copy_file_range": (COPY, "RW"), "splice": (COPY, "RW"),
    "close": (CLOSE, "C"),
    "unlink": (UNLINK, "D"), "unlinkat": (UNLINK, "D"), "rmdir": (UNLINK, "D"),
    "mkdir": (MKDIR, "+"), "mkdirat": (MKDIR, "+"),
    "rename": (RENAME, "<>"), "renameat": (RENAME, "<>"), "renameat2": (RENAME, "<>"),
    "truncate": (TRUNCATE, "W"), "ftruncate": (FTRUNCATE, "W"),
    "chmod": (ATTR, "A"), "fchmodat": (ATTR, "A"), "fchmodat2": (ATTR, "A"), "chown": (ATTR, "A"),
    "lchown": (ATTR, "A"), "fchownat": (ATTR, "A"), "utimensat": (ATTR, "A"), "utimes": (ATTR, "A"),
    "fchmod": (FATTR, "A"), "fchown": (FATTR, "A"),
}
# Syscalls that only keep the fd table and working directories right (never printed).
STATE_SYSCALLS = ("dup", "dup2", "dup3", "fcntl", "close_range", "chdir", "fchdir", "pipe", "pipe2", "socket",
                  "accept", "accept4", "socketpair")
# The argument holding the fd, per fd-based kind.
FD_ARG = {READ: "fd", WRITE: "fd", CLOSE: "fd", FTRUNCATE: "fd", FATTR: "fd"}
COPY_ARGS = {"sendfile64": ("in_fd", "out_fd"), "copy_file_range": ("fd_in", "fd_out"),
             "splice": ("fd_in", "fd_out")}
FLAG_ARGS = {"open": "flags", "openat": "flags", "creat": None, "unlinkat": "flag", "renameat2": "flags"}
MODE_ARGS = {"open": "mode", "openat": "mode", "creat": "mode", "mkdir": "mode", "mkdirat": "mode",
             "chmod": "mode", "fchmodat": "mode", "fchmodat2": "mode", "fchmod": "mode"}
O_CREAT_BITS = 0o100 | 0o20000000     # O_CREAT | __O_TMPFILE (x86_64 / asm-generic)

FATRACE_MAP = """\
fatrace options and their rawtrace files equivalents:
  fatrace -c (current mount)      -c / --current-mount
  fatrace -f TYPES                -f / --types TYPES   (letters R C W O + D < >, and A for attributes)
  fatrace -t / -tt (timestamps)   -T (time of day) / -TT (seconds on the trace clock)
  fatrace -s SECONDS              -d SECONDS
  fatrace -p PID (ignore a pid)   --exclude-pid PID    (rawtrace's -p PID keeps only that process tree)
  fatrace -C COMM                 -n COMM
  fatrace -d DIR (one directory)  --dir DIR            (--under DIR: the whole subtree)
  fatrace -j (JSON lines)         --json
  fatrace -o FILE                 > FILE
  fatrace -u, -P, -e              not available"""


class PathCell:
    """A path that may be named later (fanotify catches up): shared by an open and its fd's events."""

    __slots__ = ("first_read", "path", "reason", "source", "waiting")

    def __init__(self, path: str | None = None, source: str = FP.SOURCE_UNKNOWN, reason: str | None = None,
                 waiting: bool = False) -> None:
        self.path = path
        self.source = source
        self.reason = reason
        self.waiting = waiting
        self.first_read: int | None = None     # when its fd was first read (tells fanotify twins apart)

    def set(self, path: str | None, source: str, reason: str | None = None) -> None:
        self.path, self.source, self.reason, self.waiting = path, source, reason, False


class FileEvent:
    """One output line: what happened to which file, by whom, with the syscall's details."""

    __slots__ = ("bytes", "cell", "cell_to", "comm", "errno", "fd", "flags", "mode", "pid", "ret", "syscall",
                 "tid", "ts", "types")

    def __init__(self, ts: int, pid: int, tid: int, comm: str, types: str, syscall: str | None,
                 cell: PathCell, cell_to: PathCell | None = None, fd: int | None = None, flags: int | None = None,
                 mode: int | None = None, nbytes: int | None = None, ret: int | None = None,
                 errno: int | None = None) -> None:
        self.ts, self.pid, self.tid, self.comm, self.types, self.syscall = ts, pid, tid, comm, types, syscall
        self.cell, self.cell_to, self.fd, self.flags, self.mode = cell, cell_to, fd, flags, mode
        self.bytes, self.ret, self.errno = nbytes, ret, errno

    @property
    def ready(self) -> bool:
        return not self.cell.waiting and (self.cell_to is None or not self.cell_to.waiting)


class Files(Tool):
    name = "files"
    help = "who opens, reads, writes, creates, renames and deletes which file (a better fatrace)"
    epilog = """\
examples:
  rawtrace files                          # every file event system-wide until Ctrl-C, fatrace's format
  rawtrace files -T -w                    # with time of day, flags, mode, bytes, fd and return value
  rawtrace files --under /etc -f OW       # opens and writes below /etc
  rawtrace files -p 1234 -x               # failed file calls of one process tree
  rawtrace files -n make --json -d 30     # NDJSON for 30 s, only tasks named make
  rawtrace files --source fanotify        # fanotify only (what a locked-down kernel allows)

Output: `comm(pid): TYPES path`, one event per line, with fatrace's letters R (read) C (close) W (write,
truncate) O (open, exec) + (create) D (delete) < > (rename from / to) and A (attribute change). Failed
calls end with their errno. The name is the process's name when the event happened, also for processes
that have exited since (no `unknown`). JSON keys: ts pid tid comm types syscall path path_to fd flags
mode bytes ret errno path_source (syscall: the event's own string, 6.19+; eprobe: fetched at syscall
entry by an event probe, kernels with CONFIG_EPROBE_EVENTS; uprobe: fetched in the C
library's entry point (or at the dynamic linker's own open syscall, x86_64) and joined by thread and
pointer; fanotify: named by fanotify for the same pid; fdtable: an fd mapped through the fd table
kept from open/dup/close/fork/exec; proc: /proc/PID/fd read late, racy; unknown, with the reason).
Sources: tracefs syscall events plus uprobes in the C library and at the dynamic linker's open syscalls
(the libraries every program loads) plus fanotify (static programs and direct syscall() callers);
`--source fanotify` or a kernel refusing tracefs (confidentiality lockdown) uses fanotify alone:
opens, reads, writes, closes, creates, deletes and moves with full paths (child names included), no
flags or sizes; names from a /proc snapshot at start, the proc connector's forks and the exec events in
fanotify's own stream (so exited processes keep theirs).
Overhead: two events per file syscall, one uprobe hit per libc call, one fanotify event per open.
The uprobes cost most where programs start often (measured here: 100 x `cat` 1.1x slower untraced with
--no-uprobes, 2-3x with them); --no-uprobes names opens through fanotify alone, so failed opens and
files on /proc, /sys and /dev (not watched) stay unknown.

""" + FATRACE_MAP

    record_types = ("file",)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--source", choices=("auto", "tracefs", "fanotify"), default="auto",
                            help="where events come from (default auto: tracefs + uprobes + fanotify, "
                                 "fanotify alone where tracefs is refused)")
        parser.add_argument("-w", "--wide", action="store_true", help="also syscall, fd, flags, mode, bytes, ret")
        parser.add_argument("-T", "--timestamp", action="count", default=0,
                            help="-T: time of day (HH:MM:SS.usec); -TT: seconds on the trace clock")
        parser.add_argument("-f", "--types", metavar="TYPES", help="only events with one of these letters "
                                                                 "(R C W O + D < > A)")
        parser.add_argument("-x", "--failed", action="store_true", help="only failed calls")
        parser.add_argument("-c", "--current-mount", action="store_true",
                            help="only files on the filesystem of the current directory")
        parser.add_argument("--under", action="append", default=[], metavar="DIR",
                            help="only paths below DIR (recursive; repeatable)")
        parser.add_argument("--dir", action="append", default=[], metavar="DIR",
                            help="only entries directly in DIR (fatrace -d; repeatable)")
        parser.add_argument("--exclude-pid", action="append", type=int, default=[], metavar="PID",
                            help="leave out this process (fatrace -p)")
        parser.add_argument("--all-fds", action="store_true", help="also reads and writes of pipes and sockets")
        parser.add_argument("--no-uprobes", action="store_true", help="no uprobes in the C library")
        parser.add_argument("--no-fanotify", action="store_true", help="no fanotify alongside tracefs")
        from rawtrace.cli.tool import int_between
        parser.add_argument("--settle-ms", type=int_between(0, 60000), default=300, metavar="MS",
                            help="how long a path may wait for fanotify (default 300)")
        # A tick drives the fanotify joins and the output queue.
        parser.set_defaults(interval=0.1)

    def __init__(self, args, ctx) -> None:
        super().__init__(args, ctx)
        if args.types is not None:
            bad = set(args.types) - set(TYPE_LETTERS)
            if bad or not args.types:
                raise UsageError(f"-f TYPES takes letters among {' '.join(TYPE_LETTERS)}, not {args.types!r}")
        if args.settle_ms < 0:
            raise UsageError("--settle-ms must not be negative")
        self.out = ctx.out
        host = getattr(ctx, "host", None) or getattr(ctx.source, "host", None)
        self.host = host
        self.fanotify_only = getattr(ctx.source, "kind", "") == "fanotify"
        self.fds = FdTables(host)
        self.uprobes = FP.UprobeJoiner()
        self.settle_ns = args.settle_ms * 1_000_000
        self._realpaths = _RememberedRealpath(host) if host is not None and host.is_live else None
        self.fan_joiner = FP.FanotifyJoiner(self.settle_ns, self._realpaths)
        self.use_fanotify = False
        self.queue: deque[FileEvent] = deque()
        self.counts: dict[str, int] = {}
        self.unknown_reasons: dict[str, int] = {}
        self.shown = 0
        self.lost = 0
        self.fanotify_overflows = 0
        self.unnamed_comm = 0
        self.caught_up = 0          # every syscall up to this trace time has been processed
        self.drained = None         # fanotify was last read empty at this time
        self.kernel_strings: dict[str, set[str]] = {}
        self.plan: FP.UprobePlan | None = None
        self._probe_source = FP.SOURCE_UPROBE
        self._written: set[tuple[int, int]] = set()
        # (pid, fd) → the PathCell of its open, so an fd named later by fanotify names its reads too.
        self._cells: dict[tuple[int, int], PathCell] = {}
        self.hidden_fds = 0
        self.fan_source = None
        self._epochs: dict[int, int] = {}     # successful execs per pid (matches fanotify's exec runs)
        self._pids = set(args.pid)
        self._excluded = set(args.exclude_pid)
        self._under = [self._clean_dir(d) for d in args.under]
        self._dirs = [self._clean_dir(d) for d in args.dir]
        self._mount = self._current_mount() if args.current_mount else None
        self._mounts: list = []

    # -- options ---------------------------------------------------------------------------------
    @staticmethod
    def _clean_dir(text: str) -> str:
        if not text:
            raise UsageError("a directory must not be empty")
        return os.path.normpath(os.path.abspath(text))

    def _current_mount(self) -> str:
        return _current_mount_of(self.host)

    def _mount_of(self, path: str) -> str:
        best = "/"
        for _src, mountpoint, _fstype, _opts in self._mounts:
            if (path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")) and len(mountpoint) > len(best):
                best = mountpoint
        return best

    # -- pipeline ----------------------------------------------------------------------------------
    def needs(self) -> Needs:
        source = self.ctx.source
        self._mounts = self.host.mounts() if (self.host is not None and self._mount) else []
        if self.fanotify_only:
            return Needs(events=[], tasks=False)
        events, optional = [], []
        for name in list(SYSCALLS) + list(STATE_SYSCALLS):
            pair = [("syscalls", f"sys_enter_{name}"), ("syscalls", f"sys_exit_{name}")]
            if all(source.available(*p) for p in pair):
                optional += pair
        for name in ("openat", "read", "write", "close"):
            for half in ("enter", "exit"):
                events.append(("syscalls", f"sys_{half}_{name}"))
        optional = [p for p in optional if p not in events]
        for pair in events + optional:
            if pair[1].startswith("sys_enter_"):
                fmt = source.format(*pair)
                if fmt is not None:
                    found = FP.kernel_string_args(f.name for f in fmt.fields)
                    if found:
                        self.kernel_strings[pair[1][10:]] = found
        probes: list[str] = []
        preflight = {"syscalls"}
        if not self.args.no_uprobes and getattr(source, "kind", "") == "live":
            covered = {name for name, args in self.kernel_strings.items()
                       if {a.name for a in FP.PATH_SYSCALLS.get(name, ())} <= args}
            from rawtrace import doctor
            from rawtrace.probes import uprobe_string_refusal
            if _eprobes_supported(source, self.host):
                # Best after 6.19's own strings: the kernel reads every program's path at syscall entry.
                wanted = [name for name in FP.PATH_SYSCALLS if name not in covered
                          and source.available("syscalls", f"sys_enter_{name}")]
                self.plan = FP.plan_eprobes(wanted)
            elif (refusal := uprobe_string_refusal(self.host)) is not None:
                self.plan = FP.UprobePlan(None, (), (), refusal)
            else:
                try:
                    doctor.preflight(self.host, {"uprobes"})
                    self.plan = FP.plan_uprobes(self.host, skip_syscalls=covered)
                except (NotSupported, TracingBlocked) as exc:
                    self.plan = FP.UprobePlan(None, (), (), exc.message)
            probes = [p.spec for p in self.plan.probes]
            if probes:
                eprobes = probes[0].startswith(FP.EPROBE_PREFIX)
                self._probe_source = FP.SOURCE_EPROBE if eprobes else FP.SOURCE_UPROBE
                preflight.add("eprobes" if eprobes else "uprobes")
        self.preflight_needs = preflight
        return Needs(events=events, optional_events=optional, probes=probes, syscalls=True,
                     preflight=preflight)

    def handlers(self):
        out = {("task", "task_newtask"): self._newtask, ("sched", "sched_process_exec"): self._exec,
               ("sched", "sched_process_exit"): self._exit}
        if self.plan is not None:
            by_event = {p.event: p for p in self.plan.probes}
            for system, event in getattr(self.ctx.source, "probe_events", []):
                # (a kernel without multi-probe events gets files_path, files_path_2, ...: one layout)
                planned = by_event.get(event) or by_event.get(re.sub(r"_\d+$", "", event))
                if planned is not None:
                    out[(system, event)] = self._capture(planned)
        return out

    def start(self) -> None:
        out, ctx = self.out, self.ctx
        kind = getattr(ctx.source, "kind", "live")
        if kind == "live":
            self.fds.load_proc()
        self.fan_source = getattr(ctx.source, "fanotify", None)
        from rawtrace.fanotify import FAN_ACCESS
        # Told apart by reads only when fanotify reports them (not with the lighter join mask).
        mask = getattr(self.fan_source, "mask", None)
        self._fan_reads = mask is None or bool(mask & FAN_ACCESS)
        self.use_fanotify = self.fan_source is not None and not self.fanotify_only
        sources = ["fanotify"] if self.fanotify_only else (
            ["syscall events"] + ([_plan_text(self.plan)] if self.plan and self.plan.probes else [])
            + (["fanotify"] if self.use_fanotify else []))
        out.meta("files", kind, ctx.clock, path_sources=sources)
        if kind in ("live", "fanotify"):
            out.note(f"Tracing file events through {', '.join(sources)}... Ctrl-C to end.")
        if self.plan is not None and self.plan.reason:
            out.note(f"no uprobes: {self.plan.reason}")
        fan_error = getattr(ctx.source, "fanotify_error", None)
        if fan_error:
            out.note(f"no fanotify ({fan_error}): programs that bypass the C library get no paths")

    # -- helper events -------------------------------------------------------------------------------
    def _newtask(self, rec) -> None:
        fields = rec.fields
        flags = fields.get("clone_flags") or 0
        child = fields.get("pid")
        if child is None or flags & 0x00010000:        # CLONE_THREAD: same process, same table
            return
        parent = self.ctx.tasks.pid(rec.pid)
        self.fds.forked(parent, child, flags)
        self._epochs.pop(child, None)           # a new process (maybe a reused pid) has seen no exec
        if self._pids and parent in self._pids:
            self._pids.add(child)

    def _exec(self, rec) -> None:
        self.fds.execed(self.ctx.tasks.pid(rec.pid))

    def _exit(self, rec) -> None:
        tid = rec.fields.get("pid", rec.pid)
        self.uprobes.forget(tid)
        if self.ctx.tasks.pid(tid) == tid:
            self.fds.exited(tid)
            self._epochs.pop(tid, None)

    def _capture(self, planned: FP.PlannedProbe):
        joiner = self.uprobes
        fields_of = planned.fields

        def capture(rec) -> None:
            fields = rec.fields
            joiner.capture(rec.pid, rec.ts, [(fields.get(p), fields.get(s)) for p, s in fields_of])
        return capture

    # -- syscalls --------------------------------------------------------------------------------------
    def on_syscall(self, call) -> None:
        name = call.name
        ts = call.exit_ts or call.time
        if ts is not None and ts > self.caught_up:
            self.caught_up = ts
        if call.values is None:
            return            # an exit whose entry was not seen: no arguments to name anything
        ret = call.ret
        failed = ret is not None and -MAX_ERRNO <= ret < 0
        if name in SYSCALLS:
            self._file_call(call, name, failed)
        else:
            self._state_call(call, name, failed)
        self._drain()

    def _state_call(self, call, name: str, failed: bool) -> None:
        if failed or call.ret is None:
            return
        pid, ret, arg, fds = call.pid, call.ret, call.arg, self.fds
        if name == "dup":
            fds.duped(pid, _int(arg("fildes")), ret)
        elif name in ("dup2", "dup3"):
            cloexec = name == "dup3" and bool(_int(arg("flags")) & 0o2000000)
            fds.duped(pid, _int(arg("oldfd")), ret, cloexec)
        elif name == "fcntl":
            fds.fcntl(pid, _int(arg("fd")), _int(arg("cmd")), _int(arg("arg")), ret)
        elif name == "close_range":
            fds.close_range(pid, _int(arg("fd")), _int(arg("max_fd")), _int(arg("flags")))
        elif name == "chdir":
            path = self._path_strings(call, "chdir")[0][0]
            if path is not None:
                fds.chdir(pid, path)
            else:
                fds.set_cwd(pid, self._proc_link(pid, "cwd"))
        elif name == "fchdir":
            fds.fchdir(pid, _int(arg("fd")))
        elif name in ("socket", "accept", "accept4"):
            fds.anonymous(pid, ret, "socket", None, bool(_int(arg("flags") or arg("type")) & 0o2000000))

    def _path_strings(self, call, name: str) -> list[tuple[str | None, str]]:
        """(string as the program wrote it, source) per path argument of the call."""
        path_args = FP.PATH_SYSCALLS.get(name, ())
        out: list[tuple[str | None, str]] = [(None, FP.SOURCE_UNKNOWN)] * len(path_args)
        pointers = [_int(call.arg(a.name)) for a in path_args]
        for index, arg in enumerate(path_args):
            text = call.string(arg.name)
            if text is not None:
                text = FP.kernel_string_value(text)
            if text is not None:
                out[index] = (text, FP.SOURCE_KERNEL)
        if any(text is None for text, _ in out):
            joined = self.uprobes.join(call.tid, call.ts or 0, pointers)
            for index, text in enumerate(joined):
                if out[index][0] is None and text is not None:
                    out[index] = (text, self._probe_source)
        return out

    def _absolute(self, call, arg: FP.PathArg, text: str | None, source: str) -> PathCell:
        if text is None:
            return PathCell(None, FP.SOURCE_UNKNOWN, "no path source named it")
        dfd = _int(call.arg(arg.dfd)) if arg.dfd else AT_FDCWD
        path, reason = self.fds.resolve(call.pid, text, dfd)
        if path is None:
            return PathCell(text, source, reason)      # relative, its base unknown: say so
        return PathCell(path, source)

    def _file_call(self, call, name: str, failed: bool) -> None:
        kind, letters = SYSCALLS[name]
        pid, tid, ret = call.pid, call.tid, call.ret
        arg = call.arg
        comm = call.comm
        if comm == "<...>" and self.fan_source is not None:
            # The task table missed this process's birth; fanotify's names (a /proc snapshot, the proc
            # connector's forks and the exec runs) may know it.
            comm = self.fan_source.names.name(pid) or comm
        base = {"ts": call.ts or call.exit_ts or 0, "pid": pid, "tid": tid, "comm": comm, "syscall": name, "ret": ret,
                    "errno": -ret if failed else None}
        if kind in (OPEN, EXEC, UNLINK, MKDIR, RENAME, TRUNCATE, ATTR):
            strings = self._path_strings(call, name)
            path_args = FP.PATH_SYSCALLS[name]
            cells = [self._absolute(call, a, text, src) for a, (text, src) in zip(path_args, strings)]
            flag_arg = FLAG_ARGS.get(name, "flags")
            flags = _int(arg(flag_arg)) if flag_arg and arg(flag_arg) is not None else None
            mode_arg = MODE_ARGS.get(name)
            mode = _int(arg(mode_arg)) if mode_arg else None
            if mode is not None and kind == OPEN and name != "creat" and not (flags or 0) & O_CREAT_BITS:
                mode = None
            fd = ret if kind == OPEN and not failed else None
            if kind == EXEC and not failed:
                # A new program image: fanotify's exec run for it starts the same epoch (see FanotifyJoiner).
                self._epochs[pid] = self._epochs.get(pid, 0) + 1
            epoch = self._epochs.get(pid, 0)
            cell = cells[0]
            if cell.path is None and not failed and self.use_fanotify and kind in (OPEN, EXEC, UNLINK, MKDIR):
                self._wait_for_fanotify(call, kind, cell, fd, epoch)
            elif cell.path is not None and self.use_fanotify and not failed and kind in (OPEN, EXEC, UNLINK, MKDIR):
                self.fan_joiner.named(pid, _fan_kind(kind), cell.path, base["ts"], epoch)
            elif cell.path is None and fd is not None:
                late = self._proc_link(pid, f"fd/{fd}")
                if late is not None:
                    cell.set(late, FP.SOURCE_PROC)
            if not failed and kind in (UNLINK, MKDIR, RENAME) and self._realpaths is not None:
                self._realpaths.forget()          # the names it remembered may mean other files now
            if kind == OPEN and fd is not None:
                self.fds.opened(pid, fd, cell.path or "", flags or 0)
                entry = self.fds.entry(pid, fd)
                if entry is not None:
                    entry.source = cell.source
                    self._cells[(pid, fd)] = cell
            self._queue(FileEvent(types=letters if kind != RENAME else "<>", cell=cell,
                                  cell_to=cells[1] if kind == RENAME and len(cells) > 1 else None, fd=fd,
                                  flags=flags if kind in (OPEN, UNLINK, RENAME) else None, mode=mode, **base))
            return
        if kind == COPY:
            in_arg, out_arg = COPY_ARGS[name]
            nbytes = ret if not failed else None
            for fd_arg, letter in ((in_arg, "R"), (out_arg, "W")):
                fd = _int(arg(fd_arg))
                cell = self._fd_cell(pid, fd)
                if cell is None:
                    continue
                self._queue(FileEvent(types=letter, cell=cell, fd=fd, nbytes=nbytes, **base))
            return
        fd = _int(arg(FD_ARG[kind]))
        cell = self._fd_cell(pid, fd)
        if kind == CLOSE:
            entry = self.fds.closed(pid, fd) if not failed else None
            written = (pid, fd) in self._written
            self._written.discard((pid, fd))
            self._cells.pop((pid, fd), None)
            if cell is None and entry is None:
                return
            if cell is None:
                return
            self._queue(FileEvent(types="CW" if written else "C", cell=cell, fd=fd, **base))
            return
        if cell is None:
            return
        if kind == WRITE and not failed:
            self._written.add((pid, fd))
        if kind == READ and cell.waiting and cell.first_read is None:
            cell.first_read = call.exit_ts or call.ts
        nbytes = ret if kind in (READ, WRITE) and not failed else None
        self._queue(FileEvent(types=letters, cell=cell, fd=fd, nbytes=nbytes, **base))

    def _fd_cell(self, pid: int, fd: int) -> PathCell | None:
        """The path of an fd argument, or None when the fd is a pipe/socket not asked for."""
        cell = self._cells.get((pid, fd))
        entry = self.fds.entry(pid, fd)
        if entry is None:
            late = self.fds.from_proc(pid, fd)
            if late is None:
                if self.fds.tracked(pid):
                    # Followed since fork or read at start, and never opened by a traced call: a pipe,
                    # socketpair, eventfd... whose fds the kernel wrote to user memory.
                    if not self.args.all_fds:
                        self.hidden_fds += 1
                        return None
                    return PathCell(None, FP.SOURCE_UNKNOWN,
                                    f"fd {fd}: a pipe, socketpair or eventfd made during the trace, gone from /proc")
                return PathCell(None, FP.SOURCE_UNKNOWN, f"fd {fd} of pid {pid} not known")
            entry = late
        if entry.kind != FILE and not self.args.all_fds:
            return None
        if cell is not None and (cell.waiting or cell.path == entry.path or not entry.path):
            return cell if cell.waiting else PathCell(cell.path, FP.SOURCE_FDTABLE)
        if entry.source == "proc":
            return PathCell(entry.path, FP.SOURCE_PROC if entry.path else FP.SOURCE_UNKNOWN)
        return PathCell(entry.path or None, FP.SOURCE_FDTABLE if entry.path else FP.SOURCE_UNKNOWN,
                        None if entry.path else f"fd {fd}: its open was not named")

    def _wait_for_fanotify(self, call, kind: str, cell: PathCell, fd: int | None, epoch: int) -> None:
        cell.waiting = True
        late = self._proc_link(call.pid, f"fd/{fd}") if fd is not None else None
        self.fan_joiner.unnamed(FP.PendingOpen(call.pid, call.exit_ts or call.ts or 0, _fan_kind(kind), (cell, late)),
                                epoch)

    def _proc_link(self, pid: int, what: str) -> str | None:
        if self.host is None or not self.host.is_live:
            return None
        try:
            return os.readlink(self.host.path(f"/proc/{pid}/{what}"))
        except OSError:
            return None

    # -- fanotify --------------------------------------------------------------------------------------
    def on_record(self, rec) -> None:
        from rawtrace.fanotify import FileRecord, Overflow
        if isinstance(rec, Progress):
            self.caught_up = max(self.caught_up, rec.ts)
            self.drained = rec.drained
            return
        if isinstance(rec, Overflow):
            self.fanotify_overflows += 1
            self.out.note("fanotify queue overflowed: file events were lost (count unknown)")
            return
        if not isinstance(rec, FileRecord):
            return
        if self.fanotify_only:
            self._fanotify_event(rec)
            self._drain(final=True)
            return
        kind = _record_kind(rec.mask)
        if kind is None:
            return        # reads, writes, closes: the syscall events say more about them
        self.fan_joiner.event(rec.pid, kind, rec, rec.path, rec.ts, rec.epoch)

    def _fanotify_event(self, rec, types: str | None = None) -> None:
        comm = rec.comm
        if comm is None and not self.fanotify_only:
            # The task table has names of processes that exited before fanotify was read.
            known = self.ctx.tasks.comm(rec.pid)
            comm = known if known and known != "<...>" else None
        if comm is None:
            self.unnamed_comm += 1
            comm = "unknown"
        path = rec.path
        if path is not None and path.startswith("(deleted)"):
            cell = PathCell(None, FP.SOURCE_UNKNOWN, "deleted before fanotify's handle could be opened")
        elif path is None:
            cell = PathCell(None, FP.SOURCE_UNKNOWN, "fanotify could not name it")
        else:
            cell = PathCell(path, FP.SOURCE_FANOTIFY)
        self._queue(FileEvent(rec.ts, rec.pid, rec.pid, comm, types or rec.types, None, cell))

    def _match_fanotify(self, final: bool = False) -> None:
        if not self.use_fanotify:
            return
        now = time.monotonic_ns() if self.ctx.live else self.caught_up
        exact = self.args.clock == "mono" and self.ctx.live
        drained = getattr(self.ctx.source, "drained_at", None) or self.drained
        joined, alone, given_up = self.fan_joiner.match(now, final, self.caught_up if exact else None,
                                                        drained if exact else None,
                                                        _read_matches if self._fan_reads else None)
        for pending, rec in joined:
            cell, _late = pending.call
            cell.set(rec.path, FP.SOURCE_FANOTIFY)
            self._named_fd(cell)
        for pending in given_up:
            cell, late = pending.call
            if late is not None:
                cell.set(late, FP.SOURCE_PROC)
            else:
                cell.set(None, FP.SOURCE_UNKNOWN, "no path source named it (no libc call, no fanotify event)")
        for rec in alone:
            self._fanotify_event(rec)

    def _named_fd(self, cell: PathCell) -> None:
        for (pid, fd), known in self._cells.items():
            if known is cell:
                entry = self.fds.entry(pid, fd)
                if entry is not None and not entry.path:
                    entry.path = cell.path or ""
                    entry.source = cell.source

    def on_tick(self, ts: int) -> None:
        self._match_fanotify()
        self._drain()

    def on_lost(self, lost) -> None:
        self.lost += max(lost.count, 0)
        self.out.lost(lost)

    # -- output ----------------------------------------------------------------------------------------
    def _queue(self, event: FileEvent) -> None:
        self.queue.append(event)

    def _drain(self, final: bool = False) -> None:
        queue = self.queue
        # A path still waiting this long after the stream passed it will not come (the joins decide
        # well before, this only bounds the delay and the memory).
        limit = self.caught_up - self.fan_joiner.give_up_ns - self.settle_ns
        while queue:
            head = queue[0]
            if not head.ready and not final and head.ts > limit and len(queue) < 100_000:
                break
            queue.popleft()
            for cell in (head.cell, head.cell_to):
                if cell is not None and cell.waiting:
                    cell.set(None, FP.SOURCE_UNKNOWN, "fanotify did not name it in time")
            self._show(head)

    def _keep(self, event: FileEvent) -> bool:
        args = self.args
        if event.pid in self._excluded or event.pid == os.getpid():
            return False
        if self.fanotify_only or not self.ctx.live or event.syscall is None:
            # The kernel filtered the tracefs events already (set_event_pid, comm filter); not these.
            if self._pids and event.pid not in self._pids:
                return False
            if args.comm is not None and event.comm != args.comm:
                return False
            if args.tid and event.tid not in args.tid:
                return False
        if args.failed and event.errno is None:
            return False
        if args.types and not set(event.types) & set(args.types):
            return False
        path = event.cell.path
        if self._under or self._dirs or self._mount:
            paths = [p for p in (path, event.cell_to.path if event.cell_to else None) if p]
            if not paths:
                return False
            if self._under and not any(p == d or p.startswith(d.rstrip("/") + "/")
                                       for p in paths for d in self._under):
                return False
            if self._dirs and not any(os.path.dirname(p) == d or p == d for p in paths for d in self._dirs):
                return False
            if self._mount and not any(self._mount_of(p) == self._mount for p in paths):
                return False
        return True

    def _show(self, event: FileEvent) -> None:
        if not self._keep(event):
            return
        self.shown += 1
        if event.comm in ("<...>", "unknown") and event.syscall is not None:
            self.unnamed_comm += 1
        if event.syscall is not None and event.syscall not in FP.PATH_SYSCALLS and \
                event.cell.source in (FP.SOURCE_KERNEL, FP.SOURCE_UPROBE, FP.SOURCE_FANOTIFY):
            # An fd argument: named through the fd table (its open had the source shown there).
            event.cell = PathCell(event.cell.path, FP.SOURCE_FDTABLE, event.cell.reason)
        sources = [event.cell.source] + ([event.cell_to.source] if event.cell_to is not None else [])
        for source in sources:
            self.counts[source] = self.counts.get(source, 0) + 1
        for cell in (event.cell, event.cell_to):
            if cell is not None and cell.path is None:
                reason = cell.reason or "unknown"
                self.unknown_reasons[reason] = self.unknown_reasons.get(reason, 0) + 1
        if self.out.json:
            self.out.record("file", self._json(event))
        else:
            self.out.line(self._text(event))

    def _json(self, event: FileEvent) -> dict:
        from rawtrace.syscalls import constants as C
        errname = C.errno_name(self.ctx.arch, event.errno) if event.errno else None
        obj = {"ts": round(event.ts / 1e9, 9) if self.ctx.ns else event.ts, "pid": event.pid, "tid": event.tid,
               "comm": event.comm, "types": event.types, "syscall": event.syscall, "path": event.cell.path,
               "path_to": event.cell_to.path if event.cell_to is not None else None, "fd": event.fd,
               "flags": self._flags_text(event), "mode": f"{event.mode:04o}" if event.mode is not None else None,
               "bytes": event.bytes, "ret": event.ret, "errno": errname or event.errno,
               "path_source": event.cell.source}
        if event.cell.path is None or (event.cell_to is not None and event.cell_to.path is None):
            obj["unknown_reason"] = (event.cell.reason if event.cell.path is None else event.cell_to.reason)
        return obj

    def _flags_text(self, event: FileEvent) -> str | None:
        if event.flags is None:
            return None
        if event.syscall in ("open", "openat", "openat2", "creat"):
            from rawtrace.syscalls.render import _fmt_open_flags
            try:
                return _fmt_open_flags(self.ctx.formatter, event.flags, {})
            except Exception:  # noqa: BLE001 - rendering never stops a trace
                return f"{event.flags:#x}"
        return f"{event.flags:#x}"

    def _text(self, event: FileEvent) -> str:
        from rawtrace.emit import safe
        stamp = ""
        if self.args.timestamp == 1:
            wall = time.time() - (time.monotonic_ns() - event.ts) / 1e9 if self.ctx.ns else time.time()
            stamp = time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1e6):06d} "
        elif self.args.timestamp >= 2:
            stamp = f"{event.ts / 1e9:.6f} " if self.ctx.ns else f"{event.ts} "
        path = self._path_text(event.cell)
        if event.cell_to is not None:
            path += " -> " + self._path_text(event.cell_to)
        line = f"{stamp}{safe(event.comm)}({event.pid}): {event.types:<3} {path}"
        if event.errno is not None:
            from rawtrace.syscalls import constants as C
            line += f" ({C.errno_name(self.ctx.arch, event.errno) or event.errno})"
        if self.args.wide:
            parts = [f"tid={event.tid}"] if event.tid != event.pid else []
            if event.syscall:
                parts.append(event.syscall)
            if event.fd is not None:
                parts.append(f"fd={event.fd}")
            flags = self._flags_text(event)
            if flags is not None:
                parts.append(f"flags={flags}")
            if event.mode is not None:
                parts.append(f"mode={event.mode:04o}")
            if event.bytes is not None:
                parts.append(f"bytes={event.bytes}")
            if event.ret is not None:
                parts.append(f"ret={event.ret}")
            parts.append(f"[{event.cell.source}]")
            line += "  " + " ".join(parts)
        return line

    @staticmethod
    def _path_text(cell: PathCell) -> str:
        from rawtrace.emit import safe
        if cell.path is None:
            return f"(unknown: {cell.reason or 'no path source'})"
        if cell.reason and not cell.path.startswith("/"):
            return safe(cell.path) + f" (relative: {cell.reason})"
        return safe(cell.path)

    def finish(self) -> None:
        self._match_fanotify(final=True)
        self._drain(final=True)
        out, ctx = self.out, self.ctx
        unknown = self.counts.get(FP.SOURCE_UNKNOWN, 0)
        info = {"events": self.shown, "hidden_anonymous_fd_events": self.hidden_fds, "path_sources": dict(self.counts), "unknown_paths": unknown,
                "unknown_reasons": dict(self.unknown_reasons), "unknown_names": self.unnamed_comm,
                "uprobe_joins": self.uprobes.joined, "fanotify_joins": self.fan_joiner.joined,
                "fanotify_overflows": self.fanotify_overflows, "lost": self.lost}
        fan = getattr(ctx.source, "fanotify", None)
        if fan is not None:
            info["fanotify_mode"] = fan.mode
        if out.json:
            out.record("summary", info)
        per_source = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "none"
        note = (f"{self.shown} events; paths by source: {per_source}; {unknown} unknown paths, "
                f"{self.unnamed_comm} unknown names")
        if self.fanotify_overflows:
            note += f"; fanotify overflowed {self.fanotify_overflows} times (events lost)"
        summary = getattr(ctx.source, "summary", None)
        if summary is not None:
            note += f"; {summary.lost} lost"
        out.note(note)
        from rawtrace.tracers.base import note_kernel_warning
        note_kernel_warning(out, ctx.source)


def _eprobes_supported(source, host) -> bool:
    """Whether this kernel has event probes for certain (the README alone does not tell)."""
    tracefs = getattr(source, "tracefs", None)
    if tracefs is None:
        return False
    from rawtrace import doctor
    try:
        return doctor.probe_support(tracefs, host, {"eprobes"})["eprobes"].supported is True
    except Exception:  # noqa: BLE001 - when in doubt, uprobes (which this code has seen work)
        return False


class _RememberedRealpath:
    """fn(path) -> its real path on `host`, remembered per path (up to `limit` paths, then forgotten at
    once): a program opening the same files again costs one lookup, not an lstat per component. Only the
    fanotify join uses it (a named open consumes the fanotify event of its real path). `entry(path)` is
    the path of a directory entry as fanotify names a created or deleted one: its directory resolved, its
    last part kept (a deleted symlink is the link, not its target). The tool calls `forget()` after every
    successful unlink, rmdir, rename and mkdir, so a symlink changed while tracing is not remembered."""

    __slots__ = ("host", "known", "limit")

    def __init__(self, host, limit: int = 4096) -> None:
        self.host, self.limit = host, limit
        self.known: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        known = self.known
        found = known.get(path)
        if found is None:
            if len(known) >= self.limit:
                known.clear()
            found = known[path] = os.path.realpath(self.host.join(path))
        return found

    def entry(self, path: str) -> str:
        parent, _, name = path.rstrip("/").rpartition("/")
        if not name or name in (".", ".."):
            return self(path)
        parent = self(parent or "/")
        return parent.rstrip("/") + "/" + name

    def forget(self) -> None:
        self.known.clear()


def _plan_text(plan: FP.UprobePlan) -> str:
    if plan.probes and plan.probes[0].event.startswith(FP.EPROBE_PREFIX):
        return "eprobes on the syscall enter events"
    return f"uprobes in {plan.library}" + (f" and {plan.loader}" if plan.loader else "")


def _current_mount_of(host) -> str:
    """The mount point of the current directory (fatrace -c)."""
    cwd = os.getcwd()
    best = "/"
    for _src, mountpoint, _fstype, _opts in (host.mounts() if host is not None else []):
        if (cwd == mountpoint or cwd.startswith(mountpoint.rstrip("/") + "/")) and len(mountpoint) > len(best):
            best = mountpoint
    return best


def _read_matches(pending, record) -> bool:
    """A waiting open and a fanotify event agree on whether the file was read by the event's read time."""
    from rawtrace.fanotify import FAN_ACCESS
    cell, _late = pending.call
    was_read = cell.first_read is not None and cell.first_read <= record.ts
    return was_read == bool(record.mask & FAN_ACCESS)


def _fan_kind(kind: str) -> str:
    return {OPEN: "open", EXEC: "exec", UNLINK: "delete", MKDIR: "create"}.get(kind, kind)


def _record_kind(mask: int) -> str | None:
    from rawtrace import fanotify as F
    if mask & F.FAN_OPEN_EXEC:
        return "exec"
    if mask & F.FAN_OPEN:
        return "open"
    if mask & F.FAN_DELETE:
        return "delete"
    if mask & F.FAN_CREATE and mask & F.FAN_ONDIR:
        return "create"
    return None


def _int(value) -> int:
    if not isinstance(value, int):
        return -1
    value &= 0xffffffffffffffff
    return value - (1 << 64) if value & (1 << 63) else value


# ---------------------------------------------------------------------------------------------------
# Sources: tracefs with fanotify alongside, or fanotify alone.

class Progress:
    """Where the tracefs side of the stream is (`ts`: the last record delivered) and when fanotify was
    last read empty (`drained`), both CLOCK_MONOTONIC: what exact fanotify joins need."""

    __slots__ = ("drained", "ts")

    def __init__(self, ts: int, drained: int) -> None:
        self.ts = ts
        self.drained = drained


class _WithFanotify:
    """The live tracefs source with a fanotify group read between its batches (records to on_record)."""

    def __init__(self, live, fanotify) -> None:
        self._live = live
        self.fanotify = fanotify

    def __getattr__(self, name):
        return getattr(self._live, name)

    def __enter__(self):
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.fanotify is not None:
                self.fanotify.close()
        finally:
            self._live.__exit__(*exc)

    def open(self, *args, **kwargs) -> None:
        try:
            self.fanotify.open()
        except OSError as exc:
            # Paths then come from the syscall events and uprobes only; say why once.
            self.fanotify_error = exc.strerror or str(exc)
            self.fanotify = None
        self._live.open(*args, **kwargs)
        if self.fanotify is None:
            return
        # The spooler child writes its spool files on a watched filesystem: not a traced program.
        child = getattr(getattr(self._live, "_source", None), "child", None)
        if child:
            self.fanotify.ignore_pids.add(child)

    fanotify_error: str | None = None

    def batches(self):
        fan = self.fanotify
        if fan is None:
            yield from self._live.batches()
            return
        latest = 0
        fan.start_reader()
        for batch in self._live.batches():
            if batch:
                latest = max(latest, batch[-1].ts)
            extra, self.drained_at = fan.take()
            if latest:
                # tracefs records, then fanotify's, then where the tracefs side is (the batch's last time).
                if batch or extra:
                    batch = list(batch) + extra + [Progress(latest, self.drained_at)]
            elif extra:
                batch = list(batch) + extra       # nothing from tracefs yet: no progress to tell
            yield batch
        fan.stop_reader()
        tail = fan.read_available() if fan.fd is not None else []
        extra, _drained = fan.take()
        self.drained_at = time.monotonic_ns()
        if extra or tail:
            yield extra + tail + [Progress(latest, self.drained_at)]

    drained_at = 0

    def close(self) -> None:
        try:
            if self.fanotify is not None:
                self.fanotify.close()
        finally:
            self._live.close()


class FanotifyOnly(Source):
    """fanotify as the stream's only source (no tracefs: locked-down kernels, --source fanotify)."""

    kind = "fanotify"
    clock = "mono"

    def __init__(self, host, fanotify) -> None:
        super().__init__()
        self.host = host
        self.fanotify = fanotify
        self.pids: list[int] = []
        self._timer = None

    def format(self, system: str, name: str):
        return None

    def available(self, system: str, name: str) -> bool:
        return False

    def task_seed(self):
        return self.host.path("/proc"), {}, {}

    def open(self, events=None, *, wanted=None, **_kwargs) -> None:
        self.fanotify.open()

    def batches(self):
        return self.fanotify.batches()

    def now(self) -> int:
        return time.monotonic_ns()

    def stop_after(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self.stop)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        self.fanotify.stop()

    stop_recording = stop

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.fanotify.close()


def choose_source(args, host) -> tuple[str, str | None]:
    """("tracefs" | "fanotify", the one-line reason when fanotify is chosen automatically)."""
    if args.source == "fanotify":
        return "fanotify", None
    if args.input:
        return "tracefs", None
    from rawtrace.schedstat import tracefs_refusal
    refused = tracefs_refusal(host)
    if refused is None:
        return "tracefs", None
    if args.source == "tracefs":
        raise TracingBlocked(f"tracefs: {refused}", hint="try --source fanotify")
    return "fanotify", refused


# ---------------------------------------------------------------------------------------------------
# The command (a Tool whose source depends on the kernel: rawtrace.cli.tool.run_tool has no hook for that).

HELP = Files.help
EPILOG = Files.epilog


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rawtrace.cli.tool import add_shared_arguments
    Files.add_arguments(parser)
    add_shared_arguments(parser, Files)


def run(args, host) -> int:
    from rawtrace.cli.tool import Signals, make_source
    from rawtrace.emit import Emitter
    from rawtrace.fanotify import FanotifySource, fanotify_available
    from rawtrace.sources import check_comm
    from rawtrace.stream import Stream
    if args.comm is not None:
        check_comm(args.comm)
    if args.source == "fanotify" and args.input:
        raise UsageError("--source fanotify traces live; it cannot read a recording (-i)")
    kind, why = choose_source(args, host)
    out = Emitter(json=args.json, ns=True)
    if kind == "fanotify":
        missing = fanotify_available(host)
        if missing is not None:
            raise NotSupported(missing)
        if why:
            out.note(f"tracefs is refused here ({why}): tracing with fanotify alone")
        mounts = [_current_mount_of(host)] if args.current_mount else None
        source = FanotifyOnly(host, FanotifySource(host, mounts=mounts, ignore_pids=set(args.exclude_pid)))
    else:
        source = make_source(args, host, Files)
        if not args.input and not args.no_fanotify and fanotify_available(host) is None:
            from rawtrace.fanotify import JOIN_MASK
            source = _WithFanotify(source, FanotifySource(host, mask=JOIN_MASK, ignore_pids=set(args.exclude_pid)))
    signals = Signals(source.stop_recording)
    try:
        with source:
            stream = Stream(source, Files, args, out, interval=args.interval, duration=args.duration,
                            pids=args.pid, tids=args.tid, comm=args.comm)
            try:
                stream.setup()
            except OSError as exc:
                raise NotSupported(f"fanotify: {exc.strerror or exc}") from None
            if kind == "fanotify" and args.duration is not None:
                source.stop_after(args.duration)
            if getattr(source, "kind", "") == "live" and args.nice > 0:
                os.nice(args.nice)
            stream.run()
            out.flush()
            return 0
    finally:
        signals.restore()
