"""A fanotify source: file events with full paths and the acting pid, for kernels where tracefs is refused."""

from __future__ import annotations

import errno
import os
import select
import struct
import sys
import time
from collections.abc import Callable, Iterator

from rawtrace.host import Host

# fanotify_init flags (include/uapi/linux/fanotify.h).
FAN_CLASS_NOTIF = 0x0
FAN_CLASS_CONTENT = 0x4         # permission events (rawtrace.exechold)
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_REPORT_TID = 0x100
FAN_REPORT_FID = 0x200
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
# fanotify_mark flags.
FAN_MARK_ADD = 0x1
FAN_MARK_REMOVE = 0x2
FAN_MARK_MOUNT = 0x10
FAN_MARK_IGNORED_MASK = 0x20
FAN_MARK_IGNORED_SURV_MODIFY = 0x40
FAN_MARK_FILESYSTEM = 0x100
# Event mask bits.
FAN_ACCESS = 0x1
FAN_MODIFY = 0x2
FAN_ATTRIB = 0x4
FAN_CLOSE_WRITE = 0x8
FAN_CLOSE_NOWRITE = 0x10
FAN_OPEN = 0x20
FAN_MOVED_FROM = 0x40
FAN_MOVED_TO = 0x80
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_DELETE_SELF = 0x400
FAN_MOVE_SELF = 0x800
FAN_OPEN_EXEC = 0x1000
FAN_Q_OVERFLOW = 0x4000
FAN_OPEN_EXEC_PERM = 0x40000
FAN_ALLOW = 0x1                 # struct fanotify_response .response
FAN_ONDIR = 0x40000000
FAN_EVENT_ON_CHILD = 0x08000000
# Info record types.
INFO_FID = 1
INFO_DFID_NAME = 2
INFO_DFID = 3
INFO_PIDFD = 4
FAN_NOFD = -1
METADATA_VERSION = 3

CLASSIC_MASK = FAN_ACCESS | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE | FAN_OPEN | FAN_OPEN_EXEC
FID_MASK = (CLASSIC_MASK | FAN_ATTRIB | FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_ONDIR)
# What naming syscalls needs (alongside tracefs): no per-read/-write/-close events, which cost the traced
# programs time and, merged with later identical events, move those ahead in the queue.
JOIN_MASK = FAN_OPEN | FAN_OPEN_EXEC | FAN_CREATE | FAN_DELETE | FAN_ONDIR

# Filesystems without files worth watching (or without file handles); fatrace skips the same kinds.
PSEUDO_FILESYSTEMS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "tracefs", "debugfs", "securityfs", "bpf", "mqueue",
    "fusectl", "configfs", "pstore", "efivarfs", "binfmt_misc", "hugetlbfs", "autofs", "nsfs", "rpc_pipefs",
    "selinuxfs", "devtmpfs", "ramfs", "squashfs", "overlay", "fuse.portal", "nfsd"})

_METADATA = struct.Struct("=IBBHQii")
_INFO_HEADER = struct.Struct("=BBH")
_FSID = struct.Struct("=ii")
_HANDLE_HEADER = struct.Struct("=Ii")


def types_of(mask: int) -> str:
    """fatrace's letters for a mask, in its fixed order `R C W O + D < >`."""
    out = ""
    if mask & FAN_ACCESS:
        out += "R"
    if mask & (FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE):
        out += "C"
    if mask & (FAN_MODIFY | FAN_CLOSE_WRITE):
        out += "W"
    if mask & (FAN_OPEN | FAN_OPEN_EXEC):
        out += "O"
    if mask & FAN_CREATE:
        out += "+"
    if mask & FAN_DELETE:
        out += "D"
    if mask & FAN_MOVED_FROM:
        out += "<"
    if mask & FAN_MOVED_TO:
        out += ">"
    return out


class RawEvent:
    """One fanotify event as read: mask, pid, the fd (classic mode) and the file identifiers."""

    __slots__ = ("dir_handle", "fd", "fsid", "handle", "mask", "name", "pid")

    def __init__(self, mask: int, pid: int, fd: int) -> None:
        self.mask = mask
        self.pid = pid
        self.fd = fd
        self.fsid: tuple[int, int] | None = None
        self.handle: bytes | None = None       # the object's struct file_handle (FID)
        self.dir_handle: bytes | None = None   # the parent directory's (DFID / DFID_NAME)
        self.name: str | None = None           # the entry name in that directory (DFID_NAME)

    def __repr__(self) -> str:
        return f"RawEvent(mask={self.mask:#x}, pid={self.pid}, fd={self.fd}, name={self.name!r})"


