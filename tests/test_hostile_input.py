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
    for name in ("²-1-x", "1-²-x", "٣-4-x", "12-34-abc"):
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
    fmt = parse_format(_format().replace('REC->value', "(a" + " " * 20000 + "* REC->value"))
    started = time.perf_counter()
    hex_fields(fmt)
    assert time.perf_counter() - started < 1.0
