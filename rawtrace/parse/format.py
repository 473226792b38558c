"""Parse tracefs format files (events/*/*/format, header_page, header_event) into typed descriptors."""

from __future__ import annotations

import re

from rawtrace.errors import ParseError
from rawtrace.parse.descriptors import EventFormat, Field, FieldKind, HeaderEvent, HeaderPage

__all__ = [
    "c_unescape",
    "parse_field_line",
    "parse_format",
    "parse_header_event",
    "parse_header_page",
    "split_print_fmt",
]

# One field line. `special` is how 2.6.28-2.6.30 marked __string fields; `signed:` is absent before
# about 2.6.32. The declaration runs up to the first ';' (declarations never contain one).
_FIELD_RE = re.compile(
    r"[ \t]*field(?:[ \t]+special)?[ \t]*:(?P<decl>[^;\n]*);"
    r"[ \t]*offset[ \t]*:(?P<offset>[^;\n]*);"
    r"[ \t]*size[ \t]*:(?P<size>[^;\n]*);"
    r"(?:[ \t]*signed[ \t]*:(?P<signed>[^;\n]*);)?"
    r"(?P<rest>.*)$"
)
# (field line, common, long size) -> Field. Fields are immutable, so events may share them.
_FIELDS: dict[tuple[str, bool, int | None], Field] = {}
_FIELDS_MAX = 32_768          # 6.18 x86_64: 3175 distinct field lines, 1085 print fmts, 2525 events
# Only texts up to these lengths are kept in those caches (real field lines are < 200 characters, print
# fmts rarely beyond 2000), and at most _PRINT_FMTS_MAX print fmts (a kernel has ~3000 events, most
# sharing theirs): a stream of hostile formats must not keep much memory alive.
_CACHED_LINE_MAX = 512
_CACHED_PRINT_FMT_MAX = 4096
_PRINT_FMTS_MAX = 4096
# print fmt text -> (format string, arguments, problem note or None).
_PRINT_FMTS: dict[str, tuple[str | None, tuple[str, ...], str | None]] = {}
_NUMBER_RE = re.compile(r"[0-9]{1,18}\Z")
_IDENTIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_DYNAMIC_PREFIXES = ("__data_loc", "__rel_loc")
_SPACES_RE = re.compile(r"[ \t]+")
_HEADER_EVENT_BITS_RE = re.compile(
    r"^[ \t]*(?P<name>\w+)[ \t]*:[ \t]*(?P<bits>[0-9]{1,9})[ \t]*bits[ \t]*$", re.MULTILINE)
_HEADER_EVENT_TYPE_RE = re.compile(
    r"^[ \t]*(?P<name>\w+)[ \t]*:[ \t]*type[ \t]*==[ \t]*(?P<value>[0-9]{1,9})[ \t]*$", re.MULTILINE)
_HEADER_EVENT_MAX_RE = re.compile(
    r"^[ \t]*data max type_len[ \t]*==[ \t]*(?P<value>[0-9]{1,9})[ \t]*$", re.MULTILINE)
_PRINT_LEAD_RE = re.compile(r'[ \t\n]*(?:"(?:[^"\\]|\\.)*"[ \t\n]*)+', re.DOTALL)
_PRINT_LITERAL_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
# String and character literals inside print fmt arguments (escapes included, newlines allowed: some
# kernels print raw newlines inside the format string).
_ARG_LITERAL_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', re.DOTALL)
_ESCAPE_RE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]+)|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
                   "e": "\x1b", "\\": "\\", '"': '"', "'": "'", "?": "?"}

# Element sizes of C types that do not depend on the kernel's word size. `long`, pointers, size_t and
# cpumask_t (a bitmap of unsigned longs) take the kernel long size, which a format file does not state.
_FIXED_SIZES = {
    "char": 1, "signed char": 1, "unsigned char": 1, "bool": 1, "_Bool": 1,
    "u8": 1, "s8": 1, "__u8": 1, "__s8": 1, "uint8_t": 1, "int8_t": 1,
    "short": 2, "short int": 2, "unsigned short": 2, "unsigned short int": 2, "signed short": 2,
    "u16": 2, "s16": 2, "__u16": 2, "__s16": 2, "uint16_t": 2, "int16_t": 2, "__le16": 2, "__be16": 2,
    "int": 4, "signed": 4, "signed int": 4, "unsigned": 4, "unsigned int": 4, "uint": 4,
    "u32": 4, "s32": 4, "__u32": 4, "__s32": 4, "uint32_t": 4, "int32_t": 4, "__le32": 4, "__be32": 4,
    "pid_t": 4, "uid_t": 4, "gid_t": 4, "dev_t": 4, "gfp_t": 4,
    "long long": 8, "long long int": 8, "unsigned long long": 8, "unsigned long long int": 8,
    "signed long long": 8, "u64": 8, "s64": 8, "__u64": 8, "__s64": 8, "uint64_t": 8, "int64_t": 8,
    "__le64": 8, "__be64": 8, "loff_t": 8, "time64_t": 8,
}
_LONG_TYPES = frozenset({"long", "long int", "unsigned long", "unsigned long int", "signed long",
                         "size_t", "ssize_t", "uintptr_t", "intptr_t", "cpumask_t", "off_t", "ulong"})
