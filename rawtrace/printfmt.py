"""Render events as the kernel's `trace` file prints them, by compiling each event's print fmt once.

Public API:

* ``renderer(fmt, printk_formats=None, symbols=None, long_size=8) -> fn(event) -> str``: the text the
  event's print fmt produces (what follows ``name: `` in the kernel's `trace` file). Raises
  ``Unrenderable`` when the print fmt uses something this module cannot evaluate (statement expressions,
  unknown helpers); the returned function raises ``Unrenderable`` for one event it cannot render.
* ``TextRenderer(printk_formats=None, symbols=None, long_size=8, style="kernel", escape=True)``: renderers cached per
  event format, a raw-fields fallback for events that cannot be rendered (counted in ``fallbacks``, per
  event name), and the events the kernel prints with C code instead of their print fmt: syscall events
  (``sys_openat(dfd: ...)``), ``ftrace:print``, ``ftrace:bprint``, ``ftrace:bputs``, and the probed
  address of kprobe/uprobe events. ``body(event)`` is
  the print fmt text; ``line_body(event)`` is everything after the time stamp of a `trace` line.
  ``style="trace-cmd"`` renders every event from its print fmt, as `trace-cmd report` does.
* ``renderer_for_host(host, tracefs)`` / ``renderer_for_tracedat(dat)``: a TextRenderer with the
  printk_formats, kallsyms and (live) BTF constants of this machine or of a recording, in one call.
* ``parse_printk_formats(text) -> {address: format}`` (the tracefs ``printk_formats`` file or the
  trace.dat section); ``Symbols.from_kallsyms(text)`` resolves ``%pS``-style addresses;
  ``kernel_constants(btf, symbols)`` the enum names and struct sizes print fmts use unexpanded.
* ``bprint_text(fmt, words, ...)``: a ``trace_printk`` format applied to the argument words as the kernel's
  vbin_printf packed them (lib/vsprintf.c: each integer aligned to its size, 8-byte values to 4, strings
  inline with their NUL).

The print fmt is tokenised and parsed into an expression tree; the tree (never the format text) is turned
into one Python function per event format, which reads the event's field dict and formats the values with
C printf semantics (widths, flags, length modifiers that truncate, kernel ``%p`` extensions).
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from rawtrace.parse.descriptors import EventFormat, FieldKind
from rawtrace.render_event import BodyCode, fields_text, safe_text

MASK64 = (1 << 64) - 1


class Unrenderable(Exception):
    """A print fmt (or one event's values) that this evaluator cannot render; the caller falls back."""


# ---------------------------------------------------------------------------------------------------
# Tokens and expression tree

_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<num>0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<chr>'(?:[^'\\]|\\.)+')
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>->|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!?:()\[\]{},.<>;=])
""", re.VERBOSE | re.DOTALL)

_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'", "a": "\a",
              "b": "\b", "f": "\f", "v": "\v", "e": "\x1b"}
_ESCAPE_RE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]+)|(.))", re.DOTALL)


def _unescape(body: str) -> str:
    def one(m: re.Match) -> str:
        octal, hexa, char = m.groups()
        if octal is not None:
            return chr(int(octal, 8) & 0xFF)
        if hexa is not None:
            return chr(int(hexa[-2:], 16))
        return _C_ESCAPES.get(char, char)
    return _ESCAPE_RE.sub(one, body) if "\\" in body else body


def tokenize(text: str) -> list[tuple[str, Any]]:
    """(kind, value) tokens of a C expression: num (int), str, chr (int), id, op."""
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise Unrenderable(f"unexpected character {text[pos]!r} in print fmt arguments")
        pos = m.end()
        kind = m.lastgroup
        value = m.group()
        if kind == "space":
            continue
        if kind == "num":
            digits = value.rstrip("uUlL")
            if digits[:2] in ("0x", "0X"):
                number = int(digits, 16)
            elif len(digits) > 1 and digits[0] == "0":
                number = int(digits, 8)
            else:
                number = int(digits)
            out.append(("num", number))
        elif kind == "str":
            body = _unescape(value[1:-1])
            if out and out[-1][0] == "str":          # adjacent literals join, as in C
                out[-1] = ("str", out[-1][1] + body)
            else:
                out.append(("str", body))
        elif kind == "chr":
            out.append(("num", ord(_unescape(value[1:-1])[0])))
        else:
            out.append((kind, value))
    return out


# Words that can start a cast or appear in sizeof(type).
_TYPE_WORDS = frozenset({
    "unsigned", "signed", "int", "long", "short", "char", "void", "bool", "_Bool", "const", "volatile",
    "struct", "enum", "union", "float", "double", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64",
    "__u8", "__u16", "__u32", "__u64", "__s8", "__s16", "__s32", "__s64", "__le16", "__le32", "__le64",
    "__be16", "__be32", "__be64", "uint8_t", "uint16_t", "uint32_t", "uint64_t", "int8_t", "int16_t",
    "int32_t", "int64_t", "size_t", "ssize_t", "loff_t", "pid_t", "gfp_t", "dev_t", "ino_t", "umode_t",
    "sector_t", "phys_addr_t", "dma_addr_t", "uintptr_t", "ulong", "uint", "u_int", "__kernel_size_t",
})


def _is_type_word(word: str) -> bool:
    return word in _TYPE_WORDS or word.endswith("_t")


class _Parser:
    """Recursive descent over C expression tokens; nodes are tuples (kind, ...)."""

    _BINARY: tuple = (("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", ">", "<=", ">="), ("<<", ">>"),
               ("+", "-"), ("*", "/", "%"))

    def __init__(self, tokens: list) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self, ahead: int = 0) -> tuple[str, Any] | None:
        at = self.pos + ahead
        return self.tokens[at] if at < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        if token is None:
            raise Unrenderable("print fmt argument ends early")
        self.pos += 1
        return token

    def expect(self, op: str) -> None:
        token = self.take()
        if token != ("op", op):
            raise Unrenderable(f"expected {op!r}, found {token[1]!r}")

    def is_op(self, op: str) -> bool:
        return self.peek() == ("op", op)

    def parse_all(self):
        node = self.ternary()
        if self.peek() is not None:
            raise Unrenderable(f"unexpected {self.peek()[1]!r} in a print fmt argument")
        return node

    def ternary(self):
        cond = self.binary(0)
        if self.is_op("?"):
            self.take()
            yes = self.ternary()
            self.expect(":")
            no = self.ternary()
            return ("cond", cond, yes, no)
        return cond

    def binary(self, level: int):
        if level == len(self._BINARY):
            return self.unary()
        left = self.binary(level + 1)
        ops = self._BINARY[level]
        while True:
            token = self.peek()
            if token is None or token[0] != "op" or token[1] not in ops:
                return left
            self.take()
            left = ("bin", token[1], left, self.binary(level + 1))

    def cast_type(self) -> str | None:
        """If a `(type)` starts here, consume it and return the type text."""
        if not self.is_op("("):
            return None
        words = []
        i = 1
        while True:
            token = self.peek(i)
            if token is None:
                return None
            if token == ("op", ")"):
                break
            if token[0] == "id" or token == ("op", "*"):
                words.append(token[1])
                i += 1
                continue
            return None
        if not words or words[0] == "*" or not _is_type_word(words[0]):
            return None
        self.pos += i + 1
        return " ".join(words)

    def unary(self):
        token = self.peek()
        if token is None:
            raise Unrenderable("print fmt argument ends early")
        if token[0] == "op" and token[1] in ("-", "+", "!", "~"):
            self.take()
            return ("un", token[1], self.unary())
        if token[0] == "op" and token[1] in ("*", "&"):
            raise Unrenderable(f"pointer operator {token[1]!r} in print fmt")
        if token == ("id", "sizeof"):
            self.take()
            self.expect("(")
            words = []
            if self.peek() and self.peek()[0] == "id" and _is_type_word(self.peek()[1]):
                while not self.is_op(")"):
                    words.append(self.take()[1])
                self.take()
                return ("sizeof_type", " ".join(words))
            inner = self.ternary()
            self.expect(")")
            return ("sizeof_expr", inner)
        ctype = self.cast_type()
        if ctype is not None:
            return ("cast", ctype, self.unary())
        return self.postfix()

    def postfix(self):
        node = self.primary()
        while True:
            if self.is_op("->"):
                self.take()
                kind, name = self.take()
                if kind != "id":
                    raise Unrenderable("-> without a field name")
                if node != ("id", "REC"):
                    raise Unrenderable("-> on something other than REC")
                node = ("field", name)
            elif self.is_op("["):
                self.take()
                index = self.ternary()
                self.expect("]")
                node = ("index", node, index)
            elif self.is_op("("):
                if node[0] != "id":
                    raise Unrenderable("call of an expression")
                self.take()
                args = []
                if not self.is_op(")"):
                    while True:
                        args.append(self.ternary())
                        if self.is_op(","):
                            self.take()
                            continue
                        break
                self.expect(")")
                node = ("call", node[1], args)
            elif self.is_op("."):
                raise Unrenderable("struct member access in print fmt")
            else:
                return node

    def primary(self):
        kind, value = self.take()
        if kind in ("num", "str", "id"):
            return (kind, value)
        if (kind, value) == ("op", "("):
            if self.is_op("{"):
                raise Unrenderable("statement expression in print fmt")
            node = self.ternary()
            self.expect(")")
            return node
        if (kind, value) == ("op", "{"):
            items = []
            while not self.is_op("}"):
                items.append(self.ternary())
                if self.is_op(","):
                    self.take()
            self.take()
            return ("init", items)
        raise Unrenderable(f"unexpected {value!r} in a print fmt argument")


def parse_expression(text: str):
    """The expression tree of one print fmt argument."""
    return _Parser(tokenize(text)).parse_all()


# ---------------------------------------------------------------------------------------------------
# printf conversions, as the kernel's vsprintf reads them

_SPEC_RE = re.compile(r"%(?P<flags>[-+ #0]*)(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?"
                      r"(?P<len>hh|h|ll|l|L|q|j|z|Z|t)?(?P<conv>[diouxXcspn%])")
_ALNUM_RE = re.compile(r"[A-Za-z0-9]*")


class Spec:
    """One conversion of a format string: flags, width/precision (int, '*' or None), length, kind."""

    __slots__ = ("conv", "ext", "flags", "length", "precision", "width")

    def __init__(self, flags: str, width, precision, length: str, conv: str, ext: str = "") -> None:
        self.flags = flags
        self.width = width
        self.precision = precision
        self.length = length
        self.conv = conv
        self.ext = ext

    def __repr__(self) -> str:
        return f"Spec({self.flags!r}, {self.width!r}, {self.precision!r}, {self.length!r}, {self.conv!r}, {self.ext!r})"


def parse_format_string(text: str) -> list:
    """Literal strings and Spec objects, in order. `%p` takes the alphanumerics after it (the kernel's
    extensions: %pS, %pI4, %pU...), as vsprintf does."""
    out: list = []
    pos = 0
    literal = []
    while pos < len(text):
        at = text.find("%", pos)
        if at < 0:
            literal.append(text[pos:])
            break
        literal.append(text[pos:at])
        m = _SPEC_RE.match(text, at)
        if m is None:
            # vsprintf prints an unknown conversion's text as is.
            literal.append("%")
            pos = at + 1
            continue
        pos = m.end()
        conv = m.group("conv")
        if conv == "%":
            literal.append("%")
            continue
        ext = ""
        if conv == "p":
            ext = _ALNUM_RE.match(text, pos).group()
            pos += len(ext)
        if "".join(literal):
            out.append("".join(literal))
        literal = []
        width = m.group("width")
        prec = m.group("prec")
        out.append(Spec(m.group("flags"), width if width in (None, "*") else int(width),
                        prec if prec in (None, "*") else int(prec or 0), m.group("len") or "", conv, ext))
    if literal and "".join(literal):
        out.append("".join(literal))
    return out


def _int_bits(length: str, long_size: int) -> int:
    if length == "hh":
        return 8
    if length == "h":
        return 16
    if length in ("l", "z", "Z", "t"):
        return 8 * long_size
    if length in ("ll", "L", "q", "j"):
        return 64
    return 32


def _pad(text: str, spec: Spec, width) -> str:
    if width is None:
        return text
    if width < 0:
        return text.ljust(-width)
    return text.ljust(width) if "-" in spec.flags else text.rjust(width)


def format_integer(value: int, spec: Spec, long_size: int = 8, width=None, precision=None) -> str:
    """One integer conversion (d i u o x X c) with C semantics: the length modifier truncates.
    `width`/`precision` override the spec's (needed for `*`)."""
    if width is None and isinstance(spec.width, int):
        width = spec.width
    if precision is None and isinstance(spec.precision, int):
        precision = spec.precision
    bits = _int_bits(spec.length, long_size)
    mask = (1 << bits) - 1
    value &= mask
    conv = spec.conv
    if conv in "di" and value >> (bits - 1):
        value -= 1 << bits
    if conv == "c":
        return _pad(chr(value & 0xFF), spec, width)
    flags = spec.flags
    if conv not in "di":
        flags = flags.replace("+", "").replace(" ", "")
    if width is not None and width < 0:
        flags += "-"
        width = -width
    if conv == "o" and "#" in flags:
        flags = flags.replace("#", "")
        body = "0" + format(value, "o") if value else "0"
        return _pad(body, Spec(flags, None, None, "", "s"), width)
    pattern = "%" + flags + ("" if width is None else str(width)) + \
        ("" if precision is None else "." + str(precision)) + ("d" if conv in "diu" else conv)
    return pattern % value


