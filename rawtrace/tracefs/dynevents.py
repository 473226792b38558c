"""Dynamic events in tracefs: create/remove probe definitions, read error_log, list probes with hit counts."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rawtrace.errors import KernelRefused, NotSupported, UsageError
from rawtrace.host import Host, read_text_or_none
from rawtrace.tracefs.instance import GROUP_PREFIX, owner_alive, parse_group_owner, run_group

TYPE_CHECKING = False   # (typing costs ~2 ms of start-up just for this flag)
if TYPE_CHECKING:   # probes builds on this module, not the other way round
    from rawtrace.probes import ResolvedProbe

MAX_NAME = 64           # MAX_EVENT_NAME_LEN
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def validate_name(name: str, what: str = "event name") -> str:
    """Return `name` if it is a valid group/event name, else raise UsageError saying why."""
    if not name or len(name) > MAX_NAME or not _NAME.match(name):
        raise UsageError(f"invalid {what} {name!r}: use letters, digits and _, not starting with a digit, "
                         f"at most {MAX_NAME} characters")
    return name

# README lines that exist only when the feature is compiled in (kernel/trace/trace.c readme_msg).
README_KPROBE_PLACE = "place: [<module>:]<symbol>"
README_UPROBE_PLACE = "place (uprobe):"
README_FPROBE = "f[:[<group>/][<event>]]"
README_EPROBE = "e[:[<group>/][<event>]]"

_KIND_FEATURE = {"uprobe": "uprobes", "uretprobe": "uprobes", "usdt": "uprobes", "kprobe": "kprobes", "kretprobe": "kprobes",
                 "eprobe": "eprobes", "fprobe": "fprobes", "fretprobe": "fprobes"}

_NOT_SUPPORTED = {
    "kprobes": ("kprobes are not supported by this kernel (built without CONFIG_KPROBE_EVENTS)",
                ("use a tracepoint (`rawtrace events`) or a uprobe on the user-space caller instead, or run "
                "a kernel built with CONFIG_KPROBE_EVENTS=y")),
    "uprobes": ("uprobes are not supported by this kernel (built without CONFIG_UPROBE_EVENTS)",
                "use a tracepoint (`rawtrace events`), or run a kernel built with CONFIG_UPROBE_EVENTS=y"),
    "eprobes": ("event probes are not supported by this kernel (built without CONFIG_EPROBE_EVENTS)",
                ("trace the event itself and dereference in user space, or use a uprobe on the caller "
                "(e.g. uprobe:libc:openat path=arg2:ustring)")),
    "fprobes": ("fprobes are not supported by this kernel (built without CONFIG_FPROBE_EVENTS)",
                "use kprobe:/kretprobe: where the kernel has kprobes, or a tracepoint"),
}

# Features whose README line or command file exists whatever the kernel config says.
_CONFIG_OPTION = {"eprobes": "CONFIG_EPROBE_EVENTS"}

_LISTING = re.compile(r"(?P<type>[a-z])(?P<maxactive>\d*):(?P<group>[^/\s]+)/(?P<event>\S+)(?:\s+(?P<rest>.*))?\Z")
_ERROR_HEAD = re.compile(r"\[\s*(?P<ts>[0-9.]+)\]\s+(?P<location>[^:]+):\s+error:\s+(?P<message>.*)\Z")
_COMMAND_PREFIX = "  Command: "


@dataclass(frozen=True, slots=True)
class ProbeSupport:
    """Which probe kinds this tracefs offers, from its files and README. `eprobes` is only a
    maybe: the README shows the `e` syntax even without CONFIG_EPROBE_EVENTS, so a write decides."""

    dynamic_events: bool
    uprobes: bool
    kprobes: bool
    fprobes: bool
    eprobes: bool
    error_log: bool
    # Several probe points per event (Linux 5.4+; its README says "Create/append/remove/show"; older
    # kernels replace an event defined again under the same name).
    multi_probe: bool = False

    def supports(self, kind: str) -> bool:
        return bool(getattr(self, _KIND_FEATURE[kind]))


def probe_support(tracefs: Path) -> ProbeSupport:
    """Decide probe support from tracefs evidence: the command files and the README's syntax lines."""
    readme = read_text_or_none(tracefs / "README") or ""
    dynamic = (tracefs / "dynamic_events").exists()
    return ProbeSupport(
        dynamic_events=dynamic,
        uprobes=(tracefs / "uprobe_events").exists() or README_UPROBE_PLACE in readme,
        kprobes=(tracefs / "kprobe_events").exists() or README_KPROBE_PLACE in readme,
        fprobes=dynamic and README_FPROBE in readme,
        eprobes=dynamic and README_EPROBE in readme,
        error_log=(tracefs / "error_log").exists(),
        multi_probe="Create/append/remove/show" in readme,
    )


