"""Probe spec parsing: friendly arguments per architecture, validation, and the exact definition lines."""

from __future__ import annotations

import os

import pytest

from rawtrace.errors import UsageError
from rawtrace.probes import (
    PROBE_ARCHES,
    ProbeSpec,
    ResolvedProbe,
    group_owner,
    resolve,
    run_group,
    sanitize_name,
    validate_name,
    validate_type,
)

G = "rawtrace_4242"


def definition(text: str, arch: str = "x86_64", event: str | None = None) -> str:
    spec = ProbeSpec.parse(text, arch)
    place = {"kprobe": spec.symbol, "kretprobe": spec.symbol, "fprobe": spec.symbol, "fretprobe": spec.symbol,
             "eprobe": f"{spec.target}.{spec.symbol}"}.get(spec.kind, "/lib/x.so:0x1130")
    if spec.kind == "kprobe" and spec.offset:
        place += f"+{spec.offset}"
    return ResolvedProbe(spec, place).definition(G, event or spec.event_name)


# --- parsing the head -----------------------------------------------------------------------------


def test_uprobe_head():
    spec = ProbeSpec.parse("uprobe:libc:openat", "x86_64")
    assert (spec.kind, spec.target, spec.symbol, spec.offset, spec.return_probe) == \
        ("uprobe", "libc", "openat", 0, False)
    spec = ProbeSpec.parse("uretprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:openat@@GLIBC_2.4", "x86_64")
    assert (spec.target, spec.symbol, spec.return_probe) == \
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "openat@@GLIBC_2.4", True)
    spec = ProbeSpec.parse("uprobe:pid:1234:main+0x10", "x86_64")
    assert (spec.target, spec.symbol, spec.offset) == ("pid:1234", "main", 16)
    assert ProbeSpec.parse("uprobe:/opt/a:b/lib.so:f+8", "x86_64").target == "/opt/a:b/lib.so"


def test_other_heads():
    k = ProbeSpec.parse("kprobe:ext4:ext4_file_open+4", "x86_64")
    assert (k.kind, k.target, k.symbol, k.offset) == ("kprobe", "ext4", "ext4_file_open", 4)
    e = ProbeSpec.parse("eprobe:syscalls:sys_enter_openat", "x86_64")
    assert (e.target, e.symbol) == ("syscalls", "sys_enter_openat")
    assert ProbeSpec.parse("eprobe:syscalls.sys_enter_openat", "x86_64").symbol == "sys_enter_openat"
    f = ProbeSpec.parse("fretprobe:vfs_read", "x86_64")
    assert f.return_probe and f.kind == "fretprobe"


def test_explicit_event_name():
    spec = ProbeSpec.parse("myopen=uprobe:libc:openat arg2:ustring", "x86_64")
    assert spec.name == "myopen" and spec.event_name == "myopen"
    with pytest.raises(UsageError, match="invalid event name"):
        ProbeSpec.parse("9bad=uprobe:libc:openat", "x86_64")


def test_default_event_names():
    assert ProbeSpec.parse("uprobe:libc:openat@@GLIBC_2.4", "x86_64").event_name == "openat"
    assert ProbeSpec.parse("uretprobe:libc:openat", "x86_64").event_name == "openat_ret"
    assert ProbeSpec.parse("kprobe:vfs_read+0x10", "x86_64").event_name == "vfs_read_10"
    assert ProbeSpec.parse("eprobe:syscalls:sys_enter_openat", "x86_64").event_name == "sys_enter_openat_e"
    assert ProbeSpec.parse("kprobe:foo.isra.0", "x86_64").event_name == "foo_isra_0"


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("uprob:libc:openat", "did you mean uprobe"),
    ("uprobe:openat", "expected uprobe:TARGET:SYMBOL"),
    ("uprobe:libc:open at", "bad"),
    ("uprobe:pid:abc:main", "pid:<number>"),
    ("uprobe:p:%rsi:main", "bad target"),
    ("uprobe:libc:openat+zz", "bad offset"),
    ("uretprobe:libc:openat+4", "drop the offset"),
    ("kretprobe:vfs_read+4", "drop the offset"),
    ("eprobe:syscalls", "eprobe:SYSTEM:EVENT"),
    ("kprobe:", "expected kprobe:FUNCTION"),
])
def test_bad_heads(text, message):
    with pytest.raises(UsageError, match=message):
        ProbeSpec.parse(text, "x86_64")


