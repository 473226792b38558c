"""Event sources behind one interface: the live instance (direct or spooled), trace.dat files, saved raw pages.

A source is opened for a set of events and yields time-ordered lists of decoded records
(rawtrace.parse.record.Event, Lost, UnknownEvent) from `batches()`; an empty list means "nothing new
for now" (live only), so the consumer can run its interval ticks. Every source also tells its clock,
whether its time stamps are nanoseconds, the formats of its events, and what it knows of process names
(a /proc to read live; saved_cmdlines / saved_tgids offline). A tool never knows which one it got.

    source = open_input("trace.dat")          # or LiveSource(LiveOptions(...), host)
    source.open(["raw_syscalls:*"])
    for batch in source.batches():
        ...
    source.close()
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rawtrace.errors import DecodeError, KernelRefused, UsageError
from rawtrace.parse.record import NS_CLOCKS, DecoderSet, Lost

# Pseudo fields every event accepts in a kernel filter.
_FILTER_SPECIAL = {"comm", "COMM", "cpu", "CPU", "common_cpu", "common_comm", "common_timestamp"}
_FILTER_IDENT_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\b([A-Za-z_][A-Za-z0-9_]*)\b')
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
TASK_COMM_LEN = 16
# Sub-buffers taken per CPU in one read round. A round's records are all alive until its batch is handled,
# so big rounds keep thousands of Events (and their field dicts) alive at once: Python's cyclic collector
# then runs on them again and again (measured over a 200k x openat+read+close flood under `trace --json`:
# 0.55 s of collections at 64 per CPU, 0.22 s at 8, under 0.01 s at 4). A few more reads per round cost less.
PAGES_PER_ROUND = 4


def clock_is_ns(clock: str) -> bool:
    """True for trace clocks counting nanoseconds; False for counters (counter, x86-tsc, ppc-tb)."""
    return clock in NS_CLOCKS


def filter_identifiers(expr: str) -> set[str]:
    """Field names an event filter expression uses (quoted strings and numbers are not names)."""
    return {m.group(1) for m in _FILTER_IDENT_RE.finditer(expr) if m.group(1)}


def check_comm(name: str) -> str:
    """A --comm value the kernel can match: non-empty, at most 15 bytes, no quotes or control characters."""
    if not name:
        raise UsageError("--comm NAME must not be empty")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in name):
        raise UsageError("--comm NAME must not contain control characters")
    if '"' in name or "\\" in name:
        raise UsageError("--comm NAME must not contain quotes or backslashes")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > TASK_COMM_LEN - 1:
        raise UsageError(f"--comm NAME is {size} bytes long; the kernel keeps only {TASK_COMM_LEN - 1} "
                         "(a process name is cut to 15 bytes), so it would match nothing",
                         hint=f"use the first 15 bytes: {name.encode()[:15].decode('utf-8', 'ignore')!r}")
    return name


def cgroup_pids(directory: Path) -> list[int]:
    """The processes of a cgroup v1 or v2 directory (cgroup.procs, else tasks)."""
    from rawtrace.tasks import ascii_int
    for name in ("cgroup.procs", "tasks"):
        try:
            text = (Path(directory) / name).read_text(errors="replace")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UsageError(f"cannot read {directory}/{name}: {exc.strerror}") from None
        return sorted({p for p in map(ascii_int, text.split()) if p is not None})
    raise UsageError(f"{directory} is not a cgroup directory (no cgroup.procs or tasks file)")


@dataclasses.dataclass
class SourceSummary:
    """What a source saw: pages, losses (by CPU), decode problems. Shared by every kind of source."""

    pages: int = 0
    lost: int = 0
    lost_unknown_pages: int = 0
    lost_by_cpu: dict = dataclasses.field(default_factory=dict)
    kernel_overrun: dict = dataclasses.field(default_factory=dict)
    decode_errors: list = dataclasses.field(default_factory=list)
    duration: float = 0.0
    spooled: bool = False
    spool_peak_bytes: int = 0
    spool_max_gap: float = 0.0
    max_lag: float = 0.0
    stopped_at: float | None = None       # monotonic time recording stopped
    spooler_exit: str | None = None      # how the spooler child ended, if it died early
    undecoded_bytes: int = 0              # recorded but not decoded (the drain after a signal gave up)
    recorded: float | None = None         # seconds of recording (live), when it was stopped before the end
    drain: float = 0.0                    # seconds spent decoding what was recorded after recording stopped

    def note_lost(self, rec: Lost) -> None:
        if rec.count < 0:
            self.lost_unknown_pages += 1
        else:
            self.lost += rec.count
        self.lost_by_cpu[rec.cpu] = self.lost_by_cpu.get(rec.cpu, 0) + max(rec.count, 0)


def project(fmt, keep: set[str] | None):
    """A copy of an event format that decodes only the fields in `keep` (None: all of them). The
    decoder then skips the others: no unpacking, smaller dicts."""
    if keep is None or fmt is None:
        return fmt
    common = tuple(f for f in fmt.common_fields if f.name in ("common_type", "common_pid", "common_flags",
                                                                "common_preempt_count") or f.name in keep)
    fields = tuple(f for f in fmt.fields if f.name in keep)
    return fmt._replace(common_fields=common, fields=fields)


class _Formats:
    """id → EventFormat for the decoders, projected where a consumer asked for fewer fields."""

    def __init__(self, lookup, wanted: dict | None, names: dict) -> None:
        self._lookup = lookup
        self._wanted = wanted or {}
        self._names = names                 # id -> (system, event) for the events decoded
        self._cache: dict[int, Any] = {}

    def __call__(self, event_id: int):
        if event_id in self._cache:
            return self._cache[event_id]
        pair = self._names.get(event_id)
        fmt = None
        if pair is not None:
            fmt = project(self._lookup(event_id), self._wanted.get(pair))
        self._cache[event_id] = fmt
        return fmt


class Source:
    """The interface every source offers (see the module docstring)."""

    kind = "?"
    clock = "local"
    host = None

    def __init__(self) -> None:
        self.summary = SourceSummary()
        self.selected: list[tuple[str, str]] = []
        self.ids: dict[int, tuple[str, str]] = {}
        self._stop = False

    @property
    def ns(self) -> bool:
        return clock_is_ns(self.clock)

    def format(self, system: str, name: str):
        """The EventFormat of an event of this source, or None."""
        raise NotImplementedError

    def available(self, system: str, name: str) -> bool:
        return self.format(system, name) is not None

    def open(self, events: list[tuple[str, str]], *, wanted: dict | None = None) -> None:
        raise NotImplementedError

    def batches(self) -> Iterator[list]:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop after what was recorded so far has been delivered (safe from a signal handler)."""
        self._stop = True

    def stop_recording(self) -> None:
        """Stop taking new events now; what was recorded is still delivered."""
        self._stop = True

    def now(self) -> int | None:
        """The trace clock now (live sources), or None."""
        return None

    def task_seed(self) -> tuple[Path | None, dict, dict]:
        """(/proc to consult or None, saved comms, saved tgids)."""
        return None, {}, {}

    def arch(self) -> str:
        """The arch of the traced kernel: syscall numbers and flag values are named with its tables."""
        from rawtrace.syscalls.arches import host_arch
        return host_arch(self.host)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------