def not_supported_message(kind: str) -> str:
    """The one-line reason a probe kind cannot be used on a kernel that lacks it."""
    return _NOT_SUPPORTED[_KIND_FEATURE[kind]][0]


@dataclass(frozen=True, slots=True)
class ErrorLogEntry:
    """One error_log entry: `[ts] location: error: message`, the command, and the caret's column in it."""

    timestamp: str
    location: str
    message: str
    command: str | None
    position: int | None           # index into `command` the caret points at

    def render(self) -> str:
        """The kernel's message with the command and a caret under the offending part."""
        lines = [self.message]
        if self.command is not None:
            lines.append(f"{_COMMAND_PREFIX}{self.command}")
            if self.position is not None:
                lines.append(" " * (len(_COMMAND_PREFIX) + self.position) + "^")
        return "\n".join(lines)


def parse_error_log(text: str) -> list[ErrorLogEntry]:
    """Parse tracefs error_log text (oldest first)."""
    entries: list[ErrorLogEntry] = []
    current: dict | None = None

    def flush() -> None:
        if current is not None:
            entries.append(ErrorLogEntry(current["ts"], current["location"], current["message"],
                                         current.get("command"), current.get("position")))

    for line in text.splitlines():
        head = _ERROR_HEAD.match(line)
        if head:
            flush()
            current = {"ts": head.group("ts"), "location": head.group("location").strip(),
                       "message": head.group("message").strip()}
        elif current is not None and line.startswith(_COMMAND_PREFIX) and "command" not in current:
            current["command"] = line[len(_COMMAND_PREFIX):]
        elif current is not None and line.strip() == "^" and "command" in current:
            current["position"] = max(0, line.index("^") - len(_COMMAND_PREFIX))
    flush()
    return entries


@dataclass(frozen=True, slots=True)
class ProbeInfo:
    """A probe listed by the kernel, with its owner (for rawtrace_<pid> groups) and hit counts."""

    group: str
    event: str
    kind: str                   # uprobe, uretprobe, kprobe, kretprobe, eprobe, fprobe, fretprobe, tprobe, synthetic
    definition: str             # the line as the kernel lists it
    owner_pid: int | None
    owner_alive: bool | None
    hits: int | None
    misses: int | None          # kprobes only; uprobe_profile has no miss count
    enabled_in: tuple[str, ...]  # "top" and/or instance names where its enable file is set

    def to_json(self) -> dict:
        return {"group": self.group, "event": self.event, "type": self.kind, "definition": self.definition,
                "owner_pid": self.owner_pid, "owner_alive": self.owner_alive, "hits": self.hits,
                "misses": self.misses, "enabled_in": list(self.enabled_in)}


