"""`rawtrace decode`: decode saved trace_pipe_raw sub-buffers offline, merged in timestamp order."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rawtrace.errors import DecodeError, UsageError

HELP = "decode saved trace_pipe_raw sub-buffers offline"
EPILOG = """\
Each FILE holds raw sub-buffers as read from per_cpu/cpuN/trace_pipe_raw, for example saved on a
device without rawtrace by:  cat /sys/kernel/tracing/per_cpu/cpu0/trace_pipe_raw > cpu0.raw
The formats and sub-buffer layout come from --tracefs DIR: a copy of that device's tracefs (or of
its events/ directory); by default the live tracefs of this machine. A FILE's CPU comes from --cpu,
else from a name like cpu0.raw (or a per_cpu/cpu0/ directory), else from its position.
A trace-cmd trace.dat FILE is decoded with the formats it carries (zstd needs the zstd program).

examples:
  rawtrace decode cpu0.raw cpu1.raw --tracefs ./device-tracefs
  rawtrace decode --tracefs ./events --cpu 2 capture.bin
  rawtrace decode cpu*.raw --tracefs ./device-tracefs --json | head
  rawtrace decode trace.dat
"""

_CPU_NAME = re.compile(r"(?:^|[^a-z])cpu(\d+)(?:$|[^0-9])", re.IGNORECASE)


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="raw sub-buffer files, one per CPU ('-' = stdin); or one trace-cmd trace.dat")
    parser.add_argument("--cpu", type=int, metavar="N", help="the CPU the (single) FILE was read from")
    parser.add_argument("--byteorder", choices=("little", "big"), default=sys.byteorder,
                        help=f"byte order of the traced kernel (default: this machine's, {sys.byteorder})")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def file_cpu(path: str, position: int) -> int:
    """The CPU a raw file holds: from a cpuN in its name or its directory's name, else its position."""
    p = Path(path)
    for name in (p.name, p.parent.name):
        match = _CPU_NAME.search(name)
        if match:
            return int(match.group(1))
    return position


def _optional_text(directories: list[Path], name: str) -> str | None:
    from rawtrace.host import read_text_or_none
    for base in directories:
        text = read_text_or_none(base / name)
        if text is not None:
            return text
    return None


def _locate(host) -> Path:
    if host.tracefs_override is not None:
        return Path(host.tracefs_override)
    from rawtrace.tracefs.discover import find_tracefs
    return find_tracefs(host, mount=False).path


def _file_pages(path: str, data: bytes, cpu: int, layout, decoders, errors: list):
    """Item lists (one per sub-buffer) of one file; a decode error is recorded and ends this file only."""
    from rawtrace.parse.ringbuf import iter_page_lists
    try:
        yield from iter_page_lists(layout, data, cpu, decoders, source=path)
    except DecodeError as exc:
        errors.append(exc.message)


def _read_input(path: str):
    """The bytes of a FILE: mapped when it is a regular file (captures can be large), '-' is stdin."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            try:
                import mmap
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):
                return f.read()          # empty file, pipe or a file system that cannot map
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _from_tracefs(args, host):
    """Layout, decoders, comms and clock from a tracefs copy (or the live tracefs)."""
    from rawtrace.comm import parse_saved_cmdlines
    from rawtrace.parse.record import DecoderSet
    from rawtrace.parse.ringbuf import PageLayout
    from rawtrace.tracefs.events import EventCatalog, events_dir_of

    directory = _locate(host)
    events_dir = events_dir_of(directory)
    if not (events_dir / "header_page").is_file():
        raise UsageError(f"{directory} has neither events/header_page nor header_page",
                         hint="pass --tracefs with a copy of the device's tracefs or of its events/ dir")
    catalog = EventCatalog(events_dir)
    layout = PageLayout.from_headers(catalog.header_page(), catalog.header_event(), args.byteorder)
    decoders = DecoderSet(catalog.by_id, args.byteorder)
    # saved_cmdlines and trace_clock sit beside events/ in a tracefs copy.
    beside = [events_dir.parent, events_dir] if events_dir.name == "events" else [events_dir, events_dir.parent]
    cmdlines = _optional_text(beside, "saved_cmdlines")
    comms = parse_saved_cmdlines(cmdlines) if cmdlines else {}
    match = re.search(r"\[(\S+)\]", _optional_text(beside, "trace_clock") or "")
    return layout, decoders, comms, match.group(1) if match else "local", str(events_dir)


def _from_tracedat(path: str):
    """Layout, decoders, comms, clock and per-CPU data of a trace-cmd trace.dat file."""
    from rawtrace.comm import parse_saved_cmdlines
    from rawtrace.parse.record import DecoderSet
    from rawtrace.parse.tracedat import read_tracedat

    dat = read_tracedat(path)
    buffer = dat.buffer()
    cpus = {cpu: dat.cpu_data(buffer, cpu) for cpu in sorted(buffer.cpus)}
    return (dat.page_layout(buffer), DecoderSet(dat.formats(), dat.byteorder), parse_saved_cmdlines(dat.cmdlines),
            buffer.clock or dat.clock, cpus)


def run(args, host) -> int:
    from rawtrace.parse.ringbuf import merge_chunks_by_time
    from rawtrace.parse.tracedat import MAGIC
    from rawtrace.render_event import json_lines, text_lines

    if args.cpu is not None and len(args.files) > 1:
        raise UsageError("--cpu names the CPU of a single FILE",
                         hint="name several files after their CPUs instead (cpu0.raw cpu1.raw ...)")
    inputs = [(path, _read_input(path)) for path in args.files]
    streams, errors = [], []
    tracedat = [path for path, data in inputs if data[:len(MAGIC)] == MAGIC]
    if tracedat:
        if len(inputs) > 1:
            raise UsageError(f"{tracedat[0]} is a trace.dat file: decode it on its own")
        layout, decoders, comms, clock, cpus = _from_tracedat(tracedat[0])
        for cpu, data in cpus.items():
            streams.append(_file_pages(tracedat[0], data, cpu, layout, decoders, errors))
        formats_from = tracedat[0]
    else:
        layout, decoders, comms, clock, formats_from = _from_tracefs(args, host)
        for position, (path, data) in enumerate(inputs):
            cpu = args.cpu if args.cpu is not None else file_cpu(path, position)
            streams.append(_file_pages(path, data, cpu, layout, decoders, errors))

    out = sys.stdout
    write = out.write
    # One rendered block per merged chunk: a write() or a generator step per line would cost about
    # as much as rendering the line.
    for chunk in merge_chunks_by_time(streams):
        if args.json:
            lines = json_lines(chunk, comms)
        else:
            lines = text_lines(chunk, comms, clock)
        lines.append("")
        write("\n".join(lines))
    out.flush()
    for event_id, reason in sorted(decoders.broken.items()):
        sys.stderr.write(f"rawtrace: note: event ID {event_id} shown undecoded: {reason}\n")
    unknown = {event_id: n for event_id, n in decoders.unknown.items() if event_id not in decoders.broken}
    if unknown:
        ids = ", ".join(f"{event_id} ({count})" for event_id, count in sorted(unknown.items()))
        sys.stderr.write(f"rawtrace: note: records of event IDs with no format in {formats_from}: {ids}\n")
    if errors:
        for message in errors[:-1]:
            sys.stderr.write(f"rawtrace: {message}\n")
        raise DecodeError(errors[-1])
    return 0
