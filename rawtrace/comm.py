"""saved_cmdlines: the kernel's pid -> comm table (tracefs saved_cmdlines, or a trace.dat's section).

Process names at event time are kept by rawtrace.tasks.TaskTable, which uses this table offline."""

from __future__ import annotations

from rawtrace.asciinum import ascii_int


def parse_saved_cmdlines(text: str) -> dict[int, str]:
    """pid -> comm from the text of tracefs saved_cmdlines (`<pid> <comm>` lines)."""
    comms: dict[int, str] = {}
    for line in text.splitlines():
        pid_text, _, comm = line.partition(" ")
        pid = ascii_int(pid_text, max_digits=10)
        if pid is not None and comm:
            comms[pid] = comm
    return comms