# Used only when `signed:` is missing: C types whose values are signed.
_SIGNED_TYPES = frozenset({
    "char", "signed char", "short", "short int", "signed short", "int", "signed", "signed int", "long",
    "long int", "signed long", "long long", "long long int", "signed long long", "s8", "s16", "s32", "s64",
    "__s8", "__s16", "__s32", "__s64", "int8_t", "int16_t", "int32_t", "int64_t", "ssize_t", "loff_t",
    "off_t", "pid_t", "time64_t", "intptr_t", "clockid_t", "timer_t", "key_t", "mqd_t", "time_t",
})
_QUALIFIERS = frozenset({"const", "volatile", "__user", "__rcu", "__percpu", "__iomem", "__seg_gs",
                         "__seg_fs", "__force"})


def _strip_qualifiers(ctype: str) -> str:
    words = [w for w in ctype.replace("*", " * ").split() if w not in _QUALIFIERS]
    return " ".join(words)


def _element_size(ctype: str, long_size: int | None) -> int | None:
    """Bytes per element of a C type, or None when the type text alone does not say."""
    base = _strip_qualifiers(ctype)
    if "*" in base:
        return long_size
    size = _FIXED_SIZES.get(base)
    if size is not None:
        return size
    if base in _LONG_TYPES:
        return long_size
    return None


def _default_signed(ctype: str) -> bool:
    base = _strip_qualifiers(ctype)
    return "*" not in base and base in _SIGNED_TYPES


def _is_char(ctype: str) -> bool:
    return _strip_qualifiers(ctype) == "char"


_ARRAY_TOKEN_RE = re.compile(r"\s*(?:(0[xX][0-9a-fA-F]{1,16}|[0-9]{1,18})|([-+*/()]))")


def _eval_array_length(expr: str) -> int | None:
    """The value of an array length written as a number or simple arithmetic (`16`, `2*4`, `0x10`);
    None for macro names (`TASK_COMM_LEN`) and anything else."""
    expr = expr.strip()
    if _NUMBER_RE.match(expr):
        return int(expr)
    tokens: list[str] = []
    position = 0
    while position < len(expr):
        m = _ARRAY_TOKEN_RE.match(expr, position)
        if m is None or m.end() == position:
            return None if expr[position:].strip() else _calculate(tokens)
        tokens.append(m.group(1) or m.group(2))
        position = m.end()
    return _calculate(tokens)


def _calculate(tokens: list[str]) -> int | None:
    """Evaluate + - * / and parentheses over integers (recursive descent); None if malformed."""
    if not tokens or len(tokens) > 64:
        return None
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def primary() -> int | None:
        nonlocal position
        token = peek()
        if token is None:
            return None
        position += 1
        if token == "(":
            value = additive()
            if value is None or peek() != ")":
                return None
            position += 1
            return value
        if token[0].isdigit():
            return int(token, 0) if token[:2].lower() == "0x" else int(token)
        return None

    def multiplicative() -> int | None:
        nonlocal position
        value = primary()
        while value is not None and peek() in ("*", "/"):
            op = tokens[position]
            position += 1
            right = primary()
            if right is None or (op == "/" and right == 0):
                return None
            value = value * right if op == "*" else value // right
        return value

    def additive() -> int | None:
        nonlocal position
        value = multiplicative()
        while value is not None and peek() in ("+", "-"):
            op = tokens[position]
            position += 1
            right = multiplicative()
            if right is None:
                return None
            value = value + right if op == "+" else value - right
        return value

    value = additive()
    if value is None or position != len(tokens) or value < 0 or value > 1 << 32:
        return None
    return value


