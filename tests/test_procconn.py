"""The proc connector source: message layout (built by hand from the uapi structs) and a real fork/exec/exit."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time

import pytest

from rawtrace import procconn as P


def message(what: int, data: bytes, ts: int = 123, cpu: int = 1, idx: int = P.CN_IDX_PROC,
            mtype: int = P.NLMSG_DONE) -> bytes:
    event = struct.pack("=IIQ", what, cpu, ts) + data
    cn = struct.pack("=IIIIHH", idx, P.CN_VAL_PROC, 0, 0, len(event), 0) + event
    raw = struct.pack("=IHHII", 16 + len(cn), mtype, 0, 0, 0) + cn
    return raw + b"\0" * (-len(raw) % 4)


def test_subscribe_message_layout():
    raw = P.subscribe_message(P.PROC_CN_MCAST_LISTEN, port=77)
    assert len(raw) == 16 + 20 + 4
    length, mtype, _flags, _seq, port = struct.unpack_from("=IHHII", raw)
    assert (length, mtype, port) == (40, P.NLMSG_DONE, 77)
    assert struct.unpack_from("=IIIIHH", raw, 16) == (1, 1, 0, 0, 4, 0)
    assert struct.unpack_from("=I", raw, 36) == (1,)


def test_parse_and_decode_every_kind():
    buf = (message(P.PROC_EVENT_FORK, struct.pack("=iiii", 10, 10, 21, 20), ts=5)
           + message(P.PROC_EVENT_EXEC, struct.pack("=ii", 21, 20), ts=6)
           + message(P.PROC_EVENT_COMM, struct.pack("=ii16s", 21, 20, b"worker\0garbage!"), ts=7)
           + message(P.PROC_EVENT_EXIT, struct.pack("=iiIIii", 21, 20, 256, 17, 10, 10), ts=8)
           + message(P.PROC_EVENT_UID, struct.pack("=iiII", 1, 1, 0, 0), ts=9))
    events = P.parse_messages(buf)
    assert [e[2] for e in events] == [5, 6, 7, 8, 9]
    records = [P.decode_event(*e) for e in events]
    fork, exec_, comm, exit_, uid = records
    assert (fork.kind, fork.pid, fork.tid, fork.parent_pid, fork.parent_tid) == ("fork", 20, 21, 10, 10)
    assert (exec_.kind, exec_.pid, exec_.tid, exec_.ts, exec_.cpu) == ("exec", 20, 21, 6, 1)
    assert (comm.kind, comm.comm) == ("comm", "worker")
    assert (exit_.kind, exit_.exit_code, exit_.parent_pid) == ("exit", 256, 10)
    assert uid is None


def test_malformed_and_foreign_messages_are_skipped():
    good = message(P.PROC_EVENT_EXEC, struct.pack("=ii", 1, 1))
    assert P.parse_messages(good[:-3]) == []                                   # cut short
    assert P.parse_messages(message(P.PROC_EVENT_EXEC, b"\0" * 8, idx=4)) == []  # another connector
    assert P.parse_messages(message(P.PROC_EVENT_EXEC, b"\0" * 8, mtype=P.NLMSG_ERROR)) == []
    assert P.decode_event(P.PROC_EVENT_FORK, 0, 0, b"\0" * 3) is None            # short data
    assert len(P.parse_messages(good + b"\xff" * 7)) == 1


def _can_listen() -> str | None:
    if os.geteuid() != 0:
        return "the proc connector needs CAP_NET_ADMIN"
    try:
        with P.ProcConnectorSource() as source:
            source.read_available()
    except OSError as exc:
        return f"no proc connector here: {exc}"
    return None


@pytest.mark.live
def test_live_fork_exec_exit_with_cmdline():
    reason = _can_listen()
    if reason:
        pytest.skip(reason)
    source = P.ProcConnectorSource(poll_ms=20)
    source.open()
    try:
        before = time.monotonic_ns()
        # A child that lives long enough for its cmdline to be read, and one that exits at once.
        slow = subprocess.Popen(["/bin/sh", "-c", "sleep 0.5", "arg with space", "\xff"])
        fast = subprocess.run(["/bin/true", "quick"], check=False)
        assert fast.returncode == 0
        records = []
        deadline = time.monotonic() + 3
        for batch in source.batches():
            records += batch
            if any(r.kind == "exit" and r.pid == slow.pid for r in records) or time.monotonic() > deadline:
                break
        slow.wait()
        after = time.monotonic_ns()
    finally:
        source.close()
        source.close()
    assert source.sock is None
    mine = [r for r in records if r.pid == slow.pid]
    assert [r.kind for r in mine if r.kind in ("fork", "exec", "exit")] == ["fork", "exec", "exit"]
    fork = mine[0]
    assert fork.parent_pid == os.getpid()
    exec_ = next(r for r in mine if r.kind == "exec")
    assert exec_.cmdline == b"/bin/sh\0-c\0sleep 0.5\0arg with space\0\xc3\xbf\0"
    assert exec_.exe.endswith("sh") and exec_.comm == "sh"
    # The kernel's time stamps are CLOCK_MONOTONIC.
    assert all(before <= r.ts <= after for r in mine)
    batch_sorted = sorted(records, key=lambda r: r.ts)
    assert [r.ts for r in mine] == [r.ts for r in batch_sorted if r.pid == slow.pid]


def test_close_without_open_and_twice():
    source = P.ProcConnectorSource()
    source.close()
    source.close()
    assert source.sock is None


def test_open_failure_closes_the_socket(monkeypatch):
    made = []
    real = socket.socket

    class Failing(real):
        def bind(self, *a):
            made.append(self)
            raise PermissionError(1, "no")
    monkeypatch.setattr(P.socket, "socket", Failing)
    with pytest.raises(PermissionError):
        P.ProcConnectorSource().open()
    assert made and made[0].fileno() == -1


def test_exec_cmdlines_give_the_text_read_at_the_first_exec_since_and_drop_the_oldest_first():
    from rawtrace.procconn import ExecCmdlines
    texts = ExecCmdlines(limit=3)
    texts.add(7, 100, b"old\0")
    texts.add(7, 200, b"new\0")
    texts.add(8, 150, None)                    # gone by the time it was read: counted, not kept
    assert texts.get(7, 150) == b"new\0"       # the first exec at or after the event; the older is dropped
    assert texts.get(7, 150) is None and 7 not in texts.texts
    assert texts.get(8, 100) is None and (texts.read_count, texts.gone, texts.count) == (2, 1, 0)
    # Past the limit the oldest text goes, whatever its pid: a pid seen long ago keeps its new text.
    texts.add(7, 300, b"a\0")
    texts.add(8, 310, b"b\0")
    texts.add(9, 320, b"c\0")
    texts.add(7, 400, b"d\0")
    assert texts.count == 3 and texts.get(7, 0) == b"d\0" and texts.get(8, 0) == b"b\0"
    texts.stop()                               # never started: nothing to end, the texts are forgotten
    assert texts.texts == {} and texts.count == 0
