"""`rawtrace probes`: list the probes rawtrace created (with owner and hit counts), or show what a spec becomes."""

from __future__ import annotations

import argparse
import sys

HELP = "list the probes rawtrace created, with hit counts"
EPILOG = """\
examples:
  rawtrace probes                      # rawtrace_<pid> probes: type, owner, hits, definition
  rawtrace probes --json
  rawtrace probes --all                # every dynamic event, also other tools' (read only)
  rawtrace probes --show 'uprobe:libc:openat path=arg2:ustring'
  rawtrace probes --show 'uretprobe:/usr/bin/bash:readline line=retval:ustring'
  rawtrace probes --show 'kprobe:__x64_sys_openat path=arg2:ustring flags=arg3:x32'
  rawtrace probes --symbols libc 'open*'   # functions a uprobe can go on, with file offsets
  rawtrace probes --show 'usdt:libstdc++:libstdcxx:throw obj=arg1:x64'
  rawtrace probes --usdt libstdc++           # USDT probes of a file, with their argument specs

probe specs (for `rawtrace trace --probe SPEC`):
  uprobe:TARGET:SYMBOL[+OFFSET] [ARG...]     TARGET: a path, a library (libc, libssl.so.3) or pid:PID
  uretprobe:TARGET:SYMBOL [ARG...]           SYMBOL may carry a version: openat@@GLIBC_2.4
  usdt:TARGET:[PROVIDER:]NAME [ARG...]       a USDT (SystemTap SDT) probe; argN are its arguments
  kprobe:[MODULE:]FUNCTION[+OFFSET] [ARG...] kretprobe:FUNCTION [ARG...]
  eprobe:SYSTEM:EVENT [ARG...]               fprobe:FUNCTION / fretprobe:FUNCTION [ARG...]
  NAME=KIND:...                              names the event NAME instead of after the symbol; uprobes
                                             or kprobes given one NAME and the same argument names and
                                             types are one event with several probe points (Linux
                                             5.4+; before, numbered events NAME_2, NAME_3, ...)
ARG is [NAME=]FETCH[:TYPE]. FETCH is the kernel's syntax (%si, +0(%si), $retval, $comm, $stack1) or
argN (the Nth argument: registers of this architecture, or the saved user registers for
__x64_sys_*/__arm64_sys_* syscall wrappers), retval, comm, or an eprobe's field name. A string TYPE
(string, ustring) on argN/retval/a field reads the string the value points to. TYPE: s8..s64,
u8..u64, x8..x64, char, string, ustring, symbol, symstr, %pd, %pD, b<width>@<offset>/<size>, TYPE[N].

Probes live in the group rawtrace_<pid> of the run that made them and are removed when it ends;
`rawtrace reset` removes those of runs that were killed. Other tools' probes are never changed.
uprobe_profile has no miss count, so MISSES shows only for kprobes."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the probes as JSON")
    parser.add_argument("--all", action="store_true",
                        help="list every dynamic event, not only rawtrace's (nothing is changed)")
    parser.add_argument("--show", action="append", default=[], metavar="SPEC",
                        help="resolve SPEC and print the definition `rawtrace trace --probe SPEC` would write "
                             "(repeatable; writes nothing)")
    parser.add_argument("--symbols", nargs="+", metavar=("TARGET", "GLOB"),
                        help="list the functions of TARGET (path, library or pid:PID) matching GLOB "
                             "(default *) with address and file offset")
    parser.add_argument("--usdt", metavar="TARGET",
                        help="list the USDT probes of TARGET (path, library or pid:PID) with their arguments")


def run(args: argparse.Namespace, host) -> int:
    if args.usdt:
        return _usdt(args, host)
    if args.symbols:
        return _symbols(args, host)
    if args.show:
        return _show(args, host)
    from rawtrace.errors import TracingBlocked
    from rawtrace.output import escape, json_dump, table
    from rawtrace.tracefs.discover import locate_tracefs
    from rawtrace.tracefs.dynevents import DynamicEvents
    # Listing is read-only: it does not mount tracefs just to look.
    location = locate_tracefs(host)
    if location is None:
        raise TracingBlocked("tracefs is not mounted, so probes cannot be listed",
                             hint="as root: mount -t tracefs nodev /sys/kernel/tracing")
    tracefs = location.path
    events = DynamicEvents(tracefs, proc=host.path("/proc"))
    probes = events.list(group_prefix=None) if args.all else events.list()
    if args.json:
        json_dump([p.to_json() for p in probes])
        return 0
    if not probes:
        which = "dynamic events" if args.all else "rawtrace probes (groups rawtrace_<pid>)"
        sys.stdout.write(f"no {which} defined\n")
        return 0
    rows = []
    for p in probes:
        if p.owner_pid is None:
            owner = "-"
        else:
            owner = f"{p.owner_pid} ({'running' if p.owner_alive else 'gone'})"
        rows.append([f"{p.group}/{p.event}", p.kind, owner,
                     "-" if p.hits is None else str(p.hits), "-" if p.misses is None else str(p.misses),
                     escape(p.definition.split(" ", 1)[1] if " " in p.definition else p.definition)])
    table(rows, ["PROBE", "TYPE", "OWNER", "HITS", "MISSES", "DEFINITION"])
    return 0


def _show(args: argparse.Namespace, host) -> int:
    from rawtrace.output import escape, json_dump, json_text
    from rawtrace.probes import ProbeSpec, resolve, run_group
    group = run_group()
    support = _support(host)
    shown = []
    for text in args.show:
        spec = ProbeSpec.parse(text, host=host)
        probe = resolve(spec, host)
        item = {"spec": json_text(text), "type": spec.kind, "event": f"{group}/{spec.event_name}",
                "definition": json_text(probe.definition(group, spec.event_name))}
        if probe.path is not None:
            item.update(path=json_text(probe.path), symbol=probe.symbol, address=f"{probe.address:#x}",
                        file_offset=f"{probe.file_offset:#x}", aliases=list(probe.aliases))
        if support is not None and not support.supports(spec.kind):
            from rawtrace.tracefs.dynevents import not_supported_message
            item["note"] = not_supported_message(spec.kind)
        shown.append(item)
    if args.json:
        json_dump(shown)
        return 0
    out = sys.stdout
    for item in shown:
        out.write(f"{escape(json_text(item['spec']))}\n")
        if "path" in item:
            aliases = f" (also {', '.join(item['aliases'])})" if item["aliases"] else ""
            out.write(f"  symbol:     {escape(item['symbol'])}{aliases} at {item['address']} in "
                      f"{escape(item['path'])}, file offset {item['file_offset']}\n")
        out.write(f"  definition: {escape(item['definition'])}\n")
        if "note" in item:
            out.write(f"  note:       {item['note']}\n")
    return 0


def _support(host):
    """This kernel's probe support, or None when tracefs is not visible (a dry run still works)."""
    from rawtrace.tracefs.discover import locate_tracefs
    from rawtrace.tracefs.dynevents import probe_support
    location = locate_tracefs(host)
    return probe_support(location.path) if location is not None else None


