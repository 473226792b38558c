"""The page spooler without tracefs: fake per-CPU sources (regular files and fifos), seqlock marks, the
lag limit, punched-out consumed ranges, fallback reads after the child is gone, and cleanup."""

from __future__ import annotations

import os
import signal
import struct
import tempfile
import threading
import time
from pathlib import Path

import pytest

from rawtrace.tracefs import spool as spool_mod
from rawtrace.tracefs.reader import BufferReader
from rawtrace.tracefs.spool import PUNCH_BYTES, Spool, SpoolMarks, find_stale_spools, spool_loop

SIZE = 4096


def page(cpu: int, n: int) -> bytes:
    """A recognisable sub-buffer: its CPU and number, then filler."""
    return struct.pack("=QQ", cpu, n) + bytes([n % 251]) * (SIZE - 16)


def pages_of(data: bytes) -> list[tuple[int, int]]:
    return [struct.unpack_from("=QQ", data, i) for i in range(0, len(data), SIZE)]


def run_loop_in_thread(sources, spools, marks, **kwargs):
    control_r, control_w = os.pipe()
    thread = threading.Thread(target=spool_loop, args=(sources, spools, marks, control_r, None),
                              kwargs={"clock_id": time.CLOCK_MONOTONIC, "subbuf_size": SIZE,
                                      "limit_per_cpu": 1 << 30, "busy_ms": 1, "idle_ms": 5, **kwargs})
    thread.start()

    def stop():
        os.write(control_w, b"x")
        thread.join(10)
        assert not thread.is_alive()
        os.close(control_r)
        os.close(control_w)
    return stop


# -- marks -------------------------------------------------------------------------------------------

def test_marks_round_trip_and_consumed():
    marks = SpoolMarks([0, 3])
    assert marks.progress(3) == (0, 0, False)
    marks.publish(3, 8192, 12345, True)
    marks.publish(0, 4096, -1, False)
    assert marks.progress(3) == (8192, 12345, True)
    assert marks.progress(0) == (4096, -1, False)
    marks.set_consumed(3, 4096)
    assert marks.consumed(3) == 4096 and marks.consumed(0) == 0
    assert not marks.finished
    marks.set_finished()
    assert marks.finished


def test_marks_reader_waits_out_an_odd_sequence():
    marks = SpoolMarks([0])
    marks.publish(0, 4096, 1, True)
    slot = marks._slot[0]
    seq = marks._get(slot)
    marks._put(slot, seq + 1)          # a writer is half way through an update
    marks._put(slot + 1, 999)          # ... and has written one word only
    got = []
    reader = threading.Thread(target=lambda: got.append(marks.progress(0)))
    reader.start()
    time.sleep(0.05)
    assert reader.is_alive() or got == []    # it must not return the torn record
    marks._put(slot + 1, 8192)
    marks._put(slot + 2, 77)
    marks._put(slot, seq + 2)
    reader.join(5)
    assert got == [(8192, 77, True)]


def test_marks_shared_with_a_forked_writer_never_torn():
    marks = SpoolMarks([0])
    pid = os.fork()
    if pid == 0:
        try:
            for n in range(1, 20001):
                marks.publish(0, n * SIZE, n * 3, bool(n & 1))
        finally:
            os._exit(0)
    seen = 0
    while True:
        committed, drained_ts, drained = marks.progress(0)
        n = committed // SIZE
        assert drained_ts == n * 3 and drained == bool(n & 1), (committed, drained_ts, drained)
        seen += 1
        if n == 20000:
            break
    os.waitpid(pid, 0)
    assert seen > 0


# -- the child's loop -------------------------------------------------------------------------------

@pytest.mark.parametrize("use_splice", [True, False])
def test_loop_copies_regular_file_sources_whole_and_in_order(tmp_path, use_splice):
    sources, spools = {}, {}
    for cpu in (0, 1):
        src = tmp_path / f"src{cpu}"
        src.write_bytes(b"".join(page(cpu, n) for n in range(37 + cpu)))
        sources[cpu] = os.open(src, os.O_RDONLY | os.O_NONBLOCK)
        spools[cpu] = os.open(tmp_path / f"spool{cpu}", os.O_RDWR | os.O_CREAT)
    marks = SpoolMarks([0, 1])
    control_r, control_w = os.pipe()
    os.write(control_w, b"x")             # stop at once: only the final drain runs
    spool_loop(sources, spools, marks, control_r, None, clock_id=time.CLOCK_MONOTONIC, subbuf_size=SIZE,
               limit_per_cpu=SIZE * 4, use_splice=use_splice)
    for cpu in (0, 1):
        data = (tmp_path / f"spool{cpu}").read_bytes()
        assert pages_of(data) == [(cpu, n) for n in range(37 + cpu)]
        committed, drained_ts, drained = marks.progress(cpu)
        assert committed == len(data) and drained and drained_ts > 0
    assert marks.finished and marks.pages == 37 + 38
    for fd in [*sources.values(), *spools.values(), control_r, control_w]:
        os.close(fd)


