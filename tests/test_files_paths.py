"""filepaths: 6.19 syscall string fields (fixture built from trace_syscalls.c), uprobe plans and joins, fanotify joins."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from rawtrace import filepaths as P
from rawtrace.host import Host
from rawtrace.parse.format import parse_format
from rawtrace.parse.record import compile_decoder

FIXTURES = Path(__file__).parent / "fixtures" / "formats" / "6.19-syscall-strings"
LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")


def fixture(name: str):
    return parse_format((FIXTURES / name).read_text(), system="syscalls")


def record_619(fmt, slots: list[int], text: bytes | None) -> bytes:
    """A sys_enter record laid out as syscall_put_data() writes it: the slots, then the meta word
    `offset | length << 16` pointing just past itself, then the string with its NUL."""
    body = struct.pack("<HBBi", fmt.id, 0, 0, 4242) + struct.pack("<i4x", 257)
    body += b"".join(struct.pack("<Q", s) for s in slots)
    data = b"" if text is None else text + b"\0"
    meta_at = len(body)
    body += struct.pack("<I", (meta_at + 4) | (len(data) << 16)) + data
    return body


def test_619_fixture_fields_say_which_argument_has_a_string():
    openat = fixture("sys_enter_openat")
    rename = fixture("sys_enter_renameat2")
    assert P.kernel_string_args(f.name for f in openat.fields) == {"filename"}
    # The kernel copies only the first user pointer: renameat2's new name still needs a probe.
    assert P.kernel_string_args(f.name for f in rename.fields) == {"oldname"}
    assert openat.print_fmt_args[2] == "__get_str(__filename_val)"


def test_618_format_has_no_string_fields():
    text = (Path(__file__).parent / "fixtures/formats/6.18.44-fc-v769/events/syscalls/sys_enter_openat/format")
    if not text.exists():
        pytest.skip("6.18 capture not present")
    fmt = parse_format(text.read_text(), system="syscalls")
    assert P.kernel_string_args(f.name for f in fmt.fields) == set()


def test_619_record_decodes_to_the_path():
    fmt = fixture("sys_enter_openat")
    decode = compile_decoder(fmt)
    raw = record_619(fmt, [0xffffff9c, 0x7ffe1000, 0o2000000, 0], b"/etc/motd")
    event = decode(raw, 0, len(raw), 1, 0)
    assert event.fields["filename"] == 0x7ffe1000
    assert P.kernel_string_value(event.fields["__filename_val"]) == "/etc/motd"
    # A faulted copy is an empty dynamic string: no path from the kernel, another source must name it.
    raw = record_619(fmt, [0xffffff9c, 0x7ffe1000, 0, 0], None)
    assert P.kernel_string_value(decode(raw, 0, len(raw), 1, 0).fields["__filename_val"]) is None


def test_probe_specs_fetch_pointer_and_string_one_probe_point_per_path_argument():
    specs = P.probe_specs("/lib/libc.so.6", P.LibcFunction("renameat2", (2, 4)))
    assert specs == ["files_path=uprobe:/lib/libc.so.6:renameat2 p=arg2:x64 s=arg2:ustring",
                     "files_path=uprobe:/lib/libc.so.6:renameat2 p=arg4:x64 s=arg4:ustring"]
    from rawtrace.probes import parse_spec
    parsed = [parse_spec(spec, arch="x86_64") for spec in specs]
    assert [[a.render() for a in p.args] for p in parsed] == [["p=%si:x64", "s=+0(%si):ustring"],
                                                              ["p=%cx:x64", "s=+0(%cx):ustring"]]


@pytest.mark.skipif(not LIBC.exists(), reason="no x86_64 glibc at the Debian path")
def test_plan_resolves_this_libc_once_per_address():
    plan = P.plan_uprobes(Host())
    assert plan.library and plan.reason is None
    names = {p.function for p in plan.probes}
    assert {"open64", "openat64", "unlink", "renameat2", "__open64_nocancel"} <= names
    # One address per function (aliases share one), one probe point per path argument, all in one event.
    places = [(p.spec.split()[0].split(":", 2)[2], p.spec.split()[1]) for p in plan.probes]
    assert len(places) == len(set(places))
    assert {p.event for p in plan.probes} == {P.UPROBE_EVENT} and {p.fields for p in plan.probes} == {(("p", "s"),)}
    assert [p.spec.split()[1] for p in plan.probes if p.function == "rename"] == ["p=arg1:x64", "p=arg2:x64"]
    # On a kernel whose openat event carries the string, open probes are not needed; renames stay.
    fewer = P.plan_uprobes(Host(), skip_syscalls={"openat", "unlinkat"})
    assert "open64" not in {p.function for p in fewer.probes}
    assert "renameat2" in {p.function for p in fewer.probes}


def test_plan_without_libc_says_why(tmp_path):
    plan = P.plan_uprobes(Host(tmp_path))
    assert plan.probes == () and "no C library" in plan.reason
    assert P.loader_path(Host(tmp_path)) is None


def test_loader_syscall_sites_are_found_by_their_bytes():
    openat = (b"\xb8\x01\x01\x00\x00" b"\x48\x89\xfe" b"\xbf\x9c\xff\xff\xff"      # mov $257,%eax; arg moves
              b"\x0f\x05" b"\x48\x3d\x00\xf0\xff\xff")                           # syscall; cmp $-4096,%rax
    open_ = b"\xb8\x02\x00\x00\x00\x0f\x05\x48\x3d\x01\xf0\xff\xff"
    read = b"\xb8\x00\x00\x00\x00\x0f\x05\x48\x3d\x00\xf0\xff\xff"                  # another syscall
    no_check = b"\xb8\x01\x01\x00\x00\x0f\x05\xc3"                                  # no return check
    far = b"\xb8\x01\x01\x00\x00" + b"\x90" * 20 + b"\x0f\x05\x48\x3d\x00\xf0\xff\xff"   # number too far
    pad = b"\xcc" * 16
    # A b8 byte just before the real mov (`cmp $0xb8,%al` ends with one) hides nothing.
    shadowed = b"\x3c\xb8" + open_
    code = pad + openat + pad + open_ + pad + read + pad + no_check + pad + far + pad + shadowed + pad
    data = b"\0" * 0x100 + code + openat            # the last copy lies outside the executable segment
    sites = P.code_sites(data, [(0x100, len(code), 0x5000)])
    syscall_at = [0x5000 + code.index(openat) + 13, 0x5000 + code.index(open_) + 5,
                  0x5000 + code.index(shadowed) + 7]
    assert sites == [(syscall_at[0], "openat", ("%si",)), (syscall_at[1], "open", ("%di",)),
                     (syscall_at[2], "open", ("%di",))]
    assert P.code_sites(data, []) == []
    # A move to r8d (41 b8) between the number and the syscall is not the number: mmap(9) is no open, and
    # openat's number before a `mov $0,%r8d` is still found.
    check = b"\x0f\x05\x48\x3d\x00\xf0\xff\xff"
    mmap_r8 = b"\xb8\x09\x00\x00\x00" b"\x41\xb8\x02\x00\x00\x00" + check
    openat_r8 = b"\xb8\x01\x01\x00\x00" b"\x41\xb8\x00\x00\x00\x00" + check
    code = pad + mmap_r8 + pad + openat_r8 + pad
    assert P.code_sites(code, [(0, len(code), 0)]) == [(code.index(openat_r8) + 11, "openat", ("%si",))]


@pytest.mark.skipif(not LIBC.exists(), reason="no x86_64 glibc at the Debian path")
def test_plan_probes_the_dynamic_linkers_open_syscalls():
    from rawtrace.probes import parse_spec
    plan = P.plan_uprobes(Host())
    loader = [p for p in plan.probes if p.function == "ld.so openat"]
    assert plan.loader and loader, plan
    data = Path(plan.loader).read_bytes()
    for probe in loader:
        address = int(probe.spec.split()[0].rsplit(":", 1)[1], 16)
        assert probe.spec.endswith(" p=%si:x64 s=+0(%si):ustring")
        parse_spec(probe.spec, arch="x86_64")
        # A syscall instruction and its return check (the loader's code maps at address = file offset).
        assert data[address:address + 4] == b"\x0f\x05\x48\x3d"
    # A kernel whose openat event carries the path needs none of them.
    assert not [p for p in P.plan_uprobes(Host(), skip_syscalls={"openat"}).probes if p.function.startswith("ld.so")]


def test_uprobe_join_by_thread_and_pointer():
    j = P.UprobeJoiner()
    j.capture(10, 100, [(0x1000, "/etc/motd")])
    # Another thread's syscall with the same pointer value gets nothing.
    assert j.join(11, 110, [0x1000]) == [None]
    # The same thread's syscall with another pointer (libc did something else first) gets nothing.
    assert j.join(10, 105, [0x2000]) == [None]
    assert j.join(10, 120, [0x1000]) == ["/etc/motd"]
    # Used up: the next syscall with that pointer is not named from the old capture.
    assert j.join(10, 130, [0x1000]) == [None]
    assert j.joined == 1


def test_uprobe_join_two_paths_and_faults():
    j = P.UprobeJoiner()
    j.capture(1, 0, [(0xa, "old"), (0xb, "new")])
    assert j.join(1, 1, [0xa, 0xb]) == ["old", "new"]
    j.capture(1, 2, [(0xc, "(fault)")])
    assert j.join(1, 3, [0xc]) == [None]


def test_uprobe_join_drops_stale_captures():
    j = P.UprobeJoiner(max_age_ns=50, per_thread=2)
    j.capture(1, 0, [(0xa, "/a")])
    assert j.join(1, 100, [0xa]) == [None]
    for i in range(3):
        j.capture(1, 200 + i, [(0x10 + i, f"/p{i}")])
    assert j.join(1, 210, [0x10]) == [None]     # pushed out by the per-thread bound
    assert j.join(1, 210, [0x12]) == ["/p2"]
    assert j.stale == 2


def test_pointers_of():
    assert P.pointers_of("renameat2", {"oldname": 5, "newname": 6}) == [5, 6]
    assert P.pointers_of("read", {"fd": 3}) == []


def test_fanotify_join_in_order_skipping_named_twins():
    j = P.FanotifyJoiner(settle_ns=100)
    # ld.so opened two files by its own syscalls (no libc probe), then libc opened /etc/motd.
    a = P.PendingOpen(7, 10, "open", "call-a")
    b = P.PendingOpen(7, 11, "open", "call-b")
    j.unnamed(a)
    j.unnamed(b)
    j.named(7, "open", "/etc/motd", 12)
    j.event(7, "open", "ev-cache", "/etc/ld.so.cache", 20)
    j.event(7, "open", "ev-libc", "/usr/lib/libc.so.6", 21)
    j.event(7, "open", "ev-motd", "/etc/motd", 22)
    j.event(8, "open", "ev-other", "/x", 23)
    assert j.match(now=30) == ([], [], [])     # too fresh to match yet
    joined, alone, given_up = j.match(now=60)
    assert joined == [(a, "ev-cache"), (b, "ev-libc")]
    assert alone == [] and given_up == []
    joined, alone, given_up = j.match(now=500)
    assert alone == ["ev-other"]                 # fanotify alone is reported, never dropped


def test_fanotify_join_gives_up_on_unnamed_calls():
    j = P.FanotifyJoiner(settle_ns=100)
    c = P.PendingOpen(7, 10, "open", "call")
    j.unnamed(c)
    assert j.match(now=50) == ([], [], [])
    assert j.waiting() == 1
    assert j.match(now=500) == ([], [], [c])
    assert j.waiting() == 0


def test_fanotify_join_compares_real_paths():
    j = P.FanotifyJoiner(settle_ns=100, canonical=lambda p: p.replace("/lib/", "/usr/lib/"))
    c = P.PendingOpen(7, 10, "open", "call")
    j.unnamed(c)
    j.named(7, "open", "/lib/libc.so.6", 11)
    j.event(7, "open", "ev-libc", "/usr/lib/libc.so.6", 20)
    j.event(7, "open", "ev-x", "/x", 21)
    assert j.match(now=500)[0] == [(c, "ev-x")]


def test_fanotify_join_exact_with_progress():
    j = P.FanotifyJoiner(settle_ns=100, margin_ns=1)
    j.unnamed(P.PendingOpen(7, 10, "open", "call"))
    j.event(7, "open", "ev", "/a", 20)
    # The syscall side has processed up to 15 only: a call made before 20 may still come, wait.
    assert j.match(now=10_000, caught_up=15, drained=20) == ([], [], [])
    joined, alone, given_up = j.match(now=10_001, caught_up=30, drained=25)
    assert [e for _c, e in joined] == ["ev"] and alone == [] and given_up == []
    # A call whose exit came before a complete fanotify drain, with nothing for it: given up at once.
    j.unnamed(P.PendingOpen(7, 40, "open", "static"))
    assert [c.call for c in j.match(now=10_002, caught_up=45, drained=42)[2]] == ["static"]
    # fanotify last drained before the call returned: its event may still be queued, so it waits.
    j.unnamed(P.PendingOpen(8, 50, "open", "late"))
    assert j.match(now=10_003, caught_up=60, drained=48)[2] == []
    assert [c.call for c in j.match(now=10_004, caught_up=60, drained=55)[2]] == ["late"]
    # An event with nothing to join once the syscall side passed it: reported alone at once.
    j.event(9, "open", "alone", "/b", 70)
    assert j.match(now=10_005, caught_up=80, drained=75)[1] == ["alone"]


def test_eprobe_plan_fetches_each_path_argument_of_the_enter_event():
    plan = P.plan_eprobes(["openat", "renameat2", "read"])
    specs = {p.function: p.spec for p in plan.probes}
    assert set(specs) == {"openat", "renameat2"}
    assert specs["renameat2"] == ("files_e_renameat2=eprobe:syscalls:sys_enter_renameat2 p1=oldname:x64 "
                                  "s1=oldname:ustring p2=newname:x64 s2=newname:ustring")
    from rawtrace.probes import parse_spec, resolve
    resolved = resolve(parse_spec(specs["openat"], arch="x86_64"))
    assert resolved.definition("rawtrace_1", "files_e_openat") == (
        "e:rawtrace_1/files_e_openat syscalls.sys_enter_openat p1=$filename:x64 s1=+0($filename):ustring")


def test_loader_lookup_neither_blocks_nor_runs_on_in_a_hostile_root(tmp_path):
    """A --root tree whose /bin/sh or dynamic linker is a FIFO, a device or garbage gives no loader probes."""
    import os
    (tmp_path / "bin").mkdir()
    os.mkfifo(tmp_path / "bin" / "sh")                 # opening it for reading would block
    assert P.loader_path(Host(tmp_path)) is None
    os.unlink(tmp_path / "bin" / "sh")
    (tmp_path / "bin" / "sh").symlink_to("/dev/zero")   # reading it would never end
    assert P.loader_path(Host(tmp_path)) is None
    (tmp_path / "bin" / "sh").unlink()
    (tmp_path / "bin" / "sh").write_bytes(b"\x7fELF" + b"\xff" * 60)   # a damaged header
    assert P.loader_path(Host(tmp_path)) is None
    (tmp_path / "lib").mkdir()
    os.mkfifo(tmp_path / "lib" / "ld.so")
    assert P.loader_sites("/lib/ld.so", Host(tmp_path)) == []
