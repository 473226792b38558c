"""exec argv read from the caller's memory while fanotify holds the exec: whole and exact.

A fanotify group of the content class with FAN_OPEN_EXEC_PERM on every filesystem is asked for a
verdict each time a program file is opened for execution. In Linux 6.8+ execve opens the file before it
copies argv and envp out of the caller (fs/exec.c: alloc_bprm, then copy_strings), and until the verdict
comes the calling thread waits in the kernel: its registers (/proc/TID/syscall) hold the argv and envp
pointers the kernel is about to copy, and its memory still holds the strings. A child process reads them
(process_vm_readv), sends them to rawtrace through a pipe, and only then allows the exec, so by the time the
exec's own trace events can be decoded its argv is already there (each capture carries the
CLOCK_MONOTONIC time it was read, between the call's entry and its end, which is how it is joined). It is
the caller's argv, as it passed it (a script's own argv[0], not the interpreter's), for every program:
dynamically or statically linked, through the C library or a raw syscall, 32-bit compat tasks too (4-byte
pointers). What it does not close: another thread of the caller may still change the strings between the
read and the kernel's copy (as it may between any tracer's read and the kernel's).

Kernels before 6.8 are not used: from 5.7 the strings are copied before the file is opened, and before
5.7 the waiting exec holds the cred_guard_mutex that reading /proc/TID/syscall and the memory needs (a
deadlock of every exec on the machine).

What it costs: every exec on the machine waits for the child's answer, one round trip (200-300 us here,
tools/bench_exec.py; the dynamic linker's own open for exec is not watched, so `ld.so PROGRAM` is not
held). What it cannot see: execs that fail before the file is open (ENOENT, EACCES: the uprobes read
those), files on filesystems left unmarked (memfd, pseudo filesystems, and network and FUSE filesystems,
whose stalls would stall every exec behind them), execs by kernel threads (their argv is in kernel memory).
Safety: the child answers every event whatever happens (errors included), keeps reading after a failed
read, ignores the terminal's job-control signals (Ctrl-Z must not leave the machine's execs waiting) in a
process group of its own, and dies with rawtrace; when its group goes, the kernel allows whatever was
waiting. A child stopped by SIGSTOP would hold every exec until it is continued: that is the price of a
permission event, said in the help."""

from __future__ import annotations

import errno
import os
import select
import struct
import threading
import time
from collections import deque
from collections.abc import Callable

from rawtrace.fanotify import (
    _METADATA,
    FAN_ALLOW,
    FAN_CLASS_CONTENT,
    FAN_CLOEXEC,
    FAN_MARK_ADD,
    FAN_MARK_FILESYSTEM,
    FAN_MARK_IGNORED_MASK,
    FAN_MARK_IGNORED_SURV_MODIFY,
    FAN_OPEN_EXEC_PERM,
    FAN_REPORT_TID,
)
from rawtrace.host import Host

_RESPONSE = struct.Struct("=iI")        # struct fanotify_response: fd, response

# Kernel bounds on what execve accepts (include/uapi/linux/binfmts.h): a string is at most
# MAX_ARG_STRLEN (32 pages) with its NUL. The whole of argv and envp is bounded by a quarter of the stack
# limit; rawtrace reads at most this much of a vector and marks the rest as cut (an exec past the
# kernel's bounds fails with E2BIG anyway).
MAX_ARG_STRLEN = 32 * 4096
MAX_VECTOR_BYTES = 4 << 20
MAX_VECTOR_STRINGS = 1 << 17
MIN_KERNEL = (6, 8)
# Filesystems not marked: pseudo ones hold no programs; a network or FUSE filesystem that stalls would
# stall the child's read of the event (the kernel opens the file for it), and every exec behind it.
UNMARKED = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "9p", "afs", "glusterfs", "lustre",
                      "fuse", "fuseblk"})

# Frame through the pipe: the header below, then the strings (each followed by a NUL: they hold none),
# argv first. tid, read at (CLOCK_MONOTONIC ns), argv pointer, nr, argc, envc, flags, the strings' length.
_FRAME = struct.Struct("=iQQiIIII")
_ARGV_MORE, _ENVP_MORE, _CUT_LAST_ARG = 1, 2, 4


