"""Decode one ring-buffer record's payload into an Event, with a decoder compiled once per event ID.

Public API (pure: bytes in, objects out):

* ``Event``: one decoded record (a named tuple). Attributes ``ts`` (int, trace-clock units), ``cpu``,
  ``pid`` (common_pid), ``id`` (common_type), ``format`` (the EventFormat), ``fields`` (dict name -> value;
  the four standard common fields are left out, other common_* fields of odd kernels stay in),
  ``flags`` (common_flags) and ``preempt_count`` (common_preempt_count).
* ``Lost``: events the kernel lost (overwritten) before a page: ``cpu``, ``ts`` (the page's time stamp),
  ``count`` (-1 when the kernel did not store the number).
* ``UnknownEvent``: a record whose common_type has no format; ``data`` holds the raw payload.
* ``DecoderSet(formats, byteorder=sys.byteorder)``: maps an event ID to its compiled decoder, built
  lazily on first use. ``formats`` is a mapping id -> EventFormat or a callable id -> EventFormat | None
  (for example ``EventCatalog.by_id``). ``unknown`` counts records per unknown ID; ``broken`` maps an ID
  whose format failed to parse or compile, or is broken (``format_problem``), to the reason (its records
  come out as UnknownEvent); ``malformed`` counts records per ID that did not fit their format (shorter
  than its fixed fields; the page decoder gives them as UnknownEvent with a ``reason`` and goes on) and
  ``malformed_reasons`` keeps the first reason per ID. ``install_text(id, ...)`` makes an ID's records come
  out as ``Rendered`` texts (see compile_text_decoder), for a consumer that only prints them.
* ``Rendered``: such a record: ``ts``, ``cpu``, ``pid`` (common_pid), ``id``, ``text``.
* ``compile_decoder(fmt, byteorder)``: the decoder ``fn(buf, start, length, ts, cpu) -> Event`` itself;
  ``compile_text_decoder(fmt, template, values, ...)`` one giving Rendered texts, with a memo of texts per
  record payload (records repeating earlier ones skip decoding) that it drops when it does not pay.
* ``format_problem(fmt)``: why a parsed format cannot be decoded (NUL in its name, an array common
  field, a name repeated with another type), or None.
* ``ts_seconds(ts)`` and ``format_timestamp(ts, clock)`` convert trace-clock units for display.

Field values: integers of every size honour ``size``/``signed`` from the format (not the C type text);
pointers are ints (rendering as hex is the renderer's job); fixed arrays and dynamic arrays are tuples of
ints; char arrays, ``__data_loc``/``__rel_loc`` strings and flexible ``char x[]`` become ``str`` cut at the
first NUL. Strings are decoded as UTF-8 with ``errors="surrogateescape"``: lossless (``s.encode("utf-8",
"surrogateescape")`` gives back the kernel's bytes); renderers must escape the surrogates before printing
(rawtrace.render_event does). Opaque fields (odd sizes, unknown element types) are ``bytes``.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from rawtrace.parse.descriptors import EventFormat, Field, FieldKind

# The common fields that become Event attributes instead of entries of Event.fields.
STANDARD_COMMON = ("common_type", "common_flags", "common_preempt_count", "common_pid")

# Clocks whose units are nanoseconds (trace_clock names); the others (counter, x86-tsc) are raw counts.
NS_CLOCKS = frozenset({"local", "global", "uptime", "perf", "mono", "mono_raw", "boot", "tai"})

_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}

STRING_ERRORS = "surrogateescape"


class Event(NamedTuple):
    """One decoded ring-buffer record. A named tuple rather than a frozen dataclass: it is built once per
    record on the hot path, where a frozen dataclass costs several times more. Immutable like one."""

    ts: int
    cpu: int
    pid: int
    id: int
    format: EventFormat
    fields: dict
    flags: int = 0
    preempt_count: int = 0

    @property
    def name(self) -> str:
        """system:event"""
        return f"{self.format.system}:{self.format.name}"

    def __repr__(self) -> str:
        return (f"Event(ts={self.ts}, cpu={self.cpu}, pid={self.pid}, "
                f"event={self.format.system}:{self.format.name}, fields={self.fields!r})")


# The records below are named tuples like Event (immutable; cheaper to define than a frozen dataclass,
# which matters for start-up).
class Lost(NamedTuple):
    """Events lost (overwritten) on `cpu` before the page whose time stamp is `ts`; count -1 = unknown."""

    cpu: int
    ts: int
    count: int


class UnknownEvent(NamedTuple):
    """A record shown undecoded: its event ID has no usable format (`reason` empty), or the record does
    not fit its format (`reason` says how); `data` is the raw payload."""

    ts: int
    cpu: int
    id: int
    data: bytes
    reason: str = ""


def ts_seconds(ts: int) -> float:
    """Nanosecond trace-clock units as float seconds."""
    return ts / 1e9


# seconds.microseconds of a nanosecond time stamp: applied to divmod((ts + 500) // 1000, 1000000).
TIMESTAMP_TEMPLATE = "%d.%06d"


def format_timestamp(ts: int, clock: str = "local") -> str:
    """A time stamp the way ftrace prints it: seconds.microseconds for ns clocks, else the raw count.

    Rounded to the nearest microsecond, as the kernel (ns2usecs() adds 500 ns) and trace-cmd report do."""
    if clock not in NS_CLOCKS:
        return str(ts)
    return TIMESTAMP_TEMPLATE % divmod((ts + 500) // 1000, 1000000)


class Rendered(NamedTuple):
    """A record a text decoder (compile_text_decoder) turned straight into its text: for a consumer that
    only prints the event, so no Event or fields dict is built. `pid` is common_pid (the thread)."""

    ts: int
    cpu: int
    pid: int
    id: int
    text: str


class RecordTooShort(ValueError):
    """A record payload shorter than its event format's fixed fields (the page decoder reports it)."""

    def __init__(self, length: int, needed: int) -> None:
        super().__init__(f"record payload of {length} bytes is shorter than its format's {needed}")
        self.length = length
        self.needed = needed