def format_string(text: str, spec: Spec, width=None, precision=None) -> str:
    if width is None and isinstance(spec.width, int):
        width = spec.width
    if precision is None and isinstance(spec.precision, int):
        precision = spec.precision
    if precision is not None:
        text = text[:precision]
    return _pad(text, spec, width)


# ---------------------------------------------------------------------------------------------------
# Symbols and printk formats

class Symbols:
    """Kernel address -> symbol, from /proc/kallsyms text (sizes as the distance to the next symbol).

    from_kallsyms() reads the text on first lookup: a kallsyms has some 100k lines, and most print fmts
    never look one up. Whether it has any symbol and the address of one name are answered from the
    few lines that can tell."""

    def __init__(self, entries: list[tuple[int, str, str | None]]) -> None:
        self._kallsyms: str | None = None
        self._load(entries)

    def _load(self, entries: list[tuple[int, str, str | None]]) -> None:
        entries = sorted((e for e in entries if e[0]), key=lambda e: e[0])
        self._by_name: dict[str, int] = {}
        for addr, name, _module in entries:
            self._by_name.setdefault(name, addr)
        self._addrs: list[int] = []
        self._names: list[tuple[str, str | None]] = []
        for addr, name, module in entries:
            if self._addrs and self._addrs[-1] == addr:
                continue                       # aliases: the first one listed wins, as kallsyms_lookup does
            self._addrs.append(addr)
            self._names.append((name, module))

    @classmethod
    def from_kallsyms(cls, text: str) -> Symbols:
        """Symbols of /proc/kallsyms text (all zero addresses, as an unprivileged read gives: none)."""
        symbols = cls.__new__(cls)
        symbols._kallsyms = text
        return symbols

    @staticmethod
    def _entries(lines) -> list[tuple[int, str, str | None]]:
        entries = []
        for line in lines:
            parts = line.split()
            if len(parts) < 3:
                continue
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            module = parts[3][1:-1] if len(parts) > 3 and parts[3].startswith("[") else None
            entries.append((addr, parts[2], module))
        return entries

    def _parsed(self) -> Symbols:
        if self._kallsyms is not None:
            self._load(self._entries(self._kallsyms.splitlines()))
            self._kallsyms = None
        return self

    def __len__(self) -> int:
        return len(self._parsed()._addrs)

    def __bool__(self) -> bool:
        if self._kallsyms is None:
            return bool(self._addrs)
        return any(entry[0] for line in self._kallsyms.splitlines() for entry in self._entries((line,)))

    def address_of(self, name: str) -> int | None:
        if self._kallsyms is not None:
            # The lowest address of the name, as the whole table keeps it.
            lines = [line for line in self._kallsyms.splitlines() if name in line]
            return min((a for a, n, _m in self._entries(lines) if a and n == name), default=None)
        return self._by_name.get(name)

    def lookup(self, addr: int) -> tuple[str, int, int, str | None] | None:
        """(name, offset, size, module) of the symbol holding addr, or None."""
        self._parsed()
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0 or i + 1 >= len(self._addrs):
            return None
        name, module = self._names[i]
        start = self._addrs[i]
        return name, addr - start, self._addrs[i + 1] - start, module

    def text(self, addr: int, with_offset: bool, backtrace: bool = False) -> str:
        """The kernel's sprint_symbol / sprint_symbol_no_offset text; 0x... when unknown."""
        addr &= MASK64
        found = self.lookup(addr - 1 if backtrace else addr)
        if found is None:
            return f"0x{addr:x}"
        name, offset, size, module = found
        if backtrace:
            offset += 1
        text = f"{name}+0x{offset:x}/0x{size:x}" if with_offset else name
        return f"{text} [{module}]" if module else text


