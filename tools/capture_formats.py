#!/usr/bin/env python3
"""Copy a representative set of format files (and header_page/header_event) from a live tracefs into
tests/fixtures/formats/<kernel release>/events/, as a tree `rawtrace --tracefs` can read."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rawtrace.parse.format import parse_format

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "formats"

# Named on purpose: the events rawtrace's own features and tests lean on.
NAMED = [
    "syscalls/sys_enter_open", "syscalls/sys_enter_openat", "syscalls/sys_exit_openat",
    "syscalls/sys_enter_read", "syscalls/sys_exit_read", "syscalls/sys_enter_write",
    "syscalls/sys_enter_execve", "syscalls/sys_enter_exit_group", "syscalls/sys_enter_clock_nanosleep",
    "syscalls/sys_enter_getpid", "syscalls/sys_exit_getpid", "syscalls/sys_enter_mmap",
    "raw_syscalls/sys_enter", "raw_syscalls/sys_exit",
    "sched/sched_switch", "sched/sched_wakeup", "sched/sched_waking", "sched/sched_process_fork",
    "sched/sched_process_exec", "sched/sched_process_exit", "sched/sched_stat_runtime",
    "sched/sched_migrate_task", "task/task_newtask", "task/task_rename",
    "ipi/ipi_send_cpumask", "irq/irq_handler_entry", "irq/softirq_entry", "signal/signal_generate",
    "timer/hrtimer_start", "workqueue/workqueue_queue_work", "kmem/kmalloc", "kmem/mm_page_alloc",
    "block/block_rq_issue", "writeback/writeback_dirty_inode", "module/module_load",
    "ext4/ext4_fc_stats", "ext4/ext4_fsmap_low_key", "sock/sock_exceed_buf_limit",
]


def pick_by_kind(events_dir: Path, per_kind: int) -> list[str]:
    """A few more events for each field kind and each odd form this kernel has."""
    wanted: dict[str, list[str]] = {}
    for system in sorted(os.listdir(events_dir)):
        if not (events_dir / system).is_dir():
            continue
        for name in sorted(os.listdir(events_dir / system)):
            path = events_dir / system / name / "format"
            try:
                fmt = parse_format(path.read_text(), system=system, source=str(path), long_size=8)
            except OSError:
                continue
            tags = {f.kind for f in fmt.fields} | {n.split(":")[0] for f in fmt.fields for n in f.notes}
            if "\n" in fmt.print_fmt:
                tags.add("multi-line print fmt")
            for tag in tags:
                bucket = wanted.setdefault(tag, [])
                if len(bucket) < per_kind:
                    bucket.append(f"{system}/{name}")
    return sorted({item for bucket in wanted.values() for item in bucket})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracefs", default="/sys/kernel/tracing", help="live tracefs (default %(default)s)")
    parser.add_argument("--out", default=None, help="output directory (default fixtures/formats/<release>)")
    parser.add_argument("--per-kind", type=int, default=3, help="extra events per field kind")
    args = parser.parse_args()
    events_dir = Path(args.tracefs) / "events"
    out = Path(args.out) if args.out else FIXTURES / platform.release() / "events"
    chosen = set(NAMED) | set(pick_by_kind(events_dir, args.per_kind))
    chosen |= {f"ftrace/{name}" for name in os.listdir(events_dir / "ftrace")
               if (events_dir / "ftrace" / name).is_dir()}
    written = 0
    for item in sorted(chosen):
        source = events_dir / item
        if not (source / "format").exists():
            continue
        target = out / item
        target.mkdir(parents=True, exist_ok=True)
        (target / "format").write_text((source / "format").read_text())
        if (source / "id").exists():
            (target / "id").write_text((source / "id").read_text())
        written += 1
    for name in ("header_page", "header_event"):
        (out / name).write_text((events_dir / name).read_text())
    (out.parent / "KERNEL").write_text(f"{platform.release()} {platform.machine()}\n")
    print(f"{written} events and the two headers written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
