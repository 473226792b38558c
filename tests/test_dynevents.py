"""Dynamic events against a fake tracefs: lines appended, kernel errors read back, removal order, support."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from faketracefs import FakeTracefs

from rawtrace.errors import KernelRefused, NotSupported, UsageError
from rawtrace.probes import ProbeSpec, ResolvedProbe, resolve
from rawtrace.tracefs.dynevents import DynamicEvents, parse_error_log, probe_support
from rawtrace.tracefs.instance import run_group

G = run_group()          # this process's default group
OTHERS = "p:kprobes/p_vfs_read_0 vfs_read\nr:theirs/ret do_sys_openat2 ret=$retval:s32\n"


def probe(text: str) -> ResolvedProbe:
    return resolve(ProbeSpec.parse(text, "x86_64"))


def uprobe(text: str, place: str = "/usr/lib/libc.so.6:0xf8150") -> ResolvedProbe:
    return ResolvedProbe(ProbeSpec.parse(text, "x86_64"), place)


@pytest.fixture
def fake(tmp_path):
    return FakeTracefs(tmp_path / "tracing", instances=("rawtrace-1-1",))


def events(fake: FakeTracefs) -> DynamicEvents:
    return DynamicEvents(fake.root, proc=fake.root.parent / "proc", files=fake.kernel)


def test_kprobe_kretprobe_eprobe_fprobe_lines_are_appended(fake):
    fake.seed("dynamic_events", OTHERS)
    dyn = events(fake)
    made = [
        dyn.create(probe("kprobe:__x64_sys_openat path=arg2:ustring flags=arg3:x32"), G, "openat"),
        dyn.create(probe("kretprobe:do_sys_openat2 ret=retval:s32"), G, "openat_ret"),
        dyn.create(probe("eprobe:syscalls:sys_enter_openat path=filename:ustring"), G, "openat_e"),
        dyn.create(probe("fprobe:vfs_read count=arg3:u64"), G, "read"),
        dyn.create(probe("fretprobe:vfs_read ret=retval:s64"), G, "read_ret"),
    ]
    lines = [
        f"p:{G}/openat __x64_sys_openat path=+0(+0x68(%di)):ustring flags=+0x60(%di):x32",
        f"r:{G}/openat_ret do_sys_openat2 ret=$retval:s32",
        f"e:{G}/openat_e syscalls.sys_enter_openat path=+0($filename):ustring",
        f"f:{G}/read vfs_read count=$arg3:u64",
        f"f:{G}/read_ret vfs_read%return ret=$retval:s64",
    ]
    assert made == [(G, "openat"), (G, "openat_ret"), (G, "openat_e"), (G, "read"), (G, "read_ret")]
    assert fake.kernel.writes == [("dynamic_events", line) for line in lines]
    # appended: the other tools' probes are still there, first, untouched
    assert fake.text("dynamic_events") == OTHERS + "".join(line + "\n" for line in lines)


def test_legacy_files_without_dynamic_events(tmp_path):
    fake = FakeTracefs(tmp_path / "t", dynamic_events=False)
    fake.seed("kprobe_events", "p:kprobes/theirs vfs_read\n")
    dyn = events(fake)
    dyn.create(probe("kprobe:vfs_read"), G, "k")
    dyn.create(uprobe("uprobe:libc:openat arg2:ustring"), G, "u")
    assert fake.kernel.writes == [("kprobe_events", f"p:{G}/k vfs_read"),
                                  ("uprobe_events", f"p:{G}/u /usr/lib/libc.so.6:0xf8150 arg2=+0(%si):ustring")]
    assert fake.text("kprobe_events") == f"p:kprobes/theirs vfs_read\np:{G}/k vfs_read\n"
    dyn.remove(G, "u")
    dyn.remove(G, "k")
    assert fake.kernel.writes[-2:] == [("uprobe_events", f"-:{G}/u"), ("kprobe_events", f"-:{G}/k")]
    assert fake.text("kprobe_events") == "p:kprobes/theirs vfs_read\n"
    with pytest.raises(NotSupported, match="dynamic_events"):
        dyn.create(probe("eprobe:syscalls:sys_enter_openat"), G, "e")


def test_kernel_refusal_carries_error_log_with_caret(fake):
    dyn = events(fake)
    spec = uprobe("uprobe:libc:openat x=+0(%si):u32")
    line = spec.definition(G, "bad")
    fake.kernel._log_error("Some older error", "p:other/x /bin/true:0x1 y=%q", 29)
    position = line.index("x=")
    fake.kernel.refuse_next(errno.EINVAL, "Invalid fetch argument", position)
    with pytest.raises(KernelRefused) as info:
        dyn.create(spec, G, "bad")
    message = info.value.message
    assert message.startswith(f"the kernel refused probe {G}/bad (")
    first, command, caret = message.split("\n")
    assert first.endswith("Invalid fetch argument")
    assert command == f"  Command: {line}"
    # the caret sits under the argument the kernel complained about
    assert caret.index("^") == len("  Command: ") + position
    assert command[caret.index("^"):].startswith("x=")
    assert "Some older error" not in message
    assert (G, "bad") not in dyn.created


def test_refusal_without_error_log_entry_shows_the_line(fake):
    dyn = events(fake)
    fake.kernel.refuse_next(errno.ENOENT, None)
    with pytest.raises(KernelRefused, match=r"No such file or directory.*p:rawtrace_\w+/u /usr/lib"):
        dyn.create(uprobe("uprobe:libc:openat"), G, "u")


def test_parse_error_log_real_text():
    # captured from this 6.18 kernel (first entry) and shaped like it (second)
    text = ("[  317.133348] trace_uprobe: error: Invalid register name\n"
            "  Command: p:rtxprobe_t/bad /usr/lib/x86_64-linux-gnu/libc.so.6:0xf8150 x=%zz\n"
            + " " * 74 + "^\n"
            "[  318.000001] trace_kprobe: error: Failed to find the given file\n"
            "  Command: p:rtx/x /nope:0x1\n"
            "                   ^\n")
    first, second = parse_error_log(text)
    assert (first.location, first.message) == ("trace_uprobe", "Invalid register name")
    assert first.command[first.position:] == "%zz"
    assert second.command[second.position:] == "/nope:0x1"
    assert first.render().splitlines()[2].index("^") == len("  Command: ") + first.position


def test_removal_disables_first_then_appends(fake):
    dyn = events(fake)
    dyn.create(uprobe("uprobe:libc:openat arg2:ustring"), G, "openat")
    inst_enable = fake.root / "instances" / "rawtrace-1-1" / "events" / G / "openat" / "enable"
    top_enable = fake.root / "events" / G / "openat" / "enable"
    inst_enable.write_text("1\n")
    dyn.remove(G, "openat")
    assert fake.kernel.writes[1:] == [(str(inst_enable.relative_to(fake.root)), "0"),
                                      ("dynamic_events", f"-:{G}/openat")]
    assert not top_enable.exists() and not inst_enable.exists()
    assert fake.text("dynamic_events") == ""
    assert dyn.created == []
    # already gone: not an error
    dyn.remove(G, "openat")


def test_remove_everything_created_newest_first(fake):
    fake.seed("dynamic_events", OTHERS)
    dyn = events(fake)
    made = dyn.create([probe("kprobe:vfs_read"), probe("kprobe:vfs_read x=%di"), probe("kretprobe:vfs_read")])
    assert made == [(G, "vfs_read"), (G, "vfs_read_2"), (G, "vfs_read_ret")]
    dyn.remove()
    removals = [text for _path, text in fake.kernel.writes if text.startswith("-:")]
    assert removals == [f"-:{G}/vfs_read_ret", f"-:{G}/vfs_read_2", f"-:{G}/vfs_read"]
    assert fake.text("dynamic_events") == OTHERS


def test_batch_create_rolls_back_on_failure(fake):
    dyn = events(fake)
    fake.kernel.refusals = []
    specs = [probe("kprobe:vfs_read"), probe("kprobe:vfs_write")]
    original = fake.kernel.append
    calls = []

    def second_fails(path, line):
        calls.append(line)
        if len(calls) == 2:
            raise OSError(errno.ENOENT, "no such symbol")
        original(path, line)

    fake.kernel.append = second_fails
    with pytest.raises(KernelRefused):
        dyn.create(specs)
    assert calls[-1] == f"-:{G}/vfs_read"
    assert fake.text("dynamic_events") == ""


def test_busy_removal_is_reported(fake):
    dyn = events(fake)
    dyn.create(probe("kprobe:vfs_read"), G, "r")
    fake.kernel.refuse_next(errno.EBUSY, None)
    with pytest.raises(KernelRefused, match="Device or resource busy") as info:
        dyn.remove(G, "r")
    assert "perf, BPF or a trigger" in info.value.hint


def test_never_touches_other_groups(fake):
    fake.seed("dynamic_events", OTHERS)
    dyn = events(fake)
    for bad in (lambda: dyn.remove("kprobes", "p_vfs_read_0"), lambda: dyn.remove_group("theirs"),
                lambda: dyn.create(probe("kprobe:vfs_read"), "kprobes", "x")):
        with pytest.raises(UsageError, match="rawtrace"):
            bad()
    assert fake.kernel.writes == []
    assert fake.text("dynamic_events") == OTHERS


def test_existing_event_is_not_extended(fake):
    dyn = events(fake)
    dyn.create(probe("kprobe:vfs_read"), G, "r")
    with pytest.raises(UsageError, match="already exists"):
        dyn.create(probe("kprobe:vfs_write"), G, "r")


def test_kprobes_not_supported_on_this_kind_of_kernel(tmp_path):
    fake = FakeTracefs(tmp_path / "t", kprobes=False, fprobes=False)
    dyn = events(fake)
    assert not dyn.support.kprobes and dyn.support.uprobes
    for text in ("kprobe:vfs_read", "kretprobe:vfs_read"):
        with pytest.raises(NotSupported) as info:
            dyn.create(probe(text), G, "k")
        assert info.value.message == "kprobes are not supported by this kernel (built without CONFIG_KPROBE_EVENTS)"
        assert info.value.hint
    with pytest.raises(NotSupported, match="fprobes are not supported"):
        dyn.create(probe("fprobe:vfs_read"), G, "f")
    assert fake.kernel.writes == []


def test_eprobe_unsupported_is_found_by_the_write(tmp_path):
    # The README shows the `e` syntax even without CONFIG_EPROBE_EVENTS; EINVAL with no log entry tells.
    fake = FakeTracefs(tmp_path / "t", eprobes_compiled=False)
    dyn = events(fake)
    with pytest.raises(NotSupported, match="event probes are not supported"):
        dyn.create(probe("eprobe:syscalls:sys_enter_openat"), G, "e")
    assert dyn.created == []


def test_eprobe_on_missing_event_suggests(fake):
    dyn = events(fake)
    with pytest.raises(UsageError, match="did you mean sys_enter_openat"):
        dyn.create(probe("eprobe:syscalls:sys_enter_opnat"), G, "e")
    with pytest.raises(UsageError, match="did you mean syscalls"):
        dyn.create(probe("eprobe:syscall:sys_enter_openat"), G, "e")


def test_support_from_real_readme_text():
    from pathlib import Path
    live = Path("/sys/kernel/tracing")
    if not (live / "README").exists():
        pytest.skip("no tracefs here")
    support = probe_support(live)
    assert support.kprobes == (live / "kprobe_events").exists()
    assert support.uprobes == (live / "uprobe_events").exists()


def test_list_with_owner_and_counts(fake, tmp_path):
    proc = fake.root.parent / "proc"
    (proc / str(os.getpid())).mkdir(parents=True)
    # This process's start time is part of its group name: the fake /proc has the real stat line.
    (proc / str(os.getpid()) / "stat").write_text(Path("/proc/self/stat").read_text())
    dead = 999999
    fake.seed("dynamic_events",
              f"p:{G}/openat /usr/lib/libc.so.6:0x00000000000f8150 path=+0(%si):ustring\n"
              f"r:{G}/openat_ret /usr/lib/libc.so.6:0x00000000000f8150 ret=$retval:s32\n"
              f"p:rawtrace_{dead}/openat /usr/lib/libc.so.6:0x00000000000f8150\n"
              f"p:{G}/vfs_read vfs_read\n"
              f"r16:{G}/vfs_read_ret vfs_read\n"
              "p:kprobes/vfs_read vfs_read\n"
              f"e:{G}/ee syscalls.sys_enter_openat\n"
              f"f:{G}/fr vfs_read%return\n")
    fake.seed("uprobe_profile",
              "  /usr/lib/libc.so.6 openat                                           12\n"
              "  /usr/lib/libc.so.6 openat_ret                                        5\n"
              "  /usr/lib/libc.so.6 openat                                            7\n")
    fake.seed("kprobe_profile",
              "  vfs_read                                                  100               2\n"
              "  vfs_read_ret                                               90               9\n"
              "  vfs_read                                                   33               0\n")
    (fake.root / "events" / G / "openat").mkdir(parents=True)
    (fake.root / "events" / G / "openat" / "enable").write_text("1\n")
    dyn = events(fake)
    mine = {(p.group, p.event): p for p in dyn.list()}
    assert set(mine) == {(G, "openat"), (G, "openat_ret"), (f"rawtrace_{dead}", "openat"), (G, "vfs_read"),
                         (G, "vfs_read_ret"), (G, "ee"), (G, "fr")}
    assert (mine[G, "openat"].kind, mine[G, "openat"].hits, mine[G, "openat"].misses) == ("uprobe", 12, None)
    assert (mine[G, "openat_ret"].kind, mine[G, "openat_ret"].hits) == ("uretprobe", 5)
    assert mine[f"rawtrace_{dead}", "openat"].hits == 7
    assert mine[f"rawtrace_{dead}", "openat"].owner_alive is False
    assert (mine[G, "openat"].owner_pid, mine[G, "openat"].owner_alive) == (os.getpid(), True)
    assert (mine[G, "vfs_read"].kind, mine[G, "vfs_read"].hits, mine[G, "vfs_read"].misses) == ("kprobe", 100, 2)
    assert (mine[G, "vfs_read_ret"].kind, mine[G, "vfs_read_ret"].misses) == ("kretprobe", 9)
    assert mine[G, "ee"].kind == "eprobe" and mine[G, "fr"].kind == "fretprobe"
    assert mine[G, "openat"].enabled_in == ("top",)
    everything = dyn.list(group_prefix=None)
    assert ("kprobes", "vfs_read") in {(p.group, p.event) for p in everything}
    assert next(p for p in everything if p.group == "kprobes").hits == 33


def test_doctor_verdict_from_kernel_config_prevents_the_write(tmp_path):
    import gzip

    from rawtrace.host import Host
    root = tmp_path / "root"
    fake = FakeTracefs(root / "sys" / "kernel" / "tracing")
    (root / "proc").mkdir()
    (root / "proc" / "config.gz").write_bytes(gzip.compress(b"CONFIG_UPROBE_EVENTS=y\n"
                                                            b"# CONFIG_EPROBE_EVENTS is not set\n"))
    dyn = DynamicEvents(fake.root, files=fake.kernel, host=Host(root))
    with pytest.raises(NotSupported, match="event probes are not supported") as info:
        dyn.create(probe("eprobe:syscalls:sys_enter_openat"), G, "e")
    assert "CONFIG_EPROBE_EVENTS is not set" in info.value.hint
    assert fake.kernel.writes == []
    # the same tree without a host: the tracefs evidence allows it and the (fake) kernel accepts it
    events(fake).create(probe("eprobe:syscalls:sys_enter_openat"), G, "e")
    assert fake.kernel.writes == [("dynamic_events", f"e:{G}/e syscalls.sys_enter_openat")]


def test_explicit_names_are_not_renamed(fake):
    dyn = events(fake)
    with pytest.raises(UsageError, match="given to two probes with different kinds or arguments"):
        dyn.create([probe("x=kprobe:vfs_read a=arg1:x64"), probe("x=kprobe:vfs_write b=arg1:x64")])
    assert fake.text("dynamic_events") == ""          # the first was removed again
    assert dyn.created == []
    with pytest.raises(UsageError, match="given to two probes with different kinds or arguments"):
        dyn.create([probe("x=kprobe:vfs_read a=arg1:x64"), probe("x=kretprobe:vfs_write a=retval:x64")])
    assert fake.text("dynamic_events") == ""


def test_one_name_with_one_layout_is_one_event_with_several_probe_points(fake):
    """The kernel's multi-probe events: enabled and disabled as one (one grace period per event)."""
    dyn = events(fake)
    made = dyn.create([probe("x=kprobe:vfs_read a=arg1:x64"), probe("x=kprobe:vfs_write a=arg2:x64"),
                       probe("y=kprobe:vfs_open")], G)
    assert made == [(G, "x"), (G, "y")] and dyn.created == [(G, "x"), (G, "y")]
    assert fake.text("dynamic_events").splitlines() == [f"p:{G}/x vfs_read a=%di:x64", f"p:{G}/x vfs_write a=%si:x64",
                                                        f"p:{G}/y vfs_open"]
    dyn.remove(G, "x")
    assert fake.text("dynamic_events").splitlines() == [f"p:{G}/y vfs_open"]