class KernelFiles:
    """The two kinds of tracefs writes probes need. Tests substitute a fake that also plays the kernel."""

    def append(self, path: Path, line: str) -> None:
        # O_APPEND and one write(): Python's "a" mode seeks, which these files refuse (EINVAL), and
        # O_TRUNC ("w") would delete every other probe of that file type.
        data = (line + "\n").encode("utf-8", "surrogateescape")   # paths may hold any bytes
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            # The kernel parses what one write() hands it; a cut line must not pass for success.
            raise OSError(errno.EIO, f"short write to {path.name} ({written} of {len(data)} bytes)")

    def write(self, path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def _listing_kind(letter: str, rest: str) -> str:
    place = rest.split(" ", 1)[0] if rest else ""
    if letter in ("p", "r"):
        is_uprobe = place.startswith("/") and ":" in place
        if is_uprobe:
            return "uretprobe" if letter == "r" or place.endswith("%return") else "uprobe"
        return "kretprobe" if letter == "r" or "%return" in place else "kprobe"
    if letter == "f":
        return "fretprobe" if place.endswith("%return") else "fprobe"
    return {"e": "eprobe", "t": "tprobe", "s": "synthetic"}.get(letter, letter)


class DynamicEvents:
    """Probe definitions in one tracefs mount. Remembers what it created so `remove()` can undo it."""

    def __init__(self, tracefs: Path | str, *, proc: Path | str | None = None, files: KernelFiles | None = None,
                 host: Host | None = None) -> None:
        self.tracefs = Path(tracefs)
        # With a host, the kernel config (where readable) backs the tracefs evidence.
        self.host = host
        self.proc = Path(proc) if proc is not None else (host.path("/proc") if host else Path("/proc"))
        self.files = files or KernelFiles()
        self.created: list[tuple[str, str]] = []
        self._support: ProbeSupport | None = None

    # -- support -----------------------------------------------------------------------------------

    @property
    def support(self) -> ProbeSupport:
        if self._support is None:
            self._support = probe_support(self.tracefs)
        return self._support

    def check_supported(self, kind: str) -> None:
        """Raise NotSupported (one line + hint) when this kernel lacks the probe kind."""
        feature = _KIND_FEATURE[kind]
        if not self.support.supports(kind):
            message, hint = _NOT_SUPPORTED[feature]
            if feature in ("eprobes", "fprobes") and not self.support.dynamic_events:
                message = f"{feature[:-1]}s need tracefs dynamic_events, which this kernel lacks (Linux < 5.0)"
            raise NotSupported(message, hint=hint)
        verdict = self._doctor_verdict(feature)
        if verdict is not None:
            message, hint = _NOT_SUPPORTED[feature]
            raise NotSupported(message, hint=f"{verdict}; {hint}")

    def _doctor_verdict(self, feature: str) -> str | None:
        """Why the kernel config says the feature is missing (the README lists `e` probes even without
        CONFIG_EPROBE_EVENTS), or None when the config is unknown or allows it."""
        option = _CONFIG_OPTION.get(feature)
        if self.host is None or option is None:
            return None
        from rawtrace.kconfig import enabled, kernel_config
        found = kernel_config(self.host)
        if found is None or enabled(found[0], option):
            return None
        return f"not built into this kernel ({option} is not set)"

    def _has_ref_ctr(self) -> bool:
        return "(ref_ctr_offset)" in (read_text_or_none(self.tracefs / "README") or "")

    def _command_file(self, kind: str) -> Path:
        if self.support.dynamic_events:
            return self.tracefs / "dynamic_events"
        feature = _KIND_FEATURE[kind]
        return self.tracefs / ("uprobe_events" if feature == "uprobes" else "kprobe_events")

    # -- create ------------------------------------------------------------------------------------

    def create(self, resolved: ResolvedProbe | Sequence[ResolvedProbe], group: str | None = None,
               event: str | None = None):
        """Define one probe as `group/event` and return (group, event).

        Given a list, define them all in `group` (default `rawtrace_<pid>`) under their spec's event
        names (made unique) and return the list of (group, event); if one fails, the ones already
        defined are removed again before the error is raised."""
        if isinstance(resolved, (list, tuple)):
            return self._create_many(list(resolved), group or run_group())
        group = group or run_group()
        event = event or resolved.spec.event_name
        return self._create_one(resolved, group, event)

    def _create_many(self, probes: list[ResolvedProbe], group: str) -> list[tuple[str, str]]:
        """(See create.) Probes given one name with the same kind and the same argument names and types
        become one event with several probe points (the kernel's multi-probe events of kprobes and
        uprobes): enabled and disabled as one, so the kernel waits for one grace period per
        event instead of one per probe (about 50 ms each for uprobes here). A kernel without them
        (before 5.4) gets one event each, numbered after the first (NAME_2, NAME_3, ...)."""
        out: list[tuple[str, str]] = []
        taken: set[str] = set()
        shared: dict[str, ResolvedProbe] = {}     # name given to several probes -> its first probe
        try:
            for probe in probes:
                name = probe.spec.name
                first = shared.get(name) if name else None
                if first is not None:
                    if not _same_layout(first, probe):
                        raise UsageError(f"event name {name!r} is given to two probes with different kinds or "
                                         "arguments (one event's probes must record the same fields)")
                    if self.support.multi_probe:
                        self._append_one(probe, group, name)
                    else:
                        event = self._free_name(group, name, taken)
                        taken.add(event)
                        out.append(self._create_one(probe, group, event))
                    continue
                if name and (name in taken or (self.tracefs / "events" / group / name).exists()):
                    raise UsageError(f"event name {name!r} is given to two probes")
                event = self._free_name(group, probe.spec.event_name, taken)
                taken.add(event)
                out.append(self._create_one(probe, group, event))
                if name and probe.kind in _MULTI_PROBE_KINDS:
                    shared[name] = probe
        except BaseException:
            for made_group, made_event in reversed(out):
                try:
                    self.remove(made_group, made_event)
                except Exception:  # noqa: BLE001, S110 - the original error matters more
                    pass
            raise
        return out

    def _free_name(self, group: str, base: str, taken: set[str]) -> str:
        name, n = base, 1
        while name in taken or (self.tracefs / "events" / group / name).exists():
            n += 1
            suffix = f"_{n}"
            name = base[:64 - len(suffix)] + suffix
        return name

    def _create_one(self, resolved: ResolvedProbe, group: str, event: str) -> tuple[str, str]:
        validate_name(group, "group name")
        validate_name(event)
        if not group.startswith(GROUP_PREFIX):
            raise UsageError(f"group {group!r} is not rawtrace's: rawtrace only defines probes in "
                             f"{GROUP_PREFIX}<pid> groups, so it never changes another tool's events")
        kind = resolved.spec.kind
        self.check_supported(kind)
        if kind == "eprobe":
            self._check_attached_event(resolved.spec.target or "", resolved.spec.symbol)
            self._check_event_fields(resolved)
        if resolved.semaphore_offset is not None and not self._has_ref_ctr():
            raise NotSupported("this kernel's uprobes cannot drive USDT semaphores (no ref_ctr_offset, Linux < 4.20)",
                               hint="the probe would never fire: its code runs only while the semaphore is set")
        if (self.tracefs / "events" / group / event).exists():
            raise UsageError(f"probe {group}/{event} already exists; pick another event name")
        line = resolved.definition(group, event)
        path = self._command_file(kind)
        before = self._error_log_entries()
        try:
            self.files.append(path, line)
        except OSError as exc:
            entry = self._new_error(before, line)
            if kind == "eprobe" and exc.errno == errno.EINVAL and entry is None:
                # No parser claimed the `e` line: the kernel was built without event probes.
                message, hint = _NOT_SUPPORTED["eprobes"]
                raise NotSupported(message, hint=hint) from None
            raise _refused(f"probe {group}/{event}", exc, entry, line) from None
        self.created.append((group, event))
        return group, event

    def _append_one(self, resolved: ResolvedProbe, group: str, event: str) -> None:
        """Add a probe point to the existing event `group/event` (same kind and fields)."""
        self.check_supported(resolved.spec.kind)
        line = resolved.definition(group, event)
        path = self._command_file(resolved.spec.kind)
        before = self._error_log_entries()
        try:
            self.files.append(path, line)
        except OSError as exc:
            raise _refused(f"probe {group}/{event}", exc, self._new_error(before, line), line) from None

    def _check_event_fields(self, resolved: ResolvedProbe) -> None:
        """Every `$field` an event probe fetches must be a field of the attached event."""
        fmt = read_text_or_none(self.tracefs / "events" / (resolved.spec.target or "") / resolved.spec.symbol / "format")
        if not fmt:
            return
        # `field:const char * filename;` → filename (arrays: `char comm[16]` → comm)
        fields = set(re.findall(r"field:[^;]*?\b(\w+)(?:\[[^\]]*\])?;", fmt))
        for arg in resolved.args:
            for used in re.findall(r"\$(\w+)", arg.fetch):
                if used in fields or used in ("comm", "retval") or used.startswith(("stack", "arg")):
                    continue
                import difflib
                close = difflib.get_close_matches(used, sorted(fields), n=3)
                extra = f"; did you mean {', '.join(close)}?" if close else f" (fields: {', '.join(sorted(fields))})"
                raise UsageError(f"{resolved.spec.target}:{resolved.spec.symbol} has no field {used!r}{extra}")

    def _check_attached_event(self, system: str, name: str) -> None:
        events = self.tracefs / "events"
        if (events / system / name).is_dir():
            return
        import difflib
        if (events / system).is_dir():
            choices = sorted(p.name for p in (events / system).iterdir() if p.is_dir())
            close = difflib.get_close_matches(name, choices, n=3)
            extra = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"no event {system}:{name} to attach an event probe to{extra}")
        systems = sorted(p.name for p in events.iterdir() if p.is_dir()) if events.is_dir() else []
        close = difflib.get_close_matches(system, systems, n=3)
        extra = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"no event system {system!r} to attach an event probe to{extra}")

    # -- error_log ---------------------------------------------------------------------------------

    def error_log(self) -> list[ErrorLogEntry]:
        return parse_error_log(read_text_or_none(self.tracefs / "error_log") or "")

    def _error_log_entries(self) -> set[tuple[str, str, str | None]]:
        return {(e.timestamp, e.message, e.command) for e in self.error_log()}

    def _new_error(self, before: set[tuple[str, str, str | None]], line: str) -> ErrorLogEntry | None:
        """The error_log entry our failed write produced: new since `before`, for our command if it says."""
        fresh = [e for e in self.error_log() if (e.timestamp, e.message, e.command) not in before]
        mine = [e for e in fresh if e.command is not None and e.command.strip() == line]
        if mine:
            return mine[-1]
        return fresh[-1] if fresh else None

    # -- remove ------------------------------------------------------------------------------------

    def remove(self, group: str | None = None, event: str | None = None) -> None:
        """Disable `group/event` wherever it is enabled, then delete its definition.

        With no arguments, remove every probe this object created (newest first). Only rawtrace's own
        groups are touched; a probe that is already gone is not an error."""
        if group is None:
            errors: list[Exception] = []
            for made_group, made_event in reversed(list(self.created)):
                try:
                    self.remove(made_group, made_event)
                except Exception as exc:  # noqa: BLE001 - remove the rest, report the first
                    errors.append(exc)
            if errors:
                raise errors[0]
            return
        if event is None:
            self.remove_group(group)
            return
        validate_name(group, "group name")
        validate_name(event)
        if not group.startswith(GROUP_PREFIX):
            raise UsageError(f"refusing to remove {group}/{event}: not a rawtrace group")
        self.disable(group, event)
        path = self._removal_file(group, event)
        try:
            self.files.append(path, f"-:{group}/{event}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise _refused(f"removal of probe {group}/{event}", exc,
                               self._new_error(set(), f"-:{group}/{event}"), f"-:{group}/{event}",
                               hint="it may be in use by perf, BPF or a trigger; stop that user, then run "
                                    "`rawtrace reset`") from None
        if (group, event) in self.created:
            self.created.remove((group, event))

    def _removal_file(self, group: str, event: str) -> Path:
        if self.support.dynamic_events:
            return self.tracefs / "dynamic_events"
        for name in ("uprobe_events", "kprobe_events"):
            for line in (read_text_or_none(self.tracefs / name) or "").splitlines():
                match = _LISTING.match(line.strip())
                if match and match.group("group") == group and match.group("event") == event:
                    return self.tracefs / name
        return self.tracefs / ("uprobe_events" if self.support.uprobes else "kprobe_events")

    def enable_files(self, group: str, event: str) -> list[tuple[str, Path]]:
        """(instance, enable file) for the top level ("top") and every instance that has this event."""
        out = []
        top = self.tracefs / "events" / group / event / "enable"
        if top.exists():
            out.append(("top", top))
        instances = self.tracefs / "instances"
        if instances.is_dir():
            for inst in sorted(instances.iterdir()):
                path = inst / "events" / group / event / "enable"
                if path.exists():
                    out.append((inst.name, path))
        return out

    def disable(self, group: str, event: str) -> None:
        """Write 0 to the event's enable file wherever it reads other than 0 (the kernel refuses
        to delete an enabled probe with EBUSY)."""
        for _where, path in self.enable_files(group, event):
            state = (read_text_or_none(path) or "0").strip()
            if state != "0":
                try:
                    self.files.write(path, "0")
                except FileNotFoundError:
                    pass

    def remove_group(self, group: str) -> None:
        """Remove every probe in one of rawtrace's groups."""
        validate_name(group, "group name")
        if not group.startswith(GROUP_PREFIX):
            raise UsageError(f"refusing to remove group {group!r}: not a rawtrace group")
        for info in self.list(group_prefix=group):
            if info.group == group:
                self.remove(group, info.event)

    # -- list --------------------------------------------------------------------------------------

    def listing(self) -> list[str]:
        """Definition lines as the kernel lists them (dynamic_events, else uprobe_events + kprobe_events)."""
        names = ("dynamic_events",) if self.support.dynamic_events else ("uprobe_events", "kprobe_events")
        text = ""
        for name in names:
            try:
                text += (self.tracefs / name).read_text(errors="replace")
            except FileNotFoundError:
                continue
            # Anything else (EACCES for non-root) propagates: an empty list would be a lie.
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]

    def list(self, group_prefix: str | None = GROUP_PREFIX) -> list[ProbeInfo]:
        """Probes whose group starts with `group_prefix` (None: every dynamic event), with hits/misses."""
        parsed = []
        for line in self.listing():
            match = _LISTING.match(line)
            if not match:
                continue
            kind = _listing_kind(match.group("type"), match.group("rest") or "")
            parsed.append((match.group("group"), match.group("event"), kind, line))
        counts = self._profile_counts(parsed)
        out = []
        for index, (group, event, kind, line) in enumerate(parsed):
            if group_prefix is not None and not group.startswith(group_prefix):
                continue
            owner = parse_group_owner(group)
            alive = owner_alive(owner, self.proc) if owner is not None else None
            hits, misses = counts.get(index, (None, None))
            enabled = tuple(where for where, path in self.enable_files(group, event)
                            if (read_text_or_none(path) or "0").strip() not in ("0", "0*"))
            out.append(ProbeInfo(group, event, kind, line, owner.pid if owner else None, alive, hits, misses,
                                 enabled))
        return out

    def _profile_counts(self, parsed: list[tuple[str, str, str, str]]) -> dict[int, tuple[int | None, int | None]]:
        """Hits (and misses) per listing index. The profile files name only the event, not the group, so
        the Nth profile line for a name belongs to the Nth probe of that name and type: both files walk
        the same kernel list."""
        counts: dict[int, tuple[int | None, int | None]] = {}
        for family, kinds in (("uprobe", ("uprobe", "uretprobe")), ("kprobe", ("kprobe", "kretprobe"))):
            text = read_text_or_none(self.tracefs / f"{family}_profile")
            if text is None:
                continue
            rows: dict[str, list[tuple[int | None, int | None]]] = {}
            for line in text.splitlines():
                fields = line.split()
                if family == "uprobe" and len(fields) >= 3 and fields[-1].isdigit():
                    rows.setdefault(fields[-2], []).append((int(fields[-1]), None))
                elif family == "kprobe" and len(fields) >= 3 and fields[-1].isdigit() and fields[-2].isdigit():
                    rows.setdefault(fields[-3], []).append((int(fields[-2]), int(fields[-1])))
            seen: dict[str, int] = {}
            for index, (_group, event, kind, _line) in enumerate(parsed):
                if kind not in kinds:
                    continue
                nth = seen.get(event, 0)
                seen[event] = nth + 1
                if nth < len(rows.get(event, [])):
                    counts[index] = rows[event][nth]
        return counts