# ---------------------------------------------------------------------------------------------------
# Helpers the generated decoders call for the rarer field kinds (dynamic and flexible data).

def _cstr(raw: bytes) -> str:
    return raw.partition(b"\0")[0].decode("utf-8", STRING_ERRORS)


def _loc_bounds(start: int, length: int, base: int, word: int) -> tuple[int, int]:
    # Clamp a (offset, length) location to the record: a bad word yields a short value rather
    # than bytes of the next record.
    begin = start + base + (word & 0xFFFF)
    stop = begin + (word >> 16)
    record_end = start + length
    stop = min(stop, record_end)
    begin = min(begin, stop)
    return begin, stop


def _loc_str(buf: bytes, start: int, length: int, base: int, word: int) -> str:
    begin, stop = _loc_bounds(start, length, base, word)
    return buf[begin:stop].partition(b"\0")[0].decode("utf-8", STRING_ERRORS)


def _loc_array(buf: bytes, start: int, length: int, base: int, word: int, prefix: str, code: str,
               esize: int):
    begin, stop = _loc_bounds(start, length, base, word)
    if not code:
        return buf[begin:stop]
    return struct.unpack_from(f"{prefix}{(stop - begin) // esize}{code}", buf, begin)


def _flex_str(buf: bytes, start: int, length: int, offset: int) -> str:
    return buf[start + offset:start + length].partition(b"\0")[0].decode("utf-8", STRING_ERRORS)


def _flex_array(buf: bytes, start: int, length: int, offset: int, prefix: str, code: str, esize: int):
    if not code:
        return buf[start + offset:start + length]
    count = max(0, length - offset) // esize
    return struct.unpack_from(f"{prefix}{count}{code}", buf, start + offset)


def _odd_int(raw: bytes, byteorder: str, signed: bool) -> int:
    return int.from_bytes(raw, byteorder, signed=signed)


# ---------------------------------------------------------------------------------------------------
# Compilation: one Python function per event ID, generated from its format. Fixed-position fields
# are read by a single struct.Struct.unpack_from; the function builds the Event in one expression.

def _element_code(field: Field) -> str:
    """struct code of an array element, or '' when elements are not plain integers (kept as bytes).

    Signedness comes from the field's `signed:` like scalars do."""
    code = _INT_CODES.get(field.element_size or 0)
    if code is None:
        return ""
    return code if field.signed else code.upper()


# A record is at most one sub-buffer, and the commit word holds sizes of 27 bits: a field beyond that
# can only come from a damaged format file.
_MAX_FIELD_END = 1 << 27