@pytest.mark.parametrize("use_splice", [True, False])
def test_loop_follows_a_live_fifo_writer(tmp_path, use_splice):
    fifo = tmp_path / "cpu0"
    os.mkfifo(fifo)
    source = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY)
    out = os.open(tmp_path / "spool0", os.O_RDWR | os.O_CREAT)
    marks = SpoolMarks([0])
    stop = run_loop_in_thread({0: source}, {0: out}, marks, use_splice=use_splice)
    try:
        for n in range(300):
            os.write(writer, page(0, n))
            if n % 50 == 0:
                time.sleep(0.01)
        deadline = time.monotonic() + 10
        while marks.progress(0)[0] < 300 * SIZE and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop()
    assert pages_of((tmp_path / "spool0").read_bytes()) == [(0, n) for n in range(300)]
    for fd in (source, writer, out):
        os.close(fd)


def test_loop_holds_a_cpu_at_the_limit_until_the_parent_consumes(tmp_path):
    src = tmp_path / "src0"
    src.write_bytes(b"".join(page(0, n) for n in range(10)))
    source = os.open(src, os.O_RDONLY | os.O_NONBLOCK)
    out = os.open(tmp_path / "spool0", os.O_RDWR | os.O_CREAT)
    marks = SpoolMarks([0])
    stop = run_loop_in_thread({0: source}, {0: out}, marks, limit_per_cpu=4 * SIZE)
    try:
        time.sleep(0.2)
        assert marks.progress(0)[0] == 4 * SIZE        # held: 4 pages unconsumed is the limit
        assert marks.pauses > 0
        marks.set_consumed(0, 3 * SIZE)
        deadline = time.monotonic() + 5
        while marks.progress(0)[0] < 7 * SIZE and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert marks.progress(0)[0] == 7 * SIZE        # three more, no further
    finally:
        stop()                                          # the final drain ignores the limit
    assert marks.progress(0)[0] == 10 * SIZE
    assert pages_of((tmp_path / "spool0").read_bytes()) == [(0, n) for n in range(10)]
    os.close(source)
    os.close(out)


# -- the parent's side, with a forked child ----------------------------------------------------------

def fake_instance(tmp_path: Path, cpus=(0, 1)) -> tuple[Path, dict[int, int]]:
    """per_cpu/cpuN/trace_pipe_raw as fifos; returns the instance dir and a writer fd per CPU."""
    inst = tmp_path / "inst"
    writers = {}
    for cpu in cpus:
        d = inst / "per_cpu" / f"cpu{cpu}"
        d.mkdir(parents=True)
        os.mkfifo(d / "trace_pipe_raw")
    buffers = BufferReader(inst, list(cpus), SIZE)
    for cpu in cpus:
        writers[cpu] = os.open(inst / "per_cpu" / f"cpu{cpu}" / "trace_pipe_raw", os.O_WRONLY)
    return buffers, writers


def collect(spool: Spool, want: dict[int, int], timeout: float = 10) -> dict[int, list]:
    got: dict[int, list] = {cpu: [] for cpu in want}
    deadline = time.monotonic() + timeout
    while any(len(got[c]) < want[c] for c in want) and time.monotonic() < deadline:
        for cpu, pages, _drained, _at in spool.take(time.clock_gettime_ns(time.CLOCK_MONOTONIC)):
            got[cpu] += [struct.unpack_from("=QQ", bytes(p[:16])) for p in pages]
        spool.wait(20)
    return got


