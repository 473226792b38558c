"""Pairing of sys_enter/sys_exit events per thread: unfinished, resumed, mismatches, lost events, flush."""

from __future__ import annotations

from rawtrace.syscalls import pairing as P
from rawtrace.syscalls.pairing import NO_RETURN, PAIR, RESUMED, UNFINISHED, SyscallPairer

OPENAT, READ, EXECVE, EXIT_GROUP = 257, 0, 59, 231


def test_concurrent_calls_on_two_cpus_pair_by_thread():
    p = SyscallPairer()
    assert p.enter(100, 10, 0, OPENAT, "openat", "a") == ()
    assert p.enter(200, 11, 1, READ, "read", "b") == ()
    (b,) = p.exit(200, 15, 1, READ, "read", 7)
    (a,) = p.exit(100, 30, 1, OPENAT, "openat", 3)   # migrated to CPU 1 meanwhile
    assert (b.kind, b.tid, b.args, b.ret, b.duration_ns, b.note) == (PAIR, 200, "b", 7, 4, None)
    assert (a.kind, a.tid, a.args, a.ret, a.duration_ns) == (PAIR, 100, "a", 3, 20)
    assert (a.enter_cpu, a.exit_cpu) == (0, 1)
    assert len(p) == 0


def test_exit_without_enter_is_resumed():
    p = SyscallPairer()
    (r,) = p.exit(5, 100, 0, OPENAT, "openat", 3)
    assert (r.kind, r.name, r.ret, r.enter_ts, r.args, r.note) == (RESUMED, "openat", 3, None, None, None)


def test_new_enter_while_pending_emits_the_old_one_unfinished():
    p = SyscallPairer()
    p.enter(5, 100, 0, READ, "read", "first")
    (u,) = p.enter(5, 200, 0, OPENAT, "openat", "second")
    assert (u.kind, u.nr, u.args, u.enter_ts, u.note) == (UNFINISHED, READ, "first", 100, P.NOTE_NEW_ENTER)
    (pair,) = p.exit(5, 250, 0, OPENAT, "openat", 4)
    assert (pair.kind, pair.args, pair.duration_ns) == (PAIR, "second", 50)


def test_mismatched_nr_is_never_paired():
    p = SyscallPairer()
    p.enter(5, 100, 0, READ, "read", "r")
    u, r = p.exit(5, 200, 0, OPENAT, "openat", 3)
    assert (u.kind, u.nr, u.note) == (UNFINISHED, READ, P.NOTE_MISMATCH)
    assert (r.kind, r.nr, r.ret, r.note) == (RESUMED, OPENAT, 3, P.NOTE_MISMATCH)
    assert p.stats["mismatches"] == 1 and p.stats["pairs"] == 0


def test_names_decide_when_numbers_are_missing():
    p = SyscallPairer()
    p.enter(5, 100, 0, None, "read", "r")
    u, r = p.exit(5, 200, 0, None, "openat", 3)
    assert u.kind == UNFINISHED and r.kind == RESUMED
    p.enter(5, 300, 0, None, "read", "r")
    (pair,) = p.exit(5, 310, 0, None, "read", 1)
    assert pair.kind == PAIR


def test_lost_events_flag_calls_in_flight_only():
    p = SyscallPairer()
    p.enter(1, 100, 0, READ, "read", "in flight during loss")
    p.lost(cpu=1, count=12)
    p.enter(2, 150, 1, READ, "read", "entered after the loss")
    (flagged,) = p.exit(1, 200, 0, READ, "read", 1)
    (clean,) = p.exit(2, 210, 1, READ, "read", 1)
    assert flagged.kind == PAIR and flagged.note == P.NOTE_LOST
    assert clean.kind == PAIR and clean.note is None
    (resumed,) = p.exit(3, 300, 0, READ, "read", 1)
    assert resumed.note == P.NOTE_BEFORE_LOSS
    p.enter(4, 400, 0, READ, "read", "x")
    p.lost()
    (u,) = p.enter(4, 500, 0, OPENAT, "openat", "y")
    assert u.kind == UNFINISHED and P.NOTE_LOST in u.note and P.NOTE_NEW_ENTER in u.note


def test_exit_group_never_waits_for_an_exit():
    p = SyscallPairer()
    (n,) = p.enter(9, 100, 0, EXIT_GROUP, "exit_group", "args")
    assert (n.kind, n.ret, n.args) == (NO_RETURN, None, "args")
    assert len(p) == 0
    by_nr = SyscallPairer(no_return_nrs={EXIT_GROUP})
    (n,) = by_nr.enter(9, 100, 0, EXIT_GROUP, None, ())
    assert n.kind == NO_RETURN and len(by_nr) == 0


def test_execve_exit_after_comm_change_still_pairs():
    # The exit of a successful execve comes from the new image (new comm) but the same tid.
    p = SyscallPairer()
    p.enter(7, 100, 0, EXECVE, "execve", "argv")
    (pair,) = p.exit(7, 900, 1, EXECVE, "execve", 0)
    assert (pair.kind, pair.ret, pair.duration_ns) == (PAIR, 0, 800)


def test_flush_emits_pending_oldest_first_and_empties():
    p = SyscallPairer()
    p.enter(2, 300, 0, READ, "read", "late")
    p.enter(1, 100, 1, READ, "read", "early")
    records = p.flush()
    assert [(r.kind, r.tid, r.note) for r in records] == \
        [(UNFINISHED, 1, P.NOTE_FLUSH), (UNFINISHED, 2, P.NOTE_FLUSH)]
    assert len(p) == 0 and p.flush() == []


def test_thread_exit_and_bounded_pending_table():
    p = SyscallPairer(max_pending=3)
    for tid in range(3):
        assert p.enter(tid, tid, 0, READ, "read", tid) == ()
    (evicted,) = p.enter(3, 10, 0, READ, "read", 3)
    assert (evicted.tid, evicted.note) == (0, P.NOTE_EVICTED)
    assert len(p) == 3
    (gone,) = p.thread_exit(1)
    assert (gone.tid, gone.note) == (1, P.NOTE_THREAD_EXIT)
    assert p.thread_exit(1) == ()
    assert sorted(p.pending()) == [2, 3]


def test_re_enter_moves_thread_to_the_back_of_the_eviction_order():
    p = SyscallPairer(max_pending=2)
    p.enter(1, 1, 0, READ, "read", "a")
    p.enter(2, 2, 0, READ, "read", "b")
    p.enter(1, 3, 0, OPENAT, "openat", "c")  # tid 1 replaced: now the newest
    (evicted,) = p.enter(3, 4, 0, READ, "read", "d")
    assert evicted.tid == 2


def test_exit_before_enter_timestamps_are_flagged():
    p = SyscallPairer()
    p.enter(1, 500, 0, READ, "read", None)
    (pair,) = p.exit(1, 400, 0, READ, "read", 0)
    assert pair.duration_ns == -100 and pair.note == P.NOTE_TIME_BACKWARDS
