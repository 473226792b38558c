"""rawtrace.schedstat: the lockdown fallback sampler on fake /proc trees, and the choice of source."""

from __future__ import annotations

import shutil

from fakehost import FakeHost

from rawtrace.host import Host
from rawtrace.schedstat import (
    Pressure,
    SchedstatSampler,
    ThreadDelta,
    parse_pressure,
    parse_schedstat,
    rank,
    tracefs_refusal,
)

TRACING_DISABLED = "Tracing disabled due to lockdown"


def put_thread(root, pid, tid, comm, run_ns, delay_ns, slices):
    task = root / "proc" / str(pid) / "task" / str(tid)
    task.mkdir(parents=True, exist_ok=True)
    (task / "schedstat").write_text(f"{run_ns} {delay_ns} {slices}\n")
    (task / "comm").write_text(comm + "\n")


def put_psi(root, total_us, avg10="1.50"):
    (root / "proc/pressure").mkdir(parents=True, exist_ok=True)
    (root / "proc/pressure/cpu").write_text(f"some avg10={avg10} avg60=0.80 avg300=0.10 total={total_us}\n"
                                            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


class Clock:
    def __init__(self):
        self.now = 1_000_000_000

    def __call__(self):
        self.now += 1_000_000_000
        return self.now


def test_parsers():
    assert parse_schedstat("2174529 56183 12\n") == (2174529, 56183, 12)
    assert parse_schedstat("garbage") is None and parse_schedstat("1 2 x") is None
    psi = parse_pressure("some avg10=0.25 avg60=0.10 avg300=0.00 total=1234\nfull avg10=0.00 total=7\n")
    assert psi["some"] == {"avg10": 0.25, "avg60": 0.10, "avg300": 0.0, "total": 1234}
    assert psi["full"]["total"] == 7


def test_sampler_reports_deltas_new_and_exited_threads_and_psi(tmp_path):
    root = FakeHost(lockdown="confidentiality", tracefs="empty").build(tmp_path / "host")
    put_thread(root, 100, 100, "daemon", 5_000, 1_000, 3)
    put_thread(root, 100, 101, "daemon-io", 1_000, 500, 1)
    put_thread(root, 200, 200, "idle", 10, 10, 1)
    put_thread(root, 300, 300, "short", 10, 10, 1)
    put_psi(root, 1000)
    sampler = SchedstatSampler(Host(root), clock=Clock())
    sampler.open()                                          # baseline: nothing before it is reported
    assert sampler.schedstat_available and sampler.psi_available
    put_thread(root, 100, 100, "daemon", 9_000, 8_000_000, 10)
    put_thread(root, 100, 101, "daemon-io", 1_000, 500, 1)  # did nothing
    put_thread(root, 500, 501, "worker", 0, 0, 0)
    (root / "proc/500/comm").write_text("server\n")
    put_thread(root, 400, 400, "newborn", 700, 300, 2)      # appeared during the interval
    put_thread(root, 200, 200, "idle", 5, 2, 1)             # counters went back: tid reused
    shutil.rmtree(root / "proc/300")                        # exited
    put_psi(root, 4500)
    batch = sampler.sample()
    deltas = {d.tid: d for d in batch if isinstance(d, ThreadDelta)}
    assert deltas[100] == ThreadDelta(deltas[100].ts, 100, 100, "daemon", 7_999_000, 7, 4_000, False, "daemon")
    assert 101 not in deltas
    assert deltas[400].new and deltas[400].delay_ns == 300 and deltas[400].slices == 2
    assert deltas[200].new and deltas[200].delay_ns == 2
    assert sampler.exited == 1
    assert deltas[501].new and deltas[501].process_comm == "server"       # named by /proc/PID/comm
    assert [r.comm for r in rank(batch) if r.pid == 500] == ["server"]
    pressure = [p for p in batch if isinstance(p, Pressure)]
    assert len(pressure) == 1 and pressure[0].stall_us == 3500 and pressure[0].avg10 == 1.5
    quiet = sampler.sample()                                # nothing moved: only the PSI record
    assert [type(r) for r in quiet] == [Pressure] and quiet[0].stall_us == 0


def test_pid_filter_and_missing_psi(tmp_path):
    root = tmp_path / "host"
    put_thread(root, 100, 100, "a", 1, 1, 1)
    put_thread(root, 200, 200, "b", 1, 1, 1)
    sampler = SchedstatSampler(Host(root), pids={200}, clock=Clock())
    sampler.open()
    put_thread(root, 100, 100, "a", 2, 50, 2)
    put_thread(root, 200, 200, "b", 2, 70, 2)
    batch = sampler.sample()
    assert [(d.pid, d.delay_ns) for d in batch] == [(200, 69)]
    assert not sampler.psi_available


def test_rank_sums_per_process_most_waiting_first():
    recs = [ThreadDelta(1, 10, 11, "worker", 300, 3, 0, False, "main"), ThreadDelta(1, 10, 10, "main", 100, 1, 0),
            ThreadDelta(1, 20, 20, "other", 350, 7, 0), Pressure(1, 0, 0, 0, 0, 0)]
    rows = rank(recs)
    assert [(r.pid, r.comm, r.delay_ns, r.slices, r.threads) for r in rows] == [
        (10, "main", 400, 4, 2), (20, "other", 350, 7, 1)]
    assert rows[0].avg_wait_ns == 100
    per_thread = rank(recs, per_thread=True)
    assert [(r.pid, r.tid, r.delay_ns) for r in per_thread] == [(20, 20, 350), (10, 11, 300), (10, 10, 100)]


def test_batches_until_stop(tmp_path):
    root = tmp_path / "host"
    put_thread(root, 1, 1, "init", 1, 1, 1)
    sampler = SchedstatSampler(Host(root), period=0.001, clock=Clock())
    got = []
    for batch in sampler.batches():
        got.append(batch)
        put_thread(root, 1, 1, "init", 1, 1 + len(got), 1 + len(got))
        if len(got) == 3:
            sampler.stop()
    assert got[0] == [] and [b[0].delay_ns for b in got[1:]] == [1, 1]
    sampler.close()
    sampler.close()


def test_confidentiality_lockdown_refuses_tracefs_so_schedstat_is_chosen(tmp_path):
    root = FakeHost(lockdown="confidentiality", secure_boot="enabled", tracefs="empty",
                    dmesg=[TRACING_DISABLED]).build(tmp_path / "locked")
    reason = tracefs_refusal(Host(root))
    assert reason and "lockdown" in reason
    open_root = FakeHost().build(tmp_path / "open")
    assert tracefs_refusal(Host(open_root)) is None