# --- injection -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "uprobe:libc:openat\n-:othergrp/theirs",
    "uprobe:libc:openat x=%di\r-:a/b",
    "uprobe:libc:openat\x00",
    "uprobe:libc:openat x=%di;-:othergrp/ev",
    "kprobe:vfs_read x=%di # comment hides the rest",
    "kprobe:vfs_read\x1b[2J",
    "uprobe:libc:openat x=%di\n",
    "uprobe:/tmp/a\u00a0b:main",          # UTF-8 c2 a0: a space to the kernel's isspace()
    "uprobe:/tmp/\u2020x:main",           # e2 80 a0
])
def test_injection_attempts_are_rejected(text):
    with pytest.raises(UsageError):
        ProbeSpec.parse(text, "x86_64")


@pytest.mark.parametrize("arg", [
    "-:othergrp/ev", "x=-:othergrp/ev", "p:othergrp/ev", "x=%di:u32:string", 'x=\\"a b"', "x=%di)",
    "x=+0(%di", "a-b=%di", "x=%di:u32 y", "common_pid=%di", "__probe_ip=%di", "x=$retval",
])
def test_bad_args_rejected(arg):
    with pytest.raises(UsageError):
        ProbeSpec.parse(f"uprobe:libc:openat {arg}", "x86_64")


def test_group_can_never_come_from_the_spec():
    spec = ProbeSpec.parse("uprobe:libc:openat", "x86_64")
    line = ResolvedProbe(spec, "/lib/x.so:0x10").definition(G, "ev")
    assert line.startswith(f"p:{G}/ev ")
    with pytest.raises(UsageError):
        ResolvedProbe(spec, "/lib/x.so:0x10").definition("other/grp", "ev")
    with pytest.raises(UsageError):
        ResolvedProbe(spec, "/lib/x.so:0x10").definition(G, "ev\n-:a/b")
    with pytest.raises(UsageError):
        ResolvedProbe(spec, "/lib/x.so:0x10\n-:a/b").definition(G, "ev")


def test_names():
    assert sanitize_name("open-at.isra.0") == "open_at_isra_0"
    assert sanitize_name("9lives") == "_9lives"
    assert len(sanitize_name("x" * 100)) == 64
    assert validate_name("ok_1") == "ok_1"
    for bad in ("", "1x", "a/b", "a b", "x" * 65, "é"):
        with pytest.raises(UsageError):
            validate_name(bad)
    # The group carries the owner tag: pid, start time and pid namespace (owner tags: tests/test_reset.py).
    from rawtrace.tracefs.instance import owner_tag
    assert run_group() == "rawtrace_" + owner_tag().replace("-", "_")
    assert run_group().startswith(f"rawtrace_{os.getpid()}_")
    assert validate_name(run_group(), "group name")
    assert group_owner(run_group()) == os.getpid()
    assert group_owner("rawtrace_77") == 77                         # groups of older versions
    assert group_owner("rawtrace_x") is None and group_owner("kprobes") is None


@pytest.mark.parametrize("good", ["u8", "s64", "x32", "string", "ustring", "symbol", "symstr", "%pd", "%pD",
                                  "char", "b4@3/32", "u32[4]", "string[2]"])
def test_known_types(good):
    assert validate_type(good) == good


@pytest.mark.parametrize("bad", ["u33", "int", "str", "b4@3", "u32[0]", "u32[65]", "x64[]"])
def test_unknown_types(bad):
    with pytest.raises(UsageError):
        validate_type(bad)


def test_type_typo_suggests():
    with pytest.raises(UsageError, match="did you mean ustring"):
        ProbeSpec.parse("uprobe:libc:openat path=+0(%si):ustrng", "x86_64")


# --- friendly arguments: exact lines ----------------------------------------------------------------


def test_uprobe_friendly_args_x86_64():
    assert definition("uprobe:libc:openat path=+0(%si):ustring arg2:ustring") == \
        f"p:{G}/openat /lib/x.so:0x1130 path=+0(%si):ustring arg2=+0(%si):ustring"
    assert definition("uprobe:libc:f arg1 arg2:u32 arg3:x64 arg4 arg5 arg6 arg7 arg8:s32") == \
        (f"p:{G}/f /lib/x.so:0x1130 arg1=%di arg2=%si:u32 arg3=%dx:x64 arg4=%cx arg5=%r8 arg6=%r9 "
         "arg7=$stack1 arg8=$stack2:s32")
    assert definition("uretprobe:libc:openat fd=retval:s32") == \
        f"r:{G}/openat_ret /lib/x.so:0x1130 fd=$retval:s32"
    assert definition("uretprobe:libc:getenv retval:string") == \
        f"r:{G}/getenv_ret /lib/x.so:0x1130 retval=+0($retval):string"
    assert definition("uprobe:libc:f %rdi %esi comm") == \
        f"p:{G}/f /lib/x.so:0x1130 arg1=%di arg2=%si comm=$comm:string"


