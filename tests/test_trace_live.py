"""Live tracing end to end: exact event counts and values, busy CPUs, names of short-lived exec'd processes,
--pid with forks, cleanup on signals, and reset of a dead run's instance."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from rawtrace.session import LostEvents, Session, TraceEvent
from rawtrace.tracefs.instance import instance_name, pid_namespace, process_starttime

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
O_FLAGS = os.O_RDONLY | os.O_CLOEXEC
MARK_FD = 87           # the workload opens relative to this directory fd: marks its calls among the others
N = 137

OPENER = r"""
import os, sys
path, count, mark = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.dup2(os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY), mark)
name = os.path.basename(path)
sys.stdin.read(1)
for _ in range(count):
    try:
        fd = os.open(name + ".missing", os.O_RDONLY | os.O_CLOEXEC, dir_fd=mark)
    except FileNotFoundError:
        pass
for _ in range(count):
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=mark)
    os.close(fd)
"""


def start_waiting_child(code: str, *args: str) -> subprocess.Popen:
    """A Python child that does nothing until a byte arrives on its stdin (so its pid is known first)."""
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE)


def run_traced(session: Session, child: subprocess.Popen, timeout: float = 30) -> list:
    """Release the child, collect every event until it has exited and the buffers are drained."""
    def release_then_stop():
        child.stdin.write(b"g")
        child.stdin.close()
        child.wait(timeout)
        time.sleep(0.2)
        session.stop()
    helper = threading.Thread(target=release_then_stop)
    helper.start()
    try:
        return list(session.events(duration=timeout))
    finally:
        helper.join()


def check_openat_events(items: list, pid: int, path: Path) -> None:
    events = [e for e in items if isinstance(e, TraceEvent) and e.pid == pid]
    assert not [e for e in items if isinstance(e, LostEvents)], "events were lost"
    enters = [e for e in events if e.event == "sys_enter_openat" and e.fields["dfd"] == MARK_FD]
    assert len(enters) == 2 * N
    # Every marked enter is directly followed, in this thread's stream, by its exit.
    stream = [e for e in events if e.event in ("sys_enter_openat", "sys_exit_openat")]
    rets = []
    for i, ev in enumerate(stream):
        if ev.event == "sys_enter_openat" and ev.fields["dfd"] == MARK_FD:
            assert ev.fields["flags"] == O_FLAGS
            assert stream[i + 1].event == "sys_exit_openat"
            assert stream[i + 1].ts >= ev.ts
            rets.append(stream[i + 1].fields["ret"])
    assert rets[:N] == [-2] * N                                          # -ENOENT
    assert all(r >= 3 for r in rets[N:]) and len(set(rets[N:])) <= 2     # the same low fd, reused
    exits = [e for e in stream if e.event == "sys_exit_openat"]
    assert len(exits) == len([e for e in stream if e.event == "sys_enter_openat"])
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert all(e.comm == "python3" or e.comm.startswith("python") for e in enters)


@pytest.mark.parametrize("spool", [False, True], ids=["direct", "spool"])
def test_exact_openat_count_and_values(live_tracefs, tmp_path, spool):
    path = tmp_path / f"rtopen-{os.getpid()}"
    path.write_text("x")
    child = start_waiting_child(OPENER, str(path), str(N), str(MARK_FD))
    try:
        with Session(["syscalls:sys_enter_openat", "syscalls:sys_exit_openat"], pid=child.pid, pair=False,
                     spool=spool) as s:
            name = s.instance.name
            assert (live_tracefs / "instances" / name).is_dir()
            spooler = s._source.child if spool else None
            items = run_traced(s, child)
        assert not (live_tracefs / "instances" / name).exists()
        assert s.summary.spooled == spool
        if spooler is not None:
            assert not Path(f"/proc/{spooler}").exists()
    finally:
        child.kill()
        child.wait()
    check_openat_events(items, child.pid, path)


@pytest.mark.parametrize("spool", [False, True], ids=["direct", "spool"])
def test_exact_count_with_both_cpus_busy(live_tracefs, tmp_path, spool):
    path = tmp_path / f"rtbusy-{os.getpid()}"
    path.write_text("x")
    spinners = []
    for cpu in sorted(os.sched_getaffinity(0)):
        spin = subprocess.Popen([sys.executable, "-c",
                                 f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
        spinners.append(spin)
    child = start_waiting_child(OPENER, str(path), str(N), str(MARK_FD))
    try:
        with Session(["syscalls:sys_enter_openat", "syscalls:sys_exit_openat"], pid=child.pid, pair=False,
                     spool=spool) as s:
            items = run_traced(s, child)
    finally:
        for proc in spinners + [child]:
            proc.kill()
            proc.wait()
    check_openat_events(items, child.pid, path)


def test_paired_syscalls_render_like_strace(live_tracefs, tmp_path):
    path = tmp_path / f"rtpair-{os.getpid()}"
    path.write_text("x")
    child = start_waiting_child(OPENER, str(path), str(N), str(MARK_FD))
    try:
        with Session(["syscalls:sys_enter_openat", "syscalls:sys_exit_openat"], pid=child.pid) as s:
            items = run_traced(s, child)
    finally:
        child.kill()
        child.wait()
    ours = [e for e in items if isinstance(e, TraceEvent) and e.fields.get("dfd") == MARK_FD]
    assert len(ours) == 2 * N
    missing = [e.syscall for e in ours[:N]]
    found = [e.syscall for e in ours[N:]]
    assert all(s.startswith(f"openat({MARK_FD}, 0x") and ", O_RDONLY|O_CLOEXEC) = -1 ENOENT" in s for s in missing), \
        missing[:2]
    assert all(", O_RDONLY|O_CLOEXEC) = " in s and s.rsplit("= ", 1)[1].isdigit() for s in found), found[:2]
    assert all(e.duration is not None and 0 <= e.duration < 1 for e in ours)


EXECER = r"""
import os, sys
sys.stdin.read(1)
os.execv("/bin/sh", ["sh", "-c", "exec " + sys.argv[1]])
"""


def test_comm_of_short_lived_exec(live_tracefs, tmp_path):
    binary = tmp_path / "rtcommXq7"
    shutil.copy("/bin/true", binary)
    child = start_waiting_child(EXECER, str(binary))
    try:
        with Session(["syscalls:sys_enter_execve", "syscalls:sys_enter_exit_group"], pid=child.pid) as s:
            child.stdin.write(b"g")
            child.stdin.close()
            assert child.wait(30) == 0
            # Read only now, when the process is gone: /proc cannot help, only the replayed exec can.
            assert not Path(f"/proc/{child.pid}").exists()
            s.stop()
            items = [e for e in s.events(duration=10) if isinstance(e, TraceEvent) and e.pid == child.pid]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    execs = [e for e in items if e.event == "sys_enter_execve"]
    exits = [e for e in items if e.event == "sys_enter_exit_group"]
    assert [e.comm for e in execs] == [Path(sys.executable).name[:15], "sh"], [(e.comm, e.syscall) for e in execs]
    assert [e.comm for e in exits] == ["rtcommXq7"]


FORKER = r"""
import os, sys
sys.stdin.read(1)
pid = os.fork()
if pid == 0:
    os.dup2(os.open("/", os.O_RDONLY | os.O_DIRECTORY), 87)
    for _ in range(7):
        try:
            os.open(sys.argv[1], os.O_RDONLY | os.O_CLOEXEC, dir_fd=87)
        except OSError:
            pass
    os._exit(0)
