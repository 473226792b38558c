"""Build tests/fixtures/printfmt/oracle.json: the kernel's own text for a sample of every event type seen."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rawtrace.printfmt import Symbols


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-event", type=int, default=3, help="examples kept per event type")
    parser.add_argument("-o", "--output", default="tests/fixtures/printfmt/oracle.json")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from conftest import LIVE_TRACEFS
    from test_printfmt_live import capture_all_events  # the live test's capture, run under its lock
    capture = capture_all_events(LIVE_TRACEFS)
    kallsyms = Path("/proc/kallsyms").read_text()
    symbols = Symbols.from_kallsyms(kallsyms)
    kept: dict[str, list] = {}
    needed_addresses = set()
    for event, body in capture.pairs:
        examples = kept.setdefault(event.format.full_name, [])
        if len(examples) >= args.per_event:
            continue
        examples.append({"id": event.id, "pid": event.pid, "flags": event.flags,
                         "preempt_count": event.preempt_count, "fields": event.fields, "kernel": body})
        for value in event.fields.values():
            if isinstance(value, int) and value >> 63:
                needed_addresses.add(value)
    # Only the kallsyms lines around the addresses used: the symbol and the next one (its size).
    lines = kallsyms.splitlines()
    addrs = sorted({int(line.split()[0], 16) for line in lines if line.split()[0] != "0" * 16})
    keep = set()
    import bisect
    for addr in needed_addresses:
        i = bisect.bisect_right(addrs, addr) - 1
        if 0 <= i < len(addrs) - 1 and symbols.lookup(addr):
            keep.update((addrs[i], addrs[i + 1]))
    keep.add(symbols.address_of("_text"))
    sym_lines = [line for line in lines if int(line.split()[0], 16) in keep]
    formats = {str(fid): [capture.systems[fid], text] for fid, text in capture.format_texts.items()
               if any(ex["id"] == fid for exs in kept.values() for ex in exs)}
    from rawtrace.printfmt import kernel_constants
    btf = Path("/sys/kernel/btf/vmlinux")
    constants = kernel_constants(btf.read_bytes() if btf.exists() else None, symbols)
    import re
    used = set()
    for _system, text in formats.values():
        tail = text.rpartition("print fmt:")[2]
        used.update(re.findall(r"[A-Za-z_]\w*", tail))
        used.update("sizeof:" + m for m in re.findall(r"(?:struct|union) \w+", tail))
    out = {"kernel": capture.kernel, "constants": {k: v for k, v in constants.items() if k in used}, "formats": formats, "printk_formats": capture.printk_formats,
           "kallsyms": "\n".join(sym_lines), "events": kept, "total_events": len(capture.pairs)}
    Path(args.output).write_text(json.dumps(out, indent=0, sort_keys=True))
    print(f"{sum(len(v) for v in kept.values())} examples of {len(kept)} event types -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
