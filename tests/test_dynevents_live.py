"""Live uprobes on this machine's libc: the probe's events carry the exact path and fd; nothing is left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rawtrace.errors import KernelRefused, NotSupported
from rawtrace.probes import ProbeSpec, resolve, run_group
from rawtrace.tracefs.dynevents import DynamicEvents

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(os.uname().machine != "x86_64", reason="register names are x86_64's")]

# Calls libc's openat() itself (glibc's open()/fopen() go through open64, not openat).
CHILD = """
import ctypes, os, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.openat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
fd = libc.openat(-100, sys.argv[1].encode(), os.O_RDONLY)
print(fd, flush=True)
"""


def _instance(tracefs: Path) -> Path:
    path = tracefs / "instances" / f"rawtrace-{os.getpid()}-probetest"
    path.mkdir()
    return path


def _group_gone(tracefs: Path, group: str) -> bool:
    text = (tracefs / "dynamic_events").read_text() + (tracefs / "uprobe_events").read_text()
    return f":{group}/" not in text and not (tracefs / "events" / group).exists()


def test_uprobe_and_uretprobe_on_libc_openat(live_tracefs, tmp_path):
    target = tmp_path / f"rawtrace-probe-{uuid.uuid4().hex[:8]}"
    target.write_text("x")
    group = run_group()
    dyn = DynamicEvents(live_tracefs)
    specs = ["uprobe:libc:openat path=+0(%si):ustring arg2:ustring dfd=arg1:s32",
             "uretprobe:libc:openat fd=retval:s32"]
    instance = None
    try:
        made = dyn.create([resolve(ProbeSpec.parse(s)) for s in specs])
        assert made == [(group, "openat"), (group, "openat_ret")]
        instance = _instance(live_tracefs)
        for g, e in made:
            (instance / "events" / g / e / "enable").write_text("1")
        child = subprocess.run([sys.executable, "-c", CHILD, str(target)], capture_output=True, text=True,
                               check=True)
        fd = int(child.stdout)
        assert fd >= 3
        trace = (instance / "trace").read_text()
        entry = [line for line in trace.splitlines() if f'path="{target}"' in line]
        assert len(entry) == 1, trace
        assert f'arg2="{target}"' in entry[0] and "dfd=-100" in entry[0]
        pid = re.search(r"-(\d+)\s+\[", entry[0]).group(1)
        returns = [line for line in trace.splitlines() if f"-{pid} " in line and "openat_ret:" in line]
        assert returns and returns[-1].rstrip().endswith(f"fd={fd}")
        # listed with a hit count while it exists
        listed = {(p.group, p.event): p for p in dyn.list()}
        assert listed[group, "openat"].hits >= 1
        assert listed[group, "openat"].owner_alive is True
        assert listed[group, "openat"].enabled_in == (instance.name,)
        for g, e in made:
            (instance / "events" / g / e / "enable").write_text("0")
    finally:
        if instance is not None:
            instance.rmdir()
        dyn.remove()
    assert _group_gone(live_tracefs, group)


def test_remove_disables_an_enabled_probe(live_tracefs):
    group = run_group()
    dyn = DynamicEvents(live_tracefs)
    instance = None
    try:
        dyn.create(resolve(ProbeSpec.parse("uprobe:libc:open64 arg1:ustring")), group, "open64")
        instance = _instance(live_tracefs)
        enable = instance / "events" / group / "open64" / "enable"
        enable.write_text("1")
        dyn.remove(group, "open64")         # would be EBUSY without the disable first
        assert not enable.exists()
    finally:
        dyn.remove()
        if instance is not None:
            instance.rmdir()
    assert _group_gone(live_tracefs, group)


def test_kernel_refusal_shows_error_log_caret(live_tracefs):
    dyn = DynamicEvents(live_tracefs)
    group = run_group()
    probe = resolve(ProbeSpec.parse("uprobe:libc:openat x=%di:string"))
    with pytest.raises(KernelRefused) as info:
        dyn.create(probe, group, "bad")
    first, command, caret = info.value.message.split("\n")
    assert "String accepts only memory argument" in first
    assert command == f"  Command: {probe.definition(group, 'bad')}"
    assert command[caret.index("^"):] == "string"      # the kernel points at the type
    assert "+0(%reg):string" in info.value.hint
    assert _group_gone(live_tracefs, group)


def test_kprobes_not_supported_here(live_tracefs):
    dyn = DynamicEvents(live_tracefs)
    if dyn.support.kprobes:
        pytest.skip("this kernel has kprobes")
    before = (live_tracefs / "dynamic_events").read_text()
    with pytest.raises(NotSupported, match=r"^kprobes are not supported by this kernel \(built without "
                                           r"CONFIG_KPROBE_EVENTS\)$"):
        dyn.create(resolve(ProbeSpec.parse("kprobe:do_sys_openat2 arg2:string")), run_group(), "k")
    assert (live_tracefs / "dynamic_events").read_text() == before


def test_eprobes_not_supported_here(live_tracefs):
    dyn = DynamicEvents(live_tracefs)
    if not (live_tracefs / "events" / "syscalls" / "sys_enter_openat").is_dir():
        pytest.skip("no syscall tracepoints")
    try:
        dyn.create(resolve(ProbeSpec.parse("eprobe:syscalls:sys_enter_openat path=filename:ustring")),
                   run_group(), "e")
    except NotSupported as exc:
        assert exc.message.startswith("event probes are not supported by this kernel")
    else:
        dyn.remove()
        pytest.skip("this kernel has event probes")
    assert _group_gone(live_tracefs, run_group())


LOOP_CHILD = """
import ctypes, os, sys, time
libc = ctypes.CDLL("libc.so.6")
libc.openat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
end = time.time() + 20
while time.time() < end:
    fd = libc.openat(-100, sys.argv[1].encode(), os.O_RDONLY)
    if fd >= 0:
        os.close(fd)
    time.sleep(0.05)