def _int_value(text: str, what: str, source: str | None, lineno: int) -> int:
    text = text.strip()
    if not _NUMBER_RE.match(text):
        raise ParseError(f"{what} is not a decimal number: {text!r}", source=source, line=lineno)
    return int(text)


def _split_trailing_brackets(text: str) -> tuple[str, list[str]]:
    """`char name[16]` → (`char name`, [`16`]); `u8 m[2][4]` → (`u8 m`, [`2`, `4`]). Scanned by hand,
    not by regex, so that hostile input cannot make matching slow."""
    dims: list[str] = []
    text = text.rstrip(" \t")
    while text.endswith("]"):
        opening = text.rfind("[")
        if opening < 0 or "]" in text[opening + 1:-1]:
            break
        dims.append(text[opening + 1:-1].strip(" \t"))
        text = text[:opening].rstrip(" \t")
    dims.reverse()
    return text, dims


def _split_trailing_identifier(text: str) -> tuple[str, str]:
    """`const char * filename` → (`const char *`, `filename`); no identifier at the end → (text, "")."""
    end = len(text)
    start = end
    while start > 0 and text[start - 1] in _IDENTIFIER_CHARS:
        start -= 1
    name = text[start:end]
    if name and name[0].isdigit():
        return text, ""
    return text[:start].rstrip(" \t"), name


def parse_field_line(line: str, *, common: bool = False, long_size: int | None = None,
                     source: str | None = None, lineno: int = 0) -> Field:
    """One `field:...;offset:...;size:...;signed:...;` line as a Field (kind derived from type and size)."""
    m = _FIELD_RE.match(line)
    if m is None:
        raise ParseError(f"not a field line: {line.strip()[:80]!r}", source=source, line=lineno)
    offset = _int_value(m.group("offset"), "offset", source, lineno)
    size = _int_value(m.group("size"), "size", source, lineno)
    notes: list[str] = []
    decl = m.group("decl").strip()
    signed_text = m.group("signed")
    if m.group("rest").strip():
        notes.append(f"unexpected text after the field: {m.group('rest').strip()[:40]!r}")
    if decl.startswith(("__data_loc", "__rel_loc")) and decl.split(None, 1)[0] in _DYNAMIC_PREFIXES:
        return _dynamic_field(decl, offset, size, signed_text, common, long_size, notes, source, lineno)
    bits = None
    head, colon, tail = decl.rpartition(":")
    if colon and _NUMBER_RE.match(tail.strip(" \t")) and len(tail.strip(" \t")) <= 9:
        decl, bits = head.rstrip(" \t"), tail.strip(" \t")
    rest, dim_list = _split_trailing_brackets(decl)
    type_part, name = _split_trailing_identifier(rest)
    if not name or not type_part or (bits is not None and dim_list):
        raise ParseError(f"field declaration has no type and name: {decl!r}", source=source, line=lineno)
    ctype = _SPACES_RE.sub(" ", type_part)
    if signed_text is None:
        signed = _default_signed(ctype)
        notes.append("no signed: in the file; signedness taken from the type")
    else:
        signed = _int_value(signed_text, "signed", source, lineno) != 0
    if dim_list:
        if len(dim_list) > 1:
            dims = "".join(f"[{part}]" for part in dim_list)
            notes.append(f"multi-dimensional array {dims}; treated as one flat array")
            product: int | None = 1
            for length in (_eval_array_length(part) for part in dim_list):
                product = None if length is None or product is None else product * length
            dim = str(product) if product is not None else dims
            return _array_field(name, ctype, dim, offset, size, signed, common, long_size, notes,
                                type_text=f"{ctype}{dims}")
        return _array_field(name, ctype, dim_list[0], offset, size, signed, common, long_size, notes)
    if size == 0 and bits is None and "*" not in ctype:
        # Kernels before 4.x declare ftrace's flexible arrays without brackets (`char buf; size:0` in
        # print, `u32 buf; size:0` in bprint): like `T buf[]`, they run to the end of the record.
        notes.append("size 0 and no brackets: an old kernel's flexible array")
        return _array_field(name, ctype, "", offset, size, signed, common, long_size, notes, type_text=ctype)
    if bits is not None:
        notes.append(f"declared as a {bits}-bit bitfield; decoded as the whole {size}-byte word")
    if "*" in ctype:
        kind = FieldKind.POINTER if size in (4, 8) else FieldKind.OPAQUE
    else:
        kind = FieldKind.INTEGER if size in (1, 2, 4, 8) else FieldKind.OPAQUE
    if kind == FieldKind.OPAQUE:
        notes.append(f"size {size} is not a scalar size; kept as raw bytes")
    return Field(name, ctype, offset, size, signed, common, kind, notes=tuple(notes))