def format_problem(fmt: EventFormat) -> str | None:
    """Why records of this format cannot be decoded into fields (None when they can).

    Formats the parser tolerates but no decoder or renderer can use: a control character (NUL...) in
    the system or event name, a standard common field that is not a plain integer (`u32 common_pid[1]`),
    a field name repeated with another type, a field beyond any record."""
    for label, text in (("system", fmt.system), ("event name", fmt.name)):
        if not text.isprintable():
            return f"control character in the {label} {text!r}"
    if not fmt.name:
        return "empty event name"
    seen: dict[str, Field] = {}
    for field in fmt.all_fields:
        if field.offset < 0 or field.size < 0 or field.offset + field.size > _MAX_FIELD_END:
            return f"field {field.name!r} at {field.offset}+{field.size} lies beyond any record"
        if field.common and field.name in STANDARD_COMMON and (
                field.kind != FieldKind.INTEGER or field.size not in _INT_CODES):
            return f"common field {field.name!r} is declared as {field.type} ({field.size} bytes), not an integer"
        other = seen.get(field.name)
        if other is None:
            seen[field.name] = field
        elif (other.type, other.size, other.kind) != (field.type, field.size, field.kind):
            return (f"field {field.name!r} declared twice with different types "
                    f"({other.type}, {other.size} bytes and {field.type}, {field.size} bytes)")
    return None


class _DecoderCode(NamedTuple):
    """The pieces of a generated decoder: `check` raises RecordTooShort for a record shorter than the
    fixed fields, `lines` read them into locals (of a function with the parameters buf, start, length,
    ts, cpu); `pid`, `flags`, `preempt`
    and `fields` (a dict display) are expressions over those; `namespace` holds the names they use."""

    namespace: dict
    check: list
    lines: list
    pid: str
    flags: str
    preempt: str
    fields: str
    min_length: int
    exprs: dict            # field name -> its expression (the common fields' included)


def compile_decoder(fmt: EventFormat, byteorder: str = sys.byteorder) -> Callable:
    """Build the decoder `fn(buf, start, length, ts, cpu) -> Event` for one event format.

    `buf[start:start+length]` is the record payload (starting with common_type). A format that
    format_problem() rejects raises DecodeError with the reason."""
    code = _decoder_code(fmt, byteorder)
    source = "\n".join(["def decode(buf, start, length, ts, cpu):", *code.check, *code.lines,
                        (f"    return _new(Event, (ts, cpu, {code.pid}, ID, FMT, {code.fields}, {code.flags}, "
                        f"{code.preempt}))")]) + "\n"
    decode = _define(source, "decoder", fmt, code.namespace, "decode")
    decode.min_length = code.min_length      # payload bytes the fixed fields need
    decode.source = source
    return decode


def compile_tuple_decoder(fmt: EventFormat, cls: type, names: Sequence[str],
                          byteorder: str = sys.byteorder) -> Callable:
    """A decoder `fn(buf, start, length, ts, cpu) -> cls((ts, cpu, pid, *fields named))`: the record as a
    small tuple of its own class, without the Event and its fields dict, for a consumer that reads only
    those fields (the syscall joiner's raw_syscalls records). DecodeError when a field is missing."""
    code = _decoder_code(fmt, byteorder)
    missing = [name for name in names if name not in code.exprs]
    if missing:
        from rawtrace.errors import DecodeError
        raise DecodeError(f"format of {fmt.system!r}:{fmt.name!r} has no field {missing[0]!r}")
    namespace = dict(code.namespace, CLS=cls)
    values = "".join(f"{code.exprs[name]}, " for name in names)
    source = "\n".join(["def decode(buf, start, length, ts, cpu):", *code.check, *code.lines,
                        f"    return _new(CLS, (ts, cpu, {code.pid}, {values}))"]) + "\n"
    decode = _define(source, "tuple decoder", fmt, namespace, "decode")
    decode.min_length = code.min_length
    return decode


# A text decoder's memo (see compile_text_decoder): checked every _MEMO_CHECK misses, it is given up
# when fewer than a quarter of the lookups since the last check found their text (a miss costs about a
# third of what a hit saves), tried again after _MEMO_PAUSE records, and emptied past _MEMO_LIMIT texts.
_MEMO_CHECK = 2048
_MEMO_PAUSE = 65536
_MEMO_LIMIT = 32768