"""


def test_trace_command_with_probes(live_tracefs, tmp_path):
    """`rawtrace trace --probe` creates the probes for its run, sees the child's calls, removes them."""
    import json
    target = tmp_path / f"rawtrace-trace-{uuid.uuid4().hex[:8]}"
    target.write_text("x")
    child = subprocess.Popen([sys.executable, "-c", LOOP_CHILD, str(target)])
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rawtrace", "trace", "--json", "-p", str(child.pid), "-c", "2",
             "--probe", "uprobe:libc:openat path=arg2:ustring", "--probe", "uretprobe:libc:openat fd=retval:s32"],
            check=False, capture_output=True, text=True, timeout=30, cwd=Path(__file__).resolve().parent.parent)
    finally:
        child.kill()
        child.wait()
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    events = [r for r in rows if "event" in r]
    assert [e["event"].split(":")[1] for e in events] == ["openat", "openat_ret"]
    assert all(e["pid"] == child.pid for e in events)
    assert events[0]["fields"]["path"] == str(target)
    assert events[1]["fields"]["fd"] >= 3
    group = events[0]["event"].split(":")[0]
    assert group.startswith("rawtrace_")
    assert _group_gone(live_tracefs, group)


LOOP_SOURCE = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) int rawtrace_probe_target(int x) { return x * 3 + 1; }
int main(void) {
    volatile int sum = 0;
    for (int i = 0; i < 400; i++) { sum += rawtrace_probe_target(i + 1000); usleep(20000); }
    return sum == 0;
}
"""


@pytest.mark.parametrize("flags", [["-fPIE", "-pie"], ["-no-pie", "-fno-pie"]], ids=["pie", "nopie"])
def test_uprobe_on_built_binary_via_pid(live_tracefs, tmp_path, flags):
    """The kernel hits the probe at the computed file offset: the argument and return value are right."""
    import shutil
    import time
    if shutil.which("cc") is None:
        pytest.skip("needs cc")
    (tmp_path / "loop.c").write_text(LOOP_SOURCE)
    binary = tmp_path / "loop"
    subprocess.run(["cc", "-O1", *flags, "-o", str(binary), str(tmp_path / "loop.c")], check=True)
    child = subprocess.Popen([str(binary)])
    group = run_group()
    dyn = DynamicEvents(live_tracefs)
    instance = None
    try:
        specs = [f"uprobe:pid:{child.pid}:rawtrace_probe_target x=arg1:s32",
                 f"uretprobe:pid:{child.pid}:rawtrace_probe_target ret=retval:s32"]
        resolved = [resolve(ProbeSpec.parse(s)) for s in specs]
        assert resolved[0].path == str(binary)
        made = dyn.create(resolved)
        instance = _instance(live_tracefs)
        for g, e in made:
            (instance / "events" / g / e / "enable").write_text("1")
        deadline = time.monotonic() + 10
        xs: list[int] = []
        rets: list[int] = []
        matched: list[int] = []
        while time.monotonic() < deadline and len(matched) < 3:
            time.sleep(0.2)
            trace = (instance / "trace").read_text()
            xs = [int(m) for m in re.findall(rf"-{child.pid} .*rawtrace_probe_target: .* x=(-?\d+)", trace)]
            rets = [int(m) for m in re.findall(rf"-{child.pid} .*rawtrace_probe_target_ret: .* ret=(-?\d+)", trace)]
            matched = [x for x in xs if 3 * x + 1 in rets]
        # The two events are enabled one after the other: the first call seen may have only its entry or
        # only its return. Every other entry has its return (3x + 1), and every return an entry.
        assert len(matched) >= 3, (xs, rets)
        assert all(1000 <= x < 1400 for x in xs), xs
        assert all(3 * x + 1 in rets for x in xs[1:-1]), (xs, rets)
        assert all((r - 1) % 3 == 0 and (r - 1) // 3 in xs for r in rets[1:]), (xs, rets)
        for g, e in made:
            (instance / "events" / g / e / "enable").write_text("0")
    finally:
        child.kill()
        child.wait()
        if instance is not None:
            instance.rmdir()
        dyn.remove()
    assert _group_gone(live_tracefs, group)