# x86_64 (4-level paging) places the struct page array here unless KASLR moves it (arch/x86/include/asm/
# pgtable_64_types.h __VMEMMAP_BASE_L4); KASLR is off when the kernel text sits at its link address.
_X86_64_TEXT_LINK_ADDRESS = 0xFFFFFFFF81000000
_X86_64_VMEMMAP_BASE_L4 = 0xFFFFEA0000000000


def kernel_constants(btf: bytes | None = None, symbols: Symbols | None = None, machine: str = "x86_64",
                     five_level_paging: bool = False) -> dict:
    """Names a print fmt may use that the kernel did not expand: enum constants and struct sizes from BTF,
    and on x86_64 without KASLR (text at its link address, 4-level paging) `vmemmap_base`."""
    constants: dict = {}
    if btf:
        from rawtrace.btf_enums import read_btf
        enums, sizes = read_btf(btf)
        constants.update(enums)
        constants.update({"sizeof:" + name: size for name, size in sizes.items()})
    if machine == "x86_64" and not five_level_paging and symbols is not None and \
            symbols.address_of("_text") == _X86_64_TEXT_LINK_ADDRESS:
        constants["vmemmap_base"] = _X86_64_VMEMMAP_BASE_L4
    return constants


_PRINTK_LINE_RE = re.compile(r'^(0x[0-9a-fA-F]+)\s*:\s*"(.*)"\s*$')


def parse_printk_formats(text: str) -> dict[int, str]:
    """`0xADDR : "format"` lines (printk_formats) -> {address: format, C escapes undone}."""
    found = {}
    for line in text.splitlines():
        m = _PRINTK_LINE_RE.match(line)
        if m:
            # The kernel prints the string with \n, \t, \" escaped (trace_printk.c t_show).
            found[int(m.group(1), 16)] = _unescape(m.group(2))
    return found


# ---------------------------------------------------------------------------------------------------
# The kernel's print helpers (kernel/trace/trace_output.c)

def print_flags(value: int, delim: str, table: tuple, bits: int = 64) -> str:
    value &= (1 << bits) - 1
    parts = []
    for mask, name in table:
        if not value:
            break
        if value & mask != mask:
            continue
        value &= ~mask
        parts.append(name)
    if value:
        parts.append(f"0x{value:x}")
    return (delim or "").join(parts)


def print_symbolic(value: int, table: dict, bits: int = 64) -> str:
    value &= (1 << bits) - 1
    name = table.get(value)
    return name if name is not None else f"0x{value:x}"


def _as_bytes(value, element_size: int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, tuple):
        return b"".join((v & ((1 << (8 * element_size)) - 1)).to_bytes(element_size, "little") for v in value)
    if isinstance(value, int):
        raise Unrenderable("a pointer where a buffer was expected")
    raise Unrenderable(f"cannot take the bytes of {type(value).__name__}")


def print_hex(data: bytes, length: int, concatenate: bool) -> str:
    data = data[:max(0, length)]
    return ("" if concatenate else " ").join(f"{b:02x}" for b in data)


def print_array(data: bytes, count: int, element_size: int) -> str:
    out = []
    for i in range(max(0, count)):
        chunk = data[i * element_size:(i + 1) * element_size]
        if len(chunk) < element_size:
            break
        if element_size in (1, 2, 4, 8):
            out.append(f"0x{int.from_bytes(chunk, 'little'):x}")
        else:
            out.append(f"BAD SIZE:{element_size} 0x{chunk[0]:x}")
    return "{" + ",".join(out) + "}"


def bitmap_text(data: bytes, nr_bits: int) -> str:
    """vsprintf's %*pb: 32-bit hex chunks, most significant first, comma separated."""
    value = int.from_bytes(data, "little")
    chunk = nr_bits % 32 or 32
    out = []
    i = ((nr_bits + 31) // 32) * 32 - 32
    while i >= 0:
        part = (value >> i) & ((1 << chunk) - 1)
        out.append(f"{part:0{(chunk + 3) // 4}x}")
        chunk = 32
        i -= 32
    return ",".join(out)


def bitmap_list(data: bytes, nr_bits: int) -> str:
    """vsprintf's %*pbl: ranges like 0-3,8."""
    value = int.from_bytes(data, "little")
    out = []
    bit = 0
    while bit < nr_bits:
        if value >> bit & 1:
            start = bit
            while bit + 1 < nr_bits and value >> (bit + 1) & 1:
                bit += 1
            out.append(str(start) if start == bit else f"{start}-{bit}")
        bit += 1
    return ",".join(out)


def _ipv6_compressed(data: bytes) -> str:
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, 16, 2)]
    if words[:5] == [0] * 5 and words[5] == 0xFFFF:
        return "::ffff:" + ".".join(str(b) for b in data[12:16])
    best, best_len = -1, 1
    i = 0
    while i < 8:
        if words[i] == 0:
            j = i
            while j < 8 and words[j] == 0:
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    if best < 0:
        return ":".join(f"{w:x}" for w in words)
    head = ":".join(f"{w:x}" for w in words[:best])
    tail = ":".join(f"{w:x}" for w in words[best + best_len:])
    return f"{head}::{tail}"


def pointer_text(value, spec: Spec, symbols: Symbols | None, long_size: int, width=None, precision=None) -> str:
    """A %p conversion with its kernel extension (lib/vsprintf.c pointer())."""
    ext = spec.ext
    kind = ext[:1]
    if kind in ("S", "s", "F", "f", "B"):
        if not isinstance(value, int):
            raise Unrenderable("%pS of a non-address")
        if symbols is None:
            raise Unrenderable("%pS needs kallsyms")
        text = symbols.text(value, with_offset=kind in "SFB", backtrace=kind == "B")
        return format_string(text, spec, width, precision)
    if kind in ("", "x", "K"):
        if not isinstance(value, int):
            raise Unrenderable("%p of a non-address")
        digits = 2 * long_size
        value &= (1 << (8 * long_size)) - 1
        if width is None:
            return f"{value:0{digits}x}"
        return _pad(f"{value:x}", spec, width)
    if isinstance(value, int):
        raise Unrenderable(f"%p{ext} of an address whose memory is not in the record")
    data = _as_bytes(value, 1)
    if kind in ("I", "i"):
        version = ext[1:2]
        if version == "S" and len(data) >= 8:
            # A struct sockaddr: family (host order), port (network order), address.
            family = int.from_bytes(data[:2], "little")
            port = int.from_bytes(data[2:4], "big")
            if family == 2:
                text = ".".join(str(b) for b in data[4:8])
                text = f"{text}:{port}" if "p" in ext[2:] else text
            elif family == 10 and len(data) >= 24:
                addr = data[8:24]
                text = _ipv6_compressed(addr) if "c" in ext[2:] else \
                    ":".join(addr[i:i + 2].hex() for i in range(0, 16, 2))
                text = f"[{text}]:{port}" if "p" in ext[2:] else text
            else:
                raise Unrenderable(f"%p{ext} of address family {family}")
            return format_string(text, spec, width, precision)
        if version == "4" and len(data) >= 4:
            text = ".".join(str(b) for b in data[:4])
        elif version == "6" and len(data) >= 16:
            if "c" in ext[2:]:
                text = _ipv6_compressed(data[:16])
            else:
                sep = ":" if kind == "I" else ""
                text = sep.join(data[i:i + 2].hex() for i in range(0, 16, 2))
        else:
            raise Unrenderable(f"%p{ext} not supported")
        return format_string(text, spec, width, precision)
    if kind in ("M", "m") and len(data) >= 6:
        six = data[:6][::-1] if "R" in ext else data[:6]
        sep = "" if kind == "m" else ("-" if "F" in ext else ":")
        return format_string(sep.join(f"{b:02x}" for b in six), spec, width, precision)
    if kind == "U" and len(data) >= 16:
        order = ext[1:2] or "b"
        raw = data[:16]
        if order in "lL":
            raw = raw[3::-1] + raw[5:3:-1] + raw[7:5:-1] + raw[8:]
        h = raw.hex()
        text = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        return format_string(text.upper() if order in "BL" else text, spec, width, precision)
    if kind == "h":
        count = width if width is not None else 1
        sep = {"C": ":", "D": "-", "N": ""}.get(ext[1:2], " ")
        return sep.join(f"{b:02x}" for b in data[:max(0, min(count, 64))])
    if kind == "b":
        nr_bits = width if width is not None else 8 * len(data)
        return bitmap_list(data, nr_bits) if ext[1:2] == "l" else bitmap_text(data, nr_bits)
    raise Unrenderable(f"%p{ext} not supported")


