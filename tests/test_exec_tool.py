"""rawtrace exec over hand-built event streams (offline: syscall and sched events, no probes), its flags,
the argv quoting, and the proc connector mode driven by hand-built records."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from rawtrace.cli import main
from rawtrace.emit import Emitter
from rawtrace.parse.format import parse_format
from rawtrace.parse.record import Event
from rawtrace.procconn import ProcOverflow, ProcRecord
from rawtrace.sources import Source
from rawtrace.stream import Stream
from rawtrace.tracers import exec as tool

COMMON = """\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

"""
# Linux 6.18 x86_64 formats, print fmt shortened.
FORMATS = {
    ("syscalls", "sys_enter_execve"): (700, """\
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:const char * filename;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char *const * argv;\toffset:24;\tsize:8;\tsigned:0;
\tfield:const char *const * envp;\toffset:32;\tsize:8;\tsigned:0;

print fmt: "filename: 0x%08lx", ((unsigned long)(REC->filename))
"""),
    ("syscalls", "sys_exit_execve"): (701, """\
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;

print fmt: "0x%lx", REC->ret
"""),
    ("sched", "sched_process_exec"): (702, """\
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: "filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid
"""),
    ("sched", "sched_process_fork"): (703, """\
\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;
\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;

print fmt: "comm=%s pid=%d child_comm=%s child_pid=%d", REC->parent_comm, REC->parent_pid, REC->child_comm, \
REC->child_pid
"""),
}
FMT = {pair: parse_format(f"name: {pair[1]}\nID: {eid}\nformat:\n{COMMON}{body}", system=pair[0])
       for pair, (eid, body) in FORMATS.items()}


class EventsSource(Source):
    kind = "trace.dat"
    clock = "mono"

    def __init__(self, records):
        super().__init__()
        self.records = records

    def format(self, system, name):
        return FMT.get((system, name))

    def open(self, events, *, wanted=None):
        for pair in events:
            if pair in FMT:
                self.ids[FMT[pair].id] = pair

    def batches(self):
        yield list(self.records)

    def task_seed(self):
        return None, {1000: "bash", 1001: "bash"}, {}


def ev(pair, ts, tid, **fields):
    fmt = FMT[pair]
    return Event(ts, 0, tid, fmt.id, fmt, fields)


def fork(ts, parent, child, comm="bash"):
    return ev(("sched", "sched_process_fork"), ts, parent, parent_comm=comm, parent_pid=parent,
              child_comm=comm, child_pid=child)


def enter(ts, tid, argv=0x7FF0):
    return ev(("syscalls", "sys_enter_execve"), ts, tid, __syscall_nr=59, filename=0x7FE0, argv=argv, envp=0)


def exit_(ts, tid, ret):
    return ev(("syscalls", "sys_exit_execve"), ts, tid, __syscall_nr=59, ret=ret)


def exec_(ts, pid, filename, old_pid=None):
    return ev(("sched", "sched_process_exec"), ts, pid, filename=filename, pid=pid,
              old_pid=pid if old_pid is None else old_pid)


SCENE = [
    fork(1_000, 1000, 1001),
    enter(2_000, 1001),
    exec_(3_000, 1001, "/usr/bin/ls"),
    exit_(3_100, 1001, 0),
    fork(4_000, 1000, 1002),
    enter(5_000, 1002),
    exit_(5_100, 1002, -2),
]


def parse(*argv):
    parser = argparse.ArgumentParser()
    tool.add_arguments(parser)
    return parser.parse_args(list(argv))


def run(records, *argv, source=None):
    args = parse(*argv)
    out, err = io.StringIO(), io.StringIO()
    source = source or EventsSource(records)
    stream = Stream(source, tool.ExecTool, args, Emitter(json=args.json, out=out, err=err), pids=args.pid,
                    tids=args.tid, comm=args.comm)
    stream.run()
    return out.getvalue(), err.getvalue()


def recs(text, kind="exec"):
    return [r for r in map(json.loads, text.splitlines()) if r["type"] == kind]


def test_success_and_failure_json():
    out, _err = run(SCENE, "--json", "-x")
    ok, failed = recs(out)
    assert (ok["pid"], ok["ppid"], ok["comm"], ok["new_comm"], ok["filename"], ok["ret"], ok["errno"]) == \
        (1001, 1000, "bash", "ls", "/usr/bin/ls", 0, None)
    assert ok["argv"] == [] and ok["argv_source"] == "none"      # offline: no probes, no /proc
    assert (failed["pid"], failed["ppid"], failed["ret"], failed["errno"], failed["new_comm"]) == \
        (1002, 1000, -2, "ENOENT", None)
    assert recs(out, "summary")[0]["attempts"] == 2


def test_failed_hidden_without_x_and_counted():
    out, err = run(SCENE, "--json")
    assert [r["pid"] for r in recs(out)] == [1001]
    assert recs(out, "summary")[0]["failed_hidden"] == 1
    assert "1 failed not shown" in err


def test_comm_filter_matches_the_name_after_the_exec():
    out, _ = run(SCENE, "--json", "-x", "-n", "ls")
    assert [r["pid"] for r in recs(out)] == [1001]
    out, _ = run(SCENE, "--json", "-x", "-n", "bash")        # the name before: both
    assert len(recs(out)) == 2


def test_text_header_and_line():
    out, _ = run(SCENE, "-x", "--timestamp")
    lines = out.splitlines()
    assert lines[0].split() == ["TIME(s)", "PCOMM", "COMM", "PID", "PPID", "RET", "FILE", "ARGS"]
    assert lines[1].split()[:7] == ["0.000000", "bash", "ls", "1001", "1000", "0", "/usr/bin/ls"]
    assert "ENOENT" in lines[2] and "(argv not captured)" in lines[2]


def test_non_leader_exec_reports_the_leader_pid():
    scene = [fork(1_000, 1000, 1001), enter(2_000, 1003), exec_(3_000, 1001, "/bin/x", old_pid=1003),
             exit_(3_100, 1001, 0)]
    out, _ = run(scene, "--json")
    [attempt] = recs(out)
    assert attempt["pid"] == 1001 and attempt["tid"] == 1003 and attempt["filename"] == "/bin/x"


@pytest.mark.parametrize("arg, shown", [
    (b"plain-1.2/x=y", "plain-1.2/x=y"),
    (b"", '""'),
    (b"with space", '"with space"'),
    (b'q"uote', '"q\\"uote"'),
    (b"back\\slash", '"back\\\\slash"'),
    (b"\xff\xfe", '"\\xff\\xfe"'),
    (b"\x1b[31m", '"\\x1b[31m"'),
    (b"new\nline", '"new\\nline"'),
    (b"$HOME", '"$HOME"'),
])
def test_quote_arg(arg, shown):
    assert tool.quote_arg(arg) == shown
    assert "\x1b" not in tool.quote_arg(arg) and "\n" not in tool.quote_arg(arg)


def test_format_argv_marks_cuts():
    assert tool.format_argv([b"a", b"bbb"], [False, True], True) == "a bbb... ..."


def test_bad_flags_are_one_line_errors(capsys):
    # Refused while the tool is built, before anything is traced.
    assert main(["exec", "--argv-regex", "("]) == 2
    assert main(["exec", "--head-args", "-1"]) == 2
    assert main(["exec", "--source", "proc", "-i", "x.dat"]) == 2
    err = capsys.readouterr().err
    assert "bad --argv-regex '('" in err and "--head-args must be 0 or more" in err
    assert "cannot read a recording" in err
    assert err.count("rawtrace:") == 3 and "Traceback" not in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["exec", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--source proc" in text and "argv_source" in text


class FakeProcSource(tool.ProcSource):
    """ProcSource with hand-built records instead of the netlink socket."""

    def __init__(self, records):
        super().__init__(host=None)
        self.records = records

    def open(self, events, *, wanted=None, unfiltered=None):
        pass

    def batches(self):
        yield list(self.records)

    def task_seed(self):
        return None, {}, {}

    def close(self):
        pass


def test_proc_connector_records():
    records = [
        ProcRecord(1, "fork", 501, 501, 0, parent_pid=500, parent_tid=500),
        ProcRecord(2, "exec", 501, 501, 0, comm="ls", cmdline=b"ls\0-l\0my dir\0", exe="/usr/bin/ls",
                   environ=b"A=1\0B=two words\0"),
        ProcRecord(3, "fork", 601, 601, 0, parent_pid=999, parent_tid=999),
        ProcRecord(4, "exec", 601, 601, 0, comm=None, cmdline=None, exe=None),       # gone before read
        ProcOverflow(5),
    ]
    out, err = run([], "--json", "--env", "--source", "proc", source=FakeProcSource(records))
    first, second = recs(out)
    assert first["env"] == ["A=1", "B=two words"] and second["env"] == []
    assert first["argv"] == ["ls", "-l", "my dir"] and first["argv_source"] == "proc" and first["ppid"] == 500
    assert first["filename"] == "/usr/bin/ls" and first["new_comm"] == "ls"
    assert second["argv"] == [] and second["argv_source"] == "none" and second["ppid"] == 999
    assert "dropped events" in err
    # -p follows the subtree through fork records.
    out, _ = run([], "--json", "--source", "proc", "-p", "500", source=FakeProcSource(records))
    assert [r["pid"] for r in recs(out)] == [501]


def test_proc_connector_chosen_under_confidentiality_lockdown(tmp_path, capsys, monkeypatch):
    from fakehost import FakeHost
    root = FakeHost(lockdown="confidentiality", secure_boot="enabled", tracefs="empty",
                    dmesg=["Tracing disabled due to lockdown"]).build(tmp_path / "host")
    records = [ProcRecord(2, "exec", 501, 501, 0, comm="ls", cmdline=b"ls\0", exe="/usr/bin/ls")]
    class Patched(FakeProcSource):
        def __init__(self, host, duration=None, environ=False):
            super().__init__(records)
    monkeypatch.setattr(tool, "ProcSource", Patched)
    rc = main(["--root", str(root), "exec", "--json", "-d", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "tracefs cannot be used" in captured.err and "proc connector instead" in captured.err
    assert [r["argv"] for r in recs(captured.out)] == [["ls"]]
    assert not (root / "sys/kernel/tracing/instances").exists()      # tracefs empty: nothing made there
    # --source tracefs does not fall back: the one-line refusal, exit 2.
    assert main(["--root", str(root), "exec", "--source", "tracefs", "-d", "1"]) == 2


# Linux 6.19 records user strings in the syscall events (kernel/trace/trace_syscalls.c: a
# `__data_loc char[] __<arg>_val` field after the arguments; see tests/fixtures/formats/6.19-syscall-strings).
ENTER_619 = parse_format("""name: sys_enter_execve
ID: 710
format:
""" + COMMON + """\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:const char * filename;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char *const * argv;\toffset:24;\tsize:8;\tsigned:0;
\tfield:const char *const * envp;\toffset:32;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] __filename_val;\toffset:40;\tsize:4;\tsigned:0;