# error_log messages (kernel/trace/trace_probe.h ERRORS) → what to write instead.
_ERROR_HINTS = (
    ("String accepts only memory argument",
     "a string is read from the address a value holds: +0(%reg):string, or argN:string / retval:string"),
    ("can be used only on function entry or exit", "uprobes take registers: write argN and rawtrace maps it"),
    ("Invalid register name", "registers are named as in struct pt_regs: %di %si %dx %cx %r8 %r9 %ax ..."),
    ("different from existing probe", "another probe already uses this event name; pick another"),
    ("Failed to find the given file", "the target path must exist and be absolute"),
    ("Symbol is not available with uprobe", "uprobes cannot fetch @SYMBOL; use @+FILE_OFFSET or a register"),
)


# Kinds whose events can hold several probe points (the kernel's append_trace_kprobe/append_trace_uprobe).
_MULTI_PROBE_KINDS = frozenset({"uprobe", "uretprobe", "kprobe", "kretprobe"})


def _same_layout(a: ResolvedProbe, b: ResolvedProbe) -> bool:
    """Whether two probes can share one event: the same kind and the same argument names and types
    (the kernel's trace_probe_compare_arg_type(); where each value is fetched from may differ)."""
    return a.kind == b.kind and [(x.name, x.type) for x in a.args] == [(x.name, x.type) for x in b.args]


def _refused(what: str, exc: OSError, entry: ErrorLogEntry | None, line: str,
             hint: str | None = None) -> KernelRefused:
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    if entry is not None:
        hint = hint or next((h for needle, h in _ERROR_HINTS if needle in entry.message), None)
        return KernelRefused(f"the kernel refused {what} ({reason}): {entry.render()}", hint=hint)
    return KernelRefused(f"the kernel refused {what} ({reason}): {line}", hint=hint)
