"""rawtrace.exechold: reading a held exec's argv from the caller, the pipe's frames, and the joiner's use."""

from __future__ import annotations

import ctypes
import os
import struct

import pytest

from rawtrace import execargs as X
from rawtrace import exechold as H


def test_exec_calls_name_the_native_and_compat_numbers():
    # arch/x86/entry/syscalls/syscall_64.tbl and syscall_32.tbl; arm64 and its aarch32 compat table.
    assert H.exec_calls("x86_64") == {59: ("execve", 1, 2, 8), 322: ("execveat", 2, 3, 8),
                                      11: ("execve", 1, 2, 4), 358: ("execveat", 2, 3, 4)}
    arm64 = H.exec_calls("arm64")
    assert arm64[221] == ("execve", 1, 2, 8) and arm64[281] == ("execveat", 2, 3, 8)
    assert arm64[11] == ("execve", 1, 2, 4)
    assert H.exec_calls("no-such-arch") == {}


def test_proc_syscall_lines():
    assert H.parse_proc_syscall("59 0x55d0 0x7ffd10 0x7ffd20 0x0 0x0 0x0 0x7ffd00 0x7f10\n") == (
        59, [0x55d0, 0x7ffd10, 0x7ffd20, 0, 0, 0])
    assert H.parse_proc_syscall("running\n") is None
    assert H.parse_proc_syscall("-1 0x7ffd00 0x7f10\n") is None
    assert H.parse_proc_syscall("") is None


class Memory:
    """A fake address space: {address: bytes} regions; reads stop at a region's end."""

    def __init__(self, regions: dict[int, bytes]) -> None:
        self.regions = regions
        self.reads = 0

    def read(self, address: int, size: int) -> bytes:
        self.reads += 1
        for start, data in self.regions.items():
            if start <= address < start + len(data):
                return data[address - start:address - start + size]
        raise OSError(14, "Bad address")


def vector(strings: list[bytes], width: int, pointers_at: int, strings_at: int, gap: int = 0):
    pointers, blob = [], b""
    for text in strings:
        pointers.append(strings_at + len(blob))
        blob += text + b"\0" + b"\xaa" * gap
    fmt = "<" + ("Q" if width == 8 else "I") * (len(pointers) + 1)
    return {pointers_at: struct.pack(fmt, *pointers, 0), strings_at: blob}


@pytest.mark.parametrize("width", [8, 4])
@pytest.mark.parametrize("gap", [0, 5000])          # side by side, or scattered (one read each then)
def test_a_vector_is_read_whole(width, gap):
    strings = [b"prog", b"with space", b"\xff\xfe not utf-8", b""] + [b"%d" % i for i in range(300)]
    strings.append(bytes(range(1, 256)) * 40)        # 10 200 bytes, every byte but NUL
    memory = Memory(vector(strings, width, 0x1000, 0x100000, gap))
    got, more, cut = H.read_vector(memory.read, 0x1000, width)
    assert got == strings and not more and not cut


def test_a_vector_that_runs_into_unreadable_memory_is_marked():
    regions = vector([b"a", b"b"], 8, 0x1000, 0x9000)
    regions[0x1000] = regions[0x1000][:16]                # the pointers stop before their NULL
    got, more, cut = H.read_vector(Memory(regions).read, 0x1000, 8)
    assert got == [b"a", b"b"] and more and not cut
    regions = vector([b"a", b"unterminated"], 8, 0x1000, 0x9000)
    regions[0x9000] = regions[0x9000][:6]                 # the last string's page ends before its NUL
    got, more, cut = H.read_vector(Memory(regions).read, 0x1000, 8)
    assert got == [b"a", b"unte"] and cut


def test_the_bounds_cut_a_vector():
    memory = Memory(vector([b"x" * 10] * 50, 8, 0x1000, 0x9000))
    got, more, _cut = H.read_vector(memory.read, 0x1000, 8, max_strings=20)
    assert len(got) == 20 and more
    got, more, _cut = H.read_vector(memory.read, 0x1000, 8, max_bytes=100)
    assert sum(len(s) + 1 for s in got) <= 100 + 11 and more
    assert H.read_vector(memory.read, 0, 8) == ([], False, False)


