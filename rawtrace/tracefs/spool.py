"""Page spooler: a child process copies whole sub-buffers from trace_pipe_raw into per-CPU spool files.

Decoding in Python is slower than a syscall flood produces events. Copying pages is not: the spooler
child only moves sub-buffers (one read and one write per page, no per-event work), at normal priority,
so the kernel ring buffer does not overflow while the parent decodes the spool at its own pace (even
at nice 19). Progress crosses the process boundary through a small shared mmap (`SpoolMarks`); the
spool files are unlinked as soon as both processes hold them open, and consumed ranges are punched
out, so disk use is bounded by the decoder's lag and nothing stays on disk after any kind of exit.

Parent side: `Spool(buffers, clock_id, limit_bytes)`; `start()` forks the child; `take()` returns the
pages spooled since the last call (and, once the child has exited, reads the CPUs directly);
`finish()` asks for a final drain; `close()` ends the child and frees everything.
"""

from __future__ import annotations

import errno
import mmap
import os
import select
import shutil
import signal
import struct
import tempfile
import time
from pathlib import Path

from rawtrace.tracefs.reader import BufferReader

SPOOL_PREFIX = "rawtrace-spool-"
# Consumed spool data is punched out once this much of it has built up per CPU, or half the spool's limit
# if that is less (a punch costs about as much as reading a few sub-buffers; the reader takes a few per round).
PUNCH_BYTES = 256 * 1024
DEFAULT_LIMIT_MB = 1024

# Shared-memory layout: a header, then one record per CPU. Every value is a native u64/i64 word.
_WORD = struct.Struct("=q")
_HEADER_WORDS = 4          # finished, pages copied, pause rounds, longest gap between busy rounds (us)
_CPU_WORDS = 8             # seq, committed, drained_ts, drained, consumed_seq, consumed, reserved x2
_NO_TIME = -1


class SpoolMarks:
    """Progress marks in an anonymous shared mmap (MAP_SHARED, so a forked child shares it).

    Per CPU the child publishes (committed bytes, drained trace-clock time, drained flag) and the parent
    publishes the bytes it has consumed. Each side writes its record under a sequence counter that is
    odd while the record is being changed (a seqlock): the reader retries until it sees the same even
    count before and after, so it never acts on a torn record."""

    def __init__(self, cpus: list[int], memory: mmap.mmap | None = None) -> None:
        self.cpus = list(cpus)
        self._slot = {cpu: _HEADER_WORDS + i * _CPU_WORDS for i, cpu in enumerate(self.cpus)}
        size = 8 * (_HEADER_WORDS + _CPU_WORDS * len(self.cpus))
        self.memory = memory if memory is not None else mmap.mmap(-1, max(size, mmap.PAGESIZE))

    def _get(self, word: int) -> int:
        return _WORD.unpack_from(self.memory, 8 * word)[0]

    def _put(self, word: int, value: int) -> None:
        _WORD.pack_into(self.memory, 8 * word, value)

    def _write_record(self, seq_word: int, values: tuple[int, ...]) -> None:
        seq = self._get(seq_word)
        self._put(seq_word, seq + 1)              # odd: a write is in progress
        for n, value in enumerate(values, 1):
            self._put(seq_word + n, value)
        self._put(seq_word, seq + 2)

    def _read_record(self, seq_word: int, count: int) -> tuple[int, ...]:
        deadline = None
        for attempt in range(1 << 62):
            before = self._get(seq_word)
            if not before & 1:
                values = tuple(self._get(seq_word + n) for n in range(1, count + 1))
                if self._get(seq_word) == before:
                    return values
            if attempt >= 1000:
                # An update takes microseconds; one still open after a second is a writer that died.
                now = time.monotonic()
                deadline = deadline or now + 1.0
                if now > deadline:
                    break
                time.sleep(0.0002)
        # The writer died in the middle of an update: each word is still whole (aligned 8-byte copies),
        # and every published offset was written to the spool before it was published.
        return tuple(self._get(seq_word + n) for n in range(1, count + 1))

    # -- child side ------------------------------------------------------------------------------
    def publish(self, cpu: int, committed: int, drained_ts: int, drained: bool) -> None:
        """Bytes of `cpu` now safely in its spool file; if `drained`, the CPU returned EAGAIN for a read
        begun at trace-clock time `drained_ts` (-1: the clock cannot be read from user space)."""
        self._write_record(self._slot[cpu], (committed, drained_ts, int(drained)))

    def consumed(self, cpu: int) -> int:
        return self._read_record(self._slot[cpu] + 4, 1)[0]

    def set_finished(self) -> None:
        self._put(0, 1)

    def add_pages(self, count: int) -> None:
        self._put(1, self._get(1) + count)

    def add_pause(self) -> None:
        self._put(2, self._get(2) + 1)

    def note_gap(self, microseconds: int) -> None:
        if microseconds > self._get(3):
            self._put(3, microseconds)

    # -- parent side -----------------------------------------------------------------------------
    def progress(self, cpu: int) -> tuple[int, int, bool]:
        """(committed bytes, drained trace-clock time, drained) as last published for `cpu`."""
        committed, drained_ts, drained = self._read_record(self._slot[cpu], 3)
        return committed, drained_ts, bool(drained)

    def set_consumed(self, cpu: int, offset: int) -> None:
        self._write_record(self._slot[cpu] + 4, (offset,))

    @property
    def finished(self) -> bool:
        return self._get(0) == 1

    @property
    def pages(self) -> int:
        return self._get(1)

    @property
    def pauses(self) -> int:
        return self._get(2)

    @property
    def max_gap_us(self) -> int:
        """The longest time between two rounds of the child while pages were arriving: how close the
        ring buffer came to overflowing (the default 1.4 MiB per CPU fills in ~10 ms under a flood)."""
        return self._get(3)