def exec_calls(arch: str) -> dict[int, tuple[str, int, int, int]]:
    """syscall number → (name, argv argument index, envp argument index, pointer bytes) of execve and
    execveat in the native ABI and the compat ones (x86_64's i386: a task waiting in an exec permission
    check is in one of these calls, so numbers shared with other native calls cannot mislead)."""
    from rawtrace.syscalls.arches import lookup_arch
    from rawtrace.syscalls.tables import SyscallTable
    found = lookup_arch(arch)
    if found is None:
        return {}
    table = SyscallTable(found)
    out: dict[int, tuple[str, int, int, int]] = {}
    for abi in found.abis:
        if not (abi is found.abis[0] or abi.compat):
            continue
        width = (abi.word_size or found.word_size) // 8
        for name, argv_at in (("execve", 1), ("execveat", 2)):
            call = table.by_name(name, abi.name)
            if call is None:
                continue
            known = out.get(call.nr)
            if known is not None and known[3] != width:
                # The same number in both ABIs (ppc64, riscv, ...): 0 = tell by the caller's ELF class.
                out[call.nr] = (name, argv_at, argv_at + 1, 0)
            elif known is None:
                out[call.nr] = (name, argv_at, argv_at + 1, width)
    return out


def pointer_width(tid: int, proc: str = "/proc") -> int | None:
    """8 or 4: the pointer size of the program a thread runs, from its ELF class (None if unreadable)."""
    try:
        fd = os.open(f"{proc}/{tid}/exe", os.O_RDONLY)
        try:
            head = os.read(fd, 5)
        finally:
            os.close(fd)
    except OSError:
        return None
    if len(head) < 5 or head[:4] != b"\x7fELF":
        return None
    return {1: 4, 2: 8}.get(head[4])


def parse_proc_syscall(text: str) -> tuple[int, list[int]] | None:
    """/proc/TID/syscall of a thread blocked in a syscall: (number, its six arguments); None when it is
    running or not in a syscall ("running", "-1 ...")."""
    parts = text.split()
    if not parts or not parts[0].lstrip("-").isdigit() or parts[0].startswith("-"):
        return None
    try:
        return int(parts[0]), [int(word, 16) for word in parts[1:7]]
    except ValueError:
        return None


def read_vector(read: Callable[[int, int], bytes], address: int, width: int, *,
                max_strings: int = MAX_VECTOR_STRINGS, max_bytes: int = MAX_VECTOR_BYTES
                ) -> tuple[list[bytes], bool, bool]:
    """A NULL-terminated vector of string pointers (argv, envp) in another process.

    `read(address, size)` gives up to `size` bytes there (fewer where a page cannot be read; OSError when
    none can). Returns (strings, more, last_cut): `more` when the vector went on past what was read (the
    bounds, or unreadable memory), `last_cut` when the last string has no NUL within its bounds."""
    if not address:
        return [], False, False
    fmt = "=" + ("Q" if width == 8 else "I")
    pointers: list[int] = []
    at = address
    more = False
    # Small reads first (a read costs by its size: 8 KiB about three times 64 bytes), larger as it goes.
    step = 64
    while True:
        try:
            chunk = read(at, step * width)
        except OSError:
            more = True
            break
        count = len(chunk) // width
        if count == 0:
            more = True
            break
        ended = False
        for (value,) in struct.iter_unpack(fmt, chunk[:count * width]):
            if value == 0:
                ended = True
                break
            pointers.append(value)
            if len(pointers) >= max_strings:
                break
        if ended:
            break
        if len(pointers) >= max_strings:
            more = True
            break
        at += count * width
        step = min(step * 4, 4096)
    strings: list[bytes] = []
    total = 0
    cut = False
    # Callers usually keep the strings side by side: one read of their span, then slices.
    span_start = min(pointers) if pointers else 0
    span_end = max(pointers) + 512 if pointers else 0      # (a longer last string is read on its own)
    span = b""
    if pointers and span_end - span_start <= 1 << 20:
        try:
            span = read(span_start, span_end - span_start)
        except OSError:
            span = b""
    for pointer in pointers:
        text = None
        offset = pointer - span_start
        if 0 <= offset < len(span):
            end = span.find(b"\0", offset, offset + MAX_ARG_STRLEN)
            if end >= 0:
                text = span[offset:end]
        if text is None:
            text, cut = _read_string(read, pointer, min(MAX_ARG_STRLEN, max_bytes - total))
        strings.append(text)
        total += len(text) + 1
        if cut or total >= max_bytes:
            more = more or len(strings) < len(pointers)
            break
    return strings, more, cut