def compile_text_decoder(fmt: EventFormat, template: str, values: tuple[str, ...], namespace: dict,
                         errors: tuple, byteorder: str = sys.byteorder, *, memo: dict | None = None,
                         give_up: Callable[[], None] | None = None,
                         resume: Callable[[], None] | None = None,
                         prefix: Callable[[int, int], str] | None = None, ns: bool = True) -> Callable:
    """A decoder `fn(buf, start, length, ts, cpu)` that gives each record as Rendered, its text `template
    % (values)` made from the record's fields, for a consumer that only prints them.

    With `prefix` (fn(pid, cpu) -> the start of a line, pure), the text is the whole line: that prefix,
    the time stamp as format_timestamp() shows it (`ns`: of a nanosecond clock), ": " and the text.

    `values` are Python expressions over `f` (the fields dict a decoder makes) and `e` (the Event, built
    only when an expression names it), with the names in `namespace`; they must depend on nothing but
    the record (not its time stamp or CPU). A record whose text raises one of `errors` comes out as the
    Event the plain decoder makes, for the consumer's general way.

    With `memo` (a dict), texts are remembered per record payload (every byte but common_type, which
    the ID fixes; for a format without dynamic fields only the bytes its fields occupy), so a record
    repeating an earlier one (a loop making the same call) is not decoded again. The memo is emptied
    past _MEMO_LIMIT texts, and `give_up()` is called when it stops paying (see _MEMO_CHECK). Without a
    memo, `resume()` is called every _MEMO_PAUSE records (to try one again)."""
    code = _decoder_code(fmt, byteorder)
    names = dict(namespace)
    names.update(code.namespace)
    names.update({"Rendered": Rendered, "_template": template, "_errors": errors})
    uses_event = any(re.search(r"\be\b", value) for value in values)
    event = f"_new(Event, (ts, cpu, {code.pid}, ID, FMT, f, {code.flags}, {code.preempt}))"
    compute = [*code.lines, f"    f = {code.fields}"]
    if uses_event:
        compute += [f"    e = {event}"]
        event = "e"
    compute += ["    try:", f"        text = _template % ({''.join(value + ', ' for value in values)})",
                "    except _errors:", f"        return {event}"]
    result = ["    return _new(Rendered, (ts, cpu, found[0], ID, found[1]))"]
    if prefix is not None:
        prefixes: dict = {}
        names.update({"_prefix_get": prefixes.get, "_prefixes": prefixes, "_prefix": prefix})
        result = ["    head = _prefix_get((found[0], cpu))",
                  "    if head is None:",
                  "        if len(_prefixes) > 65536:",          # bounded, as render_event.prefixes is
                  "            _prefixes.clear()",
                  "        head = _prefixes[found[0], cpu] = _prefix(found[0], cpu)"]
        if ns:
            # Seconds and microseconds, rounded, by slicing the digits (format_timestamp's text).
            result += ["    digits = str(ts + 500)", "    if len(digits) < 10:",
                       "        digits = digits.rjust(10, '0')",
                       ("    return _new(Rendered, (ts, cpu, found[0], ID, "
                       "f'{head}{digits[:-9]}.{digits[-9:-3]}: {found[1]}'))")]
        else:
            result += ["    return _new(Rendered, (ts, cpu, found[0], ID, f'{head}{ts}: {found[1]}'))"]
    return _memo_decoder(fmt, code, names, "text decoder", compute, f"({code.pid}, text)", result, memo,
                         give_up, resume)


