"""Find the tracefs mount (mount table, then the usual paths); mount it when root and allowed."""

from __future__ import annotations

import os
from collections import namedtuple

from rawtrace.errors import TracingBlocked
from rawtrace.host import TRACEFS_DEBUGFS, TRACEFS_DEFAULT, Host, is_dir, stat_or_none


class TracefsLocation(namedtuple("TracefsLocation", "dir how mounted_now readable", defaults=(False, True))):
    """Where tracefs is (`dir`, a string; `path`, the same as a pathlib.Path) and how it was found: `how` is
    "override", "mount table (tracefs)", "mount table (debugfs)", "usual path" or "mounted now"; `readable`
    is False for a tracefs this user may not look into (root's 0700 mount). A namedtuple: no dataclasses
    or typing import at start-up (nor pathlib, until `path` is asked for)."""

    __slots__ = ()

    @property
    def path(self):
        from pathlib import Path
        return Path(self.dir)


def _looks_like_tracefs(path: str) -> bool | None:
    """True if `path` holds a tracefs tree, False if not, None if it cannot be looked into (EACCES)."""
    try:
        return (is_dir(os.path.join(path, "events")) or stat_or_none(os.path.join(path, "trace")) is not None
                or stat_or_none(os.path.join(path, "README")) is not None)
    except PermissionError:
        return None


def locate_tracefs(host: Host) -> TracefsLocation | None:
    """Where tracefs is, without changing anything; None if it is not mounted (or not visible).

    A mount this user cannot read is returned with readable=False: it is there, only not for us."""
    if host.tracefs_dir is not None:
        return TracefsLocation(host.tracefs_dir, "override")
    candidates: list[tuple[str, str]] = []
    for _src, mountpoint, fstype, _opts in host.mounts():
        if fstype == "tracefs":
            candidates.append((host.join(mountpoint), "mount table (tracefs)"))
        elif fstype == "debugfs":
            candidates.append((host.join(mountpoint.rstrip("/") + "/tracing"), "mount table (debugfs)"))
    candidates += [(host.join(TRACEFS_DEFAULT), "usual path"), (host.join(TRACEFS_DEBUGFS), "usual path")]
    unreadable = None
    for path, how in candidates:
        looks = _looks_like_tracefs(path)
        if looks:
            return TracefsLocation(path, how)
        if looks is None and unreadable is None:
            unreadable = TracefsLocation(path, how, readable=False)
    return unreadable


UNREADABLE_HINT = ("run as root, or pass --tracefs DIR naming a readable copy of a tracefs tree (to decode a "
                   "recording: the recording machine's events/ format files, header_page and header_event)")


def find_tracefs(host: Host, *, mount: bool = True) -> TracefsLocation:
    """Locate tracefs; if absent and we are root on the live host, mount it at /sys/kernel/tracing.

    Raises TracingBlocked with the reason and what to do when it cannot be had."""
    found = locate_tracefs(host)
    if found is not None:
        if not found.readable:
            raise TracingBlocked(f"tracefs at {found.dir} is not readable by this user", hint=UNREADABLE_HINT)
        return found
    if mount and host.is_live and os.geteuid() == 0:
        from rawtrace import libc
        try:
            libc.mount("nodev", TRACEFS_DEFAULT, "tracefs")
        except OSError as exc:
            raise TracingBlocked(
                f"tracefs is not mounted and mounting it at {TRACEFS_DEFAULT} failed: {exc.strerror}",
                hint="run `rawtrace doctor` to see why (kernel without CONFIG_TRACING, lockdown, container)",
            ) from None
        if _looks_like_tracefs(TRACEFS_DEFAULT):
            return TracefsLocation(TRACEFS_DEFAULT, "mounted now", mounted_now=True)
        raise TracingBlocked(
            f"tracefs mounted at {TRACEFS_DEFAULT} but it is empty",
            hint="the kernel disabled tracing at boot (confidentiality lockdown?); run `rawtrace doctor`",
        )
    if not host.is_live:
        raise TracingBlocked(f"no tracefs found under {host.root_dir}",
                             hint="pass --tracefs DIR to name a copy of a tracefs tree")
    if mount:
        # Only a root caller gets here with mount=True having failed above, so this one is not root.
        hint = (f"run as root (tracing commands then mount it themselves), or as root: "
                f"mount -t tracefs nodev {TRACEFS_DEFAULT}")
    else:
        hint = (f"this command does not mount it; as root: mount -t tracefs nodev {TRACEFS_DEFAULT}, "
                "or pass --tracefs DIR naming a copy of a tracefs tree")
    raise TracingBlocked("tracefs is not mounted", hint=hint)
