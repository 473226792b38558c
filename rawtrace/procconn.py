"""The proc connector source: fork, exec, exit and comm events of every process over netlink, lockdown-proof."""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rawtrace.host import Host

# include/uapi/linux/netlink.h, connector.h, cn_proc.h
NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

PROC_EVENT_NONE = 0x00000000
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_UID = 0x00000004
PROC_EVENT_GID = 0x00000040
PROC_EVENT_SID = 0x00000080
PROC_EVENT_PTRACE = 0x00000100
PROC_EVENT_COMM = 0x00000200
PROC_EVENT_NONZERO_EXIT = 0x20000000
PROC_EVENT_COREDUMP = 0x40000000
PROC_EVENT_EXIT = 0x80000000

# struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }
NLMSGHDR = struct.Struct("=IHHII")
# struct cn_msg { struct cb_id { u32 idx; u32 val; } id; u32 seq; u32 ack; u16 len; u16 flags; }
CN_MSG = struct.Struct("=IIIIHH")
# struct proc_event { u32 what; u32 cpu; __aligned_u64 timestamp_ns; union event_data; }
PROC_EVENT = struct.Struct("=IIQ")
FORK_DATA = struct.Struct("=iiii")          # parent_pid, parent_tgid, child_pid, child_tgid
EXEC_DATA = struct.Struct("=ii")            # process_pid, process_tgid
EXIT_DATA = struct.Struct("=iiIIii")        # pid, tgid, exit_code, exit_signal, parent_pid, parent_tgid
COMM_DATA = struct.Struct("=ii16s")         # pid, tgid, comm[16]
ACK_DATA = struct.Struct("=I")              # err

RECEIVE_BUFFER = 4 << 20


@dataclass(frozen=True, slots=True)
class ProcRecord:
    """One proc connector event. `ts` is the kernel's ktime_get_ns() (CLOCK_MONOTONIC) when it happened.

    kind: "fork" (pid/tid = child, parent_pid/parent_tid = the forking task), "exec" (pid, tid),
    "exit" (pid, tid, exit_code, parent_pid), "comm" (pid, tid, comm). For exec, `cmdline` is
    /proc/PID/cmdline (`environ` /proc/PID/environ, when asked for) and `comm`/`exe` the name and
    executable, read when the event was received: a
    process that exits or rewrites its cmdline first gives None or the new text (racy by nature)."""

    ts: int
    kind: str
    pid: int
    tid: int
    cpu: int
    parent_pid: int | None = None
    parent_tid: int | None = None
    comm: str | None = None
    exit_code: int | None = None
    cmdline: bytes | None = None
    exe: str | None = None
    environ: bytes | None = None


@dataclass(frozen=True, slots=True)
class ProcOverflow:
    """The kernel dropped messages because the socket buffer was full (ENOBUFS): how many is unknown."""

    ts: int


def subscribe_message(op: int = PROC_CN_MCAST_LISTEN, seq: int = 0, port: int = 0) -> bytes:
    """The netlink message that starts (or stops) the kernel sending proc events to this socket."""
    payload = struct.pack("=I", op)
    cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, seq, 0, len(payload), 0) + payload
    return NLMSGHDR.pack(NLMSGHDR.size + len(cn), NLMSG_DONE, 0, seq, port) + cn


def parse_messages(buf: bytes) -> list[tuple[int, int, int, bytes]]:
    """Split a datagram into proc events: (what, cpu, timestamp_ns, event data). Malformed tails stop
    the walk; NLMSG_ERROR/OVERRUN messages and other connector indexes are skipped."""
    out = []
    offset = 0
    while offset + NLMSGHDR.size <= len(buf):
        length, mtype, _flags, _seq, _pid = NLMSGHDR.unpack_from(buf, offset)
        if length < NLMSGHDR.size or offset + length > len(buf):
            break
        body = offset + NLMSGHDR.size
        if mtype == NLMSG_DONE and length >= NLMSGHDR.size + CN_MSG.size + PROC_EVENT.size:
            idx, val, _s, _a, data_len, _f = CN_MSG.unpack_from(buf, body)
            data = body + CN_MSG.size
            if idx == CN_IDX_PROC and val == CN_VAL_PROC and data_len >= PROC_EVENT.size \
                    and data + data_len <= offset + length:
                what, cpu, ts = PROC_EVENT.unpack_from(buf, data)
                out.append((what, cpu, ts, bytes(buf[data + PROC_EVENT.size:data + data_len])))
        offset += (length + 3) & ~3          # NLMSG_ALIGN
    return out