def _memo_decoder(fmt: EventFormat, code: _DecoderCode, ns: dict, what: str, compute: list[str], found: str,
                  result: list[str], memo: dict | None, give_up: Callable[[], None] | None,
                  resume: Callable[[], None] | None) -> Callable:
    """A decoder that runs `compute` (lines of a function over buf, start, length, ts, cpu), sets `found =`
    the `found` expression and runs `result` (lines over `found`, ts and cpu, ending in a return): with
    `memo`, the found value is remembered per record payload (see compile_text_decoder); without,
    `resume` (if any) is called every _MEMO_PAUSE records."""
    body = [*compute, f"    found = {found}"]
    if memo is None:
        body = [*code.check, *body]
        if resume is None:
            lines = ["def decode(buf, start, length, ts, cpu):", *body, *result]
            return _define("\n".join(lines) + "\n", what, fmt, ns, "decode")
        ns.update({"_resume": resume, "_MEMO_PAUSE": _MEMO_PAUSE})
        lines = ["def make():", "    count = 0", "    def decode(buf, start, length, ts, cpu):",
                 "        nonlocal count", "        count += 1", "        if count == _MEMO_PAUSE:",
                 "            count = 0", "            _resume()",
                 *("    " + line for line in body), *("    " + line for line in result), "    return decode"]
        return _define("\n".join(lines) + "\n", what, fmt, ns, "make")()
    # The bytes the fields are read from: up to the end of the last fixed field, or the whole record
    # when a field points into the rest of it (__data_loc, a flexible array).
    dynamic = any(field.kind in FieldKind.DYNAMIC or field.kind in (FieldKind.FLEX_ARRAY, FieldKind.FLEX_STRING)
                  for field in fmt.all_fields)
    extent = max([2] + [field.offset + max(field.size, 0) for field in fmt.all_fields])
    end = "start + length" if dynamic else f"start + {extent}"
    ns.update({"_memo": memo, "_give_up": give_up or (lambda: None), "_MEMO_CHECK": _MEMO_CHECK,
               "_MEMO_LIMIT": _MEMO_LIMIT})
    lines = ["def make():",
             "    hits = misses = 0",
             "    get = _memo.get",
             "    def decode(buf, start, length, ts, cpu):",
             "        nonlocal hits, misses",
             *("    " + line for line in code.check),
             f"        key = buf[start + 2:{end}]",
             "        found = get(key)",
             "        if found is not None:",
             "            hits += 1",
             *("        " + line for line in result),
             *("    " + line for line in body),
             "        misses += 1",
             "        if misses == _MEMO_CHECK:",
             "            if hits * 3 < misses:",
             "                _give_up()",
             "            hits = misses = 0",
             "            if len(_memo) > _MEMO_LIMIT:",
             "                _memo.clear()",
             "        _memo[key] = found",
             *("    " + line for line in result),
             "    return decode"]
    return _define("\n".join(lines) + "\n", what, fmt, ns, "make")()


def _define(source: str, what: str, fmt: EventFormat, namespace: dict, name: str) -> Callable:
    # Generated code: the source is built from field offsets and sizes only (names go in as repr()
    # literals), and from what the caller passes in as code of its own; nothing of the format text is
    # executed. The file name is printable ASCII (compile() refuses a NUL in it).
    filename = f"<{what} {ascii(fmt.system)[1:-1]}:{ascii(fmt.name)[1:-1]}>"
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    return namespace[name]


