"""A minimal reader of trace-cmd trace.dat files (v6, v7; uncompressed, zlib or zstd): headers, formats, raw pages.

Public API:

* ``read_tracedat(path_or_bytes) -> TraceDat``: parses the file's structure (not the pages).
* ``TraceDat``: ``version``, ``byteorder``, ``long_size`` (user space), ``page_size``, ``compression``,
  ``header_page`` / ``header_event`` (texts), ``ftrace_formats`` (texts), ``event_formats``
  ((system, text) pairs), ``cmdlines`` (saved_cmdlines text), ``options`` ((id, bytes) pairs),
  ``buffers`` (``Buffer`` per instance: name, clock, page_size, cpus {cpu: (offset, size)}),
  ``buffer(name=None)`` (the named one, else the first with data), ``cpu_data(buffer, cpu) -> bytes``
  (that CPU's concatenated raw sub-buffers, decompressed), ``page_layout(buffer)`` and ``formats()``
  (id -> EventFormat; formats that do not parse are left out and listed in ``format_errors``), the last
  two parsed with rawtrace.parse.format.

zstd sections are decompressed with the `zstd` program (the Python standard library has no zstd before
3.14 and rawtrace has no binary dependencies); zlib with the standard library. Decompression is bounded:
a chunk may not expand beyond the size it declares, nor any section beyond MAX_RATIO times its
compressed size (real recordings stay far below: about 50 at most, 10-20 on average), so a hostile file cannot make
rawtrace use gigabytes; either raises DecodeError.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from rawtrace.asciinum import ascii_int
from rawtrace.errors import DecodeError, NotSupported

MAGIC = b"\x17\x08\x44tracing"

# Option and section ids (trace-cmd's enum; the same numbers in v6 and v7).
OPTION_DONE = 0
OPTION_CPUSTAT = 2
OPTION_BUFFER = 3
OPTION_TRACECLOCK = 4
OPTION_UNAME = 5
OPTION_CPUCOUNT = 8
OPTION_VERSION = 9
OPTION_TRACEID = 11
OPTION_HEADER_INFO = 16
OPTION_FTRACE_EVENTS = 17
OPTION_EVENT_FORMATS = 18
OPTION_KALLSYMS = 19
OPTION_PRINTK = 20
OPTION_CMDLINES = 21

SECTION_COMPRESSED = 1

# Largest expansion believed of a compressed section as a whole: trace-cmd compresses ring-buffer pages
# in chunks of 10 pages (PAGES_IN_CHUNK in trace-output.c), which reach about 50:1 (nearly empty pages of
# an idle CPU); zlib cannot exceed about 1032:1 at all, a zstd frame of zeros 30000:1 and more.
MAX_RATIO = 512
# ... plus this much whatever the compressed size (small sections, headers).
MIN_ALLOWANCE = 1 << 20


@dataclass(frozen=True, slots=True)
class Buffer:
    """One instance's per-CPU data: cpus maps cpu -> (file offset, size in the file)."""

    name: str
    clock: str
    page_size: int
    cpus: dict = field(default_factory=dict)