def test_a_vector_is_read_from_a_live_process():
    """The real reader (process_vm_readv) on this process's own memory."""
    from rawtrace.libc import process_vm_readv
    strings = [b"one", b"t w o", b"\x80\x81"] + [b"y" * 10000]
    buffers = [ctypes.create_string_buffer(s) for s in strings]
    array = (ctypes.c_void_p * (len(strings) + 1))(*[ctypes.addressof(b) for b in buffers], None)
    got, more, cut = H.read_vector(lambda a, n: process_vm_readv(os.getpid(), a, n), ctypes.addressof(array), 8)
    assert got == strings and not more and not cut


def test_frames_round_trip_and_wait_for_their_end():
    frame = H.encode_frame(42, 1000, 59, 0x7ffd10, [b"ls", b"", b"-l"], False, True, [b"A=1"], True)
    other = H.encode_frame(43, 2000, 11, 0x1000, [b"sleep"], True, False, None, False)
    buf = bytearray(frame + other[:-3])
    frames, used = H.decode_frames(buf)
    assert frames == [(42, 1000, 0x7ffd10, 59, [b"ls", b"", b"-l"], False, True, [b"A=1"], True)]
    assert used == len(frame)
    frames, _used = H.decode_frames(bytearray(other))
    assert frames == [(43, 2000, 0x1000, 11, [b"sleep"], True, False, [], False)]


