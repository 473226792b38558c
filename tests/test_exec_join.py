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
                        cmdline_of=(lambda pid, ts: (cmdlines or {}).get(pid)))


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
    assert attempt.argv == [b"prog32", b"-x"] and attempt.argv_source == "proc" and attempt.ret == 0
    assert attempt.filename == "/opt/prog32" and j.exit(6, 30, 0) == []


# -- the program-start site (__libc_start_main in the new process) ------------------------------------

START_EVENTS = X.plan("x86_64", LIMITS, X.SITES + (X.START_SITE,))
START_ONLY = [e for e in START_EVENTS if e.site == X.START_SITE]


def start_joiner(cmdlines=None):
    return X.ExecJoiner(X.HitAssembler(START_EVENTS, LIMITS.max_args), tgid_of=lambda tid: tid,
                        comm_of=lambda tid: None, ppid_of=lambda pid: 1,
                        cmdline_of=lambda pid, ts: (cmdlines or {}).get(pid), start_site=X.START_SITE.symbol,
                        wait_ns=1000)


def start_hit(j, pid, argv, ts):
    """The events of one start-site hit, in the kernel's order (newest consumer first: the head last);
    returns what the joiner finished on them."""
    regs, mem = call(argv)
    regs = {"dx": regs["si"], "si": len(argv)}     # __libc_start_main(main, argc, argv, ...)
    done = []
    for name, fields in reversed(list(hit(START_ONLY, regs, mem, random.Random(0)).items())):
        done += j.probe(name, ts, pid, fields)
    return done


def test_start_site_plan_has_no_path_or_env():
    assert START_ONLY and all("path_" not in e.spec and "envp=" not in e.spec for e in START_ONLY)
    assert all(e.filter.startswith("argc > ") for e in START_ONLY if not e.head and e.slots[0].offset == 0)
    assert "argv=%dx:x64" in START_ONLY[0].spec and START_ONLY[0].spec.split("=", 1)[1].startswith(
        "uprobe:libc:__libc_start_main ")


def test_exec_by_a_static_caller_gets_argv_at_the_program_start():
    j = start_joiner()
    j.enter(10, 40, "execve", {"argv": 0x55})            # no call-site hit: a static caller
    j.process_exec(20, 40, 40, "/usr/bin/dyn")
    assert j.exit(21, 40, 0) == [] and j.waiting          # waits for the new program's start
    assert j.settle(600) == []                            # not yet past wait_ns
    [attempt] = start_hit(j, 40, [b"dyn", b"arg one"], 500)   # finished on the hit's head
    assert attempt.argv == [b"dyn", b"arg one"] and attempt.argv_source == "uprobe-start"
    assert attempt.ret == 0 and attempt.filename == "/usr/bin/dyn" and not j.waiting


def test_waiting_exec_of_a_static_program_ends_at_its_exit_with_the_cmdline_or_nothing():
    j = start_joiner(cmdlines={40: b"static\0x\0"})
    j.enter(10, 40, "execve", {"argv": 0x55})
    j.process_exec(20, 40, 40, "/usr/bin/static")
    assert j.exit(21, 40, 0) == []
    [attempt] = j.thread_exit(30, 40)                     # it never reached __libc_start_main
    assert attempt.argv == [b"static", b"x"] and attempt.argv_source == "proc"
    j = start_joiner()
    j.enter(10, 41, "execve", {"argv": 0x55})
    j.process_exec(20, 41, 41, "/usr/bin/static")
    j.exit(21, 41, 0)
    [attempt] = j.flush(40)
    assert attempt.argv_source == "none"


def test_complete_call_site_capture_does_not_wait():
    j = start_joiner()
    argv_pointer = probe_hit(j, 42, [b"ls", b"-l"])
    j.enter(10, 42, "execve", {"argv": argv_pointer})
    j.process_exec(20, 42, 42, "/bin/ls")
    [attempt] = j.exit(21, 42, 0)
    assert attempt.argv_source == "uprobe" and attempt.argv == [b"ls", b"-l"]
    assert start_hit(j, 42, [b"ls", b"-l"], 30) == []     # the program's own start: ignored
    assert j.settle(5000) == [] and j.flush(5000) == []


def test_cut_capture_completed_at_the_start_unless_it_disagrees():
    long = b"z" * 3000
    j = start_joiner()
    argv_pointer = probe_hit(j, 43, [b"p", b"a", long])   # argv[2] is a tail slot: cut
    j.enter(10, 43, "execve", {"argv": argv_pointer})
    j.process_exec(20, 43, 43, "/bin/p")
    assert j.exit(21, 43, 0) == []
    [attempt] = start_hit(j, 43, [b"p", b"a", long], 30)
    # The start site has the same plan: argv[2] is cut there too, but no shorter than at the call.
    assert attempt.argv_source == "uprobe-start" and attempt.argv[:2] == [b"p", b"a"]
    # A script: the kernel rewrote argv for the interpreter; the call site's capture stands.
    j = start_joiner()
    argv_pointer = probe_hit(j, 44, [b"./script", long])
    j.enter(10, 44, "execve", {"argv": argv_pointer})
    j.process_exec(20, 44, 44, "/tmp/script")
    j.exit(21, 44, 0)
    [attempt] = start_hit(j, 44, [b"/bin/sh", b"./script", long], 30)
    assert attempt.argv_source == "uprobe" and attempt.argv[0] == b"./script"


def test_exec_of_a_32_bit_program_which_execs_again():
    # bash execs a 32-bit program (its sys_exit is not traced: the task is compat by then), which execs
    # /bin/sleep through int 0x80 (no sys_enter either): two attempts, not one merged.
    j = start_joiner()
    argv_pointer = probe_hit(j, 50, [b"/tmp/c32"])
    j.enter(10, 50, "execve", {"argv": argv_pointer})
    assert j.process_exec(20, 50, 50, "/tmp/c32") == []
    [first] = j.process_exec(30, 50, 50, "/bin/sleep")
    assert first.filename == "/tmp/c32" and first.argv == [b"/tmp/c32"] and first.ret == 0
    [second] = start_hit(j, 50, [b"sleep", b"0.3"], 40)
    assert second.filename == "/bin/sleep" and second.argv == [b"sleep", b"0.3"]
    assert second.argv_source == "uprobe-start" and second.ret == 0 and second.comm == "c32"


def test_waiting_exec_finished_by_age_when_no_start_hit_comes():
    j = start_joiner()
    j.enter(10, 60, "execve", {"argv": 0x55})
    j.process_exec(20, 60, 60, "/usr/bin/static")
    assert j.exit(21, 60, 0) == []
    assert j.settle(500) == [] and j.waiting
    [attempt] = j.settle(2000)                            # 1000 ns wait_ns passed
    assert attempt.argv_source == "none" and not j.waiting
