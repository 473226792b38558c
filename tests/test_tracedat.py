"""The minimal trace.dat reader: synthetic v6 and v7 (plain and zlib) files, errors, the shared capture."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ringbuf_support import TINY, PageBuilder, tiny_payload
from tracedat_builder import tracedat_v6, tracedat_v7

from rawtrace.errors import DecodeError, NotSupported, RawtraceError
from rawtrace.parse.record import DecoderSet
from rawtrace.parse.ringbuf import PageLayout, iter_pages
from rawtrace.parse.tracedat import read_tracedat

SHARED = Path("/work/shared/data/raw_syscalls_1905722ev.dat")
HEADER_PAGE = ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
               "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
               "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
               "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n")
HEADER_EVENT = ("# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n"
                "\tarray       :   32 bits\n\n\tpadding     : type == 29\n\ttime_extend : type == 30\n"
                "\ttime_stamp : type == 31\n\tdata max type_len  == 28\n")
TINY_FORMAT = "name: tiny\nID: 700\nformat:\n\tfield:u32 a;\toffset:8;\tsize:4;\tsigned:0;\n"
CMDLINES = "10 bash\n11 cat\n"


def pages(cpu: int, count: int) -> bytes:
    out = b""
    for n in range(count):
        out += PageBuilder().event(tiny_payload("little", 10 + cpu, n, cpu), delta=1).build(1000 * n)
    return out


def build_v6(cpu_pages: list[bytes], format_text: str = TINY_FORMAT) -> bytes:
    return tracedat_v6(HEADER_PAGE, HEADER_EVENT, [("test", format_text)], CMDLINES, cpu_pages)


def build_v7(cpu_pages: list[bytes], compress: bool) -> bytes:
    """A v7 file: first OPTIONS section pointing at the others; data sections compressed with zlib."""
    return tracedat_v7(HEADER_PAGE, HEADER_EVENT, [("test", TINY_FORMAT)], CMDLINES, cpu_pages, compress)


def check_file(dat, cpu_pages: list[bytes]) -> None:
    assert dat.byteorder == "little" and dat.long_size == 8 and dat.page_size == 4096
    assert dat.header_page == HEADER_PAGE and dat.header_event == HEADER_EVENT
    assert dat.event_formats == [("test", TINY_FORMAT)]
    assert dat.cmdlines == CMDLINES
    buf = dat.buffer()
    assert sorted(buf.cpus) == list(range(len(cpu_pages)))
    layout = PageLayout.default(byteorder="little")
    for cpu, expected in enumerate(cpu_pages):
        data = dat.cpu_data(buf, cpu)
        assert data == expected
        got = [(e.ts, e.pid, e.fields["a"]) for e in iter_pages(layout, data, cpu, DecoderSet({700: TINY}, "little"))]
        assert got == [(1000 * n + 1, 10 + cpu, n) for n in range(len(expected) // 4096)]


def test_v6_file(tmp_path: Path) -> None:
    cpu_pages = [pages(0, 3), pages(1, 2)]
    path = tmp_path / "trace.dat"
    path.write_bytes(build_v6(cpu_pages))
    dat = read_tracedat(path)
    assert dat.version == 6 and dat.compression == "none" and dat.clock == "global"
    check_file(dat, cpu_pages)


@pytest.mark.parametrize("compress", [False, True], ids=["none", "zlib"])
def test_v7_file(compress: bool) -> None:
    cpu_pages = [pages(0, 5), pages(1, 1)]
    dat = read_tracedat(build_v7(cpu_pages, compress))
    assert dat.version == 7 and dat.compression == ("zlib" if compress else "none")
    assert dat.clock == "local"
    check_file(dat, cpu_pages)


def test_bad_magic_and_version() -> None:
    with pytest.raises(DecodeError, match="not a trace-cmd"):
        read_tracedat(b"hello world, not a trace")
    with pytest.raises(NotSupported, match="version 5"):
        read_tracedat(b"\x17\x08\x44tracing5\0" + bytes(20))


def test_truncated_files_are_reported() -> None:
    whole = build_v6([pages(0, 2)])
    with pytest.raises(DecodeError, match="truncated"):
        read_tracedat(whole[:-100])          # the CPU data runs past the end of the file
    with pytest.raises(DecodeError):
        read_tracedat(whole[:200])           # cut inside the headers


def test_unknown_buffer_name() -> None:
    dat = read_tracedat(build_v6([pages(0, 1)]))
    with pytest.raises(DecodeError, match="no buffer 'nope'"):
        dat.buffer("nope")


needs_shared = pytest.mark.skipif(not SHARED.exists() or shutil.which("zstd") is None,
                                  reason="shared capture or the zstd program is absent")


@needs_shared
def test_shared_capture_structure() -> None:
    dat = read_tracedat(SHARED)
    assert (dat.version, dat.compression, dat.byteorder, dat.long_size, dat.page_size) == (7, "zstd", "little",
                                                                                          8, 4096)
    assert "field: local_t commit;\toffset:8;\tsize:8;" in dat.header_page
    assert {system for system, _ in dat.event_formats} == {"raw_syscalls"}
    assert len(dat.ftrace_formats) == 18
    buf = dat.buffer()
    assert buf.name == "rtovh" and sorted(buf.cpus) == [0, 1]
    data = dat.cpu_data(buf, 1)
    assert len(data) % 4096 == 0 and len(data) // 4096 == 6110


def test_page_layout_and_formats() -> None:
    from rawtrace.parse.tracedat import Buffer
    dat = read_tracedat(build_v6([pages(0, 1)], TINY_FORMAT))
    assert dat.page_layout().subbuf_size == 4096 and dat.page_layout().long_size == 8
    # an instance buffer with 8 KiB sub-buffers: its own page size wins over header_page's
    assert dat.page_layout(Buffer("big", "local", 8192)).subbuf_size == 8192
    assert [(f.system, f.name, f.id) for f in dat.formats().values()] == [("test", "tiny", 700)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from(["v6", "v7", "v7z"]),
       flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
       cut=st.integers(0, 20000))
def test_damaged_files_raise_only_rawtrace_errors(version: str, flips: list, cut: int) -> None:
    cpu_pages = [pages(0, 2), pages(1, 1)]
    data = bytearray(build_v6(cpu_pages) if version == "v6" else build_v7(cpu_pages, version == "v7z"))
    for at, value in flips:
        if at < len(data):
            data[at] = value
    try:
        dat = read_tracedat(bytes(data[:cut]))
        for buf in dat.buffers:
            for cpu in buf.cpus:
                dat.cpu_data(buf, cpu)
    except RawtraceError as exc:
        assert exc.message
