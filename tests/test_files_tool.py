"""rawtrace files offline: syscalls + uprobe captures + fanotify records in, fatrace lines and NDJSON out;
the source choice on a fake locked-down tree."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from rawtrace import fanotify as F
from rawtrace.emit import Emitter
from rawtrace.errors import TracingBlocked
from rawtrace.syscalls.calls import COMPLETE, Signature, Syscall
from rawtrace.tracers import files as T

PARAMS = {
    "openat": (("dfd", "int"), ("filename", "const char *"), ("flags", "int"), ("mode", "umode_t")),
    "read": (("fd", "unsigned int"), ("buf", "char *"), ("count", "size_t")),
    "write": (("fd", "unsigned int"), ("buf", "const char *"), ("count", "size_t")),
    "close": (("fd", "unsigned int"),),
    "dup2": (("oldfd", "unsigned int"), ("newfd", "unsigned int")),
    "chdir": (("filename", "const char *"),),
    "renameat2": (("olddfd", "int"), ("oldname", "const char *"), ("newdfd", "int"), ("newname", "const char *"),
                  ("flags", "unsigned int")),
    "unlinkat": (("dfd", "int"), ("pathname", "const char *"), ("flag", "int")),
    "execve": (("filename", "const char *"), ("argv", "const char *const *"), ("envp", "const char *const *")),
    "sendfile64": (("out_fd", "int"), ("in_fd", "int"), ("offset", "loff_t *"), ("count", "size_t")),
    "fchmodat": (("dfd", "int"), ("filename", "const char *"), ("mode", "umode_t")),
    "ftruncate": (("fd", "unsigned int"), ("length", "off_t")),
}
AT_FDCWD = 0xffffff9c


class Tasks:
    def __init__(self, names):
        self.names = names

    def comm(self, tid):
        return self.names.get(tid, "<...>")

    def pid(self, tid):
        return tid


class Source:
    kind = "offline"
    host = None
    summary = None
    fanotify = None
    probe_events: tuple = ()


class Ctx:
    def __init__(self, json_out: bool, names: dict, source=None):
        self.out = Emitter(json=json_out, out=io.StringIO(), err=io.StringIO())
        self.source = source or Source()
        self.tasks = Tasks(names)
        self.arch = "x86_64"
        self.ns = True
        self.live = False
        self.clock = "mono"
        from rawtrace.syscalls.render import SyscallFormatter
        self.formatter = SyscallFormatter("x86_64")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    T.add_arguments(parser)
    return parser.parse_args(argv)


def call(name: str, tid: int, ts: int, values: tuple, ret: int, comm: str = "cat", strings=None) -> Syscall:
    return Syscall(COMPLETE, ts, ts + 1000, 0, 0, tid, tid, comm, Signature(None, name, PARAMS[name]), values, ret,
                   strings=strings)


def tool(argv=(), json_out=True, names=None, source=None) -> T.Files:
    files = T.Files(parse(list(argv)), Ctx(json_out, names or {}, source))
    files.start()
    return files


def output(files: T.Files) -> list[dict]:
    files.finish()
    return [json.loads(line) for line in files.ctx.out.out.getvalue().splitlines()]


def capture(files: T.Files, tid: int, ts: int, *pairs) -> None:
    files.uprobes.capture(tid, ts, list(pairs))


def test_open_read_write_close_named_by_uprobe_and_fd_table():
    files = tool()
    capture(files, 7, 100, (0x1000, "/etc/motd"))
    files.on_syscall(call("openat", 7, 110, (AT_FDCWD, 0x1000, 0o2000000, 0), 3))
    files.on_syscall(call("read", 7, 120, (3, 0x5000, 4096), 286))
    files.on_syscall(call("write", 7, 130, (3, 0x5000, 10), -9))
    files.on_syscall(call("close", 7, 140, (3,), 0))
    records = [r for r in output(files) if r["type"] == "file"]
    assert [(r["types"], r["syscall"], r["path"], r["path_source"]) for r in records] == [
        ("O", "openat", "/etc/motd", "uprobe"), ("R", "read", "/etc/motd", "fdtable"),
        ("W", "write", "/etc/motd", "fdtable"), ("C", "close", "/etc/motd", "fdtable")]
    opened, read, failed, _close = records
    assert opened["flags"] == "O_RDONLY|O_CLOEXEC" and opened["fd"] == 3 and opened["ret"] == 3
    assert opened["mode"] is None                         # no O_CREAT: the mode slot is noise
    assert read["bytes"] == 286 and failed["errno"] == "EBADF" and failed["bytes"] is None
    for key in ("ts", "pid", "tid", "comm", "types", "syscall", "path", "path_to", "fd", "flags", "mode", "bytes",
                "ret", "errno", "path_source"):
        assert key in opened


def test_written_fd_closes_as_cw_and_dup2_maps_stdout():
    files = tool(json_out=False, names={9: "bash"})
    capture(files, 9, 10, (0x10, "somefile"))
    files.fds.set_cwd(9, "/tmp/d")
    files.on_syscall(call("openat", 9, 20, (AT_FDCWD, 0x10, 0o1101, 0o666), 4, comm="bash"))
    files.on_syscall(call("dup2", 9, 30, (4, 1), 1, comm="bash"))
    files.on_syscall(call("close", 9, 40, (4,), 0, comm="bash"))
    files.on_syscall(call("write", 9, 50, (1, 0, 6), 6, comm="bash"))
    files.on_syscall(call("close", 9, 60, (1,), 0, comm="bash"))
    files.finish()
    lines = files.ctx.out.out.getvalue().splitlines()
    assert lines == ["bash(9): O   /tmp/d/somefile", "bash(9): C   /tmp/d/somefile",
                     "bash(9): W   /tmp/d/somefile", "bash(9): CW  /tmp/d/somefile"]


def test_wide_line_shows_flags_mode_bytes_fd_ret():
    files = tool(["-w"], json_out=False)
    capture(files, 5, 1, (0x20, "/tmp/new"))
    files.on_syscall(call("openat", 5, 2, (AT_FDCWD, 0x20, 0o101, 0o644), 3))
    files.finish()
    (line,) = files.ctx.out.out.getvalue().splitlines()
    assert line == "cat(5): O   /tmp/new  openat fd=3 flags=O_WRONLY|O_CREAT mode=0644 ret=3 [uprobe]"


def test_chdir_then_relative_open():
    files = tool()
    files.fds.set_cwd(3, "/")
    capture(files, 3, 1, (0xa, "srv/data"))
    files.on_syscall(call("chdir", 3, 2, (0xa,), 0))
    capture(files, 3, 3, (0xb, "../x.txt"))
    files.on_syscall(call("openat", 3, 4, (AT_FDCWD, 0xb, 0, 0), 5))
    (record,) = [r for r in output(files) if r["type"] == "file"]
    assert record["path"] == "/srv/x.txt"


def test_rename_has_both_paths_and_unlink_fails_with_errno():
    files = tool(json_out=False, names={4: "mv"})
    capture(files, 4, 1, (0x1, "/d/a"), (0x2, "/d/b"))
    files.on_syscall(call("renameat2", 4, 2, (AT_FDCWD, 0x1, AT_FDCWD, 0x2, 1), 0, comm="mv"))
    capture(files, 4, 3, (0x3, "/d/none"))
    files.on_syscall(call("unlinkat", 4, 4, (AT_FDCWD, 0x3, 0), -2, comm="mv"))
    files.finish()
    assert files.ctx.out.out.getvalue().splitlines() == ["mv(4): <>  /d/a -> /d/b", "mv(4): D   /d/none (ENOENT)"]


def test_filters_types_failed_under_and_dir():
    for argv, wanted in ((["-f", "R"], ["R"]), (["-x"], ["W"]), (["--under", "/etc"], ["O", "R", "W"]),
                         (["--dir", "/var"], [])):
        files = tool(argv)
        capture(files, 1, 1, (0x1, "/etc/x"))
        files.on_syscall(call("openat", 1, 2, (AT_FDCWD, 0x1, 0, 0), 3))
        files.on_syscall(call("read", 1, 3, (3, 0, 1), 1))
        files.on_syscall(call("write", 1, 4, (3, 0, 1), -9))
        assert [r["types"] for r in output(files) if r["type"] == "file"] == wanted, argv


def test_path_from_fanotify_joined_to_an_unnamed_open():
    """A static program's open (no libc probe): the fanotify event of the same pid names it, and its fd."""
    source = Source()
    source.fanotify = argparse.Namespace(mode="fid", names=F.Names(lambda pid: None))
    files = tool(source=source, names={6: "rtstatic"})
    files.on_syscall(call("openat", 6, 1000, (AT_FDCWD, 0x99, 0, 0), 3, comm="rtstatic"))
    files.on_syscall(call("read", 6, 3000, (3, 0, 16), 7, comm="rtstatic"))
    record = F.FileRecord(50_000_000, 6, F.FAN_OPEN, "/work/static-unique.txt", comm="rtstatic")
    files.on_record(record)
    files.on_record(T.Progress(100_000_000, 60_000_000))
    files.on_tick(100_000_000)
    records = [r for r in output(files) if r["type"] == "file"]
    assert [(r["types"], r["path"], r["path_source"]) for r in records] == [
        ("O", "/work/static-unique.txt", "fanotify"), ("R", "/work/static-unique.txt", "fdtable")]