def _array_field(name: str, ctype: str, dim: str, offset: int, size: int, signed: bool, common: bool,
                 long_size: int | None, notes: list[str], type_text: str | None = None) -> Field:
    type_text = type_text or f"{ctype}[{dim.strip()}]"
    is_char = _is_char(ctype)
    declared = _eval_array_length(dim) if dim.strip() else 0
    type_size = _element_size(ctype, long_size)
    if size == 0:
        if declared:
            notes.append(f"declared with {declared} elements but size is 0; treated as a flexible array")
        kind = FieldKind.FLEX_STRING if is_char else FieldKind.FLEX_ARRAY
        return Field(name, type_text, offset, 0, signed, common, kind, element_type=ctype,
                     element_size=type_size, count=None, notes=tuple(notes))
    if declared is None:
        notes.append(f"array length {dim.strip()!r} is not a number; count taken from size")
    elif declared == 0:
        notes.append(f"declared as a flexible array but size is {size}; count taken from size")
    element_size = None
    if type_size and size % type_size == 0:
        element_size = type_size
    elif declared and size % declared == 0:
        element_size = size // declared
        if type_size:
            notes.append(f"{ctype} is {type_size} bytes but size/count gives {element_size}")
    if element_size is None:
        notes.append(f"cannot split {size} bytes into elements of {ctype}; kept as raw bytes")
        return Field(name, type_text, offset, size, signed, common, FieldKind.OPAQUE, element_type=ctype,
                     notes=tuple(notes))
    count = size // element_size
    if declared and count != declared:
        notes.append(f"declared count {declared} disagrees with size {size} ({count} x {element_size} bytes);"
                     " size trusted")
    if element_size not in (1, 2, 4, 8) or _strip_qualifiers(ctype).startswith(("struct ", "union ")):
        notes.append(f"elements of {ctype} ({element_size} bytes each) are not scalars; kept as raw bytes")
        return Field(name, type_text, offset, size, signed, common, FieldKind.OPAQUE, element_type=ctype,
                     element_size=element_size, count=count, notes=tuple(notes))
    kind = FieldKind.STRING if is_char else FieldKind.ARRAY
    return Field(name, type_text, offset, size, signed, common, kind, element_type=ctype,
                 element_size=element_size, count=count, notes=tuple(notes))


def _dynamic_field(decl: str, offset: int, size: int, signed_text: str | None, common: bool,
                   long_size: int | None, notes: list[str], source: str | None, lineno: int) -> Field:
    loc = "__data_loc" if decl.startswith("__data_loc") else "__rel_loc"
    rest, after = _split_trailing_brackets(decl[len(loc):])
    elem_part, name = _split_trailing_identifier(rest)
    elem_part, brackets = _split_trailing_brackets(elem_part)
    elem = _SPACES_RE.sub(" ", elem_part.strip(" \t"))
    if (not name or not elem or not decl[len(loc):len(loc) + 1].isspace() or len(after) > 1
            or len(brackets) > 1 or (after and brackets)):
        raise ParseError(f"dynamic field declaration has no element type and name: {decl!r}",
                         source=source, line=lineno)
    if after:
        notes.append("brackets after the name (`name[]`) rather than after the type")
    inside = (after or brackets or [""])[0]
    if inside:
        notes.append(f"a length inside the brackets ([{inside}]) of a dynamic field is ignored")
    type_text = f"{loc} {elem}{'[]' if brackets or after else ''}"
    if signed_text is None:
        signed = False
        notes.append("no signed: in the file; a dynamic field's location word is unsigned")
    else:
        signed = _int_value(signed_text, "signed", source, lineno) != 0
    if size != 4:
        notes.append(f"a {loc} location word is 4 bytes but size is {size}")
    is_char = _is_char(elem)
    relative = loc == "__rel_loc"
    if is_char:
        kind = FieldKind.REL_LOC_STRING if relative else FieldKind.DATA_LOC_STRING
    else:
        kind = FieldKind.REL_LOC_ARRAY if relative else FieldKind.DATA_LOC_ARRAY
    if _strip_qualifiers(elem) == "cpumask_t":
        notes.append("cpumask: a bitmap of kernel unsigned longs")
    element_size = _element_size(elem, long_size)
    return Field(name, type_text, offset, size, signed, common, kind, element_type=elem,
                 element_size=element_size, notes=tuple(notes))


