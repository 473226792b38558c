"""Write trace-cmd trace.dat files (version 6, or 7 uncompressed) from tracefs texts and raw per-CPU sub-buffers.

Public API:

* ``TraceDatContent``: what goes in: header_page / header_event texts, ftrace and event format texts, kallsyms,
  printk_formats and saved_cmdlines texts, the trace clock, per-CPU stats texts, uname, and ``cpu_data``
  {cpu: bytes | path of a file holding that CPU's raw sub-buffers, exactly as read from trace_pipe_raw}.
* ``write_tracedat(path, content, version=None, compression="none")``: writes the file. The default
  version is 6 (every trace-cmd since 2.x and KernelShark read it; no sections, no compression); 7 is
  chosen when the sub-buffer size differs from the page size, which only v7's buffer option can record
  (rawtrace reads that; trace-cmd 3.1.6 does not: it walks the data in the header's page size, so a
  recorder should rather give page_size = the sub-buffer size, which every version reads), or when
  compressing: ``compression="zstd"`` (v7 only) compresses the sections and the pages in chunks
  as trace-cmd does, with the `zstd` program (the standard library has no zstd before Python 3.14).
* ``extra_sections(dat) -> (kallsyms, printk_formats)``: the two texts rawtrace.parse.tracedat does not keep,
  read from a parsed TraceDat (for %pS symbols and trace_printk formats).

Pages are copied byte for byte: a page whose commit word says events were lost keeps saying so, and
`trace-cmd report` shows those losses as the kernel recorded them.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field

from rawtrace.errors import DecodeError, NotSupported, UsageError
from rawtrace.output import replacing_file
from rawtrace.parse.tracedat import (
    MAGIC,
    OPTION_BUFFER,
    OPTION_CMDLINES,
    OPTION_CPUCOUNT,
    OPTION_CPUSTAT,
    OPTION_DONE,
    OPTION_EVENT_FORMATS,
    OPTION_FTRACE_EVENTS,
    OPTION_HEADER_INFO,
    OPTION_KALLSYMS,
    OPTION_PRINTK,
    OPTION_TRACECLOCK,
    OPTION_TRACEID,
    OPTION_UNAME,
    OPTION_VERSION,
    SECTION_COMPRESSED,
)

_COPY_CHUNK = 1 << 20
CHUNK_PAGES = 10            # pages per compressed chunk, as trace-cmd writes them (PAGES_IN_CHUNK)


class _Zstd:
    """zstd through the `zstd` program: many blobs compressed by one run (one file each)."""

    def __init__(self) -> None:
        self.program = shutil.which("zstd")
        if self.program is None:
            raise NotSupported("writing a zstd-compressed trace.dat needs the `zstd` program",
                               hint="install zstd, or record uncompressed (the default)")
        found = subprocess.run([self.program, "--version"], capture_output=True, text=True, check=False)
        m = re.search(r"v(\d+\.\d+\.\d+)", found.stdout)
        self.version = m.group(1) if m else ""

    def compress(self, blobs: list[bytes]) -> list[bytes]:
        if not blobs:
            return []
        with tempfile.TemporaryDirectory(prefix="rawtrace-zstd-") as tmp:
            names = []
            for i, blob in enumerate(blobs):
                name = os.path.join(tmp, str(i))
                with open(name, "wb") as f:
                    f.write(blob)
                names.append(name)
            done = subprocess.run([self.program, "-q", "-f", "-3", *names], capture_output=True, check=False)
            if done.returncode != 0:
                raise DecodeError(f"zstd failed: {done.stderr.decode(errors='replace').strip()}")
            out = []
            for name in names:
                with open(name + ".zst", "rb") as f:
                    out.append(f.read())
            return out


@dataclass
class TraceDatContent:
    header_page: str
    header_event: str
    page_size: int = 4096                      # the traced machine's page size (the file header)
    subbuf_size: int | None = None             # the ring buffer's sub-buffer size; None = page_size
    ftrace_formats: list = field(default_factory=list)      # texts of events/ftrace/*/format
    event_formats: list = field(default_factory=list)       # (system, format text) pairs
    kallsyms: str = ""
    printk_formats: str = ""
    cmdlines: str = ""                         # saved_cmdlines text: "<pid> <comm>\n" lines
    clock: str = "local"                       # the trace clock used (bracketed in the TRACECLOCK option)
    clocks_text: str | None = None             # the whole trace_clock file text, if known
    cpu_stats: dict = field(default_factory=dict)           # cpu -> per_cpu/cpuN/stats text
    cpu_data: dict = field(default_factory=dict)            # cpu -> bytes | os.PathLike
    byteorder: str = "little"
    long_size: int = 8                         # user-space long size of the traced machine
    uname: str | None = None
    version_text: str = "rawtrace"
    trace_id: int | None = None
    cpu_count: int | None = None               # CPUs of the machine (default: highest CPU with a slot + 1)

    @property
    def buffer_page_size(self) -> int:
        return self.subbuf_size or self.page_size


class _Out:
    """File-endian packing and an output position."""

    def __init__(self, f, byteorder: str) -> None:
        self.f = f
        p = "<" if byteorder == "little" else ">"
        self.u16 = struct.Struct(p + "H").pack
        self.u32 = struct.Struct(p + "I").pack
        self.u64 = struct.Struct(p + "Q").pack

    def write(self, data: bytes) -> None:
        self.f.write(data)

    def tell(self) -> int:
        return self.f.tell()

    def pad_to(self, alignment: int) -> None:
        gap = -self.tell() % alignment
        if gap:
            self.f.write(bytes(gap))


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _data_size(data) -> int:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return len(data)
    return os.path.getsize(data)


def _copy_data(out: _Out, data) -> None:
    if isinstance(data, (bytes, bytearray, memoryview)):
        out.write(bytes(data))
        return
    with open(data, "rb") as src:
        shutil.copyfileobj(src, out.f, _COPY_CHUNK)


def _header_info(out: _Out, content: TraceDatContent) -> bytes:
    hp, he = _text(content.header_page), _text(content.header_event)
    return b"header_page\0" + out.u64(len(hp)) + hp + b"header_event\0" + out.u64(len(he)) + he


def _ftrace_events(out: _Out, content: TraceDatContent) -> bytes:
    parts = [out.u32(len(content.ftrace_formats))]
    for text in content.ftrace_formats:
        raw = _text(text)
        parts += [out.u64(len(raw)), raw]
    return b"".join(parts)


def _event_formats(out: _Out, content: TraceDatContent) -> bytes:
    systems: dict[str, list[str]] = {}
    for system, text in content.event_formats:
        if system == "ftrace":
            continue                           # ftrace formats have their own part
        systems.setdefault(system, []).append(text)
    parts = [out.u32(len(systems))]
    for system, texts in systems.items():
        parts += [_text(system) + b"\0", out.u32(len(texts))]
        for text in texts:
            raw = _text(text)
            parts += [out.u64(len(raw)), raw]
    return b"".join(parts)


def _sized32(out: _Out, text: str) -> bytes:
    raw = _text(text)
    return out.u32(len(raw)) + raw


def _cmdlines(out: _Out, content: TraceDatContent) -> bytes:
    raw = _text(content.cmdlines)
    return out.u64(len(raw)) + raw


def _clock_option(content: TraceDatContent) -> bytes:
    text = content.clocks_text
    if not text or f"[{content.clock}]" not in text:
        text = f"[{content.clock}]"
    return _text(text.strip()) + b"\0"


def _common_options(out: _Out, content: TraceDatContent, ncpus: int) -> list[tuple[int, bytes]]:
    options = [(OPTION_TRACECLOCK, _clock_option(content))]
    if content.uname:
        options.append((OPTION_UNAME, _text(content.uname) + b"\0"))
    options.append((OPTION_VERSION, _text(content.version_text) + b"\0"))
    if content.trace_id is not None:
        options.append((OPTION_TRACEID, out.u64(content.trace_id & ((1 << 64) - 1))))
    for cpu in sorted(content.cpu_stats):
        options.append((OPTION_CPUSTAT, _text(f"CPU: {cpu}\n{content.cpu_stats[cpu]}") + b"\0"))
    options.append((OPTION_CPUCOUNT, out.u32(content.cpu_count or ncpus)))
    return options


def _check(content: TraceDatContent) -> int:
    size = content.buffer_page_size
    for cpu, data in content.cpu_data.items():
        if not isinstance(cpu, int) or cpu < 0:
            raise UsageError(f"bad CPU number {cpu!r}")
        length = _data_size(data)
        if length % size:
            raise UsageError(f"cpu {cpu} data is {length} bytes, not a multiple of the {size}-byte sub-buffer")
    return max(content.cpu_data, default=-1) + 1


def write_tracedat(path: str | os.PathLike, content: TraceDatContent, version: int | None = None,
                   compression: str = "none") -> int:
    """Write `content` as a trace.dat at `path`; returns the version written."""
    if compression not in ("none", "zstd"):
        raise UsageError(f"unknown trace.dat compression {compression!r} (none or zstd)")
    if version is None:
        version = 6 if content.buffer_page_size == content.page_size and compression == "none" else 7
    if version not in (6, 7):
        raise UsageError(f"trace.dat version {version} cannot be written (6 or 7)")
    if version == 6 and compression != "none":
        raise UsageError("a version 6 trace.dat cannot be compressed; write version 7")
    zstd = _Zstd() if compression == "zstd" else None
    if version == 6 and content.buffer_page_size != content.page_size:
        raise UsageError(f"a version 6 file cannot hold {content.buffer_page_size}-byte sub-buffers "
                         f"(page size {content.page_size}); write version 7")
    ncpus = _check(content)
    with replacing_file(path) as f:
        out = _Out(f, content.byteorder)
        out.write(MAGIC + f"{version}\0".encode() + bytes([0 if content.byteorder == "little" else 1,
                                                           content.long_size]))
        out.write(out.u32(content.page_size))
        if version == 6:
            _write_v6(out, content, ncpus)
        else:
            _write_v7(out, content, ncpus, zstd)
    return version


def _write_v6(out: _Out, content: TraceDatContent, ncpus: int) -> None:
    out.write(_header_info(out, content))
    out.write(_ftrace_events(out, content))
    out.write(_event_formats(out, content))
    out.write(_sized32(out, content.kallsyms))
    out.write(_sized32(out, content.printk_formats))
    out.write(_cmdlines(out, content))
    out.write(out.u32(ncpus))
    out.write(b"options  \0")
    for opt_id, payload in _common_options(out, content, ncpus):
        out.write(out.u16(opt_id) + out.u32(len(payload)) + payload)
    out.write(out.u16(OPTION_DONE))             # v6: the terminator has no size
    out.write(b"flyrecord\0")
    # The CPU table comes before the data: offsets are computed from the sizes first.
    page = content.page_size
    table_end = out.tell() + 16 * ncpus
    position = table_end + (-table_end % page)
    slots = []
    for cpu in range(ncpus):
        data = content.cpu_data.get(cpu)
        size = _data_size(data) if data is not None else 0
        slots.append((position, size))
        position += size + (-size % page)
    for offset, size in slots:
        out.write(out.u64(offset) + out.u64(size))
    for cpu, (offset, size) in enumerate(slots):
        if not size:
            continue
        out.pad_to(page)
        if out.tell() != offset:
            raise DecodeError(f"internal error: cpu {cpu} data at {out.tell():#x}, expected {offset:#x}")
        _copy_data(out, content.cpu_data[cpu])


def _section(out: _Out, section_id: int, payload: bytes, compressed: bytes | None = None) -> int:
    """Write one v7 section (its compressed form when given); returns its offset."""
    offset = out.tell()
    if compressed is None:
        out.write(out.u16(section_id) + out.u16(0) + out.u32(0) + out.u64(len(payload)) + payload)
    else:
        body = out.u32(len(compressed)) + out.u32(len(payload)) + compressed
        out.write(out.u16(section_id) + out.u16(SECTION_COMPRESSED) + out.u32(0) + out.u64(len(body)) + body)
    return offset


def _read_data(data) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    with open(data, "rb") as f:
        return f.read()


def _write_v7(out: _Out, content: TraceDatContent, ncpus: int, zstd: _Zstd | None = None) -> None:
    out.write(b"zstd\0" + zstd.version.encode() + b"\0" if zstd else b"none\0\0")   # name, version
    first_options_at = out.tell()
    out.write(out.u64(0))                        # patched below
    payloads = [(OPTION_HEADER_INFO, _header_info(out, content)), (OPTION_FTRACE_EVENTS, _ftrace_events(out, content)),
                (OPTION_EVENT_FORMATS, _event_formats(out, content)),
                (OPTION_KALLSYMS, _sized32(out, content.kallsyms)),
                (OPTION_PRINTK, _sized32(out, content.printk_formats)), (OPTION_CMDLINES, _cmdlines(out, content))]
    page = content.page_size
    subbuf = content.buffer_page_size
    cpus = sorted(cpu for cpu, data in content.cpu_data.items() if data is not None and _data_size(data))
    chunks: dict[int, list[tuple[int, bytes]]] = {}
    if zstd is not None:
        # Every section and every chunk of CHUNK_PAGES sub-buffers in one run of the program.
        blobs = [payload for _id, payload in payloads]
        spans = {}
        for cpu in cpus:
            data = _read_data(content.cpu_data[cpu])
            step = CHUNK_PAGES * subbuf
            pieces = [data[at:at + step] for at in range(0, len(data), step)]
            spans[cpu] = (len(blobs), pieces)
            blobs += pieces
        packed = zstd.compress(blobs)
        sections = {sid: _section(out, sid, payload, packed[i]) for i, (sid, payload) in enumerate(payloads)}
        for cpu, (first, pieces) in spans.items():
            chunks[cpu] = [(len(piece), packed[first + i]) for i, piece in enumerate(pieces)]
    else:
        sections = {sid: _section(out, sid, payload) for sid, payload in payloads}
    # The flyrecord data: a BUFFER section whose per-CPU data start page aligned.
    buffer_at = out.tell()
    header_end = buffer_at + 16
    position = header_end + (-header_end % page)
    slots = {}
    for cpu in cpus:
        if zstd is not None:
            # u32 chunk count, then {u32 compressed, u32 uncompressed, data}; the size leaves the count out.
            size = sum(8 + len(blob) for _usize, blob in chunks[cpu])
            slots[cpu] = (position, size)
            size += 4
        else:
            size = _data_size(content.cpu_data[cpu])
            slots[cpu] = (position, size)
        position += size + (-size % page)
    out.write(out.u16(OPTION_BUFFER) + out.u16(SECTION_COMPRESSED if zstd else 0) + out.u32(0) +
              out.u64(position - header_end))
    for cpu in cpus:
        out.pad_to(page)
        if zstd is not None:
            out.write(out.u32(len(chunks[cpu])))
            for usize, blob in chunks[cpu]:
                out.write(out.u32(len(blob)) + out.u32(usize) + blob)
        else:
            _copy_data(out, content.cpu_data[cpu])
    out.pad_to(page)
    # The options section last, once every offset is known.
    options = [(opt_id, out.u64(offset)) for opt_id, offset in sections.items()]
    options += _common_options(out, content, ncpus)
    buffer_payload = [out.u64(buffer_at), b"\0", _text(content.clock) + b"\0", out.u32(subbuf), out.u32(len(cpus))]
    for cpu in cpus:
        offset, size = slots[cpu]
        buffer_payload.append(out.u32(cpu) + out.u64(offset) + out.u64(size))
    options.append((OPTION_BUFFER, b"".join(buffer_payload)))
    body = b"".join(out.u16(opt_id) + out.u32(len(payload)) + payload for opt_id, payload in options)
    body += out.u16(OPTION_DONE) + out.u32(8) + out.u64(0)
    options_at = _section(out, OPTION_DONE, body)
    out.f.seek(first_options_at)
    out.write(out.u64(options_at))
    out.f.seek(0, os.SEEK_END)


def extra_sections(dat) -> tuple[str, str]:
    """(kallsyms, printk_formats) texts of a parsed TraceDat (empty when the file has none)."""
    return dat.saved_text(OPTION_KALLSYMS), dat.saved_text(OPTION_PRINTK)
