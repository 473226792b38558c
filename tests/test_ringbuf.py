"""Page decoding on hand-built sub-buffers: every record type, missed events, truncation, both endians."""

from __future__ import annotations

import pytest
from test_ringbuf_support import TINY, PageBuilder, tiny_payload

from rawtrace.errors import DecodeError
from rawtrace.parse.descriptors import HeaderEvent, HeaderPage
from rawtrace.parse.record import DecoderSet, Event, Lost, UnknownEvent
from rawtrace.parse.ringbuf import PageDecodeError, PageLayout, decode_page, iter_pages, page_header

KERNELS = [
    ("little", 8, 4096),
    ("big", 8, 4096),
    ("little", 4, 4096),
    ("big", 4, 8192),
    ("little", 8, 8192),
]


def setup(byteorder: str, long_size: int, subbuf_size: int):
    header_page = HeaderPage(0, 8, 8, long_size, 8 + long_size, subbuf_size - 8 - long_size)
    layout = PageLayout.from_headers(header_page, HeaderEvent(), byteorder)
    return layout, DecoderSet({TINY.id: TINY}, byteorder), PageBuilder(byteorder, long_size, subbuf_size)


def events(items):
    return [(i.ts, i.pid, i.fields["a"], i.fields["b"]) for i in items if isinstance(i, Event)]


@pytest.fixture(params=KERNELS, ids=lambda k: f"{k[0]}-long{k[1]}-{k[2]}")
def kernel(request):
    return setup(*request.param)


def test_layout_from_headers(kernel) -> None:
    layout, _decoders, builder = kernel
    assert layout.data_offset == builder.data_offset
    assert layout.subbuf_size == builder.subbuf_size
    assert layout.long_size == builder.long_size


def test_short_form_records_and_deltas(kernel) -> None:
    layout, decoders, b = kernel
    p = b.byteorder
    page = (b.event(tiny_payload(p, 10, 1, -1), delta=0)
             .event(tiny_payload(p, 11, 2, -(2**63)), delta=5)
             .event(tiny_payload(p, 12, 0xFFFFFFFF, 2**63 - 1), delta=(1 << 27) - 1)
             .build(1000))
    items = decode_page(layout, page, 3, decoders)
    assert events(items) == [(1000, 10, 1, -1), (1005, 11, 2, -(2**63)),
                             (1005 + (1 << 27) - 1, 12, 0xFFFFFFFF, 2**63 - 1)]
    assert {i.cpu for i in items} == {3}
    assert items[0].format is TINY and items[0].id == 700


def test_long_form_small_event(kernel) -> None:
    layout, decoders, b = kernel
    page = b.event(tiny_payload(b.byteorder, 7, 5, 6), delta=9, long_form=True).build(50)
    assert events(decode_page(layout, page, 0, decoders)) == [(59, 7, 5, 6)]


def test_large_event_uses_long_form(kernel) -> None:
    layout, decoders, b = kernel
    payload = tiny_payload(b.byteorder, 8, 1, 2) + b"\x55" * 200   # 220 bytes: more than 112
    page = b.event(payload, delta=1).event(tiny_payload(b.byteorder, 9, 3, 4), delta=1).build(0)
    assert page[b.data_offset:b.data_offset + 4] == b.word(0, 1)
    assert events(decode_page(layout, page, 0, decoders)) == [(1, 8, 1, 2), (2, 9, 3, 4)]


def test_time_extend_adds_59_bit_delta(kernel) -> None:
    layout, decoders, b = kernel
    big = 12_958_856_865
    page = (b.time_extend(big).event(tiny_payload(b.byteorder, 1, 0, 0), delta=3)
             .time_extend(0)                      # zero-delta extend (RB_ADD_STAMP_FORCE): harmless
             .event(tiny_payload(b.byteorder, 2, 0, 0), delta=4)
             .build(282_781_897_980))
    assert [e[0] for e in events(decode_page(layout, page, 0, decoders))] == [
        282_781_897_980 + big + 3, 282_781_897_980 + big + 7]


def test_absolute_timestamp_replaces_running_ts(kernel) -> None:
    layout, decoders, b = kernel
    page = (b.event(tiny_payload(b.byteorder, 1, 0, 0), delta=100)
             .absolute(5_000_000)
             .event(tiny_payload(b.byteorder, 2, 0, 0), delta=0)
             .build(1_000_000))
    assert [e[0] for e in events(decode_page(layout, page, 0, decoders))] == [1_000_100, 5_000_000]


