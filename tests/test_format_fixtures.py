"""The format parser on captured 6.18 files and hand-written forms of other kernels and odd cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawtrace.errors import ParseError
from rawtrace.parse.descriptors import FieldKind
from rawtrace.parse.format import (
    c_unescape,
    parse_field_line,
    parse_format,
    parse_header_event,
    parse_header_page,
    split_print_fmt,
)

FORMATS = Path(__file__).resolve().parent / "fixtures" / "formats"
HANDWRITTEN = FORMATS / "handwritten"
CAPTURED = sorted(p for p in FORMATS.iterdir() if (p / "events" / "header_page").is_file())  # captured kernels


def _captured_formats() -> list[Path]:
    return sorted(p for tree in CAPTURED for p in (tree / "events").glob("*/*/format"))


def _hand(name: str, long_size: int | None = 8):
    path = HANDWRITTEN / name
    return parse_format(path.read_bytes().decode(), source=str(path), long_size=long_size)


def _fields(fmt) -> dict:
    return {f.name: f for f in fmt.fields}


def test_captured_trees_exist_with_headers():
    assert CAPTURED, "run tools/capture_formats.py"
    for tree in CAPTURED:
        page = parse_header_page((tree / "events" / "header_page").read_text())
        assert page.commit_size in (4, 8)
        parse_header_event((tree / "events" / "header_event").read_text())


@pytest.mark.parametrize("path", _captured_formats(), ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_captured_format_parses(path):
    fmt = parse_format(path.read_text(), system=path.parent.parent.name, source=str(path), long_size=8)
    assert fmt.name == path.parent.name
    id_file = path.parent / "id"  # most ftrace/* events have none
    if id_file.exists():
        assert fmt.id == int(id_file.read_text())
    assert [f.name for f in fmt.common_fields] == [
        "common_type",
        "common_flags",
        "common_preempt_count",
        "common_pid",
    ]
    assert not fmt.notes
    assert fmt.print_fmt_string is not None


def test_captured_trees_cover_each_kind():
    kinds = set()
    for path in _captured_formats():
        kinds |= {f.kind for f in parse_format(path.read_text(), long_size=8).all_fields}
    assert kinds >= {
        FieldKind.INTEGER,
        FieldKind.POINTER,
        FieldKind.ARRAY,
        FieldKind.STRING,
        FieldKind.FLEX_ARRAY,
        FieldKind.FLEX_STRING,
        FieldKind.DATA_LOC_STRING,
        FieldKind.DATA_LOC_ARRAY,
    }


def _captured(system: str, name: str):
    path = CAPTURED[0] / "events" / system / name / "format"
    return parse_format(path.read_text(), system=system, source=str(path), long_size=8)


def test_syscall_event_layout():
    fmt = _captured("syscalls", "sys_enter_openat")
    fields = _fields(fmt)
    assert [f.name for f in fmt.fields] == ["__syscall_nr", "dfd", "filename", "flags", "mode"]
    assert (fields["__syscall_nr"].offset, fields["__syscall_nr"].size, fields["__syscall_nr"].signed) == (
        8,
        4,
        True,
    )
    # Argument slots are unsigned longs whatever the declared type.
    assert (fields["dfd"].type, fields["dfd"].offset, fields["dfd"].size, fields["dfd"].signed) == (
        "int",
        16,
        8,
        False,
    )
    assert fields["filename"].kind == FieldKind.POINTER and fields["filename"].type == "const char *"
    assert fmt.print_fmt_args[0] == "((unsigned long)(REC->dfd))"
    exit_fields = _fields(_captured("syscalls", "sys_exit_openat"))
    assert (exit_fields["ret"].offset, exit_fields["ret"].size, exit_fields["ret"].signed) == (16, 8, True)


def test_sched_switch_strings_and_print_tables():
    fmt = _captured("sched", "sched_switch")
    fields = _fields(fmt)
    comm = fields["prev_comm"]
    assert (comm.kind, comm.type, comm.count, comm.element_size) == (FieldKind.STRING, "char[16]", 16, 1)
    assert fmt.print_fmt_string.startswith("prev_comm=%s prev_pid=%d")
    assert len(fmt.print_fmt_args) == 8
    assert fmt.print_fmt_args[3].startswith("(REC->prev_state & ((((0x00000000 | 0x00000001")
    assert fmt.print_fmt_args[-1] == "REC->next_prio"


def test_ftrace_flexible_and_fixed_arrays():
    function = _fields(_captured("ftrace", "function"))["args"]
    assert (function.kind, function.size, function.element_size, function.count) == (
        FieldKind.FLEX_ARRAY,
        0,
        8,
        None,
    )
    print_buf = _fields(_captured("ftrace", "print"))["buf"]
    assert print_buf.kind == FieldKind.FLEX_STRING
    caller = _fields(_captured("ftrace", "kernel_stack"))["caller"]
    assert (caller.kind, caller.count, caller.element_size, caller.element_type) == (
        FieldKind.ARRAY,
        8,
        8,
        "unsigned long",
    )
    # The print fmt has three adjacent literals.
    assert _captured("ftrace", "kernel_stack").print_fmt_string.count("=> %ps") == 8


def test_data_loc_forms():
    cpumask = _fields(_captured("ipi", "ipi_send_cpumask"))["cpumask"]
    assert (cpumask.kind, cpumask.type, cpumask.element_type, cpumask.element_size) == (
        FieldKind.DATA_LOC_ARRAY,
        "__data_loc cpumask_t",
        "cpumask_t",
        8,
    )
    filename = _fields(_captured("sched", "sched_process_exec"))["filename"]
    assert (filename.kind, filename.type, filename.size) == (
        FieldKind.DATA_LOC_STRING,
        "__data_loc char[]",
        4,
    )
    dma = _fields(_captured("dma", "dma_map_sg"))
    arrays = [f for f in dma.values() if f.kind == FieldKind.DATA_LOC_ARRAY]
    assert arrays and all(f.element_size in (4, 8) for f in arrays)


def test_multiline_print_fmt_captured():
    fmt = _captured("ext4", "ext4_fsmap_low_key")
    assert "\n" in fmt.print_fmt and fmt.print_fmt_string.endswith("\n")
    assert fmt.print_fmt_args[0] == "((unsigned int) ((REC->dev) >> 20))"


# -- hand-written forms ---------------------------------------------------------------------------


def test_old_kernel_without_signed_defaults_from_type():
    fmt = _hand("old_2631_no_signed.format", long_size=4)
    fields = {f.name: f for f in fmt.all_fields}
    assert [f.name for f in fmt.common_fields][-1] == "common_tgid"
    assert fields["common_type"].signed is False and fields["common_pid"].signed is True
    assert fields["prev_pid"].signed is True and fields["prev_state"].size == 4
    assert all(any("no signed:" in n for n in f.notes) for f in fmt.all_fields)
    comm = fields["prev_comm"]
    assert (comm.kind, comm.count, comm.type) == (FieldKind.STRING, 16, "char[TASK_COMM_LEN]")
    assert any("TASK_COMM_LEN" in n for n in comm.notes)


def test_field_special_lines():
    fields = _fields(_hand("old_2628_field_special.format", long_size=4))
    assert (fields["filename"].kind, fields["filename"].offset, fields["filename"].size) == (
        FieldKind.POINTER,
        12,
        4,
    )


def test_32bit_kernel_layouts():
    fields = _fields(_hand("arm32_sys_enter_openat.format", long_size=4))
    assert [(f.offset, f.size) for f in fields.values()] == [(8, 4), (12, 4), (16, 4), (20, 4), (24, 4)]
    assert fields["filename"].kind == FieldKind.POINTER
    caller = _fields(_hand("i386_kernel_stack.format", long_size=4))["caller"]
    assert (caller.count, caller.element_size) == (8, 4)
    # Without the long size the element size still follows from size / count.
    assert _fields(_hand("i386_kernel_stack.format", long_size=None))["caller"].element_size == 4
    page = parse_header_page((HANDWRITTEN / "i386_header_page").read_text())
    assert (page.commit_size, page.data_offset, page.data_size, page.subbuf_size) == (4, 12, 4084, 4096)
    old = parse_header_page((HANDWRITTEN / "old_header_page_no_signed").read_text())
    assert (old.commit_size, old.data_offset) == (8, 16)
    assert parse_header_event((HANDWRITTEN / "compact_header_event").read_text()).time_stamp_type == 31


def test_rel_loc():
    fields = _fields(_hand("rel_loc_user_event.format"))
    assert (fields["msg"].kind, fields["msg"].type) == (FieldKind.REL_LOC_STRING, "__rel_loc char[]")
    assert (fields["blob"].kind, fields["blob"].element_size) == (FieldKind.REL_LOC_ARRAY, 1)


def test_array_length_expressions():
    fields = _fields(_hand("array_length_expressions.format"))
    assert (fields["key"].count, fields["key"].notes) == (8, ())
    assert (fields["words"].count, fields["words"].element_size) == (4, 4)
    assert fields["stack"].count == 4 and any("MAX_STACK" in n for n in fields["stack"].notes)
    items = fields["items"]
    assert (items.kind, items.count, items.element_size) == (FieldKind.OPAQUE, 3, 8)
    assert items.notes


def test_cpumask_forms():
    fields = _fields(_hand("cpumask_forms.format"))
    assert fields["cpumask"].type == "__data_loc cpumask_t"
    assert fields["target"].type == "__data_loc cpumask_t[]"
    assert {f.kind for n, f in fields.items() if n != "callsite"} == {FieldKind.DATA_LOC_ARRAY}
    assert fields["bitmask"].element_size == 8
    fmt = _hand("cpumask_forms.format", long_size=4)
    assert _fields(fmt)["cpumask"].element_size == 4


def test_bitfields_and_odd_types_are_flagged_not_guessed():
    fields = _fields(_hand("bitfield_and_odd_types.format"))
    assert fields["flags"].kind == FieldKind.INTEGER and "bitfield" in fields["flags"].notes[0]
    assert fields["nr"].kind == FieldKind.INTEGER and not fields["nr"].notes
    assert fields["wide"].kind == FieldKind.OPAQUE and fields["wide"].notes
    assert (
        fields["head_ptr"].kind == FieldKind.POINTER
        and fields["head_ptr"].type == "struct robust_list_head * *"
    )
    assert fields["argv"].type == "const char *const *"
    assert fields["gs_ptr"].kind == FieldKind.POINTER
    assert (fields["matrix"].count, fields["matrix"].type) == (8, "u8[2][4]") and fields["matrix"].notes


def test_count_disagreeing_with_size_trusts_size():
    fields = _fields(_hand("count_disagrees_with_size.format"))
    assert (fields["name"].count, fields["name"].size) == (32, 32)
    assert (fields["vals"].count, fields["vals"].element_size) == (2, 4)
    assert fields["raw"].count == 5
    assert all(any("disagrees" in n for n in f.notes) for f in fields.values())


def test_flexible_arrays():
    fields = _fields(_hand("flexible_arrays.format"))
    assert (fields["data"].kind, fields["data"].size) == (FieldKind.FLEX_ARRAY, 0)
    assert fields["msg"].kind == FieldKind.FLEX_STRING
    assert (fields["args"].kind, fields["args"].element_size) == (FieldKind.FLEX_ARRAY, 8)


def test_overlaps_and_duplicates_flagged():
    fmt = _hand("overlapping_fields.format")
    whole, low, first_next, second_next = fmt.fields
    assert "overlaps low" in whole.notes and "overlaps whole" in low.notes
    assert not first_next.notes and second_next.notes
    assert len(fmt.notes) == 2


def test_odd_spacing():
    fmt = _hand("odd_spacing.format")
    fields = {f.name: f for f in fmt.all_fields}
    assert (fields["common_pid"].offset, fields["common_pid"].signed) == (4, True)
    assert (fields["ip"].type, fields["ip"].offset, fields["ip"].size) == ("unsigned long", 8, 8)
    assert (fields["comm"].kind, fields["comm"].count) == (FieldKind.STRING, 16)
    assert fields["name"].kind == FieldKind.DATA_LOC_STRING
    assert fmt.print_fmt_args == ("REC->ip", "REC->comm", "__get_str(name)")


def test_preempt_rt_common_fields():
    fmt = _hand("preempt_rt_common.format")
    assert [f.name for f in fmt.common_fields][-3:] == [
        "common_migrate_disable",
        "common_preempt_lazy_count",
        "common_padding",
    ]
    assert [(f.name, f.offset) for f in fmt.fields] == [("value", 12)]


def test_print_fmt_tricky():
    fmt = _hand("print_fmt_tricky.format")
    assert fmt.print_fmt_string == 'flags=%s state=%s sep=%c "q" AA tail'
    assert fmt.print_fmt_args == (
        '__print_flags(REC->flags, "|", { 0x1, "A,B" }, { 0x2, "(C" })',
        '__print_symbolic(REC->state, { 0, "[R]" }, { 1, "{S}" })',
        "','",
    )
    assert _hand("print_fmt_multiline.format").print_fmt_string == "dev %d:%d len %llu\n"


def test_no_event_fields_and_crlf():
    fmt = _hand("no_event_fields.format")
    assert len(fmt.common_fields) == 4 and fmt.fields == ()
    assert fmt.print_fmt_string == "marker" and fmt.print_fmt_args == ()
    crlf = _hand("dos_line_endings.format")
    assert [f.name for f in crlf.fields] == ["value"] and crlf.print_fmt == '"value=%d", REC->value'
    assert crlf.notes == ("CRLF line endings",)


@pytest.mark.parametrize(
    "name, line, reason",
    [
        ("no_id.format", None, "no `ID:` line"),
        ("no_name.format", None, "no `name:` line"),
        ("offset_not_number.format", 5, "offset is not a decimal number"),
        ("garbage_line.format", 9, "unexpected line"),
        ("field_without_name.format", 9, "no type and name"),
        ("field_before_format.format", 3, "field line before `format:`"),
    ],
)
def test_bad_files_name_file_line_and_reason(name, line, reason):
    path = HANDWRITTEN / "bad" / name
    with pytest.raises(ParseError) as info:
        parse_format(path.read_text(), source=str(path))
    assert info.value.source == str(path)
    assert info.value.line == line
    assert reason in info.value.reason
    assert str(path) in info.value.message


# -- pieces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ('"x"', ("x", [])),
        ('"a" "b", REC->a', ("ab", ["REC->a"])),
        (
            '"%s", __print_flags(REC->f, "|", {1, "A"}, {2, "B"})',
            ("%s", ['__print_flags(REC->f, "|", {1, "A"}, {2, "B"})']),
        ),
        ('"%d %d", f(a, b), c[1, 2]', ("%d %d", ["f(a, b)", "c[1, 2]"])),
        ("\"%c\", ','", ("%c", ["','"])),
        ('"\\t\\n\\\\\\"\\x41\\101\\e"', ('\t\n\\"AA\x1b', [])),
        ('"%s", REC->a ? "yes, (really" : "no"', ("%s", ['REC->a ? "yes, (really" : "no"'])),
    ],
)
def test_split_print_fmt(text, expected):
    assert split_print_fmt(text) == (expected[0], expected[1])


@pytest.mark.parametrize(
    "text", ["x, y", '"x", (a', '"x", a)', '"x", "open', '"x", a,,b', '"x" y', '"x", (a]', '"x",']
)
def test_split_print_fmt_rejects(text):
    with pytest.raises(ParseError):
        split_print_fmt(text)


def test_c_unescape():
    assert c_unescape(r"a\tb") == "a\tb"
    assert c_unescape(r"\0") == "\0"
    assert c_unescape(r"\q") == r"\q"


def test_field_line_directly():
    field = parse_field_line("\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:1;", long_size=8)
    assert (field.name, field.kind, field.signed, field.common) == ("comm", FieldKind.STRING, True, False)
    with pytest.raises(ParseError):
        parse_field_line("\tfield:int x;\toffset:8;\tsize:4", source="f", lineno=3)


COMMON_LINES = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n"
)
OWN_LINES = "\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:u32 b;\toffset:12;\tsize:4;\tsigned:0;\n"


@pytest.mark.parametrize(
    "body, note",
    [
        (COMMON_LINES + "\n" + OWN_LINES + "\n", None),  # the kernel's layout
        (COMMON_LINES + OWN_LINES + "\n", "no blank line after the common fields"),
        ("\n" + COMMON_LINES + OWN_LINES + "\n", "no blank line after the common fields"),
        (COMMON_LINES + "\n\n\n" + OWN_LINES, None),
    ],
)
def test_common_and_own_fields_are_told_apart(body, note):
    fmt = parse_format(f'name: e\nID: 7\nformat:\n{body}print fmt: "a=%d", REC->a\n')
    assert [f.name for f in fmt.common_fields] == ["common_type", "common_pid"]
    assert [(f.name, f.common) for f in fmt.fields] == [("a", False), ("b", False)]
    assert all(f.common for f in fmt.common_fields)
    assert (note in fmt.notes[0]) if note else fmt.notes == ()


def test_size_zero_scalar_and_missing_print_fmt_are_noted():
    # `char buf; size:0` is how old kernels declare a flexible array (see test_old_kernels.py).
    fmt = parse_format(
        "name: e\nID: 7\nformat:\n" + COMMON_LINES + "\n\tfield:char buf;\toffset:8;\tsize:0;\tsigned:0;\n"
    )
    (buf,) = fmt.fields
    assert buf.kind == FieldKind.FLEX_STRING and buf.notes
    assert fmt.print_fmt == "" and fmt.print_fmt_string is None and "no print fmt line" in fmt.notes
