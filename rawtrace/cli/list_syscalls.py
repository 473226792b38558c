"""`rawtrace list-syscalls`: syscall numbers, ABIs and entry points, checked against kernel tracepoints."""

from __future__ import annotations

import os
import sys

HELP = "syscall numbers, ABIs and entry points for an arch, with this kernel's syscall tracepoints"
EPILOG = """\
PATTERN is a name (openat), a glob ('open*', quoted for the shell) or a number (257, 0x40000002).
Numbers are what user space passes: x32 numbers carry the x32 bit, MIPS numbers their ABI base.
Without --abi the main ABI's rows are listed (x86_64 without the x32 rows); a number from another ABI
(0x40000002) is still found. COMPAT ENTRY is shown for ABIs whose tasks use it (--abi i386 on x86_64,
--abi oabi on arm); --json always has compat_entry.

On the running kernel (default --arch), TP says whether syscalls:sys_enter_<name> and sys_exit_<name>
exist ('yes'; 'enter' or 'exit' if only one does); '-' marks a table entry without tracepoints and
'+kernel' a syscall this kernel traces that the bundled table lacks (the table is older than the
kernel). A footnote on stderr gives the counts. With the kernel's tracepoints --json adds the keys
tracepoints ({"enter": bool, "exit": bool}), tracepoint and in_table; --args adds args ([{name, type}]).

examples:
  rawtrace list-syscalls                    # the running machine's table
  rawtrace list-syscalls 'open*' --args     # with argument types from the tracepoint formats
  rawtrace list-syscalls 0x40000002         # x32 open on x86_64
  rawtrace list-syscalls read --arch arm64 --json
  rawtrace list-syscalls --arch x86_64 --abi i386 'sock*'
"""

KERNEL_ONLY = "+kernel"
NO_TRACEPOINT = "-"


def add_arguments(parser) -> None:
    parser.add_argument("patterns", nargs="*", metavar="PATTERN",
                        help="syscall name, glob (open*) or number (257, 0x40000000); default: all")
    parser.add_argument("--arch", metavar="ARCH",
                        help="architecture or alias (x86_64/amd64, i386, arm64/aarch64, arm, riscv64, "
                             "ppc64le, s390x, mips64, loongarch64, ...); default: the running machine's")
    parser.add_argument("--abi", metavar="ABI",
                        help="one ABI of the arch (x86_64: 64, x32, i386; arm: eabi, oabi; mips64: n64, n32, "
                             "o32); default: the arch's main ABI, with the kernel's row tags")
    parser.add_argument("--args", action="store_true",
                        help="add each syscall's arguments, read from its tracepoint format file "
                             "(one tracefs read per syscall, so not done by default)")
    parser.add_argument("--json", action="store_true", help="print a JSON array of objects")


class KernelSyscalls:
    """The syscall tracepoints of the running kernel (names after sys_enter_/sys_exit_). A plain class: a
    NamedTuple needs typing, which list-syscalls' start-up does not otherwise import."""

    __slots__ = ("_catalog", "enter", "events_dir", "exit", "names", "release")

    def __init__(self, events_dir, enter: frozenset[str], exit_: frozenset[str], release: str) -> None:
        self.events_dir = events_dir      # the kernel's tracefs events/ directory
        self.enter, self.exit, self.names = enter, exit_, enter | exit_
        self.release = release
        self._catalog = None

    @property
    def catalog(self):
        """rawtrace.tracefs.events.EventCatalog of events_dir, made when first needed (--args only)."""
        if self._catalog is None:
            from rawtrace.tracefs.events import EventCatalog
            self._catalog = EventCatalog(self.events_dir)
        return self._catalog


def _kernel_syscalls(host) -> tuple[KernelSyscalls | None, str]:
    """The kernel's syscall tracepoints, or None and the reason there are none to show."""
    from rawtrace.tracefs.discover import locate_tracefs
    location = locate_tracefs(host)
    if location is None:
        return None, "tracefs is not mounted (rawtrace list-syscalls never mounts it)"
    if not location.readable:
        return None, f"tracefs at {location.dir} is not readable by this user (the TP column needs root)"
    events_dir = os.path.join(location.dir, "events")
    syscalls_dir = os.path.join(events_dir, "syscalls")
    enter, exit_ = [], []
    try:
        # The listing is all that is read here; format files only with --args.
        with os.scandir(syscalls_dir) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("sys_enter_"):
                    enter.append(name[10:])
                elif name.startswith("sys_exit_"):
                    exit_.append(name[9:])
    except (FileNotFoundError, NotADirectoryError):
        return None, f"{syscalls_dir} does not exist (kernel without CONFIG_FTRACE_SYSCALLS?)"
    except OSError as exc:
        return None, f"cannot read {syscalls_dir}: {exc.strerror}"
    release = (host.read_text("/proc/sys/kernel/osrelease") or "").strip() or "running kernel"
    return KernelSyscalls(events_dir, frozenset(enter), frozenset(exit_), release), ""


