"""Per-process file descriptor tables and working directories, kept from syscall results, for absolute paths."""

from __future__ import annotations

import os
import posixpath
import re

from rawtrace.host import Host

AT_FDCWD = -100
# x86_64/generic values; arm64 and the others that differ keep O_CLOEXEC at 0o2000000 too (asm-generic).
O_CLOEXEC = 0o2000000
FD_CLOEXEC = 1
CLOSE_RANGE_UNSHARE = 1 << 1
CLOSE_RANGE_CLOEXEC = 1 << 2
CLONE_FS = 0x00000200
CLONE_FILES = 0x00000400
CLONE_THREAD = 0x00010000
# fcntl commands that change the table (include/uapi/asm-generic/fcntl.h, linux/fcntl.h).
F_DUPFD = 0
F_GETFD = 1
F_SETFD = 2
F_DUPFD_CLOEXEC = 1030

# Kinds of descriptors; paths of the anonymous ones are spelled as /proc/PID/fd shows them.
FILE, PIPE, SOCKET, ANON = "file", "pipe", "socket", "anon"
_ANON_LINK = re.compile(r"(?P<kind>pipe|socket|anon_inode):(?P<rest>.*)\Z")


class FdEntry:
    """One open descriptor: what it names, its kind, and whether exec closes it."""

    __slots__ = ("cloexec", "kind", "path", "source")

    def __init__(self, path: str, kind: str = FILE, cloexec: bool = False, source: str = "syscall") -> None:
        self.path = path
        self.kind = kind
        self.cloexec = cloexec
        # Where the name came from: "syscall" (the open we saw), "proc" (read at start or later).
        self.source = source

    def copy(self) -> FdEntry:
        return FdEntry(self.path, self.kind, self.cloexec, self.source)

    def __repr__(self) -> str:
        return f"FdEntry({self.path!r}, {self.kind!r}, cloexec={self.cloexec}, source={self.source!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FdEntry) and (self.path, self.kind, self.cloexec, self.source)
                == (other.path, other.kind, other.cloexec, other.source))

    __hash__ = None  # type: ignore[assignment]


class _Files:
    """A descriptor table; several processes hold the same object after clone(CLONE_FILES)."""

    __slots__ = ("fds",)

    def __init__(self, fds: dict[int, FdEntry] | None = None) -> None:
        self.fds: dict[int, FdEntry] = fds if fds is not None else {}

    def copy(self) -> _Files:
        return _Files({fd: entry.copy() for fd, entry in self.fds.items()})


class _Fs:
    """A working directory; shared after clone(CLONE_FS) (threads), copied on fork."""

    __slots__ = ("cwd",)

    def __init__(self, cwd: str | None) -> None:
        self.cwd = cwd


def normalize(path: str) -> str:
    """Lexical clean-up of an absolute path (`a/./b/../c` → `a/c`), no symlinks followed, as strace prints."""
    cleaned = posixpath.normpath(path)
    # POSIX keeps a leading `//`; Linux treats it as `/`.
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def anonymous_name(kind: str, inode: int | None) -> str:
    """`pipe:[12345]` as /proc/PID/fd spells it, or `pipe:[?]` when the inode is not known."""
    return f"{kind}:[{inode if inode is not None else '?'}]"


def _kind_of_link(target: str) -> str:
    match = _ANON_LINK.match(target)
    if match is None:
        return FILE
    return {"pipe": PIPE, "socket": SOCKET}.get(match.group("kind"), ANON)