def test_absolute_timestamp_restores_top_bits_and_wraps(kernel) -> None:
    layout, decoders, b = kernel
    top = 0b10101 << 59
    page_ts = top | 1000
    page = (b.absolute(2000).event(tiny_payload(b.byteorder, 1, 0, 0))       # same top bits
             .absolute(500).event(tiny_payload(b.byteorder, 2, 0, 0))        # low bits wrapped: carry
             .build(page_ts))
    assert [e[0] for e in events(decode_page(layout, page, 0, decoders))] == [
        top | 2000, (top | 500) + (1 << 59)]


def test_padding_with_zero_delta_ends_the_page(kernel) -> None:
    layout, decoders, b = kernel
    b.event(tiny_payload(b.byteorder, 1, 0, 0)).end_padding()
    b.event(tiny_payload(b.byteorder, 2, 0, 0))          # inside commit but after the end marker
    assert [e[1] for e in events(decode_page(layout, b.build(0), 0, decoders))] == [1]


def test_discarded_event_is_skipped_and_keeps_ts(kernel) -> None:
    layout, decoders, b = kernel
    page = (b.event(tiny_payload(b.byteorder, 1, 0, 0), delta=10)
             .discarded(24, delta=7)
             .event(tiny_payload(b.byteorder, 2, 0, 0), delta=5)
             .build(0))
    assert [(e[0], e[1]) for e in events(decode_page(layout, page, 0, decoders))] == [(10, 1), (15, 2)]


def test_padding_record_in_last_four_bytes(kernel) -> None:
    layout, decoders, b = kernel
    room = b.subbuf_size - b.data_offset
    count, rest = divmod(room - 4, 24)
    for n in range(count):
        b.event(tiny_payload(b.byteorder, n, 0, 0))
    if rest:
        b.discarded(rest)
    b.end_padding()                                   # only its 4-byte word fits
    assert len(b.data) == room
    items = decode_page(layout, b.build(0), 0, decoders)
    assert [e[1] for e in events(items)] == list(range(count))


def test_missed_flag_without_count(kernel) -> None:
    layout, decoders, b = kernel
    page = b.event(tiny_payload(b.byteorder, 1, 0, 0), delta=2).build(777, missed=True)
    items = decode_page(layout, page, 1, decoders)
    assert items[0] == Lost(cpu=1, ts=777, count=-1)
    assert events(items[1:]) == [(779, 1, 0, 0)]


def test_missed_flag_with_stored_count(kernel) -> None:
    layout, decoders, b = kernel
    page = b.event(tiny_payload(b.byteorder, 1, 0, 0)).build(5, missed=True, stored=127)
    items = decode_page(layout, page, 0, decoders)
    assert items[0] == Lost(0, 5, 127)
    assert len(events(items)) == 1
    header = page_header(layout, page)
    assert header.missed and header.missed_stored and header.size == 24


def test_sign_extended_commit_word_is_not_a_size() -> None:
    layout, decoders, b = setup("little", 8, 4096)
    page = b.event(tiny_payload("little", 1, 0, 0)).build(5, missed=True, stored=3)
    assert page[8:16] == bytes.fromhex("180000c0ffffffff")     # 0xffffffffc0000018
    items = decode_page(layout, page, 0, decoders)
    assert items[0] == Lost(0, 5, 3) and len(items) == 2


def test_empty_page(kernel) -> None:
    layout, decoders, b = kernel
    assert decode_page(layout, b.build(1), 0, decoders) == []


def test_unknown_event_is_reported(kernel) -> None:
    layout, decoders, b = kernel
    payload = tiny_payload(b.byteorder, 1, 0, 0)
    unknown = b.byteorder == "little" and b"\x39\x05" + payload[2:] or b"\x05\x39" + payload[2:]
    page = b.event(unknown, delta=4).event(payload, delta=1).build(0)
    items = decode_page(layout, page, 2, decoders)
    assert isinstance(items[0], UnknownEvent) and items[0].id == 0x539 and items[0].ts == 4
    assert items[0].data == unknown
    assert events(items[1:]) == [(5, 1, 0, 0)]
    assert decoders.unknown == {0x539: 1}


def test_record_past_commit_is_corruption(kernel) -> None:
    layout, decoders, b = kernel
    b.event(tiny_payload(b.byteorder, 1, 0, 0)).event(tiny_payload(b.byteorder, 2, 0, 0))
    page = b.build(0, size=24 + 12)                     # commit cuts the second record
    with pytest.raises(PageDecodeError) as info:
        decode_page(layout, page, 4, decoders, index=7, source="f.raw")
    assert events(info.value.partial) == [(0, 1, 0, 0)]
    message = info.value.message
    assert message.startswith("f.raw: cpu 4 page 7 offset ")
    assert "runs past the end of the data" in message


