"""`rawtrace reset`: remove the instances and probes that killed rawtrace runs left behind (only those)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

HELP = "remove instances, probes and spool directories left behind by killed rawtrace runs"
EPILOG = """\
examples:
  rawtrace reset --dry-run     # show what would be removed
  rawtrace reset
  rawtrace reset --json

Only rawtrace's own leftovers are touched: tracefs instances named rawtrace-<pid>-<starttime> and
probe groups named rawtrace_<pid>, spool directories named rawtrace-spool-<pid>-<starttime>-* in
$TMPDIR (or /tmp), and only when that process is gone (a reused pid is told apart by its start time). Leftovers of a run that is still going are kept and listed. Nothing else in
tracefs, and nothing of trace-cmd, perf or other tools, is changed."""


@dataclass(frozen=True, slots=True)
class Leftover:
    kind: str          # "instance", "probe" or "spool"
    name: str          # instance name, or group/event
    owner: int | None
    alive: bool
    reason: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "owner": self.owner, "reason": self.reason}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def find_leftovers(tracefs: Path, proc: Path) -> list[Leftover]:
    """Every rawtrace instance and probe under `tracefs`, with whether its owner (in `proc`) lives."""
    from rawtrace.probes import group_owner
    from rawtrace.tracefs.instance import PREFIX, list_instances, owner_alive, parse_owner, pid_alive
    out = []
    for name in list_instances(tracefs):
        if not name.startswith(PREFIX):
            continue
        owner = parse_owner(name)
        if owner is None:
            out.append(Leftover("instance", name, None, True, "not named rawtrace-<pid>-<starttime>; left alone"))
            continue
        alive = owner_alive(owner, proc)
        if alive:
            reason = f"owner pid {owner.pid} is running"
        elif (proc / str(owner.pid)).exists():
            reason = f"pid {owner.pid} now belongs to another process (start time differs)"
        else:
            reason = f"owner pid {owner.pid} is gone"
        out.append(Leftover("instance", name, owner.pid, alive, reason))
    for group, event in probe_events(tracefs):
        owner_pid = group_owner(group)
        if owner_pid is None:
            out.append(Leftover("probe", f"{group}/{event}", None, True, "unrecognised group name; left alone"))
            continue
        alive = pid_alive(owner_pid, proc)
        reason = f"owner pid {owner_pid} is running" if alive else f"owner pid {owner_pid} is gone"
        out.append(Leftover("probe", f"{group}/{event}", owner_pid, alive, reason))
    return out


def spool_leftovers(proc: Path, directory: str | None = None) -> list[Leftover]:
    """Spool directories of rawtrace runs (normally unlinked at once; one can stay if a run was killed
    between creating and unlinking it)."""
    from rawtrace.tracefs.spool import find_stale_spools
    out = []
    for path, pid, alive in find_stale_spools(directory, proc):
        reason = f"owner pid {pid} is running" if alive else f"owner pid {pid} is gone"
        out.append(Leftover("spool", str(path), pid, alive, reason))
    return out


def probe_events(tracefs: Path) -> list[tuple[str, str]]:
    """(group, event) of the dynamic events in rawtrace_* groups."""
    from rawtrace.probes import GROUP_PREFIX
    seen: list[tuple[str, str]] = []
    for name in ("dynamic_events", "uprobe_events", "kprobe_events"):
        try:
            text = (tracefs / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            head = line.split(None, 1)[0] if line.strip() else ""
            _, _, target = head.partition(":")
            group, slash, event = target.partition("/")
            if slash and group.startswith(GROUP_PREFIX) and (group, event) not in seen:
                seen.append((group, event))
    return seen


def remove(tracefs: Path, item: Leftover) -> str | None:
    """Remove one dead leftover; returns an error text or None."""
    from rawtrace.errors import KernelRefused
    from rawtrace.tracefs.instance import remove_instance_dir
    if item.kind == "spool":
        import shutil
        try:
            shutil.rmtree(item.name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return f"{item.name}: {exc.strerror}"
        return None
    if item.kind == "instance":
        path = tracefs / "instances" / item.name
        try:
            # Stop writers first so nothing is being recorded while the kernel tears the buffer down.
            fd = os.open(path / "tracing_on", os.O_WRONLY | os.O_TRUNC)     # never create it
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError:
            pass
        try:
            remove_instance_dir(path)
        except KernelRefused as exc:
            return exc.message
        return None
    from rawtrace.errors import RawtraceError
    from rawtrace.tracefs.dynevents import DynamicEvents
    group, _, event = item.name.partition("/")
    try:
        DynamicEvents(tracefs).remove(group, event)
    except RawtraceError as exc:
        return exc.message
    except OSError as exc:
        return f"{item.name}: {exc.strerror}"
    return None


def run(args: argparse.Namespace, host) -> int:
    from rawtrace.output import escape, json_dump
    from rawtrace.tracefs.discover import locate_tracefs
    location = locate_tracefs(host)
    if location is None:
        items: list[Leftover] = []
        tracefs = None
    else:
        tracefs = location.path
        items = find_leftovers(tracefs, host.path("/proc"))
    if getattr(host, "is_live", True):
        # Spool directories live in this machine's temp dir, not under --root.
        items += spool_leftovers(host.path("/proc"))
    removed, kept, failed = [], [], []
    # Instances first: a dead run's instance may still have its probes enabled.
    for item in sorted(items, key=lambda i: i.kind != "instance"):
        if item.alive:
            kept.append(item)
            continue
        error = None if args.dry_run else remove(tracefs, item)
        if error:
            failed.append((item, error))
        else:
            removed.append(item)
    if args.json:
        json_dump({"dry_run": args.dry_run, "removed": [i.to_json() for i in removed],
                   "kept": [i.to_json() for i in kept],
                   "failed": [dict(i.to_json(), error=e) for i, e in failed]})
    else:
        out = sys.stdout
        verb = "would remove" if args.dry_run else "removed"
        for item in removed:
            out.write(f"{verb} {item.kind} {escape(item.name)} ({item.reason})\n")
        for item in kept:
            out.write(f"kept {item.kind} {escape(item.name)} ({item.reason})\n")
        for item, error in failed:
            out.write(f"could not remove {item.kind} {escape(item.name)}: {error}\n")
        if not items:
            out.write("nothing to reset: no rawtrace instances, probes or spool directories found\n")
    return 1 if failed else 0