def parse_events(buf: bytes) -> list[RawEvent]:
    """Decode a read() of a fanotify fd (struct fanotify_event_metadata + info records). Pure.

    A short or inconsistent record stops the walk (what came before is kept); metadata of another
    version raises ValueError, as the kernel documentation asks readers to check."""
    events: list[RawEvent] = []
    at, end = 0, len(buf)
    while at + _METADATA.size <= end:
        length, version, _reserved, metadata_len, mask, fd, pid = _METADATA.unpack_from(buf, at)
        if version != METADATA_VERSION:
            raise ValueError(f"fanotify metadata version {version}, expected {METADATA_VERSION}")
        if length < _METADATA.size or at + length > end or metadata_len < _METADATA.size:
            break
        event = RawEvent(mask, pid, fd)
        info = at + metadata_len
        stop = at + length
        while info + _INFO_HEADER.size <= stop:
            info_type, _pad, info_len = _INFO_HEADER.unpack_from(buf, info)
            if info_len < _INFO_HEADER.size or info + info_len > stop:
                break
            if info_type in (INFO_FID, INFO_DFID, INFO_DFID_NAME):
                _fid_info(event, info_type, buf[info + _INFO_HEADER.size:info + info_len])
            info += info_len
        events.append(event)
        at += length
    return events


def _fid_info(event: RawEvent, info_type: int, body: bytes) -> None:
    if len(body) < _FSID.size + _HANDLE_HEADER.size:
        return
    event.fsid = _FSID.unpack_from(body, 0)
    handle_bytes, _handle_type = _HANDLE_HEADER.unpack_from(body, _FSID.size)
    handle_end = _FSID.size + _HANDLE_HEADER.size + handle_bytes
    if handle_end > len(body):
        return
    handle = body[_FSID.size:handle_end]
    if info_type == INFO_FID:
        event.handle = handle
        return
    event.dir_handle = handle
    if info_type == INFO_DFID_NAME:
        name = body[handle_end:].split(b"\0", 1)[0]
        event.name = os.fsdecode(name) if name else None


class FileRecord:
    """A file event for a tool: `.ts` (CLOCK_MONOTONIC ns, at read time), pid, comm, mask, fatrace
    letters, the absolute path, and the directory and entry name for create/delete/moves."""

    __slots__ = ("comm", "directory", "epoch", "mask", "name", "path", "pid", "ts", "types")

    def __init__(self, ts: int, pid: int, mask: int, path: str | None, directory: str | None = None,
                 name: str | None = None, comm: str | None = None) -> None:
        self.ts = ts
        self.pid = pid
        self.mask = mask
        self.types = types_of(mask)
        self.path = path
        self.directory = directory
        self.name = name
        self.comm = comm
        self.epoch = 0           # how many execs of this pid the stream has shown so far

    def __repr__(self) -> str:
        return f"FileRecord({self.pid}, {self.types!r}, {self.path!r})"


class Overflow:
    """The kernel's queue overflowed (FAN_Q_OVERFLOW): events were lost, count unknown."""

    __slots__ = ("ts",)

    def __init__(self, ts: int) -> None:
        self.ts = ts

    def __repr__(self) -> str:
        return "Overflow()"


TASK_COMM_LEN = 16


def exec_name(path: str) -> str:
    """The comm a process gets from exec'ing `path`: the basename, cut to 15 bytes."""
    base = path.rsplit("/", 1)[-1]
    return base.encode("utf-8", "surrogateescape")[:TASK_COMM_LEN - 1].decode("utf-8", "surrogateescape")