def pointer_text_trace_cmd(value, spec: Spec, symbols: Symbols | None, long_size: int, width=None,
                           precision=None) -> str:
    """%p as libtraceevent (trace-cmd report) prints it: glibc's %p (0x..., "(nil)"), %pS as sym+0xoff
    without the size; the other extensions as the kernel does."""
    kind = spec.ext[:1]
    if kind in ("", "x", "K") and isinstance(value, int):
        value &= (1 << (8 * long_size)) - 1
        return format_string(f"0x{value:x}" if value else "(nil)", spec, width, precision)
    if kind in ("S", "s", "F", "f", "B") and isinstance(value, int):
        value &= MASK64
        found = symbols.lookup(value) if symbols is not None else None
        if found is None:
            text = f"0x{value:x}"
        else:
            text = f"{found[0]}+0x{found[1]:x}" if kind in "SFB" else found[0]
        return format_string(text, spec, width, precision)
    return pointer_text(value, spec, symbols, long_size, width, precision)


# ---------------------------------------------------------------------------------------------------
# Compiling an expression tree into Python code

_SIZEOF = {"char": 1, "short": 2, "int": 4, "long": 8, "long long": 8, "bool": 1, "_Bool": 1, "float": 4,
           "double": 8, "u8": 1, "s8": 1, "u16": 2, "s16": 2, "u32": 4, "s32": 4, "u64": 8, "s64": 8,
           "__u8": 1, "__s8": 1, "__u16": 2, "__s16": 2, "__u32": 4, "__s32": 4, "__u64": 8, "__s64": 8,
           "uint8_t": 1, "int8_t": 1, "uint16_t": 2, "int16_t": 2, "uint32_t": 4, "int32_t": 4,
           "uint64_t": 8, "int64_t": 8, "size_t": 8, "ssize_t": 8, "pid_t": 4, "gfp_t": 4, "dev_t": 4,
           "loff_t": 8, "umode_t": 2, "sector_t": 8, "__le16": 2, "__le32": 4, "__le64": 8, "__be16": 2,
           "__be32": 4, "__be64": 8, "ino_t": 8, "phys_addr_t": 8, "dma_addr_t": 8, "uintptr_t": 8,
           "ulong": 8, "uint": 4, "u_int": 4}


def _type_size(ctype: str, long_size: int) -> int | None:
    words = [w for w in ctype.split() if w not in ("const", "volatile", "signed", "unsigned")]
    if "*" in ctype:
        return long_size
    text = " ".join(words) or "int"
    if text in ("long", "long int"):
        return long_size
    if text in ("long long", "long long int"):
        return 8
    if text in ("short int",):
        return 2
    if text in ("size_t", "ssize_t", "ulong", "uintptr_t"):
        return long_size
    return _SIZEOF.get(text)


def _cast_code(ctype: str, code: str, long_size: int) -> str:
    """Python code for a C cast of an integer expression (truncate, sign-extend)."""
    words = ctype.split()
    if "*" in ctype:
        return f"(({code}) & {(1 << (8 * long_size)) - 1:#x})"
    if words[0] in ("struct", "union"):
        raise Unrenderable(f"cast to {ctype}")
    if words[0] == "enum":
        return code
    if ctype in ("bool", "_Bool"):
        return f"(1 if {code} else 0)"
    size = _type_size(ctype, long_size)
    if size is None:
        return code                              # an unknown typedef: keep the value
    bits = 8 * size
    plain = [w for w in words if w not in ("const", "volatile")]
    unsigned = "unsigned" in plain or plain[0].startswith(("u", "__u", "__le", "__be")) or \
        plain[0] in ("size_t", "gfp_t", "dev_t", "umode_t", "sector_t", "ino_t", "phys_addr_t",
                     "dma_addr_t", "uintptr_t", "ulong", "uint", "u_int")
    if unsigned:
        return f"(({code}) & {(1 << bits) - 1:#x})"
    return f"_sext({code}, {bits})"


