"""The event pipeline offline: sources, task table, syscall joiner, syscount and trace over built pages."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from test_cli_decode import COMMON_FIELDS, HEADER_EVENT, header_page
from test_ringbuf_support import PageBuilder, common

from rawtrace.cli import main

ENTER = f"""name: sys_enter
ID: 21
format:
{COMMON_FIELDS}
\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;
\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;

print fmt: "NR %ld (%lx, %lx, %lx, %lx, %lx, %lx)", REC->id, REC->args[0], REC->args[1], REC->args[2], REC->args[3], REC->args[4], REC->args[5]
"""
EXIT = f"""name: sys_exit
ID: 22
format:
{COMMON_FIELDS}
\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;
\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;

print fmt: "NR %ld = %ld", REC->id, REC->ret
"""
NEWTASK = f"""name: task_newtask
ID: 30
format:
{COMMON_FIELDS}
\tfield:pid_t pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:12;\tsize:16;\tsigned:0;
\tfield:u64 clone_flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:short oom_score_adj;\toffset:40;\tsize:2;\tsigned:1;

print fmt: "pid=%d comm=%s clone_flags=%llx oom_score_adj=%hd", REC->pid, REC->comm, REC->clone_flags, REC->oom_score_adj
"""
EXEC = f"""name: sched_process_exec
ID: 31
format:
{COMMON_FIELDS}
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: "filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid
"""
NR = {"read": 0, "close": 3, "openat": 257, "exit_group": 231, "getpid": 39}


def tracefs(root: Path) -> Path:
    events = root / "tracefs" / "events"
    for system, name, text, event_id in (("raw_syscalls", "sys_enter", ENTER, 21),
                                         ("raw_syscalls", "sys_exit", EXIT, 22),
                                         ("task", "task_newtask", NEWTASK, 30),
                                         ("sched", "sched_process_exec", EXEC, 31)):
        (events / system / name).mkdir(parents=True, exist_ok=True)
        (events / system / name / "format").write_text(text)
        (events / system / name / "id").write_text(f"{event_id}\n")
    (events / "header_page").write_text(header_page(8, 4096))
    (events / "header_event").write_text(HEADER_EVENT)
    (root / "tracefs" / "saved_cmdlines").write_text("100 worker\n200 other\n")
    return root / "tracefs"


def enter(tid: int, nr: int, *args: int) -> bytes:
    values = list(args) + [0] * (6 - len(args))
    return common("little", 21, tid) + struct.pack("<q6Q", nr, *values)


def exit_(tid: int, nr: int, ret: int) -> bytes:
    return common("little", 22, tid) + struct.pack("<qq", nr, ret)


def newtask(parent: int, child: int, comm: bytes, flags: int) -> bytes:
    return common("little", 30, parent) + struct.pack("<i16s4xQh", child, comm, flags, 0) + b"\0\0"


def exec_(tid: int, filename: bytes) -> bytes:
    name = filename + b"\0"
    return common("little", 31, tid) + struct.pack("<Iii", (len(name) << 16) | 20, tid, tid) + name


def workload(tmp_path: Path) -> tuple[Path, Path]:
    """CPU 0: process 100 (`worker`) makes 3 openat (one fails ENOENT), 2 read, forks a thread 101 that
    closes an fd on CPU 1; process 200 execs `newname` and calls getpid, then exit_group. One enter on CPU 1
    has its exit after a lost-events marker; one exit on CPU 1 has no enter at all."""
    cpu0 = PageBuilder()
    for n, ret in enumerate((3, -2, 4)):
        cpu0.event(enter(100, NR["openat"], 0xFFFFFF9C, 0x1000 + n, 0), delta=10)
        cpu0.event(exit_(100, NR["openat"], ret), delta=5)
    for _ in range(2):
        cpu0.event(enter(100, NR["read"], 3, 0x2000, 10), delta=10).event(exit_(100, NR["read"], 10), delta=7)
    cpu0.event(newtask(100, 101, b"worker", 0x10000 | 0x100), delta=10)
    cpu0.event(exec_(200, b"/usr/bin/newname"), delta=10)
    cpu0.event(enter(200, NR["getpid"]), delta=10).event(exit_(200, NR["getpid"], 200), delta=2)
    cpu0.event(enter(200, NR["exit_group"], 0), delta=10)
    page0 = cpu0.build(1_000_000_000)
    cpu1 = PageBuilder()
    cpu1.event(exit_(300, NR["read"], 1), delta=1)              # its enter came before the trace
    cpu1.event(exit_(301, -1, 0), delta=1)                      # a new task's return from fork: no call
    cpu1.event(enter(101, NR["close"], 3), delta=300).event(exit_(101, NR["close"], 0), delta=4)
    cpu1.event(enter(101, NR["read"], 4, 0, 1), delta=10)
    page1 = cpu1.build(1_000_000_000)
    # The second page of CPU 1 says events were lost before it: the read in flight must not pair.
    page2 = PageBuilder().event(exit_(101, NR["read"], 1), delta=1).build(1_000_010_000, missed=True, stored=7)
    (tmp_path / "cpu0.raw").write_bytes(page0)
    (tmp_path / "cpu1.raw").write_bytes(page1 + page2)
    return tmp_path / "cpu0.raw", tmp_path / "cpu1.raw"


def workload_recording(tmp_path: Path) -> Path:
    """workload()'s pages as a trace.dat: its events are known before the first record (raw pages find
    theirs as they come)."""
    from rawtrace.parse.tracedat_write import TraceDatContent, write_tracedat
    cpu0, cpu1 = workload(tmp_path)
    recording = tmp_path / "rec.dat"
    write_tracedat(recording, TraceDatContent(
        header_page=header_page(8, 4096), header_event=HEADER_EVENT,
        event_formats=[("raw_syscalls", ENTER), ("raw_syscalls", EXIT), ("task", NEWTASK), ("sched", EXEC)],
        cmdlines="100 worker\n200 other\n", cpu_data={0: cpu0.read_bytes(), 1: cpu1.read_bytes()}))
    return recording


def count_tuple_installs(monkeypatch) -> list[bool]:
    """A list that collects what each DecoderSet.install_tuple call returned, from now on."""
    from rawtrace.parse.record import DecoderSet
    installed: list[bool] = []
    install = DecoderSet.install_tuple

    def counted(self, event_id, cls, names):
        done = install(self, event_id, cls, names)
        installed.append(done)
        return done
    monkeypatch.setattr(DecoderSet, "install_tuple", counted)
    return installed


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:             # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def syscount_rows(capsys, tmp_path: Path, *extra: str) -> tuple[list[dict], dict]:
    root = tracefs(tmp_path)
    cpu0, cpu1 = workload(tmp_path)
    code, out, err = run(capsys, "syscount", "--tracefs", str(root), "-i", str(cpu0), "-i", str(cpu1),
                         "--json", "-T", "50", *extra)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["type"] == "meta" and lines[0]["tool"] == "syscount" and lines[0]["source"] == "pages"
    assert lines[-1]["type"] == "summary"
    return [r for r in lines if r["type"] == "syscount"], lines[-1]


def test_syscount_offline_exact_counts(tmp_path: Path, capsys) -> None:
    rows, summary = syscount_rows(capsys, tmp_path)
    by_name = {r["syscall"]: r for r in rows}
    assert {name: r["count"] for name, r in by_name.items()} == \
        {"openat": 3, "read": 4, "close": 1, "getpid": 1, "exit_group": 1}
    assert by_name["openat"]["errors"] == 1 and by_name["openat"]["total_ns"] == 15
    assert by_name["openat"]["max_ns"] == 5
    # read: two timed pairs of 7 ns, one exit without an entry, one exit after the loss (not paired)
    assert by_name["read"]["timed"] == 2 and by_name["read"]["total_ns"] == 14
    assert by_name["exit_group"]["timed"] == 0
    assert summary["unpaired_exits"] == 2 and summary["lost"] == 7 and summary["suspect_pairs_dropped"] == 1
    assert summary["fork_returns"] == 1 and not [r for r in rows if r["nr"] < 0]
    assert rows[0]["syscall"] == "read"          # sorted by count


def test_syscount_per_process_names_at_event_time(tmp_path: Path, capsys) -> None:
    rows, _ = syscount_rows(capsys, tmp_path, "-P")
    got = {(r["pid"], r["comm"], r["syscall"]): r["count"] for r in rows}
    # Thread 101 belongs to process 100 (task_newtask with CLONE_THREAD); 200 was renamed by its exec;
    # 300 is known only from saved_cmdlines... which does not have it.
    assert got[(100, "worker", "close")] == 1 and got[(100, "worker", "openat")] == 3
    assert got[(200, "newname", "getpid")] == 1
    assert got[(300, "<...>", "read")] == 1


def test_syscount_filters(tmp_path: Path, capsys) -> None:
    rows, _ = syscount_rows(capsys, tmp_path, "-x")
    assert [(r["syscall"], r["count"]) for r in rows] == [("openat", 1)]
    rows, _ = syscount_rows(capsys, tmp_path, "-e", "ENOENT", "--syscall", "openat")
    assert [(r["syscall"], r["count"]) for r in rows] == [("openat", 1)]
    rows, _ = syscount_rows(capsys, tmp_path, "-p", "100")
    assert {r["syscall"]: r["count"] for r in rows} == {"openat": 3, "read": 3, "close": 1}
    rows, _ = syscount_rows(capsys, tmp_path, "-n", "newname")
    assert {r["syscall"]: r["count"] for r in rows} == {"getpid": 1, "exit_group": 1}
    rows, _ = syscount_rows(capsys, tmp_path, "-t", "101")
    assert {r["syscall"]: r["count"] for r in rows} == {"close": 1, "read": 1}


def test_syscount_text_table_and_bad_input(tmp_path: Path, capsys) -> None:
    root = tracefs(tmp_path)
    cpu0, cpu1 = workload(tmp_path)
    code, out, err = run(capsys, "syscount", "--tracefs", str(root), "-i", str(cpu0), "-i", str(cpu1), "-L")
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:3] == ["SYSCALL", "COUNT", "ERRORS"] and "ERRNOS" in header
    assert any(line.split()[0] == "openat" and "ENOENT:1" in line for line in out.splitlines())
    for bad in (["-e", "ENOTANERRNO"], ["--syscall", "opneat"], ["-n", "x" * 16], ["-n", ""], ["-d", "inf"],
                ["-d", "1e308"], ["-T", "0"], ["-p", "²"]):
        code, out, err = run(capsys, "syscount", "--tracefs", str(root), "-i", str(cpu0), *bad)
        assert code == 2 and "Traceback" not in err and err.count("\n") <= 2, (bad, err)


def test_trace_offline_pairs_with_the_same_schema(tmp_path: Path, capsys) -> None:
    root = tracefs(tmp_path)
    cpu0, cpu1 = workload(tmp_path)
    code, out, err = run(capsys, "trace", "--tracefs", str(root), "-i", str(cpu0), "-i", str(cpu1),
                         "raw_syscalls:*", "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    calls = [r for r in lines if r["type"] == "syscall"]
    opens = [r for r in calls if r["syscall"] == "openat"]
    assert [r["ret"] for r in opens] == [3, -2, 4] and opens[1]["errno"] == "ENOENT"
    assert opens[0]["pid"] == 100 and opens[0]["tid"] == 100 and opens[0]["comm"] == "worker"
    assert opens[0]["duration"] == pytest.approx(5e-9) and opens[0]["status"] == "complete"
    assert [r["status"] for r in calls if r["tid"] == 101] == ["complete", "unfinished", "resumed"]
    assert not [r for r in calls if r["tid"] == 301]                # a fork return is no call
    assert any(r["type"] == "lost" and r["count"] == 7 for r in lines)
    close = next(r for r in calls if r["syscall"] == "close")
    assert close["pid"] == 100 and close["tid"] == 101          # a thread of process 100


def test_trace_count_stops_and_duration_cuts(tmp_path: Path, capsys) -> None:
    root = tracefs(tmp_path)
    cpu0, cpu1 = workload(tmp_path)
    code, out, _ = run(capsys, "decode", "--tracefs", str(root), str(cpu0), str(cpu1), "-c", "4")
    assert code == 0 and len(out.splitlines()) == 4
    # 100 ns of trace time from the first event: only the first openat pairs of CPU 0 and CPU 1's first exit
    code, out, _ = run(capsys, "decode", "--tracefs", str(root), str(cpu0), str(cpu1), "-d", "1e-7", "--json")
    rows = [json.loads(line) for line in out.splitlines()][1:-1]
    assert rows and all(r["ts"] <= 1.0000001 + 1e-12 for r in rows)


def test_task_table_threads_exec_and_rename() -> None:
    from rawtrace.parse.record import Event
    from rawtrace.tasks import TaskTable
    table = TaskTable(None, {7: "saved"}, {8: 7})

    def rec(tid: int, **fields):
        return Event(0, 0, tid, 0, None, fields)
    assert table.comm(7) == "saved" and table.pid(8) == 7 and table.comm(0) == "<idle>"
    table.on_newtask(rec(7, pid=9, comm="saved", clone_flags=0x10000))     # a thread
    table.on_newtask(rec(7, pid=10, comm="saved", clone_flags=0))          # a process
    assert (table.pid(9), table.pid(10)) == (7, 10)
    # A non-leader thread execs: it takes the leader's pid and the new name.
    table.on_exec(rec(7, filename="/bin/a-very-long-program-name", pid=7, old_pid=9))
    assert table.comm(7) == "a-very-long-pro" and 9 in table.exited
    table.on_rename(rec(10, pid=10, oldcomm="saved", newcomm="renamed"))
    assert table.comm(10) == "renamed"


def test_joiner_strings_and_signature_from_tracepoint() -> None:
    from rawtrace.syscalls.calls import Signature, SyscallJoiner, table_resolver
    from rawtrace.tasks import TaskTable

    asked = []

    class Field:
        def __init__(self, name, type_):
            self.name, self.type = name, type_

    class Fmt:
        fields = (Field("__syscall_nr", "int"), Field("fd", "unsigned int"), Field("statbuf", "struct stat *"))

    def formats(system, name):
        asked.append((system, name))
        return Fmt() if name == "sys_enter_newfstat" else None
    resolve = table_resolver("x86_64", formats)
    signature = resolve(5, "64")
    assert signature.name == "fstat" and asked == [("syscalls", "sys_enter_newfstat")]
    assert [p[0] for p in signature.params] == ["fd", "statbuf"]
    assert resolve(5, "i386").name == "open" and resolve(99999, "64") is None

    from rawtrace.parse.record import Event
    got = []
    joiner = SyscallJoiner(TaskTable(), got.append, lambda nr, abi: Signature(nr, "openat",
                           (("dfd", "int"), ("filename", "const char *")), abi), "64")
    joiner.add_strings(5, {"filename": "/etc/passwd"})
    joiner.raw_enter(Event(1, 0, 5, 21, None, {"id": 257, "args": (1, 2, 3, 4, 5, 6)}))
    joiner.raw_exit(Event(9, 1, 5, 22, None, {"id": 257, "ret": -13}))
    (call,) = got
    assert call.string("filename") == "/etc/passwd" and call.values == (1, 2) and call.errno == 13
    assert call.duration_ns == 8 and call.status == "complete" and call.exit_cpu == 1


def test_joiners_complete_shortcut_takes_plain_complete_calls_only() -> None:
    """SyscallJoiner.complete gets every complete call without strings (raw_syscalls and syscalls:*
    pairs), as the parts a Syscall is made of; a call with strings, an unfinished or resumed one goes to
    emit as before."""
    from rawtrace.parse.record import Event
    from rawtrace.syscalls.calls import Signature, SyscallJoiner, complete_call
    from rawtrace.tasks import TaskTable

    emitted, shortcut = [], []
    sig = Signature(257, "openat", (("dfd", "int"), ("filename", "const char *")), "64")
    joiner = SyscallJoiner(TaskTable(), emitted.append, lambda nr, abi: sig, "64")
    joiner.complete = lambda *parts: shortcut.append(complete_call(*parts))
    joiner.raw_enter(Event(1, 0, 5, 21, None, {"id": 257, "args": (1, 2, 3, 4, 5, 6)}))
    joiner.raw_exit(Event(9, 1, 5, 22, None, {"id": 257, "ret": 3}))
    joiner.add_strings(5, {"filename": "/etc/passwd"})
    joiner.raw_enter(Event(10, 0, 5, 21, None, {"id": 257, "args": (1, 2, 3, 4, 5, 6)}))
    joiner.raw_exit(Event(12, 0, 5, 22, None, {"id": 257, "ret": 4}))
    joiner.raw_exit(Event(14, 0, 6, 22, None, {"id": 257, "ret": 5}))        # no enter: resumed
    (call,) = shortcut
    assert call == ("complete", 1, 9, 0, 1, 5, 5, call.comm, sig, (1, 2), 3, None, None)
    assert [(c.status, c.ret, c.string("filename")) for c in emitted] == [("complete", 4, "/etc/passwd"),
                                                                          ("resumed", 5, None)]
    assert joiner.counts["complete"] == 2

    class Fmt:
        fields = ()
    named = SyscallJoiner(TaskTable(), emitted.append, lambda nr, abi: None, "64")
    named.complete = lambda *parts: shortcut.append(complete_call(*parts))
    on_enter = named.handler_for(("syscalls", "sys_enter_close"), lambda s, n: Fmt())
    on_exit = named.handler_for(("syscalls", "sys_exit_close"), lambda s, n: Fmt())
    on_enter(Event(20, 0, 7, 40, None, {"__syscall_nr": 3}))
    on_exit(Event(25, 0, 7, 41, None, {"__syscall_nr": 3, "ret": 0}))
    assert shortcut[-1].signature.name == "close" and shortcut[-1].exit_ts == 25 and len(emitted) == 2


@pytest.mark.parametrize("mode", [["--json"], []])
def test_trace_lines_by_the_joiners_shortcut_equal_the_per_call_way(tmp_path: Path, capsys, monkeypatch,
                                                                    mode) -> None:
    """The trace tool writes complete calls through SyscallJoiner.complete unless -c N is given (then
    on_syscall counts each line): the output is the same either way, line for line."""
    from rawtrace.tracers.trace import Trace
    root = tracefs(tmp_path)
    cpu0, cpu1 = workload(tmp_path)
    # and a read that enters on CPU 0 and returns on CPU 1 (the line shows the CPU of its entry)
    cpu2, cpu3 = tmp_path / "cpu2.raw", tmp_path / "cpu3.raw"
    cpu2.write_bytes(PageBuilder().event(enter(500, NR["read"], 5, 0x3000, 8), delta=1).build(900_000_000))
    cpu3.write_bytes(PageBuilder().event(exit_(500, NR["read"], 8), delta=1).build(900_000_100))
    made = []
    shortcut = Trace._first_complete

    def counted(self, *call):
        made.append(call)
        return shortcut(self, *call)
    monkeypatch.setattr(Trace, "_first_complete", counted)
    argv = ["decode", "--tracefs", str(root), str(cpu0), str(cpu1), str(cpu2), str(cpu3), *mode]
    code, fast, err = run(capsys, *argv)
    assert code == 0, err
    assert len(made) == 1                # installed at the first complete call, which it then wrote
    code, general, err = run(capsys, *argv, "-c", "1000000")
    assert code == 0, err
    assert len(made) == 1 and fast == general and "openat(4294967196, 4096, 0, 0, 0, 0) = 3" in fast
    assert ("[002]" if not mode else '"cpu":2,"pid":500') in fast


def test_event_json_is_valid_json_with_odd_values() -> None:
    from rawtrace.emit import Emitter
    from rawtrace.parse.format import parse_format
    from rawtrace.parse.record import compile_decoder
    fmt = parse_format(EXEC, system="sched")
    name = b"caf\xe9\x01\n\"x\"\0"
    payload = common("little", 31, 42) + struct.pack("<Iii", (len(name) << 16) | 20, 42, 41) + name
    rec = compile_decoder(fmt)(payload, 0, len(payload), 1_234_567_890_123, 3)
    line = Emitter(json=True).event_json(rec, 40, "we\"ird\tname\udc80")
    obj = json.loads(line)
    assert obj == {"type": "event", "ts": 1234.567890123, "cpu": 3, "pid": 40, "tid": 42,
                   "comm": "we\"ird\tname\\x80", "event": "sched:sched_process_exec",
                   "fields": {"filename": "caf\\xe9\x01\n\"x\"", "pid": 42, "old_pid": 41}}
    assert "\ufffd" not in line


def test_raw_syscalls_of_a_compat_thread_are_named_through_its_own_abi() -> None:
    """The joiner's raw_enter: a thread the task table knows as i386 gets its numbers resolved in that
    ABI (getppid is 64 there, semget on x86_64), the others in the native one; an exit_group that does
    not return is never paired."""
    from rawtrace.parse.record import Event
    from rawtrace.syscalls.calls import SyscallJoiner, table_resolver
    from rawtrace.tasks import TaskTable
    got = []
    tasks = TaskTable()
    joiner = SyscallJoiner(tasks, got.append, table_resolver("x86_64", lambda s, n: None), "64",
                           abis={7: "i386"})
    for tid, nr in ((7, 64), (8, 64), (7, 64), (8, 39)):
        joiner.raw_enter(Event(1, 0, tid, 21, None, {"id": nr, "args": (1, 2, 3, 4, 5, 6)}))
        joiner.raw_exit(Event(2, 0, tid, 22, None, {"id": nr, "ret": 0}))
    assert [(c.tid, c.name) for c in got] == [(7, "getppid"), (8, "semget"),
                                             (7, "getppid"), (8, "getpid")]
    joiner.raw_enter(Event(3, 0, 8, 21, None, {"id": 231, "args": (0,) * 6}))   # exit_group
    assert (got[-1].name, got[-1].status, joiner.pending) == ("exit_group", "noreturn", 0)


def test_decode_reads_its_recording_from_i_as_every_tool_does(tmp_path: Path, capsys) -> None:
    root = tracefs(tmp_path)
    cpu0, cpu1 = workload(tmp_path)
    code, by_position, err = run(capsys, "decode", "--tracefs", str(root), str(cpu0), str(cpu1), "--json")
    assert code == 0, err
    code, by_flag, err = run(capsys, "decode", "--tracefs", str(root), "-i", str(cpu0), "-i", str(cpu1), "--json")
    assert code == 0 and by_flag == by_position, err
    code, out, err = run(capsys, "decode", "--tracefs", str(root))
    assert code == 2 and out == "" and err.count("\n") == 1 and "-i FILE" in err and "Traceback" not in err


@pytest.mark.parametrize("mode", [["--json"], [], ["-c", "1000000"]])
def test_joiners_own_record_tuples_give_the_lines_of_event_records(tmp_path: Path, capsys, monkeypatch,
                                                                   mode) -> None:
    """Where the joiner takes every raw_syscalls record, they are decoded straight to SysEnter/SysExit
    (no Event, no fields dict): the output is the same as from Event records, in the joiner's batch loop
    (JSON) and the text tool's (text, and -c N), including a lost marker, a fork return, an exit without
    enter and a call whose exit comes after lost events."""
    from rawtrace.parse.record import DecoderSet
    recording = workload_recording(tmp_path)
    argv = ["decode", str(recording), *mode]
    installed = count_tuple_installs(monkeypatch)
    code, tuples, err = run(capsys, *argv)
    assert code == 0, err
    assert installed == [True, True]
    monkeypatch.setattr(DecoderSet, "install_tuple", lambda self, event_id, cls, names: False)
    code, events, err = run(capsys, *argv)
    assert code == 0, err
    assert tuples == events and "openat" in tuples and "resumed" in tuples


@pytest.mark.parametrize("mode", [["--json"], ["-T", "3"], ["1", "5"]])
def test_syscount_counts_the_same_from_record_tuples_and_event_records(tmp_path: Path, capsys, monkeypatch,
                                                                       mode) -> None:
    """syscount's own batch loop takes raw_syscalls records decoded straight to SysEnter/SysExit: its
    counts equal those from Event records, with a lost marker, a fork return, an exit without enter, an
    exit_group and a failed call in the recording (also per interval)."""
    from rawtrace.parse.record import DecoderSet
    recording = workload_recording(tmp_path)
    installed = count_tuple_installs(monkeypatch)
    code, tuples, err = run(capsys, "syscount", "-i", str(recording), *mode)
    assert code == 0, err
    assert installed == [True, True]
    monkeypatch.setattr(DecoderSet, "install_tuple", lambda self, event_id, cls, names: False)
    code, events, err = run(capsys, "syscount", "-i", str(recording), *mode)
    assert code == 0, err
    assert tuples == events and "openat" in tuples and "close" in tuples
