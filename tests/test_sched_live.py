"""Live: rawtrace sched against the kernel's own run_delay accounting, with CPU hogs pinned to one CPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

pytestmark = pytest.mark.live

# A child that pins itself to a CPU, takes a distinctive name, waits (asleep) for "go" on stdin, then spins
# ("hog") or naps ("idle") for SECONDS, says "done" and sleeps again until stdin closes. The idle one is
# SCHED_FIFO: other work on this shared machine runs on its CPU too, and it must not wait behind that.
CHILD = r"""
import os, sys, time
cpu, name, mode, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
os.sched_setaffinity(0, {cpu})
if mode == "idle":
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
with open("/proc/self/comm", "w") as f:
    f.write(name)
print("ready", flush=True)
sys.stdin.buffer.read(1)
end = time.monotonic() + seconds
if mode == "hog":
    while time.monotonic() < end:
        pass
else:
    while time.monotonic() < end:
        sum(range(2000))
        time.sleep(0.01)
print("done", flush=True)
sys.stdin.buffer.read(1)
"""

SECONDS = 2.0


def schedstat(pid: int) -> tuple[int, int]:
    """(run_delay ns, pcount) of the thread."""
    with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
        fields = f.read().split()
    return int(fields[1]), int(fields[2])


def child(cpu: int, name: str, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(cpu), name, mode, str(SECONDS)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    return proc


TRACE_CMD_HERE = ROOT.parent / "shared" / "tools" / "trace-cmd-here"
TWO_CPUS = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")


def contention(start, stop):
    """Hogs on the last CPU, the idle child on the first; `start(kids, idle_cpu)` starts a tracer and
    returns once it records, `stop(handle)` ends it after the kernel's counters were read. Returns
    (kids, schedstat before, schedstat after, what stop returned)."""
    cpus = sorted(os.sched_getaffinity(0))
    hog_cpu, idle_cpu = cpus[-1], cpus[0]
    # Three spinners share one CPU: each waits about two slices (> 5 ms) at a time.
    kids = {name: child(hog_cpu, name, "hog") for name in ("rqhog_a", "rqhog_b", "rqhog_c")}
    kids["rqidle"] = child(idle_cpu, "rqidle", "idle")
    handle = None
    try:
        handle = start(kids, idle_cpu)
        before = {name: schedstat(proc.pid) for name, proc in kids.items()}
        for proc in kids.values():
            proc.stdin.write(b"g")
            proc.stdin.flush()
        for proc in kids.values():
            assert proc.stdout.readline() == b"done\n"
        time.sleep(0.2)                          # every child asleep again: run_delay no longer grows
        after = {name: schedstat(proc.pid) for name, proc in kids.items()}
        result = stop(handle)
    finally:
        if isinstance(handle, subprocess.Popen) and handle.poll() is None:
            handle.kill()
            handle.wait()
        for proc in kids.values():
            proc.kill()
            proc.wait()
    return kids, before, after, result


def on_cpu(cpu: int):
    # The tracer runs beside the idle child, away from the hogs' CPU (the test has no threads).
    return lambda: os.sched_setaffinity(0, {cpu})


def check_against_run_delay(kids, before, after, out: bytes) -> list[str]:
    """The oracle: per thread, rawtrace's waits against the growth of the kernel's run_delay/pcount."""
    records = [json.loads(line) for line in out.decode().splitlines()]
    summary = next(r for r in records if r["type"] == "summary")
    assert summary["lost"] == 0 and summary["invalidated_by_lost"] == 0, summary
    threads = {r["tid"]: r for r in records if r["type"] == "sched" and r["group"] == "thread"}
    report = [f"summary: {summary}"]
    for name, proc in kids.items():
        kernel = after[name][0] - before[name][0]
        slices = after[name][1] - before[name][1]
        row = threads.get(proc.pid)
        measured, count = (row["total_ns"], row["count"]) if row else (0, 0)
        assert row is None or row["comm"] == name
        report.append(f"{name}: run_delay grew {kernel / 1e6:.3f} ms in {slices} timeslices, rawtrace measured "
                      f"{measured / 1e6:.3f} ms in {count} waits (max {row['max_ns'] / 1e6 if row else 0:.3f} ms), "
                      f"{(measured - kernel) / max(kernel, 1) * 100:+.2f}%")
        # One wait per timeslice the kernel counted; a few may be missing where this kernel does not record
        # the switch that ended them (summary's unseen_switch_in: dropped, never charged).
        assert slices - 3 <= count <= slices, report
        if name.startswith("rqhog"):
            assert kernel > 0.6e9                 # three spinners on one CPU wait about 2/3 of the time
            assert abs(measured - kernel) <= 0.03 * kernel, report
            assert row["max_ns"] > 5e6, report
        else:
            # Never starved on its own CPU. Its waits are short wakeup-to-run waits, for which the kernel's
            # figure is low: a wakeup that preempts sets RQCF_REQ_SKIP, so __schedule() does not update the
            # rq clock and run_delay leaves out the time from the wakeup to the switch (measured here: ~10 us
            # a wait, up to 0.5 ms when the preempted task was in the kernel; once, in a CI run, 4.1 ms behind
            # the tracer's own work on that CPU). Hence a bound, not equality: the longest wait on top of it.
            assert row is None or row["max_ns"] < 5e6, report
            assert measured <= kernel + count * 30_000 + 2e6 + (row["max_ns"] if row else 0), report
    print("\n".join(report))
    return report


@TWO_CPUS
def test_live_waits_equal_the_kernels_run_delay(live_tracefs):
    def start(kids, idle_cpu):
        cmd = [sys.executable, "-m", "rawtrace", "sched", "-L", "--json"]
        for proc in kids.values():
            cmd += ["-p", str(proc.pid)]
        rawtrace = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    preexec_fn=on_cpu(idle_cpu))  # noqa: PLW1509
        line = rawtrace.stderr.readline().decode()
        assert "Tracing" in line, line + rawtrace.stderr.read().decode()
        return rawtrace

    def stop(rawtrace):
        rawtrace.send_signal(signal.SIGINT)
        out, err = rawtrace.communicate(timeout=60)
        assert rawtrace.returncode == 0, err.decode()
        return out

    kids, before, after, out = contention(start, stop)
    check_against_run_delay(kids, before, after, out)


@TWO_CPUS
@pytest.mark.skipif(not TRACE_CMD_HERE.exists() or shutil.which("trace-cmd") is None, reason="needs trace-cmd")
def test_offline_recording_gives_the_same_waits(live_tracefs, tmp_path):
    """trace-cmd records the sched events; rawtrace sched -i reads the file; same oracle."""
    dat = tmp_path / "sched.dat"
    name = f"rtsched{os.getpid()}"

    def start(kids, idle_cpu):
        instance = live_tracefs / "instances" / name
        cmd = ["sh", str(TRACE_CMD_HERE), "record", "-B", name, "-o", str(dat)]
        for event in ("sched_switch", "sched_wakeup", "sched_wakeup_new", "sched_migrate_task",
                      "sched_process_exit"):
            cmd += ["-e", f"sched:{event}"]
        # Its own session: SIGINT must reach trace-cmd behind the wrapper's shell and unshare.
        recorder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                    preexec_fn=on_cpu(idle_cpu))  # noqa: PLW1509
        # trace-cmd's "Hit Ctrl^C" line is block-buffered on a pipe: wait for the instance to record instead.
        deadline = time.monotonic() + 30
        while not ((instance / "tracing_on").exists() and (instance / "tracing_on").read_text().strip() == "1"
                   and (instance / "events/sched/sched_switch/enable").read_text().strip() == "1"):
            assert recorder.poll() is None and time.monotonic() < deadline, recorder.stderr.read().decode()
            time.sleep(0.05)
        time.sleep(0.3)
        return recorder

    def stop(recorder):
        os.killpg(recorder.pid, signal.SIGINT)
        try:
            recorder.communicate(timeout=60)
        finally:
            if recorder.poll() is None:
                os.killpg(recorder.pid, signal.SIGKILL)
                recorder.wait()
            if (live_tracefs / "instances" / name).exists():   # trace-cmd removes it; never leave it
                (live_tracefs / "instances" / name / "tracing_on").write_text("0")
                (live_tracefs / "instances" / name).rmdir()
        return recorder.returncode

    kids, before, after, rc = contention(start, stop)
    assert rc in (0, -signal.SIGINT) and dat.exists() and dat.stat().st_size > 0   # the wrapper shell may die of the SIGINT
    cmd = [sys.executable, "-m", "rawtrace", "sched", "-i", str(dat), "-L", "--json"]
    for proc in kids.values():
        cmd += ["-p", str(proc.pid)]
    done = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    check_against_run_delay(kids, before, after, done.stdout)


def test_in_kernel_says_not_supported_by_this_kernel(live_tracefs):
    if (live_tracefs / "synthetic_events").exists():
        pytest.skip("this kernel has synthetic events")
    done = subprocess.run([sys.executable, "-m", "rawtrace", "sched", "--in-kernel", "-d", "1"], check=False, cwd=ROOT,
                          capture_output=True, timeout=60)
    assert done.returncode == 2
    assert "not supported by this kernel" in done.stderr.decode()
