"""Per-event compiled decoders: every field kind, both byte orders, odd and hostile records."""

from __future__ import annotations

import struct

import pytest
from test_ringbuf_support import common, field, make_format, prefix

from rawtrace.parse.descriptors import FieldKind
from rawtrace.parse.record import (
    DecoderSet,
    Event,
    RecordTooShort,
    UnknownEvent,
    compile_decoder,
    format_timestamp,
    ts_seconds,
)

BYTEORDERS = ["little", "big"]

INTS = make_format(
    "test", "ints", 600,
    field("s8", "s8", 8, 1, True), field("u8", "u8", 9, 1),
    field("s16", "s16", 10, 2, True), field("u16", "u16", 12, 2),
    field("s32", "s32", 16, 4, True), field("u32", "u32", 20, 4),
    field("s64", "s64", 24, 8, True), field("u64", "u64", 32, 8),
    field("ptr", "void *", 40, 8, False, FieldKind.POINTER),
    # a syscall argument slot: 8 bytes, marked unsigned whatever the C type
    field("dfd", "int", 48, 8, False),
)


@pytest.mark.parametrize("byteorder", BYTEORDERS)
def test_integers_of_every_size(byteorder: str) -> None:
    p = prefix(byteorder)
    payload = common(byteorder, 600, 42, flags=3, preempt=1) + struct.pack(
        p + "bBhH2xiIqQQQ", -1, 255, -2, 65535, -3, 2**32 - 1, -4, 2**64 - 1, 0xFFFF888012345678,
        0xFFFFFF9C)
    event = compile_decoder(INTS, byteorder)(payload, 0, len(payload), 99, 1)
    assert isinstance(event, Event)
    assert (event.ts, event.cpu, event.pid, event.flags, event.preempt_count) == (99, 1, 42, 3, 1)
    assert event.fields == {"s8": -1, "u8": 255, "s16": -2, "u16": 65535, "s32": -3, "u32": 2**32 - 1,
                            "s64": -4, "u64": 2**64 - 1, "ptr": 0xFFFF888012345678, "dfd": 0xFFFFFF9C}


ARRAYS = make_format(
    "test", "arrays", 601,
    field("comm", "char[16]", 8, 16, True, FieldKind.STRING, "char", 1, 16),
    field("args", "unsigned long[3]", 24, 24, False, FieldKind.ARRAY, "unsigned long", 8, 3),
    field("deltas", "s16[2]", 48, 4, True, FieldKind.ARRAY, "s16", 2, 2),
    field("addr", "__u8[4]", 52, 4, False, FieldKind.ARRAY, "__u8", 1, 4),
    field("odd", "struct x", 56, 3, False, FieldKind.OPAQUE),
)


@pytest.mark.parametrize("byteorder", BYTEORDERS)
def test_fixed_arrays_strings_and_opaque(byteorder: str) -> None:
    p = prefix(byteorder)
    payload = (common(byteorder, 601, 1) + b"sixteen-chars-xx" + struct.pack(p + "3Q2hBBBB", 1, 2, 3, -5, 6,
                                                                             10, 0, 0, 1) + b"\x01\x02\x03\x00")
    fields = compile_decoder(ARRAYS, byteorder)(payload, 0, len(payload), 0, 0).fields
    assert fields == {"comm": "sixteen-chars-xx", "args": (1, 2, 3), "deltas": (-5, 6), "addr": (10, 0, 0, 1),
                      "odd": b"\x01\x02\x03"}


def test_char_array_stops_at_nul_and_keeps_bad_bytes() -> None:
    payload = common("little", 601, 1) + b"ab\xffc\0junk\0\0\0\0\0\0\0" + bytes(36)
    fields = compile_decoder(ARRAYS, "little")(payload, 0, len(payload), 0, 0).fields
    assert fields["comm"] == "ab\udcffc"
    assert fields["comm"].encode("utf-8", "surrogateescape") == b"ab\xffc"


DYNAMIC = make_format(
    "test", "dynamic", 602,
    field("name", "__data_loc char[]", 8, 4, False, FieldKind.DATA_LOC_STRING, "char", 1),
    field("lens", "__data_loc u32[]", 12, 4, False, FieldKind.DATA_LOC_ARRAY, "u32", 4),
    field("rel", "__rel_loc char[]", 16, 4, False, FieldKind.REL_LOC_STRING, "char", 1),
    field("empty", "__data_loc char[]", 20, 4, False, FieldKind.DATA_LOC_STRING, "char", 1),
    field("mask", "__data_loc cpumask_t", 24, 4, False, FieldKind.DATA_LOC_ARRAY, "cpumask_t", None),
)