def _now(clock_id: int | None) -> int:
    return time.clock_gettime_ns(clock_id) if clock_id is not None else _NO_TIME


F_SETPIPE_SZ = 1031
_PIPE_BYTES = 1 << 20


class _PageMover:
    """Moves one CPU's sub-buffers into its spool file.

    Full pages go by splice() through a pipe (the kernel hands over pages the writer has left, 16+ per
    call, with no copy to user space); the page the writer is still filling is taken by read() only at a
    flush (when splice found no full page), because read() gives out partial pages and reading eagerly
    during a flood would cut it into thousands of nearly empty sub-buffers. Without splice (a source that
    refuses it), every page is read()."""

    def __init__(self, source: int, spool: int, subbuf_size: int, use_splice: bool) -> None:
        self.source = source
        self.spool = spool
        self.size = subbuf_size
        self.pipe: tuple[int, int] | None = None
        self.pipe_bytes = 0
        if use_splice and hasattr(os, "splice"):
            self.pipe = os.pipe2(os.O_CLOEXEC)
            try:
                import fcntl
                self.pipe_bytes = fcntl.fcntl(self.pipe[1], F_SETPIPE_SZ, _PIPE_BYTES)
            except OSError:
                self.pipe_bytes = 16 * 4096
            # Whole sub-buffers only: splice from trace_pipe_raw wants a multiple of the sub-buffer size.
            self.pipe_bytes -= self.pipe_bytes % subbuf_size
            if self.pipe_bytes <= 0:
                self._drop_pipe()

    def _drop_pipe(self) -> None:
        if self.pipe is not None:
            for fd in self.pipe:
                os.close(fd)
            self.pipe = None

    def full_pages(self, limit: int) -> tuple[int, bool]:
        """Move up to `limit` pages; (pages moved, no more to move now). Splices full pages only."""
        if self.pipe is None:
            return _copy_pages(self.source, self.spool, self.size, limit)
        moved = 0
        size = self.size
        pipe_in, pipe_out = self.pipe[1], self.pipe[0]
        while moved < limit:
            want = min(self.pipe_bytes, (limit - moved) * size)
            try:
                got = os.splice(self.source, pipe_in, want)
            except BlockingIOError:
                return moved, True
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) and moved == 0:
                    self._drop_pipe()          # a source that cannot splice: read() from now on
                    return _copy_pages(self.source, self.spool, self.size, limit)
                raise
            if got == 0:
                return moved, True
            if got % size:
                # Not from a ring buffer (a plain file or fifo in tests): pad the last page, as read() does.
                _drain_pipe(pipe_out, self.spool, got)
                _write_all(self.spool, bytes(size - got % size))
                moved += got // size + 1
                continue
            _drain_pipe(pipe_out, self.spool, got)
            moved += got // size
        return moved, False

    def rest(self, limit: int) -> tuple[int, bool]:
        """read() what splice leaves (the page being written): (pages moved, drained)."""
        return _copy_pages(self.source, self.spool, self.size, limit)

    def close(self) -> None:
        self._drop_pipe()