def _decoder_code(fmt: EventFormat, byteorder: str) -> _DecoderCode:
    """What compile_decoder() and compile_text_decoder() generate their functions from."""
    problem = format_problem(fmt)
    if problem is not None:
        from rawtrace.errors import DecodeError
        raise DecodeError(f"format of {fmt.system!r}:{fmt.name!r} (ID {fmt.id}) is broken: {problem}")
    prefix = "<" if byteorder == "little" else ">"
    fixed: list[tuple[int, str, Field]] = []     # (offset, struct code, field) read by the main Struct
    post: list[tuple[Field, str]] = []           # (field, expression) for the fields dict
    standard: dict[str, str] = {}                # common_pid/flags/preempt -> expression
    namespace: dict = {
        "Event": Event, "_new": tuple.__new__, "FMT": fmt, "ID": fmt.id, "_cstr": _cstr, "_loc_str": _loc_str,
        "_loc_array": _loc_array, "_flex_str": _flex_str, "_flex_array": _flex_array, "_odd_int": _odd_int,
        "RecordTooShort": RecordTooShort,
    }

    def fixed_code(field: Field) -> str | None:
        kind = field.kind
        size = field.size
        if kind in (FieldKind.INTEGER, FieldKind.POINTER):
            if size not in _INT_CODES:
                return None
            code = _INT_CODES[size]
            return code if (kind == FieldKind.INTEGER and field.signed) else code.upper()
        if kind == FieldKind.ARRAY:
            ecode = _element_code(field)
            if ecode and field.count and field.count * (field.element_size or 0) == size:
                return f"{field.count}{ecode}"
            return f"{size}s"
        if kind in (FieldKind.STRING, FieldKind.OPAQUE):
            return f"{size}s" if size > 0 else None
        if kind in FieldKind.DYNAMIC:
            return "I"
        return None

    for field in fmt.all_fields:
        if field.common and field.name == "common_type":
            continue                             # the ID, known already: not read again
        code = None if field.kind in (FieldKind.FLEX_ARRAY, FieldKind.FLEX_STRING) else fixed_code(field)
        if code is not None:
            fixed.append((field.offset, code, field))
        else:
            post.append((field, ""))

    # Lay the fixed fields out in one struct format, in offset order; a field overlapping the previous
    # one (tolerated by the format parser) is read on its own instead.
    fixed.sort(key=lambda item: item[0])
    parts: list[str] = []
    cursor = 0
    value_expr: dict[str, str] = {}
    index = 0
    separate: list[tuple[Field, str]] = []
    for offset, code, field in fixed:
        if offset < cursor:
            separate.append((field, code))
            continue
        if offset > cursor:
            parts.append(f"{offset - cursor}x")
        parts.append(code)
        cursor = offset + field.size if field.size else offset + struct.calcsize(prefix + code)
        if field.kind == FieldKind.ARRAY and code[-1] != "s":
            count = int(code[:-1])
            value_expr[field.name] = ("array", index, count)
            index += count
        else:
            value_expr[field.name] = ("value", index, 1)
            index += 1
    main = struct.Struct(prefix + "".join(parts))
    # Up to 64 values are unpacked straight into locals (cheaper than indexing a tuple); beyond that
    # (big arrays) the result tuple is indexed and sliced.
    as_locals = index <= 64
    for name, (what, at, count) in list(value_expr.items()):
        if as_locals:
            value_expr[name] = (f"_v{at}" if what == "value"
                                else "(" + "".join(f"_v{k}, " for k in range(at, at + count)) + ")")
        else:
            value_expr[name] = f"v[{at}]" if what == "value" else f"v[{at}:{at + count}]"
    namespace["_main"] = main.unpack_from

    for n, (field, code) in enumerate(separate):
        namespace[f"_sep{n}"] = struct.Struct(prefix + code).unpack_from
        if field.kind == FieldKind.ARRAY and code[-1] != "s":
            value_expr[field.name] = f"_sep{n}(buf, start + {field.offset})"
        else:
            value_expr[field.name] = f"_sep{n}(buf, start + {field.offset})[0]"

    lines = []
    field_items: list[str] = []
    exprs: dict[str, str] = {}
    for field in fmt.all_fields:
        name = field.name
        kind = field.kind
        if name in value_expr:
            expr = value_expr[name]
            if kind == FieldKind.STRING:
                expr = f"_cstr({expr})"
            elif kind in (FieldKind.DATA_LOC_STRING, FieldKind.REL_LOC_STRING):
                base = field.offset + 4 if kind == FieldKind.REL_LOC_STRING else 0
                expr = f"_loc_str(buf, start, length, {base}, {expr})"
            elif kind in (FieldKind.DATA_LOC_ARRAY, FieldKind.REL_LOC_ARRAY):
                base = field.offset + 4 if kind == FieldKind.REL_LOC_ARRAY else 0
                ecode = _element_code(field)
                expr = (f"_loc_array(buf, start, length, {base}, {expr}, {prefix!r}, {ecode!r}, "
                        f"{field.element_size or 1})")
        elif kind == FieldKind.FLEX_STRING:
            expr = f"_flex_str(buf, start, length, {field.offset})"
        elif kind == FieldKind.FLEX_ARRAY:
            ecode = _element_code(field)
            expr = f"_flex_array(buf, start, length, {field.offset}, {prefix!r}, {ecode!r}, " \
                   f"{field.element_size or 1})"
        elif field.size > 0:
            # Integer of an odd size (3, 16 bytes...): read the bytes and convert.
            signed = kind == FieldKind.INTEGER and field.signed
            expr = (f"_odd_int(buf[start + {field.offset}:start + {field.offset + field.size}], "
                    f"{byteorder!r}, {signed})")
        else:
            expr = "b''"
        exprs[name] = expr
        if field.common and name in STANDARD_COMMON:
            standard[name] = expr
        else:
            field_items.append(f"{name!r}: {expr}")

    check = []
    if main.size > 2:
        # The page buffer runs on past the record, so a short record would not fail by itself.
        check = [f"    if length < {main.size}:", f"        raise RecordTooShort(length, {main.size})"]
    if index and as_locals:
        lines.append("    " + "".join(f"_v{k}, " for k in range(index)) + "= _main(buf, start)")
    elif index:
        lines.append("    v = _main(buf, start)")
    return _DecoderCode(namespace, check, lines, standard.get("common_pid", "-1"), standard.get("common_flags", "0"),
                        standard.get("common_preempt_count", "0"), "{" + ", ".join(field_items) + "}", main.size,
                        exprs)