def test_spool_child_end_to_end_punches_consumed_pages(tmp_path):
    buffers, writers = fake_instance(tmp_path)
    spool = Spool(buffers, clock_id=time.CLOCK_MONOTONIC, limit_bytes=64 << 20, directory=str(tmp_path))
    try:
        spool.start()
        assert spool.child and Path(f"/proc/{spool.child}").exists()
        # The spool files are unlinked at once: nothing named is left to clean up.
        assert not list(tmp_path.glob("rawtrace-spool-*"))
        for n in range(200):
            for cpu, fd in writers.items():
                os.write(fd, page(cpu, n))
        got = collect(spool, {0: 200, 1: 200})
        assert got == {cpu: [(cpu, n) for n in range(200)] for cpu in (0, 1)}
        for cpu, fd in spool._files.items():
            size = os.fstat(fd).st_size
            assert size == 200 * SIZE
            # Consumed ranges are holes now, but for the last less than PUNCH_BYTES.
            assert os.fstat(fd).st_blocks * 512 < PUNCH_BYTES < size
        assert spool.backlog() == 0 and spool.peak_bytes >= SIZE
        assert spool.finish()
        assert spool.child is None and spool.exit_status == 0 and spool.marks.finished
        # With the child gone, what comes later is read directly.
        os.write(writers[1], page(1, 999))
        taken = {cpu: pages for cpu, pages, _d, _a in spool.take(None)}
        assert [struct.unpack_from("=QQ", bytes(p[:16])) for p in taken[1]] == [(1, 999)]
    finally:
        spool.close()
        buffers.close()
        for fd in writers.values():
            os.close(fd)
    assert spool.child is None and not spool._files


def test_spool_child_killed_parent_reads_the_rest_directly(tmp_path):
    buffers, writers = fake_instance(tmp_path, cpus=(0,))
    spool = Spool(buffers, clock_id=time.CLOCK_MONOTONIC, limit_bytes=64 << 20, directory=str(tmp_path))
    try:
        spool.start()
        for n in range(5):
            os.write(writers[0], page(0, n))
        assert collect(spool, {0: 5}) == {0: [(0, n) for n in range(5)]}
        os.kill(spool.child, signal.SIGKILL)
        time.sleep(0.1)
        for n in range(5, 9):
            os.write(writers[0], page(0, n))
        assert collect(spool, {0: 4}) == {0: [(0, n) for n in range(5, 9)]}
        assert spool.child is None and spool.exit_status == -signal.SIGKILL
    finally:
        spool.close()
        buffers.close()
        os.close(writers[0])


def test_spool_dir_removed_when_start_fails(tmp_path, monkeypatch):
    buffers, writers = fake_instance(tmp_path, cpus=(0,))

    def no_fork():
        raise OSError(11, "fork refused")
    monkeypatch.setattr(os, "fork", no_fork)
    spool = Spool(buffers, clock_id=None, limit_bytes=1 << 20, directory=str(tmp_path))
    with pytest.raises(OSError):
        spool.start()
    assert not list(tmp_path.glob("rawtrace-spool-*"))
    assert not spool._files and spool._control is None
    buffers.close()
    os.close(writers[0])


def test_spool_child_dies_with_its_parent(tmp_path):
    """A parent killed with SIGKILL takes the spooler with it (PR_SET_PDEATHSIG)."""
    buffers, writers = fake_instance(tmp_path, cpus=(0,))
    report_r, report_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            spool = Spool(buffers, clock_id=None, limit_bytes=1 << 20, directory=str(tmp_path))
            spool.start()
            os.write(report_w, str(spool.child).encode())
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(report_w)
    child = int(os.read(report_r, 32))
    os.close(report_r)
    assert Path(f"/proc/{child}").exists()
    os.kill(middle, signal.SIGKILL)
    os.waitpid(middle, 0)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        # Reparented to init (or a subreaper): it must be gone or a zombie soon.
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            break
        if state == "Z":
            break
        time.sleep(0.02)
    else:
        pass
    try:
        state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    assert state in ("gone", "Z")
    assert not list(tmp_path.glob("rawtrace-spool-*"))
    buffers.close()
    os.close(writers[0])


def test_find_stale_spools_tells_dead_owners(tmp_path):
    from rawtrace.tracefs.instance import process_starttime
    mine = tmp_path / f"rawtrace-spool-{os.getpid()}-{process_starttime(os.getpid())}-abc"
    reused = tmp_path / f"rawtrace-spool-{os.getpid()}-1-def"
    other = tmp_path / "rawtrace-spool-junk"
    for path in (mine, reused, other):
        path.mkdir()
    found = {path.name: alive for path, _pid, alive in find_stale_spools(str(tmp_path))}
    assert found == {mine.name: True, reused.name: False}


def test_spool_prefix_names_the_owner():
    prefix = spool_mod.spool_dir_prefix()
    assert prefix.startswith(f"rawtrace-spool-{os.getpid()}-") and prefix.endswith("-")
    assert tempfile.gettempdir()
