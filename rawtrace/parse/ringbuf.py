"""Decode ftrace ring-buffer sub-buffers (the bytes of per_cpu/cpuN/trace_pipe_raw) into events.

Public API (pure: bytes in, objects out; see ring-buffer.md in the project notes):

* ``PageLayout.from_headers(header_page, header_event, byteorder="little")``: the sub-buffer layout
  (time stamp and commit fields, data offset, sub-buffer size, kernel long size, byte order), with its
  struct.Struct objects built once. ``PageLayout.default()`` is a 64-bit little-endian 4096-byte layout.
* ``decode_page(layout, page, cpu, decoders, *, index=None, source=None) -> list``: one sub-buffer to a
  list of ``Lost`` (first, when the kernel flagged missed events), ``Event`` and ``UnknownEvent`` items
  (from rawtrace.parse.record). A truncated or corrupt page raises ``PageDecodeError`` (a DecodeError)
  whose ``partial`` holds the good items decoded before the problem and whose message names the
  source, CPU, page index and byte offset.
* ``iter_pages(layout, data, cpu, decoders, *, source=None, first_index=0)``: the items of a run of
  sub-buffers (bytes or memoryview of a whole file or read() result); on corruption it yields the good
  items first, then raises PageDecodeError.
* ``page_header(layout, page) -> PageHeader``: time stamp, data size and missed-events flags of a page.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from rawtrace.errors import DecodeError
from rawtrace.parse.descriptors import HeaderEvent, HeaderPage
from rawtrace.parse.record import DecoderSet, Lost, RecordTooShort

# Commit word flags, tested on its low 32 bits: the kernel sets them by adding an int constant to a
# long, so on 64-bit kernels the whole word sign-extends (0xffffffffc0000fe0).
RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
COMMIT_SIZE_MASK = (1 << 27) - 1     # libtraceevent's COMMIT_MASK; bits 27..29 are unused

_UNSIGNED_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


class PageDecodeError(DecodeError):
    """A truncated or corrupt sub-buffer. `partial` = the good items decoded before the problem."""

    def __init__(self, reason: str, *, cpu: int, index: int | None, offset: int, source: str | None,
                 partial: list | None = None) -> None:
        where = source or "ring buffer"
        page = f" page {index}" if index is not None else ""
        super().__init__(f"{where}: cpu {cpu}{page} offset {offset:#x}: {reason}")
        self.reason = reason
        self.cpu = cpu
        self.index = index
        self.offset = offset
        self.source = source
        self.partial = partial if partial is not None else []


@dataclass(frozen=True, slots=True)
class PageHeader:
    timestamp: int
    size: int             # bytes of event data after the data offset
    missed: bool          # RB_MISSED_EVENTS
    missed_stored: bool   # RB_MISSED_STORED: the count is stored after the data
    raw_commit: int       # the commit word as read (may be sign-extended)


class PageLayout:
    """Where things are in one sub-buffer, for one kernel (long size, byte order, sub-buffer size)."""

    __slots__ = (
        "byteorder",
        "commit_offset",
        "commit_size",
        "commit_struct",
        "data_offset",
        "header_event",
        "long_struct",
        "prefix",
        "subbuf_size",
        "timestamp_offset",
        "timestamp_size",
        "timestamp_struct",
        "u16_struct",
        "word_struct",
        "words_struct",
    )

    def __init__(self, *, byteorder: str = "little", timestamp_offset: int = 0, timestamp_size: int = 8,
                 commit_offset: int = 8, commit_size: int = 8, data_offset: int = 16,
                 subbuf_size: int = 4096, header_event: HeaderEvent | None = None) -> None:
        if byteorder not in ("little", "big"):
            raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
        header_event = header_event or HeaderEvent()
        problems = []
        if timestamp_size not in (4, 8):
            problems.append(f"time stamp size {timestamp_size}")
        if commit_size not in (4, 8):
            problems.append(f"commit (kernel long) size {commit_size}")
        if data_offset < commit_offset + commit_size or data_offset < timestamp_offset + timestamp_size:
            problems.append(f"data offset {data_offset} overlaps the page header")
        if subbuf_size <= data_offset:
            problems.append(f"sub-buffer size {subbuf_size} not beyond data offset {data_offset}")
        if (header_event.type_len_bits + header_event.time_delta_bits != 32
                or header_event.array_bits != 32):
            problems.append(f"event header bits {header_event.type_len_bits}/{header_event.time_delta_bits}"
                            f"/{header_event.array_bits} (expected 5/27/32)")
        if problems:
            raise DecodeError("unsupported ring-buffer layout: " + ", ".join(problems))
        prefix = "<" if byteorder == "little" else ">"
        self.byteorder = byteorder
        self.timestamp_offset = timestamp_offset
        self.timestamp_size = timestamp_size
        self.commit_offset = commit_offset
        self.commit_size = commit_size
        self.data_offset = data_offset
        self.subbuf_size = subbuf_size
        self.header_event = header_event
        self.prefix = prefix
        self.timestamp_struct = struct.Struct(prefix + _UNSIGNED_CODES[timestamp_size])
        self.commit_struct = struct.Struct(prefix + _UNSIGNED_CODES[commit_size])
        self.long_struct = self.commit_struct
        self.word_struct = struct.Struct(prefix + "I")
        self.words_struct = struct.Struct(prefix + "II")
        self.u16_struct = struct.Struct(prefix + "H")

    @classmethod
    def from_headers(cls, header_page: HeaderPage, header_event: HeaderEvent | None = None,
                     byteorder: str = "little") -> PageLayout:
        """The layout described by events/header_page and events/header_event of one kernel/instance."""
        return cls(byteorder=byteorder, timestamp_offset=header_page.timestamp_offset,
                   timestamp_size=header_page.timestamp_size, commit_offset=header_page.commit_offset,
                   commit_size=header_page.commit_size, data_offset=header_page.data_offset,
                   subbuf_size=header_page.subbuf_size, header_event=header_event)

    @classmethod
    def default(cls, *, long_size: int = 8, subbuf_size: int = 4096, byteorder: str = "little") -> PageLayout:
        """The usual layout for a kernel with this long size (data right after the commit word)."""
        return cls(byteorder=byteorder, commit_size=long_size, data_offset=8 + long_size,
                   subbuf_size=subbuf_size)

    @property
    def data_size(self) -> int:
        return self.subbuf_size - self.data_offset

    @property
    def long_size(self) -> int:
        return self.commit_size

    def decoders(self, formats) -> DecoderSet:
        """A DecoderSet for this kernel's byte order."""
        return DecoderSet(formats, self.byteorder)

    def __repr__(self) -> str:
        return (f"PageLayout({self.byteorder}, long={self.commit_size}, data_offset={self.data_offset}, "
                f"subbuf_size={self.subbuf_size})")


