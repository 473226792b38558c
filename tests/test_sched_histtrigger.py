"""rawtrace.tracefs.histtrigger on a fake tracefs that plays a kernel with hist triggers and synthetic events."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from rawtrace.errors import KernelRefused, NotSupported
from rawtrace.tracefs.dynevents import KernelFiles
from rawtrace.tracefs.histtrigger import InKernelLatency, parse_hist, plan, support

NAME = "rawtrace_4242_runqlat"

# The exact lines of the recipe, in the order they must be written (removal: the reverse, with '!').
EXPECTED = [
    ("synthetic_events", f"{NAME} u64 lat; pid_t pid"),
    ("instances/rt/events/sched/sched_wakeup/trigger", "hist:keys=pid:ts_wakeup=common_timestamp.usecs"),
    ("instances/rt/events/sched/sched_wakeup_new/trigger", "hist:keys=pid:ts_new=common_timestamp.usecs"),
    ("instances/rt/events/sched/sched_switch/trigger",
     ("hist:keys=next_pid:lat_wakeup=common_timestamp.usecs-$ts_wakeup:"
     f"onmatch(sched.sched_wakeup).{NAME}($lat_wakeup,next_pid)")),
    ("instances/rt/events/sched/sched_switch/trigger",
     ("hist:keys=next_pid:lat_new=common_timestamp.usecs-$ts_new:"
     f"onmatch(sched.sched_wakeup_new).{NAME}($lat_new,next_pid)")),
    (f"instances/rt/events/synthetic/{NAME}/trigger", "hist:keys=pid,lat:vals=hitcount:sort=pid,lat:size=8192"),
]

# A hist file as Linux prints one for keys=pid,lat (kernel/trace/trace_events_hist.c hist_show()).
HIST = """\
# event histogram
#
# trigger info: hist:keys=pid,lat:vals=hitcount:sort=pid,lat:size=8192 [active]
#

{ pid:        101, lat:          3 } hitcount:          2
{ pid:        101, lat:       6000 } hitcount:          1
{ pid:        202, lat:         12 } hitcount:          7

Totals:
    Hits: 10
    Entries: 3
    Dropped: 4
"""


class HistKernel(KernelFiles):
    """Plays a hist-trigger kernel: trigger files keep their lines, '!' removes one (ENOENT if absent),
    a synthetic event gets its directory in every instance, and cannot go while a trigger uses it."""

    def __init__(self, root: Path, refuse: str | None = None) -> None:
        self.root = root
        self.refuse = refuse
        self.writes: list[tuple[str, str]] = []

    def append(self, path: Path, line: str) -> None:
        rel = str(path.relative_to(self.root))
        self.writes.append((rel, line))
        if self.refuse and self.refuse in line and not line.startswith("!"):
            (self.root / "error_log").write_text("[ 12.5] hist:sched:sched_switch: error: Couldn't find variable\n")
            raise OSError(errno.EINVAL, "Invalid argument")
        lines = path.read_text().splitlines() if path.exists() else []
        if line.startswith("!"):
            target = line[1:]
            if rel == "synthetic_events":
                name = target.split()[0]
                if any(name in existing for p in self.root.rglob("trigger") for existing in p.read_text().splitlines()):
                    raise OSError(errno.EBUSY, "in use")
                lines = [ln for ln in lines if ln.split()[0] != name]
                for inst in self.root.glob("instances/*"):
                    for f in sorted((inst / "events/synthetic" / name).glob("*")):
                        f.unlink()
                    (inst / "events/synthetic" / name).rmdir()
            elif target not in lines:
                raise OSError(errno.ENOENT, "no such trigger")
            else:
                lines.remove(target)
        else:
            lines.append(line)
            if rel == "synthetic_events":
                for inst in self.root.glob("instances/*"):
                    directory = inst / "events/synthetic" / line.split()[0]
                    directory.mkdir(parents=True)
                    (directory / "trigger").write_text("")
                    (directory / "hist").write_text("")
        path.write_text("".join(ln + "\n" for ln in lines))


def hist_tracefs(tmp_path: Path, hist: bool = True) -> Path:
    root = tmp_path / "tracing"
    if hist:
        (root / "synthetic_events").parent.mkdir(parents=True, exist_ok=True)
        (root / "synthetic_events").write_text("")
    for event in ("sched_wakeup", "sched_wakeup_new", "sched_switch"):
        directory = root / "instances/rt/events/sched" / event
        directory.mkdir(parents=True)
        (directory / "trigger").write_text("")
        if hist:
            (directory / "hist").write_text("")
    return root


def trigger_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("trigger"))}


def test_recipe_lines_written_exactly_then_removed_in_reverse(tmp_path):
    root = hist_tracefs(tmp_path)
    before = trigger_files(root)
    kernel = HistKernel(root)
    probe = InKernelLatency(root, root / "instances/rt", NAME, files=kernel)
    probe.create()
    assert kernel.writes == EXPECTED
    assert (root / "synthetic_events").read_text() == f"{NAME} u64 lat; pid_t pid\n"
    assert (root / "instances/rt/events/sched/sched_switch/trigger").read_text().count("onmatch") == 2
    assert probe.remove() == []
    assert kernel.writes[len(EXPECTED):] == [(rel, "!" + line) for rel, line in reversed(EXPECTED)]
    assert (root / "synthetic_events").read_text() == ""
    assert trigger_files(root) == before
    assert not (root / "instances/rt/events/synthetic" / NAME).exists()
    assert probe.remove() == []                                  # idempotent: nothing more written
    assert len(kernel.writes) == 2 * len(EXPECTED)


def test_a_refused_line_undoes_what_was_written(tmp_path):
    root = hist_tracefs(tmp_path)
    kernel = HistKernel(root, refuse="onmatch(sched.sched_wakeup_new)")
    probe = InKernelLatency(root, root / "instances/rt", NAME, files=kernel)
    with pytest.raises(KernelRefused, match="Couldn't find variable"):
        probe.create()
    assert (root / "synthetic_events").read_text() == ""
    assert all(text == "" for text in trigger_files(root).values())


def test_not_supported_by_this_kernel(tmp_path):
    root = hist_tracefs(tmp_path, hist=False)                    # like this VM: trigger files, no hist
    assert "no synthetic_events file" in support(root, root / "instances/rt")
    kernel = HistKernel(root)
    with pytest.raises(NotSupported, match="not supported by this kernel") as info:
        InKernelLatency(root, root / "instances/rt", NAME, files=kernel).create()
    assert info.value.exit_code == 2 and kernel.writes == []


def test_hist_file_parsed_into_rows_and_dropped(tmp_path):
    entries, totals = parse_hist(HIST)
    assert entries[0] == {"pid": 101, "lat": 3, "hitcount": 2}
    assert totals == {"Hits": 10, "Entries": 3, "Dropped": 4}
    root = hist_tracefs(tmp_path)
    probe = InKernelLatency(root, root / "instances/rt", NAME, files=HistKernel(root))
    with probe:
        (root / "instances/rt/events/synthetic" / NAME / "hist").write_text(HIST)
        rows, dropped = probe.read()
    assert rows == [(101, 3, 2), (101, 6000, 1), (202, 12, 7)] and dropped == 4
    assert (root / "synthetic_events").read_text() == ""


def test_plan_names_the_owner():
    definition, triggers = plan("rawtrace_1_runqlat")
    assert definition.startswith("rawtrace_1_runqlat ") and len(triggers) == 5