os.waitpid(pid, 0)
print(pid, flush=True)
"""


def test_pid_includes_children_forked_later(live_tracefs, tmp_path):
    child = subprocess.Popen([sys.executable, "-c", FORKER, str(tmp_path / "nothing")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        with Session(["syscalls:sys_enter_openat"], pid=child.pid) as s:
            def release():
                child.stdin.write(b"g")
                child.stdin.close()
                child.wait(30)
                time.sleep(0.2)
                s.stop()
            helper = threading.Thread(target=release)
            helper.start()
            items = list(s.events(duration=30))
            helper.join()
        grandchild = int(child.stdout.read().split()[0])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    marked = [e for e in items if isinstance(e, TraceEvent) and e.fields.get("dfd") == MARK_FD]
    assert len(marked) == 7 and {e.pid for e in marked} == {grandchild}
    # The interpreter's name: python3, or python in a virtualenv (the name it was started by).
    assert all(e.comm == Path(sys.executable).name[:15] for e in marked)


def _start_cli(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "rawtrace", "trace", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    return proc, first


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_cli_cleans_up_on_signal(live_tracefs, signum):
    proc, first = _start_cli("sched:sched_switch", "--json")
    try:
        assert first.startswith("Tracing 1 event"), first
        name = instance_name(proc.pid)
        assert name in first and (live_tracefs / "instances" / name).is_dir()
        time.sleep(0.5)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert not (live_tracefs / "instances" / name).exists()
    lines = out.splitlines()
    meta = json.loads(lines[0])
    assert meta["type"] == "meta" and meta["clock"] == "mono" and meta["ts_unit"] == "s"
    types = [json.loads(line)["type"] for line in lines[1:]]
    assert types[-1] == "summary" and set(types[:-1]) <= {"event", "lost"}
    assert "events," in err and "lost" in err


def test_cli_count_text_and_summary(live_tracefs, tmp_path):
    proc, _first = _start_cli("syscalls:sys_enter_openat", "syscalls:sys_exit_openat", "--count", "3",
                             "--comm", "cat", "--duration", "20")
    try:
        for _ in range(20):
            subprocess.run(["cat", "/etc/hostname"], stdout=subprocess.DEVNULL, check=True)
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(" cat-" in line and "openat(" in line and "<0." in line for line in lines), lines
    assert "3 events, 0 lost" in err


def test_cli_rejected_filter_shows_kernel_reason(live_tracefs):
    done = subprocess.run([sys.executable, "-m", "rawtrace", "trace", "syscalls:sys_enter_openat",
                           "--filter", "flags == == 3", "--duration", "1"], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode != 0
    assert "rejected filter" in done.stderr and "Traceback" not in done.stderr


def test_reset_removes_dead_owners_instance_only(live_tracefs):
    dead = subprocess.Popen(["true"])
    dead.wait()
    dead_name = f"rawtrace-{dead.pid}-12345"
    # Our pid and pid namespace, but a start time that is not ours: a reused pid.
    live_name = f"rawtrace-{os.getpid()}-{process_starttime(os.getpid())}9-ns{pid_namespace()}"
    mine = instance_name()                       # really ours: must be kept
    made = []
    try:
        for name in (dead_name, live_name, mine):
            os.mkdir(live_tracefs / "instances" / name)
            made.append(name)
        done = subprocess.run([sys.executable, "-m", "rawtrace", "reset", "--json"], cwd=ROOT,
                              capture_output=True, text=True, check=False)
        result = json.loads(done.stdout)
        removed = {i["name"] for i in result["removed"]}
        kept = {i["name"] for i in result["kept"]}
        assert {dead_name, live_name} <= removed and mine in kept
        assert not (live_tracefs / "instances" / dead_name).exists()
        assert (live_tracefs / "instances" / mine).is_dir()
    finally:
        for name in made:
            try:
                os.rmdir(live_tracefs / "instances" / name)
            except FileNotFoundError:
                pass


def test_cli_sigterm_with_stuck_output_still_cleans_up(live_tracefs):
    """Nobody reads rawtrace's output: the pipe fills and writes block; SIGTERM must still end it cleanly."""
    proc, first = _start_cli("sched:sched_switch", "raw_syscalls:sys_enter", "--nice", "0")
    try:
        assert first.startswith("Tracing"), first
        name = instance_name(proc.pid)
        time.sleep(2)              # far more than a pipe's 64 KiB of output
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 128 + signal.SIGTERM)
    assert not (live_tracefs / "instances" / name).exists()


