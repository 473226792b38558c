"""Find the tracefs mount (mount table, then the usual paths); mount it when root and allowed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from rawtrace.errors import TracingBlocked
from rawtrace.host import TRACEFS_DEBUGFS, TRACEFS_DEFAULT, Host


class TracefsLocation(NamedTuple):
    """Where tracefs is and how it was found (a NamedTuple: no dataclasses import at start-up)."""

    path: Path
    how: str          # "override", "mount table (tracefs)", "mount table (debugfs)", "usual path", "mounted now"
    mounted_now: bool = False


def _looks_like_tracefs(path: Path) -> bool:
    return (path / "events").is_dir() or (path / "trace").exists() or (path / "README").exists()


def locate_tracefs(host: Host) -> TracefsLocation | None:
    """Where tracefs is, without changing anything; None if it is not mounted (or not visible)."""
    if host.tracefs_override is not None:
        return TracefsLocation(host.tracefs_override, "override")
    candidates: list[tuple[Path, str]] = []
    for _src, mountpoint, fstype, _opts in host.mounts():
        if fstype == "tracefs":
            candidates.append((host.path(mountpoint), "mount table (tracefs)"))
        elif fstype == "debugfs":
            candidates.append((host.path(mountpoint) / "tracing", "mount table (debugfs)"))
    candidates += [(host.path(TRACEFS_DEFAULT), "usual path"), (host.path(TRACEFS_DEBUGFS), "usual path")]
    for path, how in candidates:
        if _looks_like_tracefs(path):
            return TracefsLocation(path, how)
    return None


def find_tracefs(host: Host, *, mount: bool = True) -> TracefsLocation:
    """Locate tracefs; if absent and we are root on the live host, mount it at /sys/kernel/tracing.

    Raises TracingBlocked with the reason and what to do when it cannot be had."""
    found = locate_tracefs(host)
    if found is not None:
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
        path = Path(TRACEFS_DEFAULT)
        if _looks_like_tracefs(path):
            return TracefsLocation(path, "mounted now", mounted_now=True)
        raise TracingBlocked(
            f"tracefs mounted at {TRACEFS_DEFAULT} but it is empty",
            hint="the kernel disabled tracing at boot (confidentiality lockdown?); run `rawtrace doctor`",
        )
    if not host.is_live:
        raise TracingBlocked(f"no tracefs found under {host.root}",
                             hint="pass --tracefs DIR to name a copy of a tracefs tree")
    raise TracingBlocked(
        "tracefs is not mounted",
        hint=f"as root: mount -t tracefs nodev {TRACEFS_DEFAULT} (rawtrace does this itself when run as root)",
    )
