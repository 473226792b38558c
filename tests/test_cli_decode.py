"""`rawtrace decode` on raw sub-buffer files with a fake tracefs copy: text, JSON, merge, errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from test_ringbuf_support import PageBuilder, common, tiny_payload

from rawtrace.cli import main

HEADER_EVENT = """# compressed entry header
\ttype_len    :    5 bits
\ttime_delta  :   27 bits
\tarray       :   32 bits

\tpadding     : type == 29
\ttime_extend : type == 30
\ttime_stamp : type == 31
\tdata max type_len  == 28
"""

COMMON_FIELDS = """\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""

TINY = f"""name: tiny
ID: 700
format:
{COMMON_FIELDS}
\tfield:u32 a;\toffset:8;\tsize:4;\tsigned:0;
\tfield:s64 b;\toffset:12;\tsize:8;\tsigned:1;

print fmt: "a=%u b=%lld", REC->a, REC->b
"""

NAMED = f"""name: named
ID: 701
format:
{COMMON_FIELDS}
\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:1;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;

print fmt: "comm=%s filename=%p", REC->comm, REC->filename
"""


def header_page(long_size: int, subbuf_size: int) -> str:
    data = 8 + long_size
    return (f"\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
            f"\tfield: local_t commit;\toffset:8;\tsize:{long_size};\tsigned:1;\n"
            f"\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
            f"\tfield: char data;\toffset:{data};\tsize:{subbuf_size - data};\tsigned:0;\n")


