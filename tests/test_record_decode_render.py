"""Text and JSON rendering of decoded events (render_event), shared by `decode` and `trace`."""

from __future__ import annotations

import json

from test_ringbuf_support import PRINT, SCHED_SWITCH, field, make_format

from rawtrace.comm import parse_saved_cmdlines
from rawtrace.parse.descriptors import FieldKind
from rawtrace.parse.record import Event, Lost, UnknownEvent
from rawtrace.render_event import (
    event_json,
    event_text,
    fields_text,
    item_json,
    item_text,
    json_lines,
    json_text,
    safe_text,
    text_lines,
)

SYSCALL = make_format("raw_syscalls", "sys_enter", 21,
                      field("id", "long", 8, 8, True),
                      field("args", "unsigned long[6]", 16, 48, False, FieldKind.ARRAY, "unsigned long", 8, 6))
MIXED = make_format("test", "mixed", 30,
                    field("ptr", "void *", 8, 8, False, FieldKind.POINTER),
                    field("raw", "struct x", 16, 3, False, FieldKind.OPAQUE),
                    field("vals", "__data_loc s32[]", 20, 4, True, FieldKind.DATA_LOC_ARRAY, "s32", 4),
                    field("name", "__data_loc char[]", 24, 4, False, FieldKind.DATA_LOC_STRING, "char", 1))


def test_syscall_line_like_ftrace() -> None:
    event = Event(395_190_943_598, 1, 9451, 21, SYSCALL, {"id": 262, "args": (1, 0x7F93B0B44DD5, 0, 0x1000, 7, 0)})
    # 395.190943598 s rounds to .190944, as `trace-cmd report` prints this very event.
    assert event_text(event, "trace-cmd") == (
        "       trace-cmd-9451    [001] 395.190944: raw_syscalls:sys_enter: "
        "id=262 args={0x1,0x7f93b0b44dd5,0x0,0x1000,0x7,0x0}")


def test_strings_pointers_bytes_and_dynamic_arrays() -> None:
    event = Event(5, 0, 1, 30, MIXED, {"ptr": 0xFFFF8880, "raw": b"\x01\xff\x00", "vals": (-1, 2),
                                       "name": "a\nb\udcfe\\"})
    assert event_text(event) == ("           <...>-1       [000] 0.000000: test:mixed: "
                                 "ptr=0xffff8880 raw=01ff00 vals={-1,2} name=a\\nb\\xfe\\\\")
    row = event_json(event, "x\udcff")
    assert json.loads(json.dumps(row)) == {
        "ts": 5, "cpu": 0, "pid": 1, "comm": "x\\xff", "event": "test:mixed",
        "fields": {"ptr": 0xFFFF8880, "raw": "01ff00", "vals": [-1, 2], "name": "a\nb\\xfe\\"}}


def test_control_characters_in_comm_are_escaped() -> None:
    event = Event(1_000_000_000, 2, 7, 5, PRINT, {"ip": 0xFFFFFFFF81000000, "buf": "hi\n"})
    line = event_text(event, "evil\x1b[2J")
    assert "\x1b" not in line and "evil\\x1b[2J-7" in line
    assert line.endswith("ftrace:print: ip=18446744071578845184 buf=hi\\n")


def test_fields_that_do_not_match_the_format_still_render() -> None:
    event = Event(0, 0, 1, 372, SCHED_SWITCH, {"prev_comm": "a", "extra": (1, 2)})
    assert event_text(event).endswith("sched:sched_switch: prev_comm=a extra={1,2}")
    assert fields_text({"x": "y\tz"}) == "x=y\\tz"


def test_other_clocks_print_raw_counts() -> None:
    event = Event(123456789, 0, 1, 372, SCHED_SWITCH, {})
    assert " 123456789: " in event_text(event, clock="counter")
    assert " 0.123457: " in event_text(event, clock="mono")     # 123456789 ns, rounded


def test_lost_and_unknown_items() -> None:
    assert "LOST 3 events" in item_text(Lost(1, 2_000_000_000, 3))
    assert "LOST an unknown number of events" in item_text(Lost(1, 0, -1))
    assert item_json(Lost(1, 7, -1)) == {"lost": -1, "cpu": 1, "ts": 7}
    unknown = UnknownEvent(9, 0, 77, b"\x4d\x00ab")
    assert "unknown event id 77: 4 bytes 4d006162" in item_text(unknown)
    assert item_json(unknown) == {"ts": 9, "cpu": 0, "unknown_id": 77, "data": "4d006162"}


