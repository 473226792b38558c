"""Oracle: for every event type a short `-e all` capture produces, rawtrace's print fmt rendering of the raw
pages equals the kernel's own `trace` text of the same buffer (>= 99% of events, differing types listed)."""

from __future__ import annotations

import glob
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rawtrace.parse.format import parse_format, parse_header_event, parse_header_page
from rawtrace.parse.record import DecoderSet, Event
from rawtrace.parse.ringbuf import PageLayout, decode_page
from rawtrace.printfmt import Symbols, TextRenderer, kernel_constants, parse_printk_formats
from rawtrace.tracefs.instance import Instance
from rawtrace.tracefs.reader import BufferReader

LINE_RE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S{4,5}\s+)?"
                     r"(?P<ts>\d+\.\d{6}): (?P<body>.*)$")

WORKLOAD = ("ls /etc > /dev/null; cat /etc/hostname > /dev/null; "
            "dd if=/dev/zero of={tmp}/dd bs=64k count=4 conv=fsync 2>/dev/null; "
            "echo printfmt-marker > {marker}; "
            "python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(); "
            "c = socket.create_connection(s.getsockname()); a, _ = s.accept(); a.send(b\"x\"); c.recv(1)'; "
            "sleep 0.05")


@dataclass
class Capture:
    kernel: str
    pairs: list = field(default_factory=list)           # (Event, the kernel's text after the time stamp)
    format_texts: dict = field(default_factory=dict)    # id -> format text
    systems: dict = field(default_factory=dict)         # id -> system name
    printk_formats: str = ""
    count_mismatch: list = field(default_factory=list)


PROBES = ["uprobe:libc:open64 path=arg1:ustring flags=arg2:x32 mode=arg3:u16", "uretprobe:libc:open64 fd=retval:s32"]


def capture_all_events(tracefs: Path, tmp: Path = Path("/tmp")) -> Capture:
    """Trace every event in a private instance for a short mixed workload (plus a uprobe and a uretprobe
    on libc's open64); pair each decoded record with the kernel's own line for it (the `trace` file is
    read first: reading it does not consume)."""
    from rawtrace.probes import ProbeSpec, resolve
    from rawtrace.tracefs.dynevents import DynamicEvents
    dyn = DynamicEvents(tracefs)
    dyn.create([resolve(ProbeSpec.parse(spec)) for spec in PROBES])
    try:
        return _capture(tracefs, tmp)
    finally:
        dyn.remove()


def _capture(tracefs: Path, tmp: Path) -> Capture:
    formats, texts, systems = {}, {}, {}
    for path in glob.glob(str(tracefs / "events/*/*/format")):
        text = Path(path).read_text()
        fmt = parse_format(text, system=Path(path).parent.parent.name, long_size=8)
        formats[fmt.id] = fmt
        texts[fmt.id] = text
        systems[fmt.id] = fmt.system
    inst = Instance.create(tracefs)
    try:
        inst.set_buffer_kb(8192)
        # A full buffer drops new events instead of overwriting old ones: the text and the pages read
        # afterwards then show the same records even when other load floods the machine.
        inst.set_option("overwrite", False)
        # Plain %p prints the address itself (hash-ptr hashes it with a boot secret nobody else has).
        inst.set_option("hash-ptr", False)
        inst.write("events/enable", "1")
        inst.set_tracing_on(True)
        subprocess.run(["/bin/sh", "-c", WORKLOAD.format(tmp=tmp, marker=inst.path / "trace_marker")],
                       check=True, timeout=60)
        inst.set_tracing_on(False)
        inst.write("events/enable", "0")
        text = inst.read("trace")
        layout = PageLayout.from_headers(parse_header_page(inst.read("events/header_page")),
                                         parse_header_event(inst.read("events/header_event")))
        decoders = DecoderSet(formats)
        buffers = BufferReader(inst.path, inst.cpus(), layout.subbuf_size)
        decoded: dict[int, list] = {}
        try:
            for _ in range(100000):
                pages = 0
                for cpu, got, _drained in buffers.drain():
                    pages += len(got)
                    for page in got:
                        decoded.setdefault(cpu, []).extend(
                            e for e in decode_page(layout, page, cpu, decoders) if isinstance(e, Event))
                if not pages:
                    break
        finally:
            buffers.close()
    finally:
        inst.destroy()
    capture = Capture(kernel=Path("/proc/sys/kernel/osrelease").read_text().strip(), format_texts=texts, systems=systems,
                      printk_formats=(tracefs / "printk_formats").read_text())
    lines: dict[int, list] = {}
    for line in text.split("\n"):
        if line.startswith("#") or not line.strip():
            continue
        m = LINE_RE.match(line)
        assert m, f"unparsed kernel line {line!r}"
        lines.setdefault(int(m.group("cpu")), []).append(m.group("body"))
    for cpu in sorted(set(lines) | set(decoded)):
        ours, theirs = decoded.get(cpu, []), lines.get(cpu, [])
        if len(ours) != len(theirs):
            capture.count_mismatch.append((cpu, len(ours), len(theirs)))
            continue                      # not paired: a shifted pairing would compare unrelated events
        capture.pairs.extend(zip(ours, theirs))
    return capture


def match_rate(pairs, renderer: TextRenderer) -> tuple[int, Counter, dict]:
    matched, differing, example = 0, Counter(), {}
    for event, body in pairs:
        mine = renderer.line_body(event)
        if mine == body:
            matched += 1
        else:
            differing[event.format.full_name] += 1
            example.setdefault(event.format.full_name, (body, mine))
    return matched, differing, example


@pytest.mark.live
def test_kernel_trace_text_matches_print_fmt_rendering(live_tracefs, tmp_path):
    capture = capture_all_events(live_tracefs, tmp_path)
    # Every CPU's text and pages hold the same records.
    assert not capture.count_mismatch, capture.count_mismatch
    symbols = Symbols.from_kallsyms(Path("/proc/kallsyms").read_text())
    btf = Path("/sys/kernel/btf/vmlinux")
    renderer = TextRenderer(parse_printk_formats(capture.printk_formats), symbols, escape=False,
                            constants=kernel_constants(btf.read_bytes() if btf.exists() else None, symbols))
    matched, differing, example = match_rate(capture.pairs, renderer)
    total = len(capture.pairs)
    types = {event.format.full_name for event, _ in capture.pairs}
    report = "; ".join(f"{name} x{n}: kernel {example[name][0][:120]!r} rawtrace {example[name][1][:120]!r}"
                       for name, n in differing.most_common())
    print(f"\nprint fmt oracle: {matched}/{total} events = {100 * matched / total:.2f}% over {len(types)} "
          f"event types; differing: {report or 'none'}")
    assert len(types) >= 100, sorted(types)
    assert total > 1000
    assert matched >= 0.99 * total, report
    # The marker write went through ftrace:print and rendered like the kernel's.
    assert any(e.format.full_name == "ftrace:print" and "printfmt-marker" in body for e, body in capture.pairs)
    # The probes fired and were compared (the kernel prints their addresses its own way).
    probe_bodies = [body for e, body in capture.pairs if e.format.name in ("open64", "open64_ret")]
    assert any('path="/etc/hostname"' in body for body in probe_bodies), probe_bodies[:3]
    assert any(" <- 0x" in body for body in probe_bodies), probe_bodies[:3]
