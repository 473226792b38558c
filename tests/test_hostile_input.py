"""Hostile and odd input to the offline layer: no traceback, no hang, no unbounded memory."""

from __future__ import annotations

import struct
import time

import pytest
from test_ringbuf_support import PageBuilder

from rawtrace import render_event
from rawtrace.asciinum import ascii_digits, ascii_int
from rawtrace.comm import parse_saved_cmdlines
from rawtrace.errors import DecodeError
from rawtrace.host import Host
from rawtrace.parse.format import parse_format
from rawtrace.parse.record import DecoderSet, Event, UnknownEvent, compile_decoder, format_problem
from rawtrace.parse.ringbuf import PageLayout, decode_page
from rawtrace.parse.tracedat import MAGIC, read_tracedat
from rawtrace.render_event import event_json, hex_fields, item_text, json_lines, text_lines
from rawtrace.tracefs.spool import SPOOL_PREFIX, find_stale_spools

COMMON = """\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
"""
PID = "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n"
OWN = "\n\tfield:int value;\toffset:8;\tsize:4;\tsigned:1;\n"


def _format(name: str = "e", common_pid: str = PID, own: str = OWN, event_id: int = 77) -> str:
    return f"name: {name}\nID: {event_id}\nformat:\n{COMMON}{common_pid}{own}\nprint fmt: \"v=%d\", REC->value\n"


# -- strict ASCII numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "²", "1²", "٣", "+1", "-1", " 1", "1_000", "1 ", "0x10", "١٢"])
def test_ascii_int_refuses_anything_but_ascii_digits(text: str) -> None:
    assert ascii_int(text) is None and not ascii_digits(text)


def test_ascii_int_values_and_bases() -> None:
    assert ascii_int("0042") == 42 and ascii_int(b"17") == 17 and ascii_int(b"\xb2") is None
    assert ascii_int("777", 8) == 0o777 and ascii_int("8", 8) is None and ascii_int("fF", 16) == 255
    assert ascii_int("1" * 41) is None and ascii_int("12", max_digits=1) is None


def test_tracedat_version_with_a_unicode_digit_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="bad version string"):
        read_tracedat(MAGIC + "²".encode() + b"\0\0\x08" + bytes(64))
    with pytest.raises(DecodeError, match="bad version string"):
        read_tracedat(MAGIC + "٦".encode() + b"\0\0\x08" + bytes(64))


def test_saved_cmdlines_lines_with_odd_digits_are_skipped() -> None:
    assert parse_saved_cmdlines("²3 bash\n12 sh\n٣ x\n-4 y\n99999999999 big\n7 \n8 a b\n") == {12: "sh", 8: "a b"}


def test_stale_spool_names_with_odd_digits_are_skipped(tmp_path) -> None:
    for name in ("²-1-x", "1-²-x", "12-34-abc"):
        (tmp_path / f"{SPOOL_PREFIX}{name}").mkdir()
    found = find_stale_spools(str(tmp_path), proc=tmp_path / "noproc")
    assert [(path.name, pid) for path, pid, _alive in found] == [(f"{SPOOL_PREFIX}12-34-abc", 12)]


def test_mount_table_bad_octal_escapes_are_kept_as_written(tmp_path) -> None:
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "mounts").write_text(
        "nodev /a\\040b tracefs rw 0 0\n"
        "nodev /bad\\999 tracefs rw 0 0\n"
        "nodev /x\\\\0 debugfs rw 0 0\n"
        "nodev /uni\\²²² tracefs rw 0 0\n"
        "nodev /end\\04 tracefs rw 0 0\n")
    mounts = [m[1] for m in Host(tmp_path).mounts()]
    assert mounts == ["/a b", "/bad\\999", "/x\\\\0", "/uni\\²²²", "/end\\04"]


# -- broken formats ------------------------------------------------------------------------------------