def test_page_cut_short(kernel) -> None:
    layout, decoders, b = kernel
    for n in range(5):
        b.event(tiny_payload(b.byteorder, n, 0, 0), delta=1)
    page = b.build(0)[:b.data_offset + 24 * 3 + 10]
    with pytest.raises(PageDecodeError) as info:
        decode_page(layout, page, 0, decoders)
    assert [e[1] for e in events(info.value.partial)] == [0, 1, 2]
    assert isinstance(info.value, DecodeError)


def test_page_shorter_than_header(kernel) -> None:
    layout, decoders, _b = kernel
    with pytest.raises(PageDecodeError, match="shorter than its"):
        decode_page(layout, b"\0" * 6, 0, decoders)


def test_commit_larger_than_data_area(kernel) -> None:
    layout, decoders, b = kernel
    with pytest.raises(PageDecodeError, match="exceeds"):
        decode_page(layout, b.build(0, size=b.subbuf_size), 0, decoders)


def test_record_shorter_than_its_format(kernel) -> None:
    # A record that does not fit its format is shown undecoded and counted; the page goes on.
    layout, decoders, b = kernel
    short = tiny_payload(b.byteorder, 1, 0, 0)[:12]                     # 12 of TINY's 20 bytes
    page = (b.event(short, delta=1).event(tiny_payload(b.byteorder, 2, 3, 4), delta=1)
             .event(short, delta=1, long_form=True).event(tiny_payload(b.byteorder, 5, 6, 7), delta=1).build(0))
    items = decode_page(layout, page, 0, decoders)
    assert [type(i).__name__ for i in items] == ["UnknownEvent", "Event", "UnknownEvent", "Event"]
    assert events(items) == [(2, 2, 3, 4), (4, 5, 6, 7)]
    assert items[0].data == short and items[0].id == 700 and items[0].ts == 1
    assert "shorter than its format" in items[0].reason and items[2].data == short
    assert decoders.malformed == {700: 2} and "12 bytes" in decoders.malformed_reasons[700]


def test_iter_pages_yields_good_records_then_raises(kernel) -> None:
    layout, decoders, b = kernel
    first = b.event(tiny_payload(b.byteorder, 1, 0, 0), delta=1).build(100)
    second = PageBuilder(b.byteorder, b.long_size, b.subbuf_size)
    second.event(tiny_payload(b.byteorder, 2, 0, 0), delta=1).event(tiny_payload(b.byteorder, 3, 0, 0))
    data = first + second.build(200)[:b.data_offset + 30]
    seen = []
    with pytest.raises(PageDecodeError) as info:
        for item in iter_pages(layout, memoryview(data), 0, decoders, source="cpu0.raw"):
            seen.append(item)  # noqa: PERF402  (items before the exception are the point)
    assert [e[1] for e in events(seen)] == [1, 2]
    assert "cpu 0 page 1" in info.value.message and "truncated" in info.value.message


def test_iter_pages_many_pages(kernel) -> None:
    layout, decoders, b = kernel
    pages = []
    for n in range(4):
        builder = PageBuilder(b.byteorder, b.long_size, b.subbuf_size)
        pages.append(builder.event(tiny_payload(b.byteorder, n, n, -n), delta=n).build(n * 1000))
    got = events(iter_pages(layout, b"".join(pages), 0, decoders))
    assert got == [(n * 1001, n, n, -n) for n in range(4)]


def test_unsupported_layouts_are_refused() -> None:
    with pytest.raises(DecodeError, match="commit"):
        PageLayout(commit_size=2, data_offset=16)
    with pytest.raises(DecodeError, match="event header bits"):
        PageLayout(header_event=HeaderEvent(type_len_bits=6))
    with pytest.raises(ValueError):
        PageLayout(byteorder="middle")


def test_32_bit_kernel_with_64_bit_aligned_data() -> None:
    # CONFIG_HAVE_64BIT_ALIGNED_ACCESS on a 32-bit kernel: 4-byte commit, data at 16, and every
    # record in the long form (RB_FORCE_8BYTE_ALIGNMENT) whatever its size.
    header_page = HeaderPage(0, 8, 8, 4, 16, 4080)
    layout = PageLayout.from_headers(header_page, HeaderEvent(), "big")
    decoders = DecoderSet({TINY.id: TINY}, "big")
    b = PageBuilder("big", 4, 4096)
    b.event(tiny_payload("big", 1, 7, -7) + bytes(4), delta=2, long_form=True)   # 24-byte payload
    b.event(tiny_payload("big", 2, 8, -8) + bytes(4), delta=3, long_form=True)
    data = bytes(b.data)
    page = (100).to_bytes(8, "big") + len(data).to_bytes(4, "big") + bytes(4) + data
    page += bytes(4096 - len(page))
    assert events(decode_page(layout, page, 0, decoders)) == [(102, 1, 7, -7), (105, 2, 8, -8)]
