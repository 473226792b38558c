"""rawtrace sched: the tool over hand-built event streams, its flags, and the source choice on fake hosts."""

from __future__ import annotations

import argparse
import io
import json
import threading
import time

import pytest
from fakehost import FakeHost

from rawtrace.cli import main
from rawtrace.emit import Emitter
from rawtrace.parse.format import parse_format
from rawtrace.parse.record import Event, Lost
from rawtrace.sources import Source
from rawtrace.stream import Stream
from rawtrace.tracers import sched

COMMON = """\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

"""
# Bodies of Linux 6.18's formats (x86_64), print fmt shortened to the part rawtrace reads.
FORMATS = {
    "sched_switch": (372, """\
\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prev_prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
\tfield:int next_prio;\toffset:60;\tsize:4;\tsigned:1;

print fmt: "prev_comm=%s prev_state=%s%s ==> next_comm=%s", REC->prev_comm, "R", REC->prev_state & \
(((0x00000000 | 0x00000001 | 0x00000002 | 0x00000004 | 0x00000008 | 0x00000010 | 0x00000020 | 0x00000040) + 1) \
<< 1) ? "+" : "", REC->next_comm
"""),
    "sched_wakeup": (374, """\
\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:int target_cpu;\toffset:32;\tsize:4;\tsigned:1;

print fmt: "comm=%s pid=%d prio=%d target_cpu=%03d", REC->comm, REC->pid, REC->prio, REC->target_cpu
"""),
}
FMT = {name: parse_format(f"name: {name}\nID: {eid}\nformat:\n{COMMON}{body}", system="sched")
       for name, (eid, body) in FORMATS.items()}
MS = 1_000_000


class EventsSource(Source):
    """A recording made of hand-built records (the offline source protocol, nothing read from disk)."""

    kind = "trace.dat"
    clock = "mono"

    def __init__(self, records, tgids=None, proc=None):
        super().__init__()
        self.records = records
        self.tgids = tgids or {}
        self.proc = proc

    def format(self, system, name):
        return FMT.get(name) if system == "sched" else None

    def open(self, events, *, wanted=None):
        for system, name in events:
            self.ids[FMT[name].id] = (system, name)

    def batches(self):
        for rec in self.records:      # one record per batch: interval ticks fall between them
            yield [rec]

    def task_seed(self):
        return self.proc, {}, dict(self.tgids)


def switch(ts, cpu, prev, prev_comm, state, nxt, next_comm):
    return Event(ts, cpu, prev, FMT["sched_switch"].id, FMT["sched_switch"],
                 {"prev_comm": prev_comm, "prev_pid": prev, "prev_prio": 120, "prev_state": state,
                  "next_comm": next_comm, "next_pid": nxt, "next_prio": 120})


def wakeup(ts, cpu, waker, tid, comm):
    return Event(ts, cpu, waker, FMT["sched_wakeup"].id, FMT["sched_wakeup"],
                 {"comm": comm, "pid": tid, "prio": 120, "target_cpu": cpu})


def parse(*argv):
    parser = argparse.ArgumentParser()
    sched.add_arguments(parser)
    return parser.parse_args(list(argv))


def run(records, *argv, tgids=None, proc=None):
    args = parse(*argv)
    out, err = io.StringIO(), io.StringIO()
    source = EventsSource(records, tgids, proc)
    stream = Stream(source, sched.SchedTool, args, Emitter(json=args.json, out=out, err=err),
                    interval=args.interval, count=args.count, pids=args.pid, tids=args.tid, comm=args.comm)
    stream.run()
    return out.getvalue(), err.getvalue()


def recs(text, kind):
    return [r for r in map(json.loads, text.splitlines()) if r["type"] == kind]