def test_an_open_waiting_for_fanotify_is_not_named_from_proc_meanwhile():
    """/proc/PID/fd/N is the last resort (racy): an open that fanotify will name waits for it instead."""
    source = Source()
    source.fanotify = argparse.Namespace(mode="fid", names=F.Names(lambda pid: None))
    files = tool(source=source, names={6: "rtstatic"})
    files._proc_link = lambda pid, what: "/racy/proc/answer"
    files.on_syscall(call("openat", 6, 1000, (AT_FDCWD, 0x99, 0, 0), 3, comm="rtstatic"))
    files.on_record(F.FileRecord(50_000_000, 6, F.FAN_OPEN, "/work/static-unique.txt", comm="rtstatic"))
    files.on_record(T.Progress(100_000_000, 60_000_000))
    files.on_tick(100_000_000)
    records = [r for r in output(files) if r["type"] == "file"]
    assert [(r["path"], r["path_source"]) for r in records] == [("/work/static-unique.txt", "fanotify")]


def test_unnamed_open_without_fanotify_is_unknown_with_reason_and_counted():
    files = tool()
    files.on_syscall(call("openat", 6, 1000, (AT_FDCWD, 0x99, 0, 0), 3))
    records = output(files)
    (record,) = [r for r in records if r["type"] == "file"]
    assert record["path"] is None and record["path_source"] == "unknown" and record["unknown_reason"]
    summary = next(r for r in records if r["type"] == "summary")
    assert summary["unknown_paths"] == 1 and summary["path_sources"] == {"unknown": 1}