def test_without_multi_probe_events_one_name_gets_numbered_events(fake):
    """Before Linux 5.4 an event defined again under its name replaced the first: one event each."""
    readme = fake.root / "README"
    readme.write_text(readme.read_text().replace("Create/append/remove/show", "Add/remove/show"))
    dyn = events(fake)
    made = dyn.create([probe("x=kprobe:vfs_read a=arg1:x64"), probe("x=kprobe:vfs_write a=arg2:x64")], G)
    assert made == [(G, "x"), (G, "x_2")]
    assert fake.text("dynamic_events").splitlines() == [f"p:{G}/x vfs_read a=%di:x64", f"p:{G}/x_2 vfs_write a=%si:x64"]


def test_unreadable_listing_is_an_error_not_an_empty_list(fake, monkeypatch):
    from pathlib import Path
    real = Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == "dynamic_events":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(PermissionError):
        events(fake).list()


def test_usdt_semaphore_needs_ref_ctr_support(tmp_path):
    fake = FakeTracefs(tmp_path / "t", ref_ctr=False)
    spec = ProbeSpec.parse("usdt:/opt/app:prov:tick", "x86_64")
    guarded = ResolvedProbe(spec, "/opt/app:0x1189(0x3018)", "/opt/app", semaphore_offset=0x3018)
    with pytest.raises(NotSupported, match="ref_ctr_offset"):
        events(fake).create(guarded, G, "tick")
    assert fake.kernel.writes == []
    # without a semaphore the same kernel takes it
    events(fake).create(ResolvedProbe(spec, "/opt/app:0x1189", "/opt/app"), G, "tick")
    assert fake.kernel.writes == [("dynamic_events", f"p:{G}/tick /opt/app:0x1189")]
    other = FakeTracefs(tmp_path / "u")
    events(other).create(guarded, G, "tick")
    assert other.kernel.writes == [("dynamic_events", f"p:{G}/tick /opt/app:0x1189(0x3018)")]