def test_uprobe_friendly_args_arm64():
    assert definition("uprobe:libc:openat path=arg2:ustring flags=arg3:x32", "aarch64") == \
        f"p:{G}/openat /lib/x.so:0x1130 path=+0(%x1):ustring flags=%x2:x32"
    assert definition("uprobe:libc:f arg8 arg9 arg10", "aarch64") == \
        f"p:{G}/f /lib/x.so:0x1130 arg8=%x7 arg9=$stack0 arg10=$stack1"
    with pytest.raises(UsageError, match="unknown arm64 register %di"):
        ProbeSpec.parse("uprobe:libc:f %di", "aarch64")


def test_uprobe_arg_rules():
    with pytest.raises(UsageError, match="uprobes cannot use"):
        ProbeSpec.parse("uprobe:libc:openat $arg2", "x86_64")
    with pytest.raises(UsageError, match="only in return probes"):
        ProbeSpec.parse("uprobe:libc:openat retval", "x86_64")
    with pytest.raises(UsageError, match="overwritten"):
        ProbeSpec.parse("uretprobe:libc:openat arg1", "x86_64")
    with pytest.raises(UsageError, match="function entry"):
        ProbeSpec.parse("uprobe:libc:openat+4 arg1", "x86_64")
    with pytest.raises(UsageError, match="count from 1"):
        ProbeSpec.parse("uprobe:libc:openat arg0", "x86_64")
    with pytest.raises(UsageError, match="unknown x86_64 register"):
        ProbeSpec.parse("uprobe:libc:openat x=%zz", "x86_64")


def test_kprobe_syscall_wrapper_args():
    assert definition("kprobe:__x64_sys_openat dfd=arg1:s32 path=arg2:string flags=arg3:x32 arg4") == \
        (f"p:{G}/__x64_sys_openat __x64_sys_openat dfd=+0x70(%di):s32 path=+0(+0x68(%di)):ustring "
         "flags=+0x60(%di):x32 arg4=+0x38(%di)")
    assert definition("kprobe:__arm64_sys_openat path=arg2:ustring arg6", "aarch64") == \
        f"p:{G}/__arm64_sys_openat __arm64_sys_openat path=+0(+0x8(%x0)):ustring arg6=+0x28(%x0)"
    with pytest.raises(UsageError, match="at most 6"):
        ProbeSpec.parse("kprobe:__x64_sys_openat arg7", "x86_64")
    # 32-bit callers on x86_64: ebx, ecx, edx, esi, edi, ebp
    assert definition("kprobe:__ia32_compat_sys_openat arg1:s32 arg2:ustring arg6") == \
        (f"p:{G}/__ia32_compat_sys_openat __ia32_compat_sys_openat arg1=+0x28(%di):s32 "
         "arg2=+0(+0x58(%di)):ustring arg6=+0x20(%di)")


def test_kprobe_plain_function_args():
    assert definition("kprobe:do_sys_openat2 dfd=arg1:s32 name=arg2:string") == \
        f"p:{G}/do_sys_openat2 do_sys_openat2 dfd=%di:s32 name=+0(%si):string"
    assert definition("kprobe:vfs_read+8 x=%ax") == f"p:{G}/vfs_read_8 vfs_read+8 x=%ax"
    assert definition("kretprobe:do_sys_openat2 ret=retval:s32 arg1:s32") == \
        f"r:{G}/do_sys_openat2_ret do_sys_openat2 ret=$retval:s32 arg1=$arg1:s32"


def test_eprobe_and_fprobe_args():
    assert definition("eprobe:syscalls:sys_enter_openat path=+0($filename):ustring filename:ustring flags") == \
        (f"e:{G}/sys_enter_openat_e syscalls.sys_enter_openat path=+0($filename):ustring "
         "filename=+0($filename):ustring flags=$flags")
    with pytest.raises(UsageError, match="fields by name"):
        ProbeSpec.parse("eprobe:syscalls:sys_enter_openat arg1", "x86_64")
    assert definition("fprobe:vfs_read arg1 count=arg3:u64") == f"f:{G}/vfs_read vfs_read arg1=$arg1 count=$arg3:u64"
    assert definition("fretprobe:vfs_read ret=retval:s64") == f"f:{G}/vfs_read_ret vfs_read%return ret=$retval:s64"


def test_unnamed_args_get_positional_names_and_duplicates_are_caught():
    assert definition("uprobe:libc:f %di +0(%si):u32") == f"p:{G}/f /lib/x.so:0x1130 arg1=%di arg2=+0(%si):u32"
    assert definition("uprobe:libc:f +0(%si):u32 arg1") == \
        f"p:{G}/f /lib/x.so:0x1130 arg1=+0(%si):u32 arg1_2=%di"
    with pytest.raises(UsageError, match="used twice"):
        ProbeSpec.parse("uprobe:libc:f x=%di x=%si", "x86_64")


