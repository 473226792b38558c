"""fanotify: event parsing from crafted buffers (FID, DFID_NAME, classic), fatrace letters, names in stream order."""

from __future__ import annotations

import os
import struct
import sys

import pytest

from rawtrace import fanotify as F


def info_fid(info_type: int, fsid: tuple[int, int], handle: bytes, name: bytes | None = None) -> bytes:
    body = struct.pack("=ii", *fsid) + struct.pack("=Ii", len(handle), 1) + handle
    if name is not None:
        body += name + b"\0"
    body += b"\0" * (-(len(body) + 4) % 4)
    return struct.pack("=BBH", info_type, 0, 4 + len(body)) + body


def metadata(mask: int, pid: int, fd: int = F.FAN_NOFD, infos: bytes = b"", version: int = 3) -> bytes:
    return struct.pack("=IBBHQii", 24 + len(infos), version, 0, 24, mask, fd, pid) + infos


def test_parse_dfid_name_and_fid():
    buf = (metadata(F.FAN_CREATE, 100, infos=info_fid(F.INFO_DFID_NAME, (1, 2), b"DIRH", b"somefile")
                    + info_fid(F.INFO_FID, (1, 2), b"FILEHANDLE"))
           + metadata(F.FAN_OPEN | F.FAN_ACCESS, 101, infos=info_fid(F.INFO_FID, (1, 2), b"H2")))
    first, second = F.parse_events(buf)
    assert (first.mask, first.pid, first.fd, first.name, first.fsid) == (F.FAN_CREATE, 100, -1, "somefile", (1, 2))
    # The whole struct file_handle (handle_bytes, handle_type, f_handle) is what open_by_handle_at takes.
    assert first.dir_handle == struct.pack("=Ii", 4, 1) + b"DIRH"
    assert first.handle == struct.pack("=Ii", 10, 1) + b"FILEHANDLE"
    assert (second.pid, second.name, second.dir_handle) == (101, None, None)


def test_parse_classic_fd_event_and_overflow():
    events = F.parse_events(metadata(F.FAN_CLOSE_WRITE, 5, fd=7) + metadata(F.FAN_Q_OVERFLOW, 0))
    assert [(e.mask, e.fd) for e in events] == [(F.FAN_CLOSE_WRITE, 7), (F.FAN_Q_OVERFLOW, -1)]


def test_parse_stops_at_a_torn_record_and_rejects_other_versions():
    whole = metadata(F.FAN_OPEN, 1)
    assert len(F.parse_events(whole + whole[:10])) == 1
    bad_length = struct.pack("=IBBHQii", 4000, 3, 0, 24, 1, -1, 1)
    assert F.parse_events(whole + bad_length) and len(F.parse_events(whole + bad_length)) == 1
    with pytest.raises(ValueError, match="version 2"):
        F.parse_events(metadata(F.FAN_OPEN, 1, version=2))
    # An info record claiming more than the event holds is ignored, the event kept.
    broken = struct.pack("=BBH", F.INFO_FID, 0, 200)
    (event,) = F.parse_events(metadata(F.FAN_OPEN, 1, infos=broken))
    assert event.handle is None


def test_types_in_fatrace_order():
    assert F.types_of(F.FAN_OPEN | F.FAN_ACCESS | F.FAN_CLOSE_NOWRITE) == "RCO"
    assert F.types_of(F.FAN_CLOSE_WRITE) == "CW"
    assert F.types_of(F.FAN_OPEN_EXEC) == "O"
    assert F.types_of(F.FAN_CREATE | F.FAN_DELETE | F.FAN_MOVED_FROM | F.FAN_MOVED_TO) == "+D<>"
    assert F.types_of(F.FAN_ATTRIB) == ""


def test_names_follow_exec_runs_in_the_stream():
    proc = {10: "python3"}
    names = F.Names(proc.get)
    # bash -c '...; rm other': pid 20 execs bash (then ld.so), works, then execs rm in the same pid.
    names.forked(10, 20)
    assert names.observe(20, F.FAN_OPEN_EXEC | F.FAN_OPEN, "/usr/bin/bash") == "bash"
    assert names.observe(20, F.FAN_ACCESS, "/usr/bin/bash") == "bash"
    assert names.observe(20, F.FAN_OPEN_EXEC, "/usr/lib64/ld-linux-x86-64.so.2") == "bash"
    assert names.observe(20, F.FAN_CREATE, "/tmp/d/somefile") == "bash"
    assert names.observe(20, F.FAN_OPEN_EXEC, "/usr/bin/rm") == "rm"
    assert names.observe(20, F.FAN_DELETE, "/tmp/d/other") == "rm"
    # A process seen first is named from /proc at read time; one already gone stays unknown.
    assert names.observe(10, F.FAN_OPEN, "/x") == "python3"
    assert names.observe(99, F.FAN_OPEN, "/x") is None
    assert (names.from_proc, names.unknown) == (1, 1)


def test_script_exec_keeps_the_script_name():
    names = F.Names(lambda pid: None)
    names.observe(5, F.FAN_OPEN_EXEC, "/usr/local/bin/a-long-script-name.sh")
    names.observe(5, F.FAN_ACCESS, "/usr/local/bin/a-long-script-name.sh")
    names.observe(5, F.FAN_OPEN_EXEC, "/usr/bin/dash")
    assert names.observe(5, F.FAN_OPEN, "/etc/ld.so.cache") == "a-long-script-n"


def test_exec_name_cut_to_comm_length():
    assert F.exec_name("/bin/" + "x" * 30) == "x" * 15


def test_not_available_without_proc_entry(tmp_path):
    from rawtrace.host import Host
    assert "no fanotify" in F.fanotify_available(Host(tmp_path))
    (tmp_path / "proc/sys/fs/fanotify").mkdir(parents=True)
    assert F.fanotify_available(Host(tmp_path)) is None


def test_late_fork_keeps_the_childs_newer_name_but_a_reused_pid_is_renamed():
    names = F.Names({1: "python3"}.get)
    names.set(1, "python3")
    names.observe(5, F.FAN_OPEN_EXEC, "/usr/bin/cat")      # the child's exec, read before its fork
    names.forked(1, 5)
    assert names.name(5) == "cat"
    names.exited(5)
    names.forked(1, 5)                                     # pid 5 reused by a new child
    assert names.name(5) == "python3"


def test_reader_thread_gets_the_gil_promptly_while_it_runs_and_restores_the_switch_interval():
    source = F.FanotifySource()
    read_end, write_end = os.pipe2(os.O_NONBLOCK)   # an empty queue stands in for the group's fd
    source.fd = read_end
    before = sys.getswitchinterval()
    try:
        source.start_reader()
        assert sys.getswitchinterval() <= 0.0005
        source.stop_reader()
        assert sys.getswitchinterval() == before
    finally:
        source.fd = None
        os.close(read_end)
        os.close(write_end)
