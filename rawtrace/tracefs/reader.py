"""Per-CPU trace_pipe_raw readers (non-blocking, woken by poll) and the timestamp-ordered merge of their records."""

from __future__ import annotations

import bisect
import errno
import os
import select
import time
from collections.abc import Iterator
from operator import attrgetter
from pathlib import Path
from typing import Any

# Trace clocks that are the same as a clock user space can read, so "now" on the trace clock is known.
CLOCK_IDS = {
    "mono": time.CLOCK_MONOTONIC,
    "mono_raw": getattr(time, "CLOCK_MONOTONIC_RAW", 4),
    "boot": getattr(time, "CLOCK_BOOTTIME", 7),
    "tai": getattr(time, "CLOCK_TAI", 11),
}


class CpuReader:
    """One CPU's trace_pipe_raw, opened O_NONBLOCK; each read() returns one whole sub-buffer."""

    def __init__(self, path: Path, cpu: int, subbuf_size: int) -> None:
        self.cpu = cpu
        self.path = Path(path)
        self.subbuf_size = subbuf_size
        self.fd: int | None = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.pages_read = 0

    def read_pages(self, limit: int = 64) -> list[bytes]:
        """Up to `limit` sub-buffers; fewer (possibly none) once the CPU's buffer is drained."""
        pages = []
        fd = self.fd
        if fd is None:
            return pages
        size = self.subbuf_size
        for _ in range(limit):
            try:
                chunk = os.read(fd, size)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
            if not chunk:
                break
            # A short read happens only if someone read part of this page before us; pad it so the
            # decoder sees a full sub-buffer (the kernel zeroes the tail anyway).
            if len(chunk) < size:
                chunk = chunk + bytes(size - len(chunk))
            pages.append(chunk)
        self.pages_read += len(pages)
        return pages

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class BufferReader:
    """All CPUs of one instance: poll() on every trace_pipe_raw with a bounded tick, then drain the ready ones.

    poll() on trace_pipe_raw wakes when the buffer is `buffer_percent` full; the tick bounds latency
    for slow event rates."""

    def __init__(self, instance_path: Path, cpus: list[int], subbuf_size: int) -> None:
        self.readers: dict[int, CpuReader] = {}
        self.idle = False          # the last take() found nothing more to read on any CPU
        try:
            for cpu in cpus:
                self.readers[cpu] = CpuReader(Path(instance_path) / "per_cpu" / f"cpu{cpu}" / "trace_pipe_raw",
                                              cpu, subbuf_size)
        except OSError:
            self.close()
            raise
        self._poll = select.poll()
        self._by_fd = {}
        for reader in self.readers.values():
            self._poll.register(reader.fd, select.POLLIN)
            self._by_fd[reader.fd] = reader

    def wait(self, timeout_ms: int) -> None:
        """Sleep until some CPU has data or `timeout_ms` passes (signals also end the wait)."""
        try:
            self._poll.poll(timeout_ms)
        except InterruptedError:
            pass

    def drain(self, limit: int = 64) -> Iterator[tuple[int, list[bytes], bool]]:
        """(cpu, pages, drained) for every CPU; `drained` says the CPU returned EAGAIN (nothing left)."""
        for cpu, reader in self.readers.items():
            pages = reader.read_pages(limit)
            yield cpu, pages, len(pages) < limit

    @property
    def cpus(self) -> list[int]:
        return list(self.readers)

    def take(self, now: int | None, limit: int = 64) -> list[tuple[int, list[bytes], bool, int | None]]:
        """(cpu, pages, drained, drained_at) per CPU, read directly: the page source interface the
        spooler (rawtrace.tracefs.spool.Spool) also offers. `drained_at` is `now`, taken before the reads."""
        out = []
        idle = True
        for cpu, reader in self.readers.items():
            pages = reader.read_pages(limit)
            out.append((cpu, pages, len(pages) < limit, now))
            idle = idle and len(pages) < limit
        self.idle = idle
        return out

    def finish(self, timeout: float = 5.0) -> bool:
        """Nothing to stop: the reads after tracing_on=0 take what is left."""
        return True

    def backlog(self) -> int:
        return 0

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()


class Merger:
    """Merge per-CPU record streams (each already in timestamp order) into one ordered stream.

    A record is released only when no CPU can still deliver an older one: each CPU's future records
    are no older than the newest one it delivered, nor than the trace-clock time at which it was
    last drained (minus a small slack for writers that had reserved but not yet committed).
    Releasing sorts the concatenated per-CPU runs; list.sort finds the runs, so this is a C-speed merge."""

    def __init__(self, cpus: list[int], slack: Any = 0, key=attrgetter("ts")) -> None:
        self._pending: dict[int, list] = {cpu: [] for cpu in cpus}
        self._bound: dict[int, Any] = dict.fromkeys(cpus)
        self.slack = slack
        self._key = key

    def add(self, cpu: int, records: list) -> None:
        if not records:
            return
        self._pending.setdefault(cpu, []).extend(records)
        last = self._key(records[-1])
        bound = self._bound.get(cpu)
        if bound is None or last > bound:
            self._bound[cpu] = last

    def mark_drained(self, cpu: int, now: Any) -> None:
        """The CPU had nothing more to read at trace-clock time `now`."""
        if now is None:
            return
        now = now - self.slack
        bound = self._bound.get(cpu)
        if bound is None or now > bound:
            self._bound[cpu] = now

    def newest(self) -> Any:
        """The newest record time stamp seen on any CPU (None before the first)."""
        bounds = [b for b in self._bound.values() if b is not None]
        return max(bounds) if bounds else None

    def watermark(self) -> Any:
        bounds = self._bound.values()
        if any(b is None for b in bounds):
            return None
        return min(bounds)

    def ready(self) -> list:
        """Take every record that can no longer be preceded by one not yet seen, in order."""
        mark = self.watermark()
        if mark is None:
            return []
        key = self._key
        chunks = []
        for cpu, records in self._pending.items():
            if not records:
                continue
            if key(records[-1]) <= mark:
                chunks.append(records)
                self._pending[cpu] = []
            else:
                cut = bisect.bisect_right(records, mark, key=key)
                if cut:
                    chunks.append(records[:cut])
                    del records[:cut]
        return self._merge(chunks)

    def flush(self) -> list:
        chunks = [records for records in self._pending.values() if records]
        self._pending = {cpu: [] for cpu in self._pending}
        return self._merge(chunks)

    def _merge(self, chunks: list[list]) -> list:
        if not chunks:
            return []
        if len(chunks) == 1:
            return chunks[0]
        out = [record for chunk in chunks for record in chunk]
        out.sort(key=self._key)      # stable: equal time stamps keep CPU order, then arrival order
        return out

    def __len__(self) -> int:
        return sum(len(records) for records in self._pending.values())