def fake_tracefs(root: Path, long_size: int = 8, subbuf_size: int = 4096, cmdlines: str | None = None) -> Path:
    events = root / "tracefs" / "events"
    for system, name, text, event_id in (("test", "tiny", TINY, 700), ("test", "named", NAMED, 701)):
        (events / system / name).mkdir(parents=True)
        (events / system / name / "format").write_text(text)
        (events / system / name / "id").write_text(f"{event_id}\n")
    # like ftrace/raw_data on 6.18: a format but no id file
    (events / "test" / "named" / "id").unlink()
    (events / "header_page").write_text(header_page(long_size, subbuf_size))
    (events / "header_event").write_text(HEADER_EVENT)
    if cmdlines is not None:
        (root / "tracefs" / "saved_cmdlines").write_text(cmdlines)
    return root / "tracefs"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    if "--byteorder" not in argv:
        argv = ("--byteorder", "little", *argv)      # the pages below are built little-endian
    code = main(["decode", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def two_cpus(tmp_path: Path, **kw) -> tuple[Path, Path]:
    builder = PageBuilder(**kw)
    cpu0 = builder.event(tiny_payload(builder.byteorder, 10, 1, -1), delta=5) \
                  .event(tiny_payload(builder.byteorder, 10, 3, -3), delta=20).build(1_000_000_000)
    builder = PageBuilder(**kw)
    cpu1 = builder.event(tiny_payload(builder.byteorder, 11, 2, -2), delta=10).build(1_000_000_000)
    (tmp_path / "cpu0.raw").write_bytes(cpu0)
    (tmp_path / "cpu1.raw").write_bytes(cpu1)
    return tmp_path / "cpu0.raw", tmp_path / "cpu1.raw"


def test_text_output_merged_by_time(tmp_path: Path, capsys) -> None:
    tracefs = fake_tracefs(tmp_path, cmdlines="10 bash\n")
    cpu0, cpu1 = two_cpus(tmp_path)
    code, out, err = run(capsys, "--tracefs", str(tracefs), str(cpu1), str(cpu0))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines == [
        "            bash-10      [000] 1.000000: test:tiny: a=1 b=-1",
        "           <...>-11      [001] 1.000000: test:tiny: a=2 b=-2",
        "            bash-10      [000] 1.000000: test:tiny: a=3 b=-3",
    ]


def test_json_output_and_events_dir(tmp_path: Path, capsys) -> None:
    tracefs = fake_tracefs(tmp_path)
    cpu0, cpu1 = two_cpus(tmp_path)
    code, out, _ = run(capsys, "--tracefs", str(tracefs / "events"), "--json", str(cpu0), str(cpu1))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["type"] == "meta" and lines[0]["source"] == "pages" and lines[0]["ts_unit"] == "s"
    assert lines[-1]["type"] == "summary" and lines[-1]["events"] == 3
    rows = lines[1:-1]
    assert [r["fields"]["a"] for r in rows] == [1, 2, 3]
    # The same schema as `trace --json`: seconds, pid (process) and tid (thread), the name at event time.
    assert rows[0] == {"type": "event", "ts": 1.000000005, "cpu": 0, "pid": 10, "tid": 10, "comm": "<...>",
                       "event": "test:tiny", "fields": {"a": 1, "b": -1}}


@pytest.mark.parametrize("kernel", [{"byteorder": "big", "long_size": 4, "subbuf_size": 8192},
                                    {"byteorder": "little", "long_size": 4, "subbuf_size": 4096}])
def test_other_kernels(tmp_path: Path, capsys, kernel: dict) -> None:
    tracefs = fake_tracefs(tmp_path, kernel["long_size"], kernel["subbuf_size"])
    cpu0, _cpu1 = two_cpus(tmp_path, **kernel)
    code, out, _ = run(capsys, "--tracefs", str(tracefs), "--byteorder", kernel["byteorder"], "--json",
                       str(cpu0))
    assert code == 0
    assert [json.loads(line)["fields"]["b"] for line in out.splitlines()[1:-1]] == [-1, -3]


def test_pointers_hex_and_strings_escaped(tmp_path: Path, capsys) -> None:
    tracefs = fake_tracefs(tmp_path)
    payload = common("little", 701, 5) + b"ev\x1bil\xff\0\0\0\0\0\0\0\0\0\0" + struct.pack("<Q", 0x7FFC1234)
    (tmp_path / "cpu3").write_bytes(PageBuilder().event(payload).build(2_500_000_000))
    code, out, _ = run(capsys, "--tracefs", str(tracefs), "--raw", str(tmp_path / "cpu3"))
    assert code == 0
    assert out == "           <...>-5       [003] 2.500000: test:named: comm=ev\\x1bil\\xff filename=0x7ffc1234\n"
    # By default the event's print fmt renders it (escaped the same way).
    code, out, _ = run(capsys, "--tracefs", str(tracefs), str(tmp_path / "cpu3"))
    assert code == 0 and "ev\\x1bil\\xff" in out
    code, out, _ = run(capsys, "--tracefs", str(tracefs), "--json", "--cpu", "7", str(tmp_path / "cpu3"))
    row = json.loads(out.splitlines()[1])
    assert row["cpu"] == 7 and row["fields"] == {"comm": "ev\x1bil\\xff", "filename": 0x7FFC1234}


def test_lost_and_unknown_events(tmp_path: Path, capsys) -> None:
    tracefs = fake_tracefs(tmp_path)
    unknown = struct.pack("<HBBi", 999, 0, 0, 4) + b"abcd"
    page = PageBuilder().event(unknown, delta=1).event(tiny_payload("little", 4, 9, 9), delta=1) \
                        .build(3_000_000_000, missed=True, stored=42)
    (tmp_path / "cpu0.raw").write_bytes(page)
    code, out, err = run(capsys, "--tracefs", str(tracefs), "--json", str(tmp_path / "cpu0.raw"))
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()][1:-1]
    assert rows[0] == {"type": "lost", "ts": 3.0, "cpu": 0, "count": 42, "source": "page"}
    assert rows[1]["type"] == "unknown" and rows[1]["unknown_id"] == 999 and rows[2]["fields"] == {"a": 9, "b": 9}
    assert "999 (1)" in err
    code, out, err = run(capsys, "--tracefs", str(tracefs), str(tmp_path / "cpu0.raw"))
    assert "LOST 42 events" in out.splitlines()[0]


def test_truncated_file_prints_good_records_then_one_line_error(tmp_path: Path, capsys) -> None:
    tracefs = fake_tracefs(tmp_path)
    builder = PageBuilder()
    for n in range(10):
        builder.event(tiny_payload("little", 1, n, n), delta=1)
    data = PageBuilder().event(tiny_payload("little", 1, 100, 0)).build(0) + builder.build(10)
    (tmp_path / "cpu0.raw").write_bytes(data[:4096 + 16 + 24 * 4 + 7])
    code, out, err = run(capsys, "--tracefs", str(tracefs), "--json", str(tmp_path / "cpu0.raw"))
    assert code == 1
    assert [json.loads(line)["fields"]["a"] for line in out.splitlines()[1:-1]] == [100, 0, 1, 2, 3]
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cpu0.raw: cpu 0 page 1" in err and "truncated" in err


def test_bad_inputs(tmp_path: Path, capsys) -> None:
    tracefs = fake_tracefs(tmp_path)
    cpu0, cpu1 = two_cpus(tmp_path)
    code, _, err = run(capsys, "--tracefs", str(tracefs), "--cpu", "1", str(cpu0), str(cpu1))
    assert code == 2 and "--cpu" in err
    code, _, err = run(capsys, "--tracefs", str(tmp_path / "nowhere"), str(cpu0))
    assert code == 2 and "header_page" in err
    code, _, err = run(capsys, "--tracefs", str(tracefs), str(tmp_path / "missing.raw"))
    assert code == 2 and "missing.raw" in err


def test_cpu_from_names() -> None:
    from rawtrace.cli.decode import file_cpu
    assert file_cpu("dump/cpu12.raw", 0) == 12
    assert file_cpu("per_cpu/cpu3/trace_pipe_raw", 0) == 3
    assert file_cpu("capture.bin", 4) == 4


def test_help_has_examples(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["decode", "--help"])
    assert info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_tracedat_input(tmp_path: Path, capsys) -> None:
    from test_tracedat import build_v6, pages
    path = tmp_path / "trace.dat"
    path.write_bytes(build_v6([pages(0, 2), pages(1, 1)], TINY))
    code, out, _ = run(capsys, "--json", str(path))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["clock"] == "global"        # a v6 file's clock is in its TRACECLOCK option
    rows = lines[1:-1]
    # pages(cpu, n): page k holds one event a=k, b=cpu, pid 10+cpu, at 1000*k + 1 ns
    assert [(r["ts"], r["cpu"], r["pid"], r["comm"], r["fields"]) for r in rows] == [
        (1e-9, 0, 10, "bash", {"a": 0, "b": 0}), (1e-9, 1, 11, "cat", {"a": 0, "b": 1}),
        (1.001e-6, 0, 10, "bash", {"a": 1, "b": 0})]
    code, _, err = run(capsys, str(path), str(path))
    assert code == 2 and "on its own" in err


def test_stdin_input(tmp_path: Path, capsys, monkeypatch) -> None:
    import io
    tracefs = fake_tracefs(tmp_path)
    cpu0, _cpu1 = two_cpus(tmp_path)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(cpu0.read_bytes())))
    code, out, _ = run(capsys, "--tracefs", str(tracefs), "--cpu", "5", "-")
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()] == ["[005]", "[005]"]



def test_no_tracefs_anywhere(tmp_path: Path, capsys) -> None:
    cpu0, _cpu1 = two_cpus(tmp_path)
    code = main(["--root", str(tmp_path / "empty-root"), "decode", str(cpu0)])
    err = capsys.readouterr().err
    assert code == 2 and "no tracefs found" in err and "Traceback" not in err