def _cgroup_parent() -> Path | None:
    for candidate in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        path = Path(candidate)
        if (path / "cgroup.procs").exists() and os.access(path, os.W_OK):
            return path
    return None


def test_cgroup_traces_members_and_their_children(live_tracefs, tmp_path):
    parent = _cgroup_parent()
    if parent is None:
        pytest.skip("no writable cgroup hierarchy")
    group = parent / f"rawtrace-test-{os.getpid()}"
    group.mkdir()
    outsider = child = None
    try:
        child = subprocess.Popen([sys.executable, "-c", FORKER, "nothing"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
        outsider = start_waiting_child(OPENER, str(tmp_path / "x"), "3", str(MARK_FD))
        (group / "cgroup.procs").write_text(str(child.pid))
        with Session(["syscalls:sys_enter_openat"], cgroup=group) as s:
            assert s.pids == [child.pid]
            def release():
                for proc in (child, outsider):
                    proc.stdin.write(b"g")
                    proc.stdin.close()
                    proc.wait(30)
                time.sleep(0.2)
                s.stop()
            helper = threading.Thread(target=release)
            helper.start()
            items = list(s.events(duration=30))
            helper.join()
        grandchild = int(child.stdout.read().split()[0])
    finally:
        for proc in (child, outsider):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    marked = [e for e in items if isinstance(e, TraceEvent) and e.fields.get("dfd") == MARK_FD]
    assert {e.pid for e in marked} == {grandchild} and len(marked) == 7      # the outsider is not traced


def test_probe_events_arrive_and_probes_are_removed(live_tracefs):
    if "uprobe" not in (live_tracefs / "README").read_text():
        pytest.skip("this kernel has no uprobes")
    child = start_waiting_child("import os, sys\nsys.stdin.read(1)\nfor _ in range(23):\n    os.getppid()\n")
    try:
        with Session(probes=["uprobe:libc:getppid"], pid=child.pid) as s:
            from rawtrace.probes import run_group
            group = run_group()
            assert group in (live_tracefs / "dynamic_events").read_text()
            items = run_traced(s, child)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    hits = [e for e in items if isinstance(e, TraceEvent) and e.system == group]
    assert len(hits) == 23 and {e.pid for e in hits} == {child.pid}
    assert group not in (live_tracefs / "dynamic_events").read_text()


# A syscall flood from Python: markers (getppid) around N x (openat + read + close) of one file.
FLOOD = r"""
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
sys.stdin.read(1)
os.getppid()
for _ in range(n):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    os.read(fd, 64)
    os.close(fd)
os.getppid()
"""
FLOOD_CALLS = 70000           # 210 000 syscalls, 420 000 raw_syscalls events
X86_64 = {"getppid": 110, "openat": 257, "read": 0, "close": 3}


def _spool_dirs(pid: int) -> list[str]:
    return [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"rawtrace-spool-{pid}-")]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


@contextlib.contextmanager
def _killed_on_failure(proc: subprocess.Popen):
    """Kill `proc` if the block fails, so a failed check never leaves rawtrace running."""
    try:
        yield
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise


def _flood_then_signal(proc: subprocess.Popen, target: Path, calls: int, sig: int,
                       wait_for_flood: bool = True, settle: float = 0.3):
    """Run the FLOOD child against a running `rawtrace trace`, then send `sig` to rawtrace.

    Returns (stdout, stderr, flood pid); whatever happens, no child is left running."""
    flood = None
    try:
        flood = start_waiting_child(FLOOD, str(target), str(calls))
        flood.stdin.write(b"g")
        flood.stdin.close()
        if wait_for_flood:
            assert flood.wait(120) == 0
        time.sleep(settle)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=600)
    finally:
        for p in (proc, flood):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    return out, err, flood.pid