def test_kernel_string_field_is_the_first_source():
    files = tool()
    files.on_syscall(call("openat", 2, 1, (AT_FDCWD, 0x5, 0, 0), 3, strings={"filename": "/from/kernel"}))
    (record,) = [r for r in output(files) if r["type"] == "file"]
    assert (record["path"], record["path_source"]) == ("/from/kernel", "syscall")


def test_fanotify_only_records_are_lines_with_child_names():
    source = Source()
    source.kind = "fanotify"
    files = tool(source=source, json_out=False)
    files.on_record(F.FileRecord(1, 8, F.FAN_CREATE, "/tmp/d/new", "/tmp/d", "new", comm="touch"))
    files.on_record(F.FileRecord(2, 8, F.FAN_CLOSE_WRITE, "/tmp/d/new", comm="touch"))
    files.on_record(F.Overflow(3))
    files.finish()
    assert files.ctx.out.out.getvalue().splitlines() == ["touch(8): +   /tmp/d/new", "touch(8): CW  /tmp/d/new"]
    assert "overflowed" in files.ctx.out.err.getvalue()


def test_control_characters_in_names_and_paths_are_escaped():
    files = tool(json_out=False, names={1: "ev\x1bil"})
    capture(files, 1, 1, (0x1, "/tmp/a\nb"))
    files.on_syscall(call("openat", 1, 2, (AT_FDCWD, 0x1, 0, 0), 3, comm="ev\x1bil"))
    files.finish()
    (line,) = files.ctx.out.out.getvalue().splitlines()
    assert "\x1b" not in line and "\n" not in line and "/tmp/a" in line


