"""Live tracing as a library: a private instance, per-CPU raw readers, decoding, merging, process names.

Example::

    import rawtrace.session as rs

    with rs.Session(events=["syscalls:sys_enter_openat", "syscalls:sys_exit_openat"], pid=1234) as s:
        for ev in s.events(duration=5):
            if isinstance(ev, rs.LostEvents):
                print("lost", ev.count, "on cpu", ev.cpu)
            else:
                print(f"{ev.ts:.6f} {ev.comm}-{ev.pid} {ev.name} {ev.fields} {ev.syscall or ''}")
    print(s.summary)          # events, lost, duration, per-CPU kernel overrun counts

`Session(...)` options: `events` (names, system:event, globs, as `rawtrace format` takes them), `probes`
(uprobe specs), `filter` (kernel filter expression), `pid` / `pids`, `comm`, `cgroup` (a cgroup directory),
`buffer_kb`, `clock` ("mono" by default: timestamps are CLOCK_MONOTONIC seconds), `pair` (pair syscall
enter/exit per thread into one strace-like line), `show_helpers` (also yield the fork/exec/rename events
used for process names), `spool` (copy pages through a spooler child process, see
rawtrace.tracefs.spool: lossless under floods however slowly events are consumed; off by default in the
library so that no child process appears in the caller's program unasked; `rawtrace trace` turns it on),
`spool_mb` (the most unconsumed spool kept before the kernel is left to overwrite). Entering the context creates everything; leaving it (normally, by an exception,
or by SIGTERM/SIGHUP turned into SystemExit by `rawtrace trace`) removes everything again.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rawtrace.comm import HELPER_EVENTS, CommTracker
from rawtrace.errors import KernelRefused, UsageError
from rawtrace.host import Host
from rawtrace.output import json_text
from rawtrace.tracefs.instance import Instance
from rawtrace.tracefs.reader import CLOCK_IDS, BufferReader, Merger

if TYPE_CHECKING:
    from rawtrace.tracefs.events import EventCatalog

NS_CLOCKS = frozenset({"local", "global", "uptime", "perf", "mono", "mono_raw", "boot", "tai"})
# Pseudo fields every event accepts in a kernel filter.
_FILTER_SPECIAL = {"comm", "COMM", "cpu", "CPU", "common_cpu", "common_comm", "common_timestamp"}
_FILTER_IDENT_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\b([A-Za-z_][A-Za-z0-9_]*)\b')


@dataclass(slots=True)
class TraceEvent:
    """One traced event, with its process name at event time. `ts` is seconds on `Session.clock`
    (raw counts for the counter/x86-tsc clocks); `ts_raw` the trace-clock value."""

    ts: float
    ts_raw: int
    cpu: int
    pid: int
    comm: str
    system: str
    event: str
    fields: dict
    syscall: str | None = None        # strace-like rendering of a paired enter/exit (or unpaired half)
    duration: float | None = None     # seconds between a paired enter and exit
    flags: int = 0
    preempt_count: int = 0
    format: Any = field(default=None, repr=False, compare=False)   # the EventFormat

    @property
    def name(self) -> str:
        return f"{self.system}:{self.event}"

    def to_json(self) -> dict:
        fields = {k: v if v.__class__ is int else _jsonable(v) for k, v in self.fields.items()}
        out = {"ts": round(self.ts, 9), "cpu": self.cpu, "pid": self.pid, "comm": _jsonable(self.comm),
               "event": f"{self.system}:{self.event}", "fields": fields}
        if self.syscall is not None:
            out["syscall"] = self.syscall
        if self.duration is not None:
            out["duration"] = round(self.duration, 9)
        return out


@dataclass(frozen=True, slots=True)
class LostEvents:
    """`count` events the kernel overwrote on `cpu` before `ts` (-1: it did not say how many).
    `source` is "page" (the sub-buffer's missed-events flag) or "stats" (per_cpu stats at the end)."""

    ts: float
    cpu: int
    count: int
    source: str = "page"

    def to_json(self) -> dict:
        return {"lost": self.count, "cpu": self.cpu, "ts": round(self.ts, 9), "source": self.source}


@dataclass
class Summary:
    events: int = 0
    lost: int = 0
    lost_unknown_pages: int = 0
    duration: float = 0.0
    pages: int = 0
    spooled: bool = False
    spool_peak_bytes: int = 0      # the most spooled data waiting for the decoder at once
    max_lag: float = 0.0           # seconds the decoder was behind the newest event it had released
    spool_max_gap: float = 0.0     # longest pause of the spooler while pages were arriving (seconds)
    kernel_overrun: dict = field(default_factory=dict)   # cpu -> overrun + dropped from per_cpu stats
    unknown_ids: dict = field(default_factory=dict)
    decode_errors: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"events": self.events, "lost": self.lost, "duration": round(self.duration, 6),
                "pages": self.pages, "kernel_overrun": self.kernel_overrun, "spooled": self.spooled,
                "spool_peak_bytes": self.spool_peak_bytes, "max_lag": round(self.max_lag, 6)}


