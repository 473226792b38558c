"""Builders for hand-made ring-buffer sub-buffers and event formats, shared by the decoder tests."""

from __future__ import annotations

import struct

from rawtrace.parse.descriptors import EventFormat, Field, FieldKind

COMMON = (
    Field("common_type", "unsigned short", 0, 2, False, True, FieldKind.INTEGER),
    Field("common_flags", "unsigned char", 2, 1, False, True, FieldKind.INTEGER),
    Field("common_preempt_count", "unsigned char", 3, 1, False, True, FieldKind.INTEGER),
    Field("common_pid", "int", 4, 4, True, True, FieldKind.INTEGER),
)


def make_format(system: str, name: str, event_id: int, *fields: Field) -> EventFormat:
    return EventFormat(system, name, event_id, COMMON, tuple(fields), "")


def field(name: str, ctype: str, offset: int, size: int, signed: bool = False, kind: str = FieldKind.INTEGER,
          element_type: str | None = None, element_size: int | None = None, count: int | None = None) -> Field:
    return Field(name, ctype, offset, size, signed, False, kind, element_type, element_size, count)


# The formats of the worked example in ring-buffer.md §10 (6.18 x86_64).
PRINT = make_format("ftrace", "print", 5,
                    field("ip", "unsigned long", 8, 8),
                    field("buf", "char[]", 16, 0, True, FieldKind.FLEX_STRING, "char", 1))
RAW_DATA = make_format("ftrace", "raw_data", 19,
                       field("id", "unsigned int", 8, 4),
                       field("buf", "char[]", 12, 0, True, FieldKind.FLEX_STRING, "char", 1))
SCHED_SWITCH = make_format("sched", "sched_switch", 372,
                           field("prev_comm", "char[16]", 8, 16, True, FieldKind.STRING, "char", 1, 16),
                           field("prev_pid", "pid_t", 24, 4, True),
                           field("prev_prio", "int", 28, 4, True),
                           field("prev_state", "long", 32, 8, True),
                           field("next_comm", "char[16]", 40, 16, True, FieldKind.STRING, "char", 1, 16),
                           field("next_pid", "pid_t", 56, 4, True),
                           field("next_prio", "int", 60, 4, True))
# A small test event: one u32 and one s64.
TINY = make_format("test", "tiny", 700, field("a", "u32", 8, 4), field("b", "s64", 12, 8, True))


def prefix(byteorder: str) -> str:
    return "<" if byteorder == "little" else ">"


def common(byteorder: str, event_id: int, pid: int, flags: int = 0, preempt: int = 0) -> bytes:
    return struct.pack(prefix(byteorder) + "HBBi", event_id, flags, preempt, pid)


def tiny_payload(byteorder: str, pid: int, a: int, b: int) -> bytes:
    return common(byteorder, 700, pid) + struct.pack(prefix(byteorder) + "Iq", a, b)


class PageBuilder:
    """Assembles one sub-buffer record by record, in a given byte order, long size and size."""

    def __init__(self, byteorder: str = "little", long_size: int = 8, subbuf_size: int = 4096) -> None:
        self.byteorder = byteorder
        self.long_size = long_size
        self.subbuf_size = subbuf_size
        self.p = prefix(byteorder)
        self.data = bytearray()

    @property
    def data_offset(self) -> int:
        return 8 + self.long_size

    def word(self, type_len: int, delta: int) -> bytes:
        if self.byteorder == "little":
            value = type_len | (delta << 5)
        else:
            value = (type_len << 27) | delta
        return struct.pack(self.p + "I", value)

    def u32(self, value: int) -> bytes:
        return struct.pack(self.p + "I", value)

    def event(self, payload: bytes, delta: int = 0, long_form: bool = False) -> PageBuilder:
        payload = payload + bytes(-len(payload) % 4)
        if long_form or len(payload) > 112:
            self.data += self.word(0, delta) + self.u32(len(payload) + 4) + payload
        else:
            self.data += self.word(len(payload) // 4, delta) + payload
        return self

    def time_extend(self, delta: int) -> PageBuilder:
        self.data += self.word(30, delta & ((1 << 27) - 1)) + self.u32(delta >> 27)
        return self

    def absolute(self, value: int) -> PageBuilder:
        value &= (1 << 59) - 1
        self.data += self.word(31, value & ((1 << 27) - 1)) + self.u32(value >> 27)
        return self

    def end_padding(self) -> PageBuilder:
        self.data += self.word(29, 0)
        return self

    def discarded(self, total_length: int, delta: int = 1) -> PageBuilder:
        self.data += self.word(29, delta) + self.u32(total_length - 4) + b"\xee" * (total_length - 8)
        return self

    def raw(self, data: bytes) -> PageBuilder:
        self.data += data
        return self

    def build(self, ts: int, *, missed: bool = False, stored: int | None = None, size: int | None = None,
              commit_word: int | None = None, extra: bytes = b"") -> bytes:
        size = len(self.data) if size is None else size
        commit = size
        if missed:
            commit |= 1 << 31
            if stored is not None:
                commit |= 1 << 30
            if self.long_size == 8:
                # The kernel adds a negative int constant: the 64-bit word sign-extends.
                commit |= 0xFFFFFFFF00000000
        if commit_word is not None:
            commit = commit_word
        code = "Q" if self.long_size == 8 else "I"
        page = struct.pack(self.p + "Q", ts) + struct.pack(self.p + code, commit) + bytes(self.data)
        if stored is not None:
            page += struct.pack(self.p + code, stored)
        page += extra
        return page + bytes(self.subbuf_size - len(page))


def test_builder_sizes() -> None:
    page = PageBuilder("big", 4, 8192).event(b"\x00" * 10).build(1)
    assert len(page) == 8192
    # commit (4 bytes, big endian) = one 16-byte record: 4-byte header + 12-byte padded payload
    assert struct.unpack(">I", page[8:12])[0] == 16
    # big-endian header word: type_len 3 (12-byte payload) in the top five bits
    assert page[12:16] == bytes.fromhex("18000000")
