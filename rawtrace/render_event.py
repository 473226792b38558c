"""Render decoded ring-buffer events as ftrace-like text lines or JSON objects (shared by decode and trace).

Text: ``comm-pid [cpu] seconds: system:event: field=value ...`` as ftrace prints. Integers print in
decimal unless the event's print fmt shows them in hex (%x, %p); pointers, and arrays of unsigned
longs or pointers (syscall arguments), in 0x hex; strings are escaped (control characters,
backslashes, and bytes that were not UTF-8, which the decoder keeps as surrogates, become \\xNN);
raw bytes print as hex.

Time stamps of nanosecond clocks print as seconds.microseconds, rounded to the nearest microsecond as
the kernel's trace file and trace-cmd report print them.

JSON: one object per event: ``{"ts", "cpu", "pid", "comm", "event", "fields"}`` with ts in trace-clock
units (ns for the usual clocks); lost events as ``{"lost": N, "cpu": C, "ts": T}`` (N = -1: unknown);
records shown undecoded as ``{"ts", "cpu", "unknown_id", "data"}`` (data in hex), plus ``"reason"`` when
the record did not fit its format.

Functions: ``event_text(event, comm, clock)`` / ``item_text(item, comms, clock)`` for one line,
``text_lines(items, comms, clock)`` for many (faster); ``event_json`` / ``item_json`` give dicts and
``json_lines(items, comms)`` NDJSON text for many; ``event_line(comm, pid, cpu, timestamp, name, body)``
and ``fields_text(fields, fmt)`` are the pieces, for callers with their own event objects.
Text and JSON renderers are compiled once per event format (from field names and kinds only).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from rawtrace.output import escape, json_text
from rawtrace.parse.descriptors import EventFormat, FieldKind
from rawtrace.parse.record import (
    NS_CLOCKS,
    STANDARD_COMMON,
    TIMESTAMP_TEMPLATE,
    Event,
    Lost,
    UnknownEvent,
    format_timestamp,
)

# How a field's value is shown in text.
_DECIMAL, _HEX, _TEXT, _ARRAY_DEC, _ARRAY_HEX, _BYTES = range(6)

# Caches per format object, keyed by id(fmt) with the format kept in the entry (so that its id cannot be
# reused while the entry lives) and emptied past _CACHE_MAX entries: a stream of ever new formats (a
# hostile file, a long run of probes made and removed) must not grow memory without bound.
_CACHE_MAX = 4096
# Events with more fields than this (real ones have a few dozen at most) are rendered by the generic
# code: compiling one f-string of thousands of pieces takes super-linear time (1 s for 16000 fields).
_MAX_COMPILED_FIELDS = 512
_styles_cache: dict[int, tuple[EventFormat, dict[str, int]]] = {}


def safe_text(text: str) -> str:
    """`text` made safe for a terminal: output.escape, plus surrogate-escaped bytes shown as \\xNN."""
    if text.isprintable() and "\\" not in text:
        return text
    text = escape(text)
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        text = "".join(f"\\x{ord(ch) - 0xDC00:02x}" if "\udc80" <= ch <= "\udcff" else ch for ch in text)
    if not text.isprintable():
        # What escape() leaves: format characters (bidi overrides, zero-width), separators such as
        # U+2028, unassigned and private-use code points; a terminal may act on some of them.
        text = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)
    return text


def _hex_elements(element_type: str | None) -> bool:
    etype = element_type or ""
    return "*" in etype or ("long" in etype and "unsigned" in etype)


# A printf conversion of a print fmt ("%%" included, to be skipped); `*` width/precision take an argument.
# Possessive quantifiers: the `0` flag and a width's digits overlap, which made a long run of zeros
# quadratic to scan.
_CONVERSION = re.compile(r"%%|%[-+ #0]*+(\*|\d++)?(?:\.(\*|\d*+))?(?:hh|h|ll|l|L|q|j|z|Z|t)?([diouxXcsp])")
_FIELD_REFERENCE = re.compile(r"REC->(\w+)")
# Possessive: `[\w\s]*` and `\s*` would otherwise try every split of a long run of spaces.
_CAST = re.compile(r"\(\s*[A-Za-z_][\w\s]*+\**\s*\)")      # (void *), (unsigned long)
_ONLY_PARENTHESES = re.compile(r"[\s()]*")


def hex_fields(fmt: EventFormat) -> set[str]:
    """Fields the event's print fmt shows in hex (%x, %lx, %p...): `REC->name`, maybe cast, is the
    whole argument. Integers print in decimal otherwise; a print fmt that does not split cleanly
    gives no hints."""
    if not fmt.print_fmt_string or not fmt.print_fmt_args:
        return set()
    conversions = []
    for match in _CONVERSION.finditer(fmt.print_fmt_string):
        if match.group(0) == "%%":
            continue
        conversions += [None] * ((match.group(1) == "*") + (match.group(2) == "*"))
        conversions.append(match.group(3))
    if len(conversions) != len(fmt.print_fmt_args):
        return set()
    found = set()
    for conversion, argument in zip(conversions, fmt.print_fmt_args):
        if conversion not in ("x", "X", "p"):
            continue
        names = _FIELD_REFERENCE.findall(argument)
        if len(names) == 1 and _ONLY_PARENTHESES.fullmatch(_CAST.sub("", _FIELD_REFERENCE.sub("", argument))):
            found.add(names[0])
    return found


def field_styles(fmt: EventFormat) -> dict[str, int]:
    """name -> text style for the fields of one event format (cached per format object)."""
    cached = _styles_cache.get(id(fmt))
    if cached is not None and cached[0] is fmt:
        return cached[1]
    styles: dict[str, int] = {}
    hexadecimal = hex_fields(fmt)
    for field in fmt.all_fields:
        kind = field.kind
        if kind == FieldKind.POINTER or (kind == FieldKind.INTEGER and field.name in hexadecimal):
            style = _HEX
        elif kind in (FieldKind.STRING, FieldKind.FLEX_STRING, FieldKind.DATA_LOC_STRING,
                      FieldKind.REL_LOC_STRING):
            style = _TEXT
        elif kind in (FieldKind.ARRAY, FieldKind.FLEX_ARRAY, FieldKind.DATA_LOC_ARRAY, FieldKind.REL_LOC_ARRAY):
            style = _ARRAY_HEX if _hex_elements(field.element_type) and not field.signed else _ARRAY_DEC
        elif kind == FieldKind.OPAQUE:
            style = _BYTES
        else:
            style = _DECIMAL
        styles[field.name] = style
    if len(_styles_cache) >= _CACHE_MAX:
        _styles_cache.clear()
    _styles_cache[id(fmt)] = (fmt, styles)
    return styles


def value_text(value: Any, style: int = _DECIMAL) -> str:
    """One field value as text."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, tuple):
        if style == _ARRAY_HEX:
            return "{" + ",".join(f"0x{v:x}" for v in value) + "}"
        return "{" + ",".join(value_text(v) for v in value) + "}"
    if style == _HEX and isinstance(value, int):
        return f"0x{value & 0xFFFFFFFFFFFFFFFF:x}"
    return str(value)


