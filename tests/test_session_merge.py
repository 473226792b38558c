"""Unit tests of the per-CPU merge, process-name tracking and the session's small helpers (no tracefs)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from rawtrace.comm import parse_saved_cmdlines
from rawtrace.errors import UsageError
from rawtrace.session import cgroup_pids, filter_identifiers
from rawtrace.tasks import TaskTable, exec_comm
from rawtrace.tracefs.reader import Merger


@dataclass
class Rec:
    ts: int
    cpu: int


def test_merge_out_of_order_streams_in_rounds():
    rng = random.Random(7)
    streams = {cpu: sorted(rng.sample(range(100000), 400)) for cpu in range(3)}
    merger = Merger([0, 1, 2])
    out = []
    positions = dict.fromkeys(streams, 0)
    now = 0
    # Each round every CPU delivers a random-sized chunk, as reads of whole pages do; a CPU that
    # delivered everything up to `now` is drained at `now`.
    while any(positions[c] < len(streams[c]) for c in streams):
        now += 5000
        for cpu, values in streams.items():
            start = positions[cpu]
            take = rng.randint(0, 30)
            chunk = [v for v in values[start:start + take] if v <= now]
            positions[cpu] += len(chunk)
            merger.add(cpu, [Rec(v, cpu) for v in chunk])
            if positions[cpu] >= len(values) or values[positions[cpu]] > now:
                merger.mark_drained(cpu, now)
        released = list(merger.ready())
        if out and released:
            assert released[0].ts >= out[-1].ts, "a record was released before an older one"
        out.extend(released)
    out.extend(merger.flush())
    assert [r.ts for r in out] == sorted(v for values in streams.values() for v in values)


def test_merge_holds_back_until_every_cpu_bounds_it():
    merger = Merger([0, 1])
    merger.add(0, [Rec(10, 0), Rec(20, 0)])
    assert list(merger.ready()) == []            # CPU 1 has said nothing yet: it may still hold ts 5
    merger.add(1, [Rec(15, 1)])
    assert [r.ts for r in merger.ready()] == [10, 15]
    assert len(merger) == 1                      # 20 waits: CPU 1 may still deliver 16..19
    merger.mark_drained(1, 30)
    assert [r.ts for r in merger.ready()] == [20]


def test_merge_slack_covers_late_commits():
    merger = Merger([0, 1], slack=5)
    merger.add(0, [Rec(100, 0)])
    merger.mark_drained(1, 103)                  # bound is 98: a writer may still commit ts 99
    merger.mark_drained(0, 103)
    assert list(merger.ready()) == []
    merger.mark_drained(1, 106)
    merger.mark_drained(0, 106)
    assert [r.ts for r in merger.ready()] == [100]


def test_merge_equal_timestamps_keep_arrival_order():
    merger = Merger([0, 1])
    merger.add(1, [Rec(5, 10)])
    merger.add(0, [Rec(5, 0), Rec(5, 1), Rec(5, 2)])
    merger.mark_drained(0, 10)
    merger.mark_drained(1, 10)
    assert [r.cpu for r in merger.ready()] == [0, 1, 2, 10]


def _rec(tid: int, **fields):
    from rawtrace.parse.record import Event
    return Event(0, 0, tid, 0, None, fields)


def test_task_table_replays_fork_exec_rename(tmp_path):
    proc = tmp_path / "proc"
    (proc / "100").mkdir(parents=True)
    (proc / "100" / "comm").write_text("bash\n")
    names = TaskTable(proc)
    assert names.comm(100) == "bash"
    names.on_fork(_rec(100, parent_comm="bash", parent_pid=100, child_comm="bash", child_pid=101))
    assert names.comm(101) == "bash" and names.pid(101) == 101
    names.on_exec(_rec(101, filename="/tmp/x/rtcomm-very-long-name-here", pid=101, old_pid=101))
    assert names.comm(101) == "rtcomm-very-lon"      # TASK_COMM_LEN - 1 bytes, as the kernel cuts it
    names.on_rename(_rec(101, pid=101, oldcomm="rtcomm-very-lon", newcomm="worker"))
    assert names.comm(101) == "worker"
    assert names.comm(999) == "<...>"                # gone, not in saved_cmdlines


def test_task_table_saved_cmdlines_and_fork_parent(tmp_path):
    names = TaskTable(tmp_path / "noproc", parse_saved_cmdlines("42 kworker/0:1\n43 sshd\n"))
    assert names.comm(43) == "sshd"
    names.on_fork(_rec(50, parent_comm="make", parent_pid=50, child_comm="make", child_pid=51))
    assert names.comm(50) == "make" and names.comm(51) == "make"


def test_task_table_snapshot(tmp_path):
    for pid, name in ((1, "init"), (7, "sh")):
        (tmp_path / str(pid) / "task" / str(pid)).mkdir(parents=True)
        (tmp_path / str(pid) / "task" / str(pid) / "comm").write_text(name + "\n")
    (tmp_path / "7" / "task" / "8").mkdir()
    (tmp_path / "7" / "task" / "8" / "comm").write_text("sh-thread\n")
    names = TaskTable(tmp_path)
    assert names.snapshot() == 3
    (tmp_path / "7" / "task" / "7" / "comm").write_text("exec-later\n")
    assert names.comm(7) == "sh" and names.pid(8) == 7 and names.comm(8) == "sh-thread"


def test_exec_comm():
    assert exec_comm("/bin/true") == "true"
    assert exec_comm("plain") == "plain"


def test_filter_identifiers_ignore_strings_and_numbers():
    assert filter_identifiers('flags == 0x80000 && comm ~ "ba sh && x" || dfd < -100') == {
        "flags", "comm", "dfd"}


def test_cgroup_pids_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.procs").write_text("12\n5\n12\n")
    assert cgroup_pids(v2) == [5, 12]
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "tasks").write_text("9\n")
    assert cgroup_pids(v1) == [9]
    with pytest.raises(UsageError):
        cgroup_pids(tmp_path)


@pytest.mark.parametrize("specs, expected", [
    (["kprobe:vfs_read"], {"kprobes"}),
    (["uprobe:libc:getppid"], {"uprobes"}),
    (["fprobe:vfs_read"], set()),                      # the doctor has no fprobes check: left to creation
    (["kprobe:vfs_read", "uprobe:libc:getppid"], {"kprobes", "uprobes"}),
])
def test_preflight_asks_for_the_probe_kinds_used(specs, expected, monkeypatch):
    from rawtrace import doctor
    from rawtrace.session import Session

    class Stop(Exception):
        pass
    asked = []

    def preflight(host, needs):
        asked.append(set(needs))
        raise Stop
    monkeypatch.setattr(doctor, "preflight", preflight)
    session = Session(probes=specs)
    with pytest.raises(Stop):
        session.start()
    assert asked == [{"tracefs", "tracepoints"} | expected]
