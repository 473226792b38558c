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

examples:
  rawtrace decode cpu0.raw cpu1.raw --tracefs ./device-tracefs
  rawtrace decode --tracefs ./events --cpu 2 capture.bin
  rawtrace decode cpu*.raw --tracefs ./device-tracefs --json | head
"""

_CPU_NAME = re.compile(r"(?:^|[^a-z])cpu(\d+)(?:$|[^0-9])", re.IGNORECASE)


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="raw sub-buffer files (one per CPU)")
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


class EventsDir:
    """Formats, header files, saved_cmdlines and clock of a tracefs copy or an events/ directory."""

    def __init__(self, directory: Path) -> None:
        if (directory / "events" / "header_page").is_file():
            self.events = directory / "events"
            self.top = directory
        elif (directory / "header_page").is_file():
            self.events = directory
            self.top = directory.parent
        else:
            raise UsageError(f"{directory} has neither events/header_page nor header_page",
                             hint="pass --tracefs with a copy of the device's tracefs or of its events/ dir")
        self._paths: dict[int, Path] | None = None
        self.long_size: int | None = None

    def read(self, relative: str) -> str:
        path = self.events / relative
        try:
            return path.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None

    def optional(self, name: str) -> str | None:
        for base in (self.top, self.events):
            try:
                return (base / name).read_text(errors="replace")
            except OSError:
                continue
        return None

    def format_by_id(self, event_id: int):
        """The EventFormat of an event ID, or None; the id files are scanned once, on first use."""
        from rawtrace.parse.format import parse_format
        if self._paths is None:
            self._paths = {}
            for id_file in self.events.glob("*/*/id"):
                try:
                    self._paths[int(id_file.read_text().strip())] = id_file.parent
                except (OSError, ValueError):
                    continue
            if not self._paths:
                # A copy made without the id files: every format names its ID.
                for fmt_file in self.events.glob("*/*/format"):
                    try:
                        match = re.search(r"^ID:\s*(\d+)", fmt_file.read_text(), re.MULTILINE)
                    except OSError:
                        continue
                    if match:
                        self._paths[int(match.group(1))] = fmt_file.parent
        directory = self._paths.get(event_id)
        if directory is None:
            return None
        path = directory / "format"
        try:
            text = path.read_text()
        except OSError:
            return None
        return parse_format(text, system=directory.parent.name, source=str(path), long_size=self.long_size)


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


def run(args, host) -> int:
    from rawtrace.parse.format import parse_header_event, parse_header_page
    from rawtrace.parse.record import DecoderSet
    from rawtrace.parse.ringbuf import PageLayout, merge_by_time
    from rawtrace.render_event import item_json, item_text, parse_saved_cmdlines

    if args.cpu is not None and len(args.files) > 1:
        raise UsageError("--cpu names the CPU of a single FILE",
                         hint="name several files after their CPUs instead (cpu0.raw cpu1.raw ...)")
    events = EventsDir(_locate(host))
    header_page = parse_header_page(events.read("header_page"), source=str(events.events / "header_page"))
    header_event = parse_header_event(events.read("header_event"), source=str(events.events / "header_event"))
    events.long_size = header_page.commit_size
    layout = PageLayout.from_headers(header_page, header_event, args.byteorder)
    decoders = DecoderSet(events.format_by_id, args.byteorder)
    cmdlines = events.optional("saved_cmdlines")
    comms = parse_saved_cmdlines(cmdlines) if cmdlines else {}
    clock_text = events.optional("trace_clock") or ""
    match = re.search(r"\[(\S+)\]", clock_text)
    clock = match.group(1) if match else "local"

    streams, errors = [], []
    for position, path in enumerate(args.files):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        cpu = args.cpu if args.cpu is not None else file_cpu(path, position)
        streams.append(_file_pages(path, data, cpu, layout, decoders, errors))

    out = sys.stdout
    write = out.write
    merged = merge_by_time(streams)
    if args.json:
        import json
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        lines = (dumps(item_json(item, comms)) for item in merged)
    else:
        lines = (item_text(item, comms, clock) for item in merged)
    # Lines are written in batches: one write() per line would cost as much as rendering it.
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= 2048:
            batch.append("")
            write("\n".join(batch))
            batch.clear()
    if batch:
        batch.append("")
        write("\n".join(batch))
    out.flush()
    if decoders.unknown:
        ids = ", ".join(f"{event_id} ({count})" for event_id, count in sorted(decoders.unknown.items()))
        sys.stderr.write(f"rawtrace: note: records of event IDs with no format in {events.events}: {ids}\n")
    if errors:
        for message in errors[:-1]:
            sys.stderr.write(f"rawtrace: {message}\n")
        raise DecodeError(errors[-1])
    return 0
