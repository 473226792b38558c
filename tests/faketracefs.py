"""A fake tracefs tree for probe tests: plain files, a README with chosen feature lines, and a stand-in kernel."""

from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass
from pathlib import Path

from rawtrace.tracefs.dynevents import KernelFiles

# Lines of the real README (Linux 6.18 readme_msg) that announce each feature.
README_HEAD = """\
tracing mini-HOWTO:
  error_log\t- error log for failed commands (that support it)
"""
README_KPROBES = """\
  kprobe_events\t\t- Create/append/remove/show the kernel dynamic events
\t\t\t  Write into this file to define/undefine new trace events.
"""
README_UPROBES = """\
  uprobe_events\t\t- Create/append/remove/show the userspace dynamic events
\t\t\t  Write into this file to define/undefine new trace events.
"""
README_FORMAT = """\
\t  accepts: event-definitions (one definition per line)
\t   Format: p[:[<group>/][<event>]] <place> [<args>]
\t           r[maxactive][:[<group>/][<event>]] <place> [<args>]
"""
README_FPROBE_LINES = """\
\t           f[:[<group>/][<event>]] <func-name>[%return] [<args>]
\t           t[:[<group>/][<event>]] <tracepoint> [<args>]
"""
README_EPROBE_LINE = "\t           e[:[<group>/][<event>]] <attached-group>.<attached-event> [<args>] [if <filter>]\n"
README_REMOVE = "\t           -:[<group>/][<event>]\n"
README_KPROBE_PLACE = "\t    place: [<module>:]<symbol>[+<offset>]|<memaddr>\n"
README_UPROBE_PLACE = "   place (uprobe): <path>:<offset>[%return][(ref_ctr_offset)]\n"

# events/syscalls/sys_enter_openat/format of Linux 6.18 (x86_64)
OPENAT_FORMAT = """\
name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: "dfd: 0x%08lx, filename: 0x%08lx, flags: 0x%08lx, mode: 0x%08lx", ((unsigned long)(REC->dfd)), \
((unsigned long)(REC->filename)), ((unsigned long)(REC->flags)), ((unsigned long)(REC->mode))
"""


@dataclass
class Refusal:
    errno: int
    message: str | None          # None: fail without an error_log entry (no parser took the line)
    position: int | None = None  # index in the command the caret points at


class FakeKernel(KernelFiles):
    """Plays the kernel behind the fake tree: real appends to plain files, then the effects a real
    tracefs would have (event directories appear and go, EBUSY for enabled probes, error_log entries)."""

    def __init__(self, fake: FakeTracefs) -> None:
        self.fake = fake
        self.writes: list[tuple[str, str]] = []    # (path relative to tracefs, text) in order
        self.refusals: list[Refusal] = []
        self.clock = 100.0

    def refuse_next(self, err: int, message: str | None, position: int | None = None) -> None:
        self.refusals.append(Refusal(err, message, position))

    def append(self, path: Path, line: str) -> None:
        rel = str(path.relative_to(self.fake.root))
        self.writes.append((rel, line))
        if self.refusals:
            refusal = self.refusals.pop(0)
            if refusal.message is not None:
                self._log_error(refusal.message, line, refusal.position)
            raise OSError(refusal.errno, f"fake kernel refused: {line}")
        if line.startswith("-:"):
            self._remove(path, line)
            return
        if line.startswith("e:") and not self.fake.eprobes_compiled:
            raise OSError(errno.EINVAL, "no parser for an e line")
        super().append(path, line)          # the production append, on a plain file
        head = line.split(" ", 1)[0]
        group, event = head.split(":", 1)[1].split("/", 1)
        for base in [self.fake.root] + [p for p in (self.fake.root / "instances").iterdir()]:
            directory = base / "events" / group / event
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "enable").write_text("0\n")

    def write(self, path: Path, text: str) -> None:
        self.writes.append((str(path.relative_to(self.fake.root)), text))
        super().write(path, text)

    def _log_error(self, message: str, command: str, position: int | None) -> None:
        self.clock += 1.5
        entry = f"[{self.clock:12.6f}] trace_probe: error: {message}\n  Command: {command}\n"
        if position is not None:
            entry += " " * (len("  Command: ") + position) + "^\n"
        with open(self.fake.root / "error_log", "a") as f:
            f.write(entry)

    def _remove(self, path: Path, line: str) -> None:
        group, event = line[2:].split("/", 1)
        dirs = [base / "events" / group / event
                for base in [self.fake.root] + list((self.fake.root / "instances").iterdir())]
        for directory in dirs:
            enable = directory / "enable"
            if enable.exists() and enable.read_text().strip() != "0":
                raise OSError(errno.EBUSY, "enabled")
        found = False
        for name in ("dynamic_events", "uprobe_events", "kprobe_events"):
            file = self.fake.root / name
            if not file.exists():
                continue
            kept = []
            for existing in file.read_text().splitlines():
                head = existing.split(" ", 1)[0]
                if head.split(":", 1)[-1] == f"{group}/{event}":
                    found = True
                    continue
                kept.append(existing)
            file.write_text("".join(k + "\n" for k in kept))
        if not found:
            raise OSError(errno.ENOENT, "no such probe")
        for directory in dirs:
            if directory.exists():
                shutil.rmtree(directory)
                if not any(directory.parent.iterdir()):
                    directory.parent.rmdir()


class FakeTracefs:
    """Build a tracefs-like tree under `root` with the chosen probe features."""

    def __init__(self, root: Path, *, kprobes: bool = True, uprobes: bool = True, dynamic_events: bool = True,
                 fprobes: bool = True, eprobes_compiled: bool = True, error_log: bool = True,
                 ref_ctr: bool = True, instances: tuple[str, ...] = ()) -> None:
        self.root = root
        self.eprobes_compiled = eprobes_compiled
        root.mkdir(parents=True, exist_ok=True)
        readme = README_HEAD
        if kprobes:
            readme += README_KPROBES
        if uprobes:
            readme += README_UPROBES
        readme += README_FORMAT
        if fprobes:
            readme += README_FPROBE_LINES
        readme += README_EPROBE_LINE + README_REMOVE
        if kprobes:
            readme += README_KPROBE_PLACE
        if uprobes:
            readme += README_UPROBE_PLACE if ref_ctr else README_UPROBE_PLACE.replace("[(ref_ctr_offset)]", "")
        (root / "README").write_text(readme)
        if dynamic_events:
            (root / "dynamic_events").write_text("")
        if kprobes:
            (root / "kprobe_events").write_text("")
            (root / "kprobe_profile").write_text("")
        if uprobes:
            (root / "uprobe_events").write_text("")
            (root / "uprobe_profile").write_text("")
        if error_log:
            (root / "error_log").write_text("")
        openat = root / "events" / "syscalls" / "sys_enter_openat"
        openat.mkdir(parents=True)
        (openat / "enable").write_text("0\n")
        (openat / "format").write_text(OPENAT_FORMAT)
        (root / "events" / "syscalls" / "sys_exit_openat").mkdir()
        (root / "instances").mkdir()
        for name in instances:
            (root / "instances" / name / "events").mkdir(parents=True)
        self.kernel = FakeKernel(self)

    def seed(self, name: str, text: str) -> None:
        (self.root / name).write_text(text)

    def text(self, name: str) -> str:
        return (self.root / name).read_text()
