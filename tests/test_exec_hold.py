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
    frame = H.encode_frame(42, 59, 0x7ffd10, [b"ls", b"", b"-l"], False, True, [b"A=1"], True)
    other = H.encode_frame(43, 11, 0x1000, [b"sleep"], True, False, None, False)
    buf = bytearray(frame + other[:-3])
    frames, used = H.decode_frames(buf)
    assert frames == [(42, 0x7ffd10, 59, [b"ls", b"", b"-l"], False, True, [b"A=1"], True)]
    assert used == len(frame)
    frames, _used = H.decode_frames(bytearray(other))
    assert frames == [(43, 0x1000, 11, [b"sleep"], True, False, [], False)]


def held(argv, pointer=0x10):
    return X.Capture(ts=0, tid=20, site="fanotify", syscall="59", argv_pointer=pointer, envp_pointer=0,
                     argv=list(argv), argv_cut=[False] * len(argv))


def joiner(store):
    def held_of(tid, pointer):
        for key in ((tid, pointer), (tid, None)):
            if key in store:
                return store.pop(key)
        return None
    asked = []
    j = X.ExecJoiner(None, tgid_of=lambda tid: tid, comm_of=lambda tid: "sh", ppid_of=lambda pid: 1,
                     cmdline_of=lambda pid, ts: asked.append(pid) or b"from\0proc\0", start_site="__libc_start_main",
                     held_of=held_of)
    return j, asked


def test_the_joiner_prefers_the_held_argv_and_joins_it_by_pointer():
    many = [b"prog"] + [b"%d" % i for i in range(300)]
    j, asked = joiner({(20, 0x10): held(many)})
    j.enter(1, 20, "execve", {"argv": 0x10})
    j.process_exec(2, 20, 20, "/usr/bin/prog")
    [attempt] = j.exit(3, 20, 0)          # no wait for a program-start hit: the held argv is whole
    assert attempt.argv == many and attempt.argv_source == "fanotify" and not attempt.truncated
    assert asked == []                    # nor a /proc read
    j, asked = joiner({(20, 0x99): held([b"other"])})
    j.enter(1, 20, "execve", {"argv": 0x10})
    j.process_exec(2, 20, 20, "/usr/bin/prog")
    [attempt] = j.exit(3, 20, 0) or j.flush(4)
    assert attempt.argv_source == "proc" and asked == [20]     # another call's capture is not taken


def test_an_exec_failing_after_its_open_is_held_one_failing_before_is_not():
    j, _asked = joiner({(20, 0x10): held([b"./script", b"x"])})
    j.enter(1, 20, "execve", {"argv": 0x10})
    [attempt] = j.exit(2, 20, -8)                             # ENOEXEC: the file was opened
    assert attempt.argv == [b"./script", b"x"] and attempt.argv_source == "fanotify" and attempt.ret == -8
    j, _asked = joiner({})
    j.enter(1, 20, "execve", {"argv": 0x10})
    [attempt] = j.exit(2, 20, -2)                             # ENOENT: nothing was held
    assert attempt.argv_source == "none"


def test_an_exec_seen_only_at_sched_process_exec_takes_the_thread_s_held_argv():
    """A 32-bit task: no syscall events, so no argv pointer to match: the thread's oldest capture."""
    j, _asked = joiner({(20, None): held([b"sleep", b"0.2"], pointer=0)})
    [attempt] = j.process_exec(5, 20, 20, "/bin/sleep")
    assert attempt.argv == [b"sleep", b"0.2"] and attempt.argv_source == "fanotify"


def test_the_hold_s_take_is_in_exec_order_and_by_pointer():
    hold = H.ExecHold.__new__(H.ExecHold)
    hold.environ = False
    hold.keep_ns = 10**12
    hold._pipe = None
    import threading
    from collections import deque
    hold._lock = threading.Lock()
    hold._buf = bytearray()
    now = __import__("time").monotonic_ns()
    frames = [(7, 0x10, 59, [b"first"], False, False, [], False), (7, 0x20, 59, [b"second"], False, False, [], False),
              (7, 0x30, 59, [b"third"], False, False, [], False)]
    hold._captures = {7: deque([(now, f) for f in frames], maxlen=4)}
    assert hold.take(7)[0] == [b"first"]                      # no pointer: the oldest
    assert hold.take(7, 0x30)[0] == [b"third"]                # by pointer; the older one was never asked for
    assert hold.take(7) is None and hold.take(8) is None


def test_max_args_and_max_arg_len_shorten_a_held_argv_and_mark_it():
    from types import SimpleNamespace

    from rawtrace.tracers.exec import ExecTool

    class Hold:
        def take(self, tid, pointer):
            return [b"prog", b"x" * 50, b"short"], False, False, None, False, 59
    for most, longest, argv, cut, more in (
            (None, None, [b"prog", b"x" * 50, b"short"], [False, False, False], False),   # no cap by default
            (2, None, [b"prog", b"x" * 50], [False, False], True),
            (None, 10, [b"prog", b"x" * 10, b"short"], [False, True, False], False)):
        fake = SimpleNamespace(hold=Hold(), args=SimpleNamespace(max_args=most, max_arg_len=longest))
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