def _tracepoint_of(syscall, kernel: KernelSyscalls) -> str | None:
    """The tracepoint name present on the kernel for this row, if any (entry-based first, then the name)."""
    for candidate in (syscall.tracepoint, syscall.name):
        if candidate and candidate in kernel.names:
            return candidate
    return None


def _read_args(kernel: KernelSyscalls, tp_name: str) -> list[dict] | None:
    """Argument names and C types from sys_enter_<tp_name>'s format (the fields after __syscall_nr)."""
    from rawtrace.errors import RawtraceError
    try:
        fmt = kernel.catalog.format("syscalls", f"sys_enter_{tp_name}")
    except (RawtraceError, OSError):
        return None   # unreadable or unparsable: the row still shows, without arguments
    return [{"name": f.name, "type": f.type} for f in fmt.fields if f.name != "__syscall_nr"]


def _table_tracepoints(table_name: str) -> set[str]:
    from rawtrace.syscalls.tables import load_table_file
    known: set[str] = set()
    # Raw rows, not ABI views: no Syscall objects needed just to collect names.
    for _nr, _tag, name, entry, _compat in load_table_file(table_name).rows:
        known.add(name)
        if entry and entry.startswith("sys_"):
            known.add(entry[4:])
    return known


def _kernel_only(table, kernel: KernelSyscalls) -> list[str]:
    """Tracepoint names of the kernel that no ABI of the table accounts for (compat-only ones included).
    The other ABIs' tables are read only if the main table leaves some unexplained."""
    tables = list(dict.fromkeys(abi.table for abi in table.arch.abis))
    unknown = set(kernel.names)
    for table_name in tables:
        unknown -= _table_tracepoints(table_name)
        if not unknown:
            break
    return sorted(unknown)


def _format_args(args: list[dict] | None) -> str:
    if args is None:
        return ""
    return ", ".join(f"{a['type']}{'' if a['type'].endswith('*') else ' '}{a['name']}" for a in args)