print fmt: "filename: 0x%08lx \\"%s\\"", ((unsigned long)(REC->filename)), __get_str(__filename_val)
""", system="syscalls")


def test_619_filename_string_names_a_failed_exec(monkeypatch):
    monkeypatch.setitem(FMT, ("syscalls", "sys_enter_execve"), ENTER_619)
    scene = [fork(1_000, 1000, 1002),
             Event(5_000, 0, 1002, ENTER_619.id, ENTER_619,
                   {"__syscall_nr": 59, "filename": 0x7FE0, "argv": 0x7FF0, "envp": 0,
                    "__filename_val": "/no/such prog"}),
             exit_(5_100, 1002, -2)]
    out, _ = run(scene, "--json", "-x")
    [attempt] = recs(out)
    assert attempt["filename"] == "/no/such prog" and attempt["errno"] == "ENOENT"
    assert {f.name for f in ENTER_619.fields} >= {"__filename_val"}
    assert tool.X.syscall_string_fields(f.name for f in ENTER_619.fields) == {"filename": "__filename_val"}


def test_lost_events_mark_calls_in_flight():
    from rawtrace.parse.record import Lost
    scene = [fork(1_000, 1000, 1001), enter(2_000, 1001), Lost(0, 2_500, 7),
             exec_(3_000, 1001, "/usr/bin/ls"), exit_(3_100, 1001, 0)]

    class LossySource(EventsSource):
        def batches(self):
            for rec in self.records:
                if isinstance(rec, Lost):
                    self.summary.note_lost(rec)
            yield list(self.records)
    out, err = run([], "--json", source=LossySource(scene))
    [attempt] = recs(out)
    assert attempt["incomplete"] is True and attempt["filename"] == "/usr/bin/ls"
    assert recs(out, "summary")[0]["lost"] == 7 and "7 lost" in err


@pytest.mark.parametrize("argv", [["--cmdline-at-exec", "--no-cmdline"], ["--cmdline-at-exec", "-i", "REC"]])
def test_cmdline_at_exec_with_no_cmdline_or_a_recording_is_one_line_and_exit_2(argv, tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    recording = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "raw_syscalls_1905722ev.dat"
    if "REC" in argv:
        if not recording.exists():
            pytest.skip("no shared recording")
        argv = [str(recording) if a == "REC" else a for a in argv]
    done = subprocess.run([sys.executable, "-m", "rawtrace", "exec", *argv, "-d", "1"], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent, check=False)
    assert done.returncode == 2 and "--cmdline-at-exec" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