def _read_string(read: Callable[[int, int], bytes], address: int, limit: int) -> tuple[bytes, bool]:
    """A NUL-terminated string of at most `limit` bytes: (bytes, cut)."""
    out = bytearray()
    while len(out) < limit:
        try:
            chunk = read(address + len(out), min(4096 - (address + len(out)) % 4096, limit - len(out)))
        except OSError:
            return bytes(out), True
        if not chunk:
            return bytes(out), True
        end = chunk.find(b"\0")
        if end >= 0:
            out += chunk[:end]
            return bytes(out), False
        out += chunk
    return bytes(out), True


_RUNNING_RETRIES = (0, 0.00005, 0.0002, 0.001, 0.005, 0.02, 0)


def read_exec_args(tid: int, calls: dict[int, tuple[str, int, int, int]], proc: str = "/proc",
                   environ: bool = False, read_memory: Callable[[int, int, int], bytes] | None = None):
    """(syscall number, argv pointer, argv, argv_more, last_cut, envp, envp_more) of a thread waiting in
    an exec, or None when it is not in one (or has gone)."""
    # The event can reach the child before the thread has gone to sleep waiting for the answer; while it
    # still runs the kernel says "running" instead of its registers. It cannot get past the wait without
    # the answer, so asking again shortly finds it there.
    parsed = None
    for pause in _RUNNING_RETRIES:
        try:
            fd = os.open(f"{proc}/{tid}/syscall", os.O_RDONLY)
            try:
                text = os.read(fd, 512).decode("ascii", "replace")
            finally:
                os.close(fd)
        except OSError:
            return None
        parsed = parse_proc_syscall(text)
        if parsed is not None or not text.startswith("running"):
            break
        time.sleep(pause)
    if parsed is None or parsed[0] not in calls:
        return None
    nr, args = parsed
    _name, argv_at, envp_at, width = calls[nr]
    if width == 0:
        width = pointer_width(tid, proc)
        if width is None:
            return None
    if read_memory is None:
        from rawtrace.libc import process_vm_readv as read_memory
    reader = read_memory

    def read(address: int, size: int) -> bytes:
        return reader(tid, address, size)
    argv, argv_more, cut = read_vector(read, args[argv_at], width)
    envp, envp_more = None, False
    if environ:
        envp, envp_more, _cut = read_vector(read, args[envp_at], width)
    return nr, args[argv_at], argv, argv_more, cut, envp, envp_more


def encode_frame(tid: int, when: int, nr: int, argv_pointer: int, argv: list[bytes], argv_more: bool, cut: bool,
                 envp: list[bytes] | None, envp_more: bool) -> bytes:
    flags = (_ARGV_MORE if argv_more else 0) | (_ENVP_MORE if envp_more else 0) | (_CUT_LAST_ARG if cut else 0)
    envp = envp or []
    body = b"".join(s + b"\0" for s in argv) + b"".join(s + b"\0" for s in envp)
    return _FRAME.pack(tid, when, argv_pointer, nr, len(argv), len(envp), flags, len(body)) + body


def decode_frames(buf: bytearray) -> tuple[list[tuple], int]:
    """Complete frames at the start of `buf`: ([(tid, when, argv_pointer, nr, argv, argv_more, cut, envp,
    envp_more)], bytes used)."""
    out = []
    at = 0
    head = _FRAME.size
    while len(buf) - at >= head:
        tid, when, pointer, nr, argc, envc, flags, length = _FRAME.unpack_from(buf, at)
        if len(buf) - at - head < length:
            break
        parts = bytes(buf[at + head:at + head + length]).split(b"\0")
        out.append((tid, when, pointer, nr, parts[:argc], bool(flags & _ARGV_MORE), bool(flags & _CUT_LAST_ARG),
                    parts[argc:argc + envc], bool(flags & _ENVP_MORE)))
        at += head + length
    return out, at


