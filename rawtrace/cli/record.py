"""`rawtrace record`: trace events into a trace-cmd trace.dat, with the raw pages exactly as the kernel wrote them."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from rawtrace.errors import UsageError
from rawtrace.tracers.base import Needs, Tool

HELP = "record events into a trace.dat (trace-cmd report, KernelShark and every rawtrace tool read it)"
EPILOG = """\
examples:
  rawtrace record -o trace.dat raw_syscalls:* sched:sched_switch -d 5
  rawtrace record -o trace.dat 'syscalls:sys_*_openat' -n bash        # only tasks named bash
  rawtrace record -o trace.dat raw_syscalls:* --probe 'uprobe:libc:open64 path=arg1:ustring' -- ls /
  rawtrace record -o trace.dat sched:* --perfetto timeline.json -- make -j2
  rawtrace record -o trace.dat raw_syscalls:* --compression zstd -d 10   # ~10x smaller, version 7
  trace-cmd report trace.dat            # or: rawtrace decode trace.dat, rawtrace syscount -i trace.dat

The file is a trace-cmd trace.dat, version 6 (read by every trace-cmd since 2.x and by KernelShark),
or version 7 with --compression zstd (sections and pages compressed in chunks as trace-cmd writes
them; --file-version chooses). With sub-buffers larger than a page (buffer_subbuf_size_kb) the
file's page size is the sub-buffer size, which is how trace-cmd 3.1.6 reads them. It holds the header pages, the formats of every recorded event and of the ftrace events,
kallsyms and printk_formats (so %pS and trace_printk render offline), the process names
(saved_cmdlines plus what rawtrace knew), the trace clock, per-CPU stats and the per-CPU sub-buffers
byte for byte: lost events stay visible where the kernel marked them. The fork/exec/rename/exit
events that keep process names are recorded too, so tools replayed over the file (-i FILE) know
which thread belongs to which process.