# Offline sources


class _PagesBase(Source):
    """Shared by trace.dat and raw page files: per-CPU data decoded page by page, merged by time."""

    def __init__(self) -> None:
        super().__init__()
        self.layout = None
        self.byteorder = "little"
        self.saved_comms: dict[int, str] = {}
        self.saved_tgids: dict[int, int] = {}
        self.cpu_data: list[tuple[str, int, Any]] = []     # (source name, cpu, bytes)
        self.decoders: DecoderSet | None = None
        self._by_name: dict[tuple[str, str], Any] = {}

    def _index(self, formats: dict) -> None:
        self._all_formats = formats
        for fmt in formats.values():
            self._by_name[(fmt.system, fmt.name)] = fmt

    def format(self, system: str, name: str):
        return self._by_name.get((system, name))

    def event_names(self) -> list[tuple[str, str]]:
        return sorted(self._by_name)

    def resolve(self, patterns: list[str]) -> list[tuple[str, str]]:
        """system:event names or globs against the events this recording has formats for."""
        from fnmatch import fnmatchcase
        out: list[tuple[str, str]] = []
        for pattern in patterns:
            system, _, name = pattern.rpartition(":")
            hits = [pair for pair in self.event_names()
                    if fnmatchcase(pair[1], name) and (not system or fnmatchcase(pair[0], system))]
            if not hits:
                raise UsageError(f"no event {pattern!r} in this recording")
            out.extend(h for h in hits if h not in out)
        return out

    def open(self, events: list[tuple[str, str]] | None = None, *, wanted: dict | None = None) -> None:
        """Decode `events` (None: every event of the recording); others are skipped unread."""
        if events is None:
            events = self.event_names()
        self.selected = [pair for pair in events if pair in self._by_name]
        self.ids = {self._by_name[pair].id: pair for pair in self.selected}
        lookup = self._all_formats.get
        self.decoders = DecoderSet(_Formats(lookup, wanted, self.ids), self.byteorder)

    def task_seed(self):
        return None, self.saved_comms, self.saved_tgids

    def batches(self) -> Iterator[list]:
        from rawtrace.parse.ringbuf import merge_chunks_by_time
        streams = [self._pages(name, cpu, data) for name, cpu, data in self.cpu_data]
        for chunk in merge_chunks_by_time(streams):
            if self._stop:
                return
            yield chunk

    def _pages(self, name: str, cpu: int, data) -> Iterator[list]:
        """One list of records per sub-buffer; a bad sub-buffer is reported and skipped, the next one read."""
        from rawtrace.parse.ringbuf import PageDecodeError, decode_page
        layout, decoders, summary = self.layout, self.decoders, self.summary
        view = memoryview(data)
        step = layout.subbuf_size
        for index, begin in enumerate(range(0, len(view), step)):
            try:
                items = decode_page(layout, view[begin:begin + step], cpu, decoders, index=index, source=name)
            except PageDecodeError as exc:
                summary.decode_errors.append(exc.message)
                items = exc.partial
            except DecodeError as exc:
                summary.decode_errors.append(exc.message)
                continue
            summary.pages += 1
            if items:
                if items[0].__class__ is Lost:       # decode_page puts a page's Lost marker first, if any
                    summary.note_lost(items[0])
                yield items


