"""A private tracefs instance: create/destroy, events, filters, pid lists, options, buffer and clock."""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from rawtrace.errors import KernelRefused, NotSupported, UsageError

PREFIX = "rawtrace-"
# Probe groups allow only [A-Za-z0-9_], so their owner tag uses `_` where the others use `-`.
GROUP_PREFIX = "rawtrace_"
# The owner tag is `<pid>-<starttime>-ns<pid namespace inode>`; tags written before the namespace was
# recorded are `<pid>-<starttime>` (instances, spools) or just `<pid>` (probe groups).
_TAG = r"([0-9]+)-([0-9]+)(?:-ns([0-9]+))?"       # ASCII digits only (\d takes other scripts)
# rawtrace-<tag>, plus -<n> for a second session in the same process.
_NAME_RE = re.compile(rf"^rawtrace-{_TAG}(?:-[0-9]+)?$")
_SPOOL_TAG_RE = re.compile(rf"^{_TAG}-")
_GROUP_RE = re.compile(r"^rawtrace_([0-9]+)(?:_([0-9]+)(?:_ns([0-9]+))?)?$")
# The initial pid namespace's inode number (PROC_PID_INIT_INO in include/linux/proc_ns.h): a process in
# it sees every process of the machine.
INIT_PID_NAMESPACE = 0xEFFFFFFC


@dataclass(frozen=True, slots=True)
class Owner:
    """Who created a leftover: a pid, its start time (so a reused pid is not mistaken for the owner) and the
    pid namespace the pid is counted in. `starttime` and `pidns` are None in tags of older rawtrace
    versions (probe groups recorded only the pid); such owners are judged in the reader's namespace."""

    pid: int
    starttime: int | None
    pidns: int | None = None


