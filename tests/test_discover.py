"""Finding tracefs in fake trees (a fake /proc/self/mounts under --root), and on this machine."""

from __future__ import annotations

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