class TraceDatSource(_PagesBase):
    """A trace-cmd trace.dat (v6/v7): formats, saved cmdlines, clock and per-CPU pages from the file."""

    kind = "trace.dat"

    def __init__(self, path: str, data=None) -> None:
        super().__init__()
        from rawtrace.comm import parse_saved_cmdlines
        from rawtrace.parse.tracedat import OPTION_UNAME, read_tracedat
        self.path = path
        dat = read_tracedat(data if data is not None else path)
        buffer = dat.buffer()
        self.dat = dat
        self.layout = dat.page_layout(buffer)
        self.byteorder = dat.byteorder
        # v6 files keep the clock only in their TRACECLOCK option (their buffer record has none).
        self.clock = (dat.clock if dat.version == 6 else buffer.clock) or buffer.clock or dat.clock or "local"
        self.saved_comms = parse_saved_cmdlines(dat.cmdlines or "")
        self._index(dat.formats())
        # The recording machine's `uname` (option 5, "Linux host release machine"), when trace-cmd saved it.
        self.machine = None
        for option, payload in dat.options:
            if option == OPTION_UNAME:
                words = payload.split(b"\0", 1)[0].decode("ascii", "replace").split()
                self.machine = words[-1] if words else None
        self.cpu_data = [(path, cpu, dat.cpu_data(buffer, cpu)) for cpu in sorted(buffer.cpus)]


    def arch(self) -> str:
        from rawtrace.syscalls.arches import arch_for_machine
        found = arch_for_machine(self.machine) if self.machine else None
        return found.name if found is not None else super().arch()