With `-- COMMAND [ARG...]`, COMMAND is started, traced from its first instruction (with the children
it starts) and the recording ends when it exits. Pages are spooled to a directory next to FILE
while recording; FILE appears only once complete. With raw_syscalls:sys_enter the formats of the
syscalls:sys_enter_* events go in too (not their records): the argument names and types that make
syscall numbers render as strace-like calls offline as they do live."""


def _syscall_signatures(tracefs: Path, recorded: set) -> list[tuple[str, str]]:
    """The formats of the syscalls:sys_enter_* events not recorded themselves: the argument names and
    types of each syscall, so that the raw_syscalls numbers of the recording render as strace-like calls
    offline as they do live (`openat(AT_FDCWD, 0x..., O_RDONLY)`, not six plain numbers). Readers treat
    them as events that have no records (trace-cmd report does too)."""
    out = []
    for path in sorted((tracefs / "events" / "syscalls").glob("sys_enter_*/format")):
        if ("syscalls", path.parent.name) in recorded:
            continue
        try:
            out.append(("syscalls", path.read_text()))
        except OSError:
            pass
    return out


class RecordTool(Tool):
    """Enables the events and keeps nothing of the decoded records: the pages go to the recorder."""

    name = "record"

    def __init__(self, args, ctx) -> None:
        super().__init__(args, ctx)
        self.recorder: Recorder = args._recorder

    def patterns(self) -> list[str]:
        return list(self.args.events)

    def needs(self) -> Needs:
        source = self.ctx.source
        events = source.resolve(self.args.events) if self.args.events else []
        # Nothing is looked at while recording: decode no fields (cheaper), except what the task table reads.
        return Needs(events=events, fields={pair: set() for pair in events}, tasks=True,
                     preflight={"uprobes"} if self.args.probe else set())

    def start(self) -> None:
        self.recorder.started(self.ctx)

    def on_lost(self, lost) -> None:
        self.recorder.lost_records.append(lost)

    def finish(self) -> None:
        self.recorder.finished(self.ctx)


class Recorder:
    """Collects the pages (page_sink) into per-CPU spool files and what the file needs besides them."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.spool_dir = output.parent / f".{output.name}.rawtrace-{os.getpid()}"
        self.spool_dir.mkdir()
        self.files: dict[int, object] = {}
        self.pages: dict[int, int] = {}
        self.subbuf_size: int | None = None
        self.lost_records: list = []
        self.texts: dict = {}
        self.release = None                    # called once recording runs (starts a -- COMMAND)
        self._lock = threading.Lock()

    def sink(self, cpu: int, page) -> None:
        f = self.files.get(cpu)
        if f is None:
            with self._lock:
                f = self.files[cpu] = open(self.spool_dir / f"cpu{cpu}.raw", "wb")  # noqa: SIM115
        f.write(page)
        self.pages[cpu] = self.pages.get(cpu, 0) + 1

    def started(self, ctx) -> None:
        """Everything the file needs from tracefs that may vanish at the end (probe formats)."""
        source = ctx.source
        inst = source.instance
        tracefs = Path(source.tracefs)
        self.texts["header_page"] = inst.read("events/header_page")
        self.texts["header_event"] = inst.read("events/header_event")
        try:
            self.texts["trace_clock"] = inst.read("trace_clock")
        except OSError:
            self.texts["trace_clock"] = None
        formats = []
        recorded = set(source.ids.values())
        for system, name in source.ids.values():
            formats.append((system, (tracefs / "events" / system / name / "format").read_text()))
        if ("raw_syscalls", "sys_enter") in recorded:
            formats += _syscall_signatures(tracefs, recorded)
        self.texts["formats"] = formats
        ftrace = []
        for path in sorted((tracefs / "events" / "ftrace").glob("*/format")):
            try:
                ftrace.append(path.read_text())
            except OSError:
                pass
        self.texts["ftrace"] = ftrace
        self.subbuf_size = source.layout.subbuf_size
        ctx.out.note(f"Recording {len(source.ids)} events to {self.output} (clock {source.clock}, instance "
                     f"{inst.name})... Ctrl-C to end.", prefix=False)
        if self.release is not None:
            self.release()

    def finished(self, ctx) -> None:
        source = ctx.source
        stats = {}
        for cpu in source.instance.cpus():
            try:
                stats[cpu] = source.instance.read(f"per_cpu/cpu{cpu}/stats")
            except OSError:
                pass
        self.texts["stats"] = stats
        self.texts["cpus"] = list(stats)
        self.texts["cmdlines"] = _cmdlines(source, ctx.tasks)
        self.texts["clock"] = source.clock

    def close_spool(self) -> None:
        for f in self.files.values():
            f.close()

    def write(self, host, version: int | None, compression: str = "none") -> int:
        from rawtrace.parse.tracedat_write import TraceDatContent, write_tracedat
        texts = self.texts
        kallsyms = host.read_text("/proc/kallsyms") if host.path("/proc/kallsyms").exists() else ""
        tracefs = Path(texts.get("tracefs", ""))
        printk = ""
        if tracefs and (tracefs / "printk_formats").exists():
            printk = (tracefs / "printk_formats").read_text()
        cpus = set(texts.get("cpus", [])) | set(self.files)
        cpu_data = {cpu: (self.spool_dir / f"cpu{cpu}.raw") if cpu in self.files else b"" for cpu in cpus}
        uname = " ".join(os.uname())
        content = TraceDatContent(
            header_page=texts["header_page"], header_event=texts["header_event"],
            # The file's page size is the sub-buffer size: readers walk the data in steps of it, and
            # trace-cmd 3.1.6 ignores v7's per-buffer size (verified: it cannot read 8 KiB sub-buffers
            # in a file whose page size says 4096, and reads them when it says 8192, v6 or v7).
            page_size=self.subbuf_size or os.sysconf("SC_PAGE_SIZE"), subbuf_size=self.subbuf_size,
            ftrace_formats=texts["ftrace"], event_formats=texts["formats"], kallsyms=kallsyms,
            printk_formats=printk, cmdlines=texts["cmdlines"], clock=texts["clock"],
            clocks_text=texts.get("trace_clock"), cpu_stats=texts.get("stats", {}), cpu_data=cpu_data,
            byteorder=sys.byteorder, long_size=8 if sys.maxsize > 2 ** 32 else 4, uname=uname,
            version_text="rawtrace", trace_id=int.from_bytes(os.urandom(8), "little"),
            cpu_count=os.cpu_count())
        return write_tracedat(self.output, content, version, compression)

    def remove_spool(self) -> None:
        self.close_spool()
        shutil.rmtree(self.spool_dir, ignore_errors=True)