class Names:
    """Process names for fanotify events, in stream order, so exited and exec'd processes are named right.

    fanotify events carry no time stamp and no name; /proc/PID/comm read later names a process that has
    since exec'd another program wrongly, and one that exited not at all (fatrace's `unknown`). The
    stream itself says when a process execs: its FAN_OPEN_EXEC of the new program (the first of a run:
    the interpreter and ld.so follow it). Fork, exec and rename events from the proc connector, when
    fed, name children before their first event. /proc is the fallback for processes seen first."""

    def __init__(self, proc_comm: Callable[[int], str | None], max_pids: int = 1 << 16) -> None:
        self.proc_comm = proc_comm
        self.max_pids = max_pids
        self._names: dict[int, str] = {}
        self._in_exec: dict[int, set[str]] = {}
        self.epochs: dict[int, int] = {}       # execs seen per pid (program images), for joins
        self._exited: set[int] = set()
        self.from_proc = 0
        self.unknown = 0

    def name(self, pid: int) -> str | None:
        found = self._names.get(pid)
        if found is None:
            found = self.proc_comm(pid)
            if found is None:
                self.unknown += 1
                return None
            self.from_proc += 1
            self._remember(pid, found)
        return found

    def observe(self, pid: int, mask: int, path: str | None) -> str | None:
        """The name for this event of `pid`, updating it first when the event is the exec of a program.

        An exec opens the program, reads it, then opens and reads its interpreter (a script's shell,
        ld.so): those OPEN_EXECs belong to the same exec, which ends at the first event on another file."""
        run = self._in_exec.get(pid)
        if mask & FAN_OPEN_EXEC and path:
            if run is None:
                self._remember(pid, exec_name(path))
                self._in_exec[pid] = {path}
                self.epochs[pid] = self.epochs.get(pid, 0) + 1
            else:
                run.add(path)
        elif run is not None and path not in run:
            del self._in_exec[pid]
        return self.name(pid)

    def snapshot(self, host: Host) -> int:
        """Name every process alive now from /proc, so one that exits before its events are read keeps
        its name. Returns how many were named."""
        try:
            pids = [int(name) for name in os.listdir(host.path("/proc")) if name.isdigit()]
        except OSError:
            return 0
        count = 0
        for pid in pids:
            text = host.read_text(f"/proc/{pid}/comm")
            if text is not None and pid not in self._names:
                self._remember(pid, text.rstrip("\n"))
                count += 1
        return count

    def set(self, pid: int, comm: str) -> None:
        """A name known from elsewhere (proc connector comm event, a /proc snapshot)."""
        self._remember(pid, comm)

    def forked(self, parent: int, child: int) -> None:
        """A fork, as the proc connector reports it. It may be read after the child's first fanotify
        events (it happened between two reads): a name the child already has then stays, unless the pid
        belonged to a process that exited (a reused pid)."""
        if child in self._names and child not in self._exited:
            return
        self._exited.discard(child)
        self.epochs.pop(child, None)
        name = self._names.get(parent) or self.proc_comm(parent)
        if name is not None:
            self._remember(child, name)

    def exited(self, pid: int) -> None:
        self._exited.add(pid)

    def _remember(self, pid: int, comm: str) -> None:
        if pid not in self._names and len(self._names) >= self.max_pids:
            del self._names[next(iter(self._names))]
        self._names[pid] = comm


