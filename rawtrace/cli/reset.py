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

Only rawtrace's own leftovers are touched: tracefs instances named rawtrace-<owner>, probe groups
named rawtrace_<owner> and spool directories named rawtrace-spool-<owner>-* in $TMPDIR (or /tmp), where
<owner> is the creating process's pid, start time and pid namespace (<pid>-<starttime>-ns<N>, with _
for - in group names; names of older versions lack the namespace, probe groups also the start time). They are removed only when that process
is gone (a reused pid is told apart by its start time). Leftovers of a run that is still going are kept
and listed, and so are those of another pid namespace (a container sharing this tracefs), whose pids
mean nothing here, unless this process sees the whole machine and that namespace has no process left.
Nothing else in tracefs, and nothing of trace-cmd, perf or other tools, is changed. Without a visible
tracefs only spool directories are looked at, and reset says so."""


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
    from rawtrace.tracefs.instance import PREFIX, list_instances, owner_status, parse_group_owner, parse_owner
    out = []
    for name in list_instances(tracefs):
        if not name.startswith(PREFIX):
            continue
        owner = parse_owner(name)
        if owner is None:
            out.append(Leftover("instance", name, None, True, "not named rawtrace-<pid>-<starttime>; left alone"))
            continue
        keep, reason = owner_status(owner, proc)
        out.append(Leftover("instance", name, owner.pid, keep, reason))
    for group, event in probe_events(tracefs):
        owner = parse_group_owner(group)
        if owner is None:
            out.append(Leftover("probe", f"{group}/{event}", None, True, "unrecognised group name; left alone"))
            continue
        keep, reason = owner_status(owner, proc)
        out.append(Leftover("probe", f"{group}/{event}", owner.pid, keep, reason))
    return out


def spool_leftovers(proc: Path, directory: str | None = None) -> list[Leftover]:
    """Spool directories of rawtrace runs (normally unlinked at once; one can stay if a run was killed
    between creating and unlinking it)."""
    from rawtrace.tracefs.instance import owner_status, parse_spool_owner
    from rawtrace.tracefs.spool import SPOOL_PREFIX, find_stale_spools
    out = []
    for path, pid, _keep in find_stale_spools(directory, proc):
        owner = parse_spool_owner(path.name[len(SPOOL_PREFIX):])
        if owner is None:
            continue
        keep, reason = owner_status(owner, proc)
        out.append(Leftover("spool", str(path), pid, keep, reason))
    return out


def probe_events(tracefs: Path) -> list[tuple[str, str]]:
    """(group, event) of the dynamic events in rawtrace_* groups."""
    from rawtrace.tracefs.instance import GROUP_PREFIX
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
    unlooked = None          # why tracefs was not searched
    items: list[Leftover] = []
    tracefs = None
    if location is None:
        unlooked = _why_no_tracefs(host)
    else:
        tracefs = location.path
        try:
            os.listdir(tracefs)
        except (FileNotFoundError, NotADirectoryError):
            unlooked = f"{tracefs} does not exist or is not a directory"
        except PermissionError:
            unlooked = f"{tracefs} is not readable by this user (run as root)"
        else:
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
                   "failed": [dict(i.to_json(), error=e) for i, e in failed],
                   "tracefs_searched": unlooked is None, "not_searched_because": unlooked})
    else:
        out = sys.stdout
        verb = "would remove" if args.dry_run else "removed"
        for item in removed:
            out.write(f"{verb} {item.kind} {escape(item.name)} ({item.reason})\n")
        for item in kept:
            out.write(f"kept {item.kind} {escape(item.name)} ({item.reason})\n")
        for item, error in failed:
            out.write(f"could not remove {item.kind} {escape(item.name)}: {error}\n")
        if unlooked is not None:
            sys.stderr.write(f"rawtrace: tracefs not searched for instances and probes: {unlooked}\n")
            if not items:
                out.write("no rawtrace spool directories found; instances and probes could not be looked for\n")
        elif not items:
            out.write("nothing to reset: no rawtrace instances, probes or spool directories found\n")
    if unlooked is not None and args.json:
        sys.stderr.write(f"rawtrace: tracefs not searched for instances and probes: {unlooked}\n")
    return 1 if failed else 0


def _why_no_tracefs(host) -> str:
    if host.tracefs_override is not None:
        return f"{host.tracefs_override} does not exist or is not a tracefs tree"
    return "tracefs is not mounted (reset never mounts it)"
