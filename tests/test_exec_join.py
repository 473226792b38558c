"""ExecJoiner: probe hits + sys_enter/sys_exit of execve/execveat + sched_process_exec → one attempt each."""

from __future__ import annotations

import random

from test_exec_args import call, hit

from rawtrace import execargs as X

LIMITS = X.PlanLimits(max_args=8, head_args=2)
EVENTS = X.plan("x86_64", LIMITS)
EXECVE = [e for e in EVENTS if e.site.symbol == "execve"]


def joiner(cmdlines=None, comms=None):
    comms = comms if comms is not None else {}
    return X.ExecJoiner(X.HitAssembler(EVENTS, LIMITS.max_args), tgid_of=lambda tid: {11: 10}.get(tid, tid),
                        comm_of=lambda tid: comms.get(tid), ppid_of=lambda pid: {10: 1, 20: 10}.get(pid),
                        cmdline_of=(lambda pid: (cmdlines or {}).get(pid)))


def probe_hit(j, tid, argv, ts=100):
    regs, mem = call(argv)
    for name, fields in hit(EXECVE, regs, mem, random.Random(0)).items():
        j.probe(name, ts, tid, fields)
    return regs["si"]


def test_successful_exec():
    j = joiner(comms={20: "sh"})
    argv_pointer = probe_hit(j, 20, [b"ls", b"-l", b"my dir"])
    assert j.enter(101, 20, "execve", {"argv": argv_pointer, "filename": 0x1234}) == []
    j.process_exec(150, 20, 20, "/usr/bin/ls")
    [attempt] = j.exit(151, 20, 0)
    assert attempt.argv == [b"ls", b"-l", b"my dir"] and attempt.argv_source == "uprobe"
    assert attempt.ok and attempt.filename == "/usr/bin/ls" and attempt.pid == 20 and attempt.ppid == 10
    assert attempt.comm == "sh" and attempt.new_comm == "ls" and attempt.ts == 101


def test_failed_exec_keeps_the_argv_it_tried():
    j = joiner(comms={20: "sh"})
    argv_pointer = probe_hit(j, 20, [b"nope", b"x"])
    j.enter(101, 20, "execve", {"argv": argv_pointer})
    [attempt] = j.exit(102, 20, -2)
    assert attempt.ret == -2 and not attempt.ok and attempt.argv == [b"nope", b"x"]
    assert attempt.filename == "/bin/prog"          # the path given (from the probe), not resolved
    assert attempt.new_comm is None


def test_619_filename_field_wins_for_failures():
    j = joiner()
    j.enter(1, 20, "execve", {"argv": 0x10, "__filename_val": "/no/such"})
    [attempt] = j.exit(2, 20, -2)
    assert attempt.filename == "/no/such" and attempt.argv == [] and attempt.argv_source == "none"


def test_static_binary_or_raw_syscall_falls_back_to_proc():
    j = joiner(cmdlines={20: b"static\0--flag\0"})
    j.enter(1, 20, "execve", {"argv": 0x10})          # no probe hit: not through libc
    j.process_exec(2, 20, 20, "/tmp/static")
    [attempt] = j.exit(3, 20, 0)
    assert attempt.argv == [b"static", b"--flag"] and attempt.argv_source == "proc"


def test_proc_fallback_lost_to_the_race():
    j = joiner(cmdlines={})
    j.enter(1, 20, "execve", {"argv": 0x10})
    j.process_exec(2, 20, 20, "/tmp/static")
    [attempt] = j.exit(3, 20, 0)
    assert attempt.argv == [] and attempt.argv_source == "none"


def test_pointer_mismatch_is_not_joined():
    j = joiner()
    probe_hit(j, 20, [b"a"])
    j.enter(1, 20, "execve", {"argv": 0x99})
    [attempt] = j.exit(2, 20, -13)
    assert attempt.argv_source == "none"


def test_non_leader_thread_exec_moves_to_the_leader_pid():
    j = joiner()
    argv_pointer = probe_hit(j, 11, [b"prog"])
    j.enter(1, 11, "execve", {"argv": argv_pointer})
    j.process_exec(2, 10, 11, "/bin/prog")
    assert j.exit(3, 11, 0) == []
    [attempt] = j.exit(3, 10, 0)
    assert attempt.pid == 10 and attempt.tid == 11 and attempt.argv == [b"prog"] and attempt.ppid == 1


def test_cut_capture_completed_from_a_matching_cmdline():
    j = joiner(cmdlines={20: b"a\0" + b"y" * 5000 + b"\0"})
    argv_pointer = probe_hit(j, 20, [b"a", b"y" * 5000])
    j.enter(1, 20, "execve", {"argv": argv_pointer})
    j.process_exec(2, 20, 20, "/bin/a")
    [attempt] = j.exit(3, 20, 0)
    assert attempt.argv == [b"a", b"y" * 5000] and attempt.argv_source == "uprobe+proc" and not attempt.truncated


def test_cut_capture_not_completed_from_a_rewritten_cmdline():
    j = joiner(cmdlines={20: b"daemon: worker\0"})
    argv_pointer = probe_hit(j, 20, [b"a", b"y" * 5000])
    j.enter(1, 20, "execve", {"argv": argv_pointer})
    j.process_exec(2, 20, 20, "/bin/a")
    [attempt] = j.exit(3, 20, 0)
    assert attempt.argv_source == "uprobe" and attempt.truncated and attempt.argv_cut == [False, True]


def test_lost_exit_is_reported_at_the_next_enter_and_at_thread_exit():
    j = joiner()
    j.enter(1, 20, "execve", {"argv": 1})
    [stale] = j.enter(5, 20, "execve", {"argv": 2})
    assert stale.ret is None
    [gone] = j.thread_exit(9, 20)
    assert gone.ret is None
    assert j.flush(10) == []


def test_merge_cmdline_rules():
    assert X.merge_cmdline([b"a"], [False], False, b"a\0b\0") == ([b"a"], [False], False, False)
    assert X.merge_cmdline([b"a", b"bb"], [False, True], False, b"a\0bbbb\0")[3]
    assert not X.merge_cmdline([b"a", b"bb"], [False, True], False, b"a\0bbbb\0c\0")[3]
    assert X.merge_cmdline([b"a"], [False], True, b"a\0b\0c\0") == ([b"a", b"b", b"c"], [False] * 3, False, True)
    assert not X.merge_cmdline([b"a"], [False], True, b"z\0b\0")[3]
    assert not X.merge_cmdline([b"a"], [False], True, None)[3]


def test_exec_without_a_seen_entry_is_reported_at_once():
    j = joiner(cmdlines={30: b"prog32\0-x\0"})
    [attempt] = j.process_exec(5, 30, 30, "/opt/prog32")
    assert attempt.argv == [b"prog32", b"-x"] and attempt.argv_source == "proc" and attempt.ret is None
    assert attempt.filename == "/opt/prog32" and j.exit(6, 30, 0) == []