def _fields_text_generic(fields: dict, styles: dict[str, int]) -> str:
    return " ".join(f"{name}={value_text(value, styles.get(name, _DECIMAL))}" for name, value in fields.items())


def _field_expression(field, style: int, slot: str, namespace: dict) -> str:
    """An f-string piece rendering one field of a compiled renderer."""
    if style == _HEX:
        # Two's complement for negative values, as printf's %lx shows them.
        mask = (1 << (8 * field.size)) - 1 if field.size in (1, 2, 4, 8) else (1 << 64) - 1
        return f"0x{{{slot} & {mask:#x}:x}}"
    if style == _TEXT:
        return f"{{_safe({slot})}}"
    if style == _DECIMAL and field.kind == FieldKind.INTEGER:
        return f"{{{slot}}}"
    if style in (_ARRAY_HEX, _ARRAY_DEC) and field.kind == FieldKind.ARRAY and field.count \
            and field.element_size in (1, 2, 4, 8) and field.count * field.element_size == field.size:
        name = f"_array{len(namespace)}"
        element = "0x%x" if style == _ARRAY_HEX else "%d"
        namespace[name] = "{" + ",".join([element] * field.count) + "}"
        return f"{{{name} % {slot}}}"
    return f"{{_value({slot}, {style})}}"