@dataclass(slots=True)
class TraceDat:
    source: str
    version: int
    byteorder: str
    long_size: int
    page_size: int
    compression: str
    header_page: str = ""
    header_event: str = ""
    ftrace_formats: list = field(default_factory=list)
    event_formats: list = field(default_factory=list)
    cmdlines: str = ""
    options: list = field(default_factory=list)
    buffers: list = field(default_factory=list)
    clock: str = "local"
    format_errors: list = field(default_factory=list)
    # v6: option id (OPTION_KALLSYMS, OPTION_PRINTK) -> (offset, size) of that text in the file, kept by
    # the reader as it passes them (read only when asked: kallsyms is megabytes).
    text_spans: dict = field(default_factory=dict)
    _data: bytes = field(default=b"", repr=False)

    def buffer(self, name: str | None = None) -> Buffer:
        """The instance called `name`; by default the first one holding data."""
        for buf in self.buffers:
            if name is not None and buf.name == name:
                return buf
            if name is None and any(size for _off, size in buf.cpus.values()):
                return buf
        raise DecodeError(f"{self.source}: no buffer {name!r} with data "
                          f"(buffers: {', '.join(repr(b.name) for b in self.buffers) or 'none'})")

    def page_layout(self, buffer: Buffer | None = None):
        """The PageLayout of the file's sub-buffers. A v7 buffer's own page size wins over the size in
        the stored header_page (which is the top instance's; an instance may use larger sub-buffers)."""
        from rawtrace.parse.format import parse_header_event, parse_header_page
        from rawtrace.parse.ringbuf import PageLayout
        header_page = parse_header_page(self.header_page, source=f"{self.source} (header_page)")
        header_event = parse_header_event(self.header_event, source=f"{self.source} (header_event)")
        subbuf_size = buffer.page_size if buffer is not None and buffer.page_size else header_page.subbuf_size
        return PageLayout(byteorder=self.byteorder, timestamp_offset=header_page.timestamp_offset,
                          timestamp_size=header_page.timestamp_size, commit_offset=header_page.commit_offset,
                          commit_size=header_page.commit_size, data_offset=header_page.data_offset,
                          subbuf_size=subbuf_size, header_event=header_event)

    def formats(self) -> dict:
        """Event ID -> EventFormat for every format the file carries (ftrace's and the others).

        A format that does not parse is left out (its records then decode as unknown) and its error
        message kept in `format_errors`: one bad format must not make the whole file unreadable."""
        from rawtrace.errors import ParseError
        from rawtrace.parse.format import parse_format, parse_header_page
        long_size = parse_header_page(self.header_page, source=f"{self.source} (header_page)").commit_size
        found = {}
        self.format_errors = []
        for system, text in [("ftrace", t) for t in self.ftrace_formats] + list(self.event_formats):
            try:
                fmt = parse_format(text, system=system, source=f"{self.source} ({system} format)",
                                   long_size=long_size)
            except ParseError as exc:
                self.format_errors.append(exc.message)
                continue
            found[fmt.id] = fmt
        return found

    def saved_text(self, opt_id: int) -> str:
        """The kallsyms (OPTION_KALLSYMS) or printk_formats (OPTION_PRINTK) text the file carries, or ""."""
        if self.version >= 7:
            offset = next((struct.unpack(("<" if self.byteorder == "little" else ">") + "Q", payload[:8])[0]
                           for oid, payload in self.options if oid == opt_id and len(payload) >= 8), None)
            if offset is None:
                return ""
            body = _section(self, offset, opt_id)
            size = _Reader(body, self.byteorder, self.source).u32() if len(body) >= 4 else 0
            return body[4:4 + size].decode("utf-8", "replace")
        start, size = self.text_spans.get(opt_id, (0, 0))
        return self._data[start:start + size].decode("utf-8", "replace")

    def cpu_data(self, buffer: Buffer, cpu: int) -> bytes:
        """The raw sub-buffers of one CPU, decompressed: a multiple of buffer.page_size bytes."""
        offset, size = buffer.cpus[cpu]
        if size == 0:
            return b""
        _check_range(self, offset, size, f"cpu {cpu} data")
        if self.version < 7 or self.compression == "none":
            return self._data[offset:offset + size]
        # Compressed flyrecord data: u32 chunk count, then {u32 compressed, u32 uncompressed, bytes}.
        reader = _Reader(self._data, self.byteorder, self.source, offset)
        chunks = reader.u32()
        if chunks > size // 8:
            raise DecodeError(f"{self.source}: cpu {cpu} data declares {chunks} compressed chunks in {size} bytes")
        blobs, sizes = [], []
        for _ in range(chunks):
            csize, usize = reader.u32(), reader.u32()
            blobs.append(reader.take(csize))
            sizes.append(usize)
        # trace-cmd's size leaves out the 4-byte chunk count.
        if reader.pos > offset + 4 + size:
            raise DecodeError(f"{self.source}: cpu {cpu} compressed chunks run past the {size} bytes the "
                              "buffer option gives them")
        return _decompress(self.compression, blobs, sizes, self.source)


def _check_range(dat: TraceDat, offset: int, size: int, what: str) -> None:
    if offset < 0 or offset + size > len(dat._data):
        raise DecodeError(f"{dat.source}: {what} at {offset:#x}+{size} lies beyond the end of the file "
                          f"({len(dat._data)} bytes): truncated?")