def kernel_too_old(release: str) -> bool:
    """Whether this kernel release is older than MIN_KERNEL (the hold is then not used)."""
    import re
    found = re.match(r"(\d+)\.(\d+)", release)
    return found is None or (int(found.group(1)), int(found.group(2))) < MIN_KERNEL


class ExecHold:
    """The child that holds each exec for its argv, and the parent's side of its pipe.

    `start()` raises OSError where the hold cannot be had (a kernel before 6.8, no CAP_SYS_ADMIN, a kernel
    without CONFIG_FANOTIFY_ACCESS_PERMISSIONS, nothing markable). `take(tid, argv_pointer, since, until)`
    gives the capture of that thread's exec, (argv, argv_more, cut, envp, envp_more, nr) or None: the
    newest with that argv pointer (any, with None) read between `since` and `until` (CLOCK_MONOTONIC ns;
    unbounded where None), once; older ones of the thread are dropped then. Captures not taken go after
    `keep_s` seconds, or the oldest first past `max_bytes`. `stop()` ends the child. Counters: `held`
    (execs read), `unread` (held but not read: the thread had gone or was not in an exec), `dropped`
    (read but not sent: the pipe was full), `events` (answered); `died` when the child ended by itself."""

    def __init__(self, host: Host | None = None, *, arch: str = "x86_64", environ: bool = False,
                 ignore_pids: set[int] | None = None, keep_s: float = 10.0, max_bytes: int = 64 << 20) -> None:
        self.host = host or Host()
        self.calls = exec_calls(arch)
        self.environ = environ
        self.ignore_pids = set(ignore_pids or ()) | {os.getpid()}
        self.keep_ns = int(keep_s * 1e9)
        self.max_bytes = max_bytes
        self.fd: int | None = None
        self.child: int | None = None
        self.marked: list[str] = []
        self._pipe: int | None = None
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._captures: dict[int, deque] = {}
        self._bytes = 0
        self._swept = 0
        self._stats = None              # shared memory the child counts in
        self._stopping = False
        self.died = False
        self.held = 0
        self.unread = 0
        self.dropped = 0
        self.events = 0

    # -- set-up ------------------------------------------------------------------------------------
    def open(self) -> None:
        """The group and its marks (OSError when refused)."""
        from rawtrace import libc
        from rawtrace.fanotify import PSEUDO_FILESYSTEMS
        from rawtrace.kconfig import kernel_release
        release = kernel_release(self.host)
        if kernel_too_old(release):
            raise OSError(errno.ENOTSUP, f"needs Linux {MIN_KERNEL[0]}.{MIN_KERNEL[1]}+, this is {release}")
        if not self.calls:
            raise OSError(errno.ENOTSUP, "no execve numbers known for this architecture")
        self.fd = libc.fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_REPORT_TID,
                                     os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC)
        try:
            seen = set()
            skip = (PSEUDO_FILESYSTEMS - {"devtmpfs", "ramfs", "squashfs", "overlay"}) | UNMARKED
            for _source, mountpoint, fstype, _options in self.host.mounts():
                if fstype in skip or fstype.startswith("fuse.") or mountpoint in seen:
                    continue
                seen.add(mountpoint)
                try:
                    libc.fanotify_mark(self.fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, -100,
                                       self.host.join(mountpoint))
                    self.marked.append(mountpoint)
                except OSError:
                    continue            # a filesystem without the support, or gone meanwhile
            if not self.marked:
                raise OSError(errno.ENODEV, "fanotify could mark no filesystem for exec permission events")
            # The dynamic linker is opened for exec too, in every dynamically linked exec: not worth a
            # round trip (its exec's argv was read at the program's own open).
            for loader in _loaders(self.host):
                try:
                    libc.fanotify_mark(self.fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
                                       FAN_OPEN_EXEC_PERM, -100, loader)
                except OSError:
                    pass
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        """open(), then the child (which answers the events) and the thread draining its pipe. Whatever
        fails on the way closes the group again: no event may wait for a child that is not there."""
        import mmap

        from rawtrace.helperchild import fork_helper
        if self.fd is None:
            self.open()
        read_fd = write_fd = None
        try:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            self._stats = mmap.mmap(-1, 32)
            try:
                import fcntl
                fcntl.fcntl(write_fd, 1031, 1 << 20)        # F_SETPIPE_SZ: room for bursts of long argv
            except OSError:
                pass
            os.set_blocking(write_fd, False)
            pid = fork_helper(lambda: self._child_main(write_fd), own_group=True)
        except BaseException:
            for fd in (read_fd, write_fd):
                if fd is not None:
                    os.close(fd)
            self.close()
            raise
        os.close(write_fd)
        os.set_blocking(read_fd, False)         # drained by _pump(), which never waits
        # The parent keeps no handle on the group: only the child answers, and when it goes, so does
        # the group (and the kernel allows what was waiting).
        self.close()
        self.child, self._pipe = pid, read_fd
        self._thread = threading.Thread(target=self._drain, name="rawtrace-exec-hold", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # -- the child -----------------------------------------------------------------------------------
    def _child_main(self, write_fd: int) -> None:
        import gc
        import resource

        from rawtrace.helperchild import become_helper
        gc.disable()            # no finalizer of the parent's objects may run (and close an fd) here
        fd = self.fd
        # Out of the terminal's job control: Ctrl-Z stops rawtrace, not the child every exec waits for.
        become_helper({fd, write_fd}, own_group=True)
        # The kernel opens an fd for each event read; without one it denies the exec.
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
        self._serve(fd, write_fd)

    def _serve(self, fd: int, write_fd: int) -> None:
        import fcntl

        from rawtrace.libc import process_vm_readv
        calls, environ, ignore = self.calls, self.environ, self.ignore_pids
        proc = self.host.join("/proc")
        meta, response = _METADATA, _RESPONSE
        # tid -> (argv pointer, when) last read: a script's interpreter is opened for exec in the same
        # call, moments later. Only that soon: a later process with the same tid (pids wrap) and, a fork
        # of the same program, the same pointer is another call.
        last: dict[int, tuple[int, float]] = {}
        clock = time.monotonic
        try:
            capacity = fcntl.fcntl(write_fd, 1032)          # F_GETPIPE_SZ
        except OSError:
            capacity = 65536
        held = unread = dropped = events = 0
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            poller.poll()
            try:
                # Small reads: the kernel opens an fd per event it hands out.
                buf = os.read(fd, 4096)
            except OSError:
                time.sleep(0.001)       # (no fd for an event: the kernel has denied that exec; go on)
                continue
            at = 0
            while at + meta.size <= len(buf):
                length, _version, _reserved, _meta_len, _mask, event_fd, tid = meta.unpack_from(buf, at)
                at += max(length, meta.size)
                events += 1
                frame = None
                try:
                    if tid not in ignore:
                        found = read_exec_args(tid, calls, proc, environ, process_vm_readv)
                        if found is None:
                            unread += 1
                        elif (seen := last.get(tid)) is None or seen[0] != found[1] or clock() - seen[1] > 0.5:
                            nr, pointer, argv, more, cut, envp, envp_more = found
                            frame = encode_frame(tid, time.monotonic_ns(), nr, pointer, argv, more, cut, envp,
                                                 envp_more)
                            if len(last) > 4096:
                                last.clear()
                            last[tid] = (pointer, clock())
                            held += 1
                    if frame is not None and not write_whole(write_fd, frame, capacity):
                        dropped += 1
                except Exception:  # noqa: BLE001 - the exec is allowed whatever went wrong here
                    unread += 1
                finally:
                    if event_fd >= 0:           # (a queue overflow notice has no fd and wants no answer)
                        try:
                            os.write(fd, response.pack(event_fd, FAN_ALLOW))
                        finally:
                            os.close(event_fd)
            struct.pack_into("=QQQQ", self._stats, 0, held, unread, dropped, events)

    # -- the parent ----------------------------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            pipe = self._pipe
            if pipe is None:
                return
            try:
                select.select([pipe], [], [])
            except (OSError, ValueError, TypeError):
                return
            if not self._pump():
                if not self._stopping:
                    self.died = True            # the child ended by itself (said at the end)
                return

    def _pump(self) -> bool:
        """Take what the pipe holds now (non-blocking); False once the child is gone."""
        with self._lock:
            if self._pipe is None:
                return False
            alive = True
            while True:
                try:
                    chunk = os.read(self._pipe, 1 << 16)
                except BlockingIOError:
                    break
                except OSError:
                    alive = False
                    break
                if not chunk:
                    alive = False
                    break
                self._buf += chunk
            frames, used = decode_frames(self._buf)
            del self._buf[:used]
            for frame in frames:
                self._captures.setdefault(frame[0], deque()).append(frame)
                self._bytes += _frame_bytes(frame)
            now = time.monotonic_ns()
            if self._bytes > self.max_bytes or now - self._swept > 1_000_000_000:
                self._sweep(now)
            return alive

    def _sweep(self, now: int) -> None:
        """Forget captures older than keep_s, then the oldest while over max_bytes (lock held)."""
        self._swept = now
        for tid in list(self._captures):
            queue = self._captures[tid]
            while queue and now - queue[0][1] > self.keep_ns:
                self._bytes -= _frame_bytes(queue.popleft())
            if not queue:
                del self._captures[tid]
        while self._bytes > self.max_bytes and self._captures:
            tid = min(self._captures, key=lambda t: self._captures[t][0][1])
            queue = self._captures[tid]
            self._bytes -= _frame_bytes(queue.popleft())
            if not queue:
                del self._captures[tid]

    def take(self, tid: int, argv_pointer: int | None = None, since: int | None = None,
             until: int | None = None):
        """The capture of `tid`'s exec (see the class), once; or None."""
        self._pump()
        with self._lock:
            queue = self._captures.get(tid)
            if not queue:
                return None
            found = None
            for index in range(len(queue) - 1, -1, -1):
                frame = queue[index]
                when = frame[1]
                if until is not None and when > until:
                    continue
                if since is not None and when < since:
                    break
                if argv_pointer is None or frame[2] == argv_pointer:
                    found = index
                    break
            if found is None:
                return None
            frame = queue[found]
            # The thread's older captures were never asked for (filtered, or lost): gone with this one.
            for _ in range(found + 1):
                self._bytes -= _frame_bytes(queue.popleft())
            if not queue:
                del self._captures[tid]
            _tid, _when, _pointer, nr, argv, more, cut, envp, envp_more = frame
            return argv, more, cut, (envp if self.environ else None), envp_more, nr

    def stats(self) -> tuple[int, int, int]:
        if self._stats is not None:
            self.held, self.unread, self.dropped, self.events = struct.unpack_from("=QQQQ", self._stats, 0)
        return self.held, self.unread, self.dropped

    def stop(self) -> None:
        import signal
        self._stopping = True
        if self.child is not None:
            try:
                os.kill(self.child, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(self.child, 0)
            except ChildProcessError:
                pass
            self.child = None
        self._pump()
        self.stats()
        with self._lock:
            if self._pipe is not None:
                os.close(self._pipe)
            self._pipe = None
            if self._stats is not None:
                self._stats.close()
                self._stats = None
        self.close()


def write_whole(write_fd: int, frame: bytes, capacity: int) -> bool:
    """Write `frame` to the non-blocking pipe whole, or not at all (False): a part would garble every
    later frame, and waiting would hold the exec."""
    import fcntl
    import termios
    try:
        queued = struct.unpack("i", fcntl.ioctl(write_fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return False
    if capacity - queued < len(frame):
        return False
    try:
        return os.write(write_fd, frame) == len(frame)
    except BlockingIOError:
        return False


def _frame_bytes(frame) -> int:
    return 64 + sum(len(s) + 1 for s in frame[4]) + sum(len(s) + 1 for s in frame[7])


def _loaders(host: Host) -> list[str]:
    """The dynamic linkers on this machine (their real files), for the ignore marks."""
    import glob
    out = []
    for pattern in ("/lib64/ld-linux*.so*", "/lib/ld-linux*.so*", "/lib/*/ld-linux*.so*", "/lib/ld-musl-*.so*"):
        for path in glob.glob(host.join(pattern)):
            real = os.path.realpath(path)
            if real not in out and os.path.isfile(real):
                out.append(real)
    return out
