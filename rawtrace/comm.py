"""Process names at event time: a pid→comm map fed, in timestamp order, by fork/exec/rename events.

The kernel records only the pid in an event. rawtrace enables a few low-rate helper events in its
instance (sched_process_fork, sched_process_exec, task_rename, task_newtask) and replays them in
the merged stream, so an event is labelled with the name its process had when the event happened,
even for a process that exec'd and exited long before anyone could read /proc. A pid seen before
any helper event is named from /proc/PID/comm when first seen, else from the kernel's saved_cmdlines."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rawtrace.host import read_text_or_none

# (system, event) pairs rawtrace enables for name tracking; their output is hidden unless asked for.
HELPER_EVENTS = (
    ("sched", "sched_process_fork"),
    ("sched", "sched_process_exec"),
    ("task", "task_newtask"),
    ("task", "task_rename"),
)

TASK_COMM_LEN = 16


def exec_comm(filename: str) -> str:
    """The name a task gets from execve(filename): the basename, cut to TASK_COMM_LEN-1 bytes."""
    base = filename.rsplit("/", 1)[-1]
    return base.encode(errors="surrogateescape")[:TASK_COMM_LEN - 1].decode(errors="replace")


class CommTracker:
    """pid → comm as of the last event replayed. `observe()` every event in timestamp order, then `comm(pid)`."""

    def __init__(self, proc: Path = Path("/proc"), saved_cmdlines: Path | None = None) -> None:
        self.proc = Path(proc)
        self.saved_cmdlines = saved_cmdlines
        self._names: dict[int, str] = {0: "<idle>"}
        self._saved: dict[int, str] | None = None

    def set(self, pid: int, comm: str) -> None:
        self._names[pid] = comm

    def snapshot(self, pids: list[int] | None = None) -> int:
        """Name every process (or `pids`) from /proc now, so a process that execs later keeps its
        earlier name for earlier events. Returns how many were read."""
        if pids is None:
            try:
                pids = [int(p) for p in os.listdir(self.proc) if p.isdigit()]
            except OSError:
                return 0
        count = 0
        for pid in pids:
            try:
                self._names[pid] = (self.proc / str(pid) / "comm").read_text().rstrip("\n")
                count += 1
            except OSError:
                pass
        return count

    def prime(self, name: str, fields: dict[str, Any], pid: int) -> None:
        """Learn the current task's name from a helper event that carries it, before labelling the event."""
        if pid in self._names:
            return
        if name == "sched_process_fork" and fields.get("parent_pid") == pid and fields.get("parent_comm"):
            self._names[pid] = str(fields["parent_comm"])
        elif name == "task_rename" and fields.get("pid") == pid and fields.get("oldcomm") is not None:
            self._names[pid] = str(fields["oldcomm"])

    def observe(self, name: str, fields: dict[str, Any], pid: int) -> None:
        """Update the map from one helper event (others are ignored)."""
        if name == "sched_process_exec":
            new_pid = fields.get("pid", pid)
            self._names[new_pid] = exec_comm(str(fields.get("filename", "")))
            old_pid = fields.get("old_pid")
            if old_pid is not None and old_pid != new_pid:
                # A non-leader thread exec'd: it took over the leader's pid.
                self._names[old_pid] = self._names[new_pid]
        elif name == "sched_process_fork":
            child = fields.get("child_pid")
            if child is not None:
                self._names[child] = str(fields.get("child_comm", self._names.get(pid, "")))
            parent = fields.get("parent_pid")
            if parent is not None and parent not in self._names and fields.get("parent_comm"):
                self._names[parent] = str(fields["parent_comm"])
        elif name == "task_newtask":
            child = fields.get("pid")
            if child is not None and fields.get("comm") is not None:
                self._names[child] = str(fields["comm"])
        elif name == "task_rename":
            target = fields.get("pid", pid)
            if fields.get("newcomm") is not None:
                self._names[target] = str(fields["newcomm"])

    def comm(self, pid: int) -> str:
        name = self._names.get(pid)
        if name is None:
            name = self._lookup(pid)
            self._names[pid] = name
        return name

    def _lookup(self, pid: int) -> str:
        try:
            return (self.proc / str(pid) / "comm").read_text().rstrip("\n")
        except OSError:
            pass
        if self._saved is None:
            self._saved = self._read_saved_cmdlines()
        return self._saved.get(pid, "<...>")

    def _read_saved_cmdlines(self) -> dict[int, str]:
        text = read_text_or_none(self.saved_cmdlines) if self.saved_cmdlines is not None else None
        return parse_saved_cmdlines(text) if text is not None else {}


def parse_saved_cmdlines(text: str) -> dict[int, str]:
    """pid -> comm from the text of tracefs saved_cmdlines (`<pid> <comm>` lines)."""
    from rawtrace.asciinum import ascii_int
    comms: dict[int, str] = {}
    for line in text.splitlines():
        pid_text, _, comm = line.partition(" ")
        pid = ascii_int(pid_text, max_digits=10)
        if pid is not None and comm:
            comms[pid] = comm
    return comms