def test_bad_types_is_a_usage_error():
    from rawtrace.errors import UsageError
    with pytest.raises(UsageError, match="-f TYPES"):
        tool(["-f", "Q"])


def test_source_choice_on_a_locked_down_tree(tmp_path):
    from fakehost import FakeHost

    from rawtrace.host import Host
    root = FakeHost(lockdown="confidentiality", tracefs="empty").build(tmp_path)
    host = Host(root)
    kind, why = T.choose_source(parse([]), host)
    assert kind == "fanotify" and "lockdown" in why
    with pytest.raises(TracingBlocked):
        T.choose_source(parse(["--source", "tracefs"]), host)
    assert T.choose_source(parse(["--source", "fanotify"]), host) == ("fanotify", None)


def test_lockdown_run_says_so_in_one_line_and_uses_fanotify(tmp_path, monkeypatch, capsys):
    """The automatic choice end to end on a fake locked-down tree: one line, then fanotify (faked here)."""
    from fakehost import FakeHost

    from rawtrace.cli import main
    root = FakeHost(lockdown="confidentiality", tracefs="empty").build(tmp_path)
    (root / "proc/sys/fs/fanotify").mkdir(parents=True, exist_ok=True)
    opened = []

    class FakeFanotify:
        def __init__(self, host, **kwargs):
            self.names = F.Names(lambda pid: None)
            self.fd = None
            self.mode = "fid"

        def open(self):
            opened.append(True)

        def batches(self):
            yield [F.FileRecord(5, 42, F.FAN_OPEN, "/etc/hosts", comm="curl")]

        def stop(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(F, "FanotifySource", FakeFanotify)
    code = main(["--root", str(root), "files"])
    out, err = capsys.readouterr()
    assert code == 0 and opened
    assert out.splitlines() == ["curl(42): O   /etc/hosts"]
    notes = [line for line in err.splitlines() if "tracefs is refused" in line]
    assert len(notes) == 1 and "fanotify alone" in notes[0]


def test_pid_and_comm_filters_apply_to_fanotify_records_too():
    source = Source()
    source.kind = "fanotify"
    files = tool(["-p", "8", "--exclude-pid", "9"], source=source, json_out=False)
    for pid, comm in ((8, "touch"), (9, "touch"), (10, "other")):
        files.on_record(F.FileRecord(pid, pid, F.FAN_OPEN, f"/tmp/{pid}", comm=comm))
    files.finish()
    assert files.ctx.out.out.getvalue().splitlines() == ["touch(8): O   /tmp/8"]
    files = tool(["-n", "other"], source=source, json_out=False)
    files.on_record(F.FileRecord(1, 10, F.FAN_OPEN, "/tmp/a", comm="other"))
    files.on_record(F.FileRecord(2, 11, F.FAN_OPEN, "/tmp/b", comm="touch"))
    files.on_record(F.FileRecord(3, 12, F.FAN_DELETE, "(deleted)/x", "(deleted)", "x", comm="other"))
    files.finish()
    assert files.ctx.out.out.getvalue().splitlines() == [
        "other(10): O   /tmp/a", "other(12): D   (unknown: deleted before fanotify's handle could be opened)"]


def test_619_string_field_in_the_call_arguments_names_the_path():
    """On 6.19+ the enter event carries `__filename_val`; the joiner passes it as an argument."""
    files = tool()
    params = PARAMS["openat"] + (("__filename_val", "__data_loc char[]"),)
    record = Syscall(COMPLETE, 1, 2, 0, 0, 4, 4, "cat", Signature(None, "openat", params),
                     (AT_FDCWD, 0x5, 0, 0, "/etc/motd"), 3)
    files.on_syscall(record)
    (out,) = [r for r in output(files) if r["type"] == "file"]
    assert (out["path"], out["path_source"]) == ("/etc/motd", "syscall")


def test_needs_without_uprobes_degrades_to_syscalls_and_says_why(tmp_path):
    from rawtrace.host import Host
    source = Source()
    source.kind = "live"
    source.host = Host(tmp_path)               # an empty tree: no tracefs, no C library
    source.available = lambda system, name: name.endswith(("_openat", "_read", "_close", "_write", "_dup2"))
    source.format = lambda system, name: None
    files = T.Files(parse([]), Ctx(True, {}, source))
    needs = files.needs()
    assert ("syscalls", "sys_enter_openat") in needs.events and ("syscalls", "sys_exit_dup2") in needs.optional_events
    assert needs.syscalls and needs.probes == [] and files.plan.reason


def test_needs_leaves_string_uprobes_out_where_a_kernel_warning_panics(tmp_path, monkeypatch):
    """kernel.panic_on_warn set: no libc path uprobes (a path of 4084-4095 characters would panic the kernel in
    prepare_uprobe_buffer), the reason said at start; the plan is made otherwise (the same tree)."""
    from rawtrace import doctor
    from rawtrace.host import Host
    (tmp_path / "proc" / "sys" / "kernel").mkdir(parents=True)
    planned = []
    monkeypatch.setattr(doctor, "preflight", lambda host, needs: None)
    monkeypatch.setattr(T.FP, "plan_uprobes", lambda host, skip_syscalls: planned.append(host) or T.FP.UprobePlan(
        "libc", (), ()))
    for setting in ("1", "0"):
        (tmp_path / "proc" / "sys" / "kernel" / "panic_on_warn").write_text(setting + "\n")
        source = Source()
        source.kind = "live"
        source.host = Host(tmp_path)
        source.available = lambda system, name: True
        source.format = lambda system, name: None
        files = T.Files(parse([]), Ctx(True, {}, source))
        needs = files.needs()
        assert needs.probes == []
        if setting == "1":
            assert planned == [] and "panic_on_warn" in files.plan.reason
            files.start()
            assert "no uprobes: kernel.panic_on_warn is set" in files.ctx.out.err.getvalue()
        else:
            assert len(planned) == 1 and files.plan.reason is None


def test_sendfile_reads_one_file_and_writes_the_other_chmod_is_an_attribute_change():
    files = tool(json_out=False, names={3: "cp"})
    for fd, pointer, path in ((3, 0x1, "/src"), (4, 0x2, "/dst")):
        capture(files, 3, fd, (pointer, path))
        files.on_syscall(call("openat", 3, 10 * fd, (AT_FDCWD, pointer, 0, 0), fd, comm="cp"))
    files.on_syscall(call("sendfile64", 3, 100, (4, 3, 0, 4096), 4096, comm="cp"))
    files.on_syscall(call("ftruncate", 3, 110, (4, 0), 0, comm="cp"))
    capture(files, 3, 120, (0x3, "/dst"))
    files.on_syscall(call("fchmodat", 3, 130, (AT_FDCWD, 0x3, 0o600), 0, comm="cp"))
    files.finish()
    assert files.ctx.out.out.getvalue().splitlines()[2:] == [
        "cp(3): R   /src", "cp(3): W   /dst", "cp(3): W   /dst", "cp(3): A   /dst"]


def test_fds_from_pipes_made_during_the_trace_are_hidden_unless_all_fds():
    for argv, shown in (([], []), (["--all-fds"], [None])):
        files = tool(argv)
        files.fds.forked(1, 2)                 # followed since its fork: its table is complete
        files.on_syscall(call("write", 2, 10, (5, 0, 3), 3))
        records = output(files)
        assert [r["path"] for r in records if r["type"] == "file"] == shown, argv
        summary = next(r for r in records if r["type"] == "summary")
        assert summary["hidden_anonymous_fd_events"] == (0 if shown else 1)


def test_needs_prefers_eprobes_where_the_kernel_has_them(tmp_path, monkeypatch):
    from rawtrace.host import Host
    source = Source()
    source.kind = "live"
    source.host = Host(tmp_path)
    source.tracefs = tmp_path
    source.available = lambda system, name: True
    source.format = lambda system, name: None
    monkeypatch.setattr(T, "_eprobes_supported", lambda source, host: True)
    files = T.Files(parse([]), Ctx(True, {}, source))
    needs = files.needs()
    assert "files_e_openat=eprobe:syscalls:sys_enter_openat p1=filename:x64 s1=filename:ustring" in needs.probes
    assert "eprobes" in needs.preflight and "uprobes" not in needs.preflight
    # A capture from that eprobe names the next openat of the thread, as "eprobe".
    files.start()
    files.uprobes.capture(5, 1, [(0x10, "/etc/fstab")])
    files.on_syscall(call("openat", 5, 2, (AT_FDCWD, 0x10, 0, 0), 3))
    (record,) = [r for r in output(files) if r["type"] == "file"]
    assert (record["path"], record["path_source"]) == ("/etc/fstab", "eprobe")


def test_real_paths_for_the_fanotify_join_are_remembered_per_path(tmp_path):
    from rawtrace.host import Host
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    canonical = T._RememberedRealpath(Host(), limit=2)
    assert canonical(f"{tmp_path}/link/f") == f"{tmp_path}/dir/f"
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to(tmp_path)
    # Remembered: the link's change is not seen by itself ...
    assert canonical(f"{tmp_path}/link/f") == f"{tmp_path}/dir/f"
    # ... until the table is full and forgotten at once,
    canonical(f"{tmp_path}/dir")
    canonical(f"{tmp_path}/dir/f")
    assert canonical(f"{tmp_path}/link/f") == f"{tmp_path}/f"
    # or the tool says the names changed (it does after every unlink, rmdir, rename and mkdir).
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    canonical.forget()
    assert canonical(f"{tmp_path}/link/f") == f"{tmp_path}/dir/f"
    # A created or deleted entry is named as fanotify names it: the link, not where it leads.
    assert canonical.entry(f"{tmp_path}/link") == f"{tmp_path}/link"
    assert canonical.entry(f"{tmp_path}/link/f") == f"{tmp_path}/dir/f"
    assert canonical.entry("/") == "/"


def test_a_deleted_symlink_is_joined_to_its_own_fanotify_event(tmp_path):
    """`cat /tmp/l; rm /tmp/l` with /tmp/l -> /a: the delete names the link, so it consumes the fanotify
    delete of the link (not of the target, which would leave the link's event to be shown again)."""
    from rawtrace import filepaths as FP
    from rawtrace.host import Host
    (tmp_path / "a").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "a")
    canonical = T._RememberedRealpath(Host())
    j = FP.FanotifyJoiner(settle_ns=100, canonical=canonical)
    j.named(7, "open", f"{tmp_path}/l", 10)
    j.event(7, "open", "ev-open", f"{tmp_path}/a", 11)
    (tmp_path / "l").unlink()
    j.named(7, "delete", f"{tmp_path}/l", 12)
    j.event(7, "delete", "ev-delete", f"{tmp_path}/l", 13)
    _joined, alone, given_up = j.match(now=500)
    assert alone == [] and given_up == []


def test_numbered_path_probe_events_are_handled_like_the_one_event():
    """A kernel without multi-probe events gets files_path, files_path_2, ... (one layout): each is a
    path capture."""
    from rawtrace import filepaths as FP

    class Live(Source):
        probe_events = (("rawtrace_1", FP.UPROBE_EVENT), ("rawtrace_1", FP.UPROBE_EVENT + "_2"),
                        ("rawtrace_1", "files_pathological"))
    files = T.Files(parse([]), Ctx(True, {7: "cat"}, Live()))
    files.plan = FP.UprobePlan("/lib/libc.so.6", (FP.PlannedProbe("open64", FP.UPROBE_EVENT, "spec",
                                                                   FP.UPROBE_FIELDS),), ())
    handlers = files.handlers()
    assert ("rawtrace_1", FP.UPROBE_EVENT + "_2") in handlers and ("rawtrace_1", "files_pathological") not in handlers

    class Rec:
        pid, ts, fields = 7, 100, {"p": 0x1000, "s": "/etc/motd"}
    handlers[("rawtrace_1", FP.UPROBE_EVENT + "_2")](Rec())
    assert files.uprobes.join(7, 110, [0x1000]) == ["/etc/motd"]
