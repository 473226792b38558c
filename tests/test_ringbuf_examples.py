"""The worked examples of ring-buffer.md §10 (captured on 6.18 x86_64) as byte-exact fixtures."""

from __future__ import annotations

from test_ringbuf_support import PRINT, RAW_DATA, SCHED_SWITCH

from rawtrace.parse.record import DecoderSet, Event, Lost
from rawtrace.parse.ringbuf import PageLayout, decode_page, page_header


def hexdump(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def page_of(data: bytes, size: int = 4096) -> bytes:
    return data + bytes(size - len(data))


DECODERS = {PRINT.id: PRINT, RAW_DATA.id: RAW_DATA, SCHED_SWITCH.id: SCHED_SWITCH}
LAYOUT = PageLayout.default(byteorder="little")   # the captures are from x86_64

# First capture: the print record, the first sched_switch and the raw_data record exactly as dumped;
# the 26 sched_switch records between them are left out, so commit is 0x80 instead of 0xc30.
FIRST_CAPTURE = page_of(hexdump("""
    6f8c 91d2 4100 0000 8000 0000 0000 0000
    0800 0000 0500 0001 7e15 0000 1a8b 4981
    ffff ffff 6865 6c6c 6f20 7261 7774 7261
    6365 0a00 1077 0c00 7401 0102 7e15 0000
    7079 7468 6f6e 3300 0000 0000 0000 0000
    7e15 0000 7800 0000 0100 0000 0000 0000
    6261 7368 0000 0000 0000 0000 0000 0000
    b115 0000 7800 0000
    45ac 0d00 1300 0001 7e15 0000 3412 0000
    4142 4344 4546 4700
"""))


def test_first_capture() -> None:
    items = decode_page(LAYOUT, FIRST_CAPTURE, 0, DecoderSet(DECODERS, "little"))
    assert all(isinstance(i, Event) for i in items)
    printed, switch, raw = items
    assert printed.ts == 282_705_628_271
    assert (printed.pid, printed.flags, printed.preempt_count) == (5502, 0, 1)
    assert printed.fields == {"ip": 0xFFFFFFFF81498B1A, "buf": "hello rawtrace\n"}
    assert switch.ts == 282_705_628_271 + 25528
    assert (switch.id, switch.flags, switch.preempt_count) == (372, 1, 2)
    assert switch.fields == {"prev_comm": "python3", "prev_pid": 5502, "prev_prio": 120, "prev_state": 1,
                             "next_comm": "bash", "next_pid": 5553, "next_prio": 120}
    assert raw.ts == switch.ts + 28002
    # 11 bytes written: the 4-byte id and "ABCDEFG"; the record carries one pad byte.
    assert raw.fields == {"id": 0x1234, "buf": "ABCDEFG"}


def test_second_capture_time_extend_and_long_form() -> None:
    after_sleep = b"after-sleep\n\0"
    data = hexdump("""
        fc54 1dd7 4100 0000 e400 0000 0000 0000
        3ed4 0e8d 6000 0000
        0000 0000 ac00 0000 0500 0001 d717 0000
        1a8b 4981 ffff ffff
    """) + b"L" * 150 + b"\n\0" + bytes(168 - 16 - 152) + hexdump("""
        fe3b 913c 0200 0000
        0800 0000 0500 0001 d717 0000 1a8b 4981 ffff ffff
    """) + after_sleep + bytes(16 - len(after_sleep))
    assert len(data) == 0xF4
    page = page_of(data)
    header = page_header(LAYOUT, page)
    assert (header.timestamp, header.size, header.missed) == (282_781_897_980, 0xE4, False)
    long_event, short_event = decode_page(LAYOUT, page, 0, DecoderSet(DECODERS, "little"))
    assert long_event.ts == 295_740_754_845
    assert long_event.fields["buf"] == "L" * 150 + "\n"
    assert short_event.ts == 295_740_754_845 + 300_190_175
    assert short_event.fields["buf"] == "after-sleep\n"
    assert short_event.pid == 0x17D7


def test_missed_events_capture() -> None:
    # Commit word 0xffffffffc0000fe0 (4064 bytes, both flags, sign-extended); 127 stored after the data.
    data = bytearray(4096)
    data[0:8] = (1).to_bytes(8, "little")
    data[8:16] = bytes.fromhex("e00f00c0ffffffff")
    data[16 + 0xFE0:16 + 0xFE0 + 8] = (127).to_bytes(8, "little")
    # Fill the 4064 data bytes with 127 print records of 32 bytes (4 + 28-byte payload).
    record = hexdump("0700 0000 0500 0001 2a00 0000 1a8b 4981 ffff ffff") + b"x" * 11 + b"\0"
    assert len(record) == 32
    data[16:16 + 4064] = record * 127
    items = decode_page(LAYOUT, bytes(data), 0, DecoderSet(DECODERS, "little"))
    assert items[0] == Lost(cpu=0, ts=1, count=127)
    assert len(items) == 128 and items[-1].fields["buf"] == "x" * 11