def _header_value(line: str, key: str, source: str | None, lineno: int) -> str:
    value = line[len(key):].strip()
    if not value:
        raise ParseError(f"{key} has no value", source=source, line=lineno)
    return value


def parse_format(text: str, *, system: str | None = None, source: str | None = None,
                 long_size: int | None = None) -> EventFormat:
    """Parse one events/<system>/<event>/format file.

    `long_size` (the kernel's, from header_page) fills in element sizes of `long` and pointer arrays
    that the file leaves implicit; without it those element sizes are None."""
    if not isinstance(text, str):
        raise ParseError("format text is not a string", source=source)
    notes: list[str] = []
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        notes.append("CRLF line endings")
    name: str | None = None
    event_id: int | None = None
    common_fields: list[Field] = []
    fields: list[Field] = []
    print_fmt: str | None = None
    in_format = False
    # Common fields come before the first blank line after `format:`; the event's own after it.
    common = True
    # The print fmt is the rest of the file after `print fmt:` (one line in practice, but kept verbatim
    # even when it holds raw newlines): cut it off first, so the loop sees only the header and fields.
    cut = text.find("\nprint fmt:")
    if cut >= 0:
        print_fmt = text[cut + 11:].lstrip(" \t").rstrip("\n")
        text = text[:cut]
    lines = text.split("\n")
    fields_get = _FIELDS.get
    for index, line in enumerate(lines):
        if in_format:
            # Identical lines recur across events (the common fields, syscall arguments): parse each once.
            field = fields_get((line, common, long_size))
            if field is not None:
                (common_fields if common else fields).append(field)
                continue
        lineno = index + 1
        stripped = line.strip()
        if not stripped:
            if in_format and (common_fields or fields):
                common = False
            continue
        if stripped.startswith("field"):
            if not in_format:
                raise ParseError("field line before `format:`", source=source, line=lineno)
            field = parse_field_line(line, common=common, long_size=long_size, source=source, lineno=lineno)
            if len(_FIELDS) > _FIELDS_MAX:
                _FIELDS.clear()
            if len(line) <= _CACHED_LINE_MAX:
                _FIELDS[(line, common, long_size)] = field
            (common_fields if common else fields).append(field)
        elif stripped.startswith("print fmt:"):
            # The print fmt is the rest of the file: one line in practice, kept verbatim either way.
            first = stripped[len("print fmt:"):].lstrip(" \t")
            print_fmt = "\n".join([first] + lines[index + 1:]).rstrip("\n")
            break
        elif stripped.startswith("name:"):
            name = _header_value(stripped, "name:", source, lineno)
        elif stripped.startswith("ID:"):
            event_id = _int_value(_header_value(stripped, "ID:", source, lineno), "ID", source, lineno)
        elif stripped == "format:":
            in_format = True
        else:
            raise ParseError(f"unexpected line: {stripped[:80]!r}", source=source, line=lineno)
    if name is None:
        raise ParseError("no `name:` line", source=source)
    if event_id is None:
        raise ParseError("no `ID:` line", source=source)
    if not in_format:
        raise ParseError("no `format:` line", source=source)
    if fields == [] and common_fields and common_fields[-1].name.startswith("common_") is False:
        # No blank line at all: the kernel always prints one, so everything is one list. Split off the
        # leading common_* fields so that decoders still see the event's own fields.
        split = next((i for i, f in enumerate(common_fields) if not f.name.startswith("common_")), 0)
        fields = [f._replace(common=False) for f in common_fields[split:]]
        common_fields = common_fields[:split]
        notes.append("no blank line after the common fields; split at the first non-common_ name")
    if print_fmt is None:
        print_fmt = ""
        notes.append("no print fmt line")
    print_fmt_string: str | None = None
    print_fmt_args: tuple[str, ...] = ()
    if print_fmt:
        # Many events share a print fmt (every sys_exit_* has the same one): split each text once.
        cached = _PRINT_FMTS.get(print_fmt)
        if cached is None:
            try:
                format_string, args = split_print_fmt(print_fmt)
                cached = (format_string, tuple(args), None)
            except ParseError as exc:
                cached = (None, (), f"print fmt not split: {exc.reason}")
            if len(_PRINT_FMTS) > _PRINT_FMTS_MAX:
                _PRINT_FMTS.clear()
            if len(print_fmt) <= _CACHED_PRINT_FMT_MAX:
                _PRINT_FMTS[print_fmt] = cached
        print_fmt_string, print_fmt_args, problem = cached
        if problem:
            notes.append(problem)
    fields_t = _flag_field_problems(common_fields, fields, notes)
    return EventFormat(system or "", name, event_id, fields_t[0], fields_t[1], print_fmt,
                       print_fmt_string, print_fmt_args, tuple(notes))


