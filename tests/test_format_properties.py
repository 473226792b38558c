"""Property-based tests: the format parser raises only ParseError, and reads back what it is given."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawtrace.errors import ParseError
from rawtrace.parse.descriptors import FieldKind
from rawtrace.parse.format import (
    parse_field_line,
    parse_format,
    parse_header_event,
    parse_header_page,
    split_print_fmt,
)

FORMATS = Path(__file__).resolve().parent / "fixtures" / "formats"
REAL_FILES = sorted(FORMATS.glob("*/events/*/*/format")) + sorted((FORMATS / "handwritten").glob("*.format"))
REAL_TEXTS = [p.read_bytes().decode() for p in REAL_FILES]
HEADERS = [p.read_text() for p in FORMATS.glob("*/events/header_*")] + [
    p.read_text() for p in (FORMATS / "handwritten").iterdir() if "header" in p.name
]

# Characters that matter to the grammar, plus anything.
GRAMMAR = st.sampled_from(
    list(";:\t \n[]()\"'{},*\\0123456789")
    + [
        "field:",
        "offset:",
        "size:",
        "signed:",
        "__data_loc ",
        "__rel_loc ",
        "print fmt:",
        "name:",
        "ID:",
        "format:",
        "char ",
        "[]",
    ]
)
TEXT = st.one_of(st.text(max_size=300), st.lists(GRAMMAR, max_size=80).map("".join))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_parse_errors(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except ParseError:
        return None


@SETTINGS
@given(TEXT)
def test_random_text_gives_only_parse_errors(text):
    _only_parse_errors(parse_format, text, source="random")
    _only_parse_errors(parse_header_page, text)
    _only_parse_errors(parse_header_event, text)
    _only_parse_errors(split_print_fmt, text)
    _only_parse_errors(parse_field_line, text)


@st.composite
def mutated_real_file(draw):
    text = draw(st.sampled_from(REAL_TEXTS + HEADERS))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate_line", "truncate"]))
        if action == "insert":
            text = text[:position] + draw(TEXT) + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 40)) :]
        elif action == "replace":
            text = text[:position] + draw(GRAMMAR) + text[position + 1 :]
        elif action == "duplicate_line":
            lines = text.split("\n")
            index = draw(st.integers(0, len(lines) - 1))
            lines.insert(index, lines[index])
            text = "\n".join(lines)
        else:
            text = text[:position]
    return text


@SETTINGS
@given(mutated_real_file())
def test_mutated_real_files_give_only_parse_errors(text):
    fmt = _only_parse_errors(parse_format, text, source="mutated", long_size=8)
    if fmt is not None:
        assert all(f.kind in FieldKind.ALL for f in fmt.all_fields)
        assert all(f.size >= 0 and f.offset >= 0 for f in fmt.all_fields)
    _only_parse_errors(parse_header_page, text)
    _only_parse_errors(parse_header_event, text)


SCALARS = {
    "u8": (1, False),
    "s16": (2, True),
    "int": (4, True),
    "unsigned int": (4, False),
    "u64": (8, False),
    "long": (8, True),
    "void *": (8, False),
    "bool": (1, False),
}
IDENTIFIER = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)


@st.composite
def generated_event(draw):
    """A random but well-formed event: (text, expected (name, type, offset, size, signed, kind) rows)."""
    names = draw(st.lists(IDENTIFIER, min_size=1, max_size=12, unique=True))
    rows, offset = [], 8
    for name in names:
        form = draw(st.sampled_from(["scalar", "array", "string", "data_loc", "rel_loc"]))
        ctype = draw(st.sampled_from(sorted(SCALARS)))
        size, signed = SCALARS[ctype]
        if form == "scalar":
            decl, kind, type_text = (
                f"{ctype} {name}",
                (FieldKind.POINTER if "*" in ctype else FieldKind.INTEGER),
                ctype,
            )
        elif form == "array":
            count = draw(st.integers(1, 8))
            decl, kind, type_text, size = (
                f"{ctype} {name}[{count}]",
                FieldKind.ARRAY,
                f"{ctype}[{count}]",
                size * count,
            )
        elif form == "string":
            count = draw(st.integers(1, 32))
            decl, kind, type_text, size, signed = (
                f"char {name}[{count}]",
                FieldKind.STRING,
                f"char[{count}]",
                count,
                True,
            )
        else:
            loc = "__data_loc" if form == "data_loc" else "__rel_loc"
            elem = draw(st.sampled_from(["char", "u8", "u32"]))
            decl, type_text, size, signed = f"{loc} {elem}[] {name}", f"{loc} {elem}[]", 4, False
            kind = {
                ("__data_loc", True): FieldKind.DATA_LOC_STRING,
                ("__data_loc", False): FieldKind.DATA_LOC_ARRAY,
                ("__rel_loc", True): FieldKind.REL_LOC_STRING,
                ("__rel_loc", False): FieldKind.REL_LOC_ARRAY,
            }[(loc, elem == "char")]
        rows.append((name, type_text, offset, size, signed, kind, decl))
        offset += size
    args = draw(
        st.lists(st.sampled_from(["REC->a", "f(x, y)", '"s,(t"', '{ 1, "A" }', "a[1,2]", "(b)"]), max_size=5)
    )
    fmt_string = draw(
        st.text(
            alphabet=st.characters(blacklist_characters='"\\\n\r', blacklist_categories=("Cs",)), max_size=30
        )
    )
    print_fmt = ", ".join([f'"{fmt_string}"'] + args)
    common = (
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n"
    )
    body = "".join(
        f"\tfield:{decl};\toffset:{off};\tsize:{size};\tsigned:{int(signed)};\n"
        for _n, _t, off, size, signed, _k, decl in rows
    )
    text = f"name: ev\nID: 42\nformat:\n{common}\n{body}\nprint fmt: {print_fmt}\n"
    return text, [r[:6] for r in rows], fmt_string, args


@SETTINGS
@given(generated_event())
def test_generated_events_read_back(case):
    text, expected, fmt_string, args = case
    fmt = parse_format(text, system="gen", long_size=8)
    assert (fmt.name, fmt.id, fmt.system) == ("ev", 42, "gen")
    assert [(f.name, f.type, f.offset, f.size, f.signed, f.kind) for f in fmt.fields] == expected
    assert [f.name for f in fmt.common_fields] == ["common_type", "common_pid"]
    assert fmt.print_fmt_string == fmt_string
    assert list(fmt.print_fmt_args) == args
    assert not fmt.notes and not any(f.notes for f in fmt.all_fields)


SPACES = " " * 20000
HOSTILE = [
    "a " * 5000 + "x",
    "[1]" * 3000,
    "x " + "[" * 5000,
    "__data_loc " + "a " * 5000,
    "__data_loc " + "[] " * 3000 + "x",
    "a:" * 3000,
    "int x" + SPACES + "y",
    "__data_loc char" + SPACES + "[]" + SPACES + "x" + SPACES + "!",
    "int" + SPACES + "x" + SPACES + ":" + SPACES + "3",
    "int x" + "[ " * 5000 + "]" * 5000,
    "__data_locx y",
]


@pytest.mark.parametrize("decl", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_declarations_give_a_field_or_parse_error(decl):
    # Each of these once took seconds to minutes in a backtracking regex; now they must simply finish.
    for line in (
        f"\tfield:{decl};\toffset:8;\tsize:4;\tsigned:0;",
        f"\tfield:{decl}",
        f"\tfield:int x;\toffset:{decl}",
        "\tfield:x;offset:" + SPACES + "1;size:" + SPACES,
    ):
        _only_parse_errors(parse_field_line, line)
    for text in (
        '"x", ' + '"a' * 5000,
        '"x", ' + "(" * 10000 + ")" * 10000,
        '"x"' + SPACES + ",",
        SPACES + '"x"' + SPACES + '"y"' * 3000 + SPACES,
    ):
        _only_parse_errors(split_print_fmt, text)


def test_a_type_that_only_starts_like_data_loc_is_a_plain_field():
    field = parse_field_line("\tfield:__data_locx y;\toffset:8;\tsize:4;\tsigned:0;")
    assert (field.name, field.type, field.kind) == ("y", "__data_locx", FieldKind.INTEGER)
