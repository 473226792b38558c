"""Syscall tables per architecture, parsed at run time from the kernel's .tbl files under tables/."""

from __future__ import annotations

import functools
import os
from collections import namedtuple

from rawtrace.errors import ParseError, UsageError
from rawtrace.syscalls.arches import ARCHES, Abi, Arch, arch_names, lookup_arch


class Syscall(namedtuple("Syscall", "nr name abi entry compat_entry", defaults=(None,))):
    """One syscall as user space numbers it: nr: int, name: str, abi: str, entry and compat_entry: str | None
    (a namedtuple, like the arch records: a dataclass or typing.NamedTuple costs more of list-syscalls'
    start-up to import than the whole table parse).

    In `SyscallTable.entries`, `abi` is the kernel's tag for the row ("common", "64", "x32", "oabi", ...);
    in an ABI view (`SyscallTable.view("x32")`) it is the ABI's name."""

    __slots__ = ()

    @property
    def tracepoint(self) -> str | None:
        """The name of this syscall's tracepoints (syscalls:sys_enter_<it>): the kernel names them after
        the SYSCALL_DEFINE, i.e. the entry point without `sys_` (x86_64 fstat → newfstat, umount2 →
        umount); the table name for other entries; None for rows without an entry or sys_ni_syscall."""
        entry = self.entry
        if not entry or entry == "sys_ni_syscall":
            return None
        return entry[4:] if entry.startswith("sys_") else self.name


# One generated .tbl file: its rows as (nr, tag, name, entry, compat) and where it came from.
TableFile = namedtuple("TableFile", "name rows kernel_version source")


def tables_dir():
    """Where the .tbl files are (a pathlib.Path; a Traversable in a zipped install): the installed
    `rawtrace.tables` package, else ../tables in a checkout."""
    found = _tables_dir()
    if isinstance(found, str):
        from pathlib import Path
        return Path(found)
    return found


@functools.cache
def _tables_dir():
    """tables_dir() as a string, or the Traversable of a zipped install (no pathlib import: list-syscalls
    starts without it)."""
    try:
        # Installed: tables/ is the package rawtrace.tables (pyproject's package-dir).
        import rawtrace.tables as package
    except ImportError:
        package = None
    if package is not None:
        for location in getattr(package, "__path__", ()):
            if os.path.isfile(os.path.join(location, "x86_64.tbl")):
                return os.fspath(location)
        # Only other loaders (a zipped install) need importlib.resources, which is slower to import.
        from importlib.resources import files
        resources = files("rawtrace.tables")
        if (resources / "x86_64.tbl").is_file():
            return resources  # a Traversable: `/` and read_text() suffice
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))), "tables")


def _none(text: str | None) -> str | None:
    return None if text in (None, "-", "") else text


def parse_tbl(text: str, source: str = "<tbl>") -> tuple[list[tuple[int, str, str, str | None, str | None]],
                                                          dict[str, str]]:
    """Rows and `# key: value` header fields of a kernel syscall table (.tbl) text."""
    rows = []
    header: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition(": ")
            if sep and key.isidentifier():
                header.setdefault(key, value.strip())
            continue
        cols = line.split("#", 1)[0].split()
        if not cols:
            continue
        if len(cols) < 3 or not cols[0].isdigit():
            raise ParseError(f"not a syscall table row: {line!r}", source=source, line=number)
        rows.append((int(cols[0]), cols[1], cols[2],
                     _none(cols[3]) if len(cols) > 3 else None,
                     _none(cols[4]) if len(cols) > 4 else None))
    return rows, header


