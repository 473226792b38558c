"""Finding tracefs in fake trees (a fake /proc/self/mounts under --root), and on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rawtrace.errors import TracingBlocked
from rawtrace.host import Host
from rawtrace.tracefs.discover import find_tracefs, locate_tracefs


def make_root(
    tmp_path: Path, mounts: list[str], tracing_dirs: list[str], mounts_file="proc/self/mounts"
) -> Path:
    root = tmp_path / "root"
    (root / Path(mounts_file).parent).mkdir(parents=True)
    (root / mounts_file).write_text("".join(line + "\n" for line in mounts))
    for directory in tracing_dirs:
        (root / directory / "events").mkdir(parents=True)
        (root / directory / "trace").write_text("")
    return root


def test_tracefs_mounted_elsewhere(tmp_path):
    root = make_root(
        tmp_path, ["proc /proc proc rw 0 0", "nodev /mnt/trace tracefs rw,relatime 0 0"], ["mnt/trace"]
    )
    found = find_tracefs(Host(root))
    assert (found.path, found.how, found.mounted_now) == (root / "mnt/trace", "mount table (tracefs)", False)


def test_mount_point_with_escaped_space(tmp_path):
    root = make_root(tmp_path, ["nodev /mnt/my\\040trace tracefs rw 0 0"], ["mnt/my trace"])
    assert locate_tracefs(Host(root)).path == root / "mnt/my trace"


def test_debugfs_with_tracing(tmp_path):
    root = make_root(tmp_path, ["debugfs /sys/kernel/debug debugfs rw 0 0"], ["sys/kernel/debug/tracing"])
    found = locate_tracefs(Host(root))
    assert (found.path, found.how) == (root / "sys/kernel/debug/tracing", "mount table (debugfs)")


def test_empty_tracefs_mount_is_skipped_for_a_usable_one(tmp_path):
    root = make_root(
        tmp_path,
        ["nodev /sys/kernel/tracing tracefs rw 0 0", "debugfs /sys/kernel/debug debugfs rw 0 0"],
        ["sys/kernel/debug/tracing"],
    )
    (root / "sys/kernel/tracing").mkdir(parents=True)  # mounted but empty (tracing disabled at boot)
    assert locate_tracefs(Host(root)).how == "mount table (debugfs)"


def test_usual_path_without_mount_table_entry(tmp_path):
    root = make_root(tmp_path, [], ["sys/kernel/tracing"])
    found = locate_tracefs(Host(root))
    assert (found.path, found.how) == (root / "sys/kernel/tracing", "usual path")


def test_proc_mounts_fallback(tmp_path):
    root = make_root(tmp_path, ["nodev /t tracefs rw 0 0"], ["t"], mounts_file="proc/mounts")
    assert locate_tracefs(Host(root)).path == root / "t"


def test_nothing_mounted(tmp_path):
    root = make_root(tmp_path, ["proc /proc proc rw 0 0", "sysfs /sys sysfs rw 0 0"], [])
    host = Host(root)
    assert locate_tracefs(host) is None
    with pytest.raises(TracingBlocked) as info:
        find_tracefs(host)  # a fake tree is never mounted into
    assert "no tracefs found" in info.value.message and info.value.hint
    assert not (root / "sys/kernel/tracing").exists()


def test_override_wins(tmp_path):
    root = make_root(tmp_path, ["nodev /mnt/trace tracefs rw 0 0"], ["mnt/trace"])
    found = find_tracefs(Host(root, tracefs_override=tmp_path / "elsewhere"))
    assert (found.path, found.how) == (tmp_path / "elsewhere", "override")


@pytest.mark.live
def test_live_tracefs_is_found_without_mounting(live_tracefs_available):
    found = locate_tracefs(Host())
    assert found is not None and found.path == live_tracefs_available and not found.mounted_now


def test_not_mounted_hint_never_claims_a_mount_that_will_not_happen(monkeypatch):
    """decode and list-syscalls never mount tracefs: their hint must not say rawtrace does it itself."""
    from rawtrace.tracefs import discover
    monkeypatch.setattr(discover, "locate_tracefs", lambda host: None)
    with pytest.raises(TracingBlocked) as info:
        find_tracefs(Host(), mount=False)
    assert info.value.message == "tracefs is not mounted"
    assert "itself" not in info.value.hint and "--tracefs DIR" in info.value.hint
    monkeypatch.setattr(discover.os, "geteuid", lambda: 1000)
    with pytest.raises(TracingBlocked) as info:
        find_tracefs(Host(), mount=True)
    assert info.value.hint.startswith("run as root")


def _run_as_nobody(args: list[str], tree: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                           "-m", "rawtrace", "--root", str(tree), *args], capture_output=True, text=True,
                          env=env, cwd="/", check=False, timeout=60)


@pytest.fixture
def unreadable_tracefs_tree():
    """A tree whose tracefs mount is root's 0700 directory, as on a stock system; run through setpriv."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to look at a root-only tracefs as another user")
    tree = Path(tempfile.mkdtemp(prefix="rawtrace-unreadable-"))
    try:
        os.chmod(tree, 0o755)
        (tree / "proc/self").mkdir(parents=True)
        (tree / "proc/self/mounts").write_text("nodev /sys/kernel/tracing tracefs rw 0 0\n")
        (tree / "proc/sys/kernel").mkdir(parents=True)
        (tree / "proc/sys/kernel/arch").write_text("x86_64\n")
        (tree / "sys/kernel/tracing/events/syscalls/sys_enter_read").mkdir(parents=True)
        for directory in (tree / "proc", tree / "sys", tree / "sys/kernel"):
            os.chmod(directory, 0o755)
        os.chmod(tree / "sys/kernel/tracing", 0o700)
        yield tree
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def test_unreadable_tracefs_as_another_user(unreadable_tracefs_tree):
    tree = unreadable_tracefs_tree
    location = locate_tracefs(Host(tree))          # root sees into it
    assert location is not None and location.readable
    listed = _run_as_nobody(["list-syscalls", "read"], tree)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[2].split() == ["0", "read", "common", "sys_read"]
    assert "not readable by this user (the TP column needs root)" in listed.stderr
    found = _run_as_nobody(["format", "sys_enter_read"], tree)
    assert found.returncode == 2 and "is not readable by this user" in found.stderr
    assert "--tracefs DIR" in found.stderr and "Traceback" not in found.stderr
    doctor = _run_as_nobody(["doctor", "--json"], tree)
    checks = {c["name"]: c for c in __import__("json").loads(doctor.stdout)["checks"]}
    assert checks["tracefs"]["finding"].endswith("not readable by this user")