def test_unknown_arch_accepts_registers_but_not_argn():
    assert definition("uprobe:libc:f x=%a0", "riscv64") == f"p:{G}/f /lib/x.so:0x1130 x=%a0"
    with pytest.raises(UsageError, match="not known for architecture"):
        ProbeSpec.parse("uprobe:libc:f arg1", "riscv64")


def test_arch_tables_are_consistent():
    for arch in PROBE_ARCHES.values():
        assert set(arch.arg_registers) <= arch.registers
        assert arch.syscall_context_register in arch.registers
        assert len(arch.syscall_arg_offsets) == 6
        assert len(arch.compat_arg_offsets) in (0, 6)


# --- resolve on this machine -------------------------------------------------------------------------


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 register names")
def test_resolve_libc_openat_definition():
    from rawtrace import elf
    from rawtrace.host import Host
    libc = elf.resolve_target("libc", Host())
    want = elf.resolve_symbol(libc, "openat").file_offset
    probe = resolve(ProbeSpec.parse("uprobe:libc:openat arg2:ustring"))
    assert probe.path == libc and probe.file_offset == want
    assert probe.definition(G, "openat") == f"p:{G}/openat {libc}:{want:#x} arg2=+0(%si):ustring"


def test_resolve_kernel_kinds_need_no_files(tmp_path):
    from rawtrace.host import Host
    empty = Host(tmp_path)          # no tracefs, no kallsyms: nothing to check against
    assert resolve(ProbeSpec.parse("kprobe:ext4:ext4_file_open+4", "x86_64"), empty).place == \
        "ext4:ext4_file_open+4"
    assert resolve(ProbeSpec.parse("eprobe:sched:sched_switch", "x86_64"), empty).place == "sched.sched_switch"


def test_kernel_functions_checked_against_kallsyms_and_filter_list(tmp_path):
    from faketracefs import FakeTracefs

    from rawtrace.host import Host
    root = tmp_path / "root"
    fake = FakeTracefs(root / "sys" / "kernel" / "tracing")
    fake.seed("available_filter_functions", "vfs_read\next4_file_open [ext4]\n")
    (root / "proc").mkdir()
    (root / "proc" / "kallsyms").write_text(
        "ffffffff81000000 T do_sys_openat2\nffffffff81000010 t vfs_read\n"
        "ffffffffc0000000 t ext4_file_open\t[ext4]\nffffffff82000000 D some_data\n")
    host = Host(root)
    assert resolve(ProbeSpec.parse("kprobe:do_sys_openat2", "x86_64"), host).place == "do_sys_openat2"
    assert resolve(ProbeSpec.parse("kprobe:ext4:ext4_file_open", "x86_64"), host).place == "ext4:ext4_file_open"
    with pytest.raises(UsageError, match="did you mean do_sys_openat2"):
        resolve(ProbeSpec.parse("kretprobe:do_sys_opnat2", "x86_64"), host)
    with pytest.raises(UsageError, match="in module ext4 not found"):
        resolve(ProbeSpec.parse("kprobe:ext4:vfs_read", "x86_64"), host)
    with pytest.raises(UsageError, match="not found in /proc/kallsyms"):
        resolve(ProbeSpec.parse("kprobe:some_data", "x86_64"), host)
    assert resolve(ProbeSpec.parse("fprobe:vfs_read", "x86_64"), host).place == "vfs_read"
    with pytest.raises(UsageError, match="not found in available_filter_functions"):
        resolve(ProbeSpec.parse("fprobe:do_sys_openat2", "x86_64"), host)


def test_kernel_function_check_skipped_without_kprobes(tmp_path):
    from faketracefs import FakeTracefs

    from rawtrace.host import Host
    root = tmp_path / "root"
    FakeTracefs(root / "sys" / "kernel" / "tracing", kprobes=False)
    (root / "proc").mkdir()
    (root / "proc" / "kallsyms").write_text("ffffffff81000000 T do_sys_openat2\n")
    # creating it will say "kprobes are not supported"; resolving does not pretend to know better
    assert resolve(ProbeSpec.parse("kprobe:nonexistent", "x86_64"), Host(root)).place == "nonexistent"


def test_spec_feature():
    assert [ProbeSpec.parse(t, "x86_64").feature for t in
            ("uretprobe:libc:f", "kprobe:f", "eprobe:a:b", "fretprobe:f")] == \
        ["uprobes", "kprobes", "eprobes", "fprobes"]