@functools.cache
def load_table_file(name: str) -> TableFile:
    found = _tables_dir()
    try:
        if isinstance(found, str):
            path = os.path.join(found, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
        else:
            path = found / name
            text = path.read_text()
    except OSError as exc:
        raise ParseError(f"cannot read syscall table: {exc.strerror}", source=str(path),
                         hint="reinstall rawtrace, or regenerate with tools/gen_tables.py") from None
    rows, header = parse_tbl(text, str(path))
    return TableFile(name, tuple(rows), header.get("kernel", "unknown"), header.get("source", name))


def normalize_arch(name: str) -> str:
    """The canonical arch name for a name, alias or `uname -m` value; UsageError naming the choices."""
    arch = lookup_arch(name)
    if arch is None:
        raise UsageError(f"unknown architecture {name!r}{_nearest(name.lower(), _all_arch_words())} "
                         f"(choices: {', '.join(arch_names())})")
    return arch.name


def _all_arch_words() -> list[str]:
    words: list[str] = []
    for arch in ARCHES:
        words += [arch.name, *arch.aliases, *arch.machines]
    return words


def _nearest(word: str, choices) -> str:
    import difflib
    close = difflib.get_close_matches(word, list(dict.fromkeys(choices)), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


class SyscallTable:
    """The syscalls of one architecture: `entries` holds the native ABIs' rows, numbered as user space
    passes them (x32 rows carry the x32 bit, MIPS rows their ABI base); `view(abi)` gives any ABI's list."""

    def __init__(self, arch: Arch) -> None:
        self.arch = arch
        primary = load_table_file(arch.table)
        self.kernel_version = primary.kernel_version
        self.source = primary.source
        self.entries: tuple[Syscall, ...] = self._native_entries()
        self._views: dict[str, tuple[Syscall, ...]] = {}
        self._by_name: dict[str, Syscall] | None = None

    @property
    def abis(self) -> tuple[str, ...]:
        return tuple(abi.name for abi in self.arch.abis)

    def _native_entries(self) -> tuple[Syscall, ...]:
        out = []
        seen_tables: list[str] = []
        for abi in self.arch.native_abis:
            if abi.table in seen_tables:
                continue
            seen_tables.append(abi.table)
            owners: dict[str, Abi | None] = {}
            for nr, tag, name, entry, compat in load_table_file(abi.table).rows:
                owner = owners.get(tag, False)
                if owner is False:
                    owner = owners[tag] = self.arch.row_abi(abi.table, tag)
                if owner is None or owner.compat:
                    continue
                out.append(Syscall(nr + owner.nr_offset, name, tag, entry, compat))
        return tuple(out)

    def _abi(self, name: str) -> Abi:
        abi = self.arch.abi(name)
        if abi is None:
            raise UsageError(f"{self.arch.name} has no ABI {name!r} (choices: {', '.join(self.abis)})")
        return abi

    def view(self, abi_name: str) -> tuple[Syscall, ...]:
        """The syscalls a task of that ABI can make, numbered as it passes them, `abi` set to the ABI."""
        cached = self._views.get(abi_name)
        if cached is None:
            abi = self._abi(abi_name)
            cached = tuple(Syscall(nr + abi.nr_offset, name, abi.name, entry, compat)
                           for nr, tag, name, entry, compat in load_table_file(abi.table).rows
                           if abi.covers(tag))
            self._views[abi_name] = cached
        return cached

    def kernel_version_of(self, abi_name: str) -> str:
        return load_table_file(self._abi(abi_name).table).kernel_version

    def by_nr(self, nr: int, abi: str | None = None) -> Syscall | None:
        """The syscall user space invokes with number `nr` (in `abi`, else in any ABI, native first)."""
        searches = [self.view(abi)] if abi else [self.entries] + [self.view(a) for a in self.abis]
        for entries in searches:
            for syscall in entries:
                if syscall.nr == nr:
                    return syscall
        return None

    def by_name(self, name: str, abi: str | None = None) -> Syscall | None:
        """The row for a syscall name (in `abi`, else the native ABIs' first row of that name)."""
        if abi:
            return next((s for s in self.view(abi) if s.name == name), None)
        if self._by_name is None:
            index: dict[str, Syscall] = {}
            for syscall in self.entries:
                index.setdefault(syscall.name, syscall)
            self._by_name = index
        return self._by_name.get(name)

    @property
    def main_entries(self) -> tuple[Syscall, ...]:
        """The rows of the arch's main ABI only (x86_64 without the x32 rows, arm without OABI-only ones),
        with the kernel's tags: what an ordinary process on such a machine can call."""
        main = self.arch.abis[0]
        return tuple(s for s in self.entries if main.covers(s.abi))

    def _source(self, abi: str | None, main: bool) -> tuple[Syscall, ...]:
        if abi:
            return self.view(abi)
        return self.main_entries if main else self.entries

    def names(self, abi: str | None = None) -> list[str]:
        entries = self.view(abi) if abi else self.entries
        return list(dict.fromkeys(s.name for s in entries))

    def match(self, patterns, abi: str | None = None, *, main: bool = False) -> list[Syscall]:
        """Rows matching any pattern (name, glob like `open*`, decimal or 0x number), in table order.

        Rows come from `view(abi)`, else `main_entries` if `main`, else `entries`. Without `abi`, a number
        those rows lack is looked up in the other ABIs (0x40000002 is x32 open on x86_64).
        Raises UsageError for a pattern that matches nothing, naming the nearest names."""
        entries = self._source(abi, main)
        if not patterns:
            return list(entries)
        from fnmatch import fnmatchcase
        chosen: set[int] = set()
        extra: list[Syscall] = []
        for pattern in patterns:
            number = parse_number(pattern)
            if number is not None:
                hits = [i for i, s in enumerate(entries) if s.nr == number]
            elif _is_glob(pattern):
                hits = [i for i, s in enumerate(entries) if fnmatchcase(s.name, pattern)]
            else:
                hits = [i for i, s in enumerate(entries) if s.name == pattern]
            if not hits and number is not None and abi is None:
                found = self.by_nr(number)
                if found is not None:
                    if found not in extra:
                        extra.append(found)
                    continue
            if not hits:
                raise UsageError(self._no_match(pattern, number, entries, abi))
            chosen.update(hits)
        return [entries[i] for i in sorted(chosen)] + extra

    def _no_match(self, pattern: str, number: int | None, entries, abi: str | None) -> str:
        where = f"{self.arch.name} ({abi} ABI)" if abi else self.arch.name
        if number is not None:
            numbers = sorted(s.nr for s in entries) or [0]
            return (f"no syscall number {pattern} on {where} "
                    f"(numbers run {_show_nr(numbers[0])}..{_show_nr(numbers[-1])})")
        names = [s.name for s in entries]
        near = _nearest(pattern.strip("*?[]"), names) if _is_glob(pattern) else _nearest(pattern, names)
        return f"no syscall matches {pattern!r} on {where}{near}"


def _show_nr(nr: int) -> str:
    return hex(nr) if nr >= 0x10000 else str(nr)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def parse_number(text: str) -> int | None:
    """A syscall number written as decimal or 0x hex, or None if the text is not a number."""
    try:
        if text[:2].lower() == "0x":
            return int(text, 16)
        if text.isdigit():
            return int(text)
    except ValueError:
        return None
    return None


@functools.cache
def _load(arch_name: str) -> SyscallTable:
    return SyscallTable(lookup_arch(arch_name))  # type: ignore[arg-type]


def load_table(arch: str) -> SyscallTable:
    """The (cached) syscall table of an arch; accepts aliases; UsageError for unknown names."""
    return _load(normalize_arch(arch))