def decode_event(what: int, cpu: int, ts: int, data: bytes) -> ProcRecord | None:
    """One proc event as a ProcRecord, or None for kinds rawtrace does not use (uid, sid, ptrace...)."""
    try:
        if what == PROC_EVENT_FORK:
            ppid, ptgid, cpid, ctgid = FORK_DATA.unpack_from(data)
            return ProcRecord(ts, "fork", ctgid, cpid, cpu, parent_pid=ptgid, parent_tid=ppid)
        if what == PROC_EVENT_EXEC:
            pid, tgid = EXEC_DATA.unpack_from(data)
            return ProcRecord(ts, "exec", tgid, pid, cpu)
        if what in (PROC_EVENT_EXIT, PROC_EVENT_NONZERO_EXIT):
            pid, tgid, code, _signal, ppid, ptgid = EXIT_DATA.unpack_from(data)
            return ProcRecord(ts, "exit", tgid, pid, cpu, parent_pid=ptgid, parent_tid=ppid, exit_code=code)
        if what == PROC_EVENT_COMM:
            pid, tgid, raw = COMM_DATA.unpack_from(data)
            comm = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            return ProcRecord(ts, "comm", tgid, pid, cpu, comm=comm)
    except struct.error:
        return None
    return None


def read_cmdline(host: Host, pid: int) -> bytes | None:
    """/proc/PID/cmdline (NUL-separated argv), or None if the process is gone (or a zombie: empty)."""
    try:
        with open(host.path(f"/proc/{pid}/cmdline"), "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data or None


def read_environ(host: Host, pid: int) -> bytes | None:
    """/proc/PID/environ (NUL-separated), or None if gone or not readable."""
    try:
        with open(host.path(f"/proc/{pid}/environ"), "rb") as f:
            return f.read()
    except OSError:
        return None


def read_comm(host: Host, pid: int) -> str | None:
    try:
        with open(host.path(f"/proc/{pid}/comm"), "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "surrogateescape")
    except OSError:
        return None


def read_exe(host: Host, pid: int) -> str | None:
    try:
        return os.readlink(host.path(f"/proc/{pid}/exe"))
    except OSError:
        return None


class ProcConnectorSource:
    """The kernel's proc connector as a record source: open(), batches(), stop(), close().

    Kernels before the 2023 change that let other users listen (seen working unprivileged on 6.18) need
    CAP_NET_ADMIN; works under every lockdown level (the connector has no lockdown hook).
    `exec_details` reads /proc/PID/cmdline, comm and exe for each exec as soon as it is received; turn
    it off when only process names and parents are needed. `kinds` limits what is yielded."""

    kind = "procconn"

    def __init__(self, host: Host | None = None, *, poll_ms: int = 100, exec_details: bool = True,
                 kinds: set[str] | None = None, ignore_pids: set[int] | None = None,
                 reader: Callable[[Host, int], bytes | None] = read_cmdline, exec_environ: bool = False) -> None:
        self.host = host or Host()
        self.poll_ms = poll_ms
        self.exec_details = exec_details
        self.kinds = kinds
        self.ignore_pids = set(ignore_pids or ())
        self._read_cmdline = reader
        self.exec_environ = exec_environ
        self.sock: socket.socket | None = None
        self._stopped = False
        self.overflows = 0
        self.events = 0
        self.cmdline_missing = 0

    def __enter__(self) -> ProcConnectorSource:  # noqa: PYI034
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Bind to the proc connector's multicast group and ask for events. Raises OSError
        (EPERM without CAP_NET_ADMIN on older kernels, EPROTONOSUPPORT/ENOENT without CONFIG_PROC_EVENTS)."""
        if self.sock is not None:
            return
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR)
        try:
            # A large buffer rides out bursts (a fork bomb sends three messages per process); as root
            # SO_RCVBUFFORCE passes net.core.rmem_max.
            for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                    break
                except OSError:
                    continue
            sock.bind((0, CN_IDX_PROC))
            sock.send(subscribe_message(PROC_CN_MCAST_LISTEN, port=sock.getsockname()[0]))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    def stop_recording(self) -> None:
        self._stopped = True

    def close(self) -> None:
        """Tell the kernel to stop sending and release the socket; safe to call twice."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        try:
            sock.send(subscribe_message(PROC_CN_MCAST_IGNORE, port=sock.getsockname()[0]))
        except OSError:
            pass
        finally:
            sock.close()

    def batches(self) -> Iterator[list]:
        """Time-ordered lists of ProcRecord / ProcOverflow; an empty list on an idle poll interval."""
        if self.sock is None:
            self.open()
        poller = select.poll()
        assert self.sock is not None
        poller.register(self.sock.fileno(), select.POLLIN)
        while not self._stopped and self.sock is not None:
            try:
                ready = poller.poll(self.poll_ms)
            except InterruptedError:
                continue
            yield self.read_available() if ready else []
        if self.sock is not None:
            tail = self.read_available()
            if tail:
                yield tail

    def read_available(self) -> list:
        """Everything queued now, sorted by time stamp (messages of different CPUs can arrive out of order)."""
        out: list = []
        sock = self.sock
        while sock is not None:
            try:
                buf = sock.recv(1 << 16)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overflows += 1
                    out.append(ProcOverflow(time.monotonic_ns()))
                    continue
                raise
            if not buf:
                break
            for what, cpu, ts, data in parse_messages(buf):
                record = decode_event(what, cpu, ts, data)
                if record is None or record.pid in self.ignore_pids:
                    continue
                if self.kinds is not None and record.kind not in self.kinds:
                    continue
                if record.kind == "exec" and self.exec_details:
                    record = self._details(record)
                self.events += 1
                out.append(record)
        out.sort(key=lambda rec: rec.ts)
        return out

    def _details(self, record: ProcRecord) -> ProcRecord:
        cmdline = self._read_cmdline(self.host, record.pid)
        if cmdline is None:
            self.cmdline_missing += 1
        environ = read_environ(self.host, record.pid) if self.exec_environ else None
        return ProcRecord(record.ts, "exec", record.pid, record.tid, record.cpu, comm=read_comm(self.host, record.pid),
                          cmdline=cmdline, exe=read_exe(self.host, record.pid), environ=environ)


class ExecCmdlines:
    """/proc/PID/cmdline of execs, read by a child process as soon as the proc connector reports them.

    The tracefs side reaches an exec event when the decoder gets to it, often after a short-lived program
    has exited; the connector's message comes within microseconds of the exec, and a child of its own
    (no lock shared with the decoder, normal priority) reads the cmdline then. Only texts that
    `wanted(text)` accepts (those an argv capture would have cut) are sent back, through a pipe drained
    by a thread. Still racy: a process may exit or rewrite its cmdline first (`gone` counts those, of
    any length, system-wide). `get(pid, ts)` gives the text read for the first exec of `pid` at or after
    `ts` (CLOCK_MONOTONIC ns, the connector's clock), once, or None. At most `limit` texts are kept, the
    oldest dropped first. The child dies with rawtrace (PR_SET_PDEATHSIG) and at stop(), which first
    unsubscribes the socket both processes share."""

    _FRAME = struct.Struct("<iqI")          # pid, ts, length (NONE: the process had gone)
    _NONE = 0xFFFFFFFF

    def __init__(self, host: Host | None = None, limit: int = 4096,
                 wanted: Callable[[bytes], bool] = lambda text: True,
                 reader: Callable[[Host, int], bytes | None] = read_cmdline) -> None:
        import threading
        from collections import deque
        self.conn = ProcConnectorSource(host, exec_details=False, kinds={"exec"}, ignore_pids={os.getpid()})
        self.host = self.conn.host
        self.limit = limit
        self.wanted = wanted
        self.read = reader
        self.texts: dict[int, list[tuple[int, bytes]]] = {}
        self._order: deque[tuple[int, int]] = deque()       # (pid, ts) of the texts kept, oldest first
        self.count = 0
        self.read_count = 0          # long cmdlines read at the exec
        self.gone = 0                # execs whose process had gone (or was unreadable) when read
        self.child: int | None = None
        self._pipe: int | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen (OSError where the connector is refused), start the child and the draining thread."""
        import threading

        from rawtrace.helperchild import fork_helper
        self.conn.open()
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            pid = fork_helper(lambda: self._child_main(write_fd))
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            self.conn.close()
            raise
        os.close(write_fd)
        self.child, self._pipe = pid, read_fd
        try:
            self._thread = threading.Thread(target=self._drain, name="rawtrace-exec-cmdlines", daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise

    def _child_main(self, write_fd: int) -> None:
        from rawtrace.helperchild import become_helper
        sock = self.conn.sock
        assert sock is not None
        become_helper({sock.fileno(), write_fd})
        ignore = self.conn.ignore_pids
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            try:
                poller.poll()
                buf = sock.recv(1 << 16)
            except (InterruptedError, BlockingIOError):
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    continue              # (overflowed: those execs are read when decoded, if at all)
                raise
            # Each message as it comes: the read races the program's exit.
            for what, cpu, ts, data in parse_messages(buf):
                if what != PROC_EVENT_EXEC:
                    continue
                record = decode_event(what, cpu, ts, data)
                if record is None or record.pid in ignore:
                    continue
                text = self.read(self.host, record.pid)
                if text is not None and not self.wanted(text):
                    continue
                frame = self._FRAME.pack(record.pid, record.ts, self._NONE if text is None else len(text))
                view = memoryview(frame + (text or b""))
                while view:
                    view = view[os.write(write_fd, view):]

    def _drain(self) -> None:
        buf = bytearray()
        size = self._FRAME.size
        while True:
            try:
                chunk = os.read(self._pipe, 1 << 16)
            except InterruptedError:
                continue
            except OSError:
                return
            if not chunk:
                return                  # the child is gone
            buf += chunk
            at = 0
            while len(buf) - at >= size:
                pid, ts, length = self._FRAME.unpack_from(buf, at)
                end = at + size + (0 if length == self._NONE else length)
                if len(buf) < end:
                    break
                self.add(pid, ts, None if length == self._NONE else bytes(buf[at + size:end]))
                at = end
            del buf[:at]

    def add(self, pid: int, ts: int, text: bytes | None) -> None:
        with self._lock:
            if text is None:
                self.gone += 1
                return
            self.read_count += 1
            self.texts.setdefault(pid, []).append((ts, text))
            self._order.append((pid, ts))
            self.count += 1
            while self.count > self.limit and self._order:
                old_pid, old_ts = self._order.popleft()
                kept = self.texts.get(old_pid)
                if not kept:
                    continue                       # (taken by get() already)
                for n, (when, _text) in enumerate(kept):
                    if when == old_ts:
                        del kept[n]
                        self.count -= 1
                        break
                if not kept:
                    del self.texts[old_pid]

    def get(self, pid: int, ts: int) -> bytes | None:
        with self._lock:
            found = self.texts.get(pid)
            if not found:
                return None
            for n, (when, text) in enumerate(found):
                if when >= ts:
                    del found[:n + 1]
                    self.count -= n + 1
                    if not found:
                        del self.texts[pid]
                    return text
            return None

    def stop(self) -> None:
        """Unsubscribe, end the child and the thread, forget the texts; safe to call twice."""
        import signal
        self.conn.close()                          # PROC_CN_MCAST_IGNORE on the socket the child shares
        child, self.child = self.child, None
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(child, 0)
            except ChildProcessError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        with self._lock:
            self.texts.clear()
            self._order.clear()
            self.count = 0