def _code_name(what: str, fmt: EventFormat) -> str:
    """The file name of generated code: printable ASCII only (compile() refuses a NUL in it)."""
    return f"<{what} {ascii(fmt.system)[1:-1]}:{ascii(fmt.name)[1:-1]}>"


def _event_name(fmt: EventFormat) -> str:
    return safe_text(f"{fmt.system}:{fmt.name}")


def _compile_fields_renderer(fmt: EventFormat):
    styles = field_styles(fmt)
    shown = [f for f in fmt.all_fields if not (f.common and f.name in STANDARD_COMMON)]
    if len(shown) > _MAX_COMPILED_FIELDS or not all(f.name.isidentifier() for f in shown):
        # Only C identifiers go into generated code; anything else is rendered generically.
        return lambda fields: _fields_text_generic(fields, styles)
    namespace: dict = {"_safe": safe_text, "_value": value_text}
    pieces = [f"{f.name}={_field_expression(f, styles[f.name], f'f[{f.name!r}]', namespace)}" for f in shown]
    source = f'def render(f):\n    return f"{" ".join(pieces)}"\n'
    # Generated from field names (identifiers) and styles only; nothing else of the format is executed.
    exec(compile(source, _code_name("renderer", fmt), "exec"), namespace)  # noqa: S102
    return namespace["render"]


_renderers: dict[int, tuple[EventFormat, str, object, dict]] = {}


def _renderer(fmt: EventFormat) -> tuple[EventFormat, str, object, dict]:
    """(format, "system:name", compiled fields renderer, styles), cached per format object."""
    found = _renderers.get(id(fmt))
    if found is None or found[0] is not fmt:
        found = (fmt, _event_name(fmt), _compile_fields_renderer(fmt), field_styles(fmt))
        if len(_renderers) >= _CACHE_MAX:
            _renderers.clear()
        _renderers[id(fmt)] = found
    return found


def fields_text(fields: dict, fmt: EventFormat | None = None) -> str:
    """`name=value name=value ...` for a fields dict, styled by the event's format when given."""
    if fmt is None:
        return _fields_text_generic(fields, {})
    _fmt, _name, render, styles = _renderer(fmt)
    try:
        return render(fields)
    except (KeyError, TypeError, ValueError):
        # A fields dict that does not match its format (edited, or partial): render it generically.
        return _fields_text_generic(fields, styles)


class BodyCode(NamedTuple):
    """An event format's escaped body text as one `%` template, the Python expressions that fill it (over
    `e`, the Event, and `f`, its fields) and the names those use: what compile_line() builds lines from."""

    template: str
    values: tuple[str, ...]
    namespace: dict
    # False when the values call a general renderer that keeps state of its own (counts what it could
    # not evaluate): then every event must be rendered anew, not its text remembered.
    pure: bool = True


def fields_body_code(fmt: EventFormat) -> BodyCode:
    """fields_text() of this format's events as BodyCode: its compiled renderer, which raises (KeyError,
    TypeError, ValueError) where fields_text() falls back to the generic form."""
    return BodyCode("%s", ("_fields(f)",), {"_fields": _renderer(fmt)[2]})


