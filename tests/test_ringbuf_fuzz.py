"""Hostile input: mutated and random sub-buffers decode or raise PageDecodeError, nothing else."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ringbuf_support import PRINT, SCHED_SWITCH, PageBuilder, common, field, make_format, tiny_payload

from rawtrace.parse.descriptors import FieldKind
from rawtrace.parse.record import DecoderSet, Event, Lost, UnknownEvent
from rawtrace.parse.ringbuf import PageDecodeError, PageLayout, decode_page

DYNAMIC = make_format(
    "test", "dynamic", 602,
    field("name", "__data_loc char[]", 8, 4, False, FieldKind.DATA_LOC_STRING, "char", 1),
    field("lens", "__data_loc u32[]", 12, 4, False, FieldKind.DATA_LOC_ARRAY, "u32", 4),
    field("rel", "__rel_loc u16[]", 16, 4, False, FieldKind.REL_LOC_ARRAY, "u16", 2),
    field("tail", "unsigned long[]", 20, 0, False, FieldKind.FLEX_ARRAY, "unsigned long", 8),
)
FORMATS = {PRINT.id: PRINT, SCHED_SWITCH.id: SCHED_SWITCH, DYNAMIC.id: DYNAMIC}


def valid_page(byteorder: str, long_size: int) -> bytes:
    b = PageBuilder(byteorder, long_size, 4096)
    p = "<" if byteorder == "little" else ">"
    b.event(common(byteorder, 5, 1) + struct.pack(p + "Q", 0xFFFF) + b"hello\n\0", delta=3)
    b.time_extend(1 << 30).event(common(byteorder, 602, 2) + struct.pack(p + "III", (3 << 16) | 20, (8 << 16) | 24,
                                                                         (4 << 16) | 12) + b"ab\0\0" + bytes(8) + bytes(12))
    b.absolute(123456789).event(tiny_payload(byteorder, 3, 1, 2), long_form=True)
    b.discarded(16).event(common(byteorder, 372, 4) + bytes(56), delta=1).end_padding()
    return b.build(10**12, missed=True, stored=5)


def check(layout: PageLayout, page: bytes) -> None:
    decoders = DecoderSet(FORMATS, layout.byteorder)
    try:
        items = decode_page(layout, page, 0, decoders)
    except PageDecodeError as exc:
        items = exc.partial
        assert exc.message
    for item in items:
        assert isinstance(item, (Event, Lost, UnknownEvent))
        assert isinstance(item.ts, int) and item.ts >= 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(byteorder=st.sampled_from(["little", "big"]), long_size=st.sampled_from([4, 8]),
       flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=12),
       cut=st.integers(0, 4200))
def test_mutated_pages(byteorder: str, long_size: int, flips: list, cut: int) -> None:
    page = bytearray(valid_page(byteorder, long_size))
    for at, value in flips:
        page[at] = value
    check(PageLayout.default(long_size=long_size, byteorder=byteorder), bytes(page[:cut]))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=600), byteorder=st.sampled_from(["little", "big"]))
def test_random_bytes(data: bytes, byteorder: str) -> None:
    check(PageLayout.default(byteorder=byteorder), data)


def test_valid_page_decodes_fully() -> None:
    for byteorder in ("little", "big"):
        for long_size in (4, 8):
            items = decode_page(PageLayout.default(long_size=long_size, byteorder=byteorder),
                                valid_page(byteorder, long_size), 0, DecoderSet(FORMATS, byteorder))
            assert [type(i).__name__ for i in items] == ["Lost", "Event", "Event", "UnknownEvent", "Event"]
            assert items[0].count == 5
            tail = struct.unpack(("<" if byteorder == "little" else ">") + "3Q", b"ab" + bytes(22))
            assert items[2].fields == {"name": "ab", "lens": (0, 0), "rel": (0, 0), "tail": tail}
            assert items[3].ts == 123456789