def _jsonable(value: Any) -> Any:
    cls = value.__class__
    if cls is int:
        return value
    if cls is tuple or cls is list:
        return [v if v.__class__ is int else _jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        # Strings carry the kernel's bytes losslessly as surrogates; JSON shows them as \xNN, as decode does.
        return json_text(value)
    return value


_json_str = None
_JSON_KEYS: dict[str, str] = {}
_JSON_EVENTS: dict[tuple[str, str], str] = {}
_JSON_COMMS: dict[str, str] = {}


def _json_text(value: Any) -> str:
    """One value as compact JSON text, exactly as json.dumps(_jsonable(value), ensure_ascii=False) writes it."""
    cls = value.__class__
    if cls is int:
        return int.__repr__(value)
    if cls is str:
        if not value.isascii():
            value = json_text(value)
        return _json_str(value)
    if cls is tuple or cls is list:
        if all(v.__class__ is int for v in value):
            return "[" + ",".join(map(int.__repr__, value)) + "]"
        return "[" + ",".join(map(_json_text, value)) + "]"
    if cls is bytes:
        return '"' + value.hex() + '"'
    import json
    return json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"))


def json_line(ev: TraceEvent) -> str:
    """`json.dumps(ev.to_json())` with compact separators, built directly (the text is the same; this is
    the hot path of `rawtrace trace --json`: the per-event parts that repeat are encoded once)."""
    global _json_str
    if _json_str is None:
        from json.encoder import encode_basestring
        _json_str = encode_basestring
    head = _JSON_EVENTS.get((ev.system, ev.event))
    if head is None:
        head = _JSON_EVENTS[(ev.system, ev.event)] = \
            ',"event":' + _json_str(f"{ev.system}:{ev.event}") + ',"fields":{'
    comm = _JSON_COMMS.get(ev.comm)
    if comm is None:
        if len(_JSON_COMMS) > 4096:
            _JSON_COMMS.clear()
        comm = _JSON_COMMS[ev.comm] = _json_text(ev.comm)
    keys = _JSON_KEYS
    parts = []
    for key, value in ev.fields.items():
        name = keys.get(key)
        if name is None:
            name = keys[key] = _json_str(key) + ":"
        parts.append(name + (int.__repr__(value) if value.__class__ is int else _json_text(value)))
    line = (f'{{"ts":{round(ev.ts, 9)!r},"cpu":{ev.cpu},"pid":{ev.pid},"comm":{comm}{head}'
            f'{",".join(parts)}}}')
    if ev.syscall is not None:
        line += ',"syscall":' + _json_str(ev.syscall)
    if ev.duration is not None:
        line += f',"duration":{round(ev.duration, 9)!r}'
    return line + "}"


def filter_identifiers(expr: str) -> set[str]:
    """Field names an event filter expression uses (quoted strings and numbers are not names)."""
    return {m.group(1) for m in _FILTER_IDENT_RE.finditer(expr) if m.group(1)}


def cgroup_pids(directory: Path) -> list[int]:
    """The processes of a cgroup v1 or v2 directory (cgroup.procs, else tasks)."""
    for name in ("cgroup.procs", "tasks"):
        try:
            text = (Path(directory) / name).read_text()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UsageError(f"cannot read {directory}/{name}: {exc.strerror}") from None
        return sorted({int(p) for p in text.split() if p.isdigit()})
    raise UsageError(f"{directory} is not a cgroup directory (no cgroup.procs or tasks file)")


class Session:
    """A live trace: see the module docstring. Not reusable: one start, one close."""

    def __init__(self, events: list[str] | None = None, *, probes: list[str] | None = None,
                 filter: str | None = None, pid: int | None = None, pids: list[int] | None = None,
                 comm: str | None = None, cgroup: str | Path | None = None, buffer_kb: int | None = None,
                 clock: str = "mono", pair: bool = True, show_helpers: bool = False,
                 host: Host | None = None, instance_name: str | None = None, preflight: bool = True,
                 tick: float = 0.1, spool: bool = False, spool_mb: int | None = None) -> None:
        self.patterns = list(events or [])
        self.probe_specs = list(probes or [])
        if not self.patterns and not self.probe_specs:
            raise UsageError("nothing to trace: name at least one event or --probe")
        self.filter = filter
        self.pids = sorted(set(([pid] if pid is not None else []) + list(pids or [])))
        self.comm_name = comm
        self.cgroup = Path(cgroup) if cgroup else None
        self.buffer_kb = buffer_kb
        self.clock = clock
        self.pair = pair
        self.show_helpers = show_helpers
        self.host = host or Host.from_env()
        self.instance_name = instance_name
        self.run_preflight = preflight
        self.tick = tick
        self.spool = spool
        self.spool_mb = spool_mb
        if spool_mb is not None and spool_mb <= 0:
            raise UsageError(f"spool limit must be positive, not {spool_mb} MiB")
        self.instance: Instance | None = None
        self.selected: list[tuple[str, str]] = []
        self.filter_skipped: list[str] = []
        self.comm_filter_in_kernel = False
        self.summary = Summary()
        self._buffers: BufferReader | None = None
        self._source = None          # the BufferReader, or the Spool that wraps it
        self._probe_handle = None
        self._probe_events: list[tuple[str, str]] = []
        self._stop = False
        self._started_at = 0.0
        self._closed = False

    # -- setup ---------------------------------------------------------------------------------
    def __enter__(self) -> Session:  # noqa: PYI034
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        from rawtrace.tracefs.discover import find_tracefs
        from rawtrace.tracefs.events import EventCatalog
        if self.run_preflight:
            from rawtrace import doctor
            needs = {"tracefs", "tracepoints"}
            if any("sys" in pattern for pattern in self.patterns):
                needs.add("syscalls")
            if self.probe_specs:
                from rawtrace.probes import ProbeSpec
                # The doctor checks uprobes/kprobes/eprobes; others (fprobes) are checked when created.
                needs |= {ProbeSpec.parse(text).feature for text in self.probe_specs} & doctor.NEEDS
            doctor.preflight(self.host, needs=needs)
        tracefs = find_tracefs(self.host).path
        self.tracefs = tracefs
        if self.cgroup is not None:
            self.pids = sorted(set(self.pids) | set(cgroup_pids(self.cgroup)))
            if not self.pids:
                raise UsageError(f"cgroup {self.cgroup} has no processes to trace")
        for pid in self.pids:
            if not self.host.path(f"/proc/{pid}").exists():
                raise UsageError(f"no process with pid {pid}")

        # Probes first, so that the catalog sees their events.
        probe_events = self._create_probes(tracefs) if self.probe_specs else []
        catalog = EventCatalog(tracefs / "events")
        selected = catalog.resolve(self.patterns) if self.patterns else []
        selected += [event for event in probe_events if event not in selected]
        self.catalog = catalog
        self.selected = selected
        self.instance = inst = Instance.create(tracefs, self.instance_name)
        inst.set_clock(self.clock)
        if self.buffer_kb:
            inst.set_buffer_kb(self.buffer_kb)
        if self.pids:
            inst.set_option("event-fork", True)
            inst.set_event_pids(self.pids)

        self._apply_filters(inst, catalog, selected)
        user = set(selected)
        # With the kernel filtering on comm, every event's name is known: no helper events needed.
        self._helpers = [] if self.comm_filter_in_kernel else \
            [h for h in HELPER_EVENTS if h not in user and inst.event_dir(*h).is_dir()]
        for system, name in selected + self._helpers:
            inst.enable_event(system, name)

        header = catalog.header_page()
        self._layout = header
        subbuf = inst.subbuf_size()
        if header.subbuf_size != subbuf:
            # Trust the instance's own header_page (it follows buffer_subbuf_size_kb).
            from rawtrace.parse.format import parse_header_page
            header = parse_header_page(inst.read("events/header_page"))
            self._layout = header
        self._decoders = self._make_decoders(catalog)
        self._user_set = set(selected)
        self._helper_ids = {fid for fid, pair in self._names.items() if pair in HELPER_EVENTS}
        self._lost_by_cpu: dict[int, int] = {}
        self._page_decoder = self._make_page_decoder()
        self.comms = CommTracker(self.host.path("/proc"), tracefs / "saved_cmdlines")
        # Names as of the start, so a process that execs during the trace keeps its old name before.
        self.comms.snapshot(self.pids or None)
        self._pairer = self._make_pairer()
        self._fast_exits = self._paired_exit_ids()
        self._buffers = BufferReader(inst.path, inst.cpus(), header.subbuf_size)
        self._merger = Merger(list(self._buffers.readers), slack=int(0.005 * 1e9))
        self._clock_id = CLOCK_IDS.get(self.clock)
        self._ns = self.clock in NS_CLOCKS
        self._source = self._buffers
        if self.spool:
            from rawtrace.tracefs.spool import DEFAULT_LIMIT_MB, Spool
            limit = (self.spool_mb or DEFAULT_LIMIT_MB) << 20
            self._source = Spool(self._buffers, clock_id=self._clock_id, limit_bytes=limit)
            self._source.start()
            self.summary.spooled = True
        if not self.pids and (inst.path / "set_event_notrace_pid").exists():
            # Tracing everyone: leave rawtrace's own reads and writes (and its spooler's) out of its trace,
            # or the copying would feed itself.
            own = [os.getpid()] + ([self._source.child] if self.spool else [])
            inst.write("set_event_notrace_pid", " ".join(map(str, own)))
        self._started_at = time.monotonic()
        inst.set_tracing_on(True)

    def _create_probes(self, tracefs: Path) -> list[tuple[str, str]]:
        from rawtrace.probes import ProbeSpec, resolve
        from rawtrace.tracefs.dynevents import DynamicEvents
        resolved = [resolve(ProbeSpec.parse(text), self.host) for text in self.probe_specs]
        handle = DynamicEvents(tracefs, host=self.host)
        self._probe_handle = handle
        out = [(system, name) for system, name in handle.create(resolved)]
        self._probe_events = out
        return out

    def _apply_filters(self, inst: Instance, catalog: EventCatalog, selected: list[tuple[str, str]]) -> None:
        comm_expr = None
        if self.comm_name is not None:
            if '"' in self.comm_name or "\\" in self.comm_name:
                raise UsageError("--comm NAME must not contain quotes or backslashes")
            comm_expr = f'comm == "{self.comm_name}"'
        if not self.filter and comm_expr is None:
            return
        names = filter_identifiers(self.filter) if self.filter else set()
        applied = 0
        comm_everywhere = comm_expr is not None
        for system, name in selected:
            fmt = catalog.format(system, name)
            have = {f.name for f in fmt.all_fields} | _FILTER_SPECIAL
            user = None
            if self.filter:
                if names <= have:
                    user = f"({self.filter})"
                else:
                    self.filter_skipped.append(f"{system}:{name}")
            if comm_expr is not None:
                try:
                    inst.set_filter(system, name, f"{user} && {comm_expr}" if user else comm_expr)
                    applied += user is not None
                    continue
                except KernelRefused:
                    if user is None:
                        comm_everywhere = False       # this kernel cannot: comm is matched in user space
                        continue
                    # Tell a bad user filter from a kernel without comm filtering: try it alone.
                    comm_everywhere = False
            if user is not None:
                inst.set_filter(system, name, user)
                applied += 1
        # Only if every event is filtered on comm in the kernel is the name known without tracking.
        self.comm_filter_in_kernel = comm_everywhere
        if self.filter and applied == 0:
            raise UsageError(f"no selected event has the fields of filter {self.filter!r}",
                             hint="see `rawtrace format EVENT` for an event's fields")

    def _make_decoders(self, catalog: EventCatalog):
        from rawtrace.parse.record import DecoderSet
        formats: dict[int, Any] = {}
        self._names: dict[int, tuple[str, str]] = {}
        for system, name in list(self.selected) + list(self._helpers):
            fmt = catalog.format(system, name)
            formats[fmt.id] = fmt
            self._names[fmt.id] = (system, name)
        return DecoderSet(formats)

    def _make_page_decoder(self):
        from rawtrace.parse.format import parse_header_event
        from rawtrace.parse.ringbuf import PageDecodeError, PageLayout, decode_page
        header_event = parse_header_event(self.instance.read("events/header_event"))
        layout = PageLayout.from_headers(self._layout, header_event)
        decoders = self._decoders
        summary = self.summary

        def decode(page: bytes, cpu: int) -> list:
            try:
                return decode_page(layout, page, cpu, decoders)
            except PageDecodeError as exc:
                # Keep what decoded; the rest of the page is counted, not hidden.
                summary.decode_errors.append(str(exc))
                return list(exc.partial)
        return decode

    def _make_pairer(self):
        """Syscall rendering (always) and enter/exit pairing (when both halves are traced)."""
        from rawtrace.syscalls import pairing, render
        from rawtrace.syscalls.arches import host_arch
        self._paired_names: set[str] = set()
        self._syscall_shapes: dict[str, tuple] = {}
        self._formatter = render.SyscallFormatter(host_arch(), resolver=self._resolve_syscall)
        selected = set(self.selected)
        for system, name in selected:
            if system == "syscalls" and name.startswith("sys_enter_") and \
                    ("syscalls", "sys_exit_" + name[10:]) in selected:
                self._paired_names.add(name[10:])
        self._pair_raw = ("raw_syscalls", "sys_enter") in selected and ("raw_syscalls", "sys_exit") in selected
        if not self.pair or not (self._paired_names or self._pair_raw):
            return None
        # One pairer per system: a syscall traced both as syscalls:* and raw_syscalls:* pairs twice.
        return {"syscalls": pairing.SyscallPairer(), "raw_syscalls": pairing.SyscallPairer()}

    def _resolve_syscall(self, nr: int):
        """nr → (name, [(argument, C type), ...]) for raw_syscalls events, from the table and formats."""
        table = getattr(self, "_syscall_table", None)
        if table is None:
            from rawtrace.syscalls.arches import host_arch
            from rawtrace.syscalls.tables import load_table
            table = self._syscall_table = load_table(host_arch())
        row = table.by_nr(nr)
        if row is None:
            return None
        params: list[tuple[str, str]] = []
        try:
            fmt = self.catalog.format("syscalls", f"sys_enter_{row.tracepoint or row.name}")
            params = [(f.name, f.type) for f in fmt.fields if f.name != "__syscall_nr"]
        except Exception:  # noqa: BLE001 - a format we cannot read only costs symbolic rendering
            params = [(f"arg{i}", "unsigned long") for i in range(6)]
        return row.name, params

    def _syscall_parts(self, ev: TraceEvent):
        """(kind, nr, name, call args or ret) of a syscall event, or None for other events."""
        fields = ev.fields
        if ev.system == "syscalls":
            shape = self._syscall_shapes.get(ev.event)
            if shape is None:
                shape = self._syscall_shape(ev)
            kind, name, params = shape
            if kind == "enter":
                return kind, fields.get("__syscall_nr"), name, [(p[0], p[1], fields.get(p[0])) for p in params]
            if kind == "exit":
                return kind, fields.get("__syscall_nr"), name, fields.get("ret")
        elif ev.system == "raw_syscalls":
            nr = fields.get("id")
            if ev.event == "sys_enter":
                name, args = self._formatter.raw_call_args(nr, list(fields.get("args") or ()))
                return "enter", nr, name, args
            if ev.event == "sys_exit":
                info = self._formatter.resolve(nr) if nr is not None else None
                return "exit", nr, info[0] if info else f"syscall_{nr}", fields.get("ret")
        return None

    def _syscall_shape(self, ev: TraceEvent) -> tuple:
        """(kind, syscall name, [(field, C type)]) of a syscalls:* event, worked out once per event."""
        if ev.event.startswith("sys_enter_"):
            params = [(f.name, f.type) for f in ev.format.fields] if ev.format else []
            shape = ("enter", ev.event[10:], params)
        elif ev.event.startswith("sys_exit_"):
            shape = ("exit", ev.event[9:], [])
        else:
            shape = (None, None, [])
        self._syscall_shapes[ev.event] = shape
        return shape

    def _pair(self, ev: TraceEvent) -> list[TraceEvent]:
        """Render a syscall event strace-style; with pairing, hold enters until their exit arrives."""
        parts = self._syscall_parts(ev)
        if parts is None:
            return [ev]
        kind, nr, name, payload = parts
        formatter = self._formatter
        pairer = self._pairer[ev.system] if self._pairer is not None else None
        paired = pairer is not None and (name in self._paired_names if ev.system == "syscalls" else self._pair_raw)
        if not paired:
            ev.syscall = formatter.format_call(name, payload) if kind == "enter" else \
                formatter.format_resumed(name, payload)
            return [ev]
        if kind == "enter":
            records = pairer.enter(ev.pid, ev.ts_raw, ev.cpu, nr, name, (ev, payload))
        else:
            records = pairer.exit(ev.pid, ev.ts_raw, ev.cpu, nr, name, payload)
            if not records:
                return []
        return [self._from_record(record, ev) for record in records]

    def _from_record(self, record, exit_event: TraceEvent | None) -> TraceEvent:
        formatter = self._formatter
        if record.kind == "resumed":
            ev = exit_event
            ev.syscall = formatter.format_resumed(record.name, record.ret)
            return ev
        enter_event, args = record.args
        ev = enter_event
        if record.kind == "pair":
            ev.syscall = formatter.render(record.name, args, record.ret)
            ev.duration = record.duration_ns / 1e9 if self._ns else float(record.duration_ns)
            ev.fields = dict(ev.fields, ret=record.ret)
        elif record.kind == "noreturn":
            ev.syscall = formatter.format_call(record.name, args) + " = ?"
        else:
            ev.syscall = formatter.format_unfinished(record.name, args)
        return ev

    # -- reading -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask events() to drain what is buffered and return (safe from a signal handler)."""
        self._stop = True

    def _trace_now(self) -> int | None:
        if self._clock_id is not None:
            return time.clock_gettime_ns(self._clock_id)
        return None

    def _read_round(self) -> bool:
        """Read every CPU once; True if all CPUs were drained."""
        merger = self._merger
        decode = self._page_decoder
        now = self._trace_now()
        all_drained = True
        for cpu, pages, drained, drained_at in self._source.take(now):
            if pages:
                self.summary.pages += len(pages)
                records = []
                for page in pages:
                    records.extend(decode(page, cpu))
                merger.add(cpu, records)
            if drained:
                merger.mark_drained(cpu, drained_at)
            else:
                all_drained = False
        if now is None and all_drained:
            # A clock user space cannot read: after a round in which every CPU was empty, nothing
            # older than the newest record seen can still arrive.
            newest = merger.newest()
            for cpu in self._source.cpus:
                merger.mark_drained(cpu, newest)
        return all_drained

    def _ready(self) -> list:
        """Released records of the merge, noting how far the decoder is behind the trace."""
        ready = self._merger.ready()
        if ready and self._clock_id is not None and self._ns:
            lag = (time.clock_gettime_ns(self._clock_id) - ready[-1].ts) / 1e9
            summary = self.summary
            summary.max_lag = max(summary.max_lag, lag)
        return ready

    def events(self, duration: float | None = None, count: int | None = None) -> Iterator[TraceEvent | LostEvents]:
        """Yield events in timestamp order until `duration` seconds pass, `count` events were yielded,
        stop() is called, or the consumer stops iterating. Lost events are yielded as LostEvents."""
        if self._source is None:
            raise RuntimeError("Session not started (use it as a context manager)")
        deadline = time.monotonic() + duration if duration is not None else None
        tick_ms = max(1, int(self.tick * 1000))
        yielded = 0
        try:
            while not self._stop:
                all_drained = self._read_round()
                for item in self._process(self._ready()):
                    yield item
                    if isinstance(item, TraceEvent):
                        yielded += 1
                        if count is not None and yielded >= count:
                            return
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if all_drained or self._source.idle:
                    timeout = tick_ms
                    if deadline is not None:
                        timeout = max(1, min(timeout, int((deadline - time.monotonic()) * 1000) + 1))
                    self._source.wait(timeout)
            # Stop the writers, let the spooler copy what is left, then take everything.
            self.instance.set_tracing_on(False)
            self._source.finish()
            # Released as they are decoded: a spool may hold far more than fits in memory as records.
            final = False
            while True:
                drained = self._read_round()
                records = self._merger.flush() if final else self._ready()
                for item in self._process(records):
                    yield item
                    if isinstance(item, TraceEvent):
                        yielded += 1
                        if count is not None and yielded >= count:
                            return
                if final:
                    break
                final = drained
            for item in self._flush_pairer():
                yield item
            for item in self._stats_crosscheck():
                yield item
        finally:
            self.summary.duration = time.monotonic() - self._started_at
            self.summary.spool_peak_bytes = getattr(self._source, "peak_bytes", 0)
            marks = getattr(self._source, "marks", None)
            if marks is not None:
                self.summary.spool_max_gap = marks.max_gap_us / 1e6

    def _seconds(self, ts: int) -> float:
        return ts / 1e9 if self._ns else float(ts)

    def _process(self, records) -> Iterator[TraceEvent | LostEvents]:
        names = self._names
        comms = self.comms
        show_helpers = self.show_helpers
        helper_ids = self._helper_ids
        user_comm = None if self.comm_filter_in_kernel else self.comm_name
        kernel_comm = self.comm_name if self.comm_filter_in_kernel else None
        summary = self.summary
        pairer = self._pairer
        seconds = self._seconds
        from_record = self._from_record
        fast_exits = self._fast_exits
        names_of = comms._names
        from rawtrace.parse.record import Lost
        for rec in records:
            if rec.__class__ is Lost:
                summary.lost += max(rec.count, 0)
                if rec.count < 0:
                    summary.lost_unknown_pages += 1
                self._lost_by_cpu[rec.cpu] = self._lost_by_cpu.get(rec.cpu, 0) + max(rec.count, 0)
                if pairer is not None:
                    for one in pairer.values():
                        one.lost(rec.cpu, rec.count)
                yield LostEvents(self._seconds(rec.ts), rec.cpu, rec.count)
                continue
            event_id = getattr(rec, "id", None)
            pair = names.get(event_id)
            if pair is None:
                summary.unknown_ids[event_id] = summary.unknown_ids.get(event_id, 0) + 1
                continue
            system, name = pair
            if event_id in helper_ids:
                if name == "sched_process_exec":
                    comms.observe(name, rec.fields, rec.pid)
                    comm = comms.comm(rec.pid)
                else:
                    comms.prime(name, rec.fields, rec.pid)
                    comm = comms.comm(rec.pid)
                    comms.observe(name, rec.fields, rec.pid)
                if not show_helpers and (system, name) not in self._user_set:
                    continue
            elif kernel_comm is not None:
                comm = kernel_comm
            else:
                comm = names_of.get(rec.pid) or comms.comm(rec.pid)
            if user_comm is not None and comm != user_comm:
                continue
            if event_id in fast_exits:
                # A paired exit: its TraceEvent is needed only when no enter is pending (RESUMED).
                nr, call = fast_exits[event_id](rec.fields)
                for record in pairer[system].exit(rec.pid, rec.ts, rec.cpu, nr, call, rec.fields.get("ret")):
                    exit_event = None
                    if record.kind == "resumed":
                        exit_event = TraceEvent(seconds(rec.ts), rec.ts, rec.cpu, rec.pid, comm, system, name,
                                                rec.fields, None, None, rec.flags, rec.preempt_count, rec.format)
                    summary.events += 1
                    yield from_record(record, exit_event)
                continue
            ev = TraceEvent(seconds(rec.ts), rec.ts, rec.cpu, rec.pid, comm, system, name, rec.fields,
                            None, None, rec.flags, rec.preempt_count, rec.format)
            if system in ("syscalls", "raw_syscalls"):
                for out in self._pair(ev):
                    summary.events += 1
                    yield out
                continue
            summary.events += 1
            yield ev

    def _paired_exit_ids(self) -> dict[int, Any]:
        """Event ID → fields → (nr, syscall name) for the exit events that pairing consumes."""
        out: dict[int, Any] = {}
        if self._pairer is None:
            return out
        formatter = self._formatter
        raw_names: dict[int, str] = {}

        def raw_exit(fields: dict) -> tuple:
            nr = fields.get("id")
            call = raw_names.get(nr)
            if call is None:
                info = formatter.resolve(nr) if nr is not None else None
                call = raw_names[nr] = info[0] if info else f"syscall_{nr}"
            return nr, call
        for event_id, (system, name) in self._names.items():
            if system == "raw_syscalls" and name == "sys_exit" and self._pair_raw:
                out[event_id] = raw_exit
            elif system == "syscalls" and name.startswith("sys_exit_") and name[9:] in self._paired_names:
                call = name[9:]
                out[event_id] = lambda fields, call=call: (fields.get("__syscall_nr"), call)
        return out

    def _flush_pairer(self) -> Iterator[TraceEvent]:
        if self._pairer is not None:
            records = [r for pairer in self._pairer.values() for r in pairer.flush()]
            for record in sorted(records, key=lambda r: r.enter_ts or 0):
                self.summary.events += 1
                yield self._from_record(record, None)

    def _stats_crosscheck(self) -> Iterator[LostEvents]:
        """Compare the kernel's per-CPU overrun counts with the losses the pages reported."""
        for cpu in self._source.cpus:
            try:
                stats = self.instance.stats(cpu)
            except OSError:
                continue
            kernel = int(stats.get("overrun", 0)) + int(stats.get("dropped events", 0)) + \
                int(stats.get("commit overrun", 0))
            self.summary.kernel_overrun[cpu] = kernel
            seen = self._lost_by_cpu.get(cpu, 0)
            if kernel > seen:
                # Pages that said "lost, count unknown" or losses after the last page read.
                extra = kernel - seen
                self.summary.lost += extra
                self._lost_by_cpu[cpu] = kernel
                yield LostEvents(self._seconds(self._trace_now() or 0), cpu, extra, "stats")

    # -- teardown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Remove everything this session created: tracing off, events off, filters cleared, instance
        removed, then probes. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        errors = []
        if self.instance is not None:
            try:
                self.instance.set_tracing_on(False)
            except Exception as exc:  # noqa: BLE001       # keep tearing down
                errors.append(exc)
        if self._source is not None and self._source is not self._buffers:
            try:
                self._source.close()         # the spooler child ends, its files go
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