def page_header(layout: PageLayout, page: bytes | memoryview) -> PageHeader:
    """The header of one sub-buffer (raises DecodeError when the page is shorter than its header)."""
    if len(page) < layout.data_offset:
        raise DecodeError(f"sub-buffer of {len(page)} bytes is shorter than its {layout.data_offset}-byte header")
    timestamp = layout.timestamp_struct.unpack_from(page, layout.timestamp_offset)[0]
    commit = layout.commit_struct.unpack_from(page, layout.commit_offset)[0]
    low = commit & 0xFFFFFFFF
    return PageHeader(timestamp, low & COMMIT_SIZE_MASK, bool(low & RB_MISSED_EVENTS),
                      bool(low & RB_MISSED_STORED), commit)


def decode_page(layout: PageLayout, page: bytes | memoryview, cpu: int, decoders: DecoderSet, *,
                index: int | None = None, source: str | None = None) -> list:
    """Decode one sub-buffer into [Lost?, Event | UnknownEvent, ...]. See the module docstring."""
    out: list = []
    page_len = len(page)
    data_offset = layout.data_offset

    cut = ""    # set when the page is shorter than its commit says: that, not corruption, is the cause

    def fail(reason: str, offset: int) -> PageDecodeError:
        if cut:
            reason = cut
        return PageDecodeError(reason, cpu=cpu, index=index, offset=offset, source=source, partial=out)

    if page_len < data_offset:
        raise fail(f"truncated sub-buffer: {page_len} bytes, shorter than its {data_offset}-byte header", 0)
    # Eight zero bytes after the page let the loop read a record word and array[0] in one call even
    # for a 4-byte padding record at the very end; every record is still bounded by `end`.
    buf = bytes(page) + b"\0\0\0\0\0\0\0\0"
    ts = layout.timestamp_struct.unpack_from(buf, layout.timestamp_offset)[0]
    commit = layout.commit_struct.unpack_from(buf, layout.commit_offset)[0] & 0xFFFFFFFF
    size = commit & COMMIT_SIZE_MASK
    if size > layout.subbuf_size - data_offset:
        raise fail(f"commit size {size} exceeds the {layout.subbuf_size - data_offset}-byte data area "
                   f"(commit word {commit:#x})", layout.commit_offset)
    end = data_offset + size
    if end > page_len:
        cut = f"truncated sub-buffer: {page_len} bytes, but its commit says {end}"
        end = page_len
    if commit & RB_MISSED_EVENTS:
        count = -1
        if commit & RB_MISSED_STORED and data_offset + size + layout.commit_size <= page_len:
            count = layout.long_struct.unpack_from(buf, data_offset + size)[0]
        out.append(Lost(cpu, ts, count))

    header = layout.header_event
    little = layout.byteorder == "little"
    type_len_bits = header.type_len_bits
    delta_bits = header.time_delta_bits
    type_mask = (1 << type_len_bits) - 1
    delta_mask = (1 << delta_bits) - 1
    data_max = header.data_max_type_len
    padding = header.padding_type
    time_extend = header.time_extend_type
    time_stamp = header.time_stamp_type
    words = layout.words_struct.unpack_from
    u16 = layout.u16_struct.unpack_from
    cache = decoders.cache
    get_decoder = decoders.decoder
    append = out.append
    pos = data_offset
    try:
        while pos < end:
            if pos + 4 > end:
                raise fail(f"{end - pos} stray bytes at the end of the data", pos)
            word, array0 = words(buf, pos)
            if little:
                type_len = word & type_mask
                delta = word >> type_len_bits
            else:
                type_len = word >> delta_bits
                delta = word & delta_mask
            if 0 < type_len <= data_max:
                start = pos + 4
                length = type_len << 2
                event_id = (array0 & 0xFFFF) if little else (array0 >> 16)
            elif type_len == 0:
                if pos + 8 > end:
                    raise fail("long-form record header cut by the end of the data", pos)
                if array0 < 8:
                    raise fail(f"long-form record length {array0} is too small", pos)
                start = pos + 8
                length = array0 - 4
                event_id = u16(buf, start)[0]
            elif type_len == time_extend:
                if pos + 8 > end:
                    raise fail("time extend cut by the end of the data", pos)
                ts += (array0 << delta_bits) + delta
                pos += 8
                continue
            elif type_len == padding:
                if delta == 0:
                    break       # the rest of the page is unused
                # A discarded event: array[0] is its length minus the 4-byte header. Keep ts.
                if pos + 8 > end or pos + 4 + array0 > end:
                    raise fail(f"discarded-event padding of {array0} bytes runs past the end of the data",
                               pos)
                pos += 4 + (max(array0, 4))
                continue
            elif type_len == time_stamp:
                if pos + 8 > end:
                    raise fail("absolute time stamp cut by the end of the data", pos)
                value = (array0 << delta_bits) + delta
                # Only 59 bits fit: restore the top 5 from the running time stamp, and carry when
                # the low bits wrapped (the kernel's rb_fix_abs_ts()).
                top = ts & 0xF800000000000000
                if top:
                    value |= top
                    if value < ts:
                        value += 1 << 59
                ts = value
                pos += 8
                continue
            else:
                raise fail(f"record type {type_len} is not one this decoder knows", pos)
            next_pos = start + length
            if next_pos > end:
                raise fail(f"record of {length} bytes runs past the end of the data ({end - start} left)",
                           pos)
            ts += delta
            decode = cache.get(event_id)
            if decode is None:
                decode = get_decoder(event_id)
            append(decode(buf, start, length, ts, cpu))
            pos = next_pos
    except RecordTooShort as exc:
        raise fail(f"event id {event_id}: {exc}", pos) from None
    except struct.error as exc:
        raise fail(f"record cannot be read: {exc}", pos) from None
    if cut:
        raise fail(cut, pos)
    return out


def iter_pages(layout: PageLayout, data: bytes | memoryview, cpu: int, decoders: DecoderSet, *,
               source: str | None = None, first_index: int = 0) -> Iterator:
    """Items of consecutive sub-buffers in `data`; good items first, then PageDecodeError on a bad page."""
    view = memoryview(data)
    step = layout.subbuf_size
    for n, begin in enumerate(range(0, len(view), step)):
        page = view[begin:begin + step]
        try:
            items = decode_page(layout, page, cpu, decoders, index=first_index + n, source=source)
        except PageDecodeError as exc:
            yield from exc.partial
            exc.partial = []
            raise
        yield from items