def _flag_field_problems(common_fields: list[Field], fields: list[Field],
                         notes: list[str]) -> tuple[tuple[Field, ...], tuple[Field, ...]]:
    """Add notes for duplicate names and overlapping byte ranges (kernel bugs: tolerated, never fatal)."""
    all_fields = common_fields + fields
    # The usual case, checked in one pass: ascending, disjoint offsets and distinct names.
    end = 0
    for field in all_fields:
        if field.size:
            if field.offset < end:
                break
            end = field.offset + field.size
    else:
        if len({f.name for f in all_fields}) == len(all_fields):
            return tuple(common_fields), tuple(fields)
    extra: dict[int, list[str]] = {}
    seen: dict[str, int] = {}
    for index, field in enumerate(all_fields):
        if field.name in seen:
            extra.setdefault(index, []).append(f"duplicate field name {field.name!r}")
            notes.append(f"field name {field.name!r} appears more than once")
        else:
            seen[field.name] = index
    # Sort by offset; each field is compared with the furthest-reaching earlier field, which is enough
    # to find every overlapping pair a well-formed file could have and keeps this O(n log n).
    ordered = sorted((f.offset, i) for i, f in enumerate(all_fields) if f.size > 0)
    reach_end, reach_index = -1, -1
    for offset, index in ordered:
        field = all_fields[index]
        if offset < reach_end:
            other = all_fields[reach_index]
            extra.setdefault(index, []).append(f"overlaps {other.name}")
            extra.setdefault(reach_index, []).append(f"overlaps {field.name}")
            notes.append(f"fields {other.name} and {field.name} overlap")
        end = offset + field.size
        if end > reach_end:
            reach_end, reach_index = end, index
    if extra:
        all_fields = [f._replace(notes=f.notes + tuple(extra[i])) if i in extra else f
                      for i, f in enumerate(all_fields)]
    split = len(common_fields)
    return tuple(all_fields[:split]), tuple(all_fields[split:])


def c_unescape(literal_body: str) -> str:
    """The characters a C string literal's body (without the quotes) stands for."""
    if "\\" not in literal_body:
        return literal_body

    def one(m: re.Match) -> str:
        octal, hexa, char = m.groups()
        if octal is not None:
            return chr(int(octal, 8))
        if hexa is not None:
            return chr(int(hexa[-2:], 16))
        return _SIMPLE_ESCAPES.get(char, "\\" + char)

    return _ESCAPE_RE.sub(one, literal_body)


def split_print_fmt(text: str) -> tuple[str, list[str]]:
    """Split a print fmt into its format string (adjacent literals joined, C-unescaped) and its
    argument expressions (split at top-level commas; each stripped, kept verbatim)."""
    lead = _PRINT_LEAD_RE.match(text)
    if lead is None:
        raise ParseError("print fmt does not start with a string literal")
    format_string = "".join(c_unescape(body) for body in _PRINT_LITERAL_RE.findall(lead.group()))
    rest_start = lead.end()
    if rest_start == len(text) or not text[rest_start:].strip():
        return format_string, []
    if text[rest_start] != ",":
        raise ParseError(f"unexpected {text[rest_start:rest_start + 20]!r} after the format string")
    region = text[rest_start + 1:]
    # Literals may hold commas and brackets: stand each in for a NUL while splitting, then put it back.
    literals: list[str] = []
    if '"' in region or "'" in region:
        if "\0" in region:
            raise ParseError("NUL character in print fmt arguments")
        literals = _ARG_LITERAL_RE.findall(region)
        region = _ARG_LITERAL_RE.sub("\0", region)
        if '"' in region or "'" in region:
            raise ParseError("unterminated string or character literal in print fmt arguments")
    args: list[str] = []
    pending: list[str] = []
    parens = squares = braces = 0
    for piece in region.split(","):
        parens += piece.count("(") - piece.count(")")
        squares += piece.count("[") - piece.count("]")
        braces += piece.count("{") - piece.count("}")
        if parens < 0 or squares < 0 or braces < 0:
            raise ParseError("unbalanced closing bracket in print fmt arguments")
        if parens or squares or braces:
            pending.append(piece)
            continue
        if pending:
            pending.append(piece)
            piece = ",".join(pending)
            pending = []
        args.append(_finish_arg(piece))
    if pending:
        raise ParseError("unclosed bracket in print fmt arguments")
    if literals:
        args = _restore_literals(args, literals)
    return format_string, args