def _matches(name: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatchcase

    from rawtrace.syscalls.tables import parse_number
    return not patterns or any(parse_number(p) is None and fnmatchcase(name, p) for p in patterns)


def _choose_arch(args, host):
    """(arch name, host Arch or None): --arch if given, else the machine's (uname -m, or the capture's)."""
    from rawtrace.errors import UsageError
    from rawtrace.syscalls.arches import arch_for_machine
    from rawtrace.syscalls.tables import normalize_arch
    machine = host.machine()
    host_arch = arch_for_machine(machine)
    if args.arch:
        return normalize_arch(args.arch), host_arch
    if host_arch is None:
        raise UsageError(f"no syscall table for this machine ({machine!r}); pass --arch")
    return host_arch.name, host_arch


def _select(table, patterns: list[str], abi: str | None, kernel_only: list[str]) -> list:
    """Table rows matching the patterns (the main ABI's unless `abi`; a number another ABI uses, such as
    an x32 one, is still found); a pattern that only names kernel-side syscalls is not an error."""
    from rawtrace.errors import UsageError
    table_patterns = []
    for pattern in patterns:
        try:
            table.match([pattern], abi, main=True)
        except UsageError:
            if not any(_matches(name, [pattern]) for name in kernel_only):
                raise
            continue
        table_patterns.append(pattern)
    if patterns and not table_patterns:
        return []
    return table.match(table_patterns, abi, main=True)


def _record(syscall, kernel: KernelSyscalls | None, with_args: bool) -> dict:
    record = {"nr": syscall.nr, "name": syscall.name, "abi": syscall.abi,
              "entry": syscall.entry, "compat_entry": syscall.compat_entry}
    if kernel is not None:
        tp = _tracepoint_of(syscall, kernel)
        record["tracepoints"] = {"enter": tp in kernel.enter if tp else False,
                                 "exit": tp in kernel.exit if tp else False}
        record["tracepoint"] = f"syscalls:sys_enter_{tp}" if tp else None
        record["in_table"] = True
        if tp and with_args:
            record["args"] = _read_args(kernel, tp)
    return record


def _kernel_only_record(name: str, kernel: KernelSyscalls, with_args: bool) -> dict:
    record = {"nr": None, "name": name, "abi": None, "entry": None, "compat_entry": None,
              "tracepoints": {"enter": name in kernel.enter, "exit": name in kernel.exit},
              "tracepoint": f"syscalls:sys_enter_{name}", "in_table": False}
    if with_args:
        record["args"] = _read_args(kernel, name)
    return record


def _some(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _stale_notes(records: list[dict], extra: list[str], kernel: KernelSyscalls,
                 table_version: str) -> list[str]:
    """The footnote that keeps a stale table from misleading: what the kernel has that the table lacks,
    and table entries with no tracepoint."""
    notes = []
    if extra:
        notes.append(f"{len(extra)} syscall(s) have tracepoints on this kernel ({kernel.release}) but are "
                     f"not in the Linux {table_version} table (marked {KERNEL_ONLY}, number unknown): "
                     f"{_some(extra)}")
    # sys_ni_syscall rows are numbers the kernel reserves but does not implement: no tracepoint expected.
    missing = [r["name"] for r in records if r.get("in_table") and r["entry"]
               and r["entry"] != "sys_ni_syscall" and r["tracepoint"] is None]
    if missing:
        notes.append(f"{len(missing)} table entr{'y has' if len(missing) == 1 else 'ies have'} "
                     f"no tracepoint on this kernel (TP {NO_TRACEPOINT}): {_some(missing)}")
    return notes


def run(args, host) -> int:
    from rawtrace.errors import UsageError
    from rawtrace.syscalls.tables import load_table

    arch_name, host_arch = _choose_arch(args, host)
    table = load_table(arch_name)
    abi = table.arch.abi(args.abi) if args.abi else None
    if args.abi and abi is None:
        raise UsageError(f"{arch_name} has no ABI {args.abi!r} (choices: {', '.join(table.abis)})")

    notes: list[str] = []
    kernel: KernelSyscalls | None = None
    # For another arch's table the running kernel's tracepoints say nothing, so no TP column then.
    if host_arch is not None and host_arch.name == arch_name:
        kernel, reason = _kernel_syscalls(host)
        if kernel is None:
            notes.append(f"no tracepoint columns: {reason}")
    if kernel is not None and abi is not None and not abi.traced:
        notes.append(f"the kernel does not run syscall tracepoints for {abi.name} tasks on {arch_name} "
                     "(compat syscalls are ignored); TP shows the native tracepoint of the same name")
    if args.args and kernel is None:
        notes.append("--args needs the running kernel's syscall tracepoints (host arch, readable tracefs)")
    # Syscalls this kernel traces that no ABI of the table knows: the table is older than the kernel.
    kernel_only = _kernel_only(table, kernel) if kernel else []

    patterns = list(args.patterns)
    records = [_record(s, kernel, args.args) for s in _select(table, patterns, args.abi, kernel_only)]
    if kernel is not None:
        extra = [name for name in kernel_only if _matches(name, patterns)]
        records += [_kernel_only_record(name, kernel, args.args) for name in extra]
        table_version = table.kernel_version_of(args.abi) if args.abi else table.kernel_version
        notes += _stale_notes(records, extra, kernel, table_version)

    if args.json:
        _print_json(records)
    else:
        # Compat entries only matter to tasks of an ABI that goes through them (i386 on x86_64, OABI).
        listed = abi or table.arch.abis[0]
        _print_table(records, kernel is not None, args.args, listed.compat_entries)
    for note in notes:
        sys.stderr.write(f"note: {note}\n")
    return 0


def _print_json(records: list[dict]) -> None:
    """A JSON array, one object per line: json's C encoder only runs without indent, and an indented
    dump of ~400 records through the pure-Python encoder costs more than the rest of the command."""
    import json
    out = sys.stdout
    out.write("[\n")
    out.write(",\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    out.write("\n]\n")


def _tp_cell(record: dict) -> str:
    if not record.get("in_table", True):
        return KERNEL_ONLY
    tps = record["tracepoints"]
    if tps["enter"] and tps["exit"]:
        return "yes"
    if tps["enter"] or tps["exit"]:
        return "enter" if tps["enter"] else "exit"
    return NO_TRACEPOINT


def _print_table(records: list[dict], with_kernel: bool, with_args: bool, compat_entries: bool) -> None:
    from rawtrace.output import table
    show_compat = compat_entries and any(r["compat_entry"] for r in records)
    headers = ["NR", "NAME", "ABI", "ENTRY"] + (["COMPAT ENTRY"] if show_compat else [])
    if with_kernel:
        headers.append("TP")
    if with_kernel and with_args:
        headers.append("ARGS")
    rows = []
    for r in records:
        nr = r["nr"]
        row = ["?" if nr is None else (hex(nr) if nr >= 0x10000 else str(nr)), r["name"], r["abi"] or "?",
               r["entry"] or ("?" if nr is None else "-")]
        if show_compat:
            row.append(r["compat_entry"] or "")
        if with_kernel:
            row.append(_tp_cell(r))
        if with_kernel and with_args:
            row.append(_format_args(r.get("args")))
        rows.append(row)
    table(rows, headers)
