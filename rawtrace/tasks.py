"""The task table: thread id → process id (tgid) and the process name at each moment of a trace.

The kernel records only the thread id (common_pid) in an event. The table is fed, in time order, by a few
low-rate helper events (task_newtask, sched_process_fork, sched_process_exec, task_rename,
sched_process_exit) so that every event is labelled with the name its thread had when the event happened,
and with its process, even for a process that exec'd and exited long before anyone could read /proc.
A thread seen before any helper event is named from a /proc snapshot taken at start (live), from
/proc when first seen, or from the recording's saved_cmdlines / saved_tgids (offline).

Names follow strace and bcc: `pid` is the process (tgid), `tid` the thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

# (system, event) pairs the table learns from; their output is hidden unless asked for.
HELPER_EVENTS: tuple[tuple[str, str], ...] = (
    ("task", "task_newtask"),
    ("sched", "sched_process_fork"),
    ("sched", "sched_process_exec"),
    ("task", "task_rename"),
    ("sched", "sched_process_exit"),
)

TASK_COMM_LEN = 16
CLONE_THREAD = 0x00010000
IDLE = "<idle>"
UNKNOWN = "<...>"


def exec_comm(filename: str) -> str:
    """The name a task gets from execve(filename): the basename, cut to TASK_COMM_LEN-1 bytes."""
    base = filename.rsplit("/", 1)[-1]
    return base.encode("utf-8", "surrogateescape")[:TASK_COMM_LEN - 1].decode("utf-8", "surrogateescape")


from rawtrace.asciinum import ascii_int


class TaskTable:
    """tid → comm and tid → pid as of the last helper event replayed.

    `handlers()` gives the per-event functions the stream calls in time order; `comm(tid)` and `pid(tid)`
    answer for the moment of the event being processed. `proc` is the /proc to consult for threads seen
    before any helper event (None offline); `saved_comms`/`saved_tgids` are the recording's tables."""

    def __init__(self, proc: Path | None = None, saved_comms: dict[int, str] | None = None,
                 saved_tgids: dict[int, int] | None = None, arch: str | None = None) -> None:
        self.proc = Path(proc) if proc is not None else None
        # Threads whose syscall numbers are in another ABI than the kernel's native one (32-bit compat
        # tasks on a 64-bit kernel): tid -> ABI name. Learnt from the ELF header of what they exec'd
        # (live only: the file must be readable) and of /proc/PID/exe at the snapshot; inherited by
        # threads and forks.
        self.abis: dict[int, str] = {}
        self._compat = _compat_abis(arch) if arch and self.proc is not None else None
        self.names: dict[int, str] = {0: IDLE}
        self.tgids: dict[int, int] = {0: 0}
        self.exited: set[int] = set()
        self._saved_comms = dict(saved_comms or {})
        self._saved_tgids = dict(saved_tgids or {})
        self.listeners: list[Callable[[str, Any], None]] = []

    # -- start-up ---------------------------------------------------------------------------------
    def snapshot(self, pids: list[int] | None = None) -> int:
        """Name every thread (of every process, or of `pids`) from /proc now, so a process that execs
        later keeps its earlier name for earlier events. Returns how many threads were read."""
        if self.proc is None:
            return 0
        if pids is None:
            try:
                pids = [p for p in map(ascii_int, os.listdir(self.proc)) if p is not None]
            except OSError:
                return 0
        count = 0
        names, tgids = self.names, self.tgids
        for pid in pids:
            base = self.proc / str(pid)
            try:
                tids = [t for t in map(ascii_int, os.listdir(base / "task")) if t is not None]
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(base / "task" / str(tid) / "comm", "rb") as f:
                        comm = f.read().rstrip(b"\n").decode("utf-8", "surrogateescape")
                except OSError:
                    continue
                names[tid] = comm
                tgids[tid] = pid
                count += 1
            if self._compat:
                abi = self._abi_of_file(base / "exe")
                if abi is not None:
                    for tid in tids:
                        self.abis[tid] = abi
        return count

    def _abi_of_file(self, path) -> str | None:
        """The compat ABI of an executable (None: native, or not an ELF file we can read)."""
        try:
            with open(path, "rb") as f:
                head = f.read(20)
        except OSError:
            return None
        if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] != 1:       # ELFCLASS32 only
            return None
        machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
        return self._compat.get(machine, self._compat.get(None))

    # -- queries (hot path) -----------------------------------------------------------------------
    def comm(self, tid: int) -> str:
        """The thread's name at the moment of the event being processed."""
        name = self.names.get(tid)
        if name is None:
            name = self._first_sight(tid)[0]
        return name

    def pid(self, tid: int) -> int:
        """The thread's process id (tgid); the tid itself when nothing says otherwise."""
        pid = self.tgids.get(tid)
        if pid is None:
            pid = self._first_sight(tid)[1]
        return pid

    def _first_sight(self, tid: int) -> tuple[str, int]:
        comm = tgid = None
        if self.proc is not None:
            base = self.proc / str(tid)
            try:
                with open(base / "comm", "rb") as f:
                    comm = f.read().rstrip(b"\n").decode("utf-8", "surrogateescape")
                with open(base / "status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Tgid:"):
                            tgid = ascii_int(line[5:].strip().decode("ascii", "replace"))
                            break
            except OSError:
                pass
        if comm is None:
            comm = self._saved_comms.get(tid, UNKNOWN)
        if tgid is None:
            tgid = self._saved_tgids.get(tid, tid)
        self.names.setdefault(tid, comm)
        self.tgids.setdefault(tid, tgid)
        return self.names[tid], self.tgids[tid]

    def known(self, tid: int) -> bool:
        """True if the name of `tid` came from the trace or a snapshot (not a guess)."""
        return tid in self.names and self.names[tid] != UNKNOWN

    # -- updates from helper events -------------------------------------------------------------
    def handlers(self) -> dict[tuple[str, str], Callable]:
        return {
            ("task", "task_newtask"): self.on_newtask,
            ("sched", "sched_process_fork"): self.on_fork,
            ("sched", "sched_process_exec"): self.on_exec,
            ("task", "task_rename"): self.on_rename,
            ("sched", "sched_process_exit"): self.on_exit,
        }

    def on_newtask(self, rec) -> None:
        """task_newtask runs in the parent: its clone_flags tell a new thread from a new process."""
        fields = rec.fields
        child = fields.get("pid")
        if child is None:
            return
        parent = rec.pid
        self.exited.discard(child)
        if fields.get("comm") is not None:
            self.names[child] = fields["comm"]
        flags = fields.get("clone_flags") or 0
        self.tgids[child] = self.pid(parent) if flags & CLONE_THREAD else child
        abi = self.abis.get(parent)
        if abi is not None:
            self.abis[child] = abi
        else:
            self.abis.pop(child, None)
        self._tell("newtask", rec)

    def on_fork(self, rec) -> None:
        fields = rec.fields
        child = fields.get("child_pid")
        parent = fields.get("parent_pid", rec.pid)
        if parent is not None and parent not in self.names and fields.get("parent_comm"):
            self.names[parent] = fields["parent_comm"]
        if child is None:
            return
        self.exited.discard(child)
        self.names[child] = fields.get("child_comm") or self.names.get(parent, UNKNOWN)
        # task_newtask (earlier, same fork) knows about CLONE_THREAD; without it, a new process.
        self.tgids.setdefault(child, child)
        self._tell("fork", rec)

    def on_exec(self, rec) -> None:
        fields = rec.fields
        new = fields.get("pid", rec.pid)
        filename = str(fields.get("filename", ""))
        comm = exec_comm(filename)
        self.names[new] = comm
        self.tgids[new] = new          # exec makes the caller the leader of its process
        if self._compat:
            abi = self._abi_of_file(self.proc.parent / filename.lstrip("/")) if filename.startswith("/") \
                else self._abi_of_file(self.proc / str(new) / "exe")
            if abi is None:
                self.abis.pop(new, None)
            else:
                self.abis[new] = abi
        old = fields.get("old_pid")
        if old is not None and old != new:
            # A non-leader thread exec'd: it took over the leader's pid; its old tid is gone.
            self.names[old] = comm
            self.exited.add(old)
        self._tell("exec", rec)

    def on_rename(self, rec) -> None:
        fields = rec.fields
        target = fields.get("pid", rec.pid)
        if target not in self.names and fields.get("oldcomm") is not None:
            self.names[target] = fields["oldcomm"]
        if fields.get("newcomm") is not None:
            self.names[target] = fields["newcomm"]
        self._tell("rename", rec)

    def on_exit(self, rec) -> None:
        # Names stay: events of the thread may still be in flight on other CPUs, and tools print
        # exited processes by name. A later fork of the same tid overwrites them.
        tid = rec.fields.get("pid", rec.pid)
        if tid not in self.names and rec.fields.get("comm"):
            self.names[tid] = rec.fields["comm"]
        self.exited.add(tid)
        self._tell("exit", rec)

    def _tell(self, what: str, rec) -> None:
        for listener in self.listeners:
            listener(what, rec)


def _compat_abis(arch: str) -> dict | None:
    """ELF e_machine (None: any) of a 32-bit binary → the compat ABI its tasks use on a 64-bit `arch`."""
    from rawtrace.syscalls.arches import lookup_arch
    found = lookup_arch(arch)
    if found is None or found.word_size != 64:
        return None
    out: dict = {}
    for abi in found.abis[1:]:
        if abi.word_size == 32:
            if abi.name == "x32":
                out[62] = "x32"                 # ELFCLASS32 with EM_X86_64
            elif abi.compat:
                out.setdefault(None, abi.name)
                if abi.name == "i386":
                    out[3] = "i386"             # EM_386
    return out or None


def parse_saved_tgids(text: str) -> dict[int, int]:
    """tid -> tgid from the text of tracefs saved_tgids (`<tid> <tgid>` lines); bad lines are skipped."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            tid, tgid = ascii_int(parts[0]), ascii_int(parts[1])
            if tid is not None and tgid is not None:
                out[tid] = tgid
    return out
