"""Recordings from older kernels: header_event without time_stamp (or none), bracketless flexible arrays,
rounded text time stamps, and one bad record or page not ending the decoding."""

from __future__ import annotations

import struct

from test_ringbuf_support import TINY, PageBuilder, common, tiny_payload

from rawtrace.parse.descriptors import FieldKind, HeaderEvent
from rawtrace.parse.format import parse_format, parse_header_event
from rawtrace.parse.record import DecoderSet, Event, UnknownEvent, format_timestamp
from rawtrace.parse.ringbuf import PageDecodeError, PageLayout, decode_page, iter_page_lists, iter_pages
from rawtrace.render_event import json_lines, text_lines
from rawtrace.tracefs.events import EventCatalog

# header_event as kernels before 4.17 print it: no `time_stamp : type == 31` line.
HEADER_EVENT_4_14 = """\
# compressed entry header
\ttype_len    :    5 bits
\ttime_delta  :   27 bits
\tarray       :   32 bits

\tpadding     : type == 29
\ttime_extend : type == 30
\tdata max type_len  == 28
"""

# ftrace/print and ftrace/bprint of a 3.x kernel (32-bit ARM): flexible arrays without brackets.
PRINT_3X = """\
name: print
ID: 5
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long ip;\toffset:8;\tsize:4;\tsigned:0;
\tfield:char buf;\toffset:12;\tsize:0;\tsigned:0;

print fmt: "%pf: %s", REC->ip, REC->buf
"""
BPRINT_3X = """\
name: bprint
ID: 6
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long ip;\toffset:8;\tsize:4;\tsigned:0;
\tfield:const char * fmt;\toffset:12;\tsize:4;\tsigned:1;
\tfield:u32 buf;\toffset:16;\tsize:0;\tsigned:0;

print fmt: "%pf: %s", REC->ip, REC->fmt
"""


def test_header_event_without_time_stamp_line_takes_the_abi_value() -> None:
    header = parse_header_event(HEADER_EVENT_4_14)
    assert header == HeaderEvent()
    assert header.time_stamp_type == 31 and header.time_delta_bits == 27


def test_empty_header_event_takes_the_abi_defaults() -> None:
    assert parse_header_event("") == HeaderEvent()


def test_absolute_time_stamp_decodes_with_a_4_14_header_event() -> None:
    layout = PageLayout.from_headers(_header_page(), parse_header_event(HEADER_EVENT_4_14))
    b = PageBuilder()
    page = b.absolute(5_000_000).event(tiny_payload("little", 3, 1, 2), delta=7).build(10)
    (event,) = decode_page(layout, page, 0, DecoderSet({TINY.id: TINY}))
    assert event.ts == 5_000_007


def _header_page():
    from rawtrace.parse.descriptors import HeaderPage
    return HeaderPage(0, 8, 8, 8, 16, 4080)