def compile_line(fmt: EventFormat, body: BodyCode, ns: bool = True) -> Callable[[str, Event], str]:
    """fn(prefix, event) -> `prefix` + time stamp + ": system:name: " + body + newline, in one `%`
    operation: the line event_line() makes, time stamp as format_timestamp() prints it (`ns`: a
    nanosecond clock). Raises what the body's expressions raise."""
    namespace = dict(body.namespace)
    namespace["_line_template"] = f"%s{TIMESTAMP_TEMPLATE if ns else '%d'}: " + text_template(fmt, body)
    stamp = "u // 1000000, u % 1000000" if ns else "e[0]"
    values = "".join(f", {value}" for value in body.values)
    # e[0] and e[5] are e.ts and e.fields (an index is cheaper than a named tuple's attribute).
    source = ("def line(p, e):\n    f = e[5]\n" + ("    u = (e[0] + 500) // 1000\n" if ns else "") +
              f"    return _line_template % (p, {stamp}{values})\n")
    # Generated from BodyCode expressions (made from parsed formats, literals as repr()) only.
    exec(compile(source, _code_name("line", fmt), "exec"), namespace)  # noqa: S102
    return namespace["line"]


def text_template(fmt: EventFormat, body: BodyCode) -> str:
    """The `%` template of what follows a line's time stamp: `system:name: ` + body + newline."""
    return f"{_event_name(fmt).replace('%', '%%')}: {body.template}\n"


def event_line(comm: str | None, pid: int, cpu: int, timestamp: str, name: str, body: str) -> str:
    """The ftrace-like line: `comm-pid [cpu] timestamp: name: body`. `comm` None shows as <...>."""
    shown = safe_text(comm) if comm else "<...>"
    return f"{shown:>16}-{pid:<7} [{cpu:03d}] {timestamp}: {name}: {body}"


# (comm, tid, cpu) -> line_prefix(): every text line of decode, trace and the syscall lines starts so.
prefixes: dict[tuple, str] = {}


def line_prefix(comm: str | None, tid: int, cpu: int) -> str:
    """`            comm-tid     [cpu] ` as the kernel's trace file starts a line (comm escaped, None shown
    as <...>): it repeats for every event of a task, so it is formatted once and kept in `prefixes`."""
    if len(prefixes) > 65536:
        prefixes.clear()
    shown = safe_text(comm) if comm else "<...>"
    prefix = prefixes[(comm, tid, cpu)] = f"{shown:>16}-{tid:<7} [{cpu:03d}] "
    return prefix


def event_text(event: Event, comm: str | None = None, clock: str = "local") -> str:
    """A decoded Event as one ftrace-like text line."""
    return text_lines([event], {event.pid: comm} if comm is not None else None, clock)[0]


