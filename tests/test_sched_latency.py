"""rawtrace.sched_latency on hand-built event sequences and against a simulated scheduler's ground truth."""

from __future__ import annotations

import random
from types import SimpleNamespace

from rawtrace.sched_latency import SchedLatency, Wait, task_report_max

R, R_PLUS, S, D, I_IDLE, X_DEAD = 0, 0x100, 0x1, 0x2, 0x80, 0x10

# sched_switch print fmt of Linux 6.18 (x86_64), as in events/sched/sched_switch/format on this VM.
PRINT_FMT_618 = ('"prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s next_pid=%d '
                 'next_prio=%d", REC->prev_comm, REC->prev_pid, REC->prev_prio, (REC->prev_state & '
                 '((((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 '
                 '| 0x00000040) + 1) << 1) - 1)) ? __print_flags(REC->prev_state & ((((0x00000000 | 0x00000001 | '
                 '0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) << 1) - 1), '
                 '"|", { 0x00000001, "S" }, { 0x00000002, "D" }) : "R", REC->prev_state & (((0x00000000 | '
                 '0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) '
                 '<< 1) ? "+" : "", REC->next_comm, REC->next_pid, REC->next_prio')


def sw(m: SchedLatency, ts, cpu, prev, state, nxt, prev_comm="prev", next_comm="next"):
    return m.switch(ts, cpu, prev, prev_comm, state, nxt, next_comm)


def test_wakeup_then_switch_in_is_one_wait_with_the_task_that_ran_before():
    m = SchedLatency()
    m.wakeup(1000, 42, 1)
    assert sw(m, 5000, 1, 7, S, 42, "bash", "worker") == Wait(42, "worker", 1000, 5000, 1, 7, "bash", "wakeup")
    assert m.waits == 1 and m.open_waits() == 0


def test_preempted_task_r_plus_waits_from_its_switch_out():
    m = SchedLatency()
    assert sw(m, 100, 0, 10, R_PLUS, 11) is None       # 10 preempted: runnable, on cpu0's queue
    wait = sw(m, 900, 0, 11, S, 10)
    assert (wait.tid, wait.start, wait.end, wait.cause, wait.prev_tid) == (10, 100, 900, "preempted", 11)


def test_plain_r_yield_also_waits_but_sleeping_states_do_not():
    m = SchedLatency()
    sw(m, 100, 0, 10, R, 11)
    assert sw(m, 300, 0, 11, R, 10).wait_ns == 200
    for state in (S, D, I_IDLE, X_DEAD, S | 0x4):
        m2 = SchedLatency()
        sw(m2, 100, 0, 10, state, 11)
        assert sw(m2, 300, 0, 11, S, 10) is None, hex(state)


def test_report_max_read_from_the_print_fmt_decides_what_preempted_means():
    assert task_report_max(PRINT_FMT_618) == 0x100
    assert task_report_max('"x", REC->prev_state & 2048 ? "+" : ""') == 2048   # pre-4.14 TASK_STATE_MAX
    assert task_report_max(None) == 0x100
    assert task_report_max('"x", REC->prev_state & (__import__("os")) ? "+" : ""') == 0x100
    assert task_report_max('"x", REC->prev_state & (1 +) ? "+" : ""') == 0x100
    old = SchedLatency(report_max=2048)
    sw(old, 100, 0, 10, 2048, 11)                      # preempted on an old kernel: 2048, masked by 2047
    assert sw(old, 200, 0, 11, S, 10).wait_ns == 100


def test_wakeup_of_an_already_runnable_task_keeps_the_earlier_start():
    m = SchedLatency()
    sw(m, 100, 0, 10, R_PLUS, 11)                      # preempted (e.g. between set_current_state and schedule)
    m.wakeup(400, 10, 0)                               # ttwu_runnable: still queued
    m.wakeup(450, 10, 1)
    wait = sw(m, 1000, 0, 11, S, 10)
    assert (wait.start, wait.wait_ns) == (100, 900)