class PagesSource(_PagesBase):
    """Raw sub-buffers saved from per_cpu/cpuN/trace_pipe_raw, with formats from a tracefs copy."""

    kind = "pages"

    def __init__(self, files: list[tuple[str, int, Any]], tracefs_dir: Path, byteorder: str) -> None:
        super().__init__()
        from rawtrace.comm import parse_saved_cmdlines
        from rawtrace.host import read_text_or_none
        from rawtrace.parse.ringbuf import PageLayout
        from rawtrace.tasks import parse_saved_tgids
        from rawtrace.tracefs.events import EventCatalog, events_dir_of
        events_dir = events_dir_of(tracefs_dir)
        if not (events_dir / "header_page").is_file():
            raise UsageError(f"{tracefs_dir} has neither events/header_page nor header_page",
                             hint="pass --tracefs with a copy of the device's tracefs or of its events/ dir")
        catalog = EventCatalog(events_dir)
        self.catalog = catalog
        self.byteorder = byteorder
        self.layout = PageLayout.from_headers(catalog.header_page(), catalog.header_event(), byteorder)
        self.formats_from = str(events_dir)
        # saved_cmdlines, saved_tgids and trace_clock sit beside events/ in a tracefs copy.
        beside = [events_dir.parent, events_dir] if events_dir.name == "events" else [events_dir, events_dir.parent]

        def text(name: str) -> str | None:
            for base in beside:
                found = read_text_or_none(base / name)
                if found is not None:
                    return found
            return None
        self.saved_comms = parse_saved_cmdlines(text("saved_cmdlines") or "")
        self.saved_tgids = parse_saved_tgids(text("saved_tgids") or "")
        match = re.search(r"\[(\S+)\]", text("trace_clock") or "")
        self.clock = match.group(1) if match else "local"
        self.cpu_data = files
        self._lazy_catalog = catalog

    def format(self, system: str, name: str):
        try:
            return self.catalog.format(system, name)
        except Exception:  # noqa: BLE001 - an event this copy has no (readable) format for
            return None

    def event_names(self) -> list[tuple[str, str]]:
        return sorted(self.catalog.resolve(["*:*"]))

    def resolve(self, patterns: list[str]) -> list[tuple[str, str]]:
        return self.catalog.resolve(patterns)

    def open(self, events: list[tuple[str, str]] | None = None, *, wanted: dict | None = None) -> None:
        if events is None:
            # Everything: decode by ID on demand, without listing every format up front.
            self.selected = []
            self.ids = {}
            self.decoders = DecoderSet(self.catalog.by_id, self.byteorder)
            self._all = True
            return
        self._all = False
        self.selected = [pair for pair in events if self.format(*pair) is not None]
        self.ids = {self.format(*pair).id: pair for pair in self.selected}
        self.decoders = DecoderSet(_Formats(self.catalog.by_id, wanted, self.ids), self.byteorder)


# ---------------------------------------------------------------------------------------------------
# The live source


@dataclasses.dataclass
class LiveOptions:
    """What to trace and how (the shared flag vocabulary of the tracing commands)."""

    probes: list[str] = dataclasses.field(default_factory=list)
    filter: str | None = None
    pids: list[int] = dataclasses.field(default_factory=list)
    comm: str | None = None
    cgroup: str | Path | None = None
    buffer_kb: int | None = None
    clock: str = "mono"
    spool: bool = True
    spool_mb: int | None = None
    instance_name: str | None = None
    preflight: bool = True
    tick: float = 0.1
    page_sink: Any = None          # fn(cpu, page bytes) for every sub-buffer read, before decoding
    duration: float | None = None  # stop recording after this many seconds (the spooler does it on time)