def text_lines(items, comms: dict[int, str] | None = None, clock: str = "local") -> list[str]:
    """item_text() of each item (Event, Lost, UnknownEvent), in one loop: the bulk path of `decode`."""
    out: list[str] = []
    append = out.append
    ns = clock in NS_CLOCKS
    renderers = _renderers
    prefix_of = prefixes.get
    get_comm = comms.get if comms else {}.get
    for item in items:
        if item.__class__ is not Event:
            append(item_text(item, comms, clock))
            continue
        ts, cpu, pid, _id, fmt, fields, _flags, _preempt = item
        entry = renderers.get(id(fmt))
        if entry is None or entry[0] is not fmt:
            entry = _renderer(fmt)
        comm = get_comm(pid)
        try:
            prefix = prefix_of((comm, pid, cpu)) or line_prefix(comm, pid, cpu)
            if ns:
                # Rounded to the nearest microsecond, as the kernel's trace file (ns2usecs() adds 500)
                # and trace-cmd report (print_event_time() adds div / 2) print it.
                stamp = str((ts + 500) // 1000)
                if len(stamp) < 7:
                    stamp = stamp.rjust(7, "0")
                append(f"{prefix}{stamp[:-6]}.{stamp[-6:]}: {entry[1]}: {entry[2](fields)}")
            else:
                append(f"{prefix}{ts}: {entry[1]}: {entry[2](fields)}")
        except (KeyError, TypeError, ValueError, AttributeError):
            append(_fallback_line(item, entry, get_comm, ns))
    return out


def _fallback_line(event: Event, entry: tuple, get_comm, ns: bool) -> str:
    """The line of an event whose fields do not match their format (edited, partial): fields rendered
    generically; an Event whose attributes are not what a decoder makes: everything from str()."""
    try:
        prefix = line_prefix(get_comm(event.pid), event.pid, event.cpu)
        stamp = format_timestamp(event.ts, "local" if ns else "counter")
        return f"{prefix}{stamp}: {entry[1]}: {_fields_text_generic(event.fields, entry[3])}"
    except (KeyError, TypeError, ValueError, AttributeError):
        return _odd_event_text(event, get_comm, ns)


def _odd_event_text(event: Event, get_comm, ns: bool) -> str:
    """The line of an Event whose attributes are not what a decoder makes, from their str() only."""
    comm = get_comm(event.pid) if getattr(event.pid, "__hash__", None) else None
    shown = safe_text(comm) if comm else "<...>"
    stamp = format_timestamp(event.ts, "local" if ns else "counter") if isinstance(event.ts, int) else event.ts
    fmt = event.format
    name = _event_name(fmt) if isinstance(fmt, EventFormat) else "?"
    fields = event.fields if isinstance(event.fields, dict) else {}
    body = " ".join(f"{safe_text(str(k))}={value_text(v)}" for k, v in fields.items())
    return safe_text(f"{shown:>16}-{event.pid!s:<7} [{event.cpu!s:>03}] {stamp}: {name}: {body}")


def lost_text(lost: Lost, clock: str = "local") -> str:
    count = "an unknown number of" if lost.count < 0 else str(lost.count)
    return f"{'':>16}  {'':<7} [{lost.cpu:03d}] {format_timestamp(lost.ts, clock)}: LOST {count} events"


def unknown_text(item: UnknownEvent, clock: str = "local") -> str:
    what = f"event id {item.id} undecoded ({safe_text(item.reason)})" if item.reason else f"unknown event id {item.id}"
    return (f"{'<...>':>16}-{'?':<7} [{item.cpu:03d}] {format_timestamp(item.ts, clock)}: "
            f"{what}: {len(item.data)} bytes {item.data.hex()}")


def json_value(value: Any) -> Any:
    """A value as JSON can hold it: strings cleaned (bytes that were not UTF-8 as \\xNN), bytes as hex,
    tuples and lists as lists, dicts recursively; numbers, booleans and None as they are."""
    cls = value.__class__
    if cls is int or value is None or cls is float or cls is bool:
        return value
    if cls is str:
        return json_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (tuple, list)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, str):
        return json_text(value)
    return str(value)


def event_json(event: Event, comm: str | None = None) -> dict:
    fmt = event.format
    return {"ts": event.ts, "cpu": event.cpu, "pid": event.pid, "comm": None if comm is None else json_text(comm),
            "event": json_text(f"{fmt.system}:{fmt.name}"),
            "fields": {name: json_value(value) for name, value in event.fields.items()}}


def lost_json(lost: Lost) -> dict:
    return {"lost": lost.count, "cpu": lost.cpu, "ts": lost.ts}


def unknown_json(item: UnknownEvent) -> dict:
    out = {"ts": item.ts, "cpu": item.cpu, "unknown_id": item.id, "data": item.data.hex()}
    if item.reason:
        out["reason"] = item.reason
    return out


def item_text(item: Any, comms: dict[int, str] | None = None, clock: str = "local") -> str:
    """Any item decode_page yields (Event, Lost, UnknownEvent) as a text line."""
    if isinstance(item, Event):
        return event_text(item, comms.get(item.pid) if comms else None, clock)
    if isinstance(item, Lost):
        return lost_text(item, clock)
    return unknown_text(item, clock)


def item_json(item: Any, comms: dict[int, str] | None = None) -> dict:
    """Any item decode_page yields as a JSON-ready dict."""
    if isinstance(item, Event):
        return event_json(item, comms.get(item.pid) if comms else None)
    if isinstance(item, Lost):
        return lost_json(item)
    return unknown_json(item)


# -- JSON, compiled per format like the text renderer ---------------------------------------------

_json_renderers: dict[int, tuple] = {}
_comm_json: dict[str | None, str] = {}


def _json_encoder():
    import json
    return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json_string(text: str) -> str:
    from json.encoder import encode_basestring
    return encode_basestring(json_text(text))