BROKEN = {
    "array common field": _format(common_pid="\tfield:u32 common_pid[1];\toffset:4;\tsize:4;\tsigned:0;\n"),
    "string common field": _format(common_pid="\tfield:char common_pid[4];\toffset:4;\tsize:4;\tsigned:0;\n"),
    "name repeated with another type": _format(
        own=OWN + "\tfield:__data_loc char[] value;\toffset:12;\tsize:4;\tsigned:0;\n"),
    "NUL in the event name": _format(name="bad\0name"),
    "escape in the event name": _format(name="bad\x1b[2Jname"),
}


def _page(event_id: int) -> bytes:
    payload = struct.pack("<HBBii", event_id, 0, 0, 42, 7) + b"\x10\x00\x04\x00abc\0"
    return PageBuilder().event(payload, delta=3).build(1000)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_format_is_reported_once_and_its_records_shown_undecoded(case: str) -> None:
    fmt = parse_format(BROKEN[case], system="test")
    assert format_problem(fmt)
    with pytest.raises(DecodeError, match="broken"):
        compile_decoder(fmt)
    decoders = DecoderSet({77: fmt})
    items = decode_page(PageLayout.default(), _page(77) , 0, decoders) + \
        decode_page(PageLayout.default(), _page(77), 1, decoders)
    assert [type(i) for i in items] == [UnknownEvent, UnknownEvent]
    assert list(decoders.broken) == [77] and "broken" in decoders.broken[77]
    assert "\0" not in decoders.broken[77] and "\x1b" not in decoders.broken[77]
    assert all(line.isprintable() for line in text_lines(items) + json_lines(items))


def test_duplicate_name_with_the_same_type_is_still_tolerated() -> None:
    fmt = parse_format(_format(own=OWN + "\tfield:int value;\toffset:12;\tsize:4;\tsigned:1;\n"))
    assert format_problem(fmt) is None and any("more than once" in n for n in fmt.notes)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_renderers_survive_events_built_by_hand_from_broken_formats(case: str) -> None:
    fmt = parse_format(BROKEN[case], system="test")
    odd = [Event(1500, 0, 42, 77, fmt, {"value": 7}), Event(1500, 0, (42,), 77, fmt, {"value": "x\0"}),
           Event(1500, 0, 42, 77, fmt, {"value": b"\x00", "other": (1, "a")})]
    for event in odd:
        for line in text_lines([event]) + [item_text(event)]:
            assert line.isprintable() and ":" in line
        json_lines([event])
        event_json(event)


def test_render_caches_stay_bounded() -> None:
    for n in range(render_event._CACHE_MAX + 50):
        fmt = parse_format(_format(name=f"e{n}", event_id=n), system="test")
        text_lines([Event(n, 0, 1, n, fmt, {"value": n})])
        json_lines([Event(n, 0, 1, n, fmt, {"value": n})])
    assert len(render_event._renderers) <= render_event._CACHE_MAX
    assert len(render_event._json_renderers) <= render_event._CACHE_MAX
    assert len(render_event._styles_cache) <= render_event._CACHE_MAX


def test_print_fmt_with_long_space_runs_is_not_slow() -> None:
    # Before the cast pattern was possessive this took about 9 s (quadratic in the run of spaces).
    fmt = parse_format(_format().replace('REC->value', "(a" + " " * 60000 + "* REC->value"))
    started = time.perf_counter()
    hex_fields(fmt)
    assert time.perf_counter() - started < 0.5


# -- decode inputs ---------------------------------------------------------------------------------------

@pytest.fixture
def alarm():
    """Fail, rather than hang, if an open blocks."""
    import signal

    def expired(*_):
        raise AssertionError("blocked")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_read_input_maps_regular_files(tmp_path) -> None:
    from rawtrace.inputs import read_input
    (tmp_path / "a.raw").write_bytes(b"abc" * 1000)
    (tmp_path / "empty").write_bytes(b"")
    data = read_input(str(tmp_path / "a.raw"))
    assert data[:] == b"abc" * 1000 and not isinstance(data, (bytes, bytearray))
    assert read_input(str(tmp_path / "empty")) == b""


