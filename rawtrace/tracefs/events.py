"""The event catalogue of one tracefs events/ directory: names, globs, IDs and cached parsed formats."""

from __future__ import annotations

import os
import re

from rawtrace.errors import RawtraceError, UsageError

# typing would cost ~2 ms of start-up just for this flag; type checkers treat a TYPE_CHECKING name alike.
TYPE_CHECKING = False

if TYPE_CHECKING:  # only for annotations: importing descriptors pulls in dataclasses
    from rawtrace.parse.descriptors import EventFormat, HeaderEvent, HeaderPage

_GLOB_CHARS = frozenset("*?[")
_ID_LINE_RE = re.compile(r"^ID:[ \t]*([0-9]{1,18})[ \t]*$", re.MULTILINE)


def _plain_part(text: str) -> bool:
    """A usable directory name: no separator, not `.` or `..` (so lookups stay inside events/)."""
    return bool(text) and "/" not in text and "\0" not in text and text not in (".", "..")


def _is_glob(text: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(text)


def split_event_name(pattern: str) -> tuple[str | None, str]:
    """`system:event` or `system/event` → (system, event); a bare name → (None, name)."""
    for separator in (":", "/"):
        if separator in pattern:
            system, _, event = pattern.partition(separator)
            return system, event
    return None, pattern


class EventCatalog:
    """Reads an events/ directory (of the top level or of an instance). Listing and resolving use
    directory listings only; a format file is read and parsed when first asked for, then cached."""

    def __init__(self, events_dir: str | os.PathLike, *, long_size: int | None = None) -> None:
        from rawtrace.host import clean_path
        self._events_str = clean_path(os.fspath(events_dir))
        self._long_size = long_size
        self._systems: list[str] | None = None
        self._events: dict[str, list[str]] = {}
        self._formats: dict[tuple[str, str], EventFormat] = {}
        self._ids: dict[int, tuple[str, str]] | None = None
        self._missing_ids: set[int] = set()
        self._header_page: HeaderPage | None = None
        self._header_event: HeaderEvent | None = None

    @property
    def events_dir(self):
        """The events/ directory as a pathlib.Path (kept as a string: format starts without pathlib)."""
        from pathlib import Path
        return Path(self._events_str)

    # -- names ---------------------------------------------------------------------------------------

    def systems(self) -> list[str]:
        if self._systems is None:
            try:
                with os.scandir(self._events_str) as entries:
                    self._systems = sorted(e.name for e in entries if e.is_dir())
            except FileNotFoundError:
                raise UsageError(f"no events directory at {self._events_str}",
                                 hint="point --tracefs at a tracefs mount (the directory holding events/)"
                                 ) from None
            except NotADirectoryError:
                raise UsageError(f"{self._events_str} is not a directory",
                                 hint="point --tracefs at a tracefs mount (the directory holding events/)"
                                 ) from None
        return self._systems

    def _event_names(self, system: str) -> list[str]:
        names = self._events.get(system)
        if names is None:
            try:
                with os.scandir(os.path.join(self._events_str, system)) as entries:
                    names = sorted(e.name for e in entries if e.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                names = []
            self._events[system] = names
        return names

    def events(self, system: str | None = None) -> list[tuple[str, str]]:
        """(system, name) of every event, or of one system's, sorted."""
        systems = [system] if system is not None else self.systems()
        return [(s, name) for s in systems for name in self._event_names(s)]

    def exists(self, system: str, name: str) -> bool:
        if not (_plain_part(system) and _plain_part(name)):
            return False
        return os.path.isfile(os.path.join(self._events_str, system, name, "format"))

    def resolve(self, patterns: list[str]) -> list[tuple[str, str]]:
        """(system, name) for each pattern: `system:event`, `system/event`, a bare event name (must be
        unique across systems) or a glob over either part. Order kept; duplicates dropped.
        Unknown or ambiguous names raise UsageError (with the nearest names or the choices)."""
        out: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for pattern in patterns:
            try:
                found = self._resolve_one(pattern.strip())
            except UsageError:
                if not self._listed():
                    raise
                # The listing is cached: an event created since (a new probe) would be missed.
                self.refresh()
                found = self._resolve_one(pattern.strip())
            for item in found:
                if item not in seen:
                    seen.add(item)
                    out.append(item)
        return out

    def refresh(self) -> None:
        """Forget the cached listings, IDs and formats: dynamic events come and go, and a probe made
        again under the same name may have other fields."""
        self._formats = {}
        self._systems = None
        self._events = {}
        self._ids = None
        self._missing_ids = set()

    def _listed(self) -> bool:
        return self._systems is not None or bool(self._events)

    def _resolve_one(self, pattern: str) -> list[tuple[str, str]]:
        if not pattern:
            raise UsageError("empty event name", hint="name events as system:event, e.g. sched:sched_switch")
        system, name = split_event_name(pattern)
        if system is not None and not name:
            name = "*"                       # `sched:` means every event of sched
        if system is None and not _is_glob(name):
            holders = [s for s in self.systems() if self.exists(s, name)]
            if len(holders) == 1:
                return [(holders[0], name)]
            if len(holders) > 1:
                choices = ", ".join(f"{s}:{name}" for s in holders)
                raise UsageError(f"event name {name!r} is ambiguous: {choices}",
                                 hint="name the system too, as system:event")
            raise self._unknown(pattern)
        if system is not None and not _is_glob(system) and not _is_glob(name):
            if self.exists(system, name):
                return [(system, name)]
            raise self._unknown(pattern)
        import fnmatch
        if system is None:
            systems = self.systems()
        elif _is_glob(system):
            systems = [s for s in self.systems() if fnmatch.fnmatchcase(s, system)]
        else:
            systems = [system] if system in self.systems() else []
        matches = []
        for s in systems:
            names = self._event_names(s)
            if _is_glob(name):
                matches += [(s, n) for n in fnmatch.filter(names, name) if self.exists(s, n)]
            elif name in names and self.exists(s, name):
                matches.append((s, name))
        if not matches:
            raise self._unknown(pattern, glob=True)
        return matches

    def _unknown(self, pattern: str, *, glob: bool = False) -> UsageError:
        import difflib
        system, name = split_event_name(pattern)
        if system is None:
            by_name: dict[str, list[str]] = {}
            for s, n in self.events():
                by_name.setdefault(n, []).append(f"{s}:{n}")
            close = [full for n in difflib.get_close_matches(name, list(by_name), n=5, cutoff=0.6)
                     for full in by_name[n]]
            close += [f"{s}:*" for s in difflib.get_close_matches(name, self.systems(), n=2, cutoff=0.75)]
        else:
            full_names = [f"{s}:{n}" for s, n in self.events()]
            close = difflib.get_close_matches(f"{system}:{name}", full_names, n=5, cutoff=0.6)
            if not close and system in self.systems():
                close = [f"{system}:{n}" for n in
                         difflib.get_close_matches(name, self._event_names(system), n=5, cutoff=0.5)]
        what = "no event matches" if glob else "unknown event"
        nearest = f"; nearest: {', '.join(close[:5])}" if close else ""
        return UsageError(f"{what} {pattern!r}{nearest}", hint="list events with `rawtrace events [GLOB]`")

    # -- formats and IDs ----------------------------------------------------------------------------

    @property
    def long_size(self) -> int | None:
        """The kernel's long size (header_page's commit size), or None when there is no header_page."""
        if self._long_size is None:
            try:
                self._long_size = self.header_page().commit_size
            except RawtraceError:
                # No or bad header_page: long and pointer element sizes stay unknown (None).
                return None
        return self._long_size

    def read(self, relative: str) -> str:
        path = os.path.join(self._events_str, relative)
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            raise UsageError(f"{path} does not exist") from None
        except PermissionError:
            raise
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None

    def format(self, system: str, name: str) -> EventFormat:
        key = (system, name)
        fmt = self._formats.get(key)
        if fmt is None:
            if not (_plain_part(system) and _plain_part(name)):
                raise self._unknown(f"{system}:{name}")
            from rawtrace.parse.format import parse_format
            path = os.path.join(self._events_str, system, name, "format")
            try:
                with open(path, errors="replace") as f:
                    text = f.read()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise self._unknown(f"{system}:{name}") from None
            except PermissionError:
                raise
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror}") from None
            fmt = parse_format(text, system=system, source=path, long_size=self.long_size)
            self._formats[key] = fmt
        return fmt

    def event_id(self, system: str, name: str) -> int | None:
        """The event's ID from its `id` file (or its format's ID: line when there is no id file)."""
        directory = os.path.join(self._events_str, system, name)
        try:
            with open(os.path.join(directory, "id"), "rb") as f:
                return int(f.read().strip() or b"x")
        except (OSError, ValueError):
            pass
        key = (system, name)
        if key in self._formats:
            return self._formats[key].id
        try:
            with open(os.path.join(directory, "format"), errors="replace") as f:
                match = _ID_LINE_RE.search(f.read())
        except OSError:
            return None
        return int(match.group(1)) if match else None

    def by_id(self, event_id: int) -> EventFormat | None:
        """The format of the event with this ID (for decoding records), or None if no event has it.
        The first call reads every event's ID once; an unknown ID triggers one rescan for events
        created since (each unknown ID at most once)."""
        if self._ids is None:
            self._ids = {}
            self._scan_ids()
        found = self._ids.get(event_id)
        if found is None and event_id not in self._missing_ids:
            self._missing_ids.add(event_id)
            self._systems, self._events = None, {}
            self._scan_ids()
            found = self._ids.get(event_id)
        return self.format(*found) if found is not None else None

    def _scan_ids(self) -> None:
        assert self._ids is not None
        known = set(self._ids.values())
        for system, name in self.events():
            if (system, name) not in known:
                value = self.event_id(system, name)
                if value is not None:
                    self._ids.setdefault(value, (system, name))

    def header_page(self) -> HeaderPage:
        if self._header_page is None:
            from rawtrace.parse.format import parse_header_page
            self._header_page = parse_header_page(self.read("header_page"),
                                                  source=os.path.join(self._events_str, "header_page"))
        return self._header_page

    def header_event(self) -> HeaderEvent:
        """The entry header layout; a tree without header_event (copied from a device by hand) gets the
        ring buffer's fixed ABI values, as parse_header_event gives for what a file leaves out."""
        if self._header_event is None:
            from rawtrace.parse.format import parse_header_event
            path = os.path.join(self._events_str, "header_event")
            try:
                text = self.read("header_event")
            except UsageError:
                if os.path.lexists(path):
                    raise
                text = ""
            self._header_event = parse_header_event(text, source=path)
        return self._header_event


def events_dir_of(tracefs: str | os.PathLike):
    """events_dir_in() as a pathlib.Path."""
    from pathlib import Path
    return Path(events_dir_in(tracefs))


def events_dir_in(tracefs: str | os.PathLike) -> str:
    """The events/ directory of a tracefs path; a path that already is an events/ directory (it holds
    header_page) is taken as is, so --tracefs can name either."""
    from rawtrace.host import clean_path, is_dir, stat_or_none
    tracefs = clean_path(os.fspath(tracefs))
    if os.path.exists(tracefs) and not os.path.isdir(tracefs):
        # A FIFO, device or file given as --tracefs: say so (reading below it gives NotADirectoryError).
        raise UsageError(f"{tracefs} is not a directory",
                         hint="point --tracefs at a tracefs mount or a copy of one (the directory holding events/)")
    events = os.path.join(tracefs, "events")
    if is_dir(events):
        return events
    if stat_or_none(os.path.join(tracefs, "header_page")) is not None:
        return tracefs
    return events
