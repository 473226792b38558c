"""`rawtrace events`: the tracefs events of the running kernel, with system and ID."""

from __future__ import annotations

import sys

HELP = "list the tracefs events of the running kernel (system, name, ID)"
EPILOG = """\
GLOB matches system:event ('sched:*', '*:sys_enter_open*'), a system name ('sched'), or an event
name across systems ('sys_enter_open*'). Without GLOB every event is listed. IDs are read from
each event's id file (the value in common_type of its records; they change between boots).
ftrace:* events are the kernel's internal records (function, print, ...): they have IDs but
cannot be enabled. A GLOB that matches nothing is an error (exit 2) naming the nearest events.

--json prints an array of {"system", "name", "id"}.

examples:
  rawtrace events
  rawtrace events sched
  rawtrace events 'syscalls:sys_enter_open*'
  rawtrace events 'sys_*_openat' --json
"""


def add_arguments(parser) -> None:
    parser.add_argument("globs", nargs="*", metavar="GLOB",
                        help="system:event glob, system name or event-name glob (default: all)")
    parser.add_argument("--json", action="store_true", help="print a JSON array")


def select(catalog, globs: list[str]) -> list[tuple[str, str]]:
    """(system, name) of the events the globs name; a bare word may be a system or an event glob."""
    if not globs:
        return catalog.events()
    from rawtrace.errors import UsageError
    chosen: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    systems = set(catalog.systems())
    for pattern in globs:
        if ":" not in pattern and "/" not in pattern and pattern in systems:
            found = catalog.events(pattern)
        elif ":" not in pattern and "/" not in pattern and not any(c in pattern for c in "*?["):
            # A bare exact name lists every system's event of that name (no ambiguity error here).
            found = [(s, pattern) for s in catalog.systems() if catalog.exists(s, pattern)]
            if not found:
                catalog.resolve([pattern])          # raises with the nearest names
        else:
            try:
                found = catalog.resolve([pattern])
            except UsageError:
                if ":" in pattern or "/" in pattern:
                    raise
                import fnmatch
                matching = [s for s in catalog.systems() if fnmatch.fnmatchcase(s, pattern)]
                if not matching:
                    raise
                found = [item for s in matching for item in catalog.events(s)]
        for item in found:
            if item not in seen:
                seen.add(item)
                chosen.append(item)
    return chosen


def run(args, host) -> int:
    from rawtrace.cli.format import open_catalog
    catalog = open_catalog(host)
    names = select(catalog, args.globs)
    rows = [(system, name, catalog.event_id(system, name)) for system, name in names]
    if args.json:
        import json
        body = ",\n".join(json.dumps({"system": s, "name": n, "id": i}) for s, n, i in rows)
        sys.stdout.write(f"[\n{body}\n]\n" if body else "[]\n")
        return 0
    from rawtrace.output import escape, table_text
    text = table_text([(escape(s), escape(n), "?" if i is None else str(i)) for s, n, i in rows],
                      ["SYSTEM", "EVENT", "ID"])
    sys.stdout.write(text + "\n")
    return 0
