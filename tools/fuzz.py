#!/usr/bin/env python3
"""Structure-aware fuzzing of rawtrace's offline entry points, with mutations of real captured inputs.

Targets (weighted at random per input):
  format    a format file (tests/fixtures: captured 6.18 formats and hand-written odd ones) mutated line by
            line and number by number -> parse_format -> DecoderSet / compile_decoder -> a page holding
            records of it -> decode_page -> text and JSON renderers, hex_fields, fields_text
  headers   header_page / header_event texts mutated -> parsers -> PageLayout.from_headers -> decode_page
  page      sub-buffers (real ones from a trace.dat when given, and ones built here from the fixture
            formats in both byte orders and long sizes 4 and 8) mutated word by word (record types,
            lengths, commit word, event IDs) -> decode_page / iter_page_lists(errors=) -> renderers
  tracedat  trace.dat files built here (v6, v7 plain and zlib; from the real file's headers, formats,
            cmdlines and first pages when given) mutated byte by byte -> read_tracedat -> buffer,
            page_layout, formats, cpu_data -> pages decoded and rendered
  cmdlines  saved_cmdlines texts -> comm.parse_saved_cmdlines
  mounts    mount tables (this machine's /proc/self/mounts and odd escapes) -> Host.mounts ->
            locate_tracefs in an empty fake root
  numbers   asciinum.ascii_int against a reference

Library errors (rawtrace.errors.RawtraceError subclasses) are expected for bad input; anything else is an
unexpected exception, and so is a rendered text line that is not printable or a JSON line json.loads
refuses. An input that takes more than 2 s of CPU time (SIGPROF interrupts it), or is blocked for 30 s of
wall time (SIGALRM), is a hang: CPU time, so that a loaded machine does not make hangs. Prints inputs tried,
library errors by class, unexpected exceptions (first ones with their traceback), hangs, the slowest input,
and memory (peak RSS and RSS samples over the run, which should stay flat).

    python3 tools/fuzz.py --count 1000000 --seed 1 [--tracedat FILE | --no-tracedat] [--save DIR]
    python3 tools/fuzz.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))     # tracedat_builder: trace.dat files built without rawtrace's writer

from tracedat_builder import tracedat_v6, tracedat_v7

from rawtrace import render_event
from rawtrace.asciinum import ascii_int
from rawtrace.comm import parse_saved_cmdlines
from rawtrace.errors import RawtraceError
from rawtrace.host import Host
from rawtrace.parse.format import parse_format, parse_header_event, parse_header_page
from rawtrace.parse.record import DecoderSet, Event, compile_decoder
from rawtrace.parse.ringbuf import (
    PageLayout,
    decode_page,
    iter_page_lists,
    iter_pages,
    merge_chunks_by_time,
    page_header,
)
from rawtrace.parse.tracedat import read_tracedat
from rawtrace.tracefs.discover import locate_tracefs

SHARED_TRACEDAT = REPO.parent / "shared" / "data" / "raw_syscalls_1905722ev.dat"
FIXTURES = REPO / "tests" / "fixtures" / "formats"
HANG_SECONDS = 2.0          # CPU seconds for one input
BLOCKED_SECONDS = 30.0      # wall seconds: an input waiting on something (a FIFO, a pipe) uses no CPU
SLOW_SECONDS = 0.5          # CPU seconds; reported (not failed): a sign of super-linear work on some input
WEIGHTS = {"format": 30, "page": 30, "tracedat": 14, "headers": 10, "cmdlines": 5, "mounts": 5, "numbers": 6}

HEADER_PAGE_64 = ("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
                  "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
                  "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
                  "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n")
HEADER_EVENT = ("# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n"
                "\tarray       :   32 bits\n\n\tpadding     : type == 29\n\ttime_extend : type == 30\n"
                "\ttime_stamp : type == 31\n\tdata max type_len  == 28\n")
# A mount table as kernels print it: octal escapes for space, tab, newline and backslash.
MOUNTS = ("sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
          "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
          "tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec,relatime 0 0\n"
          "debugfs /sys/kernel/debug debugfs rw,nosuid,nodev,noexec,relatime 0 0\n"
          "/dev/sda1 /media/my\\040disk ext4 rw,relatime 0 0\n"
          "host /mnt/a\\011tab\\012nl\\134back 9p rw 0 0\n")
CMDLINES = "1 systemd\n2 kthreadd\n4242 bash\n9451 trace-cmd\n31337 a b c\n"

INTERESTING_NUMBERS = ["0", "1", "-1", "2", "3", "4", "7", "8", "16", "255", "256", "4095", "4096", "4097",
                       "65535", "65536", "2147483647", "4294967295", "4294967296", "18446744073709551615",
                       "99999999999999999999", "0x10", "²", "٣", "1²", " 8", "8 ", "+8", "1_0", ""]
INTERESTING_TYPES = ["char", "u8", "u16", "u32", "u64", "int", "unsigned long", "long", "void *", "const char *",
                     "pid_t", "bool", "__data_loc char[]", "__rel_loc char[]", "__data_loc u8[]", "__rel_loc u32[]",
                     "__data_loc cpumask_t", "struct foo", "__int128", "unsigned", "char *const *"]
INTERESTING_SUFFIXES = ["[1]", "[]", "[0]", "[16]", "[2][3]", "[TASK_COMM_LEN]", "[(4*4)]", ":3", "[", "]",
                        "[-1]", "[99999999999]"]
INTERESTING_U32 = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 28, 29, 30, 31,
                   4080, 4096, 1 << 27, (1 << 27) - 1, 0xC0000000]
CONTROL = ["\0", "\x01", "\x1b", "\n", "\r", "\t", "\x7f", "\u2028", "\udc80", "é", "²"]


class Hang(BaseException):
    """Raised by SIGPROF/SIGALRM in an input that ran too long (a BaseException: library code cannot catch it)."""


def _alarm(_signum, _frame):
    raise Hang()


# -- building inputs ------------------------------------------------------------------------------------

class Pages:
    """One sub-buffer, record by record, in a byte order and long size."""

    def __init__(self, byteorder: str = "little", long_size: int = 8, subbuf_size: int = 4096) -> None:
        self.byteorder, self.long_size, self.subbuf_size = byteorder, long_size, subbuf_size
        self.p = "<" if byteorder == "little" else ">"
        self.data = bytearray()

    def word(self, type_len: int, delta: int) -> bytes:
        delta &= (1 << 27) - 1
        value = type_len | (delta << 5) if self.byteorder == "little" else (type_len << 27) | delta
        return struct.pack(self.p + "I", value)

    def record(self, payload: bytes, delta: int = 1, long_form: bool = False) -> None:
        payload = payload + bytes(-len(payload) % 4)
        if long_form or len(payload) > 112:
            self.data += self.word(0, delta) + struct.pack(self.p + "I", len(payload) + 4) + payload
        else:
            self.data += self.word(len(payload) // 4, delta) + payload

    def special(self, type_len: int, delta: int, array0: int) -> None:
        self.data += self.word(type_len, delta) + struct.pack(self.p + "I", array0 & 0xFFFFFFFF)

    def build(self, ts: int, missed: bool = False) -> bytes:
        size = min(len(self.data), self.subbuf_size - 8 - self.long_size)
        commit = size | ((1 << 31) if missed else 0)
        code = "Q" if self.long_size == 8 else "I"
        page = struct.pack(self.p + "Q", ts) + struct.pack(self.p + code, commit) + bytes(self.data[:size])
        return page + bytes(self.subbuf_size - len(page))


def payload_for(fmt, byteorder: str, rng: random.Random) -> bytes:
    """A record payload for `fmt`: random bytes over its fixed fields, common_type set, dynamic data after."""
    fixed = 8
    for field in fmt.all_fields:
        fixed = max(fixed, field.offset + field.size)
    fixed = min(fixed, 2000)
    body = bytearray(rng.randbytes(fixed + rng.choice([0, 0, 4, 16, 40])))
    prefix = "<" if byteorder == "little" else ">"
    struct.pack_into(prefix + "H", body, 0, fmt.id & 0xFFFF)
    for field in fmt.all_fields:
        if field.kind in ("data_loc_string", "rel_loc_string", "data_loc_array", "rel_loc_array") \
                and field.offset + 4 <= len(body):
            # A plausible location word most of the time, so the string paths run.
            length = rng.randint(0, 12)
            start = fixed if field.kind.startswith("data") else fixed - field.offset - 4
            body += b"name\0"[:length].ljust(length, b"x")
            struct.pack_into(prefix + "I", body, field.offset, (length << 16) | (max(start, 0) & 0xFFFF))
    return bytes(body)


def page_of(formats: list, byteorder: str, long_size: int, rng: random.Random) -> bytes:
    pages = Pages(byteorder, long_size)
    for _ in range(rng.randint(1, 12)):
        choice = rng.random()
        if choice < 0.75:
            pages.record(payload_for(rng.choice(formats), byteorder, rng), rng.randint(0, 5000), rng.random() < 0.1)
        elif choice < 0.85:
            pages.special(30, rng.randint(0, 1 << 27), rng.randint(0, 1 << 20))        # time extend
        elif choice < 0.92:
            pages.special(31, rng.randint(0, 1 << 27), rng.randint(0, 1 << 20))        # absolute time stamp
        else:
            pages.special(29, rng.randint(1, 99), 8)                                     # discarded event
            pages.data += bytes(4)
    return pages.build(rng.randint(0, 1 << 40), missed=rng.random() < 0.1)


# -- the corpus of seeds --------------------------------------------------------------------------------

class Corpus:
    def __init__(self, rng: random.Random, tracedat: Path | None) -> None:
        self.format_texts: list[tuple[str, str]] = []          # (system, text)
        for path in sorted(FIXTURES.rglob("*")):
            if path.is_file() and (path.name == "format" or path.suffix == ".format"):
                system = path.parent.parent.name if path.name == "format" else "test"
                self.format_texts.append((system, path.read_text(errors="replace")))
        self.header_pages = [HEADER_PAGE_64] + [p.read_text() for p in sorted(FIXTURES.rglob("*header_page*"))]
        self.header_events = [HEADER_EVENT] + [p.read_text() for p in sorted(FIXTURES.rglob("*header_event*"))]
        self.formats = []
        for system, text in self.format_texts:
            try:
                self.formats.append(parse_format(text, system=system, long_size=8))
            except RawtraceError:
                pass
        self.cmdlines = [CMDLINES]
        self.mounts = [MOUNTS]
        try:
            self.mounts.append(Path("/proc/self/mounts").read_text(errors="replace"))
        except OSError:
            pass
        # (layout, page bytes, formats by id)
        self.pages: list[tuple[PageLayout, bytes, dict]] = []
        for byteorder in ("little", "big"):
            for long_size in (8, 4):
                layout = PageLayout.default(long_size=long_size, byteorder=byteorder)
                for _ in range(12):
                    chosen = rng.sample(self.formats, min(6, len(self.formats)))
                    self.pages.append((layout, page_of(chosen, byteorder, long_size, rng),
                                       {f.id: f for f in chosen}))
        little = [p for layout, p, _f in self.pages if layout.byteorder == "little" and layout.long_size == 8]
        texts = [(s, t) for s, t in self.format_texts[:40]]
        self.tracedats = [
            tracedat_v6(HEADER_PAGE_64, HEADER_EVENT, texts, CMDLINES, little[:2]),
            tracedat_v7(HEADER_PAGE_64, HEADER_EVENT, texts, CMDLINES, little[2:5], compress=False),
            tracedat_v7(HEADER_PAGE_64, HEADER_EVENT, texts, CMDLINES, little[5:7], compress=True),
        ]
        import shutil
        if shutil.which("zstd"):
            self.tracedats.append(tracedat_v7(HEADER_PAGE_64, HEADER_EVENT, texts, CMDLINES, little[7:9],
                                              compress="zstd"))
        self.real = False
        if tracedat is not None and tracedat.exists():
            self._add_real(tracedat)

    def _add_real(self, path: Path) -> None:
        """Real pages, formats, headers and cmdlines from a trace.dat (read once; mutated copies only)."""
        dat = read_tracedat(path)
        buf = dat.buffer()
        layout = dat.page_layout(buf)
        formats = dat.formats()
        self.header_pages.append(dat.header_page)
        self.header_events.append(dat.header_event)
        self.format_texts += list(dat.event_formats)
        self.formats += list(formats.values())
        self.cmdlines.append(dat.cmdlines)
        per_cpu = {}
        for cpu in sorted(buf.cpus):
            data = dat.cpu_data(buf, cpu)
            pages = [data[i:i + layout.subbuf_size] for i in range(0, min(len(data), 40 * layout.subbuf_size),
                                                                     layout.subbuf_size)]
            per_cpu[cpu] = pages
            self.pages += [(layout, page, formats) for page in pages]
        firsts = [b"".join(pages[:3]) for pages in per_cpu.values()]
        self.tracedats += [
            tracedat_v7(dat.header_page, dat.header_event, list(dat.event_formats), dat.cmdlines, firsts, True),
            tracedat_v6(dat.header_page, dat.header_event, list(dat.event_formats), dat.cmdlines, firsts),
        ]
        self.real = True


# -- mutations --------------------------------------------------------------------------------------------

def mutate_bytes(data: bytes, rng: random.Random, others: list[bytes] | None = None, rounds: int | None = None,
                 region: int | None = None) -> bytes:
    out = bytearray(data)
    for _ in range(rounds or rng.choice([1, 1, 2, 3, 5, 8])):
        if not out:
            out += rng.randbytes(rng.randint(1, 64))
            continue
        at = rng.randrange(len(out) if region is None else min(region, len(out)))
        op = rng.random()
        if op < 0.3:
            out[at] ^= 1 << rng.randrange(8)
        elif op < 0.45:
            out[at] = rng.choice([0, 0xFF, 0x7F, 0x80, 0x01, 0x20, 0x30, 0x39, 0xB2])
        elif op < 0.65:
            width, code = rng.choice([(2, "H"), (4, "I"), (8, "Q")])
            if at + width <= len(out):
                value = rng.choice(INTERESTING_U32 + [rng.getrandbits(8 * width)]) & ((1 << (8 * width)) - 1)
                struct.pack_into(rng.choice("<>") + code, out, at, value)
        elif op < 0.72:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op < 0.79:
            del out[at:at + rng.randint(1, 64)]
        elif op < 0.85:
            size = rng.randint(1, 256)
            out[at:at] = out[at:at + size]
        elif op < 0.92:
            del out[rng.randrange(len(out) + 1):]
        elif others:
            other = rng.choice(others)
            if other:
                begin = rng.randrange(len(other))
                out[at:at + rng.randint(0, 64)] = other[begin:begin + rng.randint(1, 256)]
    return bytes(out)


def mutate_page(page: bytes, layout: PageLayout, ids: list[int], rng: random.Random) -> bytes:
    out = bytearray(page)
    p = "<" if layout.byteorder == "little" else ">"
    words = (len(out) - layout.data_offset) // 4
    for _ in range(rng.choice([1, 1, 2, 3, 4])):
        op = rng.random()
        at = layout.data_offset + 4 * rng.randrange(max(1, words))
        if op < 0.3 and at + 4 <= len(out):
            type_len = rng.choice([0, 1, 2, 3, 7, 28, 29, 30, 31, rng.randrange(32)])
            delta = rng.choice([0, 1, (1 << 27) - 1, rng.getrandbits(27)])
            value = type_len | (delta << 5) if layout.byteorder == "little" else (type_len << 27) | delta
            struct.pack_into(p + "I", out, at, value)
        elif op < 0.5 and at + 4 <= len(out):
            struct.pack_into(p + "I", out, at, rng.choice(INTERESTING_U32))
        elif op < 0.6 and at + 2 <= len(out) and ids:
            struct.pack_into(p + "H", out, at, rng.choice(ids + [0, 0xFFFF]))
        elif op < 0.72:
            # The commit word: size, missed-events flags, sign extension.
            code = "Q" if layout.commit_size == 8 else "I"
            if layout.commit_offset + layout.commit_size > len(out):
                continue
            value = rng.choice([0, 4, 4080, 4081, 4096, 1 << 26, rng.randrange(4100)])
            value |= rng.choice([0, 0, 1 << 31, 3 << 30])
            if code == "Q" and value & (1 << 31) and rng.random() < 0.5:
                value |= 0xFFFFFFFF00000000
            struct.pack_into(p + code, out, layout.commit_offset, value & ((1 << (8 * layout.commit_size)) - 1))
        elif op < 0.8 and len(out) >= 8:
            struct.pack_into(p + "Q", out, 0, rng.choice([0, 1 << 59, (1 << 64) - 1, rng.getrandbits(64)]))
        else:
            out = bytearray(mutate_bytes(bytes(out), rng, rounds=1))
    return bytes(out)


def _replace_number(line: str, rng: random.Random) -> str:
    spans = []
    start = None
    for i, ch in enumerate(line + " "):
        if ch.isdigit() and start is None:
            start = i
        elif not ch.isdigit() and start is not None:
            spans.append((start, i))
            start = None
    if not spans:
        return line
    begin, end = rng.choice(spans)
    return line[:begin] + rng.choice(INTERESTING_NUMBERS) + line[end:]


def mutate_text(text: str, rng: random.Random, others: list[str]) -> str:
    lines = text.split("\n")
    for _ in range(rng.choice([1, 1, 2, 3, 5])):
        if not lines:
            lines = [""]
        at = rng.randrange(len(lines))
        line = lines[at]
        op = rng.random()
        if op < 0.22:
            lines[at] = _replace_number(line, rng)
        elif op < 0.32 and "field" in line and ":" in line and ";" in line:
            # Another type, or brackets/bitfield after the name, or another (maybe common) name.
            head, _, tail = line.partition(";")
            decl = head.split(":", 1)
            if len(decl) == 2:
                words = decl[1].split()
                name = words[-1] if words else "x"
                choice = rng.random()
                if choice < 0.4:
                    decl[1] = f"{rng.choice(INTERESTING_TYPES)} {name}"
                elif choice < 0.7:
                    decl[1] = decl[1] + rng.choice(INTERESTING_SUFFIXES)
                else:
                    other = rng.choice(["common_pid", "common_type", "common_flags", "common_preempt_count", name,
                                        "ip", "buf", "x y", "0bad", "a-b"])
                    decl[1] = " ".join(words[:-1] + [other])
                lines[at] = ":".join(decl) + ";" + tail
        elif op < 0.42:
            del lines[at]
        elif op < 0.5:
            lines.insert(at, line)
        elif op < 0.56:
            other = rng.randrange(len(lines))
            lines[at], lines[other] = lines[other], line
        elif op < 0.64:
            pos = rng.randrange(len(line) + 1)
            lines[at] = line[:pos] + rng.choice(CONTROL) + line[pos:]
        elif op < 0.7 and "print fmt" in line:
            pos = rng.randrange(len(line) + 1)
            piece = rng.choice(['"', "'", "(", ")", "[", "]", "{", "}", ",", "\\", "%s", "%*.*d", "%p",
                                "REC->x", "(unsigned long)", "(a" + " " * rng.randint(1, 3000), '"%d"',
                                "%" + "0" * rng.randint(1, 3000), "%-+ #0" * rng.randint(1, 500), "\\x" * 300])
            lines[at] = line[:pos] + piece * rng.choice([1, 1, 2, 50]) + line[pos:]
        elif op < 0.76:
            lines[at] = line.replace("\t", rng.choice(["", " ", "\t\t", ";"]), rng.randint(1, 3))
        elif op < 0.8:
            lines[at] = line[:rng.randrange(len(line) + 1)]
        elif op < 0.84 and others:
            source = rng.choice(others).split("\n")
            lines.insert(at, rng.choice(source))
        elif op < 0.87:
            lines.insert(at, rng.choice(["", "format:", "name: x", "ID: 5", "print fmt: \"\"", "field:",
                                         "\tfield:int x;\toffset:8;\tsize:4;\tsigned:1;"]))
        elif op < 0.9:
            lines = lines * rng.choice([2, 3])
        else:
            encoded = mutate_bytes(line.encode("utf-8", "surrogateescape"), rng, rounds=1)
            lines[at] = encoded.decode("utf-8", "replace")
    return "\n".join(lines)


# -- targets --------------------------------------------------------------------------------------------

class Checked(Exception):
    """An invariant of the renderers broken (counted as unexpected)."""


# Extra renderers of whole events (rawtrace.printfmt with --printfmt): they must not raise and must give
# printable text, like render_event.
EXTRA_RENDERERS: list = []


def render_all(items: list, clock: str = "local") -> None:
    comms = {1: "init", 42: "a\x1bb"}
    for render in EXTRA_RENDERERS:
        for item in items:
            if isinstance(item, Event):
                text = render(item)
                if not text.isprintable():
                    raise Checked(f"{render.__qualname__} gave unprintable text: {text[:200]!r}")
    for line in render_event.text_lines(items, comms, clock):
        if not line.isprintable():
            raise Checked(f"text line not printable: {line[:200]!r}")
    for line in render_event.json_lines(items, comms):
        json.loads(line)
    for item in items[:4]:
        text = render_event.item_text(item, comms, clock)
        if not text.isprintable():
            raise Checked(f"item_text not printable: {text[:200]!r}")
        json.dumps(render_event.item_json(item, comms))
        if isinstance(item, Event):
            render_event.fields_text(item.fields, item.format)
            render_event.event_text(item, None, clock)


class Fuzzer:
    def __init__(self, seed: int, tracedat: Path | None) -> None:
        self.rng = random.Random(seed)
        self.corpus = Corpus(self.rng, tracedat)
        self.current: tuple[str, bytes] = ("", b"")
        self.root = Path(tempfile.mkdtemp(prefix="rawtrace-fuzz-"))
        self.targets = {name: getattr(self, f"t_{name}") for name in WEIGHTS}
        self.names = list(WEIGHTS)
        self.weights = [WEIGHTS[n] for n in self.names]

    def close(self) -> None:
        import shutil
        shutil.rmtree(self.root, ignore_errors=True)

    def keep(self, kind: str, data) -> None:
        self.current = (kind, data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data))

    def t_format(self) -> None:
        rng, corpus = self.rng, self.corpus
        system, text = rng.choice(corpus.format_texts)
        text = mutate_text(text, rng, [t for _s, t in rng.sample(corpus.format_texts, 3)])
        self.keep("format", text)
        fmt = parse_format(text, system=rng.choice([system, system, "", "s\0y"]),
                           long_size=rng.choice([None, 4, 8]))
        render_event.hex_fields(fmt)
        render_event.field_styles(fmt)
        byteorder = rng.choice(["little", "big"])
        try:
            compile_decoder(fmt, byteorder)
        except RawtraceError:
            pass
        decoders = DecoderSet({fmt.id & 0xFFFF: fmt}, byteorder)
        layout = PageLayout.default(long_size=rng.choice([4, 8]), byteorder=byteorder)
        page = page_of([fmt], byteorder, layout.long_size, rng)
        items = decode_page(layout, page, 0, decoders)
        render_all(items)

    def t_headers(self) -> None:
        rng, corpus = self.rng, self.corpus
        page_text = rng.choice(corpus.header_pages)
        event_text = rng.choice(corpus.header_events)
        if rng.random() < 0.6:
            page_text = mutate_text(page_text, rng, corpus.header_pages)
        if rng.random() < 0.6:
            event_text = mutate_text(event_text, rng, corpus.header_events) if rng.random() < 0.9 else ""
        self.keep("headers", page_text + "\n--header_event--\n" + event_text)
        header_page = parse_header_page(page_text)
        header_event = parse_header_event(event_text)
        layout = PageLayout.from_headers(header_page, header_event, rng.choice(["little", "big"]))
        _seed_layout, page, formats = rng.choice(corpus.pages)
        page = page[:layout.subbuf_size]
        if layout.subbuf_size <= 1 << 16:
            page = page.ljust(layout.subbuf_size, b"\0")
        render_all(decode_page(layout, page, 1, DecoderSet(formats, layout.byteorder)))

    def t_page(self) -> None:
        rng, corpus = self.rng, self.corpus
        layout, page, formats = rng.choice(corpus.pages)
        ids = list(formats)
        page = mutate_page(page, layout, ids, rng)
        decoders = DecoderSet(formats, layout.byteorder)
        if rng.random() < 0.3:
            _l, other, _f = rng.choice([entry for entry in corpus.pages if entry[0] is layout] or [(0, page, 0)])
            data = page + mutate_page(other, layout, ids, rng)
            if rng.random() < 0.3:
                data = data[:rng.randrange(len(data) + 1)]
            self.keep("pages", data)
            errors: list = []
            streams = [iter_page_lists(layout, data, 2, decoders, errors=errors),
                       iter_page_lists(layout, data[::-1][:len(data) // 2], 3, decoders, errors=errors)]
            for items in merge_chunks_by_time(streams):
                render_all(items, rng.choice(["local", "counter", "mono"]))
            for error in errors:
                if not isinstance(error, RawtraceError):
                    raise Checked(f"errors holds {error!r}")
            if rng.random() < 0.3:
                page_header(layout, data)
                for _item in iter_pages(layout, data, 4, decoders):
                    pass
            return
        if rng.random() < 0.1:
            page = page[:rng.randrange(len(page) + 1)]
        self.keep("page", page)
        render_all(decode_page(layout, page, 3, decoders), rng.choice(["local", "counter", "global"]))

    def t_tracedat(self) -> None:
        rng, corpus = self.rng, self.corpus
        seed = rng.choice(corpus.tracedats)
        # Most mutations in the headers and option sections, where the structure is.
        region = rng.choice([None, 4096, 512])
        data = mutate_bytes(seed, rng, corpus.tracedats, region=region)
        self.keep("tracedat", data)
        dat = read_tracedat(data)
        buf = dat.buffer()
        layout = dat.page_layout(buf)
        formats = dat.formats()
        decoders = DecoderSet(formats, dat.byteorder)
        parse_saved_cmdlines(dat.cmdlines)
        for cpu in sorted(buf.cpus)[:4]:
            cpu_data = dat.cpu_data(buf, cpu)
            errors: list = []
            for n, items in enumerate(iter_page_lists(layout, cpu_data, cpu, decoders, errors=errors)):
                render_all(items, dat.clock)
                if n >= 4:
                    break

    def t_cmdlines(self) -> None:
        text = mutate_text(self.rng.choice(self.corpus.cmdlines), self.rng, self.corpus.cmdlines)
        self.keep("cmdlines", text)
        for pid, comm in parse_saved_cmdlines(text).items():
            if not (isinstance(pid, int) and pid >= 0 and isinstance(comm, str) and comm):
                raise Checked(f"saved_cmdlines gave {pid!r}: {comm!r}")

    def t_mounts(self) -> None:
        rng = self.rng
        text = self.rng.choice(self.corpus.mounts)
        for _ in range(rng.randint(1, 4)):
            text = mutate_text(text, rng, self.corpus.mounts)
            pos = rng.randrange(len(text) + 1)
            text = text[:pos] + rng.choice(["\\999", "\\04", "\\", "\\040", "\\²²²", "\\0000", "\\777", " ",
                                            "tracefs", "debugfs"]) + text[pos:]
        self.keep("mounts", text)
        host = _TextHost(self.root, text)
        for _source, mountpoint, _fstype, _options in host.mounts():
            if not isinstance(mountpoint, str):
                raise Checked(f"mount point {mountpoint!r}")
        locate_tracefs(host)

    def t_numbers(self) -> None:
        rng = self.rng
        text = "".join(rng.choice("0123456789²٣ -+_x\0a") for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.3:
            text = str(rng.getrandbits(rng.randint(1, 140)))
        self.keep("numbers", text)
        got = ascii_int(text)
        expected = int(text) if text and len(text) <= 40 and set(text) <= set("0123456789") else None
        if got != expected:
            raise Checked(f"ascii_int({text!r}) = {got!r}, expected {expected!r}")
        for base in (8, 16):
            ascii_int(text, base)


class _TextHost(Host):
    """A fake root whose mount table is a given text."""

    __slots__ = ("text",)

    def __init__(self, root: Path, text: str) -> None:
        super().__init__(root)
        self.text = text

    def read_text(self, absolute: str) -> str | None:
        return self.text if absolute.endswith("mounts") else None


# -- the campaign ---------------------------------------------------------------------------------------

def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except OSError:
        return 0.0


def campaign(seed: int = 1, count: int | None = None, seconds: float | None = None, tracedat: Path | None = None,
             save: Path | None = None, progress: float = 0.0, out=sys.stdout) -> dict:
    """Run the campaign; returns the figures (also printed unless out is None)."""
    fuzzer = Fuzzer(seed, tracedat)
    tried: Counter = Counter()
    library: Counter = Counter()
    unexpected: list[dict] = []
    hangs: list[dict] = []
    slow: list[dict] = []
    slowest = (0.0, "")
    samples = [(0, rss_mib())]
    previous = signal.signal(signal.SIGALRM, _alarm)
    previous_prof = signal.signal(signal.SIGPROF, _alarm)
    started = time.perf_counter()
    next_report = started + progress if progress else None
    n = 0
    try:
        while True:
            if count is not None and n >= count:
                break
            now = time.perf_counter()
            if seconds is not None and now - started >= seconds:
                break
            name = fuzzer.rng.choices(fuzzer.names, fuzzer.weights)[0]
            fuzzer.current = (name, b"")
            t0 = time.perf_counter()
            c0 = time.process_time()
            signal.setitimer(signal.ITIMER_PROF, HANG_SECONDS)
            signal.setitimer(signal.ITIMER_REAL, BLOCKED_SECONDS)
            outcome = None
            try:
                fuzzer.targets[name]()
            except RawtraceError as exc:
                library[type(exc).__name__] += 1
            except Hang:
                outcome = "hang"
            except (Exception, RecursionError) as exc:  # noqa: BLE001 - this is what the campaign looks for
                outcome = exc
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
                signal.setitimer(signal.ITIMER_REAL, 0)
            wall = time.perf_counter() - t0
            elapsed = time.process_time() - c0
            n += 1
            tried[name] += 1
            if elapsed > slowest[0]:
                slowest = (elapsed, name)
            if outcome == "hang" or elapsed > HANG_SECONDS or wall > BLOCKED_SECONDS:
                hangs.append({"n": n, "target": name, "seconds": round(elapsed, 3), "wall": round(wall, 3),
                              "input": _save(save, n, fuzzer.current, "hang")})
            elif elapsed > SLOW_SECONDS:
                slow.append({"n": n, "target": name, "seconds": round(elapsed, 3),
                             "input": _save(save, n, fuzzer.current, "slow")})
            if outcome is not None and outcome != "hang":
                unexpected.append({"n": n, "target": name, "error": f"{type(outcome).__name__}: {outcome}"[:300],
                                   "traceback": "".join(traceback.format_exception(outcome)[-6:]),
                                   "input": _save(save, n, fuzzer.current, "crash")})
            if n % 5000 == 0:
                samples.append((n, rss_mib()))
            if next_report is not None and now >= next_report:
                next_report = now + progress
                if out is not None:
                    print(f"  {n} inputs, {sum(library.values())} library errors, {len(unexpected)} unexpected, "
                          f"{len(hangs)} hangs, RSS {rss_mib():.0f} MiB, {n / (now - started):.0f}/s",
                          file=out, flush=True)
    finally:
        signal.signal(signal.SIGALRM, previous)
        signal.signal(signal.SIGPROF, previous_prof)
        fuzzer.close()
    total = time.perf_counter() - started
    samples.append((n, rss_mib()))
    figures = {
        "seed": seed, "inputs": n, "seconds": round(total, 1), "rate": round(n / total) if total else 0,
        "per_target": dict(tried), "library_errors": sum(library.values()), "library_by_class": dict(library),
        "unexpected": len(unexpected), "hangs": len(hangs), "slow": len(slow), "slowest_s": round(slowest[0], 3),
        "slowest_target": slowest[1], "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_samples_mib": [(k, round(v, 1)) for k, v in samples], "real_inputs": fuzzer.corpus.real,
        "unexpected_list": unexpected[:20], "hang_list": hangs[:20], "slow_list": slow[:20],
    }
    if out is not None:
        _print(figures, out)
    return figures


def _save(directory: Path | None, n: int, current: tuple[str, bytes], what: str) -> str | None:
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{what}-{n}-{current[0]}.bin"
    path.write_bytes(current[1])
    return str(path)


def _print(f: dict, out) -> None:
    print(f"inputs tried: {f['inputs']} in {f['seconds']} s ({f['rate']}/s), seed {f['seed']}, "
          f"real captured inputs: {'yes' if f['real_inputs'] else 'no (fixtures and built ones only)'}", file=out)
    print("  per target: " + ", ".join(f"{k} {v}" for k, v in sorted(f["per_target"].items())), file=out)
    print(f"library errors (expected RawtraceError): {f['library_errors']}  "
          + ", ".join(f"{k} {v}" for k, v in sorted(f["library_by_class"].items())), file=out)
    print(f"unexpected exceptions: {f['unexpected']}", file=out)
    for item in f["unexpected_list"][:5]:
        print(f"  #{item['n']} {item['target']}: {item['error']}\n{item['traceback']}"
              + (f"  input saved: {item['input']}" if item["input"] else ""), file=out)
    print(f"hangs (> {HANG_SECONDS:g} s of CPU, or blocked {BLOCKED_SECONDS:g} s): {f['hangs']}", file=out)
    for item in f["hang_list"][:5]:
        print(f"  #{item['n']} {item['target']}: {item['seconds']} s CPU, {item['wall']} s wall"
              + (f", input saved: {item['input']}" if item["input"] else ""), file=out)
    print(f"slow inputs (> {SLOW_SECONDS:g} s of CPU, not failures): {f['slow']}; slowest input: {f['slowest_s']} s "
          f"({f['slowest_target']})", file=out)
    samples = f["rss_samples_mib"]
    shown = samples if len(samples) <= 8 else [samples[int(i * (len(samples) - 1) / 7)] for i in range(8)]
    print(f"peak memory: {f['peak_rss_mib']} MiB max RSS; RSS over the run: "
          + ", ".join(f"{v:.0f} MiB@{k}" for k, v in shown), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n  python3 tools/fuzz.py --count 1000000 --seed 7 --progress 60\n"
                                            "  python3 tools/fuzz.py --seconds 30 --no-tracedat --save /tmp/fuzz-crashes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, help="inputs to try (default: until --seconds, else 10000)")
    parser.add_argument("--seconds", type=float, help="stop after this long")
    parser.add_argument("--tracedat", type=Path, default=SHARED_TRACEDAT,
                        help=f"a real trace.dat to take pages, formats and headers from (default {SHARED_TRACEDAT})")
    parser.add_argument("--no-tracedat", action="store_true", help="fixtures and built inputs only")
    parser.add_argument("--save", type=Path, help="write each crashing or hanging input to this directory")
    parser.add_argument("--progress", type=float, default=0.0, metavar="SECONDS", help="a status line this often")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object at the end")
    parser.add_argument("--printfmt", action="store_true",
                        help="also render every event with rawtrace.printfmt.TextRenderer (kernel and trace-cmd style)")
    args = parser.parse_args(argv)
    count = args.count if args.count is not None or args.seconds is not None else 10000
    tracedat = None if args.no_tracedat else args.tracedat
    if args.printfmt:
        from rawtrace.printfmt import TextRenderer
        EXTRA_RENDERERS.extend([TextRenderer().line_body, TextRenderer(style="trace-cmd").line_body])
    figures = campaign(args.seed, count, args.seconds, tracedat, args.save, args.progress,
                       out=None if args.json else sys.stdout)
    if args.json:
        print(json.dumps(figures))
    return 1 if figures["unexpected"] or figures["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