# Two hogs (101, 102 of process 100) and a daemon 200 on cpu 0; 300 wakes the daemon (the waker).
SCENE = [
    switch(0, 0, 0, "swapper/0", 0, 101, "hog"),
    wakeup(1 * MS, 0, 300, 102, "hog2"),
    switch(4 * MS, 0, 101, "hog", 0x100, 102, "hog2"),        # 101 preempted (R+), 102 waited 3 ms
    wakeup(5 * MS, 0, 300, 200, "daemon"),                     # woken by 300 while 102 runs
    switch(12 * MS, 0, 102, "hog2", 0x100, 200, "daemon"),     # daemon waited 7 ms
    switch(13 * MS, 0, 200, "daemon", 1, 101, "hog"),          # 101 waited 9 ms (since 4)
    switch(20 * MS, 0, 101, "hog", 1, 102, "hog2"),            # 102 waited 8 ms (since 12)
]
TGIDS = {101: 100, 102: 100, 200: 200, 300: 300}


def test_per_process_json_counts_totals_and_buckets():
    out, _ = run(SCENE, "--json", tgids=TGIDS)
    rows = {r["pid"]: r for r in recs(out, "sched") if r["group"] == "process"}
    assert rows[100]["count"] == 3 and rows[100]["total_ns"] == 20 * MS and rows[100]["max_ns"] == 9 * MS
    assert rows[200]["count"] == 1 and rows[200]["total_ns"] == 7 * MS and rows[200]["comm"] == "daemon"
    assert rows[100]["unit"] == "us"
    # 3000, 8000 and 9000 us
    assert rows[100]["buckets"] == [{"lo": 2048, "hi": 4096, "count": 1}, {"lo": 4096, "hi": 8192, "count": 1},
                                    {"lo": 8192, "hi": 16384, "count": 1}]
    overall = next(r for r in recs(out, "sched") if r["group"] == "all")
    assert overall["count"] == 4 and overall["total_ns"] == 27 * MS
    assert 300 not in rows                                      # the waker is never charged
    summary = recs(out, "summary")[0]
    assert summary["waits"] == 4 and summary["invalidated_by_lost"] == 0


def test_min_ms_keeps_slow_waits_and_ranks_by_time_waited():
    out, _ = run(SCENE, "--min-ms", "5", "-P", tgids=TGIDS)
    assert out.index("pid = 100 hog") < out.index("pid = 200 daemon")
    assert "pid = 100 hog: 2 waits, total 17.000 ms, max 9.000 ms" in out
    assert "     usecs               : count     distribution" in out
    out, _ = run(SCENE, "--min-ms", "8", "--json", "-L", tgids=TGIDS)
    threads = {r["tid"]: r for r in recs(out, "sched") if r["group"] == "thread"}
    assert set(threads) == {101}                               # 9 ms only; the 8 ms wait is not "> 8 ms"
    assert recs(out, "summary")[0]["below_threshold"] == 3


def test_pid_filter_selects_the_task_that_waits_not_the_waker():
    out, _ = run(SCENE, "--json", "-p", "200", tgids=TGIDS)
    rows = [r for r in recs(out, "sched") if r["group"] == "process"]
    assert [(r["pid"], r["count"]) for r in rows] == [(200, 1)]
    out, _ = run(SCENE, "--json", "-n", "hog2", tgids=TGIDS)
    rows = [r for r in recs(out, "sched") if r["group"] == "process"]
    assert [(r["pid"], r["count"], r["total_ns"]) for r in rows] == [(100, 2, 11 * MS)]


def test_list_prints_each_slow_wait_with_the_task_that_ran_instead():
    out, _ = run(SCENE, "--list", "--min-ms", "6", tgids=TGIDS)
    lines = out.splitlines()
    assert lines[0].split() == ["TIME(s)", "COMM", "PID", "TID", "LAT(us)", "PREV_COMM", "PREV_TID", "CPU"]
    assert lines[1].split() == ["0.012000", "daemon", "200", "200", "7000.000", "hog2", "102", "0"]
    assert lines[2].split() == ["0.013000", "hog", "100", "101", "9000.000", "daemon", "200", "0"]
    out, _ = run(SCENE, "--list", "--json", tgids=TGIDS)       # default threshold 10 ms: nothing
    assert recs(out, "sched_wait") == []