def _drain_pipe(pipe_out: int, spool: int, count: int) -> None:
    while count:
        count -= os.splice(pipe_out, spool, count)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def spool_loop(sources: dict[int, int], spools: dict[int, int], marks: SpoolMarks, control_fd: int,
               notify_fd: int | None, *, clock_id: int | None, subbuf_size: int, limit_per_cpu: int,
               idle_ms: int = 20, busy_ms: int = 2, flush_ms: int = 50, use_splice: bool = True,
               batch: int = 256, deadline: float | None = None, stop_fd: int | None = None) -> None:
    """The child's work: copy whole sub-buffers from each CPU's fd (`sources`, O_NONBLOCK) to the end of
    its spool fd, publish progress, and return after the final drain that a byte on `control_fd` asks for
    (or its end of file). A CPU whose unconsumed spool reaches `limit_per_cpu` bytes is not read until the
    parent catches up: the kernel then overwrites and reports the loss, as it would with no spooler.
    The partial page a writer is filling is taken at most every `flush_ms`, and at the end. At most
    `batch` pages are moved per CPU per round, so one busy CPU cannot starve the others.
    At `deadline` (time.monotonic()) the child writes "0" to `stop_fd` (the instance's tracing_on): it runs
    at normal priority, so a duration ends recording on time however far the decoder lags."""
    movers = {cpu: _PageMover(fd, spools[cpu], subbuf_size, use_splice) for cpu, fd in sources.items()}
    committed = dict.fromkeys(sources, 0)
    last_drained = dict.fromkeys(sources, _NO_TIME)
    flushed = dict.fromkeys(sources, 0.0)
    # poll() on trace_pipe_raw wakes when the CPU's buffer is buffer_percent full (50 by default), well
    # before it overflows; the timeout bounds the latency of slow events. While a CPU is held back by
    # the limit its fd stays ready, so then only the control fd is watched.
    waiter = select.poll()
    waiter.register(control_fd, select.POLLIN)
    for fd in sources.values():
        waiter.register(fd, select.POLLIN)
    control_only = select.poll()
    control_only.register(control_fd, select.POLLIN)
    stopping = False
    paused = False
    timeout = busy_ms
    clock = time.monotonic()
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                try:
                    os.write(stop_fd, b"0")
                except OSError:
                    pass
                deadline = None
            else:
                timeout = min(timeout, max(1, int(left * 1000) + 1))
        try:
            for fd, _ in (control_only if paused else waiter).poll(timeout):
                if fd == control_fd:
                    stopping = True
        except InterruptedError:
            pass
        moved = 0
        paused = False
        previous, clock = clock, time.monotonic()
        for cpu, mover in movers.items():
            room = batch
            if not stopping:
                room = min(batch, (limit_per_cpu - (committed[cpu] - marks.consumed(cpu))) // subbuf_size)
                if room <= 0:
                    marks.add_pause()
                    paused = True
                    continue
            began = _now(clock_id)
            copied, empty = mover.full_pages(room)
            drained = empty and mover.pipe is None       # read() mode: EAGAIN means nothing at all is left
            if empty and mover.pipe is not None and copied < room and \
                    (stopping or clock - flushed[cpu] >= flush_ms / 1000):
                # No full page left: the partial one is all there is. Time first, so that every record
                # committed before `began` is in what the reads below take.
                began = _now(clock_id)
                more, drained = mover.rest(room - copied)
                copied += more
                flushed[cpu] = clock
            if copied:
                committed[cpu] += copied * subbuf_size
                moved += copied
            if drained:
                last_drained[cpu] = began
            if copied or drained:
                marks.publish(cpu, committed[cpu], last_drained[cpu], drained)
        if moved:
            if timeout == busy_ms:
                marks.note_gap(int((clock - previous) * 1e6))
            marks.add_pages(moved)
            _notify(notify_fd, b".")
        if stopping and moved:
            continue            # the final drain goes on until every CPU is empty
        if stopping:
            for mover in movers.values():
                mover.close()
            marks.set_finished()
            _notify(notify_fd, b"!")
            return
        # Busy (something moved): look again soon, before the ring buffer fills; idle: back off.
        timeout = busy_ms if moved or paused else min(idle_ms, timeout * 2)


def _notify(fd: int | None, byte: bytes) -> None:
    if fd is None:
        return
    try:
        os.write(fd, byte)
    except OSError:            # the pipe is full: the parent has plenty of wake-ups queued
        pass


def _copy_pages(fd: int, out: int, size: int, limit: int) -> tuple[int, bool]:
    """read() up to `limit` sub-buffers from `fd` to `out`; (pages moved, drained: EAGAIN or EOF seen)."""
    copied = 0
    read = os.read
    while copied < limit:
        try:
            page = read(fd, size)
        except BlockingIOError:
            return copied, True
        except InterruptedError:
            continue
        if not page:
            return copied, True
        if len(page) < size:
            # Someone read part of this page before us: keep every spool record one whole sub-buffer.
            page += bytes(size - len(page))
        _write_all(out, page)
        copied += 1
    return copied, False


def spool_dir_prefix(pid: int | None = None, proc: Path = Path("/proc")) -> str:
    """`rawtrace-spool-<owner tag>-`: the owner is encoded so `rawtrace reset` can tell a dead run's dir."""
    from rawtrace.tracefs.instance import owner_tag
    return f"{SPOOL_PREFIX}{owner_tag(pid, proc)}-"


class Spool:
    """The parent's side of the spooler for the CPUs of `buffers` (a BufferReader it keeps, for the
    fallback and for the reads after the child has gone)."""

    def __init__(self, buffers: BufferReader, *, clock_id: int | None, limit_bytes: int,
                 directory: str | None = None, idle_ms: int = 20, stop_after: float | None = None,
                 tracing_on: Path | None = None) -> None:
        self.buffers = buffers
        self.cpus = list(buffers.readers)
        self.subbuf_size = next(iter(buffers.readers.values())).subbuf_size if buffers.readers else 4096
        self.clock_id = clock_id
        per_cpu = limit_bytes // max(1, len(self.cpus))
        # At least a few batches per CPU, else the child could never copy anything.
        self.limit_per_cpu = max(per_cpu - per_cpu % self.subbuf_size, 4 * self.subbuf_size)
        self.directory = directory
        self.idle_ms = idle_ms
        self.marks = SpoolMarks(self.cpus)
        self.path: Path | None = None
        self.child: int | None = None
        self.peak_bytes = 0
        self.idle = False
        self.exit_status: int | None = None
        self._files: dict[int, int] = {}
        self._consumed = dict.fromkeys(self.cpus, 0)
        self._punched = dict.fromkeys(self.cpus, 0)     # spool bytes before this are punched out
        self._control: tuple[int, int] | None = None
        self._notify: tuple[int, int] | None = None
        self._poll = None
        self._stop_sent = False
        self.stop_after = stop_after
        self.tracing_on = tracing_on
        self._stop_fd: int | None = None
        self._deadline: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the spool files (unlinked at once: open fds keep them), then fork the spooler child."""
        try:
            self.path = Path(tempfile.mkdtemp(prefix=spool_dir_prefix(), dir=self.directory))
            for cpu in self.cpus:
                name = self.path / f"cpu{cpu}"
                self._files[cpu] = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            self._remove_dir()
            self._control = os.pipe2(os.O_CLOEXEC)
            self._notify = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            self._poll = select.poll()
            self._poll.register(self._notify[0], select.POLLIN)
            if self.stop_after is not None and self.tracing_on is not None:
                self._stop_fd = os.open(self.tracing_on, os.O_WRONLY | os.O_CLOEXEC)
                self._deadline = time.monotonic() + self.stop_after
            self.child = os.fork()
        except BaseException:
            self._close_stop_fd()
            self.close()
            raise
        if self.child == 0:
            self._child_main()              # never returns
        # Only the child writes tracing_on at the deadline; an open file would keep the instance busy.
        self._close_stop_fd()

    def _close_stop_fd(self) -> None:
        if self._stop_fd is not None:
            try:
                os.close(self._stop_fd)
            except OSError:
                pass
            self._stop_fd = None

    def _child_main(self) -> None:
        status = 1
        try:
            parent = os.getppid()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)      # the parent orchestrates the stop
            for sig in (signal.SIGALRM, signal.SIGPIPE, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.alarm(0)
            from rawtrace.libc import PR_SET_PDEATHSIG, prctl
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:              # the parent died before prctl took effect
                os._exit(1)
            sources = {cpu: reader.fd for cpu, reader in self.buffers.readers.items()}
            keep = set(sources.values()) | set(self._files.values()) | {self._control[0], self._notify[1]}
            if self._stop_fd is not None:
                keep.add(self._stop_fd)
            _close_all_but(keep)
            spool_loop(sources, self._files, self.marks, self._control[0], self._notify[1],
                       clock_id=self.clock_id, subbuf_size=self.subbuf_size, limit_per_cpu=self.limit_per_cpu,
                       idle_ms=self.idle_ms, deadline=self._deadline, stop_fd=self._stop_fd)
            status = 0
        except BaseException:           # noqa: BLE001 - whatever happens, never run the parent's code
            status = 1
        finally:
            os._exit(status)

    def finish(self, timeout: float = 5.0) -> bool:
        """Ask the child for a final drain of every CPU (after tracing_on=0) and wait for it to exit.
        False if it had to be killed (the parent then reads the CPUs directly)."""
        if self.child is None:
            return True
        self._send_stop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._reap(block=False):
                return self.exit_status == 0
            time.sleep(0.005)
        self._kill()
        return False

    def close(self) -> None:
        """End the child (if still there) and free the spool. Safe to call more than once."""
        if self.child:
            self._send_stop()
            if not self._reap(block=False):
                self._kill()
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
        for pair in (self._control, self._notify):
            if pair is not None:
                for fd in pair:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        self._control = self._notify = None
        self._remove_dir()

    def _send_stop(self) -> None:
        if not self._stop_sent and self._control is not None:
            self._stop_sent = True
            try:
                os.write(self._control[1], b"x")
            except OSError:
                pass

    def _reap(self, block: bool) -> bool:
        if not self.child:
            return True
        try:
            pid, status = os.waitpid(self.child, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = self.child, 0
        if pid == 0:
            return False
        self.exit_status = os.waitstatus_to_exitcode(status)
        self.child = None
        return True

    def _kill(self) -> None:
        if self.child:
            try:
                os.kill(self.child, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(block=True)

    def _remove_dir(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------------------
    def wait(self, timeout_ms: int) -> None:
        """Sleep until the child reports new pages or `timeout_ms` passes."""
        if self.child is None:
            self.buffers.wait(timeout_ms)
            return
        try:
            if self._poll.poll(timeout_ms):
                try:
                    os.read(self._notify[0], 4096)
                except BlockingIOError:
                    pass
        except InterruptedError:
            pass

    def backlog(self) -> int:
        """Spooled bytes the parent has not read yet."""
        return sum(self.marks.progress(cpu)[0] - self._consumed[cpu] for cpu in self.cpus)

    def take(self, now: int | None, limit: int = 64) -> list[tuple[int, list, bool, int | None]]:
        """(cpu, pages, drained, drained_at) per CPU: up to `limit` spooled sub-buffers, freed from the
        spool once read. `drained` says nothing older than `drained_at` (trace clock; None if unknown)
        can still come from that CPU. After the child has exited, what is left is read directly."""
        alive = self.child is not None and not self._reap(block=False)
        out = []
        idle = True
        backlog = 0
        size = self.subbuf_size
        for cpu in self.cpus:
            committed, drained_ts, drained = self.marks.progress(cpu)
            start = self._consumed[cpu]
            backlog += committed - start
            length = min(committed - start, limit * size)
            pages: list = []
            if length > 0:
                data = os.pread(self._files[cpu], length, start)
                view = memoryview(data)
                pages = [view[i:i + size] for i in range(0, len(data), size)]
                self._consumed[cpu] = start + len(data)
                self.marks.set_consumed(cpu, start + len(data))
                punched = self._punched[cpu]
                if start + len(data) - punched >= min(PUNCH_BYTES, self.limit_per_cpu // 2):
                    _punch(self._files[cpu], punched, start + len(data) - punched)
                    self._punched[cpu] = start + len(data)
            caught_up = self._consumed[cpu] == committed
            idle = idle and caught_up
            if alive or not caught_up:
                out.append((cpu, pages, caught_up and drained,
                            drained_ts if drained_ts != _NO_TIME else None))
                continue
            # The child is gone and its spool is read: the ring buffer itself is next, read directly.
            want = max(1, limit - len(pages))
            direct = self.buffers.readers[cpu].read_pages(want)
            pages.extend(direct)
            out.append((cpu, pages, len(direct) < want, now))
            idle = idle and len(direct) < want
        self.peak_bytes = max(self.peak_bytes, backlog)
        # Everything spooled so far is read: wait for the child's next pages (a CPU counts as drained
        # only at the child's partial-page flushes, so `drained` alone would keep the parent spinning).
        self.idle = idle
        return out


def _punch(fd: int, offset: int, length: int) -> None:
    from rawtrace.libc import punch_hole
    try:
        punch_hole(fd, offset, length)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # A filesystem without hole punching: the space is freed when the file is closed.


def _close_all_but(keep: set[int]) -> None:
    """Close every fd of this (child) process except `keep`; stdio goes to /dev/null so the child holds
    no pipe of the parent's open (a reader of rawtrace's output must see end of file when it exits)."""
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        if std not in keep:
            os.dup2(null, std)
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def find_stale_spools(directory: str | None = None, proc: Path = Path("/proc")) -> list[tuple[Path, int, bool]]:
    """(path, owner pid, whether to keep it: owner alive or in another pid namespace) for every
    rawtrace-spool-<owner tag>-* directory in the temp dir."""
    from rawtrace.tracefs.instance import owner_alive, parse_spool_owner
    base = Path(directory or tempfile.gettempdir())
    out = []
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return out
    for name in names:
        if not name.startswith(SPOOL_PREFIX):
            continue
        owner = parse_spool_owner(name[len(SPOOL_PREFIX):])
        if owner is None:
            continue
        out.append((base / name, owner.pid, owner_alive(owner, proc)))
    return out
