"""The uprobe string hazard: refused where a kernel warning is a panic, reported where the kernel warned."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rawtrace.errors import UsageError
from rawtrace.host import Host
from rawtrace.probes import (
    TAINT_WARN,
    ProbeSpec,
    fetches_user_string,
    new_kernel_warning,
    uprobe_string_refusal,
)

LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")


def machine(tmp_path: Path, panic_on_warn: str | None, tainted: str = "0") -> Host:
    kernel = tmp_path / "proc" / "sys" / "kernel"
    kernel.mkdir(parents=True)
    if panic_on_warn is not None:
        (kernel / "panic_on_warn").write_text(panic_on_warn + "\n")
    (kernel / "tainted").write_text(tainted + "\n")
    return Host(tmp_path)


@pytest.mark.parametrize(("setting", "refused"), [("1", True), ("0", False), (None, False)])
def test_string_uprobes_are_refused_only_where_a_warning_panics(tmp_path, setting, refused):
    reason = uprobe_string_refusal(machine(tmp_path, setting))
    assert (reason is not None) == refused
    if refused:
        assert "panic_on_warn" in reason and "just under 4096 bytes" in reason


def test_which_specs_fetch_a_user_string():
    def spec(text):
        return ProbeSpec.parse(text, "x86_64")
    assert fetches_user_string(spec("uprobe:libc:open64 p=arg1:x64 s=arg1:ustring"))
    assert fetches_user_string(spec("uretprobe:libc:getenv v=retval:string"))
    assert not fetches_user_string(spec("uprobe:libc:open64 s=+0(%di):u64[32]"))
    assert not fetches_user_string(spec("kprobe:do_sys_openat2 s=+0(%si):ustring"))     # no page buffer


@pytest.mark.parametrize(("before", "after", "said"), [
    (0, TAINT_WARN, True),                 # the W taint appeared during the trace
    (TAINT_WARN, TAINT_WARN, False),       # it was there before: nothing new to say
    (0, 1, False),                         # another taint (a proprietary module) is not a warning
    (None, TAINT_WARN, False)])            # no string probes, no reading at the start
def test_a_new_kernel_warning_is_said(tmp_path, before, after, said):
    host = machine(tmp_path, "0", str(after))
    line = new_kernel_warning(before, host)
    assert (line is not None) == said
    if said:
        assert "prepare_uprobe_buffer" in line and "dmesg" in line


@pytest.mark.skipif(not LIBC.exists(), reason="needs the x86_64 glibc to resolve a probe")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_the_live_source_refuses_or_reads_the_taint(tmp_path, monkeypatch, setting):
    """With panic_on_warn the source refuses before writing anything; without, it reads the taint first."""
    from rawtrace.sources import LiveOptions, LiveSource
    from rawtrace.tracefs import dynevents
    host = machine(tmp_path, setting, tainted="4096")
    (tmp_path / LIBC.parent.relative_to("/")).mkdir(parents=True)
    shutil.copy(LIBC, tmp_path / LIBC.relative_to("/"))
    created = []
    monkeypatch.setattr(dynevents.DynamicEvents, "create", lambda self, resolved: created.append(resolved) or [])
    source = LiveSource(LiveOptions(probes=[f"uprobe:{LIBC}:open64 p=arg1:x64 s=arg1:ustring"]), host=host)
    source.tracefs = tmp_path / "tracefs"
    if setting == "1":
        with pytest.raises(UsageError, match="string-fetching uprobes refused"):
            source._create_probes()
        assert created == []
    else:
        source._create_probes()
        assert len(created) == 1 and source.taint_at_start == 4096


def test_the_run_summary_says_when_the_kernel_warned_during_the_trace(tmp_path):
    import io

    from rawtrace.emit import Emitter
    from rawtrace.sources import SourceSummary
    from rawtrace.tracers.base import report_run

    class Source:
        kind = "live"
        summary = SourceSummary()
        host = machine(tmp_path, "0", str(TAINT_WARN))
        taint_at_start = 0

    for before, said in ((0, True), (None, False)):
        Source.taint_at_start = before
        err = io.StringIO()
        report_run(Emitter(out=io.StringIO(), err=err), Source, "3 events", {})
        lines = err.getvalue().splitlines()
        assert lines[0].startswith("3 events, 0 lost")
        assert any("taint W" in line for line in lines[1:]) == said
