"""`rawtrace record` live: a mixed workload (syscalls, sched events, a uprobe) recorded to trace.dat;
trace-cmd report and rawtrace's reader agree on every event; syscount over the file equals a live run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tracedat_write_support import TRACE_CMD, compare_with_report, report

from rawtrace.parse.record import Event
from rawtrace.parse.ringbuf import iter_pages
from rawtrace.parse.tracedat import read_tracedat
from rawtrace.parse.tracedat_write import extra_sections
from rawtrace.printfmt import Symbols, parse_printk_formats

ROOT = Path(__file__).resolve().parent.parent
PROBE = "uprobe:libc:open64 path=arg1:ustring"

pytestmark = pytest.mark.live


def rawtrace(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rawtrace", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, **kw)


def decode(path: Path) -> dict:
    dat = read_tracedat(path)
    buf = dat.buffer()
    layout = dat.page_layout(buf)
    decoders = layout.decoders(dat.formats())
    return {cpu: list(iter_pages(layout, dat.cpu_data(buf, cpu), cpu, decoders)) for cpu in buf.cpus}


@pytest.mark.skipif(TRACE_CMD is None, reason="trace-cmd is not installed")
def test_record_mixed_workload_and_trace_cmd_agrees(live_tracefs, tmp_path):
    out = tmp_path / "mixed.dat"
    timeline = tmp_path / "mixed.json"
    proc = rawtrace("record", "-o", str(out), "raw_syscalls:*", "sched:sched_switch", "sched:sched_wakeup",
                    "--probe", PROBE, "--perfetto", str(timeline), "--",
                    "sh", "-c", "cat /etc/hostname /etc/os-release > /dev/null; ls / > /dev/null; sleep 0.01")
    assert proc.returncode == 0, proc.stderr
    assert "trace.dat v6" in proc.stderr
    assert not list(tmp_path.glob(".mixed.dat.rawtrace-*")), "spool directory left behind"
    decoded = decode(out)
    kallsyms, printk = extra_sections(read_tracedat(out))
    assert kallsyms and printk
    lines = report(out)
    events, values, problems = compare_with_report(decoded, lines, Symbols.from_kallsyms(kallsyms),
                                                   parse_printk_formats(printk))
    assert not problems, problems
    names = {e.format.full_name for items in decoded.values() for e in items if isinstance(e, Event)}
    assert {"raw_syscalls:sys_enter", "raw_syscalls:sys_exit", "sched:sched_switch"} <= names, names
    probes = [e for items in decoded.values() for e in items if isinstance(e, Event) and e.format.name == "open64"]
    assert any(e.fields.get("path") == "/etc/hostname" for e in probes), probes[:5]
    assert events == sum(isinstance(e, Event) for items in decoded.values() for e in items) and events > 200
    assert values > 2 * events
    # The timeline of the same recording was written too, and is valid JSON with slices.
    doc = json.loads(timeline.read_text())
    assert any(e.get("cat") == "syscall" for e in doc["traceEvents"])
    # rawtrace's own decode command reads the file without complaint.
    shown = rawtrace("decode", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "open64" in shown.stdout


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rawtrace", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_started(proc: subprocess.Popen, word: str) -> None:
    line = proc.stderr.readline()
    assert word in line, line + proc.stderr.read()


def test_syscount_over_the_recording_equals_a_live_run(live_tracefs, tmp_path):
    name = "rtrec-work"
    worker = tmp_path / name
    shutil.copy("/bin/sh", worker)
    out = tmp_path / "syscalls.dat"
    recorder = _start(["record", "-o", str(out), "raw_syscalls:*", "-n", name])
    live = _start(["syscount", "-n", name, "--json", "-T", "1000"])
    try:
        _wait_started(recorder, "Recording")
        _wait_started(live, "Tracing")
        script = "for i in 1 2 3 4 5 6 7 8; do echo $i > /dev/null; cd /; done; exec 3</etc/hostname; read x <&3"
        subprocess.run([str(worker), "-c", script], check=True, timeout=60)
        time.sleep(0.3)
    finally:
        for proc in (recorder, live):
            proc.send_signal(signal.SIGINT)
    live_out, live_err = live.communicate(timeout=60)
    _rec_out, rec_err = recorder.communicate(timeout=60)
    assert recorder.returncode == 0, rec_err
    assert live.returncode == 0, live_err
    replay = rawtrace("syscount", "-i", str(out), "-n", name, "--json", "-T", "1000")
    assert replay.returncode == 0, replay.stderr

    def counts(text: str) -> dict:
        rows = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        return {r["syscall"]: (r["count"], r["errors"]) for r in rows if r.get("type") == "syscount"}
    live_counts, replay_counts = counts(live_out), counts(replay.stdout)
    assert live_counts and sum(c for c, _e in live_counts.values()) > 20
    assert replay_counts == live_counts
    assert not os.path.exists(tmp_path / f".{out.name}.rawtrace-{recorder.pid}")


def test_every_tool_runs_over_a_recording(live_tracefs, tmp_path):
    out = tmp_path / "tools.dat"
    proc = rawtrace("record", "-o", str(out), "raw_syscalls:*", "syscalls:*", "sched:*", "--",
                    "sh", "-c", f"cat /etc/hostname > {tmp_path}/x; mv {tmp_path}/x {tmp_path}/y; "
                                f"rm {tmp_path}/y; /bin/true a b")
    assert proc.returncode == 0, proc.stderr
    expected = {"syscount": "execve", "sched": "usecs", "exec": "/bin/true", "files": "sh",
                "decode": "execve", "timeline": "slices"}
    for tool, word in expected.items():
        extra = ["-o", str(tmp_path / "t.json")] if tool == "timeline" else []
        args = [tool, str(out)] if tool == "decode" else [tool, "-i", str(out), *extra]
        shown = rawtrace(*args)
        assert shown.returncode == 0, (tool, shown.stderr)
        assert word in shown.stdout + shown.stderr, (tool, shown.stdout[:500], shown.stderr[:500])


def test_raw_syscalls_decode_offline_with_the_signatures_they_have_live(live_tracefs, tmp_path):
    """A raw_syscalls recording holds the syscalls:sys_enter_* formats (not their records), so its calls
    render with argument names, flags and pointers offline as they do live, not as six plain numbers."""
    import re
    out = tmp_path / "sig.dat"
    proc = rawtrace("record", "-o", str(out), "raw_syscalls:*", "--", "cat", "/etc/hostname")
    assert proc.returncode == 0, proc.stderr
    names = {f.full_name for f in read_tracedat(out).formats().values()}
    assert "syscalls:sys_enter_openat" in names
    assert "syscalls:sys_exit_openat" not in names        # (exits all return one long)
    records = [e for items in decode(out).values() for e in items if isinstance(e, Event)]
    assert {e.format.system for e in records} <= {"raw_syscalls", "sched", "task"}
    shown = rawtrace("decode", str(out), "-n", "cat")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"openat\(AT_FDCWD, 0x[0-9a-f]+, O_RDONLY\|O_CLOEXEC\) = \d+ <", shown.stdout), shown.stdout[:800]
    as_json = [json.loads(line) for line in rawtrace("decode", str(out), "--json", "-n", "cat").stdout.splitlines()]
    opens = [r for r in as_json if r.get("syscall") == "openat" and r.get("status") == "complete"]
    assert opens and set(opens[0]["args"]) == {"dfd", "filename", "flags", "mode"}, opens[:1]