def test_read_input_refuses_fifos_devices_and_directories_without_blocking(tmp_path, alarm) -> None:
    import os

    from rawtrace.errors import UsageError
    from rawtrace.inputs import read_input
    os.mkfifo(tmp_path / "fifo")
    for path, kind in ((tmp_path / "fifo", "FIFO"), ("/dev/zero", "character device"),
                       ("/dev/urandom", "character device"), (tmp_path, "directory")):
        with pytest.raises(UsageError, match=kind) as info:
            read_input(str(path))
        assert "\n" not in info.value.message
    with pytest.raises(UsageError, match="cannot read"):
        read_input(str(tmp_path / "missing"))
    with pytest.raises(UsageError, match="FIFO"):
        read_tracedat(str(tmp_path / "fifo"))


def test_stdin_is_bounded_and_devices_on_stdin_are_refused(monkeypatch, alarm) -> None:
    import os
    import threading

    from rawtrace.errors import UsageError
    from rawtrace.inputs import read_input
    read_end, write_end = os.pipe()

    def writer() -> None:
        try:
            for _ in range(64):
                os.write(write_end, bytes(65536))
        except BrokenPipeError:
            pass
        finally:
            os.close(write_end)
    thread = threading.Thread(target=writer)
    thread.start()
    with open(read_end, "rb", buffering=0) as pipe:
        monkeypatch.setattr("sys.stdin", pipe)
        with pytest.raises(UsageError, match="more than 1048576 bytes"):
            read_input("-", max_bytes=1 << 20)
    thread.join()
    with open("/dev/zero", "rb") as zero:
        monkeypatch.setattr("sys.stdin", zero)
        with pytest.raises(UsageError, match="character device"):
            read_input("-")
    read_end, write_end = os.pipe()
    os.write(write_end, b"pages")
    os.close(write_end)
    with open(read_end, "rb", buffering=0) as pipe:
        monkeypatch.setattr("sys.stdin", pipe)
        assert read_input("-") == b"pages"


def test_small_file_reads_never_block_on_a_fifo(tmp_path, alarm) -> None:
    import os
    from pathlib import Path

    from rawtrace.host import read_text_or_none
    os.mkfifo(tmp_path / "saved_cmdlines")
    assert read_text_or_none(tmp_path / "saved_cmdlines") is None
    assert read_text_or_none(Path("/dev/zero")) is None
    (tmp_path / "crlf").write_bytes(b"a\r\nb\xff\n")
    assert read_text_or_none(tmp_path / "crlf") == "a\nb\ufffd\n"


def test_tracefs_that_is_a_fifo_is_a_usage_error(tmp_path, alarm) -> None:
    import os

    from rawtrace.cli import main
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "x.raw").write_bytes(bytes(4096))
    for command in (["events"], ["format", "sched_switch"], ["decode", str(tmp_path / "x.raw")]):
        assert main(["--tracefs", str(tmp_path / "fifo"), *command]) == 2


# -- compressed trace.dat sections -----------------------------------------------------------------------

def _compressed_cpu(method: str, blob: bytes, declared: int):
    from rawtrace.parse.tracedat import Buffer, TraceDat
    data = b"\0" * 64 + struct.pack("<III", 1, len(blob), declared) + blob
    dat = TraceDat("bomb.dat", 7, "little", 8, 4096, method, _data=data)
    return dat, Buffer("", "local", 4096, {0: (64, len(data) - 64 - 4)})


def test_declared_size_beyond_the_plausible_ratio_is_refused_before_decompressing() -> None:
    import zlib
    dat, buf = _compressed_cpu("zlib", zlib.compress(bytes(4096)), 1 << 30)
    with pytest.raises(DecodeError, match="declares 1073741824 bytes"):
        dat.cpu_data(buf, 0)


