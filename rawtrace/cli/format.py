"""`rawtrace format`: an event's fields (offset, size, signedness, C type, kind) and print fmt."""

from __future__ import annotations

import sys

HELP = "show an event's ID, fields (offset, size, signed, C type, kind) and print fmt"
EPILOG = """\
EVENT is system:event, system/event, a bare event name (when only one system has it) or a glob
over either part (quote it for the shell). Offsets are from the start of the record, where
common_type is; sizes come from the kernel's format file and are trusted over the C type text.

KIND is how the field's bytes decode: integer, pointer, array[COUNT] (fixed), string[COUNT]
(fixed char array), flex_array/flex_string (size 0: runs to the end of the record),
data_loc_string/data_loc_array (a u32: length << 16 | offset from the record start),
rel_loc_string/rel_loc_array (the same, offset from the end of that u32), opaque (raw bytes).
A `*` after NAME marks the common fields every record starts with. Anything odd in the file (count disagreeing with size, overlapping fields,
a missing signed:) is kept and flagged in a NOTES column and in --json "notes".

--json prints one object per event, {"system", "name", "id", "fields": [{"name", "type", "offset",
"size", "signed", "common", "kind", "element_type", "element_size", "count", "notes"}], "print_fmt",
"print_fmt_string", "print_fmt_args", "notes"}; element_type/element_size are set for arrays and
dynamic fields (element_size null when it depends on an unknown kernel long size), count for fixed
arrays. An array (one event per line) when a glob was given or several events match.

examples:
  rawtrace format sys_enter_openat
  rawtrace format sched:sched_switch --json
  rawtrace format 'syscalls:sys_enter_open*'
  rawtrace format '*:*' --json > formats.json
"""


def add_arguments(parser) -> None:
    parser.add_argument("events", nargs="+", metavar="EVENT",
                        help="system:event, system/event, a bare event name or a glob ('sched:*')")
    parser.add_argument("--json", action="store_true", help="print the descriptors as JSON")


def open_catalog(host):
    """The event catalogue of the host's tracefs (found, or mounted with a note on stderr)."""
    from rawtrace.tracefs.events import EventCatalog, events_dir_in
    if host.tracefs_dir is not None:
        return EventCatalog(events_dir_in(host.tracefs_dir))
    from rawtrace.tracefs.discover import find_tracefs
    location = find_tracefs(host)
    if location.mounted_now:
        sys.stderr.write(f"rawtrace: note: tracefs was not mounted; mounted it at {location.dir}\n")
    return EventCatalog(events_dir_in(location.dir))


def field_json(field) -> dict:
    # Every key always present (null when it does not apply), so consumers need no key checks.
    return {"name": field.name, "type": field.type, "offset": field.offset, "size": field.size,
            "signed": field.signed, "common": field.common, "kind": field.kind,
            "element_type": field.element_type, "element_size": field.element_size, "count": field.count,
            "notes": list(field.notes)}


# Field objects are shared between events (the parser reuses identical lines), so their JSON objects can be.
_FIELD_JSON: dict[int, tuple[object, dict]] = {}


def _field_json_cached(field) -> dict:
    hit = _FIELD_JSON.get(id(field))
    if hit is None or hit[0] is not field:
        hit = _FIELD_JSON[id(field)] = (field, field_json(field))
    return hit[1]


def event_json(fmt) -> dict:
    return {"system": fmt.system, "name": fmt.name, "id": fmt.id,
            "fields": [_field_json_cached(f) for f in fmt.all_fields],
            "print_fmt": fmt.print_fmt, "print_fmt_string": fmt.print_fmt_string,
            "print_fmt_args": list(fmt.print_fmt_args), "notes": list(fmt.notes)}


# Control characters other than tab shown as escapes: a format file is kernel text, but a copied tree
# given with --tracefs could hold anything.
_CONTROLS = {i: f"\\x{i:02x}" for i in range(0x20) if i != 0x09}
_CONTROLS.update({0x7f: "\\x7f", 0x0a: "\\n"})


def _visible(text: str) -> str:
    return text if text.isprintable() else text.translate(_CONTROLS)


def _kind_text(field) -> str:
    if field.count is not None:
        return f"{field.kind}[{field.count}]"
    return field.kind


def event_text(fmt) -> str:
    from rawtrace.output import table_text
    rows = []
    any_notes = any(f.notes for f in fmt.all_fields)
    for field in fmt.all_fields:
        row = [str(field.offset), str(field.size), "1" if field.signed else "0", _visible(field.type),
               _visible(field.name) + ("" if not field.common else " *"), _kind_text(field)]
        if any_notes:
            row.append(_visible("; ".join(field.notes)))
        rows.append(row)
    headers = ["OFFSET", "SIZE", "SIGNED", "TYPE", "NAME", "KIND"] + (["NOTES"] if any_notes else [])
    lines = [f"{_visible(fmt.system)}:{_visible(fmt.name)}  ID {fmt.id}", table_text(rows, headers),
             "(* common field)", f"print fmt: {_visible(fmt.print_fmt)}"]
    lines += [f"note: {_visible(note)}" for note in fmt.notes]
    return "\n".join(lines)


def run(args, host) -> int:
    catalog = open_catalog(host)
    names = catalog.resolve(args.events)
    formats = [catalog.format(system, name) for system, name in names]
    as_array = len(formats) > 1 or any(not _is_plain_name(p) for p in args.events)
    out = sys.stdout
    if args.json:
        import json
        if as_array:
            # One event per line: compact lines use the C encoder (indent= would use the slow Python one).
            body = ",\n".join(json.dumps(event_json(f), ensure_ascii=False) for f in formats)
            out.write(f"[\n{body}\n]\n" if body else "[]\n")
        else:
            out.write(json.dumps(event_json(formats[0]), indent=2, ensure_ascii=False) + "\n")
        return 0
    out.write("\n\n".join(event_text(f) for f in formats) + "\n")
    return 0


def _is_plain_name(pattern: str) -> bool:
    return not any(c in pattern for c in "*?[") and not pattern.rstrip().endswith((":", "/"))