def test_eprobe_fields_checked_against_the_format(fake):
    dyn = events(fake)
    with pytest.raises(UsageError, match="no field 'filenme'; did you mean filename"):
        dyn.create(probe("eprobe:syscalls:sys_enter_openat path=filenme:ustring"), G, "e")
    with pytest.raises(UsageError, match="no field 'nope'"):
        dyn.create(probe("eprobe:syscalls:sys_enter_openat x=+8($nope):u32"), G, "e")
    assert fake.kernel.writes == []
    dyn.create(probe("eprobe:syscalls:sys_enter_openat path=filename:ustring dfd flags:x32 pid=$common_pid"),
               G, "e")
    assert fake.kernel.writes == [("dynamic_events", (f"e:{G}/e syscalls.sys_enter_openat "
                                   "path=+0($filename):ustring dfd=$dfd flags=$flags:x32 pid=$common_pid"))]


def test_definition_length_limit():
    # 4094 characters is the longest line the kernel takes (confirmed on 6.18; 4095 is EINVAL)
    spec = ProbeSpec.parse("uprobe:libc:f " + " ".join(f"a{i:03d}{'x' * 27}=%di:u64" for i in range(110)),
                           "x86_64")
    with pytest.raises(UsageError, match="at most 4094"):
        ResolvedProbe(spec, "/usr/lib/libc.so.6:0xf8150").definition(G, "f")
    spec = ProbeSpec.parse("uprobe:libc:f " + " ".join(f"a{i:03d}{'x' * 27}=%di:u64" for i in range(90)),
                           "x86_64")
    assert len(ResolvedProbe(spec, "/usr/lib/libc.so.6:0xf8150").definition(G, "f")) < 4094


def test_non_utf8_path_bytes_reach_the_kernel_unchanged(fake):
    path = os.fsdecode(b"/opt/app\xff")               # a file name that is not UTF-8
    spec = ProbeSpec.parse("uprobe:/opt/x:main", "x86_64")
    events(fake).create(ResolvedProbe(spec, f"{path}:0x10", path), G, "main")
    assert (fake.root / "dynamic_events").read_bytes() == f"p:{G}/main ".encode() + b"/opt/app\xff:0x10\n"