def _sext(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _cdiv(a: int, b: int) -> int:
    if b == 0:
        raise Unrenderable("division by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _cmod(a: int, b: int) -> int:
    return a - _cdiv(a, b) * b


def _index(seq, i: int):
    if isinstance(seq, str):
        raw = seq.encode("utf-8", "surrogateescape")
        return raw[i] if 0 <= i < len(raw) else 0
    if isinstance(seq, int):
        raise Unrenderable("indexing an address")
    return seq[i] if 0 <= i < len(seq) else 0


def _truth(value) -> bool:
    # A string (a pointer in C) is true even when empty.
    return True if isinstance(value, str) else bool(value)


class _Compiler:
    """Turns expression nodes into Python expression text over `f` (the fields dict) and `e` (the event).

    Each method returns (code, type) with type one of "int", "str", "seq" (with an element size), "any"."""

    def __init__(self, fmt: EventFormat, namespace: dict, long_size: int, symbols, printk_formats,
                 constants=None) -> None:
        self.constants = constants
        self.fmt = fmt
        self.ns = namespace
        self.long_size = long_size
        self.symbols = symbols
        self.printk = printk_formats
        self.fields = {f.name: f for f in fmt.all_fields}
        self.field_uses = 0
        self.exact: dict[str, tuple[int, bool]] = {}     # code -> (bits, signed) of plain field reads

    def const(self, value) -> str:
        name = f"_k{len(self.ns)}"
        self.ns[name] = value
        return name

    def constant(self, node) -> Any:
        """Evaluate a constant expression at compile time (flag tables)."""
        before = self.field_uses
        code, _kind = self.expr(node)
        if self.field_uses != before:
            raise Unrenderable("a non-constant value in a flag or symbol table")
        return eval(code, dict(self.ns))

    def field_code(self, name: str) -> tuple[str, Any]:
        field = self.fields.get(name)
        if field is None:
            raise Unrenderable(f"print fmt uses a field {name!r} the format does not have")
        self.field_uses += 1
        if name == "common_pid":
            return "e.pid", "int"
        if name == "common_flags":
            return "e.flags", "int"
        if name == "common_preempt_count":
            return "e.preempt_count", "int"
        if name == "common_type":
            return "e.id", "int"
        kind = field.kind
        code = f"f[{name!r}]"
        if kind in (FieldKind.INTEGER, FieldKind.POINTER):
            if field.size in (1, 2, 4, 8):
                # The decoder gives this value already truncated and signed as the field says.
                self.exact[code] = (8 * field.size, kind == FieldKind.INTEGER and field.signed)
            return code, "int"
        if kind in (FieldKind.STRING, FieldKind.FLEX_STRING, FieldKind.DATA_LOC_STRING, FieldKind.REL_LOC_STRING):
            return code, "str"
        return code, ("seq", field.element_size or 1)

    def expr(self, node) -> tuple[str, Any]:
        kind = node[0]
        if kind == "num":
            return repr(node[1]), "int"
        if kind == "str":
            return repr(node[1]), "str"
        if kind == "field":
            return self.field_code(node[1])
        if kind == "id":
            value = self.constants.get(node[1]) if self.constants is not None else None
            if isinstance(value, int):
                return repr(value), "int"
            raise Unrenderable(f"unknown name {node[1]!r} in print fmt")
        if kind == "un":
            code, _t = self.expr(node[2])
            op = node[1]
            if op == "!":
                return f"(0 if _truth({code}) else 1)", "int"
            if op == "~":
                return f"(~{code})", "int"
            return f"({op}{code})", "int"
        if kind == "bin":
            return self.binary(node)
        if kind == "cond":
            cond, _t = self.expr(node[1])
            yes, yes_type = self.expr(node[2])
            no, no_type = self.expr(node[3])
            test = cond if _t == "int" else f"_truth({cond})"
            return f"({yes} if {test} else {no})", (yes_type if yes_type == no_type else "any")
        if kind == "cast":
            code, value_type = self.expr(node[2])
            ctype = node[1]
            if value_type == "int":
                m = re.fullmatch(r"((?:struct|union) \w+) \*", ctype)
                size = None
                if m and self.constants is not None:
                    size = self.constants.get("sizeof:" + m.group(1))
                if m:
                    # Pointer arithmetic on a struct pointer needs the struct's size (BTF, when given);
                    # without it the pointer can be printed but not moved.
                    return _cast_code("void *", code, self.long_size), ("ptr", size if isinstance(size, int) else None)
                return _cast_code(ctype, code, self.long_size), "int"
            if isinstance(value_type, tuple) and value_type[0] == "ptr":
                return code, "int"
            return code, value_type              # (char *)__get_dynamic_array(x) and the like
        if kind == "sizeof_type":
            size = _type_size(node[1], self.long_size)
            if size is None:
                raise Unrenderable(f"sizeof({node[1]})")
            return str(size), "int"
        if kind == "sizeof_expr":
            inner = node[1]
            if inner[0] == "field":
                field = self.fields.get(inner[1])
                if field is None:
                    raise Unrenderable(f"sizeof of unknown field {inner[1]}")
                return str(field.size), "int"
            if inner[0] == "index" and inner[1][0] == "field":
                field = self.fields.get(inner[1][1])
                if field is not None and field.element_size:
                    return str(field.element_size), "int"
            raise Unrenderable("sizeof of an expression")
        if kind == "index":
            seq, _t = self.expr(node[1])
            index, _i = self.expr(node[2])
            target = node[1]
            if target[0] == "field" and node[2][0] == "num":
                field = self.fields.get(target[1])
                if field is not None and field.kind == FieldKind.ARRAY and field.count and \
                        0 <= node[2][1] < field.count and field.element_size in (1, 2, 4, 8) and \
                        field.count * field.element_size == field.size:
                    code = f"{seq}[{node[2][1]}]"
                    self.exact[code] = (8 * field.element_size, field.signed)
                    return code, "int"
            return f"_index({seq}, {index})", "int"
        if kind == "call":
            return self.call(node[1], node[2])
        if kind == "init":
            raise Unrenderable("an initializer list outside a flag table")
        raise Unrenderable(f"unsupported expression {kind}")

    def binary(self, node) -> tuple[str, Any]:
        op = node[1]
        left, left_type = self.expr(node[2])
        right, right_type = self.expr(node[3])
        if op == "&&":
            return f"(1 if _truth({left}) and _truth({right}) else 0)", "int"
        if op == "||":
            return f"(1 if _truth({left}) or _truth({right}) else 0)", "int"
        if isinstance(left_type, tuple) and left_type[0] == "ptr" and right_type == "int" and op in "+-":
            if left_type[1] is None:
                raise Unrenderable("pointer arithmetic on a struct whose size is unknown (no BTF)")
            return f"(({left} {op} ({right}) * {left_type[1]}) & {MASK64:#x})", "int"
        if left_type != "int" or right_type != "int":
            raise Unrenderable(f"operator {op} on a non-integer")
        if op == "/":
            return f"_cdiv({left}, {right})", "int"
        if op == "%":
            return f"_cmod({left}, {right})", "int"
        if op in ("==", "!=", "<", ">", "<=", ">="):
            return f"int({left} {op} {right})", "int"
        if op == "<<":
            return f"(({left} << {right}) & {MASK64:#x})", "int"
        return f"({left} {op} {right})", "int"

    def dynamic_field(self, args, helper: str):
        if len(args) != 1 or args[0][0] not in ("id", "field"):
            raise Unrenderable(f"{helper} of something other than a field")
        name = args[0][1]
        field = self.fields.get(name)
        if field is None:
            raise Unrenderable(f"{helper} of unknown field {name!r}")
        return field

    def table(self, items) -> list[tuple[int, str]]:
        out = []
        for item in items:
            if item[0] != "init":
                raise Unrenderable("a malformed flag or symbol table entry")
            if not item[1]:
                continue                         # `{ }`: an empty table
            if len(item[1]) != 2:
                raise Unrenderable("a malformed flag or symbol table entry")
            name = item[1][1]
            if name[0] != "str":
                if self.constant(name) == 0:
                    break                        # a NULL name ends the table, as in the kernel's loop
                raise Unrenderable("a flag or symbol table name that is not a string")
            out.append((self.constant(item[1][0]), name[1]))
        return out

    def call(self, name: str, args: list) -> tuple[str, Any]:
        if name in ("__print_flags", "__print_flags_u64"):
            if len(args) < 2:
                raise Unrenderable(f"{name} needs a value and a delimiter")
            value, _t = self.expr(args[0])
            delim, delim_type = self.expr(args[1])
            if delim_type != "str":
                raise Unrenderable("__print_flags delimiter is not a string")
            bits = 64 if name.endswith("u64") else 8 * self.long_size
            table = tuple((mask & MASK64, text) for mask, text in self.table(args[2:]))
            return f"_flags({value}, {delim}, {self.const(table)}, {bits})", "str"
        if name in ("__print_symbolic", "__print_symbolic_u64"):
            if not args:
                raise Unrenderable(f"{name} needs a value")
            value, _t = self.expr(args[0])
            bits = 64 if name.endswith("u64") else 8 * self.long_size
            table: dict[int, str] = {}
            for key, text in self.table(args[1:]):
                table.setdefault(key & ((1 << bits) - 1), text)     # the first match wins
            return f"_symbolic({value}, {self.const(table)}, {bits})", "str"
        if name in ("__get_str", "__get_rel_str"):
            field = self.dynamic_field(args, name)
            code, kind = self.field_code(field.name)
            return (code, "str") if kind == "str" else (f"_bytes_str({code})", "str")
        if name in ("__get_dynamic_array", "__get_rel_dynamic_array", "__get_sockaddr", "__get_rel_sockaddr"):
            field = self.dynamic_field(args, name)
            return self.field_code(field.name)
        if name in ("__get_dynamic_array_len", "__get_rel_dynamic_array_len"):
            field = self.dynamic_field(args, name)
            code, kind = self.field_code(field.name)
            esize = kind[1] if isinstance(kind, tuple) else 1
            return f"_byte_len({code}, {esize})", "int"
        if name in ("__get_bitmask", "__get_rel_bitmask", "__get_cpumask", "__get_rel_cpumask"):
            field = self.dynamic_field(args, name)
            code, kind = self.field_code(field.name)
            esize = kind[1] if isinstance(kind, tuple) else 1
            return f"_bitmask({code}, {esize})", "str"
        if name in ("__print_hex", "__print_hex_str"):
            if len(args) != 2:
                raise Unrenderable(f"{name} needs a buffer and a length")
            buf, kind = self.expr(args[0])
            length, _t = self.expr(args[1])
            esize = kind[1] if isinstance(kind, tuple) else 1
            concatenate = name == "__print_hex_str"
            return f"_hex(_as_bytes({buf}, {esize}), {length}, {concatenate})", "str"
        if name == "__print_array":
            if len(args) != 3:
                raise Unrenderable("__print_array needs an array, a count and an element size")
            buf, kind = self.expr(args[0])
            count, _t = self.expr(args[1])
            size = self.constant(args[2])
            esize = kind[1] if isinstance(kind, tuple) else 1
            return f"_array(_as_bytes({buf}, {esize}), {count}, {size})", "str"
        if name == "__builtin_expect" and len(args) == 2:
            return self.expr(args[0])
        if name == "__builtin_constant_p":
            return "0", "int"
        raise Unrenderable(f"helper {name}() is not supported")


_HELPERS = {
    "_sext": _sext, "_cdiv": _cdiv, "_cmod": _cmod, "_index": _index, "_truth": _truth, "_flags": print_flags,
    "_symbolic": print_symbolic, "_as_bytes": _as_bytes, "_hex": print_hex, "_array": print_array,
    "Unrenderable": Unrenderable,
    "_bytes_str": lambda v: _as_bytes(v, 1).partition(b"\0")[0].decode("utf-8", "surrogateescape"),
    "_byte_len": lambda v, esize: (len(v.encode("utf-8", "surrogateescape")) + 1 if isinstance(v, str)
                                   else len(v) * (1 if isinstance(v, (bytes, bytearray)) else esize)),
}


def _bitmask_helper(long_size: int):
    def bitmask(value, esize: int) -> str:
        data = _as_bytes(value, esize)
        return bitmap_text(data, 8 * len(data))
    return bitmask


def _string_arg(printk: dict | None):
    def string(value) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, int):
            if value == 0:
                return "(null)"
            if printk is not None:
                found = printk.get(value & MASK64)
                if found is not None:
                    return found
            raise Unrenderable(f"%s of kernel address {value & MASK64:#x} not in printk_formats")
        if isinstance(value, (bytes, bytearray, tuple)):
            return _as_bytes(value, 1).partition(b"\0")[0].decode("utf-8", "surrogateescape")
        raise Unrenderable("%s of an unknown value")
    return string


def _percent_parts(pieces: list, arg_codes: list[tuple[str, Any]], namespace: dict, long_size: int,
                   exact: dict, escaped: bool = False) -> tuple[str, list[str]] | None:
    """The whole format as one Python `%` template and its value expressions, when every conversion means
    the same there (no `*` widths, no `%#o`); integer values masked or sign-extended to the conversion's
    width unless the field already is exactly that. None when it cannot be done.

    `escaped`: the template gives the text render_event.safe_text makes of it. Escaping works character
    by character, so escaping the pieces is escaping the whole: literals are escaped here, string and
    pointer values when formatted (`_safe_value`); integer conversions print nothing to escape. None
    also where a piece's escape would move its padding or cut (a %c, a %s with width or precision)."""
    parts: list[str] = []
    values: list[str] = []
    args = list(arg_codes)
    for piece in pieces:
        if isinstance(piece, str):
            parts.append((safe_text(piece) if escaped else piece).replace("%", "%%"))
            continue
        conv = piece.conv
        if piece.width == "*" or piece.precision == "*" or conv == "n" or not args:
            return None
        code, kind = args.pop(0)
        width = "" if piece.width is None else str(piece.width)
        precision = "" if piece.precision is None else f".{piece.precision}"
        if conv == "s":
            if escaped and (width or precision):
                return None
            flags = "-" if "-" in piece.flags else ""
            parts.append(f"%{flags}{width}{precision}s")
            value = code if kind == "str" else f"_string({code})"
            values.append(f"_safe_value({value})" if escaped else value)
        elif conv == "p":
            spec_name = f"_s{len(namespace)}"
            namespace[spec_name] = piece
            parts.append("%s")
            value = f"_ptr({code}, {spec_name}, _symbols, {long_size}, None, None)"
            values.append(f"_safe_value({value})" if escaped else value)
        elif conv == "c":
            if kind != "int" or escaped:
                return None
            parts.append(f"%{'-' if '-' in piece.flags else ''}{width}c")
            values.append(f"(({code}) & 255)")
        elif conv in "diuxXo":
            if kind != "int" or (conv == "o" and "#" in piece.flags):
                return None
            bits = _int_bits(piece.length, long_size)
            signed = conv in "di"
            flags = piece.flags if signed else piece.flags.replace("+", "").replace(" ", "")
            parts.append(f"%{flags}{width}{precision}{'d' if conv in 'diu' else conv}")
            known = exact.get(code)
            if known is not None and (known == (bits, signed) or
                                      (known[0] < bits and (signed or not known[1]))):
                values.append(code)             # already the value the conversion would print
            elif signed:
                values.append(f"_sext({code}, {bits})")
            else:
                values.append(f"(({code}) & {(1 << bits) - 1:#x})")
        else:
            return None
    if args:
        return None
    return "".join(parts), values


def _percent_format(pieces: list, arg_codes: list[tuple[str, Any]], namespace: dict, long_size: int,
                    exact: dict) -> str | None:
    """_percent_parts as one Python expression; None when it cannot be done."""
    found = _percent_parts(pieces, arg_codes, namespace, long_size, exact)
    if found is None:
        return None
    template, values = found
    if not values:
        return repr(template.replace("%%", "%"))
    name = f"_pct{len(namespace)}"
    namespace[name] = template
    return f"{name} % ({', '.join(values)},)"


def compile_format(fmt_string: str, arg_codes: list[tuple[str, Any]], namespace: dict, long_size: int,
                   symbols, printk, exact: dict | None = None) -> str:
    """Python expression text formatting `fmt_string` with the compiled argument expressions."""
    pieces = parse_format_string(fmt_string)
    fast = _percent_format(pieces, arg_codes, namespace, long_size, exact or {})
    if fast is not None:
        return fast
    args = list(arg_codes)
    out: list[str] = []

    def next_arg() -> tuple[str, Any]:
        if not args:
            raise Unrenderable("print fmt has fewer arguments than conversions")
        return args.pop(0)

    for piece in pieces:
        if isinstance(piece, str):
            out.append(repr(piece))
            continue
        width = precision = "None"
        if piece.width == "*":
            width = next_arg()[0]
        elif piece.width is not None:
            width = str(piece.width)
        if piece.precision == "*":
            precision = next_arg()[0]
        elif piece.precision is not None:
            precision = str(piece.precision)
        if piece.conv == "n":
            continue
        spec_name = f"_s{len(namespace)}"
        namespace[spec_name] = piece
        code, kind = next_arg()
        conv = piece.conv
        if conv == "s":
            value = code if kind == "str" else f"_string({code})"
            if width == "None" and precision == "None":
                out.append(value)
            else:
                out.append(f"_fstr({value}, {spec_name}, {width}, {precision})")
        elif conv == "p":
            out.append(f"_ptr({code}, {spec_name}, _symbols, {long_size}, {width}, {precision})")
        else:
            if kind != "int":
                code = f"_intarg({code})"
            simple = piece.flags == "" and width == "None" and precision == "None"
            bits = _int_bits(piece.length, long_size)
            if simple and conv in "ux":
                out.append(f"format({code} & {(1 << bits) - 1:#x}, {'d' if conv == 'u' else 'x'!r})")
            elif simple and conv in "di" and bits == 64:
                out.append(f"str(_sext({code}, 64))")
            else:
                out.append(f"_fint({code}, {spec_name}, {long_size}, {width}, {precision})")
    if args:
        raise Unrenderable("print fmt has more arguments than conversions")
    return " + ".join(out) if out else "''"


def _intarg(value) -> int:
    if isinstance(value, int):
        return value
    raise Unrenderable("a string where a number was expected")


def _compiled_args(fmt: EventFormat, printk_formats: dict | None, symbols: Symbols | None, long_size: int,
                   constants: dict | None, style: str) -> tuple[dict, list[tuple[str, Any]], dict]:
    """(namespace, [(code, kind)] of the print fmt's arguments, exact-width reads) of one format."""
    if fmt.print_fmt_string is None:
        raise Unrenderable("the format has no print fmt")
    namespace: dict = dict(_HELPERS)
    namespace.update({"_bitmask": _bitmask_helper(long_size), "_string": _string_arg(printk_formats),
                      "_fstr": format_string, "_fint": format_integer,
                      "_ptr": pointer_text_trace_cmd if style == "trace-cmd" else pointer_text,
                      "_symbols": symbols, "_intarg": _intarg})
    compiler = _Compiler(fmt, namespace, long_size, symbols, printk_formats, constants)
    arg_codes = []
    for arg in fmt.print_fmt_args:
        arg_codes.append(compiler.expr(parse_expression(arg)))
    return namespace, arg_codes, compiler.exact


def renderer(fmt: EventFormat, printk_formats: dict | None = None, symbols: Symbols | None = None,
             long_size: int = 8, constants: dict | None = None, style: str = "kernel") -> Callable:
    """fn(event) -> the text the event's print fmt produces. Raises Unrenderable if it cannot be compiled.

    `constants` resolves names the kernel left unexpanded in print fmts (enum constants: see
    rawtrace.btf_enums). `style` "trace-cmd" prints %p as libtraceevent does."""
    namespace, arg_codes, exact = _compiled_args(fmt, printk_formats, symbols, long_size, constants, style)
    body = compile_format(fmt.print_fmt_string, arg_codes, namespace, long_size, symbols, printk_formats, exact)
    source = f"def render(e):\n    f = e.fields\n    return {body}\n"
    # Generated from the parsed expression tree: literals go in through repr(), field names only as
    # dict keys; none of the format's own text is executed.
    code = compile(source, f"<print fmt {fmt.system}:{fmt.name}>", "exec")
    exec(code, namespace)  # noqa: S102
    return namespace["render"]


def escaped_template(fmt: EventFormat, printk_formats: dict | None = None, symbols: Symbols | None = None,
                     long_size: int = 8, constants: dict | None = None,
                     style: str = "kernel") -> BodyCode | None:
    """What safe_text(renderer(fmt, ...)(event)) gives, as a `%` template and its value expressions over
    `e` and `f` (render_event.BodyCode), for code that builds a whole line in one operation. None when
    the print fmt is not one `%` operation or its pieces cannot be escaped apart (see _percent_parts).
    Evaluating it raises where the renderer raises. Raises Unrenderable as renderer() does."""
    namespace, arg_codes, exact = _compiled_args(fmt, printk_formats, symbols, long_size, constants, style)
    found = _percent_parts(parse_format_string(fmt.print_fmt_string), arg_codes, namespace, long_size, exact,
                           escaped=True)
    if found is None:
        return None
    namespace["_safe_value"] = _safe_value
    return BodyCode(found[0], tuple(found[1]), namespace)


def _safe_value(value) -> str:
    """A %s value escaped as it prints (`%s` takes str() of what is not a string)."""
    return safe_text(value if value.__class__ is str else str(value))


# ---------------------------------------------------------------------------------------------------
# trace_printk: binary arguments (vbin_printf / bstr_printf)

def bprint_text(fmt_string: str, data: bytes, symbols: Symbols | None = None, long_size: int = 8) -> str:
    """Format `fmt_string` with the arguments packed in `data` the way vbin_printf stores them."""
    pos = 0
    out: list[str] = []

    def get(size: int) -> int:
        nonlocal pos
        pos = (pos + (3 if size == 8 else size - 1)) & ~(3 if size == 8 else size - 1)
        if pos + size > len(data):
            raise Unrenderable("bprint arguments end early")
        value = int.from_bytes(data[pos:pos + size], "little")
        pos += size
        return value

    def get_string() -> str:
        nonlocal pos
        end = data.find(b"\0", pos)
        if end < 0:
            end = len(data)
        text = data[pos:end].decode("utf-8", "surrogateescape")
        pos = end + 1
        return text

    for piece in parse_format_string(fmt_string):
        if isinstance(piece, str):
            out.append(piece)
            continue
        width = precision = None
        if piece.width == "*":
            width = _sext(get(4), 32)
        elif piece.width is not None:
            width = piece.width
        if piece.precision == "*":
            precision = max(0, _sext(get(4), 32))
        elif piece.precision is not None:
            precision = piece.precision
        conv = piece.conv
        if conv == "n":
            continue
        if conv == "s":
            out.append(format_string(get_string(), piece, width, precision))
        elif conv == "p":
            if piece.ext[:1] in ("", "S", "s", "x", "K", "e", "F", "f", "B"):
                out.append(pointer_text(get(long_size), piece, symbols, long_size, width, precision))
            else:
                out.append(get_string())         # other extensions were printed into the buffer
        elif conv == "c":
            out.append(format_integer(get(1), piece, long_size, width, precision))
        else:
            bits = _int_bits(piece.length, long_size)
            value = get(max(1, bits // 8) if bits < 32 else (8 if bits == 64 else 4))
            out.append(format_integer(value, piece, long_size, width, precision))
    return "".join(out)


# ---------------------------------------------------------------------------------------------------
# The event text as the kernel's trace file shows it

def _raw_fields(event) -> str:
    return fields_text(event.fields, event.format)


# What a compiled renderer raises for one event it cannot render (the event falls back to raw fields).
RENDER_ERRORS = (Unrenderable, KeyError, TypeError, ValueError, IndexError, OverflowError)


class TextRenderer:
    """Event text from print fmts, compiled once per format; raw fields for what cannot be rendered.

    ``fallbacks`` counts events rendered as raw fields, per "system:event"; ``reasons`` keeps why.
    Text is escaped for a terminal unless ``escape=False`` (which gives the kernel's own bytes)."""

    def __init__(self, printk_formats: dict | None = None, symbols: Symbols | None = None, long_size: int = 8,
                 style: str = "kernel", constants: dict | None = None, escape: bool = True,
                 load: Callable[[], tuple[dict | None, Symbols | None, dict | None]] | None = None) -> None:
        if style not in ("kernel", "trace-cmd"):
            raise ValueError(f"unknown style {style!r}")
        # With `load`, printk_formats, symbols and constants come from it at their first use (see
        # __getattr__): reading kallsyms and BTF costs a live trace a tenth of a second, and a trace of
        # syscalls alone never needs them.
        self._load = load
        if load is None:
            self.printk_formats = printk_formats
            self.symbols = symbols
            self.constants = constants
        self.long_size = long_size
        self.style = style
        self.escape = escape                   # False: the kernel's bytes as they are (oracle comparisons)
        self._safe = safe_text
        self.fallbacks: Counter = Counter()
        self.reasons: dict[str, str] = {}
        # id -> (format, its renderer or None, True when that is not the print fmt's own renderer)
        self._cache: dict[int, tuple[EventFormat, Callable | None, bool]] = {}
        self._nameless: set[int] = set()

    def __getattr__(self, name: str):
        # Only reached while a lazy renderer's three tables are still unread.
        load = self.__dict__.get("_load")
        if load is None or name not in ("printk_formats", "symbols", "constants"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self._load = None
        self.printk_formats, self.symbols, self.constants = load()
        return self.__dict__[name]

    def _compile(self, fmt: EventFormat) -> tuple[Callable | None, bool]:
        name = fmt.full_name
        special = self._special(fmt)
        if special is not None:
            if fmt.system == "syscalls":
                self._nameless.add(fmt.id)     # the kernel prints these without the event name
            return special, True
        try:
            return renderer(fmt, self.printk_formats, self.symbols, self.long_size, self.constants,
                            self.style), False
        except (Unrenderable, RecursionError, SyntaxError, ValueError) as exc:
            self.reasons[name] = str(exc)
            return None, False

    def _special(self, fmt: EventFormat) -> Callable | None:
        """The events whose `trace` text comes from C code in the kernel rather than from their print fmt."""
        if fmt.system == "ftrace" and fmt.name in ("print", "bprint", "bputs"):
            return self._ftrace_text(fmt.name)
        if self.style == "kernel" and fmt.fields and fmt.fields[0].name in ("__probe_ip", "__probe_func"):
            return self._probe_text(fmt)
        if self.style != "kernel" or fmt.system != "syscalls":
            return None
        if fmt.name.startswith("sys_enter_"):
            if any(f.kind not in (FieldKind.INTEGER, FieldKind.POINTER) for f in fmt.fields):
                # 6.19+ events carrying user strings (__filename_val...): how print_syscall_enter shows
                # them is not confirmed here, so their print fmt is used instead.
                return None
            call = "sys_" + fmt.name[len("sys_enter_"):]
            names = [f.name for f in fmt.fields if f.name != "__syscall_nr"]
            mask = (1 << (8 * self.long_size)) - 1

            def enter(e, call=call, names=names, mask=mask) -> str:
                # print_syscall_enter: "%lu" below 10, else "0x%lx".
                f = e.fields
                return call + "(" + ", ".join(f"{n}: {v}" if (v := f[n] & mask) < 10 else f"{n}: 0x{v:x}"
                                              for n in names) + ")"
            return enter
        if fmt.name.startswith("sys_exit_"):
            call = "sys_" + fmt.name[len("sys_exit_"):]

            def exit_(e, call=call) -> str:
                return f"{call} -> 0x{e.fields['ret'] & MASK64:x}"
            return exit_
        return None

    def _probe_text(self, fmt: EventFormat) -> Callable | None:
        """kprobe/uprobe events: the kernel prints the probed address its own way (print_uprobe_event,
        print_kprobe_event: 0x... for user addresses, sym+off/size for kernel ones; a return probe as
        "(return address <- function)", the print fmt has them the other way round), then the arguments
        as the print fmt says."""
        text = fmt.print_fmt_string or ""
        ret = fmt.fields[0].name == "__probe_func"
        head = "(%lx <- %lx)" if ret else "(%lx)"
        if not text.startswith(head) or len(fmt.print_fmt_args) < (2 if ret else 1):
            return None
        skip = 2 if ret else 1
        try:
            rest = renderer(fmt._replace(print_fmt_string=text[len(head):],
                                                print_fmt_args=fmt.print_fmt_args[skip:]),
                            self.printk_formats, self.symbols, self.long_size, self.constants, self.style)
        except (Unrenderable, RecursionError, SyntaxError, ValueError) as exc:
            self.reasons[fmt.full_name] = str(exc)
            return None
        symbols = self.symbols

        def address(value: int, with_offset: bool) -> str:
            value &= MASK64
            if value >> 63:
                if symbols is None:
                    raise Unrenderable("a kernel probe address needs kallsyms")
                return symbols.text(value, with_offset=with_offset)
            return f"0x{value:x}"

        if ret:
            def probe_ret(e) -> str:
                f = e.fields
                return f"({address(f['__probe_ret_ip'], True)} <- {address(f['__probe_func'], False)}){rest(e)}"
            return probe_ret

        def probe(e) -> str:
            return f"({address(e.fields['__probe_ip'], True)}){rest(e)}"
        return probe

    def _ip_text(self, ip: int) -> str:
        if not ip:
            return "0"
        if self.symbols is None:
            raise Unrenderable("the caller's address needs kallsyms")
        return self.symbols.text(ip, with_offset=False)

    def _ftrace_text(self, kind: str) -> Callable:
        def render(e) -> str:
            f = e.fields
            if kind == "print":
                text = f["buf"]
            elif kind == "bputs":
                text = self._string_at(f["str"])
            else:
                fmt_string = self._string_at(f["fmt"])
                words = f["buf"]
                data = _as_bytes(words, 4) if not isinstance(words, bytes) else words
                text = bprint_text(fmt_string, data, self.symbols, self.long_size)
            return f"{self._ip_text(f['ip'])}: {text}"
        return render

    def _string_at(self, addr: int) -> str:
        if self.printk_formats is None:
            raise Unrenderable("a trace_printk format needs printk_formats")
        text = self.printk_formats.get(addr & MASK64)
        if text is None:
            raise Unrenderable(f"no printk format at {addr & MASK64:#x}")
        return text

    def _cached(self, fmt: EventFormat) -> tuple[EventFormat, Callable | None, bool]:
        cached = self._cache.get(fmt.id)
        if cached is None or cached[0] is not fmt:
            cached = (fmt, *self._compile(fmt))
            self._cache[fmt.id] = cached
        return cached

    def _renderer_for(self, fmt: EventFormat) -> Callable | None:
        return self._cached(fmt)[1]

    def _text(self, event) -> tuple[str, bool]:
        """(text, True) from the print fmt, unescaped; (raw fields, False), already escaped."""
        render = self._renderer_for(event.format)
        if render is not None:
            try:
                return render(event), True
            except RENDER_ERRORS as exc:
                self.reasons.setdefault(event.format.full_name, str(exc) or type(exc).__name__)
        self.fallbacks[event.format.full_name] += 1
        return _raw_fields(event), False

    def body(self, event) -> str:
        """The event's text (its print fmt applied), or its raw fields when that cannot be done. With
        `escape` (the default) control characters and undecodable bytes are shown escaped
        (render_event.safe_text): strings in events come from traced programs."""
        text, rendered = self._text(event)
        return self._safe(text) if rendered and self.escape else text

    def body_code(self, fmt: EventFormat) -> BodyCode:
        """body() of this format's events as render_event.BodyCode, for code that builds whole lines in
        one operation: the print fmt's own `%` template where it gives the escaped text as it is (see
        escaped_template), else a call of body(). Evaluating it raises RENDER_ERRORS for an event that
        body() shows as raw fields: the caller then calls body(), which counts the fallback."""
        _fmt, render, special = self._cached(fmt)
        if self.escape and render is not None and not special:
            try:
                found = escaped_template(fmt, self.printk_formats, self.symbols, self.long_size, self.constants,
                                         self.style)
            except (Unrenderable, RecursionError, SyntaxError, ValueError):
                found = None
            if found is not None:
                return found
        return BodyCode("%s", ("_body(e)",), {"_body": self.body}, pure=False)

    def line_body(self, event) -> str:
        """What the kernel's `trace` file shows after the time stamp: `name: text` (syscall events and the
        ftrace ones print without the name, as the kernel does)."""
        fmt = event.format
        text, rendered = self._text(event)
        if fmt.system == "ftrace" and fmt.name in ("print", "bprint", "bputs"):
            text = text.removesuffix("\n")     # the line's own newline
        if rendered and self.escape:
            text = self._safe(text)
        if fmt.system == "ftrace" and fmt.name in ("print", "bprint", "bputs"):
            return text
        if fmt.id in self._nameless and self._cache[fmt.id][0] is fmt:
            return text
        return f"{fmt.name}: {text}"

    def fallback_count(self) -> int:
        return sum(self.fallbacks.values())



# ---------------------------------------------------------------------------------------------------
# Ready-made renderers for the two usual sources (the only functions here that read files)

def renderer_for_host(host=None, tracefs=None, style: str = "kernel", escape: bool = True) -> TextRenderer:
    """A TextRenderer with this machine's printk_formats, kallsyms and BTF enum constants (each optional:
    what cannot be read is left out, and events needing it fall back to raw fields). They are read when
    an event's text first needs them."""
    if host is None:
        from rawtrace.host import Host
        host = Host.from_env()

    def load() -> tuple[dict | None, Symbols | None, dict]:
        from pathlib import Path
        printk = symbols = btf = None
        if tracefs is not None:
            try:
                printk = parse_printk_formats((Path(tracefs) / "printk_formats").read_text())
            except OSError:
                pass
        kallsyms = host.read_text("/proc/kallsyms")
        if kallsyms:
            symbols = Symbols.from_kallsyms(kallsyms)
            if not symbols:
                symbols = None                 # all-zero addresses (kptr_restrict): nothing to resolve
        try:
            btf = host.path("/sys/kernel/btf/vmlinux").read_bytes()
        except OSError:
            pass
        try:
            constants = kernel_constants(btf, symbols, host.machine() if hasattr(host, "machine") else "x86_64")
        except Exception:  # noqa: BLE001 - damaged BTF: no constants, never no rendering
            constants = kernel_constants(None, symbols)
        return printk, symbols, constants
    return TextRenderer(long_size=8, style=style, escape=escape, load=load)


def renderer_for_tracedat(dat, style: str = "kernel", escape: bool = True) -> TextRenderer:
    """A TextRenderer with a trace.dat's own printk_formats and kallsyms (no BTF: enum names that the
    print fmts left unexpanded fall back to raw fields)."""
    from rawtrace.parse.format import parse_header_page
    from rawtrace.parse.tracedat_write import extra_sections
    kallsyms, printk = extra_sections(dat)
    symbols = Symbols.from_kallsyms(kallsyms) if kallsyms else None
    long_size = parse_header_page(dat.header_page).commit_size
    return TextRenderer(parse_printk_formats(printk) if printk else None, symbols if symbols else None,
                        long_size=long_size, style=style, constants=kernel_constants(None, symbols),
                        escape=escape)
