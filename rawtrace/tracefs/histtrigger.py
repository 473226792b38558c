"""Run-queue latency computed in the kernel: the wakeup_latency recipe of hist triggers and a synthetic event.

The recipe is the one in the kernel's Documentation/trace/histogram.rst ("wakeup_latency"): a hist trigger
on the wakeup event saves ``common_timestamp.usecs`` in a variable keyed by pid; a hist trigger on
``sched_switch`` keyed by ``next_pid`` subtracts it and, ``onmatch()``, fires a synthetic event
``(lat, pid)``; a third hist trigger on the synthetic event counts ``(pid, lat)`` pairs. rawtrace reads that
last ``hist`` file and bins it itself, so in-kernel and ring-buffer results share one bucketing.

Differences from the ring-buffer path, on purpose or by necessity: it starts at ``sched_wakeup`` and
``sched_wakeup_new`` (not ``sched_waking``, for the reason given in rawtrace.sched_latency); waits after
a preemption (R+) are *not* included (the recipe has no start event for them); resolution is 1 µs; a
full map drops entries (``Dropped`` in the hist totals, reported).

Triggers are written into a private instance's event files; ``synthetic_events`` exists only at the top
level, so the synthetic event's name carries the owner's pid. ``remove()`` writes every line again with
``!`` in front, in reverse order, and is safe to call twice.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rawtrace.errors import KernelRefused, NotSupported
from rawtrace.tracefs.dynevents import KernelFiles

# Entries of the (pid, lat) histogram; the kernel preallocates the map, 2**13 entries is ~1 MiB.
MAP_SIZE = 8192

_START_EVENTS = (("sched_wakeup", "ts_wakeup", "lat_wakeup"), ("sched_wakeup_new", "ts_new", "lat_new"))


def synthetic_name(pid: int | None = None) -> str:
    """The synthetic event's name: a C identifier that says who owns it."""
    return f"rawtrace_{pid if pid is not None else os.getpid()}_runqlat"


def plan(name: str) -> tuple[str, list[tuple[str, str]]]:
    """(synthetic_events line, [(file relative to the instance, trigger line)]) in creation order."""
    definition = f"{name} u64 lat; pid_t pid"
    triggers = []
    for event, ts_var, _ in _START_EVENTS:
        triggers.append((f"events/sched/{event}/trigger", f"hist:keys=pid:{ts_var}=common_timestamp.usecs"))
    for event, ts_var, lat_var in _START_EVENTS:
        triggers.append(("events/sched/sched_switch/trigger",
                         (f"hist:keys=next_pid:{lat_var}=common_timestamp.usecs-${ts_var}:"
                         f"onmatch(sched.{event}).{name}(${lat_var},next_pid)")))
    triggers.append((f"events/synthetic/{name}/trigger",
                     f"hist:keys=pid,lat:vals=hitcount:sort=pid,lat:size={MAP_SIZE}"))
    return definition, triggers


def support(tracefs: Path, instance: Path) -> str | None:
    """None when this kernel has hist triggers and synthetic events, else why not (one clause)."""
    missing = []
    if not (tracefs / "synthetic_events").exists():
        missing.append("no synthetic_events file")
    if not (instance / "events/sched/sched_switch/hist").exists():
        missing.append("no hist file in events/sched/sched_switch")
    if not missing:
        return None
    return (" and ".join(missing) + " (needs CONFIG_HIST_TRIGGERS=y and CONFIG_SYNTH_EVENTS=y)")


_ENTRY_RE = re.compile(r"^\{(?P<keys>[^}]*)\}(?P<vals>.*)$")
_PAIR_RE = re.compile(r"([A-Za-z_][\w.]*):\s*(-?\d+)")


def parse_hist(text: str) -> tuple[list[dict[str, int]], dict[str, int]]:
    """Entries of a `hist` file as dicts of its integer keys and values, and the Totals (Hits, Entries,
    Dropped). Keys printed with modifiers that are not plain integers (.execname, .sym) are skipped."""
    entries, totals = [], {}
    for line in text.splitlines():
        line = line.strip()
        match = _ENTRY_RE.match(line)
        if match:
            entry = {k: int(v) for k, v in _PAIR_RE.findall(match.group("keys"))}
            entry.update({k: int(v) for k, v in _PAIR_RE.findall(match.group("vals"))})
            entries.append(entry)
            continue
        for key in ("Hits", "Entries", "Dropped"):
            if line.startswith(key + ":"):
                totals[key] = int(line.split(":", 1)[1])
    return entries, totals


class InKernelLatency:
    """Creates the recipe in `instance` (a path under tracefs/instances), reads it, removes it again."""

    def __init__(self, tracefs: Path, instance: Path, name: str | None = None,
                 files: KernelFiles | None = None) -> None:
        self.tracefs = Path(tracefs)
        self.instance = Path(instance)
        self.name = name or synthetic_name()
        self.files = files or KernelFiles()
        self.definition, self.triggers = plan(self.name)
        self._defined = False
        self._written: list[tuple[Path, str]] = []

    def create(self) -> None:
        """Write the recipe; NotSupported on a kernel without hist triggers, KernelRefused (with the kernel's
        error_log) if a line is rejected, and then everything written so far is removed again."""
        reason = support(self.tracefs, self.instance)
        if reason:
            raise NotSupported(f"in-kernel histograms (--in-kernel): not supported by this kernel: {reason}",
                               hint="leave out --in-kernel: rawtrace sched measures the same waits from the "
                                    "ring buffer")
        try:
            self._append(self.tracefs / "synthetic_events", self.definition)
            self._defined = True
            for rel, line in self.triggers:
                path = self.instance / rel
                self._append(path, line)
                self._written.append((path, line))
        except KernelRefused:
            self.remove()
            raise

    def _append(self, path: Path, line: str) -> None:
        try:
            self.files.append(path, line)
        except OSError as exc:
            reason = _last_error(self.instance) or _last_error(self.tracefs) or exc.strerror or str(exc)
            raise KernelRefused(f"the kernel refused {line!r} for {path.name}: {reason}") from None

    def read(self) -> tuple[list[tuple[int, int, int]], int]:
        """([(tid, latency µs, count)], entries dropped because the map was full)."""
        path = self.instance / f"events/synthetic/{self.name}/hist"
        entries, totals = parse_hist(path.read_text())
        rows = [(e["pid"], e["lat"], e.get("hitcount", 0)) for e in entries if "pid" in e and "lat" in e]
        return rows, totals.get("Dropped", 0)

    def remove(self) -> list[str]:
        """Undo every write, newest first; returns the removal failures (empty when all went)."""
        failures = []
        while self._written:
            path, line = self._written.pop()
            try:
                self.files.append(path, "!" + line)
            except OSError as exc:
                failures.append(f"{path}: !{line}: {exc.strerror or exc}")
        if self._defined:
            try:
                # The documented removal: the defining command with '!' in front.
                self.files.append(self.tracefs / "synthetic_events", "!" + self.definition)
                self._defined = False
            except OSError as exc:
                failures.append(f"synthetic_events: !{self.definition}: {exc.strerror or exc}")
        return failures

    def __enter__(self) -> InKernelLatency:  # noqa: PYI034
        self.create()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _last_error(directory: Path) -> str | None:
    try:
        text = (directory / "error_log").read_text().strip()
    except OSError:
        return None
    return " ".join(line.strip() for line in text.splitlines()[-3:]) if text else None