def test_wakeup_of_a_running_task_is_not_a_wait():
    m = SchedLatency()
    sw(m, 100, 0, 11, S, 10)                           # 10 runs
    m.wakeup(150, 10, 0)                               # woken before it slept: queues nothing
    sw(m, 200, 0, 10, S, 11)                           # then it sleeps for real
    assert sw(m, 300, 1, 12, S, 10) is None            # switched in without a wakeup seen: start unknown
    assert m.waits == 0 and m.unknown_start >= 1


def test_migration_moves_the_queue_and_the_wait_goes_on():
    m = SchedLatency()
    m.wakeup(1000, 42, 0)
    m.migrate(42, 1)
    assert m.waiting[42][1] == 1
    wait = sw(m, 4000, 1, 0, R, 42)                    # runs on cpu1, after the idle task
    assert (wait.cpu, wait.wait_ns, wait.prev_tid) == (1, 3000, 0)
    m.migrate(99, 1)                                   # a task not waiting: nothing happens
    assert 99 not in m.waiting


def test_pid_reuse_a_new_task_resets_the_interval():
    m = SchedLatency()
    m.wakeup(100, 300, 0)                              # an old task 300, its end never seen
    m.wakeup_new(5000, 300, 1)                         # a new task got tid 300
    wait = sw(m, 5200, 1, 0, R, 300)
    assert (wait.start, wait.cause) == (5000, "new")
    m2 = SchedLatency()
    m2.wakeup(100, 300, 0)
    m2.exit(300)                                       # exit forgets it, a later wakeup starts fresh
    m2.wakeup(7000, 300, 0)
    assert sw(m2, 7100, 0, 0, R, 300).wait_ns == 100


def test_lost_events_in_the_middle_of_a_wait_invalidate_every_open_interval():
    m = SchedLatency()
    m.wakeup(100, 42, 0)
    m.wakeup(110, 43, 1)
    sw(m, 120, 0, 44, R_PLUS, 45)
    assert m.lost(1, 17) == 3                          # a gap on cpu1 drops the waits on cpu0 too
    assert sw(m, 500, 0, 45, S, 42) is None
    assert sw(m, 510, 1, 0, R, 43) is None
    assert (m.invalidated, m.lost_gaps, m.waits) == (3, 1, 0)
    sw(m, 550, 0, 42, S, 45)                           # 42 sleeps again
    m.wakeup(600, 42, 0)                               # after the gap, waits are measured again
    assert sw(m, 650, 0, 45, S, 42).wait_ns == 50


def test_a_switch_in_missing_from_the_trace_drops_the_wait_and_is_counted():
    m = SchedLatency()
    sw(m, 100, 1, 10, R_PLUS, 11)                      # 10 waits from 100
    # the switch 12 -> 10 at 300 is not in the trace; 10 runs and is preempted again at 900
    sw(m, 900, 1, 10, R_PLUS, 12)
    assert m.unseen_switch_in == 1
    assert sw(m, 1000, 1, 12, S, 10).wait_ns == 100    # charged from 900, not from 100
    sw(m, 1100, 1, 10, S, 12)                          # a normal switch-out: not counted
    assert m.unseen_switch_in == 1


def test_idle_task_is_never_charged():
    m = SchedLatency()
    m.wakeup(10, 0, 0)
    assert sw(m, 50, 0, 42, R_PLUS, 0) is None         # switching to idle: no wait for pid 0
    assert 0 not in m.waiting and 0 not in m.running
    assert sw(m, 90, 0, 0, R, 42).wait_ns == 40        # idle switched out "R": not a wait either
    assert 0 not in m.waiting


def test_clock_disorder_never_gives_a_negative_wait():
    m = SchedLatency()
    m.wakeup(1000, 42, 1)
    assert sw(m, 990, 1, 0, R, 42).wait_ns == 0


