"""fanotify source live: the reference workload named with full paths, child names and the right process names."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from rawtrace import fanotify as F

pytestmark = pytest.mark.live


def _run_source(workload, **kwargs):
    source = F.FanotifySource(**kwargs)
    try:
        source.open()
    except OSError as exc:
        pytest.skip(f"fanotify not usable here: {exc}")
    records = []

    def drive():
        time.sleep(0.2)
        workload()
        time.sleep(0.4)
        source.stop()

    worker = threading.Thread(target=drive)
    worker.start()
    try:
        for batch in source.batches():
            records.extend(batch)
    finally:
        worker.join()
        source.close()
    return source, records


def test_reference_workload_names_every_process(tmp_path, live_tracefs):
    before = set(os.listdir("/proc/self/fd"))
    directory = str(tmp_path)
    script = f"cd {directory}; head /etc/motd >/dev/null; echo hello > somefile; cat somefile >/dev/null; " \
             "mv somefile other; rm other"
    source, records = _run_source(lambda: subprocess.run(["bash", "-c", script], check=True))
    assert source.mode == "fid"
    mine = [(r.comm, r.types, r.path) for r in records if isinstance(r, F.FileRecord)
            and r.path and (r.path.startswith(directory) or r.path == "/etc/motd")]
    seen: dict[tuple, str] = {}
    for comm, types, path in mine:
        seen[(comm, path)] = seen.get((comm, path), "") + types
    assert "O" in seen[("head", "/etc/motd")] and "R" in seen[("head", "/etc/motd")]
    assert "+" in seen[("bash", f"{directory}/somefile")] and "W" in seen[("bash", f"{directory}/somefile")]
    assert "R" in seen[("cat", f"{directory}/somefile")]
    assert "<" in seen[("mv", f"{directory}/somefile")] and ">" in seen[("mv", f"{directory}/other")]
    assert "D" in seen[("rm", f"{directory}/other")]
    assert all(comm is not None for comm, _t, _p in mine)
    assert not any(isinstance(r, F.Overflow) for r in records)
    assert set(os.listdir("/proc/self/fd")) == before      # every fd released


def test_classic_mode_names_opens_by_fd(tmp_path, live_tracefs):
    target = tmp_path / "classic"
    target.write_text("x")
    source, records = _run_source(lambda: subprocess.run(["cat", str(target)], check=True,
                                                         stdout=subprocess.DEVNULL), force_classic=True)
    assert source.mode == "classic"
    assert any(r.path == str(target) and r.comm == "cat" and "O" in r.types for r in records
               if isinstance(r, F.FileRecord))
