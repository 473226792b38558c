"""Time limits and signals under load: -d stops recording on time, SIGTERM/SIGHUP always give a summary,
a signal during start-up is quiet, a dying spooler is said out loud; nothing is ever left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_trace_live import FLOOD, _children, _killed_on_failure, _spool_dirs, start_waiting_child

from rawtrace.tracefs.instance import instance_name

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rawtrace", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _flood(tmp_path: Path, calls: int) -> subprocess.Popen:
    target = tmp_path / "target"
    target.write_text("x\n")
    flood = start_waiting_child(FLOOD, str(target), str(calls))
    flood.stdin.write(b"g")
    flood.stdin.close()
    return flood


def _started(proc: subprocess.Popen) -> None:
    """Wait for the tracer's start line (its instance and spooler are up then)."""
    first = proc.stderr.readline()
    assert first.startswith("Tracing"), first


def _backlog(tmp_path: Path) -> subprocess.Popen:
    """A flood running for 1.5 s: a backlog for the tracer to drain after a signal."""
    flood = _flood(tmp_path, 300000)
    time.sleep(1.5)
    return flood


def test_duration_stops_recording_on_time_whatever_the_lag(live_tracefs, tmp_path):
    proc = _cli("trace", "raw_syscalls:*", "--json", "-d", "1")
    flood = None
    with _killed_on_failure(proc):
        _started(proc)
        flood = _flood(tmp_path, 400000)
        started = time.monotonic()
        out, err = proc.communicate(timeout=300)
        ended = time.monotonic() - started
    flood.kill()
    flood.wait()
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    stamps = [r["ts"] for r in records if r["type"] in ("event", "syscall")]
    assert stamps, err
    # Recording covered at most the requested second of trace time (plus the start-up before the
    # first event), however long decoding what was recorded took afterwards.
    assert max(stamps) - min(stamps) <= 1.05, (max(stamps) - min(stamps), ended)
    assert records[-1]["type"] == "summary" and records[-1]["lost"] == 0
    assert not (live_tracefs / "instances" / instance_name(proc.pid)).exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_term_during_a_flood_always_prints_the_summary(live_tracefs, tmp_path, signum):
    proc = _cli("trace", "raw_syscalls:*", "--json")
    flood = None
    with _killed_on_failure(proc):
        _started(proc)
        flood = _backlog(tmp_path)
        proc.send_signal(signum)
        signalled = time.monotonic()
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - signalled
    flood.kill()
    flood.wait()
    assert proc.returncode == 0, err
    # The drain is bounded: 5 s, then the summary (and the undecoded rest said), never a forced exit.
    assert took < 10, took
    summary = json.loads(out.splitlines()[-1])
    assert summary["type"] == "summary" and summary["events"] > 0
    assert "events," in err.splitlines()[-1] or "undecoded" in err or "not decoded" in err
    if summary["undecoded_bytes"]:
        assert "were not decoded" in err
    assert not (live_tracefs / "instances" / instance_name(proc.pid)).exists()
    assert not _spool_dirs(proc.pid)


def _our_frames(text: str) -> list[str]:
    """The traceback frames of `text` in rawtrace's own files (a directory named rawtrace: the package,
    installed or in the checkout; not a virtualenv that merely has rawtrace in its name)."""
    return [frame for frame in re.findall(r'File "([^"]+)"', text) if "/rawtrace/" in frame]


def test_signal_during_start_up_is_quiet(live_tracefs):
    # Every 3 ms through the first 45 ms (the interpreter, the imports, the CLI putting its handlers in
    # place: a SIGINT at 20 ms once landed between the first handler and the try that catches it), then
    # into the set-up of the trace.
    for delay in (*(0.003 * k for k in range(1, 16)), 0.08, 0.15, 0.3):
        proc = _cli("trace", "sched:sched_switch")
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired as exc:
            # CPython itself may drop its default handler's KeyboardInterrupt, raised in a weakref
            # callback of the import machinery while runpy imports the package, before rawtrace has a
            # handler ("Exception ignored", a traceback without a rawtrace frame): rawtrace never saw that
            # signal. A second one must end the run cleanly.
            early = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            head = early.split("Tracing", 1)[0]
            assert "Exception ignored" in head and "KeyboardInterrupt" in head and not _our_frames(head), \
                (delay, early)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
            assert proc.returncode in (0, 130), (delay, proc.returncode, err)
            assert not (live_tracefs / "instances" / instance_name(proc.pid)).exists()
            continue
        # Before any rawtrace code runs, the interpreter's own start-up may be interrupted: its site
        # module ("init_import_site"), runpy being imported ("Could not import runpy module", in the
        # standard library's files) or still locating the package (only <frozen ...> frames). That is
        # Python's. Nothing of rawtrace's: no frame in a rawtrace file.
        frames = re.findall(r'File "([^"]+)"', err)
        interpreter = not _our_frames(err) and ("init_import_site" in err or bool(frames))
        assert "Traceback" not in err or interpreter, (delay, err)
        # (Killed by the signal, silently: it came before the interpreter had a handler of its own.)
        killed_early = proc.returncode == -signal.SIGINT and not err
        assert proc.returncode in (0, 130) or interpreter or killed_early, (delay, proc.returncode, err)
        assert not (live_tracefs / "instances" / instance_name(proc.pid)).exists()


def test_a_dying_spooler_is_reported(live_tracefs, tmp_path):
    proc = _cli("trace", "raw_syscalls:*", "--json")
    with _killed_on_failure(proc):
        _started(proc)
        children = _children(proc.pid)
        assert children, "no spooler child"
        os.kill(children[0], signal.SIGKILL)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "spooler process died (killed by signal 9)" in err, err
    assert not (live_tracefs / "instances" / instance_name(proc.pid)).exists()
    assert not _spool_dirs(proc.pid)


def test_a_second_ctrl_c_ends_at_once_and_says_so(live_tracefs, tmp_path):
    proc = _cli("trace", "raw_syscalls:*", "--json")
    flood = None
    with _killed_on_failure(proc):
        _started(proc)
        flood = _backlog(tmp_path)       # the first SIGINT alone would take a while
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        _out, err = proc.communicate(timeout=60)
        took = time.monotonic() - signalled
    flood.kill()
    flood.wait()
    assert took < 5, took
    assert "second signal: ending now" in err, err
    assert proc.returncode == 130, (proc.returncode, err)
    assert not (live_tracefs / "instances" / instance_name(proc.pid)).exists()
    assert not _spool_dirs(proc.pid)