def test_record_adapters_read_the_tracepoint_fields():
    m = SchedLatency()
    m.on_wakeup_new(SimpleNamespace(ts=10, cpu=0, fields={"comm": "a", "pid": 5, "target_cpu": 1}))
    m.on_migrate(SimpleNamespace(ts=11, cpu=1, fields={"pid": 5, "orig_cpu": 1, "dest_cpu": 0}))
    wait = m.on_switch(SimpleNamespace(ts=30, cpu=0, fields={
        "prev_comm": "b", "prev_pid": 6, "prev_state": R_PLUS, "next_comm": "a", "next_pid": 5}))
    assert wait == Wait(5, "a", 10, 30, 0, 6, "b", "new")
    m.on_wakeup(SimpleNamespace(ts=40, cpu=0, fields={"comm": "b", "pid": 6, "target_cpu": 0}))
    assert m.waiting[6][0] == 30                        # 6 was preempted at 30 and is still queued
    m.on_exit(SimpleNamespace(ts=50, cpu=0, fields={"comm": "b", "pid": 6}))
    assert 6 not in m.waiting


def _simulate(seed: int, steps: int = 3000):
    """A two-CPU scheduler model: returns (events, true waits). Each CPU has a FIFO run queue; tasks are
    woken onto a queue, preempted (R+), yield (R), block (S/D), migrate while queued, fork new tasks."""
    rng = random.Random(seed)
    ncpu = 2
    current = [0] * ncpu
    queues: list[list[int]] = [[] for _ in range(ncpu)]
    sleeping = set(range(100, 112))
    enqueued_at: dict[int, int] = {}
    events, truth = [], []
    next_tid = 200
    ts = 0
    for _ in range(steps):
        ts += rng.randrange(1, 5000)
        action = rng.random()
        cpu = rng.randrange(ncpu)
        if action < 0.3 and sleeping:
            tid = rng.choice(sorted(sleeping))
            sleeping.discard(tid)
            queues[cpu].append(tid)
            enqueued_at[tid] = ts
            events.append(("wakeup", ts, tid, cpu))
        elif action < 0.35:
            tid, next_tid = next_tid, next_tid + 1
            queues[cpu].append(tid)
            enqueued_at[tid] = ts
            events.append(("wakeup_new", ts, tid, cpu))
        elif action < 0.45 and queues[cpu]:
            tid = queues[cpu].pop(rng.randrange(len(queues[cpu])))
            dest = 1 - cpu
            queues[dest].append(tid)
            events.append(("migrate", ts, tid, dest))
        elif action < 0.5 and current[cpu] and rng.random() < 0.5:
            events.append(("wakeup", ts, current[cpu], cpu))   # wakeup of a running task
        else:
            prev = current[cpu]
            state = rng.choice((R, R_PLUS, S, D)) if prev else R
            if prev and state in (R, R_PLUS):
                queues[cpu].append(prev)
                enqueued_at[prev] = ts
            elif prev:
                sleeping.add(prev)
            nxt = queues[cpu].pop(0) if queues[cpu] else 0
            current[cpu] = nxt
            events.append(("switch", ts, cpu, prev, state, nxt))
            if nxt:
                truth.append((nxt, enqueued_at.pop(nxt), ts, cpu, prev))
    return events, truth


def test_random_schedules_give_exactly_the_true_waits():
    for seed in range(20):
        events, truth = _simulate(seed)
        m = SchedLatency()
        got = []
        for ev in events:
            kind = ev[0]
            if kind == "wakeup":
                m.wakeup(ev[1], ev[2], ev[3])
            elif kind == "wakeup_new":
                m.wakeup_new(ev[1], ev[2], ev[3])
            elif kind == "migrate":
                m.migrate(ev[2], ev[3])
            else:
                _, ts, cpu, prev, state, nxt = ev
                wait = m.switch(ts, cpu, prev, "p", state, nxt, "n")
                if wait:
                    got.append((wait.tid, wait.start, wait.end, wait.cpu, wait.prev_tid))
        # Tasks running when the model starts (none here) would be unknown; everything else must match.
        assert got == truth, seed
        assert m.waits == len(truth) > 100
        assert m.unseen_switch_in == 0 and m.invalidated == 0
