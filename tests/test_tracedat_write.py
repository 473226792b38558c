"""trace.dat writer: v6 and v7 files of hand-built pages read back byte for byte by rawtrace's reader, and
trace-cmd report shows the same events (and losses) as rawtrace's reader; errors for impossible input."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from test_ringbuf_support import PageBuilder, common
from test_tracedat_write_support import TRACE_CMD, compare_with_report, parse_report, report

from rawtrace.errors import UsageError
from rawtrace.parse.format import parse_format
from rawtrace.parse.record import Event, Lost
from rawtrace.parse.ringbuf import iter_pages
from rawtrace.parse.tracedat import read_tracedat
from rawtrace.parse.tracedat_write import TraceDatContent, extra_sections, write_tracedat

FORMATS = Path(__file__).parent / "fixtures" / "formats" / "6.18.44-fc-v769" / "events"
SHARED = Path("/work/shared/data/raw_syscalls_1905722ev.dat")
needs_trace_cmd = pytest.mark.skipif(TRACE_CMD is None, reason="trace-cmd is not installed")

KALLSYMS = "ffffffff81000000 T _text\nffffffff81000100 T do_thing\n"
PRINTK = '0xffffffff82000000 : "hello %d\\n"\n'


def sched_switch_payload(fmt, prev: tuple, nxt: tuple, state: int) -> bytes:
    out = bytearray(common("little", fmt.id, prev[1]) + bytes(64 - 8))
    f = {x.name: x for x in fmt.fields}
    struct.pack_into("16s", out, f["prev_comm"].offset, prev[0].encode())
    struct.pack_into("<ii", out, f["prev_pid"].offset, prev[1], 120)
    struct.pack_into("<q", out, f["prev_state"].offset, state)
    struct.pack_into("16s", out, f["next_comm"].offset, nxt[0].encode())
    struct.pack_into("<ii", out, f["next_pid"].offset, nxt[1], 120)
    return bytes(out)


@pytest.fixture(scope="module")
def content():
    switch_text = (FORMATS / "sched" / "sched_switch" / "format").read_text()
    switch = parse_format(switch_text, system="sched", long_size=8)
    pages = {0: [], 1: []}
    ts = 1_000_000_000
    for cpu in (0, 1):
        for n in range(3):
            builder = PageBuilder("little", 8, 4096)
            for i in range(5):
                builder.event(sched_switch_payload(switch, (f"task{cpu}", 100 + i), (f"next{cpu}", 200 + i), i % 3),
                              delta=1000 * (i + 1))
            # The second page of CPU 1 follows a loss of 7 events, as the kernel flags it.
            lost = cpu == 1 and n == 1
            pages[cpu].append(builder.build(ts + 100_000 * n + cpu, missed=lost, stored=7 if lost else None))
    formats = [("sched", switch_text)]
    ftrace = [(FORMATS / "ftrace" / name / "format").read_text() for name in ("print",)
              if (FORMATS / "ftrace" / name / "format").exists()]
    return TraceDatContent(
        header_page=(FORMATS / "header_page").read_text(), header_event=(FORMATS / "header_event").read_text(),
        ftrace_formats=ftrace, event_formats=formats, kallsyms=KALLSYMS, printk_formats=PRINTK,
        cmdlines="100 task1\n200 next1\n", clock="mono", clocks_text="local global [mono] boot\n",
        cpu_stats={0: "entries: 0\noverrun: 0\n", 1: "entries: 0\noverrun: 7\n"},
        cpu_data={cpu: b"".join(p) for cpu, p in pages.items()}, uname="Linux test 6.18 x86_64", trace_id=42)


def decode_file(path):
    dat = read_tracedat(path)
    buf = dat.buffer()
    layout = dat.page_layout(buf)
    decoders = layout.decoders(dat.formats())
    return dat, {cpu: list(iter_pages(layout, dat.cpu_data(buf, cpu), cpu, decoders)) for cpu in buf.cpus}


@pytest.mark.parametrize("version", [6, 7])
def test_round_trip_through_rawtraces_reader(tmp_path, content, version):
    path = tmp_path / f"v{version}.dat"
    assert write_tracedat(path, content, version) == version
    dat, decoded = decode_file(path)
    assert (dat.version, dat.byteorder, dat.long_size, dat.page_size) == (version, "little", 8, 4096)
    assert dat.header_page == content.header_page and dat.header_event == content.header_event
    assert dat.event_formats == content.event_formats and dat.ftrace_formats == content.ftrace_formats
    assert dat.cmdlines == content.cmdlines and dat.clock == "mono"
    assert extra_sections(dat) == (KALLSYMS, PRINTK)
    buf = dat.buffer()
    for cpu, data in content.cpu_data.items():
        assert dat.cpu_data(buf, cpu) == data            # the pages exactly as given
    events = [e for items in decoded.values() for e in items if isinstance(e, Event)]
    assert len(events) == 30
    assert {e.fields["prev_comm"] for e in events} == {"task0", "task1"}
    assert [(item.cpu, item.count) for items in decoded.values() for item in items if isinstance(item, Lost)] == [(1, 7)]
    assert not (tmp_path / f"v{version}.dat.partial").exists()


needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd program is not installed")


@needs_zstd
def test_zstd_compressed_v7_round_trip(tmp_path, content):
    path = tmp_path / "z.dat"
    assert write_tracedat(path, content, compression="zstd") == 7
    dat, decoded = decode_file(path)
    assert dat.compression == "zstd" and dat.cmdlines == content.cmdlines
    assert extra_sections(dat) == (KALLSYMS, PRINTK)
    for cpu, data in content.cpu_data.items():
        assert dat.cpu_data(dat.buffer(), cpu) == data
    assert sum(isinstance(e, Event) for items in decoded.values() for e in items) == 30
    with pytest.raises(UsageError, match="cannot be compressed"):
        write_tracedat(tmp_path / "y.dat", content, 6, compression="zstd")
    with pytest.raises(UsageError, match="unknown trace.dat compression"):
        write_tracedat(tmp_path / "y.dat", content, compression="lz4")


@needs_zstd
@needs_trace_cmd
def test_trace_cmd_reads_the_zstd_file(tmp_path, content):
    path = tmp_path / "z.dat"
    write_tracedat(path, content, compression="zstd")
    _dat, decoded = decode_file(path)
    events, _values, problems = compare_with_report(decoded, report(path))
    assert not problems and events == 30


def test_default_version_follows_the_sub_buffer_size(tmp_path, content):
    assert write_tracedat(tmp_path / "a.dat", content) == 6
    big = TraceDatContent(**{**content.__dict__, "subbuf_size": 8192,
                             "cpu_data": {0: content.cpu_data[0] + content.cpu_data[0][:4096]}})
    with pytest.raises(UsageError, match="version 6 file cannot hold"):
        write_tracedat(tmp_path / "b.dat", big, 6)
    assert write_tracedat(tmp_path / "b.dat", big) == 7
    dat = read_tracedat(tmp_path / "b.dat")
    assert dat.buffer().page_size == 8192


def test_bad_input_is_a_usage_error_and_leaves_nothing(tmp_path, content):
    broken = TraceDatContent(**{**content.__dict__, "cpu_data": {0: b"\0" * 100}})
    with pytest.raises(UsageError, match="not a multiple"):
        write_tracedat(tmp_path / "x.dat", broken)
    with pytest.raises(UsageError):
        write_tracedat(tmp_path / "x.dat", content, 5)
    assert list(tmp_path.iterdir()) == []


def test_cpu_data_from_files_with_a_gap(tmp_path, content):
    # CPU 1 absent, CPU 2 from a file: trace-cmd's reader takes a dense CPU table with empty slots.
    spool = tmp_path / "cpu2.raw"
    spool.write_bytes(content.cpu_data[0])
    gap = TraceDatContent(**{**content.__dict__, "cpu_data": {0: content.cpu_data[0], 2: spool}})
    write_tracedat(tmp_path / "gap.dat", gap)
    dat = read_tracedat(tmp_path / "gap.dat")
    assert sorted(dat.buffer().cpus) == [0, 1, 2] and dat.buffer().cpus[1][1] == 0
    assert dat.cpu_data(dat.buffer(), 2) == content.cpu_data[0]


@needs_trace_cmd
@pytest.mark.parametrize("version", [6, 7])
def test_trace_cmd_reads_it_and_agrees(tmp_path, content, version):
    path = tmp_path / f"v{version}.dat"
    write_tracedat(path, content, version)
    dump = subprocess.run([TRACE_CMD, "dump", "-v", "-i", str(path)], capture_output=True, text=True, check=False)
    assert dump.returncode == 0, dump.stderr
    _dat, decoded = decode_file(path)
    lines = report(path)
    events, values, problems = compare_with_report(decoded, lines)
    assert not problems, problems
    assert events == 30 and values >= 30 * 6
    _events, lost = parse_report(lines)
    assert lost == {1: [7]}
    # The cmdlines went in: trace-cmd names the tasks from them.
    assert any("task1-100" in line for line in lines)


@needs_trace_cmd
@pytest.mark.parametrize("version", [6, 7])
def test_trace_cmd_reads_large_sub_buffers_when_the_page_size_says_so(tmp_path, version):
    """8 KiB sub-buffers (buffer_subbuf_size_kb=8): the file's page size is 8192, as rawtrace record writes."""
    switch_text = (FORMATS / "sched" / "sched_switch" / "format").read_text()
    switch = parse_format(switch_text, system="sched", long_size=8)
    builder = PageBuilder("little", 8, 8192)
    for i in range(100):                        # more than a 4 KiB page holds
        builder.event(sched_switch_payload(switch, ("a", 100 + i), ("b", 200 + i), 0), delta=1000)
    header_page = (FORMATS / "header_page").read_text().replace("size:4080", "size:8176")
    content = TraceDatContent(header_page=header_page, header_event=(FORMATS / "header_event").read_text(),
                              page_size=8192, event_formats=[("sched", switch_text)],
                              cpu_data={0: builder.build(10**9)})
    path = tmp_path / "8k.dat"
    write_tracedat(path, content, version)
    _dat, decoded = decode_file(path)
    events, _values, problems = compare_with_report(decoded, report(path))
    assert not problems and events == 100


@needs_trace_cmd
@pytest.mark.skipif(not SHARED.exists() or shutil.which("zstd") is None, reason="shared capture or zstd absent")
def test_rewriting_a_trace_cmd_recording(tmp_path):
    """The first pages of a trace-cmd v7 zstd recording written again as v6: trace-cmd reads our file and
    prints what rawtrace decodes of it, event for event."""
    src = read_tracedat(SHARED)
    buf = src.buffer()
    kallsyms, printk = extra_sections(src)
    pages = 300
    data = {cpu: src.cpu_data(buf, cpu)[:pages * buf.page_size] for cpu in buf.cpus}
    content = TraceDatContent(header_page=src.header_page, header_event=src.header_event,
                              page_size=src.page_size, ftrace_formats=src.ftrace_formats,
                              event_formats=src.event_formats, kallsyms=kallsyms, printk_formats=printk,
                              cmdlines=src.cmdlines, clock=buf.clock, cpu_data=data)
    path = tmp_path / "rewritten.dat"
    write_tracedat(path, content, 6)
    _dat, decoded = decode_file(path)
    events, values, problems = compare_with_report(decoded, report(path))
    assert not problems, problems
    assert events > 50_000 and values >= 2 * events