def _symbols(args: argparse.Namespace, host) -> int:
    from rawtrace import elf
    from rawtrace.errors import UsageError
    from rawtrace.output import escape, json_dump, json_text, table
    if len(args.symbols) > 2:
        raise UsageError("--symbols takes TARGET and at most one GLOB")
    target, pattern = args.symbols[0], (args.symbols[1] if len(args.symbols) > 1 else "*")
    path = elf.resolve_target(target, host)
    found = elf.list_functions(path, pattern, host)
    path = json_text(path)
    if args.json:
        json_dump({"path": path, "functions": [
            {"name": f.name, "address": f.address, "file_offset": f.file_offset, "size": f.size, "type": f.type,
             "table": f.table} for f in found]})
        return 0
    if not found:
        raise UsageError(f"no function of {path} matches {pattern!r}")
    sys.stdout.write(f"{escape(path)}: {len(found)} function{'s' if len(found) != 1 else ''}\n")
    table([[escape(f.name), f"{f.address:#x}", "-" if f.file_offset is None else f"{f.file_offset:#x}",
            str(f.size), f.type] for f in found], ["FUNCTION", "ADDRESS", "OFFSET", "SIZE", "TYPE"])
    return 0


def _usdt(args: argparse.Namespace, host) -> int:
    from rawtrace import elf
    from rawtrace.output import escape, json_dump, json_text, table
    path = elf.resolve_target(args.usdt, host)
    notes = elf.read_usdt_notes(path, host)
    path = json_text(path)
    if args.json:
        json_dump({"path": path, "probes": [
            {"provider": n.provider, "name": n.name, "address": n.address, "file_offset": n.file_offset,
             "semaphore_offset": n.semaphore_offset, "args": list(n.args)} for n in notes]})
        return 0
    sys.stdout.write(f"{escape(path)}: {len(notes)} USDT probe{'s' if len(notes) != 1 else ''}\n")
    if notes:
        table([[escape(f"{n.provider}:{n.name}"), f"{n.file_offset:#x}",
                "-" if n.semaphore_offset is None else f"{n.semaphore_offset:#x}",
                escape(" ".join(f"arg{i}={a}" for i, a in enumerate(n.args, 1)))] for n in notes],
              ["PROBE", "OFFSET", "SEMAPHORE", "ARGUMENTS"])
    return 0