class _Reader:
    """Sequential reads of file-endian numbers and strings, with one truncation error."""

    def __init__(self, data: bytes, byteorder: str, source: str, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.source = source
        prefix = "<" if byteorder == "little" else ">"
        self._u16 = struct.Struct(prefix + "H")
        self._u32 = struct.Struct(prefix + "I")
        self._u64 = struct.Struct(prefix + "Q")

    def _unpack(self, st: struct.Struct) -> int:
        if self.pos + st.size > len(self.data):
            raise DecodeError(f"{self.source}: file ends at {len(self.data):#x} inside a header field "
                              f"(truncated?)")
        value = st.unpack_from(self.data, self.pos)[0]
        self.pos += st.size
        return value

    def u16(self) -> int:
        return self._unpack(self._u16)

    def u32(self) -> int:
        return self._unpack(self._u32)

    def u64(self) -> int:
        return self._unpack(self._u64)

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise DecodeError(f"{self.source}: {size} bytes wanted at {self.pos:#x} but the file ends at "
                              f"{len(self.data):#x} (truncated?)")
        out = self.data[self.pos:self.pos + size]
        self.pos += size
        return out

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise DecodeError(f"{self.source}: unterminated string at {self.pos:#x}")
        text = self.data[self.pos:end].decode("utf-8", "replace")
        self.pos = end + 1
        return text

    def text(self, size: int) -> str:
        return self.take(size).decode("utf-8", "replace")


def decompression_limit(compressed: int) -> int:
    """The most bytes `compressed` bytes of a trace.dat section may expand to (see MAX_RATIO)."""
    return MIN_ALLOWANCE + MAX_RATIO * compressed


def _decompress(method: str, blobs: list, sizes: list, source: str) -> bytes:
    expected = sum(sizes)
    compressed = sum(len(blob) for blob in blobs)
    limit = decompression_limit(compressed)
    if expected > limit:
        raise DecodeError(f"{source}: a compressed section of {compressed} bytes declares {expected} bytes "
                          f"uncompressed, more than rawtrace believes ({limit}): damaged or hostile file")
    if method == "zlib":
        out = _zlib(blobs, sizes, source)
    elif method == "zstd":
        out = _zstd(blobs, expected, source)
    else:
        raise NotSupported(f"{source}: unknown compression {method!r}")
    if len(out) != expected:
        raise DecodeError(f"{source}: decompressed {len(out)} bytes, the file said {expected}")
    return out


def _zlib(blobs: list, sizes: list, source: str) -> bytes:
    import zlib
    parts = []
    for blob, size in zip(blobs, sizes):
        # max_length: a chunk never produces more than it declares (plus one byte to notice).
        engine = zlib.decompressobj()
        try:
            part = engine.decompress(blob, size + 1)
        except zlib.error as exc:
            raise DecodeError(f"{source}: zlib could not decompress a section: {exc}") from None
        if len(part) > size:
            raise DecodeError(f"{source}: a zlib chunk expands beyond the {size} bytes it declares")
        parts.append(part)
    return b"".join(parts)


def _zstd(blobs: list, expected: int, source: str) -> bytes:
    import shutil
    import subprocess
    import threading
    program = shutil.which("zstd")
    if program is None:
        raise NotSupported(f"{source} is zstd-compressed and the `zstd` program is not installed",
                           hint="install zstd, or convert the file: trace-cmd convert --compression none")
    # Concatenated zstd frames decompress to the concatenation of their contents. The output is read
    # up to what the file declares (plus one byte to notice more): a frame that expands further ends
    # the program instead of filling memory.
    proc = subprocess.Popen([program, "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    def feed() -> None:
        try:
            for blob in blobs:
                proc.stdin.write(blob)
        except (BrokenPipeError, ValueError, OSError):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass
    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    # Read straight into one buffer of the declared size (+1 byte to notice more): no chunk copies.
    out = bytearray(expected + 1)
    view = memoryview(out)
    got = 0
    try:
        while got <= expected:
            count = proc.stdout.readinto(view[got:got + (1 << 22)])
            if not count:
                break
            got += count
    finally:
        view.release()
        del out[got:]
        over = got > expected
        if over:
            proc.kill()
        proc.stdout.close()
        errors = proc.stderr.read(4096) if not over else b""
        proc.stderr.close()
        proc.wait()
        writer.join()
    if over:
        raise DecodeError(f"{source}: a zstd section expands beyond the {expected} bytes it declares")
    if proc.returncode != 0:
        raise DecodeError(f"{source}: zstd could not decompress a section: "
                          f"{errors.decode(errors='replace').strip()}")
    return out


def read_tracedat(path) -> TraceDat:
    """Parse a trace.dat file's headers, formats, options and buffer locations.

    `path` is a file name (read with rawtrace.inputs.read_input: mapped, FIFOs and devices refused) or
    the file's bytes (bytes, bytearray, mmap or memoryview)."""
    if isinstance(path, (str, os.PathLike)):
        from rawtrace.inputs import read_input
        source = os.fspath(path)
        data = read_input(source)
    else:
        data, source = path, "<trace.dat>"
        if isinstance(data, memoryview):
            data = data.obj if data.contiguous and data.nbytes == len(data.obj) else bytes(data)
    if data[:len(MAGIC)] != MAGIC:
        raise DecodeError(f"{source}: not a trace-cmd trace.dat file (bad magic)")
    reader = _Reader(data, "little", source, len(MAGIC))
    version_text = reader.cstring()
    version = ascii_int(version_text, max_digits=9)
    if version is None:
        raise DecodeError(f"{source}: bad version string {version_text!r}")
    if version not in (6, 7):
        raise NotSupported(f"{source}: trace.dat version {version} (only 6 and 7 are read)")
    endian = reader.take(1)[0]
    long_size = reader.take(1)[0]
    byteorder = "big" if endian else "little"
    reader = _Reader(data, byteorder, source, reader.pos)
    page_size = reader.u32()
    dat = TraceDat(source, version, byteorder, long_size, page_size, "none", _data=data)
    if version == 6:
        _read_v6(dat, reader)
    else:
        _read_v7(dat, reader)
    for opt_id, payload in dat.options:
        if opt_id == OPTION_TRACECLOCK:
            text = payload.split(b"\0", 1)[0].decode("ascii", "replace")
            start, end = text.find("["), text.find("]", text.find("[") + 1)
            if 0 <= start < end:
                dat.clock = text[start + 1:end]
    for buf in dat.buffers:
        for cpu, (offset, size) in buf.cpus.items():
            _check_range(dat, offset, size, f"buffer {buf.name!r} cpu {cpu} data")
    return dat


def _read_header_info(dat: TraceDat, reader: _Reader) -> None:
    for magic, attr in ((b"header_page\0", "header_page"), (b"header_event\0", "header_event")):
        if reader.take(len(magic)) != magic:
            raise DecodeError(f"{dat.source}: missing {magic[:-1].decode()} at {reader.pos - len(magic):#x}")
        setattr(dat, attr, reader.text(reader.u64()))


def _read_ftrace_formats(dat: TraceDat, reader: _Reader) -> None:
    for _ in range(reader.u32()):
        dat.ftrace_formats.append(reader.text(reader.u64()))


def _read_event_formats(dat: TraceDat, reader: _Reader) -> None:
    for _ in range(reader.u32()):
        system = reader.cstring()
        for _ in range(reader.u32()):
            dat.event_formats.append((system, reader.text(reader.u64())))


def _read_v6(dat: TraceDat, reader: _Reader) -> None:
    _read_header_info(dat, reader)
    _read_ftrace_formats(dat, reader)
    _read_event_formats(dat, reader)
    for opt_id in (OPTION_KALLSYMS, OPTION_PRINTK):
        size = reader.u32()
        dat.text_spans[opt_id] = (reader.pos, size)
        reader.take(size)
    dat.cmdlines = reader.text(reader.u64())
    ncpus = reader.u32()
    top = Buffer("", "local", dat.page_size)
    while True:
        tag = reader.take(10)
        if tag == b"options  \0":
            while True:
                opt_id = reader.u16()
                if opt_id == OPTION_DONE:
                    break
                payload = reader.take(reader.u32())
                dat.options.append((opt_id, payload))
                if opt_id == OPTION_BUFFER:
                    sub = _Reader(payload, dat.byteorder, dat.source)
                    offset = sub.u64()
                    name = sub.cstring()
                    at = _Reader(dat._data, dat.byteorder, dat.source, offset)
                    if at.take(10) != b"flyrecord\0":
                        raise DecodeError(f"{dat.source}: buffer {name!r} has no flyrecord at {offset:#x}")
                    cpus = {cpu: (at.u64(), at.u64()) for cpu in range(ncpus)}
                    dat.buffers.append(Buffer(name, "local", dat.page_size, cpus))
            continue
        if tag == b"flyrecord\0":
            for cpu in range(ncpus):
                top.cpus[cpu] = (reader.u64(), reader.u64())
            break
        if tag == b"latency  \0":
            break
        raise DecodeError(f"{dat.source}: unknown tag {tag!r} at {reader.pos - 10:#x}")
    dat.buffers.insert(0, top)


def _section(dat: TraceDat, offset: int, want_id: int) -> bytes:
    """The (decompressed) content of the section at `offset`, checking its id."""
    reader = _Reader(dat._data, dat.byteorder, dat.source, offset)
    section_id = reader.u16()
    flags = reader.u16()
    reader.u32()                           # description string id
    size = reader.u64()
    if section_id != want_id:
        raise DecodeError(f"{dat.source}: section at {offset:#x} has id {section_id}, expected {want_id}")
    if flags & SECTION_COMPRESSED:
        csize, usize = reader.u32(), reader.u32()
        return _decompress(dat.compression, [reader.take(csize)], [usize], dat.source)
    return reader.take(size)


def _read_v7(dat: TraceDat, reader: _Reader) -> None:
    dat.compression = reader.cstring()
    reader.cstring()                       # compression library version
    next_options = reader.u64()
    sections: dict[int, int] = {}
    seen = set()
    while next_options and next_options not in seen:
        seen.add(next_options)
        content = _section(dat, next_options, OPTION_DONE)
        sub = _Reader(content, dat.byteorder, dat.source)
        next_options = 0
        while sub.pos < len(content):
            opt_id = sub.u16()
            payload = sub.take(sub.u32())
            if opt_id == OPTION_DONE:
                next_options = _Reader(payload, dat.byteorder, dat.source).u64()
                break
            dat.options.append((opt_id, payload))
            if OPTION_HEADER_INFO <= opt_id <= OPTION_CMDLINES:
                sections[opt_id] = _Reader(payload, dat.byteorder, dat.source).u64()
            elif opt_id == OPTION_BUFFER:
                dat.buffers.append(_buffer_v7(dat, payload))
    if OPTION_HEADER_INFO not in sections:
        raise DecodeError(f"{dat.source}: no header_page/header_event section")
    _read_header_info(dat, _Reader(_section(dat, sections[OPTION_HEADER_INFO], OPTION_HEADER_INFO),
                                   dat.byteorder, dat.source))
    if OPTION_FTRACE_EVENTS in sections:
        _read_ftrace_formats(dat, _Reader(_section(dat, sections[OPTION_FTRACE_EVENTS], OPTION_FTRACE_EVENTS),
                                          dat.byteorder, dat.source))
    if OPTION_EVENT_FORMATS in sections:
        _read_event_formats(dat, _Reader(_section(dat, sections[OPTION_EVENT_FORMATS], OPTION_EVENT_FORMATS),
                                         dat.byteorder, dat.source))
    if OPTION_CMDLINES in sections:
        sub = _Reader(_section(dat, sections[OPTION_CMDLINES], OPTION_CMDLINES), dat.byteorder, dat.source)
        dat.cmdlines = sub.text(sub.u64())


def _buffer_v7(dat: TraceDat, payload: bytes) -> Buffer:
    sub = _Reader(payload, dat.byteorder, dat.source)
    sub.u64()                              # offset of the buffer section
    name = sub.cstring()
    clock = sub.cstring()
    page_size = sub.u32()
    cpus = {}
    for _ in range(sub.u32()):
        cpu = sub.u32()
        cpus[cpu] = (sub.u64(), sub.u64())
    return Buffer(name, clock, page_size, cpus)