@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers below are x86_64's")
def test_cli_flood_through_the_spool_loses_nothing(live_tracefs, tmp_path):
    target = tmp_path / "target"
    target.write_text("hello\n")
    proc, first = _start_cli("raw_syscalls:*", "--json", "--no-pair")
    with _killed_on_failure(proc):
        assert first.startswith("Tracing 2 events"), first
        name = instance_name(proc.pid)
        assert _children(proc.pid), "no spooler child"
        out, err, flood_pid = _flood_then_signal(proc, target, FLOOD_CALLS, signal.SIGINT)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert not [line for line in lines[1:] if '"type":"lost"' in line], "events were lost"
    summary = err.strip().splitlines()[-1]
    assert ", 0 lost," in summary and "overrun" not in summary, summary
    assert json.loads(lines[-1])["lost"] == 0
    # This process's syscalls, in order, between the two getppid markers.
    calls = []
    for line in lines[1:-1]:
        item = json.loads(line)
        if item["pid"] == flood_pid:
            calls.append((item["event"].split(":")[1], item["fields"]["id"]))
    nr = X86_64
    marks = [i for i, c in enumerate(calls) if c == ("sys_enter", nr["getppid"])]
    assert len(marks) == 2, calls[:10]
    body = calls[marks[0] + 2:marks[1]]
    assert calls[marks[0] + 1] == ("sys_exit", nr["getppid"])
    expected = []
    for _ in range(FLOOD_CALLS):
        for call in ("openat", "read", "close"):
            expected += [("sys_enter", nr[call]), ("sys_exit", nr[call])]
    assert len(body) == len(expected) == 6 * FLOOD_CALLS
    assert body == expected
    assert not (live_tracefs / "instances" / name).exists()
    assert not _spool_dirs(proc.pid) and not _children(proc.pid)


