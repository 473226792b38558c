"""Live: `rawtrace timeline` system-wide for a moment of work: a valid document with CPU tracks (the task
on each CPU from sched_switch) and the workload's syscalls as slices on its own named track."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_perfetto import check_document

from rawtrace.perfetto import CPU_PROCESS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.live
def test_live_timeline(live_tracefs, tmp_path):
    out = tmp_path / "live.json"
    tracer = subprocess.Popen([sys.executable, "-m", "rawtrace", "timeline", "-o", str(out), "-d", "1.5"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        work = subprocess.Popen(["sh", "-c", "for i in 1 2 3 4 5; do cat /etc/hostname > /dev/null; done"])
        work.wait(30)
        _out, err = tracer.communicate(timeout=60)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    assert tracer.returncode == 0, err
    doc = json.loads(out.read_text())
    tracks = check_document(doc)
    assert any(pid == CPU_PROCESS for pid, _tid in tracks), "no CPU track"
    calls = tracks.get((work.pid, work.pid), [])
    assert any(c["name"] == "wait4" or c["name"].startswith("clone") for c in calls), [c["name"] for c in calls]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert names.get((work.pid, work.pid)) == "sh"