class LiveSource(Source):
    """A private tracefs instance with the events enabled, read per CPU (through the spooler child by
    default), merged in time order. Everything it creates is removed by close()."""

    kind = "live"

    def __init__(self, options: LiveOptions, host=None) -> None:
        super().__init__()
        from rawtrace.host import Host
        self.options = options
        self.host = host or Host.from_env()
        self.clock = options.clock
        self.pids = sorted(set(options.pids))
        self.instance = None
        self.catalog = None
        self.filter_skipped: list[str] = []
        self.comm_filter_in_kernel = False
        self.probe_events: list[tuple[str, str]] = []
        self._buffers = None
        self._source = None
        self._probe_handle = None
        self.taint_at_start: int | None = None    # read when string-fetching uprobes are created
        self._closed = False
        self._recording = False
        self._stop_timer = None
        self._started_at = 0.0
        if options.spool_mb is not None and options.spool_mb <= 0:
            raise UsageError(f"spool limit must be positive, not {options.spool_mb} MiB")
        if options.comm is not None:
            check_comm(options.comm)
        if options.filter is not None and not options.filter.strip():
            raise UsageError("--filter EXPR must not be empty")
        if options.cgroup is not None and not str(options.cgroup).strip():
            raise UsageError("--cgroup DIR must not be empty")

    # -- setup ---------------------------------------------------------------------------------
    def prepare(self, patterns: list[str], needs: set[str] | None = None) -> None:
        """Preflight, tracefs, the event catalogue and probes: what resolving event names needs."""
        from rawtrace.tracefs.discover import find_tracefs
        from rawtrace.tracefs.events import EventCatalog
        options = self.options
        if options.preflight:
            from rawtrace import doctor
            wanted = {"tracefs", "tracepoints"} | set(needs or ())
            if any("sys" in pattern for pattern in patterns):
                wanted.add("syscalls")
            if options.probes:
                from rawtrace.probes import ProbeSpec
                wanted |= {ProbeSpec.parse(text).feature for text in options.probes} & doctor.NEEDS
            doctor.preflight(self.host, needs=wanted)
        self.tracefs = find_tracefs(self.host).path
        if options.cgroup is not None:
            self.pids = sorted(set(self.pids) | set(cgroup_pids(Path(options.cgroup))))
            if not self.pids:
                raise UsageError(f"cgroup {options.cgroup} has no processes to trace")
        for pid in self.pids:
            if not self.host.path(f"/proc/{pid}").exists():
                raise UsageError(f"no process with pid {pid}")
        if options.probes and self._probe_handle is None:
            self.probe_events = self._create_probes()
        self.catalog = EventCatalog(self.tracefs / "events")

    def resolve(self, patterns: list[str]) -> list[tuple[str, str]]:
        return self.catalog.resolve(patterns) if patterns else []

    def format(self, system: str, name: str):
        try:
            return self.catalog.format(system, name)
        except Exception:  # noqa: BLE001 - not on this kernel, or unreadable
            return None

    def available(self, system: str, name: str) -> bool:
        return (self.tracefs / "events" / system / name / "format").is_file()

    def open(self, events: list[tuple[str, str]], *, wanted: dict | None = None,
             unfiltered: set | None = None) -> None:
        """Create the instance, enable `events` (filters from the options apply to the events not in
        `unfiltered`: helper events must see every task), then start recording."""
        from rawtrace.parse.format import parse_header_event, parse_header_page
        from rawtrace.parse.ringbuf import PageLayout
        from rawtrace.tracefs.instance import Instance
        from rawtrace.tracefs.reader import CLOCK_IDS, BufferReader, Merger
        if self.catalog is None:
            self.prepare([f"{s}:{n}" for s, n in events])
        options = self.options
        selected = list(dict.fromkeys(list(events) + [e for e in self.probe_events if e not in events]))
        self.selected = selected
        self.instance = inst = Instance.create(self.tracefs, options.instance_name)
        inst.set_clock(options.clock)
        if options.buffer_kb:
            self._set_buffer(inst, options.buffer_kb)
        if self.pids:
            inst.set_option("event-fork", True)
            inst.set_event_pids(self.pids)
        self._apply_filters(inst, [e for e in selected if e not in (unfiltered or set())])
        formats = {}
        for system, name in selected:
            fmt = self.catalog.format(system, name)
            formats[fmt.id] = fmt
            self.ids[fmt.id] = (system, name)
        for system, name in selected:
            inst.enable_event(system, name)
        header = parse_header_page(inst.read("events/header_page"))
        layout = PageLayout.from_headers(header, parse_header_event(inst.read("events/header_event")))
        self.layout = layout
        self.decoders = DecoderSet(_Formats(formats.get, wanted, self.ids))
        self._buffers = BufferReader(inst.path, inst.cpus(), header.subbuf_size)
        self._merger = Merger(list(self._buffers.readers), slack=int(0.005 * 1e9))
        self._clock_id = CLOCK_IDS.get(options.clock)
        self._source = self._buffers
        if options.spool:
            from rawtrace.tracefs.spool import DEFAULT_LIMIT_MB, Spool
            limit = (options.spool_mb or DEFAULT_LIMIT_MB) << 20
            self._source = Spool(self._buffers, clock_id=self._clock_id, limit_bytes=limit,
                                 stop_after=options.duration, tracing_on=inst.path / "tracing_on")
            self._source.start()
            self.summary.spooled = True
        if not self.pids and (inst.path / "set_event_notrace_pid").exists():
            # Tracing everyone: leave rawtrace's own reads and writes (and its spooler's) out of its
            # trace, or the copying would feed itself.
            own = [os.getpid()] + ([self._source.child] if options.spool else [])
            inst.write("set_event_notrace_pid", " ".join(map(str, own)))
        self._started_at = time.monotonic()
        inst.set_tracing_on(True)
        self._recording = True

    def _set_buffer(self, inst, kb: int) -> None:
        try:
            inst.set_buffer_kb(kb)
        except (KernelRefused, OSError) as exc:
            available = _available_kb(self.host)
            cpus = max(1, len(inst.cpus()))
            most = f"; about {available // cpus} KiB per CPU is free" if available else ""
            raise UsageError(f"the kernel cannot allocate --buffer-kb {kb} per CPU "
                             f"({getattr(exc, 'strerror', None) or exc}){most}") from None

    def _create_probes(self) -> list[tuple[str, str]]:
        from rawtrace.probes import (
            ProbeSpec,
            fetches_user_string,
            kernel_taint,
            resolve,
            uprobe_string_refusal,
        )
        from rawtrace.tracefs.dynevents import DynamicEvents
        resolved = [resolve(ProbeSpec.parse(text), self.host) for text in self.options.probes]
        if any(fetches_user_string(r.spec) for r in resolved):
            refusal = uprobe_string_refusal(self.host)
            if refusal is not None:
                raise UsageError(f"string-fetching uprobes refused: {refusal}",
                                 hint="fetch a fixed array instead (e.g. +0(%di):u64[32]), or clear "
                                      "kernel.panic_on_warn")
            self.taint_at_start = kernel_taint(self.host)
        handle = DynamicEvents(self.tracefs, host=self.host)
        self._probe_handle = handle
        return [(system, name) for system, name in handle.create(resolved)]

    def _apply_filters(self, inst, selected: list[tuple[str, str]]) -> None:
        options = self.options
        comm_expr = f'comm == "{options.comm}"' if options.comm is not None else None
        if not options.filter and comm_expr is None:
            return
        names = filter_identifiers(options.filter) if options.filter else set()
        if options.filter and not _QUOTED_RE.sub("", options.filter).isascii():
            raise UsageError(f"filter {options.filter!r} has non-ASCII characters outside quotes "
                             "(field names and operators are ASCII)")
        applied = 0
        comm_everywhere = comm_expr is not None
        for system, name in selected:
            fmt = self.catalog.format(system, name)
            have = {f.name for f in fmt.all_fields} | _FILTER_SPECIAL
            user = None
            if options.filter:
                if names <= have:
                    user = f"({options.filter})"
                else:
                    self.filter_skipped.append(f"{system}:{name}")
            if comm_expr is not None:
                try:
                    inst.set_filter(system, name, f"{user} && {comm_expr}" if user else comm_expr)
                    applied += user is not None
                    continue
                except KernelRefused:
                    comm_everywhere = False          # this kernel cannot: comm is matched in user space
                    if user is None:
                        continue
            if user is not None:
                try:
                    inst.set_filter(system, name, user)
                except KernelRefused as exc:
                    raise UsageError(f"the kernel refused filter {options.filter!r} for {system}:{name}: "
                                     f"{exc.message}") from None
                applied += 1
        self.comm_filter_in_kernel = comm_everywhere
        if options.filter and applied == 0:
            raise UsageError(f"no selected event has the fields of filter {options.filter!r}",
                             hint="see `rawtrace format EVENT` for an event's fields")

    def task_seed(self):
        return self.host.path("/proc"), {}, {}

    def now(self) -> int | None:
        if self._clock_id is not None:
            return time.clock_gettime_ns(self._clock_id)
        return None

    # -- stopping --------------------------------------------------------------------------------
    def stop_after(self, seconds: float) -> None:
        """Stop recording `seconds` from now, whatever the decoder's lag (a timer thread, so a decoder
        at low priority still stops the kernel writing on time)."""
        # Counted from the moment recording started (set-up after it is part of the duration).
        if self._started_at:
            seconds = max(0.0, seconds - (time.monotonic() - self._started_at))
        timer = threading.Timer(seconds, self.stop_recording)
        timer.daemon = True
        self._stop_timer = timer
        timer.start()

    def stop_recording(self) -> None:
        """The kernel stops writing now; what it wrote is still delivered (safe from a signal handler
        or another thread)."""
        if self._recording and self.instance is not None and not self._closed:
            self._recording = False
            self.summary.stopped_at = time.monotonic()
            try:
                self.instance.set_tracing_on(False)
            except OSError:
                pass
        self._stop = True

    def stop(self) -> None:
        self.stop_recording()

    @property
    def recording(self) -> bool:
        return self._recording

    def backlog_bytes(self) -> int:
        return self._source.backlog() if self._source is not None else 0

    # -- reading ---------------------------------------------------------------------------------
    def _read_round(self) -> tuple[bool, list]:
        """Read every CPU once: (all CPUs drained, released records)."""
        merger = self._merger
        decoders = self.decoders
        layout = self.layout
        summary = self.summary
        sink = self.options.page_sink
        now = self.now()
        all_drained = True
        from rawtrace.parse.ringbuf import PageDecodeError, decode_page
        for cpu, pages, drained, drained_at in self._source.take(now, PAGES_PER_ROUND):
            if pages:
                summary.pages += len(pages)
                records: list = []
                for page in pages:
                    if sink is not None:
                        sink(cpu, page)
                    try:
                        items = decode_page(layout, page, cpu, decoders)
                    except PageDecodeError as exc:
                        # Keep what decoded; the rest of the page is counted, not hidden.
                        summary.decode_errors.append(str(exc))
                        items = exc.partial
                    if items:
                        if items[0].__class__ is Lost:   # decode_page puts a page's Lost marker first, if any
                            summary.note_lost(items[0])
                        records += items
                merger.add(cpu, records)
            if drained:
                merger.mark_drained(cpu, drained_at)
            else:
                all_drained = False
        if self.summary.spooler_exit is None and self.summary.spooled:
            self._check_spooler()
        if now is None and all_drained:
            # A clock user space cannot read: after a round in which every CPU was empty, nothing
            # older than the newest record seen can still arrive.
            newest = merger.newest()
            for cpu in self._source.cpus:
                merger.mark_drained(cpu, newest)
        return all_drained, merger.ready()

    def batches(self) -> Iterator[list]:
        if self._source is None:
            raise RuntimeError("LiveSource not opened")
        tick_ms = max(1, int(self.options.tick * 1000))
        source = self._source
        try:
            while not self._stop:
                all_drained, ready = self._read_round()
                if ready:
                    self._note_lag(ready)
                yield ready
                if self._stop:
                    break
                if all_drained or source.idle:
                    source.wait(tick_ms)
            # Stop the writers, let the spooler copy what is left, then take everything.
            self.stop_recording()
            source.finish()
            if self.summary.spooled and self.summary.spooler_exit is None:
                self._check_spooler()
            final = False
            while True:
                drained, ready = self._read_round()
                records = ready + self._merger.flush() if final else ready
                if records:
                    yield records
                if final:
                    break
                final = drained
            crosscheck = self._stats_crosscheck()
            if crosscheck:
                yield crosscheck
        finally:
            summary = self.summary
            ended = time.monotonic()
            summary.duration = ended - self._started_at
            if summary.stopped_at is not None:
                summary.recorded = summary.stopped_at - self._started_at
                summary.drain = ended - summary.stopped_at
            summary.spool_peak_bytes = getattr(source, "peak_bytes", 0)
            marks = getattr(source, "marks", None)
            if marks is not None:
                summary.spool_max_gap = marks.max_gap_us / 1e6

    def _note_lag(self, ready: list) -> None:
        if self._clock_id is not None and self.ns:
            lag = (time.clock_gettime_ns(self._clock_id) - ready[-1].ts) / 1e9
            self.summary.max_lag = max(self.summary.max_lag, lag)

    def _check_spooler(self) -> None:
        """Say so if the spooler child died while recording (its pages are then read directly, and
        what the kernel overwrote meanwhile is counted as lost)."""
        status = getattr(self._source, "exit_status", None)
        # A spooler asked to stop exits with 0; anything else means it died.
        if status is not None and status != 0:
            self.summary.spooler_exit = (f"killed by signal {-status}" if status < 0 else f"exit status {status}")

    def _stats_crosscheck(self) -> list:
        """The kernel's per-CPU overrun counts against the losses the pages reported: the difference
        (pages that said "lost, count unknown", or losses after the last page read) as Lost records."""
        out = []
        stamp = self.now() or 0
        for cpu in self._source.cpus:
            try:
                stats = self.instance.stats(cpu)
            except OSError:
                continue
            kernel = int(stats.get("overrun", 0)) + int(stats.get("dropped events", 0)) + \
                int(stats.get("commit overrun", 0))
            self.summary.kernel_overrun[cpu] = kernel
            seen = self.summary.lost_by_cpu.get(cpu, 0)
            if kernel > seen:
                extra = kernel - seen
                self.summary.lost += extra
                self.summary.lost_by_cpu[cpu] = kernel
                out.append(LostFromStats(cpu, stamp, extra))
        return out

    # -- teardown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Remove everything this source created: tracing off, spooler ended, instance removed, then
        probes. Safe to call more than once, from any exit path."""
        if self._closed:
            return
        if self._stop_timer is not None:
            self._stop_timer.cancel()
        errors = []
        if self.instance is not None:
            try:
                self.instance.set_tracing_on(False)
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                errors.append(exc)
        self._closed = True
        self._recording = False
        if self._source is not None and self._source is not self._buffers:
            try:
                self._source.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        if self._buffers is not None:
            self._buffers.close()
        if self.instance is not None:
            try:
                self.instance.destroy()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        if self._probe_handle is not None:
            try:
                self._probe_handle.remove()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        if errors:
            raise errors[0]


def _available_kb(host) -> int | None:
    """MemAvailable from /proc/meminfo, in KiB."""
    for line in (host.read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit():
                return int(parts[1])
    return None


class LostFromStats(Lost):
    """Losses found in the per-CPU stats at the end rather than in a page (same fields as Lost)."""

    __slots__ = ()


# ---------------------------------------------------------------------------------------------------
# Choosing an offline source


_CPU_NAME = re.compile(r"(?:^|[^a-z])cpu(\d+)(?:$|[^0-9])", re.IGNORECASE)


def file_cpu(path: str, position: int) -> int:
    """The CPU a raw file holds: from a cpuN in its name or its directory's name, else its position."""
    p = Path(path)
    for name in (p.name, p.parent.name):
        match = _CPU_NAME.search(name)
        if match:
            return int(match.group(1))
    return position