@pytest.mark.parametrize("byteorder", BYTEORDERS)
def test_data_loc_and_rel_loc(byteorder: str) -> None:
    p = prefix(byteorder)
    # dynamic data after the 28 fixed bytes: "hi\0" (3) pad, 2 x u32, "rel\0", mask bytes
    name_at, lens_at, rel_at, mask_at = 28, 32, 40, 44
    body = struct.pack(p + "IIIII", (3 << 16) | name_at, (8 << 16) | lens_at,
                       (4 << 16) | (rel_at - 20), 0, (4 << 16) | mask_at)
    dynamic = b"hi\0\0" + struct.pack(p + "II", 7, 8) + b"rel\0" + b"\x0f\0\0\0"
    payload = common(byteorder, 602, 1) + body + dynamic
    assert len(payload) == 48
    fields = compile_decoder(DYNAMIC, byteorder)(payload, 0, len(payload), 0, 0).fields
    assert fields == {"name": "hi", "lens": (7, 8), "rel": "rel", "empty": "", "mask": b"\x0f\0\0\0"}


def test_data_loc_past_record_is_clamped() -> None:
    payload = common("little", 602, 1) + struct.pack("<IIIII", (200 << 16) | 28, 0, 0, 0, 0) + b"abcd"
    fields = compile_decoder(DYNAMIC, "little")(payload, 0, len(payload), 0, 0).fields
    assert fields["name"] == "abcd"


FLEX = make_format(
    "test", "flex", 603,
    field("ip", "unsigned long", 8, 8),
    field("args", "unsigned long[]", 16, 0, False, FieldKind.FLEX_ARRAY, "unsigned long", 8),
)
FLEX_TEXT = make_format(
    "test", "flex_text", 604,
    field("buf", "char[]", 8, 0, True, FieldKind.FLEX_STRING, "char", 1),
)


@pytest.mark.parametrize("byteorder", BYTEORDERS)
def test_flexible_array_runs_to_record_end(byteorder: str) -> None:
    p = prefix(byteorder)
    payload = common(byteorder, 603, 1) + struct.pack(p + "QQQ", 0xFFFFFFFF81000000, 5, 6) + b"\0\0\0\0"
    fields = compile_decoder(FLEX, byteorder)(payload, 0, len(payload), 0, 0).fields
    # the 4 pad bytes do not make a third element
    assert fields == {"ip": 0xFFFFFFFF81000000, "args": (5, 6)}


def test_flexible_string_and_offset_in_a_larger_buffer() -> None:
    payload = common("little", 604, 9) + b"text\n\0\0\0"
    buf = b"\xaa" * 40 + payload + b"\xbb" * 40
    event = compile_decoder(FLEX_TEXT, "little")(buf, 40, len(payload), 0, 0)
    assert event.pid == 9 and event.fields == {"buf": "text\n"}


def test_overlapping_fields_are_read_separately() -> None:
    fmt = make_format("test", "overlap", 605, field("whole", "u32", 8, 4), field("low", "u16", 8, 2))
    payload = common("little", 605, 1) + struct.pack("<I", 0x00020001)
    assert compile_decoder(fmt, "little")(payload, 0, 12, 0, 0).fields == {"whole": 0x20001, "low": 1}


def test_odd_sized_integer() -> None:
    fmt = make_format("test", "wide", 606, field("big", "__int128", 8, 16, True))
    payload = common("little", 606, 1) + (-2).to_bytes(16, "little", signed=True)
    assert compile_decoder(fmt, "little")(payload, 0, 24, 0, 0).fields == {"big": -2}


def test_short_record_raises() -> None:
    payload = common("little", 600, 1) + bytes(8)
    with pytest.raises(RecordTooShort):
        compile_decoder(INTS, "little")(payload + bytes(100), 0, len(payload), 0, 0)


def test_decoder_set_compiles_once_and_counts_unknown() -> None:
    asked = []

    def lookup(event_id: int):
        asked.append(event_id)
        return INTS if event_id == 600 else None

    decoders = DecoderSet(lookup)
    assert decoders.decoder(600) is decoders.decoder(600)
    unknown = decoders.decoder(7)
    item = unknown(b"\x07\x00abcdef", 0, 8, 5, 1)
    assert isinstance(item, UnknownEvent) and item.data == b"\x07\x00abcdef"
    decoders.decoder(7)(b"\x07\x00abcdef", 0, 8, 6, 1)
    assert asked == [600, 7] and decoders.unknown == {7: 2}


