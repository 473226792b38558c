"""rawtrace files against strace -f -y (the path of every open and every read/write fd) and fatrace, run at
the same time on the reference workload."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
CALLS = ("open", "openat", "creat", "read", "pread64", "readv", "write", "pwrite64", "writev")
# `1234 openat(AT_FDCWD, "x", O_RDONLY) = 3</etc/x>` and `1234 read(3</etc/x>, "..."..., 832) = 832`
_STRACE = re.compile(r"^(?P<pid>\d+) +(?P<call>\w+)\((?P<args>.*)\) += (?P<ret>-?\d+)(?:<(?P<retpath>[^>]*)>)?")
_FD_ARG = re.compile(r"^\d+<(?P<path>[^>]*)>")
_FATRACE = re.compile(r"^(?P<comm>.*)\((?P<pid>\d+)\): (?P<types>[RCWO+D<>]+) +(?P<path>.*)$")


def canonical(path: str) -> str:
    return os.path.realpath(path)


def parse_strace(text: str) -> Counter:
    """(pid, syscall, real path) of every successful open and every read/write of a file fd."""
    seen: Counter = Counter()
    for line in text.splitlines():
        match = _STRACE.match(line)
        if match is None or match["call"] not in CALLS or int(match["ret"]) < 0:
            continue
        if match["call"] in ("open", "openat", "creat"):
            path = match["retpath"]
        else:
            fd = _FD_ARG.match(match["args"])
            path = fd["path"] if fd else None
        if path and path.startswith("/"):      # files; pipes and sockets (pipe:[N]) are not files
            seen[(int(match["pid"]), match["call"], canonical(path))] += 1
    return seen


def run_all(tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    script = (f"cd {work}; head /etc/motd >/dev/null; echo hello > somefile; cat somefile >/dev/null; "
              "mv somefile other; rm other")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rawtrace = subprocess.Popen([sys.executable, "-m", "rawtrace", "files", "--json", "--all-fds", "-d", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: rawtrace.stdout.read(1 << 16), "")))
    reader.start()
    fatrace = None
    try:
        started = ""
        while "Ctrl-C" not in started:
            line = rawtrace.stderr.readline()
            if not line:
                break
            started += line
        assert "Ctrl-C" in started, started
        fatrace_out = tmp_path / "fatrace.txt"
        if shutil.which("fatrace"):
            fatrace = subprocess.Popen(["fatrace", "-o", str(fatrace_out)], stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        strace_out = tmp_path / "strace.txt"
        subprocess.run(["strace", "-f", "-y", "-qq", "-s", "0", "-o", str(strace_out),
                        "-e", "trace=" + ",".join(CALLS), "bash", "-c", script], check=True)
        time.sleep(1.0)
        if fatrace is not None:
            fatrace.send_signal(signal.SIGINT)
            fatrace.wait(timeout=20)
        rawtrace.send_signal(signal.SIGINT)
        err = rawtrace.stderr.read()
        rawtrace.wait(timeout=60)
    finally:
        for proc in (rawtrace, fatrace):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=60)
    assert rawtrace.returncode == 0, err
    records = [json.loads(line) for line in "".join(chunks).splitlines() if line.strip()]
    fatrace_text = fatrace_out.read_text(errors="replace") if fatrace is not None else None
    return records, strace_out.read_text(), fatrace_text, err


def test_agrees_with_strace_and_sees_every_file_fatrace_sees(tmp_path, live_tracefs):
    if shutil.which("strace") is None:
        pytest.skip("no strace")
    records, strace_text, fatrace_text, _err = run_all(tmp_path)
    expected = parse_strace(strace_text)
    pids = {pid for pid, _call, _path in expected}
    assert len(pids) >= 4 and sum(expected.values()) > 30, expected
    got: Counter = Counter()
    ours_by_pid: dict[int, set[str]] = {}
    for r in records:
        if r.get("type") != "file" or r["pid"] not in pids:
            continue
        for path in (r["path"], r["path_to"]):
            if path:
                ours_by_pid.setdefault(r["pid"], set()).add(canonical(path))
        if r["syscall"] in CALLS and r["path"] and (r["errno"] is None):
            got[(r["pid"], r["syscall"], canonical(r["path"]))] += 1
    agreed = sum(min(count, got[key]) for key, count in expected.items())
    total = sum(expected.values())
    missed = sorted((key for key in expected if got[key] < expected[key]), key=str)
    figure = 100.0 * agreed / total
    print(f"\nstrace -f -y oracle: {agreed}/{total} = {figure:.1f}% agree; differing: {missed[:10]}")
    if missed:
        pid = missed[0][0]
        print("rawtrace for that pid:", [(r["comm"], r["syscall"], r["path"], r["path_source"],
                                          r.get("unknown_reason")) for r in records
                                         if r.get("type") == "file" and r["pid"] == pid and r["path"] is None][:6])
    # 100% in 7 runs here. Below it (96% once, before the dynamic linker's opens were probed): fanotify
    # merged a re-exec'd program's loader opens into still queued identical events of the old image (a
    # slow reader), and those opens stayed unknown.
    assert figure >= 99.0, (figure, missed)
    if fatrace_text is not None:
        fatrace_paths: dict[int, set[tuple[str, bool]]] = {}
        for line in fatrace_text.splitlines():
            match = _FATRACE.match(line)
            if match and int(match["pid"]) in pids and match["path"].startswith("/"):
                # For + D < > fatrace names the directory, not the entry (fatrace issue #39).
                entry_event = bool(set(match["types"]) & set("+D<>"))
                fatrace_paths.setdefault(int(match["pid"]), set()).add((canonical(match["path"]), entry_event))

        def seen(pid: int, path: str, entry_event: bool) -> bool:
            ours = ours_by_pid.get(pid, set())
            return path in ours or (entry_event and any(os.path.dirname(p) == path for p in ours))
        fatrace_only = {(pid, path) for pid, paths in fatrace_paths.items() for path, entry in paths
                        if not seen(pid, path, entry)}
        print(f"fatrace: {sum(len(p) for p in fatrace_paths.values())} (pid, file) pairs, "
              f"{len(fatrace_only)} not seen by rawtrace: {sorted(fatrace_only)[:5]}")
        assert not fatrace_only