def read_input(path: str):
    """The bytes of an input FILE ('-' = stdin, bounded): regular files only, mapped, never blocking."""
    from rawtrace.inputs import read_input as safe_read
    return safe_read(path)


def open_input(paths: list[str], host=None, *, cpu: int | None = None, byteorder: str | None = None) -> Source:
    """The offline source for FILE arguments: one trace.dat, or raw sub-buffer files (one per CPU) whose
    formats come from --tracefs DIR (or this machine's tracefs)."""
    import sys

    from rawtrace.parse.tracedat import MAGIC
    if not paths:
        raise UsageError("name an input FILE")
    if any(not path for path in paths):
        raise UsageError("an input FILE name must not be empty")
    if cpu is not None:
        if len(paths) > 1:
            raise UsageError("--cpu names the CPU of a single FILE",
                             hint="name several files after their CPUs instead (cpu0.raw cpu1.raw ...)")
        if cpu < 0:
            raise UsageError(f"--cpu must be a CPU number (0 or more), not {cpu}")
    inputs = [(path, read_input(path)) for path in paths]
    tracedat = [path for path, data in inputs if data[:len(MAGIC)] == MAGIC]
    if tracedat:
        if len(inputs) > 1:
            raise UsageError(f"{tracedat[0]} is a trace.dat file: read it on its own")
        # By name, so that its messages name the file; stdin's bytes as they were read.
        source: Source = TraceDatSource(tracedat[0], inputs[0][1] if tracedat[0] == "-" else None)
    else:
        files = [(path, cpu if cpu is not None else file_cpu(path, n), data) for n, (path, data) in enumerate(inputs)]
        source = PagesSource(files, _tracefs_dir(host), byteorder or sys.byteorder)
    source.host = host          # a --root tree names the arch of raw pages from elsewhere
    return source


def _tracefs_dir(host) -> Path:
    if host is not None and host.tracefs_override is not None:
        return Path(host.tracefs_override)
    from rawtrace.host import Host
    from rawtrace.tracefs.discover import find_tracefs
    return find_tracefs(host or Host.from_env(), mount=False).path