def test_lost_events_drop_open_waits_and_say_so():
    scene = SCENE[:4] + [Lost(1, 6 * MS, 12)] + SCENE[4:]
    out, err = run(scene, "--json", tgids=TGIDS)
    summary = recs(out, "summary")[0]
    assert summary["invalidated_by_lost"] == 2                 # 101 (preempted) and 200 (woken) were waiting
    assert summary["waits"] == 2                               # 102's two waits only
    assert "dropped" in err


def test_per_cgroup_groups_processes_by_their_cgroup(tmp_path):
    for pid, path in ((100, "/batch.slice/hogs.scope"), (200, "/system.slice/daemon.service")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(f"0::{path}\n")
    out, _ = run(SCENE, "--per-cgroup", "--json", tgids=TGIDS, proc=tmp_path)
    rows = {r["cgroup"]: r for r in recs(out, "sched") if r["group"] == "cgroup"}
    assert rows["/batch.slice/hogs.scope"]["total_ns"] == 20 * MS
    assert rows["/system.slice/daemon.service"]["count"] == 1
    out, _ = run(SCENE, "--per-cgroup", "--min-ms", "5", tgids=TGIDS, proc=tmp_path)
    assert out.startswith("cgroup = /batch.slice/hogs.scope: 2 waits, total 17.000 ms")
    assert sched.cgroup_of(tmp_path, 999) == "?"


def test_bpftrace_style_histograms():
    out, _ = run(SCENE, "--hist-style", "bpftrace", tgids=TGIDS)
    assert out.splitlines()[:3] == [
        "[2K, 4K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |",
        "[4K, 8K)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
        "[8K, 16K)              1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |"]


def test_comm_is_escaped_in_text_output():
    scene = [wakeup(0, 0, 300, 400, "evil\x1b[2J"), switch(7 * MS, 0, 0, "swapper/0", 0, 400, "evil\x1b[2J")]
    out, _ = run(scene, "--list", "--min-ms", "1")
    assert "\x1b" not in out and "evil\\x1b[2J" in out


def test_intervals_print_and_reset():
    out, _ = run(SCENE, "--json", "0.01", tgids=TGIDS)
    per_interval = {r["interval"]: r["count"] for r in recs(out, "sched") if r["group"] == "all"}
    # The 10 ms tick is taken after the first record past it (12 ms), the last interval ends with the trace.
    assert per_interval == {1: 2, 2: 2, 3: 0}


# -- CLI and source choice ----------------------------------------------------------------------------

def test_help_and_bad_input(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sched", "--help"])
    assert exc.value.code == 0
    assert "TASK_REPORT_MAX" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["sched", "--min-ms", "0"])
    assert exc.value.code == 2
    assert main(["sched", "-P", "-L", "-i", "/nonexistent"]) == 2
    assert main(["sched", "--source", "schedstat", "--list"]) == 2
    assert "no --list" in capsys.readouterr().err


def put_thread(root, pid, tid, comm, delay_ns, slices):
    task = root / "proc" / str(pid) / "task" / str(tid)
    task.mkdir(parents=True, exist_ok=True)
    (task / "schedstat").write_text(f"1000 {delay_ns} {slices}\n")
    (task / "comm").write_text(comm + "\n")
    (root / "proc" / str(pid) / "comm").write_text(comm + "\n")


def run_sampling(root, *argv, capsys):
    """Run the CLI on a fake tree while a thread makes 'busy' wait 40 ms more after the baseline."""
    def grow():
        time.sleep(0.15)
        put_thread(root, 10, 10, "busy", 40 * MS, 9)
    thread = threading.Thread(target=grow)
    thread.start()
    rc = main(["--root", str(root), "sched", *argv])
    thread.join()
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_schedstat_fallback_chosen_under_confidentiality_lockdown(tmp_path, capsys):
    root = FakeHost(lockdown="confidentiality", secure_boot="enabled", tracefs="empty",
                    dmesg=["Tracing disabled due to lockdown"]).build(tmp_path / "host")
    put_thread(root, 10, 10, "busy", 0, 1)
    put_thread(root, 20, 20, "calm", 5, 1)
    rc, out, err = run_sampling(root, "-d", "0.4", "--json", capsys=capsys)
    assert rc == 0, err
    assert "falling back to /proc/PID/task/TID/schedstat" in err and "lockdown" in err
    assert "not a histogram of single waits" in err
    rows = recs(out, "sched_schedstat")
    assert rows[0]["pid"] == 10 and rows[0]["comm"] == "busy" and rows[0]["wait_ns"] == 40 * MS
    assert rows[0]["timeslices"] == 8 and rows[0]["avg_wait_ns"] == 5 * MS
    assert recs(out, "psi")[0]["avg10"] == 0.0
    assert main(["--root", str(root), "sched", "--list"]) == 2     # per-wakeup output needs tracefs


def test_source_schedstat_forced_text(tmp_path, capsys):
    root = FakeHost().build(tmp_path / "host")
    put_thread(root, 10, 10, "busy", 0, 1)
    rc, out, err = run_sampling(root, "--source", "schedstat", "-d", "0.4", capsys=capsys)
    assert rc == 0, err
    assert "falling back" not in err
    assert out.splitlines()[0].split()[:4] == ["PID", "COMM", "WAIT", "ms"]
    assert out.splitlines()[2].split()[:3] == ["10", "busy", "40.000"]
    assert "cpu pressure (PSI some)" in out


def test_in_kernel_not_supported_by_this_kernel(tmp_path, capsys):
    features = {"syscalls", "sched", "uprobes", "fanotify", "schedstat", "psi"}   # no hist triggers
    root = FakeHost(features=frozenset(features)).build(tmp_path / "host")
    rc = main(["--root", str(root), "sched", "--in-kernel", "-d", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "not supported by this kernel" in err
    assert not list((root / "sys/kernel/tracing/instances").iterdir())


def test_in_kernel_path_on_a_hist_trigger_kernel(tmp_path, capsys, monkeypatch):
    """The --in-kernel run on a fake kernel that has hist triggers: recipe written, hist read and binned,
    everything removed again."""
    import shutil

    from test_sched_histtrigger import HIST, HistKernel

    from rawtrace.tracefs import histtrigger
    from rawtrace.tracefs.instance import Instance

    root = FakeHost().build(tmp_path / "host")
    tracefs = root / "sys/kernel/tracing"
    (tracefs / "synthetic_events").write_text("")
    instance_dir = tracefs / "instances/rt"

    def create(cls, tracefs_path, name=None):
        for event in ("sched_wakeup", "sched_wakeup_new", "sched_switch"):
            directory = instance_dir / "events/sched" / event
            directory.mkdir(parents=True)
            (directory / "trigger").write_text("")
            (directory / "hist").write_text("")
        (instance_dir / "tracing_on").write_text("0\n")
        inst = Instance(tracefs_path, "rt")
        inst._created = True
        return inst

    kernel = HistKernel(tracefs)
    monkeypatch.setattr(Instance, "create", classmethod(create))
    monkeypatch.setattr(Instance, "destroy", lambda self: shutil.rmtree(self.path, ignore_errors=True))
    monkeypatch.setattr(histtrigger, "KernelFiles", lambda: kernel)

    def fill():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            hist = list(instance_dir.glob("events/synthetic/*/hist"))
            if hist:
                hist[0].write_text(HIST)
                return
            time.sleep(0.02)
    thread = threading.Thread(target=fill)
    thread.start()
    rc = main(["--root", str(root), "sched", "--in-kernel", "-d", "0.3", "-L", "--json"])
    thread.join()
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    threads = {r["tid"]: r for r in recs(captured.out, "sched") if r["group"] == "thread"}
    assert threads[101]["count"] == 3 and threads[101]["total_ns"] == (3 + 3 + 6000) * 1000
    assert threads[101]["max_ns"] == 6_000_000 and threads[202]["count"] == 7
    assert "4 waits dropped" in captured.err                   # the hist file's Dropped: 4
    assert [line for _, line in kernel.writes if line.startswith("!")][-1].startswith("!rawtrace_")
    assert (tracefs / "synthetic_events").read_text() == ""
    assert not instance_dir.exists()