def process_starttime(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None if the process is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = text[text.rfind(")") + 2:].split()
    try:
        return int(rest[19])      # fields 3.. start at index 0, so field 22 is index 19
    except (IndexError, ValueError):
        return None


def pid_namespace(pid: int | str = "self", proc: Path = Path("/proc")) -> int | None:
    """The inode number of a process's pid namespace (`/proc/PID/ns/pid` -> `pid:[N]`), None if unreadable."""
    try:
        link = os.readlink(proc / str(pid) / "ns" / "pid")
    except OSError:
        return None
    if link.startswith("pid:[") and link.endswith("]") and link[5:-1].isdigit():
        return int(link[5:-1])
    return None


def owner_status(owner: Owner, proc: Path = Path("/proc")) -> tuple[bool, str]:
    """(keep, why): whether a leftover of `owner` must be kept, judged from the processes in `proc`.

    A pid means something only in its own pid namespace: the owner of another namespace (a container
    sharing this tracefs) is kept, unless this process sees the whole machine (the initial namespace, with
    every process's namespace readable) and no process is left in that namespace."""
    ours = pid_namespace("self", proc)
    if owner.pidns is not None and ours is not None and owner.pidns != ours:
        if _namespace_gone(owner.pidns, ours, proc):
            return False, f"its pid namespace pid:[{owner.pidns}] has no process left"
        return True, (f"owner pid {owner.pid} is in another pid namespace (pid:[{owner.pidns}], ours "
                      f"pid:[{ours}]), where this process cannot check it")
    if owner.starttime is None:
        # Only a pid recorded: a reused pid keeps the leftover (the safe side).
        alive = pid_alive(owner.pid, proc)
        return alive, f"owner pid {owner.pid} is {'running' if alive else 'gone'}"
    start = process_starttime(owner.pid, proc)
    if start == owner.starttime:
        return True, f"owner pid {owner.pid} is running"
    if start is not None or pid_alive(owner.pid, proc):
        return False, f"pid {owner.pid} now belongs to another process (start time differs)"
    return False, f"owner pid {owner.pid} is gone"


def _namespace_gone(pidns: int, ours: int, proc: Path) -> bool:
    """True only when this process sees every process (initial pid namespace) and none is in `pidns`."""
    if ours != INIT_PID_NAMESPACE:
        return False
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return False
    for pid in pids:
        found = pid_namespace(pid, proc)
        if found is None:
            if (proc / pid).exists():
                return False          # unreadable (another user's process, without root): cannot tell
            continue                  # exited meanwhile
        if found == pidns:
            return False
    return True


def owner_alive(owner: Owner, proc: Path = Path("/proc")) -> bool:
    """Whether the owner's leftovers must be kept: it runs, or it is in a pid namespace this process
    cannot look into."""
    return owner_status(owner, proc)[0]


def pid_alive(pid: int, proc: Path = Path("/proc")) -> bool:
    """Whether some process has `pid` (in the namespace of `proc`)."""
    return (proc / str(pid)).exists()


def owner_tag(pid: int | None = None, proc: Path = Path("/proc")) -> str:
    """`<pid>-<starttime>-ns<pidns>` for this process (or `pid`): the owner part of rawtrace's instance,
    spool and (with `_` for `-`) probe group names."""
    pid = os.getpid() if pid is None else pid
    start = process_starttime(pid, proc)
    tag = f"{pid}-{start if start is not None else 0}"
    namespace = pid_namespace(pid, proc)
    return tag if namespace is None else f"{tag}-ns{namespace}"


def instance_name(pid: int | None = None, proc: Path = Path("/proc")) -> str:
    """`rawtrace-<owner tag>` for this process (or `pid`)."""
    return PREFIX + owner_tag(pid, proc)


def run_group(pid: int | None = None, proc: Path = Path("/proc")) -> str:
    """rawtrace's probe group for one run, `rawtrace_<pid>_<starttime>_ns<pidns>`, so a later reset can
    tell whether its owner is alive."""
    return GROUP_PREFIX + owner_tag(pid, proc).replace("-", "_")


def _owner(match: re.Match | None) -> Owner | None:
    if match is None:
        return None
    pid, start, namespace = match.groups()
    return Owner(int(pid), int(start) if start is not None else None,
                 int(namespace) if namespace is not None else None)


def parse_owner(name: str) -> Owner | None:
    """The owner encoded in an instance name, or None if it is not one of rawtrace's."""
    return _owner(_NAME_RE.match(name))


def parse_spool_owner(tail: str) -> Owner | None:
    """The owner of a spool directory from its name after `rawtrace-spool-` (`<tag>-<random>`)."""
    return _owner(_SPOOL_TAG_RE.match(tail))


def parse_group_owner(group: str) -> Owner | None:
    """The owner encoded in a probe group name (`rawtrace_<pid>` of older versions too), or None."""
    return _owner(_GROUP_RE.match(group))


def group_owner(group: str) -> int | None:
    """The owner pid in a rawtrace probe group name, or None for any other group."""
    owner = parse_group_owner(group)
    return owner.pid if owner is not None else None


def read_stats(text: str) -> dict[str, float | int]:
    """Parse a per_cpu/cpuN/stats file (`key: value` lines) into numbers."""
    out: dict[str, float | int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        try:
            out[key.strip()] = int(value)
        except ValueError:
            try:
                out[key.strip()] = float(value)
            except ValueError:
                pass
    return out


class Instance:
    """One tracefs instance directory (never the top level). Use `Instance.create()` or as a context manager.

    Everything changed is remembered so `destroy()` can undo it in the safe order: tracing off, events
    disabled, filters cleared, directory removed."""

    def __init__(self, tracefs: Path, name: str) -> None:
        if not name or "/" in name:
            raise UsageError(f"bad instance name {name!r}")
        self.tracefs = Path(tracefs)
        self.name = name
        self.path = self.tracefs / "instances" / name
        self._enabled: list[tuple[str, str]] = []
        self._filtered: list[tuple[str, str]] = []
        self._created = False

    # -- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, tracefs: Path, name: str | None = None) -> Instance:
        """mkdir instances/<name> (default: this process's owner-tagged name), with tracing off."""
        names = [name] if name else [instance_name()] + [f"{instance_name()}-{n}" for n in range(1, 100)]
        for candidate in names:
            inst = cls(tracefs, candidate)
            try:
                os.mkdir(inst.path)
                break
            except FileExistsError:
                if candidate == names[-1]:
                    raise KernelRefused(f"tracefs instance {inst.name} already exists",
                                        hint="`rawtrace reset` removes leftovers of dead runs") from None
            except FileNotFoundError:
                raise NotSupported(f"{tracefs}/instances does not exist (kernel without tracefs instances)") \
                    from None
        inst._created = True
        inst.write("tracing_on", "0")
        return inst

    def __enter__(self) -> Instance:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    @property
    def exists(self) -> bool:
        return self.path.is_dir()

    def destroy(self) -> None:
        """Undo everything; idempotent and tolerant of a half-created instance. Readers must be closed first."""
        if not self._created or not self.exists:
            self._created = False
            return
        self._quiet_write("tracing_on", "0")
        for system, event in reversed(self._enabled):
            self._quiet_write(f"events/{system}/{event}/enable", "0")
        for system, event in self._filtered:
            self._quiet_write(f"events/{system}/{event}/filter", "0")
        self._quiet_write("set_event_pid", "")
        self._enabled.clear()
        self._filtered.clear()
        remove_instance_dir(self.path)
        self._created = False

    # -- plain file access ---------------------------------------------------------------------
    def file(self, rel: str) -> Path:
        return self.path / rel

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text()

    def write(self, rel: str, text: str, *, append: bool = False) -> None:
        """Write one value; a refusal becomes KernelRefused carrying the kernel's error_log text."""
        try:
            fd = os.open(self.path / rel, os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC))
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            reason = self.last_error() or exc.strerror
            raise KernelRefused(f"the kernel refused {text!r} for {self.name}/{rel}: {reason}") from None

    def _quiet_write(self, rel: str, text: str) -> None:
        try:
            fd = os.open(self.path / rel, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def last_error(self) -> str | None:
        """The newest entry of the instance's error_log (the kernel's reason for a refused write)."""
        try:
            text = (self.path / "error_log").read_text().strip()
        except OSError:
            return None
        if not text:
            return None
        lines = text.splitlines()
        # An entry is a "[ts] subsystem: message" line plus the command and a caret line.
        for i in range(len(lines) - 1, -1, -1):
            if lines[i].startswith("["):
                entry = " ".join(line.strip() for line in lines[i:])
                return re.sub(r"^\[[ 0-9.]*\]\s*", "", entry)
        return lines[-1]

    # -- settings ------------------------------------------------------------------------------
    def set_tracing_on(self, on: bool) -> None:
        self.write("tracing_on", "1" if on else "0")

    def set_buffer_kb(self, kb: int) -> None:
        if kb <= 0:
            raise UsageError(f"buffer size must be positive, not {kb} KiB")
        self.write("buffer_size_kb", str(kb))

    def buffer_kb(self) -> int:
        return int(self.read("buffer_size_kb").split()[0])

    def clocks(self) -> tuple[list[str], str | None]:
        """(available clocks, current clock) from trace_clock."""
        names, current = [], None
        for word in self.read("trace_clock").split():
            if word.startswith("["):
                word = word.strip("[]")
                current = word
            names.append(word)
        return names, current

    def set_clock(self, clock: str) -> None:
        names, _ = self.clocks()
        if clock not in names:
            raise UsageError(f"unknown trace clock {clock!r} (this kernel has: {', '.join(names)})")
        self.write("trace_clock", clock)

    def set_option(self, option: str, on: bool) -> None:
        if not (self.path / "options" / option).exists():
            raise NotSupported(f"this kernel has no tracefs option {option!r}")
        self.write(f"options/{option}", "1" if on else "0")

    def set_event_pids(self, pids: list[int] | set[int]) -> None:
        """Trace only these pids (set_event_pid); with event-fork their future children join the list."""
        text = " ".join(str(p) for p in sorted(pids))
        self.write("set_event_pid", text)

    def event_pids(self) -> set[int]:
        return {int(p) for p in self.read("set_event_pid").split()}

    def subbuf_size(self) -> int:
        """Bytes per sub-buffer: buffer_subbuf_size_kb (6.8+), else the page size."""
        try:
            return int(self.read("buffer_subbuf_size_kb").split()[0]) * 1024
        except (OSError, ValueError, IndexError):
            return os.sysconf("SC_PAGE_SIZE")

    def cpus(self) -> list[int]:
        """The CPUs that have a per_cpu directory in this instance."""
        out = []
        for entry in os.listdir(self.path / "per_cpu"):
            if entry.startswith("cpu") and entry[3:].isdigit():
                out.append(int(entry[3:]))
        return sorted(out)

    def stats(self, cpu: int) -> dict[str, float | int]:
        return read_stats(self.read(f"per_cpu/cpu{cpu}/stats"))

    # -- events --------------------------------------------------------------------------------
    def event_dir(self, system: str, event: str) -> Path:
        return self.path / "events" / system / event

    def enable_event(self, system: str, event: str) -> None:
        if not self.event_dir(system, event).is_dir():
            raise UsageError(f"no event {system}:{event} in this kernel")
        self.write(f"events/{system}/{event}/enable", "1")
        if (system, event) not in self._enabled:
            self._enabled.append((system, event))

    def disable_event(self, system: str, event: str) -> None:
        self.write(f"events/{system}/{event}/enable", "0")
        if (system, event) in self._enabled:
            self._enabled.remove((system, event))

    def set_filter(self, system: str, event: str, expr: str) -> None:
        """Set an event filter; the kernel's parse error (read back from the filter file) is raised."""
        rel = f"events/{system}/{event}/filter"
        if (system, event) not in self._filtered:
            self._filtered.append((system, event))
        self._quiet_write("error_log", "")          # so the newest entry is about this write
        try:
            self.write(rel, expr)
        except KernelRefused:
            reason = self.last_error() or "invalid filter"
            raise KernelRefused(f"the kernel rejected filter {expr!r} for {system}:{event}: {reason}",
                                hint="see `rawtrace format EVENT` for the fields an event has") from None
        readback = self.read(rel)
        # A rejected filter may still be accepted by write(); the readback then carries a caret line
        # and "parse_error: <reason>".
        if "parse_error" in readback or readback.strip() == "none":
            reason = readback.strip().splitlines()[-1]
            self._quiet_write(rel, "0")
            raise KernelRefused(f"the kernel rejected filter {expr!r} for {system}:{event}: {reason}",
                                hint="see `rawtrace format EVENT` for the fields an event has")

    def clear_filter(self, system: str, event: str) -> None:
        self.write(f"events/{system}/{event}/filter", "0")


def remove_instance_dir(path: Path) -> None:
    """rmdir an instance, retrying briefly while the kernel still holds it (EBUSY right after readers close)."""
    import time
    for attempt in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == 49:
                raise KernelRefused(f"cannot remove tracefs instance {path.name}: {exc.strerror}") from None
            time.sleep(0.02)


def list_instances(tracefs: Path) -> list[str]:
    try:
        return sorted(os.listdir(Path(tracefs) / "instances"))
    except OSError:
        return []