class FdTables:
    """fd → path per process (pid = thread group id), plus each process's working directory.

    Feed it syscall results in timestamp order (`opened`, `duped`, `closed`, `forked`, `execed`...);
    ask `path(pid, fd)` and `resolve(pid, path, dfd)`. Threads of one process share one table because
    the caller keys by tgid; clone(CLONE_FILES) without CLONE_THREAD shares the table object, and
    clone(CLONE_FS) the working directory, as the kernel does."""

    def __init__(self, host: Host | None = None, *, max_processes: int = 1 << 16) -> None:
        self.host = host
        self.max_processes = max_processes
        self._files: dict[int, _Files] = {}
        self._fs: dict[int, _Fs] = {}
        # pids whose /proc state was already read (or found missing), so /proc is read once per pid.
        self._loaded: set[int] = set()
        self.proc_reads = 0

    # -- state at start ---------------------------------------------------------------------

    def load_proc(self, pids: list[int] | None = None) -> int:
        """Read /proc/PID/fd, fdinfo flags and cwd of every process (or `pids`) now. Returns how many."""
        if self.host is None:
            return 0
        if pids is None:
            try:
                pids = [int(name) for name in os.listdir(self.host.path("/proc")) if name.isdigit()]
            except OSError:
                return 0
        return sum(1 for pid in pids if self._load_one(pid))

    def _load_one(self, pid: int) -> bool:
        self._loaded.add(pid)
        if self.host is None:
            return False
        base = f"/proc/{pid}"
        cwd = _readlink(self.host.path(f"{base}/cwd"))
        if cwd is None and not self.host.path(base).exists():
            return False
        self.proc_reads += 1
        fs = self._fs.setdefault(pid, _Fs(None))
        if fs.cwd is None and cwd is not None:
            fs.cwd = cwd
        files = self._files.setdefault(pid, _Files())
        try:
            names = os.listdir(self.host.path(f"{base}/fd"))
        except OSError:
            return cwd is not None
        for name in names:
            if not name.isdigit() or int(name) in files.fds:
                continue
            target = _readlink(self.host.path(f"{base}/fd/{name}"))
            if target is None:
                continue
            files.fds[int(name)] = FdEntry(target, _kind_of_link(target), self._proc_cloexec(pid, name), "proc")
        return True

    def _proc_cloexec(self, pid: int, fd: str) -> bool:
        assert self.host is not None
        text = self.host.read_text(f"/proc/{pid}/fdinfo/{fd}") or ""
        for line in text.splitlines():
            if line.startswith("flags:"):
                try:
                    return bool(int(line.split()[1], 8) & O_CLOEXEC)
                except (IndexError, ValueError):
                    return False
        return False

    def from_proc(self, pid: int, fd: int) -> FdEntry | None:
        """Last resort: /proc/PID/fd/N now (racy: the fd may have been closed or reused since)."""
        if self.host is None:
            return None
        target = _readlink(self.host.path(f"/proc/{pid}/fd/{fd}"))
        if target is None:
            return None
        entry = FdEntry(target, _kind_of_link(target), False, "proc")
        self._files_of(pid, load=False).fds[fd] = entry
        return entry

    # -- lookups -----------------------------------------------------------------------------

    def _files_of(self, pid: int, load: bool = True) -> _Files:
        files = self._files.get(pid)
        if files is None:
            if load and pid not in self._loaded and self.host is not None:
                self._load_one(pid)
                files = self._files.get(pid)
            if files is None:
                self._evict()
                files = self._files[pid] = _Files()
        return files

    def _fs_of(self, pid: int, load: bool = True) -> _Fs:
        fs = self._fs.get(pid)
        if fs is None:
            if load and pid not in self._loaded and self.host is not None:
                self._load_one(pid)
                fs = self._fs.get(pid)
            if fs is None:
                fs = self._fs[pid] = _Fs(None)
        return fs

    def _evict(self) -> None:
        # Bounded memory: forget the oldest processes (dicts keep insertion order).
        while len(self._files) >= self.max_processes:
            oldest = next(iter(self._files))
            del self._files[oldest]
            self._fs.pop(oldest, None)

    def entry(self, pid: int, fd: int) -> FdEntry | None:
        files = self._files.get(pid)
        if files is None and pid not in self._loaded:
            files = self._files_of(pid)
        return files.fds.get(fd) if files is not None else None

    def path(self, pid: int, fd: int) -> str | None:
        found = self.entry(pid, fd)
        return found.path if found is not None else None

    def fds(self, pid: int) -> dict[int, FdEntry]:
        """A copy of the process's table (for tests and debugging)."""
        files = self._files.get(pid)
        return {fd: entry.copy() for fd, entry in files.fds.items()} if files else {}

    def tracked(self, pid: int) -> bool:
        """Whether the process's table is complete: read from /proc or followed since its fork."""
        return pid in self._loaded and pid in self._files

    def cwd(self, pid: int) -> str | None:
        return self._fs_of(pid).cwd

    def resolve(self, pid: int, path: str, dfd: int = AT_FDCWD) -> tuple[str | None, str | None]:
        """(absolute path, None) or (None, reason) for `path` as the process named it, relative to
        its working directory (dfd AT_FDCWD) or to the directory open as `dfd`."""
        if path.startswith("/"):
            return normalize(path), None
        if dfd == AT_FDCWD or _as_int32(dfd) == AT_FDCWD:
            base = self.cwd(pid)
            if base is None:
                return None, f"working directory of pid {pid} not known"
        else:
            found = self.entry(pid, _as_int32(dfd))
            if found is None:
                return None, f"dirfd {_as_int32(dfd)} of pid {pid} not known"
            if found.kind != FILE:
                return None, f"dirfd {_as_int32(dfd)} is {found.path}, not a directory"
            base = found.path
        if path == "":
            return normalize(base), None       # AT_EMPTY_PATH: the dirfd itself
        return normalize(posixpath.join(base, path)), None

    # -- changes from syscalls -----------------------------------------------------------------

    def opened(self, pid: int, fd: int, path: str, flags: int = 0, kind: str = FILE) -> None:
        """open/openat/openat2/creat/open_by_handle_at returned `fd` for `path` (already absolute)."""
        if fd < 0:
            return
        self._files_of(pid, load=False).fds[fd] = FdEntry(path, kind, bool(flags & O_CLOEXEC))

    def anonymous(self, pid: int, fd: int, kind: str, inode: int | None = None, cloexec: bool = False) -> None:
        """socket/accept/eventfd... returned `fd`; its name is `socket:[inode]` (or `[?]`)."""
        if fd < 0:
            return
        self._files_of(pid, load=False).fds[fd] = FdEntry(anonymous_name(kind, inode), kind, cloexec)

    def pipe(self, pid: int, fds: tuple[int, int] | None, inode: int | None = None, flags: int = 0) -> None:
        """pipe/pipe2: the two fds are written to user memory, so callers often do not know them."""
        if fds is None:
            return
        for fd in fds:
            self.anonymous(pid, fd, PIPE, inode, bool(flags & O_CLOEXEC))

    def duped(self, pid: int, oldfd: int, newfd: int, cloexec: bool = False) -> None:
        """dup/dup2/dup3/fcntl(F_DUPFD[_CLOEXEC]) returned `newfd` for `oldfd`. The new fd never
        inherits FD_CLOEXEC except through dup3(O_CLOEXEC) / F_DUPFD_CLOEXEC."""
        if newfd < 0 or oldfd < 0:
            return
        files = self._files_of(pid)
        source = files.fds.get(oldfd)
        if source is None:
            source = self.from_proc(pid, newfd) or self.from_proc(pid, oldfd)
            if source is None:
                files.fds.pop(newfd, None)
                return
        copied = source.copy()
        copied.cloexec = cloexec
        files.fds[newfd] = copied

    def fcntl(self, pid: int, fd: int, cmd: int, arg: int, ret: int) -> None:
        """The fcntl commands that change the table: F_DUPFD, F_DUPFD_CLOEXEC, F_SETFD."""
        if ret < 0:
            return
        if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
            self.duped(pid, fd, ret, cloexec=cmd == F_DUPFD_CLOEXEC)
        elif cmd == F_SETFD:
            found = self.entry(pid, fd)
            if found is not None:
                found.cloexec = bool(arg & FD_CLOEXEC)

    def closed(self, pid: int, fd: int) -> FdEntry | None:
        """close(fd): returns what it named (for the close event's path)."""
        files = self._files.get(pid)
        if files is None:
            return None
        return files.fds.pop(fd, None)

    def close_range(self, pid: int, first: int, last: int, flags: int = 0) -> None:
        """close_range(first, last, flags); CLOSE_RANGE_CLOEXEC marks instead of closing."""
        last = min(last, 1 << 31)
        if flags & CLOSE_RANGE_UNSHARE:
            self._unshare_files(pid)
        files = self._files.get(pid)
        if files is None:
            return
        for fd in [fd for fd in files.fds if first <= fd <= last]:
            if flags & CLOSE_RANGE_CLOEXEC:
                files.fds[fd].cloexec = True
            else:
                del files.fds[fd]

    def chdir(self, pid: int, path: str) -> None:
        """chdir(path) succeeded: `path` as the process gave it (relative to the old cwd)."""
        absolute, _reason = self.resolve(pid, path)
        self._fs_of(pid, load=False).cwd = absolute

    def fchdir(self, pid: int, fd: int) -> None:
        found = self.entry(pid, fd)
        self._fs_of(pid, load=False).cwd = found.path if found is not None and found.kind == FILE else None

    def set_cwd(self, pid: int, path: str | None) -> None:
        self._fs_of(pid, load=False).cwd = path

    def forked(self, parent: int, child: int, clone_flags: int = 0) -> None:
        """fork/vfork/clone created process `child` (a tgid; threads need no call). Without the flags
        (sched_process_fork does not carry them) the table and cwd are copied, as fork does."""
        if clone_flags & CLONE_THREAD:
            return
        files = self._files_of(parent)
        self._files[child] = files if clone_flags & CLONE_FILES else files.copy()
        fs = self._fs_of(parent)
        self._fs[child] = fs if clone_flags & CLONE_FS else _Fs(fs.cwd)
        self._loaded.add(child)

    def execed(self, pid: int) -> None:
        """execve succeeded: the table is unshared (exec does unshare_files) and O_CLOEXEC fds go."""
        self._unshare_files(pid)
        files = self._files.get(pid)
        if files is None:
            return
        for fd in [fd for fd, entry in files.fds.items() if entry.cloexec]:
            del files.fds[fd]

    def exited(self, pid: int) -> None:
        """The whole process exited: forget it (a shared table lives on in its other holders)."""
        self._files.pop(pid, None)
        self._fs.pop(pid, None)
        self._loaded.discard(pid)

    def _unshare_files(self, pid: int) -> None:
        files = self._files.get(pid)
        if files is not None and any(other is files for key, other in self._files.items() if key != pid):
            self._files[pid] = files.copy()

    def __len__(self) -> int:
        return len(self._files)


def _as_int32(value: int) -> int:
    """A dirfd slot from a syscall event is an unsigned 64-bit register: AT_FDCWD shows as 0xffffff9c."""
    value &= 0xffffffff
    return value - (1 << 32) if value & 0x80000000 else value


def _readlink(path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
