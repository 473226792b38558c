"""rawtrace files live: the reference workload, a static program's direct syscall, a chdir + relative open;
every expected event with its absolute path and the right process name, through tracefs and fanotify alone."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent

STATIC_C = r"""
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
/* Opens argv[2] relative to argv[1] by direct syscalls: no C library entry point sees the path. */
int main(int argc, char **argv) {
    char buf[16];
    if (syscall(SYS_chdir, argv[1]) != 0) return 2;
    long fd = syscall(SYS_openat, AT_FDCWD, argv[2], O_RDONLY);
    if (fd < 0) return 1;
    syscall(SYS_read, fd, buf, sizeof buf);
    syscall(SYS_close, fd);
    return 0;
}
"""

CHDIR_C = r"""
#include <fcntl.h>
#include <unistd.h>
/* chdir(argv[1]) then open the relative path argv[2] through the C library. */
int main(int argc, char **argv) {
    char buf[16];
    if (chdir(argv[1]) != 0) return 2;
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return 1;
    read(fd, buf, sizeof buf);
    close(fd);
    return 0;
}
"""


def build(tmp_path: Path, name: str, source: str, static: bool) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc to build the test programs")
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / name
    result = subprocess.run([gcc, "-O1", *(["-static"] if static else []), "-o", str(out), str(src)],
                            check=False, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot build {name} ({'static ' if static else ''}libc missing?): {result.stderr[-200:]}")
    return out


def workload(tmp_path: Path) -> dict:
    work = tmp_path / "work"
    work.mkdir()
    static = build(tmp_path, "rtstatic", STATIC_C, static=True)
    chdir = build(tmp_path, "rtchdir", CHDIR_C, static=False)
    (work / "static-unique.txt").write_text("static\n")
    (work / "chdir-unique.txt").write_text("chdir\n")
    script = (f"cd {work}; head /etc/motd >/dev/null; echo hello > somefile; cat somefile >/dev/null; "
              "mv somefile other; rm other")
    return {"work": str(work), "static": str(static), "chdir": str(chdir), "script": script}


def run_files(args: list[str], plan: dict, settle: float = 1.0) -> tuple[list[dict], str]:
    cmd = [sys.executable, "-m", "rawtrace", "files", "--json", "-d", "8", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    chunks: list[str] = []
    # Drain stdout all along: a system-wide trace fills a pipe long before the workload is done.
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stdout.read(1 << 16), "")))
    reader.start()
    try:
        deadline = time.monotonic() + 30
        started = ""
        while "Ctrl-C" not in started and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            started += line
        assert "Ctrl-C" in started, started
        time.sleep(0.3)
        subprocess.run(["bash", "-c", plan["script"]], check=True)
        subprocess.run([plan["static"], plan["work"], "static-unique.txt"], check=True)
        subprocess.run([plan["chdir"], plan["work"], "chdir-unique.txt"], check=True)
        time.sleep(settle)
        proc.send_signal(2)
        err = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=60)
    out = "".join(chunks)
    assert proc.returncode == 0, err
    records = []
    for line in out.splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not JSON: {line!r}") from None
    return records, started + err


def has(files: list[dict], comm: str, path: str, letter: str) -> bool:
    return any(r["comm"] == comm and r["path"] == path and letter in r["types"] for r in files)


def check(records: list[dict], plan: dict, fanotify_only: bool) -> None:
    files = [r for r in records if r.get("type") == "file"]
    work = plan["work"]
    expected = [("head", "/etc/motd", "O"), ("head", "/etc/motd", "R"),
                ("bash", f"{work}/somefile", "W"), ("cat", f"{work}/somefile", "R"),
                ("rm", f"{work}/other", "D"),
                ("rtstatic", f"{work}/static-unique.txt", "O"), ("rtstatic", f"{work}/static-unique.txt", "R"),
                ("rtchdir", f"{work}/chdir-unique.txt", "O"), ("rtchdir", f"{work}/chdir-unique.txt", "R")]
    if fanotify_only:
        expected += [("bash", f"{work}/somefile", "+"), ("mv", f"{work}/somefile", "<"),
                     ("mv", f"{work}/other", ">")]
    else:
        expected += [("mv", f"{work}/somefile", "<")]
        renames = [r for r in files if r["comm"] == "mv" and r["types"] == "<>"]
        assert any(r["path"] == f"{work}/somefile" and r["path_to"] == f"{work}/other" for r in renames), renames
    missing = [e for e in expected if not has(files, *e)]
    mine = [r for r in files if r["path"] and r["path"].startswith(work)]
    assert not missing, (missing, [(r["comm"], r["types"], r["path"], r["path_source"]) for r in mine])
    # Every event of the workload's own files has an absolute path and a name.
    assert all(r["path"].startswith("/") for r in mine)
    # The workload's processes are all named (system-wide, other users' processes are counted in the
    # summary: on this shared machine they come and go in ways the test does not control).
    workload_pids = {r["pid"] for r in mine} | {r["pid"] for r in files if r["path"] == "/etc/motd"}
    unnamed = [r for r in files if r["pid"] in workload_pids and r["comm"] in (None, "unknown", "<...>")]
    assert not unnamed, [(r["pid"], r["types"], r["path"], r["syscall"]) for r in unnamed[:5]]
    summary = [r for r in records if r.get("type") == "summary"][-1]
    assert summary["events"] == len(files)
    return summary


def test_files_through_tracefs(tmp_path, live_tracefs):
    plan = workload(tmp_path)
    records, err = run_files([], plan)
    summary = check(records, plan, fanotify_only=False)
    files = [r for r in records if r.get("type") == "file"]
    work = plan["work"]
    # The static program's path can only have come from fanotify; the libc programs' from uprobes.
    static = [r for r in files if r["comm"] == "rtstatic" and r["syscall"] == "openat"
              and r["path"] == f"{work}/static-unique.txt"]
    assert static and static[0]["path_source"] == "fanotify", static
    chdir = [r for r in files if r["comm"] == "rtchdir" and r["syscall"] == "openat"
             and r["path"] == f"{work}/chdir-unique.txt"]
    assert chdir and chdir[0]["path_source"] == "uprobe" and chdir[0]["flags"] == "O_RDONLY", chdir
    if platform.machine() == "x86_64":
        # The dynamic linker's own opens (no libc entry point sees them), from the uprobes on its syscalls.
        loader = [r for r in files if r["comm"] == "rtchdir" and r["syscall"] == "openat"
                  and r["path"] == "/etc/ld.so.cache"]
        assert loader and loader[0]["path_source"] == "uprobe", loader
    head = [r for r in files if r["comm"] == "head" and r["syscall"] == "read" and r["path"] == "/etc/motd"]
    assert head and head[0]["bytes"] > 0 and head[0]["path_source"] == "fdtable"
    assert "syscall events" in err and "fanotify" in err
    assert summary["path_sources"].get("uprobe", 0) > 0


def test_files_through_fanotify_alone(tmp_path, live_tracefs):
    plan = workload(tmp_path)
    records, err = run_files(["--source", "fanotify"], plan)
    check(records, plan, fanotify_only=True)
    files = [r for r in records if r.get("type") == "file"]
    assert all(r["path_source"] in ("fanotify", "unknown") for r in files)
    assert "through fanotify" in err


def test_a_rename_of_two_long_paths_names_both_and_warns_no_kernel(tmp_path, live_tracefs):
    """Each path string has an event of its own: two 2 KiB paths in one uprobe event would exceed the
    page the kernel copies a hit's strings through (a WARN_ON_ONCE and a cut record)."""
    deep = tmp_path
    for n in range(10):
        deep = deep / (f"{n}" * 200)
    deep.mkdir(parents=True)
    (deep / "a").write_text("x")
    old, new = deep / "a", deep / "b"
    assert len(str(old)) > 2048
    tainted = Path("/proc/sys/kernel/tainted").read_text().strip()
    plan = {"work": str(tmp_path), "static": "/bin/true", "chdir": "/bin/true", "script": f"mv {old} {new}"}
    records, _err = run_files(["-w"], plan, settle=0.5)
    renames = [r for r in records if r.get("type") == "file" and r["comm"] == "mv" and r["types"] == "<>"]
    assert [(r["path"], r["path_to"], r["path_source"]) for r in renames] == [(str(old), str(new), "uprobe")]
    if not int(tainted) & (1 << 9):        # TAINT_WARN: a kernel warning since boot
        assert not int(Path("/proc/sys/kernel/tainted").read_text()) & (1 << 9)