def compile_fields_json(fmt: EventFormat):
    """fields dict -> the JSON object text of json_value(fields), compiled once per event format (the
    `fields` of every NDJSON event line). Fields that do not match the format take the general path."""
    dumps = _json_encoder()
    shown = [f for f in fmt.all_fields if not (f.common and f.name in STANDARD_COMMON)]
    names = [f.name for f in shown]
    if len(shown) > _MAX_COMPILED_FIELDS or not all(n.isidentifier() and n.isascii() for n in names) \
            or len(set(names)) != len(names):
        return lambda fields: dumps(json_value(fields))
    namespace: dict = {"_str": _json_string, "_json": lambda v: dumps(json_value(v))}
    pieces = []
    for field in shown:
        slot = f'f["{field.name}"]'
        kind = field.kind
        if kind in (FieldKind.INTEGER, FieldKind.POINTER) and field.size in (1, 2, 4, 8):
            expr = f"{{{slot}}}"
        elif kind in (FieldKind.STRING, FieldKind.FLEX_STRING, FieldKind.DATA_LOC_STRING, FieldKind.REL_LOC_STRING):
            expr = f"{{_str({slot})}}"
        elif kind == FieldKind.ARRAY and field.count and field.element_size in (1, 2, 4, 8) \
                and field.count * field.element_size == field.size:
            name = f"_array{len(namespace)}"
            namespace[name] = "[" + ",".join(["%d"] * field.count) + "]"
            expr = f"{{{name} % {slot}}}"
        else:
            expr = f"{{_json({slot})}}"
        pieces.append(f'"{field.name}":{expr}')
    source = "def render(f):\n    return f'''{{" + ",".join(pieces) + "}}'''\n"
    # Generated from field names (checked identifiers) and kinds only; nothing else of the format runs.
    exec(compile(source, _code_name("fields json", fmt), "exec"), namespace)  # noqa: S102
    render = namespace["render"]

    def safe_render(fields):
        try:
            return render(fields)
        except (KeyError, TypeError, ValueError):
            return dumps(json_value(fields))
    return safe_render


def _compile_json_renderer(fmt: EventFormat):
    """line(ts, cpu, pid, comm_json, fields) -> the JSON text event_json() would give."""
    fields_json = compile_fields_json(fmt)
    head = ',"event":' + _json_string(f"{fmt.system}:{fmt.name}") + ',"fields":'

    def line(ts, cpu, pid, comm, fields):
        return f'{{"ts":{ts},"cpu":{cpu},"pid":{pid},"comm":{comm}{head}{fields_json(fields)}}}'
    return line


def json_lines(items, comms: dict[int, str] | None = None) -> list[str]:
    """One NDJSON line (without newline) per item: the same text as encoding item_json(item), faster."""
    dumps = _json_encoder()
    out: list[str] = []
    append = out.append
    renderers = _json_renderers
    comm_cache = _comm_json
    get_comm = comms.get if comms else {}.get
    for item in items:
        if item.__class__ is not Event:
            append(dumps(item_json(item, comms)))
            continue
        ts, cpu, pid, _id, fmt, fields, _flags, _preempt = item
        entry = renderers.get(id(fmt))
        if entry is None or entry[0] is not fmt:
            if len(renderers) >= _CACHE_MAX:
                renderers.clear()
            entry = renderers[id(fmt)] = (fmt, _compile_json_renderer(fmt))
        comm = get_comm(pid)
        comm_json = comm_cache.get(comm)
        if comm_json is None:
            if len(comm_cache) > 65536:
                comm_cache.clear()
            comm_json = comm_cache[comm] = "null" if comm is None else _json_string(comm)
        line = entry[1]
        try:
            if line is None or pid.__class__ is not int or ts.__class__ is not int:
                raise TypeError
            append(line(ts, cpu, pid, comm_json, fields))
        except (KeyError, TypeError, ValueError, AttributeError):
            # Fields that do not match the format: the general path.
            append(dumps(event_json(item, comm)))
    return out