class FanotifySource:
    """A fanotify group watching every real filesystem; drive it with open(), batches(), stop(), close().

    It reports with file handles (FAN_REPORT_DFID_NAME | FAN_REPORT_FID, 5.9+) when the kernel has them,
    so deletes, creates and moves name the entry and events of files deleted since still have a path;
    else classic fd events (opens, reads, writes, closes only). Processes are named by `Names` (exec
    events in the stream, then `comm_of(pid)`, default /proc/PID/comm at read time)."""

    def __init__(self, host: Host | None = None, *, mask: int | None = None, poll_ms: int = 100,
                 comm_of: Callable[[int], str | None] | None = None, mounts: list[str] | None = None,
                 ignore_pids: set[int] | None = None, force_classic: bool = False,
                 use_procconn: bool = True) -> None:
        self.host = host or Host()
        self.mask = mask
        self.poll_ms = poll_ms
        self.names = Names(comm_of or self._proc_comm)
        self.wanted_mounts = mounts
        self.ignore_pids = set(ignore_pids or ()) | {os.getpid()}
        self.force_classic = force_classic
        self.fd: int | None = None
        self.mode: str | None = None          # "fid" or "classic"
        self.marked: list[str] = []
        self.unmarked: list[tuple[str, str]] = []   # (mount point, why)
        self._mount_fds: dict[tuple[int, int], int] = {}
        self._stopped = False
        self.overflows = 0
        self.events = 0
        self.unresolved = 0
        self.use_procconn = use_procconn
        self.procconn = None       # rawtrace.procconn source naming children before their first event

    # -- life cycle --------------------------------------------------------------------------

    def open(self) -> None:
        """Create the group and mark every filesystem. Raises OSError (EPERM without CAP_SYS_ADMIN)."""
        from rawtrace import libc
        base = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK
        event_flags = os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC
        try:
            if self.force_classic:
                raise OSError(errno.EINVAL, "classic mode asked for")
            self.fd = libc.fanotify_init(base | FAN_REPORT_FID | FAN_REPORT_DFID_NAME, event_flags)
            self.mode = "fid"
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
            self.fd = libc.fanotify_init(base, event_flags)
            self.mode = "classic"
        try:
            self._mark_all()
        except BaseException:
            self.close()
            raise
        if not self.marked:
            reasons = "; ".join(f"{m}: {why}" for m, why in self.unmarked[:3])
            self.close()
            raise OSError(errno.ENODEV, f"fanotify could watch no filesystem ({reasons or 'none found'})")
        if self.use_procconn and self.host.is_live:
            from rawtrace.procconn import ProcConnectorSource
            procconn = ProcConnectorSource(self.host, exec_details=False, kinds={"fork", "exit"})
            try:
                procconn.open()
                self.procconn = procconn
            except OSError:
                procconn.close()       # no CAP_NET_ADMIN or no CONFIG_PROC_EVENTS: names from the stream
        self.names.snapshot(self.host)

    def _mounts(self) -> list[tuple[str, str]]:
        if self.wanted_mounts is not None:
            return [(m, "") for m in self.wanted_mounts]
        seen, out = set(), []
        for _source, mountpoint, fstype, _options in self.host.mounts():
            if fstype in PSEUDO_FILESYSTEMS or mountpoint in seen:
                continue
            seen.add(mountpoint)
            out.append((mountpoint, fstype))
        return out

    def _mark_all(self) -> None:
        from rawtrace import libc
        assert self.fd is not None
        fid = self.mode == "fid"
        mask = self.mask if self.mask is not None else (FID_MASK if fid else CLASSIC_MASK)
        if not fid:
            mask &= CLASSIC_MASK
        for mountpoint, _fstype in self._mounts():
            path = str(self.host.path(mountpoint))
            try:
                mount_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                self.unmarked.append((mountpoint, exc.strerror or str(exc)))
                continue
            keep = False
            try:
                fsid = libc.fstatfs_fsid(mount_fd) if fid else None
                if fsid is not None and fsid in self._mount_fds:
                    continue       # the same filesystem mounted twice (bind mounts): one mark is enough
                flags = FAN_MARK_ADD | (FAN_MARK_FILESYSTEM if fid else FAN_MARK_MOUNT)
                try:
                    libc.fanotify_mark(self.fd, flags, mask, mount_fd, None)
                except OSError as exc:
                    # EXDEV: btrfs subvolume / idmapped; ENODEV/EOPNOTSUPP: no file handles here.
                    self.unmarked.append((mountpoint, exc.strerror or str(exc)))
                    continue
                self.marked.append(mountpoint)
                if fsid is not None:
                    self._mount_fds[fsid] = mount_fd
                    keep = True
            finally:
                if not keep:
                    os.close(mount_fd)

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        """Release the group, every mount fd and the proc connector socket; safe to call twice."""
        self.stop_reader()
        procconn, self.procconn = self.procconn, None
        if procconn is not None:
            procconn.close()
        fds, self._mount_fds = list(self._mount_fds.values()), {}
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    # -- reading -----------------------------------------------------------------------------

    def batches(self) -> Iterator[list]:
        """Lists of FileRecord / Overflow, time-ordered; an empty list on an idle poll interval."""
        poller = select.poll()
        assert self.fd is not None
        poller.register(self.fd, select.POLLIN)
        while not self._stopped and self.fd is not None:
            try:
                ready = poller.poll(self.poll_ms)
            except InterruptedError:
                continue
            yield self.read_available() if ready else []
        if self.fd is not None:
            tail = self.read_available()
            if tail:
                yield tail

    # -- a reader thread (alongside a tracefs stream) ------------------------------------------------
    def start_reader(self, poll_ms: int = 20) -> None:
        """Drain the kernel queue continuously in a thread, so events are read (and stamped) promptly
        and fanotify has no queued event to merge a later identical one into; `take()` collects them."""
        import threading
        self._taken: list = []
        self._lock = threading.Lock()
        self.drained_ns = 0
        self._reader_stop = threading.Event()

        def loop() -> None:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            while not self._reader_stop.is_set() and self.fd is not None:
                started = time.monotonic_ns()
                try:
                    records = self._read_queue()
                except OSError:
                    break
                with self._lock:
                    self._taken.extend(records)
                    self.drained_ns = started
                try:
                    poller.poll(poll_ms)
                except (InterruptedError, OSError, ValueError):
                    pass
        # A woken reader waits for the GIL until the decoding thread hands it over: every switch interval
        # (5 ms by default), long enough for fanotify to merge a process's next identical event (a
        # re-exec'd program's loader opens) into one still queued. 0.5 ms while the reader runs.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, 0.0005))
        self._reader = threading.Thread(target=loop, name="rawtrace-fanotify", daemon=True)
        self._reader.start()

    def take(self) -> tuple[list, int]:
        """(records read so far, the time before the last read that emptied the kernel queue)."""
        with self._lock:
            records, self._taken = self._taken, []
            return records, self.drained_ns

    def stop_reader(self) -> None:
        reader = getattr(self, "_reader", None)
        if reader is not None:
            self._reader_stop.set()
            reader.join(timeout=2)
            self._reader = None
            sys.setswitchinterval(self._switch_interval)

    def read_available(self) -> list:
        """Read and translate everything queued now (non-blocking)."""
        return self._read_queue()

    def _read_queue(self) -> list:
        out: list = []
        if self.procconn is not None:
            self._apply_procconn()
        while self.fd is not None:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not buf:
                break
            now = time.monotonic_ns()
            try:
                raw = parse_events(buf)
            except ValueError:
                break
            handle_cache: dict[bytes, str | None] = {}
            for event in raw:
                record = self._translate(event, now, handle_cache)
                if record is not None:
                    out.append(record)
        return out

    def _apply_procconn(self) -> None:
        # Read before fanotify: a child's fork is known before its first file event is named.
        try:
            records = self.procconn.read_available()
        except OSError:
            return
        for record in records:
            kind = getattr(record, "kind", None)
            if kind == "fork" and record.pid == record.tid and record.parent_pid is not None \
                    and record.parent_pid != record.pid:
                self.names.forked(record.parent_pid, record.pid)
            elif kind == "exit" and record.pid == record.tid:
                self.names.exited(record.pid)

    def _translate(self, event: RawEvent, now: int, cache: dict) -> FileRecord | Overflow | None:
        try:
            if event.mask & FAN_Q_OVERFLOW:
                self.overflows += 1
                return Overflow(now)
            if event.pid in self.ignore_pids:
                return None
            self.events += 1
            if event.fd >= 0:
                path = _fd_path(event.fd)
                record = FileRecord(now, event.pid, event.mask, path, comm=self.names.observe(event.pid, event.mask, path))
                record.epoch = self.names.epochs.get(event.pid, 0)
                return record
            directory = name = path = None
            if event.dir_handle is not None:
                directory = self._handle_path(event.fsid, event.dir_handle, cache)
                name = event.name
                if directory is not None:
                    path = directory if not name or name == "." else (directory.rstrip("/") + "/" + name)
            elif event.handle is not None:
                path = self._handle_path(event.fsid, event.handle, cache)
            if path is None:
                self.unresolved += 1
            record = FileRecord(now, event.pid, event.mask, path, directory, name,
                                self.names.observe(event.pid, event.mask, path))
            record.epoch = self.names.epochs.get(event.pid, 0)
            return record
        finally:
            if event.fd >= 0:
                try:
                    os.close(event.fd)
                except OSError:
                    pass

    def _handle_path(self, fsid: tuple[int, int] | None, handle: bytes, cache: dict) -> str | None:
        if handle in cache:
            return cache[handle]
        from rawtrace import libc
        mount_fd = self._mount_fds.get(fsid) if fsid is not None else None
        candidates = [mount_fd] if mount_fd is not None else list(self._mount_fds.values())
        path = None
        for candidate in candidates:
            try:
                fd = libc.open_by_handle_at(candidate, handle, os.O_PATH | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno == errno.ESTALE:
                    path = "(deleted)"
                    break
                continue
            try:
                path = _fd_path(fd)
            finally:
                os.close(fd)
            break
        cache[handle] = path
        return path

    def _proc_comm(self, pid: int) -> str | None:
        text = self.host.read_text(f"/proc/{pid}/comm")
        return text.rstrip("\n") if text is not None else None


def _fd_path(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def fanotify_available(host: Host) -> str | None:
    """None if this kernel has fanotify (the /proc/sys/fs/fanotify directory), else why not."""
    if host.path("/proc/sys/fs/fanotify").is_dir():
        return None
    return "this kernel has no fanotify (CONFIG_FANOTIFY=n: no /proc/sys/fs/fanotify)"


