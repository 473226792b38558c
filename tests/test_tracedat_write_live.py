"""Live: a recording of ~40 event systems (a couple of hundred event types) by `rawtrace record`, read by
`trace-cmd report -R`: every event, time stamp, CPU, pid and field value equals rawtrace's reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_tracedat_write_support import TRACE_CMD, compare_with_report, report

from rawtrace.parse.record import Event
from rawtrace.parse.ringbuf import iter_pages
from rawtrace.parse.tracedat import read_tracedat
from rawtrace.parse.tracedat_write import extra_sections
from rawtrace.printfmt import Symbols, parse_printk_formats

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ["sched", "irq", "timer", "kmem", "syscalls", "raw_syscalls", "block", "ext4", "writeback", "net",
           "sock", "tcp", "signal", "task", "workqueue", "rcu", "filemap", "exceptions", "x86_fpu", "msr", "ipi",
           "cgroup", "power", "napi", "skb", "jbd2", "pagemap", "mmap_lock", "vmscan", "compaction", "oom",
           "percpu", "migrate", "huge_memory", "iomap", "fib", "neigh", "qdisc"]
WORKLOAD = ("ls /etc > /dev/null; cat /etc/hostname > /dev/null; "
            "dd if=/dev/zero of={tmp}/dd bs=64k count=4 conv=fsync 2>/dev/null; "
            "python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(); "
            "c = socket.create_connection(s.getsockname()); a, _ = s.accept(); a.send(b\"x\"); c.recv(1)'")


@pytest.mark.live
@pytest.mark.skipif(TRACE_CMD is None, reason="trace-cmd is not installed")
def test_many_event_types_agree_with_trace_cmd(live_tracefs, tmp_path):
    patterns = [f"{s}:*" for s in SYSTEMS if (live_tracefs / "events" / s).is_dir()]
    out = tmp_path / "many.dat"
    proc = subprocess.run([sys.executable, "-m", "rawtrace", "record", "-o", str(out), *patterns,
                           "--buffer-kb", "8192", "--", "sh", "-c", WORKLOAD.format(tmp=tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    dat = read_tracedat(out)
    buf = dat.buffer()
    layout = dat.page_layout(buf)
    decoders = layout.decoders(dat.formats())
    decoded = {cpu: list(iter_pages(layout, dat.cpu_data(buf, cpu), cpu, decoders)) for cpu in buf.cpus}
    kallsyms, printk = extra_sections(dat)
    events, values, problems = compare_with_report(decoded, report(out), Symbols.from_kallsyms(kallsyms),
                                                   parse_printk_formats(printk))
    assert not problems, problems
    types = {e.format.full_name for items in decoded.values() for e in items if isinstance(e, Event)}
    print(f"\ntrace-cmd agreement: {events} events, {values} field values, {len(types)} event types")
    assert len(types) >= 60 and events > 1000 and values > 2 * events