def test_tree_without_header_event_decodes_with_defaults(tmp_path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    (events / "header_page").write_text(
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
        "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
        "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n")
    catalog = EventCatalog(events)
    assert catalog.header_event() == HeaderEvent()
    layout = PageLayout.from_headers(catalog.header_page(), catalog.header_event())
    assert layout.data_offset == 16


def _payload(fmt_id: int, body: bytes) -> bytes:
    return common("little", fmt_id, 42) + body


def test_bracketless_char_flexible_array_is_the_string_to_the_end_of_the_record() -> None:
    fmt = parse_format(PRINT_3X, system="ftrace", long_size=4)
    (_ip, buf) = fmt.fields
    assert buf.kind == FieldKind.FLEX_STRING
    layout = PageLayout.default(long_size=4)
    b = PageBuilder("little", 4)
    page = b.event(_payload(5, struct.pack("<I", 0xC0DE) + b"hello from 3.x\n\0\0"), delta=1).build(0)
    (event,) = decode_page(layout, page, 0, DecoderSet({5: fmt}))
    assert event.fields == {"ip": 0xC0DE, "buf": "hello from 3.x\n"}


def test_bracketless_u32_flexible_array_is_the_array_to_the_end_of_the_record() -> None:
    fmt = parse_format(BPRINT_3X, system="ftrace", long_size=4)
    assert fmt.fields[-1].kind == FieldKind.FLEX_ARRAY and fmt.fields[-1].element_size == 4
    layout = PageLayout.default(long_size=4)
    b = PageBuilder("little", 4)
    page = b.event(_payload(6, struct.pack("<IIIII", 1, 0x8000, 7, 8, 9)), delta=1).build(0)
    (event,) = decode_page(layout, page, 0, DecoderSet({6: fmt}))
    assert event.fields == {"ip": 1, "fmt": 0x8000, "buf": (7, 8, 9)}


def test_text_time_stamps_round_to_the_microsecond() -> None:
    assert format_timestamp(395_190_943_598) == "395.190944"
    assert format_timestamp(395_190_943_499) == "395.190943"
    assert format_timestamp(1_999_999_500) == "2.000000"            # the carry reaches the seconds
    event = Event(1_999_999_500, 0, 1, TINY.id, TINY, {"a": 1, "b": 2})
    assert " 2.000000: test:tiny: " in text_lines([event])[0]
    assert " 0.000001: " in text_lines([event._replace(ts=500)])[0]
    assert " 0.000000: " in text_lines([event._replace(ts=499)])[0]
    assert '"ts":500' in json_lines([event._replace(ts=500)])[0]     # JSON keeps the exact value


def test_bad_page_does_not_end_the_file_when_errors_are_collected() -> None:
    layout, decoders = PageLayout.default(), DecoderSet({TINY.id: TINY})
    good = PageBuilder().event(tiny_payload("little", 1, 0, 0), delta=1).build(100)
    bad = PageBuilder().raw(b"\x1b\x00\x00\x00" * 3).build(200)          # type_len 27: runs past the data
    also_good = PageBuilder().event(tiny_payload("little", 3, 0, 0), delta=1).build(300)
    data = good + bad + also_good
    errors: list = []
    pids = [e.pid for e in iter_pages(layout, data, 0, decoders, errors=errors) if isinstance(e, Event)]
    assert pids == [1, 3]
    assert len(errors) == 1 and isinstance(errors[0], PageDecodeError) and errors[0].index == 1
    errors = []
    lists = list(iter_page_lists(layout, data, 0, decoders, errors=errors))
    assert [[e.pid for e in items] for items in lists] == [[1], [3]] and len(errors) == 1


def test_record_too_short_is_reported_and_decoding_goes_on() -> None:
    layout, decoders = PageLayout.default(), DecoderSet({TINY.id: TINY})
    page = (PageBuilder().event(tiny_payload("little", 1, 0, 0)[:8], delta=1)
            .event(tiny_payload("little", 2, 5, 6), delta=1).build(0))
    items = decode_page(layout, page, 0, decoders)
    assert isinstance(items[0], UnknownEvent) and items[0].reason
    assert items[1].fields == {"a": 5, "b": 6}
    assert decoders.malformed == {TINY.id: 1}
    line = text_lines(items)[0]
    assert "undecoded (record payload of 8 bytes is shorter than its format's 20)" in line
    assert '"reason":' in json_lines(items)[0]


def test_one_unparsable_format_in_a_trace_dat_does_not_make_the_file_unreadable() -> None:
    from test_tracedat import build_v7, pages

    from rawtrace.parse.tracedat import read_tracedat
    data = build_v7([pages(0, 2)], compress=False)
    dat = read_tracedat(data)
    dat.event_formats.append(("test", "name: broken\nID: notanumber\nformat:\n"))
    formats = dat.formats()
    assert list(formats) == [700] and len(dat.format_errors) == 1 and "ID" in dat.format_errors[0]