def test_decoder_set_rejects_bad_byteorder() -> None:
    with pytest.raises(ValueError):
        DecoderSet({}, "pdp")


def test_field_names_are_data_not_code() -> None:
    fmt = make_format("test", "names", 607, field("x'); import os; ('", "u32", 8, 4))
    payload = common("little", 607, 1) + struct.pack("<I", 5)
    assert compile_decoder(fmt, "little")(payload, 0, 12, 0, 0).fields == {"x'); import os; ('": 5}


def test_timestamp_helpers() -> None:
    assert ts_seconds(1_500_000_000) == 1.5
    assert format_timestamp(282_705_628_271) == "282.705628"
    assert format_timestamp(5, "local") == "0.000000"
    assert format_timestamp(123456, "counter") == "123456"


def test_big_fixed_array() -> None:
    # more than 64 values: the decoder indexes the unpacked tuple instead of naming each value
    fmt = make_format("test", "big", 608, field("small", "u16", 8, 2),
                      field("data", "u16[100]", 10, 200, False, FieldKind.ARRAY, "u16", 2, 100),
                      field("last", "s8", 210, 1, True))
    payload = common("big", 608, 3) + struct.pack(">H100Hb", 7, *range(100), -1)
    decode = compile_decoder(fmt, "big")
    assert "v = _main" in decode.source
    assert decode(payload, 0, len(payload), 0, 0).fields == {"small": 7, "data": tuple(range(100)), "last": -1}


def test_a_broken_format_makes_unknown_events_not_a_crash() -> None:
    from rawtrace.errors import ParseError

    def lookup(event_id: int):
        raise ParseError("bad field line", source="events/x/y/format", line=3)

    decoders = DecoderSet(lookup, "little")
    item = decoders.decoder(5)(b"\x05\x00\x00\x00\x01\x00\x00\x00", 0, 8, 1, 0)
    assert isinstance(item, UnknownEvent) and decoders.unknown == {5: 1}
    assert decoders.broken == {5: "events/x/y/format:3: bad field line"}


RAW_ENTER = {8: make_format("raw_syscalls", "sys_enter", 21,
                            field("id", "long", 8, 8, True),
                            field("args", "unsigned long[6]", 16, 48, False, FieldKind.ARRAY, "unsigned long", 8, 6)),
             4: make_format("raw_syscalls", "sys_enter", 21,        # a 32-bit kernel's longs
                            field("id", "long", 8, 4, True),
                            field("args", "unsigned long[6]", 12, 24, False, FieldKind.ARRAY, "unsigned long", 4, 6))}


@pytest.mark.parametrize("byteorder", BYTEORDERS)
@pytest.mark.parametrize("long_size", [8, 4])
def test_tuple_decoder_gives_the_plain_decoders_fields(byteorder: str, long_size: int) -> None:
    """compile_tuple_decoder (the joiner's raw_syscalls records) reads the same values as the Event decoder,
    from the format's own offsets and sizes; a short record raises RecordTooShort, as the page decoder
    expects; a missing field is a DecodeError."""
    import random

    from rawtrace.errors import DecodeError
    from rawtrace.parse.record import compile_tuple_decoder
    from rawtrace.syscalls.calls import SysEnter
    fmt = RAW_ENTER[long_size]
    plain = compile_decoder(fmt, byteorder)
    small = compile_tuple_decoder(fmt, SysEnter, ("id", "args"), byteorder)
    rng = random.Random(f"{byteorder}{long_size}")
    code = "i" if long_size == 4 else "q"
    for _ in range(200):
        nr = rng.choice([0, 1, 257, -1, 2**31 - 1, -(2**31)])
        args = [rng.getrandbits(long_size * 8) for _ in range(6)]
        payload = common(byteorder, 21, rng.randrange(1 << 31)) + struct.pack(
            prefix(byteorder) + code + ("6I" if long_size == 4 else "6Q"), nr, *args) + b"tail"
        event = plain(payload, 0, len(payload), 7, 1)
        rec = small(payload, 0, len(payload), 7, 1)
        assert rec.__class__ is SysEnter
        assert rec == (7, 1, event.pid, event.fields["id"], event.fields["args"])
    with pytest.raises(RecordTooShort):
        small(payload, 0, small.min_length - 1, 7, 1)
    with pytest.raises(DecodeError):
        compile_tuple_decoder(fmt, SysEnter, ("id", "ret"), byteorder)