def test_cli_sigterm_during_flood_leaves_nothing(live_tracefs, tmp_path):
    target = tmp_path / "target"
    target.write_text("hello\n")
    proc, first = _start_cli("raw_syscalls:*", "--json")
    with _killed_on_failure(proc):
        assert first.startswith("Tracing"), first
        name = instance_name(proc.pid)
        spoolers = _children(proc.pid)
        assert len(spoolers) == 1
        _flood_then_signal(proc, target, 10 * FLOOD_CALLS, signal.SIGTERM, wait_for_flood=False, settle=0.5)
    assert proc.returncode in (0, 128 + signal.SIGTERM)
    assert not (live_tracefs / "instances" / name).exists()
    assert not _spool_dirs(proc.pid)
    assert not Path(f"/proc/{spoolers[0]}").exists()


def test_cli_spool_limit_hands_the_excess_to_the_kernel_and_reports_it_exactly(live_tracefs, tmp_path):
    target = tmp_path / "target"
    target.write_text("hello\n")
    proc, first = _start_cli("raw_syscalls:*", "--json", "--no-pair", "--spool-mb", "1")
    with _killed_on_failure(proc):
        assert first.startswith("Tracing"), first
        out, err, _ = _flood_then_signal(proc, target, FLOOD_CALLS, signal.SIGINT)
    assert proc.returncode == 0, err
    reported = sum(json.loads(line)["count"] for line in out.splitlines()[1:] if line.startswith('{"type":"lost"'))
    summary = err.strip().splitlines()[-1]
    overrun = sum(int(v) for v in re.findall(r"cpu\d+=(\d+)", summary))
    # 1 MiB of spool cannot hold a 420 000-event flood that a nice-19 decoder is still reading: the kernel
    # overwrites, and every overwritten event is reported, matching its own count.
    assert reported > 0 and reported == overrun, summary
    assert f", {reported} lost" in summary
    assert not _spool_dirs(proc.pid) and not _children(proc.pid)
