"""FdTables: fd → path per process from syscall results, fork/exec rules, cwd and relative paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rawtrace import fdtable as F
from rawtrace.fdtable import FdEntry, FdTables
from rawtrace.host import Host


def fake_proc(root: Path, pid: int, cwd: str, fds: dict[int, tuple[str, int]]) -> None:
    """/proc/PID/{cwd,fd/N,fdinfo/N} as the kernel shows them (links; flags in octal)."""
    base = root / "proc" / str(pid)
    (base / "fd").mkdir(parents=True)
    (base / "fdinfo").mkdir()
    os.symlink(cwd, base / "cwd")
    for fd, (target, flags) in fds.items():
        os.symlink(target, base / "fd" / str(fd))
        (base / "fdinfo" / str(fd)).write_text(f"pos:\t0\nflags:\t{flags:07o}\nmnt_id:\t20\nino:\t5\n")


def test_open_dup_close_and_paths():
    t = FdTables()
    t.opened(10, 3, "/etc/motd", 0)
    assert t.path(10, 3) == "/etc/motd"
    t.duped(10, 3, 7)
    assert t.path(10, 7) == "/etc/motd"
    assert t.closed(10, 3) == FdEntry("/etc/motd")
    assert t.path(10, 3) is None
    assert t.path(10, 7) == "/etc/motd"
    t.opened(10, -2, "/nope")          # a failed open changes nothing
    assert set(t.fds(10)) == {7}


def test_dup_never_copies_cloexec_except_when_asked():
    t = FdTables()
    t.opened(1, 3, "/a", F.O_CLOEXEC)
    t.duped(1, 3, 4)
    t.fcntl(1, 3, F.F_DUPFD_CLOEXEC, 10, 10)
    t.fcntl(1, 3, F.F_DUPFD, 0, 11)
    fds = t.fds(1)
    assert (fds[3].cloexec, fds[4].cloexec, fds[10].cloexec, fds[11].cloexec) == (True, False, True, False)
    t.fcntl(1, 4, F.F_SETFD, 1, 0)
    t.execed(1)
    assert set(t.fds(1)) == {11}


def test_dup2_over_an_open_fd_replaces_it():
    t = FdTables()
    t.opened(1, 1, "/dev/pts/0")
    t.opened(1, 3, "/tmp/out")
    t.duped(1, 3, 1)
    assert t.path(1, 1) == "/tmp/out"


def test_close_range_closes_or_marks():
    t = FdTables()
    for fd in range(3, 9):
        t.opened(1, fd, f"/f{fd}")
    t.close_range(1, 5, 6)
    assert set(t.fds(1)) == {3, 4, 7, 8}
    t.close_range(1, 7, 0xffffffff, F.CLOSE_RANGE_CLOEXEC)
    t.execed(1)
    assert set(t.fds(1)) == {3, 4}


def test_fork_copies_clone_files_shares_threads_need_nothing():
    t = FdTables()
    t.opened(1, 3, "/a")
    t.forked(1, 2)
    t.forked(1, 3, F.CLONE_FILES)
    t.forked(1, 99, F.CLONE_THREAD | F.CLONE_FILES)   # a thread: same tgid, no new table
    t.opened(1, 4, "/b")
    assert set(t.fds(2)) == {3}            # copied at fork
    assert set(t.fds(3)) == {3, 4}         # shared
    assert t.fds(99) == {}
    t.closed(3, 3)
    assert t.path(1, 3) is None            # the sharer's close is seen by the parent
    t.execed(3)                            # exec unshares: later opens are private
    t.opened(3, 5, "/c")
    assert t.path(1, 5) is None and t.path(3, 5) == "/c"


def test_close_range_unshare():
    t = FdTables()
    t.opened(1, 3, "/a")
    t.forked(1, 2, F.CLONE_FILES)
    t.close_range(2, 0, 100, F.CLOSE_RANGE_UNSHARE)
    assert t.path(1, 3) == "/a" and t.path(2, 3) is None


def test_pipes_and_sockets_named_like_proc():
    t = FdTables()
    t.pipe(1, (3, 4), inode=12345)
    t.anonymous(1, 5, "socket")
    t.pipe(1, None)
    assert t.path(1, 3) == t.path(1, 4) == "pipe:[12345]"
    assert t.path(1, 5) == "socket:[?]"
    assert F.anonymous_name("pipe", None) == "pipe:[?]"


def test_cwd_chdir_fchdir_and_relative_resolution():
    t = FdTables()
    t.set_cwd(1, "/home/u")
    assert t.resolve(1, "x/../y.txt") == ("/home/u/y.txt", None)
    t.chdir(1, "src")
    assert t.cwd(1) == "/home/u/src"
    t.chdir(1, "/tmp//d/")
    assert t.cwd(1) == "/tmp/d"
    t.opened(1, 3, "/var/lib")
    t.fchdir(1, 3)
    assert t.cwd(1) == "/var/lib"
    assert t.resolve(1, "/abs/./p") == ("/abs/p", None)
    # openat(dfd, ...) against the directory open as dfd; the slot is an unsigned register.
    t.opened(1, 9, "/srv/data")
    assert t.resolve(1, "a/b", 9) == ("/srv/data/a/b", None)
    assert t.resolve(1, "rel", 0xffffff9c) == ("/var/lib/rel", None)
    assert t.resolve(1, "rel", 0xffffffffffffff9c) == ("/var/lib/rel", None)
    assert t.resolve(1, "", 9) == ("/srv/data", None)
    path, reason = t.resolve(1, "a", 42)
    assert path is None and "dirfd 42" in reason
    path, reason = t.resolve(2, "a", F.AT_FDCWD)
    assert path is None and "working directory" in reason


def test_cwd_inherited_and_clone_fs_shares():
    t = FdTables()
    t.set_cwd(1, "/a")
    t.forked(1, 2)
    t.forked(1, 3, F.CLONE_FS)
    t.chdir(1, "/b")
    assert (t.cwd(2), t.cwd(3)) == ("/a", "/b")


def test_normalize_is_lexical():
    assert F.normalize("//x/./y/../z") == "/x/z"
    assert F.normalize("/") == "/"
    assert F.normalize("/a/..//..") == "/"


def test_state_before_tracing_comes_from_proc(tmp_path):
    fake_proc(tmp_path, 42, "/work/dir", {0: ("/dev/null", 0o100000), 3: ("/etc/passwd", 0o2100000),
                                          4: ("pipe:[777]", 0), 5: ("socket:[888]", 0)})
    t = FdTables(Host(tmp_path))
    assert t.load_proc() == 1
    fds = t.fds(42)
    assert fds[3] == FdEntry("/etc/passwd", "file", True, "proc")
    assert fds[0].cloexec is False
    assert (fds[4].kind, fds[4].path, fds[5].kind) == ("pipe", "pipe:[777]", "socket")
    assert t.cwd(42) == "/work/dir"
    assert t.resolve(42, "f") == ("/work/dir/f", None)
    t.execed(42)
    assert 3 not in t.fds(42)


def test_unknown_pid_is_read_from_proc_once(tmp_path):
    fake_proc(tmp_path, 7, "/", {3: ("/var/log/syslog", 0)})
    t = FdTables(Host(tmp_path))
    assert t.path(7, 3) == "/var/log/syslog"
    assert t.path(8, 3) is None
    assert t.path(8, 3) is None
    assert t.proc_reads == 1


def test_dup_of_unknown_fd_falls_back_to_proc(tmp_path):
    fake_proc(tmp_path, 7, "/", {})
    t = FdTables(Host(tmp_path))
    t.load_proc()
    os.symlink("/late/file", tmp_path / "proc/7/fd/9")
    t.duped(7, 3, 9)
    assert t.fds(7)[9] == FdEntry("/late/file", "file", False, "proc")


def test_forget_on_exit_and_bounded():
    t = FdTables(max_processes=4)
    for pid in range(10):
        t.opened(pid, 3, f"/p{pid}")
    assert len(t) <= 4 and t.path(9, 3) == "/p9"
    t.exited(9)
    assert t.path(9, 3) is None


@pytest.mark.parametrize("flags", [0, F.O_CLOEXEC])
def test_pipe_cloexec_follows_flags(flags):
    t = FdTables()
    t.pipe(1, (3, 4), flags=flags)
    t.execed(1)
    assert bool(t.fds(1)) == (flags == 0)
