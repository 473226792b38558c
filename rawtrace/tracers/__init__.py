"""The tools built on the event pipeline: one module each, registered here (name -> module, summary).

Adding a tool is one file, rawtrace/tracers/NAME.py defining `TOOL = SomeTool` (a rawtrace.tracers.base.Tool),
plus one row below; the CLI lists and runs it like any other command."""

TOOLS: dict[str, tuple[str, str]] = {
    "syscount": ("rawtrace.tracers.syscount", "count syscalls system-wide, with errors and latency"),
    "sched": ("rawtrace.tracers.sched", "run-queue latency: which tasks wait for a CPU, and how long"),
    "exec": ("rawtrace.tracers.exec", "every program started, with its whole argv, parent and result (execsnoop)"),
    "files": ("rawtrace.tracers.files", "who opens, reads, writes, creates, renames, deletes which file (fatrace)"),
}