def test_zlib_chunk_expanding_past_its_declared_size_stops_there() -> None:
    import tracemalloc
    import zlib
    blob = zlib.compress(bytes(64 << 20), 9)                 # 64 MiB of zeros in about 64 KiB
    dat, buf = _compressed_cpu("zlib", blob, 4096)
    tracemalloc.start()
    with pytest.raises(DecodeError, match="expands beyond the 4096 bytes"):
        dat.cpu_data(buf, 0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


def test_zstd_frame_expanding_past_its_declared_size_stops_there() -> None:
    import shutil
    import subprocess
    if shutil.which("zstd") is None:
        pytest.skip("no zstd program")
    blob = subprocess.run(["zstd", "-q", "-c", "-19"], input=bytes(256 << 20), capture_output=True,
                          check=True).stdout                  # 256 MiB of zeros in a few KiB
    dat, buf = _compressed_cpu("zstd", blob, 1 << 20)
    started = time.perf_counter()
    with pytest.raises(DecodeError, match="expands beyond"):
        dat.cpu_data(buf, 0)
    assert time.perf_counter() - started < 5


def test_plausible_compressed_data_still_decodes() -> None:
    import zlib
    page = PageBuilder().event(struct.pack("<HBBii", 77, 0, 0, 1, 2), delta=1).build(5)
    dat, buf = _compressed_cpu("zlib", zlib.compress(page * 10), len(page) * 10)
    assert dat.cpu_data(buf, 0) == page * 10


def test_print_fmt_with_a_long_run_of_zeros_is_not_slow() -> None:
    # "%000...0" took 2.7 s for 8000 zeros before the conversion pattern was possessive.
    fmt = parse_format(_format().replace('"v=%d"', '"%' + "0" * 50000 + '%-08.3lx %5d %*.*s"'))
    started = time.perf_counter()
    hex_fields(fmt)
    assert time.perf_counter() - started < 0.5


def test_printf_conversions_are_still_recognised() -> None:
    fmt = parse_format(_format(own=OWN + "\tfield:unsigned long p;\toffset:16;\tsize:8;\tsigned:0;\n")
                       .replace('"v=%d", REC->value', '"v=%05d p=%-#018lx %%", REC->value, REC->p'))
    assert hex_fields(fmt) == {"p"}


def test_events_with_thousands_of_fields_render_generically_and_fast() -> None:
    body = "".join(f"\tfield:int f{i};\toffset:{8 + 4 * i};\tsize:4;\tsigned:1;\n" for i in range(20000))
    fmt = parse_format(f"name: wide\nID: 5\nformat:\n{COMMON}{PID}\n{body}\nprint fmt: \"\"\n", system="t")
    event = Event(1000, 0, 1, 5, fmt, {f"f{i}": i for i in range(20000)})
    started = time.perf_counter()
    line = text_lines([event])[0]
    (json_line,) = json_lines([event])
    assert time.perf_counter() - started < 1.0              # about 1.3 s each when compiled
    assert line.endswith(" f19998=19998 f19999=19999") and '"f19999":19999' in json_line


def test_safe_text_escapes_what_escape_leaves_unprintable() -> None:
    from rawtrace.render_event import safe_text
    shown = safe_text("a\u202eb\u200bc\u2028d\U000f0000e\u05f9\x1b")
    assert shown.isprintable() and shown == "a\\u202eb\\u200bc\\u2028d\\uf0000e\\u05f9\\x1b"
    assert safe_text("héllo wörld") == "héllo wörld"


def test_sub_buffer_beyond_the_commit_size_is_an_unsupported_layout() -> None:
    from rawtrace.parse.format import parse_header_page
    header_page = parse_header_page("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
                                    "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
                                    "\tfield: char data;\toffset:16;\tsize:2147483647;\tsigned:0;\n")
    with pytest.raises(DecodeError, match="27-bit commit size"):
        PageLayout.from_headers(header_page)