def test_a_frame_goes_into_the_pipe_whole_or_not_at_all():
    import fcntl
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)
        capacity = fcntl.fcntl(write_fd, 1032)
        big = H.encode_frame(1, 1, 59, 0x10, [b"x" * (capacity // 2)], False, False, None, False)
        assert H.write_whole(write_fd, big, capacity)
        assert not H.write_whole(write_fd, big, capacity)        # no room for all of it: nothing written
        small = H.encode_frame(2, 2, 59, 0x20, [b"y"], False, False, None, False)
        assert H.write_whole(write_fd, small, capacity)
        data = b""
        os.set_blocking(read_fd, False)
        while True:
            try:
                data += os.read(read_fd, 1 << 16)
            except BlockingIOError:
                break
        frames, used = H.decode_frames(bytearray(data))
        assert [f[0] for f in frames] == [1, 2] and used == len(data)   # the stream stays whole
    finally:
        os.close(read_fd)
        os.close(write_fd)


def held(argv, pointer=0x10):
    return X.Capture(ts=0, tid=20, site="fanotify", syscall="59", argv_pointer=pointer, envp_pointer=0,
                     argv=list(argv), argv_cut=[False] * len(argv))


def joiner(store):
    """held_of over {(tid, pointer): (capture, read at)}: taken when read within the window asked for."""
    windows = []

    def held_of(tid, pointer, since, until):
        windows.append((since, until))
        for key in ((tid, pointer), (tid, None)):
            if key in store and since <= store[key][1] <= until:
                return store.pop(key)[0]
        return None
    asked = []
    j = X.ExecJoiner(None, tgid_of=lambda tid: tid, comm_of=lambda tid: "sh", ppid_of=lambda pid: 1,
                     cmdline_of=lambda pid, ts: asked.append(pid) or b"from\0proc\0", start_site="__libc_start_main",
                     held_of=held_of)
    j.windows = windows
    return j, asked


def test_the_joiner_prefers_the_held_argv_and_joins_it_by_pointer():
    many = [b"prog"] + [b"%d" % i for i in range(300)]
    j, asked = joiner({(20, 0x10): (held(many), 2)})
    j.enter(1, 20, "execve", {"argv": 0x10})
    j.process_exec(3, 20, 20, "/usr/bin/prog")
    [attempt] = j.exit(4, 20, 0)          # no wait for a program-start hit: the held argv is whole
    assert attempt.argv == many and attempt.argv_source == "fanotify" and not attempt.truncated
    assert asked == [] and j.windows == [(1, 3)]        # held between its entry and its exec; no /proc read
    j, asked = joiner({(20, 0x99): (held([b"other"]), 2)})
    j.enter(1, 20, "execve", {"argv": 0x10})
    j.process_exec(3, 20, 20, "/usr/bin/prog")
    [attempt] = j.exit(4, 20, 0) or j.flush(5)
    assert attempt.argv_source == "proc" and asked == [20]     # another call's capture is not taken


def test_an_exec_failing_after_its_open_is_held_one_failing_before_is_not():
    j, _asked = joiner({(20, 0x10): (held([b"./script", b"x"]), 2)})
    j.enter(1, 20, "execve", {"argv": 0x10})
    [attempt] = j.exit(3, 20, -8)                             # ENOEXEC: the file was opened
    assert attempt.argv == [b"./script", b"x"] and attempt.argv_source == "fanotify" and attempt.ret == -8
    j, _asked = joiner({})
    j.enter(1, 20, "execve", {"argv": 0x10})
    [attempt] = j.exit(2, 20, -2)                             # ENOENT: nothing was held
    assert attempt.argv_source == "none"


def test_a_path_search_s_failed_tries_leave_the_exec_s_argv_to_it():
    """execvp tries each PATH directory with the same argv: ENOENT, ENOENT, then the exec that is held.
    Decoded later, the failed tries must not take the held capture: it was read after they ended."""
    j, _asked = joiner({(20, 0x10): (held([b"ls", b"-l"]), 25)})
    j.enter(1, 20, "execve", {"argv": 0x10})
    [first] = j.exit(2, 20, -2)
    j.enter(10, 20, "execve", {"argv": 0x10})
    [second] = j.exit(11, 20, -2)
    j.enter(20, 20, "execve", {"argv": 0x10})
    j.process_exec(30, 20, 20, "/usr/bin/ls")
    [attempt] = j.exit(31, 20, 0)
    assert (first.argv_source, second.argv_source) == ("none", "none")
    assert attempt.argv == [b"ls", b"-l"] and attempt.argv_source == "fanotify"


def test_an_exec_seen_only_at_sched_process_exec_takes_the_thread_s_held_argv():
    """A 32-bit task: no syscall events, so no argv pointer to match: read within the second before."""
    j, _asked = joiner({(20, None): (held([b"sleep", b"0.2"], pointer=0), 2_000_000_000)})
    [attempt] = j.process_exec(2_500_000_000, 20, 20, "/bin/sleep")
    assert attempt.argv == [b"sleep", b"0.2"] and attempt.argv_source == "fanotify"
    assert j.windows == [(1_500_000_000, 2_500_000_000)]


def hold_with(frames):
    import threading
    hold = H.ExecHold.__new__(H.ExecHold)
    hold.environ = False
    hold.keep_ns = 10**15
    hold.max_bytes = 1 << 30
    hold._pipe = None
    hold._lock = threading.Lock()
    hold._buf = bytearray()
    hold._bytes = 0
    hold._swept = 0
    hold._captures = {}
    for frame in frames:
        hold._captures.setdefault(frame[0], __import__("collections").deque()).append(frame)
    return hold


def frame(tid, when, pointer, text):
    return (tid, when, pointer, 59, [text], False, False, [], False)


def test_the_hold_s_take_is_by_pointer_and_time_and_forgets_what_came_before():
    hold = hold_with([frame(7, 10, 0x10, b"stale"), frame(7, 20, 0x20, b"other call"), frame(7, 30, 0x10, b"this"),
                      frame(7, 40, 0x10, b"later")])
    assert hold.take(7, 0x10, 25, 35)[0] == [b"this"]         # the one read within the call, by pointer
    assert hold.take(7, 0x10, 25, 35) is None                 # once; and what came before it is gone
    assert hold.take(7, None, 0, 100)[0] == [b"later"]
    assert hold.take(7) is None and hold.take(8) is None
    hold = hold_with([frame(7, 10, 0x10, b"stale")])
    assert hold.take(7, 0x10, 20, 30) is None                 # read before the call began: not it


def test_captures_not_taken_go_with_time_and_past_the_byte_budget():
    hold = hold_with([])
    hold.keep_ns = 100
    for tid, when in ((1, 10), (2, 50), (3, 90)):
        hold._captures[tid] = __import__("collections").deque([frame(tid, when, 0x10, b"x" * 100)])
        hold._bytes += H._frame_bytes(hold._captures[tid][0])
    hold._sweep(140)                                           # tid 1 is older than keep_ns
    assert sorted(hold._captures) == [2, 3]
    hold.max_bytes = H._frame_bytes(frame(3, 90, 0x10, b"x" * 100))
    hold._sweep(141)                                           # over budget: the oldest goes first
    assert sorted(hold._captures) == [3] and hold._bytes == hold.max_bytes


def test_max_args_and_max_arg_len_shorten_a_held_argv_and_mark_it():
    from types import SimpleNamespace

    from rawtrace.tracers.exec import ExecTool

    class Hold:
        def take(self, tid, pointer, since, until):
            return [b"prog", b"x" * 50, b"short"], False, False, None, False, 59
    for most, longest, argv, cut, more in (
            (None, None, [b"prog", b"x" * 50, b"short"], [False, False, False], False),   # no cap by default
            (2, None, [b"prog", b"x" * 50], [False, False], True),
            (None, 10, [b"prog", b"x" * 10, b"short"], [False, True, False], False)):
        fake = SimpleNamespace(hold=Hold(), args=SimpleNamespace(max_args=most, max_arg_len=longest),
                               ctx=SimpleNamespace(clock="mono"), proc_mode=False)
        capture = ExecTool._held(fake, 20, 0x10)
        assert (capture.argv, capture.argv_cut, capture.argv_more) == (argv, cut, more)
        assert capture.truncated == (most is not None or longest is not None)


def test_a_thread_not_yet_asleep_is_asked_again(tmp_path, monkeypatch):
    """/proc/TID/syscall says "running" until the thread sleeps waiting for the answer: asked again (here
    it is asleep by the time the reader has paused twice)."""
    (tmp_path / "42").mkdir()
    syscall = tmp_path / "42" / "syscall"
    syscall.write_text("running\n")
    memory = Memory(vector([b"/bin/true", b"x"], 8, 0x1000, 0x9000))
    pauses = []

    def pause(seconds):
        pauses.append(seconds)
        if len(pauses) == 2:
            syscall.write_text("59 0x5000 0x1000 0x0 0x0 0x0 0x0 0x7ffd 0x7f\n")
    monkeypatch.setattr(H.time, "sleep", pause)
    found = H.read_exec_args(42, H.exec_calls("x86_64"), str(tmp_path),
                             read_memory=lambda tid, a, n: memory.read(a, n))
    assert found is not None and found[:3] == (59, 0x1000, [b"/bin/true", b"x"]) and len(pauses) == 2
    syscall.write_text("0 0x1 0x2 0x3 0x0 0x0 0x0 0x7ffd 0x7f\n")       # in read(): not an exec
    assert H.read_exec_args(42, H.exec_calls("x86_64"), str(tmp_path)) is None


def test_kernels_before_6_8_are_not_held():
    # Before 6.8 execve copies argv before it opens the file; before 5.7 the waiting exec also holds the
    # lock that reading the thread needs (every exec would wait for ever).
    assert H.kernel_too_old("5.4.0-150-generic") and H.kernel_too_old("6.7.12") and H.kernel_too_old("garbage")
    assert not H.kernel_too_old("6.8.0") and not H.kernel_too_old("6.18.44-fc-v857")
    assert not H.kernel_too_old("7.0")


def test_helpers_of_a_run_that_falls_back_are_stopped_before_the_fallback_starts_its_own():
    from rawtrace.tracers import exec as tool

    class Helper:
        stopped = 0

        def start(self):
            pass

        def stop(self):
            self.stopped += 1
    first, second = Helper(), Helper()         # the hold and --cmdline-at-exec's reader, say
    assert tool._start_helper(first) == "" and tool._start_helper(second) == ""
    tool._stop_helpers()            # what the automatic fallback to the proc connector does first
    assert (first.stopped, second.stopped) == (1, 1) and tool._RUNNING == []

    class Refused(Helper):
        def start(self):
            raise OSError(1, "Operation not permitted")
    assert tool._start_helper(Refused()) == "Operation not permitted" and tool._RUNNING == []


def test_where_both_abis_share_the_number_the_caller_s_elf_class_tells_the_width(tmp_path):
    assert H.exec_calls("ppc64")[11] == ("execve", 1, 2, 0)
    assert H.pointer_width(os.getpid()) == 8                    # this interpreter: ELFCLASS64
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "exe").write_bytes(b"\x7fELF\x01\x01\x01" + b"\0" * 9)
    assert H.pointer_width(5, str(tmp_path)) == 4
    (tmp_path / "5" / "syscall").write_text("11 0x5000 0x1000 0x0 0x0 0x0 0x0 0x7ffd 0x7f\n")
    memory = Memory(vector([b"sleep", b"1"], 4, 0x1000, 0x9000))
    found = H.read_exec_args(5, H.exec_calls("ppc64"), str(tmp_path), read_memory=lambda t, a, n: memory.read(a, n))
    assert found[2] == [b"sleep", b"1"]
    (tmp_path / "5" / "exe").write_bytes(b"#!/bin/sh\n")
    assert H.read_exec_args(5, H.exec_calls("ppc64"), str(tmp_path)) is None