def _restore_literals(args: list[str], literals: list[str]) -> list[str]:
    position = 0
    out = []
    for arg in args:
        if "\0" in arg:
            parts = arg.split("\0")
            joined = [parts[0]]
            for part in parts[1:]:
                joined.append(literals[position])
                joined.append(part)
                position += 1
            arg = "".join(joined)
        out.append(arg)
    return out


def _finish_arg(text: str) -> str:
    arg = text.strip(" \t\n")
    if not arg:
        raise ParseError("empty argument in print fmt")
    return arg


def parse_header_page(text: str, source: str | None = None) -> HeaderPage:
    """events/header_page: where the timestamp, commit word and data sit in a ring-buffer sub-buffer."""
    if not isinstance(text, str):
        raise ParseError("header_page text is not a string", source=source)
    found: dict[str, tuple[int, int]] = {}
    for index, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        field = parse_field_line(line, source=source, lineno=index + 1)
        found.setdefault(field.name, (field.offset, field.size))
    missing = [name for name in ("timestamp", "commit", "data") if name not in found]
    if missing:
        raise ParseError(f"header_page has no {', '.join(missing)} field", source=source)
    (ts_off, ts_size), (commit_off, commit_size), (data_off, data_size) = (
        found["timestamp"], found["commit"], found["data"])
    if commit_size not in (4, 8):
        raise ParseError(f"header_page commit size {commit_size} is not 4 or 8", source=source)
    if ts_size != 8:
        raise ParseError(f"header_page timestamp size {ts_size} is not 8", source=source)
    if data_off < commit_off + commit_size or data_size <= 0:
        raise ParseError(f"header_page data at {data_off} (size {data_size}) does not follow the commit word",
                         source=source)
    return HeaderPage(ts_off, ts_size, commit_off, commit_size, data_off, data_size)


def parse_header_event(text: str, source: str | None = None) -> HeaderEvent:
    """events/header_event: bit widths and special type_len values of the compressed entry header.

    What the text leaves out takes the ring buffer's fixed ABI values (5/27-bit split, padding 29,
    time extend 30, absolute time stamp 31, data max 28), as trace-cmd and perfetto do: kernels before
    4.17 print no `time_stamp` line, and a recording may carry no header_event at all (empty text)."""
    if not isinstance(text, str):
        raise ParseError("header_event text is not a string", source=source)
    defaults = HeaderEvent()
    bits = {m.group("name"): int(m.group("bits")) for m in _HEADER_EVENT_BITS_RE.finditer(text)}
    types = {m.group("name"): int(m.group("value")) for m in _HEADER_EVENT_TYPE_RE.finditer(text)}
    max_match = _HEADER_EVENT_MAX_RE.search(text)
    type_len_bits = bits.get("type_len", defaults.type_len_bits)
    time_delta_bits = bits.get("time_delta", defaults.time_delta_bits)
    if type_len_bits + time_delta_bits != 32:
        raise ParseError(f"header_event type_len ({type_len_bits}) + time_delta ({time_delta_bits}) "
                         "bits do not make a 32-bit word", source=source)
    known = {"type_len", "time_delta", "array", "padding", "time_extend", "time_stamp"}
    extra = {k: v for k, v in {**bits, **types}.items() if k not in known}
    return HeaderEvent(
        type_len_bits=type_len_bits, time_delta_bits=time_delta_bits,
        array_bits=bits.get("array", defaults.array_bits),
        padding_type=types.get("padding", defaults.padding_type),
        time_extend_type=types.get("time_extend", defaults.time_extend_type),
        time_stamp_type=types.get("time_stamp", defaults.time_stamp_type),
        data_max_type_len=int(max_match.group("value")) if max_match else defaults.data_max_type_len,
        extra=tuple(sorted(extra.items())),
    )