def _cmdlines(source, tasks) -> str:
    """saved_cmdlines of the kernel plus every name the task table learnt (later names win)."""
    names: dict[int, str] = {}
    try:
        from rawtrace.comm import parse_saved_cmdlines
        names.update(parse_saved_cmdlines((Path(source.tracefs) / "saved_cmdlines").read_text()))
    except OSError:
        pass
    for tid, comm in tasks.names.items():
        if tid and comm and not comm.startswith("<"):
            names[tid] = comm
    # One "<pid> <comm>" per line; a name with a newline would break the format: keep it out.
    return "".join(f"{tid} {comm}\n" for tid, comm in sorted(names.items()) if "\n" not in comm)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rawtrace.cli.tool import add_shared_arguments
    parser.add_argument("events", nargs="*", metavar="EVENT",
                        help="event names, system:event or globs (as `rawtrace format` takes them)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the trace.dat to write")
    parser.add_argument("--probe", action="append", default=[], metavar="SPEC",
                        help="add a uprobe (repeatable; see `rawtrace probes --help`)")
    parser.add_argument("--filter", metavar="EXPR", help="kernel filter expression for the events that have its fields")
    parser.add_argument("--file-version", type=int, choices=(6, 7), default=None,
                        help="trace.dat version (default 6; 7 with --compression zstd)")
    parser.add_argument("--compression", choices=("none", "zstd"), default="none",
                        help="zstd: a version 7 file with compressed sections and pages (needs the zstd program)")
    parser.add_argument("--perfetto", metavar="JSON", help="also write a timeline (rawtrace timeline) of the recording")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite FILE if it exists")
    add_shared_arguments(parser, RecordTool)
    parser.usage = "rawtrace record -o FILE [options] [EVENT ...] [-- COMMAND [ARG ...]]"
    # `-- COMMAND ARG...` is split off before argparse sees it: its arguments may look like options,
    # and argparse would hand them to the EVENT list.
    parse_args = parser.parse_args

    def split_command(argv=None, namespace=None):
        argv = list(sys.argv[1:] if argv is None else argv)
        command: list[str] = []
        if "--" in argv:
            at = argv.index("--")
            argv, command = argv[:at], argv[at + 1:]
        parsed = parse_args(argv, namespace)
        parsed.command = command
        return parsed
    parser.parse_args = split_command


_GATE = "import os, sys; os.read(int(sys.argv[1]), 1); os.execvp(sys.argv[2], sys.argv[2:])"