class DecoderSet:
    """Per-event-ID decoders, compiled on first use. `cache` maps id -> decoder and is what the page
    decoder reads on its hot path; `unknown` counts records of IDs with no format, and `broken` says why
    an ID whose format could not be read or compiled is decoded as UnknownEvent (one bad format file
    must not stop a trace)."""

    def __init__(self, formats: Mapping[int, EventFormat] | Callable[[int], EventFormat | None],
                 byteorder: str = sys.byteorder) -> None:
        if byteorder not in ("little", "big"):
            raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
        self.byteorder = byteorder
        self._lookup = formats.get if isinstance(formats, Mapping) else formats
        self.cache: dict[int, Callable] = {}
        self.unknown: dict[int, int] = {}
        self.broken: dict[int, str] = {}
        self.malformed: dict[int, int] = {}
        self.malformed_reasons: dict[int, str] = {}

    def decoder(self, event_id: int) -> Callable:
        """The decoder for `event_id` (an UnknownEvent maker if no format is known)."""
        found = self.cache.get(event_id)
        if found is None:
            found = self._build(event_id)
            self.cache[event_id] = found
        return found

    def install_text(self, event_id: int, template: str, values: tuple[str, ...], namespace: dict,
                     errors: tuple, prefix: Callable[[int, int], str] | None = None, ns: bool = True) -> bool:
        """Decode `event_id`'s records as Rendered texts from now on (see compile_text_decoder, also for
        `prefix` and `ns`), with a memo; where the memo does not pay, the text decoder without one takes
        over for a while. False, and nothing changed, when the event has no format that decodes or the
        code does not compile."""
        from rawtrace.errors import RawtraceError
        fmt = self.format(event_id)
        if fmt is None or event_id in self.broken:
            return False
        cache = self.cache
        chosen: list[Callable] = []          # [with the memo, without]

        def give_up() -> None:
            cache[event_id] = chosen[1]

        def resume() -> None:
            cache[event_id] = chosen[0]
        args = (fmt, template, values, namespace, errors, self.byteorder)
        try:
            chosen.append(compile_text_decoder(*args, memo={}, give_up=give_up, prefix=prefix, ns=ns))
            chosen.append(compile_text_decoder(*args, resume=resume, prefix=prefix, ns=ns))
        except (RawtraceError, struct.error, ValueError, SyntaxError, RecursionError):
            return False
        cache[event_id] = chosen[0]
        return True

    def install_tuple(self, event_id: int, cls: type, names: Sequence[str]) -> bool:
        """Decode `event_id`'s records as `cls` tuples from now on (compile_tuple_decoder). False, and
        nothing changed, when the event has no format that decodes or lacks one of the fields."""
        from rawtrace.errors import RawtraceError
        fmt = self.format(event_id)
        if fmt is None or event_id in self.broken:
            return False
        try:
            self.cache[event_id] = compile_tuple_decoder(fmt, cls, names, self.byteorder)
        except (RawtraceError, struct.error, ValueError, SyntaxError, RecursionError):
            return False
        return True

    def format(self, event_id: int) -> EventFormat | None:
        try:
            return self._lookup(event_id)
        except (KeyError, LookupError):
            return None

    def _build(self, event_id: int) -> Callable:
        from rawtrace.errors import RawtraceError
        try:
            fmt = self.format(event_id)
            if fmt is not None:
                return compile_decoder(fmt, self.byteorder)
        except (RawtraceError, struct.error, ValueError, SyntaxError) as exc:
            self.broken[event_id] = getattr(exc, "message", None) or str(exc)
        return self._unknown_decoder(event_id)

    def misfit(self, event_id: int, buf: bytes, start: int, length: int, ts: int, cpu: int,
               reason: str) -> UnknownEvent:
        """A record that does not fit its format, counted in `malformed` (first reason per ID in
        `malformed_reasons`) and given back undecoded, so that decoding goes on with the next record."""
        self.malformed[event_id] = self.malformed.get(event_id, 0) + 1
        self.malformed_reasons.setdefault(event_id, reason)
        return UnknownEvent(ts, cpu, event_id, bytes(buf[start:start + length]), reason)

    def _unknown_decoder(self, event_id: int) -> Callable:
        counts = self.unknown

        def decode(buf, start, length, ts, cpu):
            counts[event_id] = counts.get(event_id, 0) + 1
            return UnknownEvent(ts, cpu, event_id, bytes(buf[start:start + length]))
        decode.min_length = 2
        return decode
