"""Decode ftrace ring-buffer sub-buffers (the bytes of per_cpu/cpuN/trace_pipe_raw) into events.

Public API (pure: bytes in, objects out; see ring-buffer.md in the project notes):

* ``PageLayout.from_headers(header_page, header_event, byteorder=sys.byteorder)``: the sub-buffer layout
  (time stamp and commit fields, data offset, sub-buffer size, kernel long size, byte order), with its
  struct.Struct objects built once. ``PageLayout.default()`` is a 64-bit, host-byte-order, 4096-byte layout.
* ``decode_page(layout, page, cpu, decoders, *, index=None, source=None) -> list``: one sub-buffer to a
  list of ``Lost`` (first, when the kernel flagged missed events), ``Event`` and ``UnknownEvent`` items
  (from rawtrace.parse.record). A truncated or corrupt page raises ``PageDecodeError`` (a DecodeError)
  whose ``partial`` holds the good items decoded before the problem and whose message names the
  source, CPU, page index and byte offset.
* ``iter_pages(layout, data, cpu, decoders, *, source=None, first_index=0)``: the items of a run of
  sub-buffers (bytes or memoryview of a whole file or read() result); on corruption it yields the good
  items first, then raises PageDecodeError.
* ``iter_page_lists(...)``: the same, one list per sub-buffer. Both take ``errors=LIST``: then a bad page's
  PageDecodeError is appended there and decoding goes on with the next page.
* A record shorter than its format's fixed fields does not stop the page: it comes out as an
  ``UnknownEvent`` with a ``reason``, counted in ``DecoderSet.malformed``.
* ``merge_by_time(streams)``: merge per-CPU streams of item lists into one stream in time-stamp order;
  ``merge_chunks_by_time(streams)`` gives the same sequence a list at a time.
* ``page_header(layout, page) -> PageHeader``: time stamp, data size and missed-events flags of a page.

Time stamps are ints in trace-clock units (rawtrace.parse.record.ts_seconds / format_timestamp convert).
A discarded event (padding with a non-zero delta) is skipped without adding its delta to the time stamp,
as the kernel's own reader does (rb_update_read_stamp() in kernel/trace/ring_buffer.c).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator
from operator import attrgetter
from typing import NamedTuple

from rawtrace.errors import DecodeError
from rawtrace.parse.descriptors import HeaderEvent, HeaderPage
from rawtrace.parse.record import DecoderSet, Lost, RecordTooShort

# Commit word flags, tested on its low 32 bits: the kernel sets them by adding an int constant to a
# long, so on 64-bit kernels the whole word sign-extends (0xffffffffc0000fe0).
RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
COMMIT_SIZE_MASK = (1 << 27) - 1     # libtraceevent's COMMIT_MASK; bits 27..29 are unused

_UNSIGNED_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}

# array typecode of a 4-byte unsigned word on this machine ('I' everywhere Linux runs).
_U32_CODE = next(code for code in "ILH" if array(code).itemsize == 4)
# Zero padding after a page: up to the next word boundary, then two whole words.
_TAIL = [bytes(8 + (-n % 4)) for n in range(4)]


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


class PageHeader(NamedTuple):
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
        "swap",
        "timestamp_offset",
        "timestamp_size",
        "timestamp_struct",
        "u16_struct",
    )

    def __init__(self, *, byteorder: str = sys.byteorder, timestamp_offset: int = 0, timestamp_size: int = 8,
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
        if data_offset % 4:
            problems.append(f"data offset {data_offset} is not 4-byte aligned")
        if subbuf_size <= data_offset:
            problems.append(f"sub-buffer size {subbuf_size} not beyond data offset {data_offset}")
        elif subbuf_size - data_offset > COMMIT_SIZE_MASK:
            # The commit word holds the data size in 27 bits: no kernel has larger sub-buffers.
            problems.append(f"sub-buffer size {subbuf_size} beyond the ring buffer's 27-bit commit size")
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
        self.swap = byteorder != sys.byteorder
        self.timestamp_struct = struct.Struct(prefix + _UNSIGNED_CODES[timestamp_size])
        self.commit_struct = struct.Struct(prefix + _UNSIGNED_CODES[commit_size])
        self.long_struct = self.commit_struct
        self.u16_struct = struct.Struct(prefix + "H")

    @classmethod
    def from_headers(cls, header_page: HeaderPage, header_event: HeaderEvent | None = None,
                     byteorder: str = sys.byteorder) -> PageLayout:
        """The layout described by events/header_page and events/header_event of one kernel/instance."""
        return cls(byteorder=byteorder, timestamp_offset=header_page.timestamp_offset,
                   timestamp_size=header_page.timestamp_size, commit_offset=header_page.commit_offset,
                   commit_size=header_page.commit_size, data_offset=header_page.data_offset,
                   subbuf_size=header_page.subbuf_size, header_event=header_event)

    @classmethod
    def default(cls, *, long_size: int = 8, subbuf_size: int = 4096, byteorder: str = sys.byteorder) -> PageLayout:
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


def _fail(reason: str, offset: int, cpu: int, index: int | None, source: str | None, partial: list,
          cut: str) -> PageDecodeError:
    # A page shorter than its commit says is truncated: that, not corruption, is then the cause.
    return PageDecodeError(cut or reason, cpu=cpu, index=index, offset=offset, source=source, partial=partial)


def _other_record(layout: PageLayout, buf: bytes, words: array, i: int, end_i: int, type_len: int,
                  delta: int, ts: int, cpu: int, decoders: DecoderSet, append, index: int | None,
                  source: str | None, out: list, cut: str) -> tuple[int, int]:
    """Every record but a short-form data record: returns (next word index, time stamp).

    An end-of-page padding returns end_i so that the page loop stops."""
    header = layout.header_event
    if i + 2 > end_i:
        if type_len == header.padding_type and delta == 0:
            return end_i, ts                 # a bare 4-byte end-of-page marker
        raise _fail(f"record of type {type_len} cut by the end of the data", i << 2, cpu, index, source, out, cut)
    array0 = words[i + 1]
    if type_len == 0:
        # Long form: array[0] is the payload length plus its own 4 bytes.
        if array0 < 8:
            raise _fail(f"long-form record length {array0} is too small", i << 2, cpu, index, source, out, cut)
        next_i = i + 1 + ((array0 + 3) >> 2)
        if next_i > end_i:
            raise _fail(f"record of {array0 - 4} bytes runs past the end of the data "
                        f"({(end_i - i - 2) << 2} left)", i << 2, cpu, index, source, out, cut)
        ts += delta
        start = (i + 2) << 2
        event_id = layout.u16_struct.unpack_from(buf, start)[0]
        try:
            append(decoders.decoder(event_id)(buf, start, array0 - 4, ts, cpu))
        except RecordTooShort as exc:
            append(decoders.misfit(event_id, buf, start, array0 - 4, ts, cpu, str(exc)))
        return next_i, ts
    if type_len == header.time_extend_type:
        return i + 2, ts + (array0 << header.time_delta_bits) + delta
    if type_len == header.padding_type:
        if delta == 0:
            return end_i, ts                 # the rest of the page is unused
        # A discarded event: array[0] is its length minus the 4-byte header. Keep ts (the kernel's
        # reader ignores a padding's delta too).
        next_i = i + 1 + ((max(array0, 4) + 3) >> 2)
        if next_i > end_i:
            raise _fail(f"discarded-event padding of {array0} bytes runs past the end of the data",
                        i << 2, cpu, index, source, out, cut)
        return next_i, ts
    if type_len == header.time_stamp_type:
        value = (array0 << header.time_delta_bits) + delta
        # Only 59 bits fit: restore the top 5 from the running time stamp, and carry when the low
        # bits wrapped (the kernel's rb_fix_abs_ts()).
        top = ts & 0xF800000000000000
        if top:
            value |= top
            if value < ts:
                value += 1 << 59
        return i + 2, value
    raise _fail(f"record type {type_len} is not one this decoder knows", i << 2, cpu, index, source, out, cut)


def decode_page(layout: PageLayout, page: bytes | memoryview, cpu: int, decoders: DecoderSet, *,
                index: int | None = None, source: str | None = None) -> list:
    """Decode one sub-buffer into [Lost?, Event | UnknownEvent, ...]. See the module docstring."""
    out: list = []
    page_len = len(page)
    data_offset = layout.data_offset
    cut = ""
    if page_len < data_offset:
        raise _fail(f"truncated sub-buffer: {page_len} bytes, shorter than its {data_offset}-byte header", 0,
                    cpu, index, source, out, cut)
    # The records are 4-byte aligned, so the page is read as an array of u32 words (indexing one is
    # much cheaper than a struct call). Zero words after the page let the loop look at array[0] of a
    # 4-byte padding record at the very end; every record is still bounded by `end`.
    buf = bytes(page) + _TAIL[page_len & 3]
    words = array(_U32_CODE)
    words.frombytes(buf)
    if layout.swap:
        words.byteswap()
    ts = layout.timestamp_struct.unpack_from(buf, layout.timestamp_offset)[0]
    commit = layout.commit_struct.unpack_from(buf, layout.commit_offset)[0] & 0xFFFFFFFF
    size = commit & COMMIT_SIZE_MASK
    if size > layout.subbuf_size - data_offset:
        raise _fail(f"commit size {size} exceeds the {layout.subbuf_size - data_offset}-byte data area "
                    f"(commit word {commit:#x})", layout.commit_offset, cpu, index, source, out, cut)
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
    type_len_bits = header.type_len_bits
    delta_bits = header.time_delta_bits
    type_mask = (1 << type_len_bits) - 1
    delta_mask = (1 << delta_bits) - 1
    data_max = header.data_max_type_len
    cache_get = decoders.cache.get
    get_decoder = decoders.decoder
    append = out.append
    i = data_offset >> 2                 # position in words
    end_i = end >> 2
    event_id = -1
    # The hot loop handles short-form data records, nearly all records; the others go through
    # _other_record(). It is written out once per byte order so that the bitfield split (type_len in
    # the low bits on little-endian kernels, in the top bits on big-endian ones) costs no branch.
    # common_type is the first u16 of the payload: the low half of array[0] in little-endian, the
    # high half in big-endian.
    little = layout.byteorder == "little"
    next_i = i
    while True:
        try:
            if little:
                while i < end_i:
                    word = words[i]
                    type_len = word & type_mask
                    if 0 < type_len <= data_max:
                        next_i = i + 1 + type_len
                        if next_i > end_i:
                            raise _fail(f"record of {type_len << 2} bytes runs past the end of the data "
                                        f"({(end_i - i - 1) << 2} left)", i << 2, cpu, index, source, out, cut)
                        ts += word >> type_len_bits
                        event_id = words[i + 1] & 0xFFFF
                        decode = cache_get(event_id)
                        if decode is None:
                            decode = get_decoder(event_id)
                        append(decode(buf, (i + 1) << 2, type_len << 2, ts, cpu))
                        i = next_i
                    else:
                        i, ts = _other_record(layout, buf, words, i, end_i, type_len, word >> type_len_bits, ts,
                                              cpu, decoders, append, index, source, out, cut)
            else:
                while i < end_i:
                    word = words[i]
                    type_len = word >> delta_bits
                    if 0 < type_len <= data_max:
                        next_i = i + 1 + type_len
                        if next_i > end_i:
                            raise _fail(f"record of {type_len << 2} bytes runs past the end of the data "
                                        f"({(end_i - i - 1) << 2} left)", i << 2, cpu, index, source, out, cut)
                        ts += word & delta_mask
                        event_id = words[i + 1] >> 16
                        decode = cache_get(event_id)
                        if decode is None:
                            decode = get_decoder(event_id)
                        append(decode(buf, (i + 1) << 2, type_len << 2, ts, cpu))
                        i = next_i
                    else:
                        i, ts = _other_record(layout, buf, words, i, end_i, type_len, word & delta_mask, ts,
                                              cpu, decoders, append, index, source, out, cut)
            break
        except RecordTooShort as exc:
            # Only a short-form record's decoder gets here (_other_record handles long-form ones):
            # `i` is that record, `next_i` the one after. One record that does not fit its format
            # is shown undecoded and counted; the page goes on.
            append(decoders.misfit(event_id, buf, (i + 1) << 2, (next_i - i - 1) << 2, ts, cpu, str(exc)))
            i = next_i
        except struct.error as exc:
            raise _fail(f"record cannot be read: {exc}", i << 2, cpu, index, source, out, cut) from None
    if cut:
        raise _fail(cut, i << 2, cpu, index, source, out, cut)
    if end & 3 and i >= end_i:
        raise _fail(f"{end & 3} stray bytes at the end of the data", end_i << 2, cpu, index, source, out, cut)
    return out


def iter_pages(layout: PageLayout, data: bytes | memoryview, cpu: int, decoders: DecoderSet, *,
               source: str | None = None, first_index: int = 0, errors: list | None = None) -> Iterator:
    """Items of consecutive sub-buffers in `data`; good items first, then PageDecodeError on a bad page.

    With `errors` (a list), a bad page's error is appended to it instead, and decoding goes on with
    the next page: one damaged page does not end the file."""
    view = memoryview(data)
    step = layout.subbuf_size
    for n, begin in enumerate(range(0, len(view), step)):
        page = view[begin:begin + step]
        try:
            items = decode_page(layout, page, cpu, decoders, index=first_index + n, source=source)
        except PageDecodeError as exc:
            yield from exc.partial
            exc.partial = []
            if errors is None:
                raise
            errors.append(exc)
            continue
        yield from items


def iter_page_lists(layout: PageLayout, data: bytes | memoryview, cpu: int, decoders: DecoderSet, *,
                    source: str | None = None, first_index: int = 0,
                    errors: list | None = None) -> Iterator[list]:
    """Like iter_pages, one list per sub-buffer (the good part of a bad page last, then the error;
    with `errors`, the error is appended there and the next page follows)."""
    view = memoryview(data)
    step = layout.subbuf_size
    for n, begin in enumerate(range(0, len(view), step)):
        try:
            items = decode_page(layout, view[begin:begin + step], cpu, decoders, index=first_index + n,
                                source=source)
        except PageDecodeError as exc:
            if exc.partial:
                yield exc.partial
            exc.partial = []
            if errors is None:
                raise
            errors.append(exc)
            continue
        if items:
            yield items


_ts = attrgetter("ts")      # C-level key for the merge's sort and bisect


def merge_by_time(streams: list[Iterator[list]]) -> Iterator:
    """Merge per-CPU streams of item lists (each stream in time order) into one time-ordered stream."""
    for chunk in merge_chunks_by_time(streams):
        yield from chunk


def merge_chunks_by_time(streams: list[Iterator[list]]) -> Iterator[list]:
    """merge_by_time, a list at a time (consecutive lists continue one time-ordered sequence).

    Works a chunk at a time: everything up to the earliest "last time stamp" among the streams' current
    chunks is safe to emit, and is ordered with one sorted() call (C-level merge of presorted runs)."""
    from bisect import bisect_right
    pending: list[list] = [[] for _ in streams]
    live = list(range(len(streams)))
    while True:
        for n in list(live):
            if not pending[n]:
                chunk = next(streams[n], None)
                if chunk is None:
                    live.remove(n)
                else:
                    pending[n] = chunk
        holders = [n for n in range(len(streams)) if pending[n]]
        if not holders:
            return
        horizon_stream = min(holders, key=lambda n: pending[n][-1].ts)
        horizon = pending[horizon_stream][-1].ts
        if len(holders) == 1:
            yield pending[horizon_stream]
            pending[horizon_stream] = []
            continue
        ready = []
        for n in holders:
            items = pending[n]
            # The stream that sets the horizon gives all it has, so each round makes progress even if
            # a stream's time stamps are not monotonic.
            cut = len(items) if n == horizon_stream else bisect_right(items, horizon, key=_ts)
            if cut:
                ready.extend(items[:cut])
                pending[n] = items[cut:]
        ready.sort(key=_ts)
        yield ready