def run(args, host) -> int:
    from rawtrace.cli.tool import Signals
    from rawtrace.emit import Emitter
    from rawtrace.sources import LiveOptions, LiveSource, check_comm
    from rawtrace.stream import Stream
    command = list(getattr(args, "command", None) or [])
    if args.input:
        raise UsageError("record traces live; to look at a recording use decode, timeline or a tool with -i")
    if not args.events and not args.probe:
        raise UsageError("name at least one EVENT or --probe SPEC to record")
    if args.tid:
        raise UsageError("record cannot select threads (-t); use -p PID (the kernel follows a process)")
    if args.comm is not None:
        check_comm(args.comm)
    output = Path(args.output)
    if args.compression == "zstd" and args.file_version == 6:
        raise UsageError("--compression zstd needs --file-version 7 (version 6 files are never compressed)")
    if args.compression == "zstd" and shutil.which("zstd") is None:
        raise UsageError("--compression zstd needs the zstd program", hint="install zstd")
    if output.exists() and not args.force:
        raise UsageError(f"{output} exists (use -f to overwrite)")
    if not output.parent.is_dir():
        raise UsageError(f"no directory {output.parent} for {output.name}")
    pids = list(args.pid)
    child = gate_w = None
    if command:
        if shutil.which(command[0]) is None:
            raise UsageError(f"command not found: {command[0]}")
        gate_r, gate_w = os.pipe()
        child = subprocess.Popen([sys.executable, "-c", _GATE, str(gate_r), *command], pass_fds=(gate_r,))
        os.close(gate_r)
        pids.append(child.pid)
    recorder = Recorder(output)
    args._recorder = recorder
    out = Emitter(json=args.json, ns=True)
    written = None
    try:
        options = LiveOptions(probes=list(args.probe), filter=args.filter, pids=pids, comm=args.comm,
                              cgroup=args.cgroup, buffer_kb=args.buffer_kb, clock=args.clock,
                              spool=not args.no_spool, spool_mb=args.spool_mb, page_sink=recorder.sink)
        source = LiveSource(options, host)
        recorder.texts["tracefs"] = None
        signals = Signals(source.stop_recording)
        try:
            with source:
                stream = Stream(source, RecordTool, args, out, duration=args.duration, pids=pids, comm=args.comm)
                stream.setup()
                recorder.texts["tracefs"] = str(source.tracefs)
                if child is not None:
                    def release() -> None:
                        os.write(gate_w, b"g")
                        os.close(gate_w)

                    def watch() -> None:
                        child.wait()
                        source.stop_recording()
                    recorder.release = release
                    threading.Thread(target=watch, daemon=True).start()
                if args.nice > 0:
                    os.nice(args.nice)
                stream.run()
                summary = source.summary
                records = stream.records
        finally:
            signals.restore()
        recorder.close_spool()
        version = recorder.write(host, args.file_version, args.compression)
        written = output
    finally:
        if child is not None:
            if child.poll() is None and written is None:
                child.kill()
            try:
                os.close(gate_w)
            except OSError:
                pass
            child.wait()
        recorder.remove_spool()
    pages = sum(recorder.pages.values())
    size = output.stat().st_size
    info = {"output": str(output), "version": version, "pages": pages, "records": records,
            "bytes": size, "lost": summary.lost, "lost_unknown_pages": summary.lost_unknown_pages,
            "lost_by_cpu": summary.lost_by_cpu, "seconds": round(summary.duration, 3)}
    if args.json:
        out.record("summary", info)
    else:
        loss = f"{summary.lost} lost" + (f" (+{summary.lost_unknown_pages} pages with an unknown count)"
                                          if summary.lost_unknown_pages else "")
        out.note(f"{records} records in {pages} pages, {loss}, {size} bytes -> {output} (trace.dat v{version}, "
                 f"{summary.duration:.3f} s)", prefix=False)
    if args.perfetto:
        from rawtrace.cli.timeline import TimelineTool
        from rawtrace.cli.tool import run_tool
        timeline_args = argparse.Namespace(**{**vars(args), "input": [str(output)], "output": args.perfetto,
                                              "no_syscalls": False, "no_sched": False, "duration": None,
                                              "pid": [], "tid": [], "comm": None, "nice": 0})
        run_tool(TimelineTool, timeline_args, host)
    out.flush()
    if child is not None and child.returncode:
        return child.returncode if 0 < child.returncode < 128 else 1
    return 0