def test_item_text_uses_comms() -> None:
    event = Event(0, 0, 42, 5, PRINT, {"ip": 1, "buf": ""})
    assert item_text(event, {42: "bash"}).lstrip().startswith("bash-42 ")
    assert item_json(event, {42: "bash"})["comm"] == "bash"


def test_helpers() -> None:
    assert safe_text("plain") == "plain"
    assert safe_text("\udc80\x7f") == "\\x80\\x7f"
    assert json_text("caf\u00e9") == "caf\u00e9"
    assert parse_saved_cmdlines("1 init\n42 my prog\nbad line\n") == {1: "init", 42: "my prog"}


def test_text_lines_matches_item_text() -> None:
    items = [Lost(0, 1, 2), Event(5, 0, 42, 5, PRINT, {"ip": 1, "buf": "x"}),
             UnknownEvent(6, 1, 9, b"\x09\x00"), Event(7, 1, 43, 21, SYSCALL, {"id": 1, "args": (1, 2, 3, 4, 5, 6)}),
             Event(8, 1, 43, 372, SCHED_SWITCH, {"odd": 1})]
    comms = {42: "bash\x07"}
    for clock in ("local", "counter"):
        assert text_lines(items, comms, clock) == [item_text(i, comms, clock) for i in items]
    assert text_lines(items) == [item_text(i) for i in items]


def test_json_lines_match_item_json() -> None:
    items = [Lost(0, 1, -1), UnknownEvent(2, 1, 9, b"\x09\x00"),
             Event(5, 0, 42, 21, SYSCALL, {"id": -1, "args": (1, 2**64 - 1, 3, 4, 5, 6)}),
             Event(6, 1, 43, 30, MIXED, {"ptr": 0xFFFF, "raw": b"\x00\xff", "vals": (),
                                         "name": 'q"uo\\te\n\x01\udcfe\u00e9\u2028'}),
             Event(7, 1, 44, 5, PRINT, {"ip": 1, "buf": "x"}),
             Event(8, 1, 44, 372, SCHED_SWITCH, {"odd": (1, "two")}),          # does not match its format
             Event(9, 0, 42, 21, SYSCALL, {"id": 3, "args": (1, 2)})]          # wrong array length
    comms = {42: 'ba"sh', 43: "x\udcff"}
    expected = [json.dumps(item_json(i, comms), ensure_ascii=False, separators=(",", ":")) for i in items]
    assert json_lines(items, comms) == expected
    assert json_lines(items) == [json.dumps(item_json(i), ensure_ascii=False, separators=(",", ":"))
                                 for i in items]
    assert all(json.loads(line) for line in expected)


def with_print_fmt(fmt, string: str, *args: str):
    return fmt._replace(print_fmt_string=string, print_fmt_args=args)


def test_print_fmt_hex_hints() -> None:
    from rawtrace.render_event import hex_fields
    fmt = make_format("kmem", "kmalloc", 40, field("call_site", "unsigned long", 8, 8),
                      field("bytes", "size_t", 16, 8), field("flags", "int", 24, 4, True),
                      field("err", "long", 32, 8, True))
    fmt = with_print_fmt(fmt, "call_site=%pS bytes=%zu flags=%*s 100%% err=0x%lx",
                         "(void *)REC->call_site", "REC->bytes", "8", "REC->flags ? \"a\" : \"b\"",
                         "((unsigned long)(REC->err))")
    assert hex_fields(fmt) == {"call_site", "err"}
    event = Event(0, 0, 1, 40, fmt, {"call_site": 0xFFFFFFFF81000000, "bytes": 16, "flags": 3, "err": -2})
    assert event_text(event).endswith("call_site=0xffffffff81000000 bytes=16 flags=3 err=0xfffffffffffffffe")
    # an expression, not a bare field, or arguments that do not pair up: no hint
    assert hex_fields(with_print_fmt(fmt, "%lx", "REC->bytes * 2")) == set()
    assert hex_fields(with_print_fmt(fmt, "%lx %lx", "REC->bytes")) == set()
