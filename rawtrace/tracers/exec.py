"""`rawtrace exec`: every exec attempt on the machine, with its whole argv, parent, result and resolved filename."""

# Sources, best first:
# - tracefs: syscalls:sys_enter/exit_execve(at) for the call and its result, sched:sched_process_exec for
#   the filename the kernel resolved and the new pid, and uprobes on the C library's execve, execveat and
#   fexecve that copy argv[i] in the kernel, at the call, as fixed-size arrays (rawtrace.execargs says why
#   not `ustring`). The argv pointer of the syscall event joins a probe hit to its call exactly.
# - 6.19+ kernels also record the filename string in the syscall event (`__filename_val`); argv stays a
#   pointer array there, so the probes are still what reads it.
# - Calls that do not go through the C library (static binaries, raw syscall(2), Go): a uprobe on
#   __libc_start_main reads argv in the new program when that one is dynamically linked. Otherwise, and for
#   arguments past the plan's limits: /proc/PID/cmdline read when the exec event is decoded (racy: a
#   process that has already exited or rewritten its cmdline gives nothing or something else; marked).
# - `--source proc` (and automatically when tracefs is refused, e.g. confidentiality lockdown): the proc
#   connector's exec events plus /proc/PID/cmdline. Failed execs are invisible there.

from __future__ import annotations

import argparse
import os
import re

from rawtrace import execargs as X
from rawtrace.errors import NotSupported, TracingBlocked, UsageError
from rawtrace.tracers.base import Needs, Tool

SYSCALL_EVENTS = {
    ("syscalls", "sys_enter_execve"): "execve",
    ("syscalls", "sys_enter_execveat"): "execveat",
}
EXIT_EVENTS = (("syscalls", "sys_exit_execve"), ("syscalls", "sys_exit_execveat"))
EXEC_EVENT = ("sched", "sched_process_exec")
FORK_EVENT = ("sched", "sched_process_fork")
EXIT_EVENT = ("sched", "sched_process_exit")
PROC_KIND = "procconn"
_NEEDS_QUOTES = re.compile(r'[\s"\'\\$`|&;<>(){}*?\[\]#~!]')


_RUNNING: list = []         # helpers started and not stopped yet (a fallback run must not start twice)


def _start_helper(helper) -> str:
    """Start a helper child (its start(); stop() registered for exit): "" once running, else why not."""
    import atexit
    try:
        helper.start()
    except (OSError, RuntimeError) as exc:
        return getattr(exc, "strerror", None) or str(exc)
    atexit.register(helper.stop)
    _RUNNING.append(helper)
    return ""


def _stop_helper(helper) -> None:
    import atexit
    helper.stop()
    atexit.unregister(helper.stop)
    if helper in _RUNNING:
        _RUNNING.remove(helper)


def _stop_helpers() -> None:
    """Stop the helpers of a run that did not get going (tracefs refused after the tool was made)."""
    while _RUNNING:                 # (_stop_helper takes each out of the list)
        _stop_helper(_RUNNING[-1])


def quote_arg(arg: bytes, cut: bool = False) -> str:
    """One argument for the text line: bare when harmless, else in double quotes with `"` and `\\`
    escaped; control characters and bytes that are not UTF-8 as escapes (never raw); `...` when cut."""
    text = arg.decode("utf-8", "surrogateescape")
    if text and not _NEEDS_QUOTES.search(text) and text.isprintable():
        out = text
    else:
        from rawtrace.render_event import safe_text
        # safe_text escapes backslashes, control characters and bytes that are not UTF-8; then `"`.
        out = '"' + safe_text(text).replace('"', '\\"') + '"'
    return out + ("..." if cut else "")


def format_argv(argv: list[bytes], cut: list[bool], more: bool) -> str:
    parts = [quote_arg(arg, cut[i] if i < len(cut) else False) for i, arg in enumerate(argv)]
    if more:
        parts.append("...")
    return " ".join(parts)


def argv_text(argv: list[bytes]) -> str:
    """The argv joined by spaces, as text for --argv-regex (bytes that are not UTF-8 as surrogates)."""
    return " ".join(arg.decode("utf-8", "surrogateescape") for arg in argv)


def shebang(host, filename: str | None) -> str | None:
    """The `#!` line of a script (what the kernel ran it with), read from the file now; None otherwise."""
    if not filename:
        return None
    try:
        with open(host.path(filename), "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    return head[2:].split(b"\n", 1)[0].strip().decode("utf-8", "surrogateescape")


class ExecTool(Tool):
    name = "exec"
    help = "every program started (execve/execveat), with its whole argv, parent and result"
    record_types = ("exec",)
    epilog = """\
examples:
  rawtrace exec                         # successful execs until Ctrl-C
  rawtrace exec -x -T                   # also failed ones, with a time column
  rawtrace exec --argv-regex 'ssh|scp'  # only argv matching a regular expression
  rawtrace exec -p 1234                 # process 1234 and everything it starts
  rawtrace exec --json --env            # NDJSON, with the environment too
  rawtrace exec --max-args 400 --max-arg-len 16384 --head-args 2   # wider in-kernel capture
  rawtrace exec --no-hold               # no exec waits for rawtrace: argv from uprobes and /proc
  rawtrace exec --source proc           # proc connector events (lockdown-proof), argv held as usual

-n NAME keeps execs whose name before or after the exec is NAME; -t is the thread filter, as in every
rawtrace tool (bcc's -t timestamp column is --timestamp here).

Columns: PCOMM the caller's name before the exec, COMM the name after it (- when it failed), PID the
process (after a non-leader thread's exec, the leader's), PPID its parent (the process that forked it),
RET 0 or the errno name, FILE the file the kernel ran (as resolved by sched_process_exec; for a failed call
the path given), then the argv. Arguments are quoted when they hold spaces, quotes or shell characters;
control characters and bytes that are not UTF-8 show as escapes. A cut argument ends in `...`; a final
`...` means more arguments than captured. JSON records (`type` "exec"): ts, pid, tid, ppid, comm,
new_comm, syscall, filename, interpreter, argv (list), argv_cut (indexes), argv_more, argv_truncated,
argv_source, ret, errno, env. argv_source: fanotify (read from the caller while fanotify held the exec:
whole and exact), uprobe (read at the call), uprobe-start (read in the new program at its start,
__libc_start_main: dynamically linked programs only), +proc (completed from /proc/PID/cmdline), proc
(/proc/PID/cmdline alone: racy), none (not captured).

Where argv comes from. By default every exec on the machine is held (a fanotify permission event,
FAN_OPEN_EXEC_PERM) until a child of rawtrace has read the argv, and envp with --env, from the calling
thread's memory, through the pointers its registers hold (/proc/TID/syscall, process_vm_readv): execve
opens the file before it copies the strings (Linux 6.8+), so what is read is what the kernel takes, whole,
for every program (static ones, Go, raw syscalls, 32-bit tasks), without /proc's race. The cost: each exec
waits for that answer, about 200-300 us here; a rawtrace child stopped with SIGSTOP would hold every exec
on the machine until continued (Ctrl-Z does not reach it). Not held: kernels before 6.8, execs that fail
before their file is open (ENOENT, EACCES: with -x their argv comes from the uprobes below), programs on
network or FUSE filesystems (a stalled server would stall every exec) and memfds. --max-args N and
--max-arg-len BYTES shorten what is shown (marked). --no-hold, or where permission events are refused
(no CAP_SYS_ADMIN, CONFIG_FANOTIFY_ACCESS_PERMISSIONS off), falls back to the following.

Without the hold, on kernels whose syscall events carry pointers only (before 6.19, and for argv on every
kernel): uprobes on the C library's execve/execveat/fexecve read --max-args strings (default 32): the
first --head-args (1) up to --max-arg-len bytes (1023), the others up to --tail-len (63). Every probe event
is a fixed size (at most 3 KiB; a ustring could overflow the kernel's one-page probe buffer), so each
exec costs a few probe events, and a failed read per word of slots past the end of argv: the wider the
plan, the slower every exec while tracing. Longer or further arguments come from /proc/PID/cmdline when
the process still lives and its cmdline agrees with the captured part (argv_source uprobe+proc), else
they are marked cut. The cmdline is read when the exec is decoded, by which time a short-lived program
has usually gone; --cmdline-at-exec reads it within microseconds of each exec instead (a child process
on the proc connector), which wins that race for many of them (in a test of 40 programs with 300
arguments or a 10 kB one: 14-24 whole), for about 110-180 us more per exec here. Static binaries, Go
programs and raw syscall(2) bypass the C library's exec functions: a dynamically linked program they
start is read at its start (uprobe-start; output waits for it, up to 0.2 s of trace time), a static one
from /proc/PID/cmdline (proc), which a short-lived process may already have left (none). A word the
kernel cannot read without a page fault (argv memory swapped out) keeps stale bytes in a fixed-size
fetch, undetectably. 32-bit compat tasks: the syscall events skip them; their successful execs are
reported from sched_process_exec, argv from /proc."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        from rawtrace.cli.tool import positive_int
        parser.add_argument("-x", "--failed", action="store_true", help="include failed execs")
        parser.add_argument("--argv-regex", metavar="REGEX", help="only execs whose argv (joined by spaces) "
                                                                  "matches REGEX (Python re.search)")
        parser.add_argument("-T", "--time", action="store_true", help="a TIME column (HH:MM:SS, local time)")
        parser.add_argument("--timestamp", action="store_true",
                            help="a TIME(s) column: seconds since the first event (-t is the thread filter)")
        parser.add_argument("--max-args", type=positive_int, metavar="N",
                            help=f"at most N arguments (held execs: shown; uprobes: read in the kernel, "
                                 f"default {X.DEFAULT_MAX_ARGS})")
        parser.add_argument("--max-arg-len", type=positive_int, metavar="BYTES",
                            help=f"at most BYTES of each argument (held execs: shown; uprobes: read, of the "
                                 f"first --head-args, default {X.DEFAULT_MAX_ARG_LEN})")
        parser.add_argument("--head-args", type=int, default=X.DEFAULT_HEAD_ARGS, metavar="N",
                            help=f"arguments read up to --max-arg-len (default {X.DEFAULT_HEAD_ARGS})")
        parser.add_argument("--tail-len", type=positive_int, default=X.DEFAULT_TAIL_LEN, metavar="BYTES",
                            help=f"bytes read of the other arguments (default {X.DEFAULT_TAIL_LEN})")
        parser.add_argument("--env", action="store_true", help="also the environment (whole when held; "
                                                              "uprobes: first 64 strings, 256 bytes each)")
        parser.add_argument("--no-cmdline", action="store_true",
                            help="never complete or replace argv from /proc/PID/cmdline")
        parser.add_argument("--cmdline-at-exec", action="store_true",
                            help="read /proc/PID/cmdline at each exec, from a proc connector reader: completes "
                                 "argv past the plan for many short-lived programs, at a cost to every exec "
                                 "(about 110-180 us here)")
        parser.add_argument("--no-hold", action="store_true",
                            help="do not hold execs with fanotify to read their argv from the caller "
                                 "(uprobes and /proc then, with their limits)")
        parser.add_argument("--no-start-probe", action="store_true",
                            help="no uprobe on libc's __libc_start_main (argv of dynamically linked programs "
                                 "started by static binaries, Go programs or raw syscalls; costs a probe hit "
                                 "per program start)")
        parser.add_argument("--source", choices=("auto", "tracefs", "proc"), default="auto",
                            help="tracefs events and probes (default when allowed), or the proc connector")

    def __init__(self, args, ctx) -> None:
        super().__init__(args, ctx)
        if args.head_args < 0:
            raise UsageError("--head-args must be 0 or more")
        if args.cmdline_at_exec and (args.no_cmdline or args.input):
            raise UsageError("--cmdline-at-exec reads cmdlines while tracing live: not with "
                             + ("--no-cmdline" if args.no_cmdline else "-i FILE"))
        self.regex = None
        if args.argv_regex is not None:
            try:
                self.regex = re.compile(args.argv_regex)
            except re.error as exc:
                raise UsageError(f"bad --argv-regex {args.argv_regex!r}: {exc}") from None
        max_args = args.max_args or X.DEFAULT_MAX_ARGS
        self.limits = X.PlanLimits(max_args=max_args, max_arg_len=args.max_arg_len or X.DEFAULT_MAX_ARG_LEN,
                                   head_args=min(args.head_args, max_args), tail_len=args.tail_len,
                                   max_env=64 if args.env else 0)
        # The limits bound the uprobe plan only: with the hold and without -x there is none (--max-args
        # then only shortens what is shown, to any length).
        plan_certain = args.no_hold or args.failed or args.cmdline_at_exec
        if plan_certain:
            self.limits.check()
        self.host = getattr(ctx.source, "host", None)
        self.comm_filter = args.comm
        self.ppids: dict[int, int] = {}
        self.comms: dict[int, str] = {}
        self.subtree: set[int] = set(args.pid)
        self.lost = 0
        self.shown = 0
        self.attempts = 0
        self.failed_hidden = 0
        self.by_source: dict[str, int] = {}
        self.first_ts: int | None = None
        self.exit_status = 0
        import time
        self._wall_offset = time.time() - time.monotonic()
        self.plan: list[X.PlannedEvent] = []
        self.probe_names: dict[tuple[str, str], X.PlannedEvent] = {}
        self.proc_mode = ctx.source.kind == PROC_KIND
        self.joiner: X.ExecJoiner | None = None
        self.cmdlines = None          # rawtrace.procconn.ExecCmdlines with --cmdline-at-exec, live through tracefs
        self._cmdlines_refused = ""
        self.hold = None              # rawtrace.exechold.ExecHold: argv read while fanotify holds each exec
        self._hold_refused = ""
        if (ctx.live or self.proc_mode) and not args.no_hold and self.host is not None and self.host.is_live:
            self._start_hold()          # (not over a --root tree: the hold reads the running machine)
        if not self.proc_mode:
            # With the hold, uprobes are only needed for the argv of execs that fail before their file is
            # open (ENOENT, EACCES): shown with -x only.
            wanted = ctx.live and (self.hold is None or args.failed)
            if wanted and not plan_certain:
                self.limits.check()         # the hold was refused: the plan is what reads argv
            self.plan = self._usable_plan(call_sites_only=self.hold is not None) if wanted else []
            assembler = X.HitAssembler(self.plan, self.limits.max_args, self.limits.max_env)
            cmdline = None if args.no_cmdline or not ctx.live else self._cmdline
            if cmdline is not None and self.host is not None and args.cmdline_at_exec:
                self._start_cmdlines()
            start = X.START_SITE.symbol if any(e.site == X.START_SITE for e in self.plan) else None
            self.joiner = X.ExecJoiner(assembler, tgid_of=ctx.tasks.pid, comm_of=ctx.tasks.comm,
                                       ppid_of=self._ppid, cmdline_of=cmdline, start_site=start,
                                       held_of=self._held if self.hold is not None else None)

    # -- set-up ------------------------------------------------------------------------------
    def _start_cmdlines(self) -> None:
        """The proc connector's reader of exec'd programs' cmdlines, for the argv past the plan. Started
        here, while rawtrace still has its normal priority (it lowers it once set up): the reader must
        win the race against short-lived programs, which a nice 19 process loses. Stopped at the end,
        and at exit whatever happens."""

        from rawtrace.procconn import ExecCmdlines
        if self.ctx.clock != "mono":
            self._cmdlines_refused = f"the trace clock is {self.ctx.clock}, the proc connector's is mono"
            return
        limits = self.limits

        def cut(text: bytes) -> bool:
            """Whether the plan would cut this argv (only those are sent back)."""
            argv = text.split(b"\0")
            if argv and argv[-1] == b"":
                argv.pop()
            return len(argv) > limits.max_args or any(
                len(arg) >= (limits.max_arg_len if n < limits.head_args else limits.tail_len)
                for n, arg in enumerate(argv))
        cmdlines = ExecCmdlines(self.host, wanted=cut)
        self._cmdlines_refused = _start_helper(cmdlines)
        if not self._cmdlines_refused:
            self.cmdlines = cmdlines

    def _start_hold(self) -> None:
        """The child that holds each exec for its argv (rawtrace.exechold). Started here, at rawtrace's
        normal priority (every exec on the machine waits for it); stopped at the end, and at exit."""

        from rawtrace.exechold import ExecHold
        if self.args.cmdline_at_exec:
            self._hold_refused = "--cmdline-at-exec asked for"
            return
        hold = ExecHold(self.host, arch=self.ctx.arch, environ=self.args.env)
        self._hold_refused = _start_helper(hold)
        if not self._hold_refused:
            self.hold = hold

    def _held(self, tid: int, argv_pointer: int | None, since: int | None = None, until: int | None = None):
        """The held capture of this exec as a Capture (shortened by --max-args/--max-arg-len), or None.
        `since`/`until` bound when it was read, on the trace clock: only CLOCK_MONOTONIC ("mono", the
        default live) is the hold's."""
        if self.ctx.clock != "mono" and not self.proc_mode:
            since = until = None
        got = self.hold.take(tid, argv_pointer, since, until)
        if got is None:
            return None
        argv, more, cut, envp, envp_more, nr = got
        cuts = [False] * (len(argv) - 1) + [cut] if argv else []
        most, longest = self.args.max_args, self.args.max_arg_len
        if most is not None and len(argv) > most:
            argv, cuts, more = argv[:most], cuts[:most], True
        if longest is not None:
            cuts = [c or len(a) > longest for a, c in zip(argv, cuts)]
            argv = [a[:longest] for a in argv]
        return X.Capture(ts=0, tid=tid, site="fanotify", syscall=str(nr), argv_pointer=argv_pointer or 0,
                         envp_pointer=0, argv=argv, argv_cut=cuts, argv_more=more, envp=envp, envp_more=envp_more)

    def _usable_plan(self, call_sites_only: bool = False) -> list[X.PlannedEvent]:
        """The plan for the exec sites this C library has (an old glibc has no execveat)."""
        from rawtrace.probes import ProbeSpec, resolve
        sites = X.SITES if self.args.no_start_probe or call_sites_only else X.SITES + (X.START_SITE,)
        plan = X.plan(self.ctx.arch, self.limits, sites)
        usable = []
        missing = set()
        for event in plan:
            if event.site.symbol in missing:
                continue
            if event.head:
                try:
                    resolve(ProbeSpec.parse(event.spec, self.ctx.arch), self.host)
                except UsageError:
                    missing.add(event.site.symbol)
                    continue
            usable.append(event)
        self.missing_sites = sorted(missing)
        return usable

    def needs(self) -> Needs:
        if self.proc_mode:
            return Needs(tasks=False)
        stream = self.ctx.stream
        if stream is not None:
            # -n matches the name before or after the exec, here; the stream's and the kernel's name
            # filters would drop the call's events (made under the caller's name).
            stream.comm = None
        options = getattr(self.ctx.source, "options", None)
        if options is not None:
            options.comm = None
        events = list(SYSCALL_EVENTS) + list(EXIT_EVENTS) + [EXEC_EVENT, FORK_EVENT, EXIT_EVENT]
        fields = {pair: {"argv", "__filename_val", "filename"} for pair in SYSCALL_EVENTS}
        for pair in EXIT_EVENTS:
            fields[pair] = {"ret"}
        return Needs(events=[EXEC_EVENT],
                     optional_events=list(SYSCALL_EVENTS) + list(EXIT_EVENTS) + [FORK_EVENT, EXIT_EVENT],
                     probes=[event.spec for event in self.plan], fields=fields,
                     unfiltered=set(events), preflight={"syscalls", "uprobes"} if self.plan else {"syscalls"})

    def handlers(self):
        if self.proc_mode:
            return {}
        joiner = self.joiner
        out = {}
        for pair, syscall in SYSCALL_EVENTS.items():
            out[pair] = self._enter(syscall)
        for pair in EXIT_EVENTS:
            out[pair] = self._exit
        out[EXEC_EVENT] = self._process_exec
        out[FORK_EVENT] = self._fork
        out[EXIT_EVENT] = self._thread_exit
        by_name = {event.name: event for event in self.plan}
        for system, name in getattr(self.ctx.source, "probe_events", []) or []:
            event = by_name.get(name)
            if event is not None:
                self.probe_names[(system, name)] = event
                out[(system, name)] = self._probe(name, joiner)
        return out

    def start(self) -> None:
        ctx = self.ctx
        out = ctx.out
        if ctx.live and not self.proc_mode:
            inst = ctx.source.instance
            for (system, name), event in self.probe_names.items():
                if event.filter:
                    inst.set_filter(system, name, event.filter)
                else:
                    inst.clear_filter(system, name)
        if ctx.live or self.proc_mode:
            self._snapshot_parents()
        if self._cmdlines_refused:
            out.note(f"--cmdline-at-exec: not used ({self._cmdlines_refused}); argv past the plan is read from "
                     "/proc when its exec is decoded")
        out.meta("exec", ctx.source.kind, ctx.clock, argv_plan={
            "max_args": self.limits.max_args, "head_args": self.limits.head_args,
            "max_arg_len": self.limits.max_arg_len, "tail_len": self.limits.tail_len,
            "probe_events": len(self.probe_names)})
        if self.proc_mode:
            argv_from = ("argv read from each caller while fanotify holds its exec" if self.hold is not None
                         else "argv from /proc/PID/cmdline, racy")
            out.note(f"Tracing execs through the proc connector ({argv_from}; failed execs are not visible)... "
                     "Ctrl-C to end.")
        elif ctx.live:
            sites = [s.symbol for s in X.SITES + (X.START_SITE,)
                     if any(e.site == s for e in self.probe_names.values())]
            probes = (f"uprobes on libc {', '.join(sites)} ({len(self.probe_names)} probe events)"
                      if sites else "")
            if self.hold is not None:
                how = "argv read from each caller while fanotify holds its exec" + (
                    f"; of failed ones from {probes}" if probes else "")
            else:
                how = f"argv from {probes}" if probes else "no libc probes: argv from /proc/PID/cmdline (racy)"
            out.note(f"Tracing execs ({how})... Ctrl-C to end.")
        if self._hold_refused and not self.args.no_hold and not self.args.cmdline_at_exec:
            out.note(f"execs are not held for their argv ({self._hold_refused}): argv from "
                     + ("/proc/PID/cmdline (racy)" if self.proc_mode else "uprobes and /proc, with their limits"))
        if getattr(self, "missing_sites", None):
            out.note(f"this C library has no {', '.join(self.missing_sites)}: calls to it are seen without argv")
        if not out.json:
            out.line(self._header())

    def _snapshot_parents(self) -> None:
        proc = self.host.path("/proc") if self.host is not None else None
        if proc is None:
            return
        try:
            names = os.listdir(proc)
        except OSError:
            return
        for name in names:
            if name.isdigit():
                self._read_ppid(int(name))

    def _read_ppid(self, pid: int) -> int | None:
        if self.host is None:
            return None
        try:
            with open(self.host.path(f"/proc/{pid}/stat"), "rb") as f:
                text = f.read().decode("ascii", "replace")
        except OSError:
            return None
        try:
            ppid = int(text[text.rfind(")") + 2:].split()[1])
        except (IndexError, ValueError):
            return None
        self.ppids.setdefault(pid, ppid)
        return self.ppids[pid]

    def _ppid(self, pid: int) -> int | None:
        found = self.ppids.get(pid)
        if found is None and self.ctx.live:
            found = self._read_ppid(pid)
        return found

    def _cmdline(self, pid: int, ts: int) -> bytes | None:
        """The cmdline read at the exec by --cmdline-at-exec's reader (started only with the mono clock,
        the connector's), else a read now."""
        from rawtrace.procconn import read_cmdline
        if self.cmdlines is not None:
            text = self.cmdlines.get(pid, ts)
            if text is not None:
                return text
        return read_cmdline(self.host, pid) if self.host is not None else None

    # -- tracefs handlers ----------------------------------------------------------------------
    def _probe(self, name: str, joiner):
        def on_probe(rec) -> None:
            self._emit_all(joiner.probe(name, rec.ts, rec.pid, rec.fields))
            if joiner.waiting:
                self._emit_all(joiner.settle(rec.ts))
        return on_probe

    def _enter(self, syscall: str):
        def on_enter(rec) -> None:
            self._note_first(rec.ts)
            self._emit_all(self.joiner.enter(rec.ts, rec.pid, syscall, rec.fields))
        return on_enter

    def _exit(self, rec) -> None:
        self._emit_all(self.joiner.exit(rec.ts, rec.pid, rec.fields.get("ret", 0)))

    def _process_exec(self, rec) -> None:
        fields = rec.fields
        self._note_first(rec.ts)
        pid = fields.get("pid", rec.pid)
        self._emit_all(self.joiner.process_exec(rec.ts, pid, fields.get("old_pid", pid),
                                                str(fields.get("filename", ""))))

    def _fork(self, rec) -> None:
        fields = rec.fields
        child = fields.get("child_pid")
        if child is None:
            return
        tasks = self.ctx.tasks
        if tasks.pid(child) == child:           # a new process, not a thread
            self.ppids[child] = tasks.pid(fields.get("parent_pid", rec.pid))

    def _thread_exit(self, rec) -> None:
        self._emit_all(self.joiner.thread_exit(rec.ts, rec.fields.get("pid", rec.pid)))

    def on_lost(self, lost) -> None:
        self.lost += max(lost.count, 0)
        if self.joiner is not None:
            self.joiner.lost()

    # -- proc connector records ------------------------------------------------------------------
    def on_record(self, rec) -> None:
        from rawtrace.procconn import ProcOverflow
        if isinstance(rec, ProcOverflow):
            self.lost += 1
            self.ctx.out.note("the proc connector dropped events (socket buffer full): some execs are missing")
            return
        kind = rec.kind
        if kind == "fork":
            if rec.pid == rec.tid:
                self.ppids[rec.pid] = rec.parent_pid
                parent_comm = self.comms.get(rec.parent_pid)
                if parent_comm is None and self.host is not None:
                    from rawtrace.procconn import read_comm
                    parent_comm = read_comm(self.host, rec.parent_pid)
                if parent_comm is not None:
                    self.comms[rec.pid] = parent_comm
                if rec.parent_pid in self.subtree:
                    self.subtree.add(rec.pid)
        elif kind == "comm":
            self.comms[rec.pid] = rec.comm
        elif kind == "exit":
            if rec.pid == rec.tid:
                self.comms.pop(rec.pid, None)
        elif kind == "exec":
            self._note_first(rec.ts)
            if self.args.pid and rec.pid not in self.subtree:
                return
            if self.args.tid and rec.tid not in self.args.tid:
                return
            # (A non-leader thread's exec was held under its own tid, which the connector no longer
            # gives: /proc then, as without the hold.)
            held = self._held(rec.tid, None, rec.ts - 1_000_000_000, rec.ts) if self.hold is not None else None
            if held is not None:
                argv, cut, more, source = held.argv, held.argv_cut, held.argv_more, X.SOURCE_HELD
                environ = held.envp
            else:
                argv = rec.cmdline.split(b"\0") if rec.cmdline else []
                if argv and argv[-1] == b"":
                    argv.pop()
                cut, more = [False] * len(argv), False
                source = X.SOURCE_PROC if rec.cmdline is not None else X.SOURCE_NONE
                environ = [e for e in rec.environ.split(b"\0") if e] if rec.environ else None
            before = self.comms.get(rec.pid)
            after = rec.comm or (os.path.basename(rec.exe)[:15] if rec.exe else None)
            if after is not None:
                self.comms[rec.pid] = after
            attempt = X.ExecAttempt(
                ts=rec.ts, pid=rec.pid, tid=rec.tid, ppid=self._ppid(rec.pid), comm=before, new_comm=after,
                syscall="execve", filename=rec.exe, argv=argv, argv_cut=cut, argv_more=more,
                argv_source=source, ret=0, envp=environ)
            self._emit(attempt)

    # -- output --------------------------------------------------------------------------------
    def _note_first(self, ts: int) -> None:
        if self.first_ts is None:
            self.first_ts = ts

    def _header(self) -> str:
        head = ""
        if self.args.time:
            head += f"{'TIME':<9}"
        if self.args.timestamp:
            head += f"{'TIME(s)':<11}"
        return head + f"{'PCOMM':<16} {'COMM':<16} {'PID':>7} {'PPID':>7} {'RET':>6} FILE ARGS"

    def _emit_all(self, attempts) -> None:
        for attempt in attempts:
            self._emit(attempt)

    def _emit(self, attempt: X.ExecAttempt) -> None:
        self.attempts += 1
        if self.comm_filter is not None and self.comm_filter not in (attempt.comm, attempt.new_comm):
            return
        if self.regex is not None and not self.regex.search(argv_text(attempt.argv)):
            return
        failed = attempt.ret is not None and attempt.ret < 0
        if failed and not self.args.failed:
            self.failed_hidden += 1
            return
        self.shown += 1
        self.by_source[attempt.argv_source] = self.by_source.get(attempt.argv_source, 0) + 1
        ctx = self.ctx
        out = ctx.out
        from rawtrace.syscalls.constants import errno_name
        errno = errno_name(ctx.arch, -attempt.ret) if failed else None
        # Also for a failed exec: a script whose interpreter is missing fails with ENOENT, explained here.
        interpreter = shebang(self.host, attempt.filename) if ctx.live else None
        if out.json:
            from rawtrace.output import json_text
            record = {
                "ts": ctx.seconds(attempt.ts), "pid": attempt.pid, "tid": attempt.tid, "ppid": attempt.ppid,
                "comm": attempt.comm, "new_comm": attempt.new_comm, "syscall": attempt.syscall,
                "filename": attempt.filename, "interpreter": interpreter,
                "argv": [json_text(a.decode("utf-8", "surrogateescape")) for a in attempt.argv],
                "argv_cut": [i for i, c in enumerate(attempt.argv_cut) if c], "argv_more": attempt.argv_more,
                "argv_truncated": attempt.truncated, "argv_source": attempt.argv_source,
                "ret": attempt.ret, "errno": errno}
            if attempt.incomplete:
                record["incomplete"] = True
            if self.args.env:
                record["env"] = [json_text(e.decode("utf-8", "surrogateescape")) for e in attempt.envp or []]
                record["env_more"] = attempt.envp_more
            out.record("exec", record)
            return
        from rawtrace.emit import safe
        line = ""
        if self.args.time:
            import time as _time
            # The trace clock is CLOCK_MONOTONIC (live): the wall time of the event, not of the print.
            when = (attempt.ts / 1e9 + self._wall_offset if (ctx.live and ctx.clock == "mono") or self.proc_mode
                    else _time.time())
            line += f"{_time.strftime('%H:%M:%S', _time.localtime(when)):<9}"
        if self.args.timestamp:
            line += f"{ctx.seconds(attempt.ts - (self.first_ts or attempt.ts)):<11.6f}"
        ret = "?" if attempt.ret is None else (errno or str(attempt.ret)) if failed else str(attempt.ret)
        file_text = safe(attempt.filename) if attempt.filename else "?"
        if interpreter:
            file_text += f" [#!{safe(interpreter)}]"
        args_text = format_argv(attempt.argv, attempt.argv_cut, attempt.argv_more)
        if attempt.argv_source == X.SOURCE_NONE:
            args_text = "(argv not captured)"
        elif attempt.argv_source == X.SOURCE_PROC:
            args_text += "  [cmdline]"
        if attempt.incomplete:
            args_text += "  [events lost meanwhile: may be incomplete]"
        line += (f"{safe(attempt.comm or '?'):<16} {safe(attempt.new_comm or '-'):<16} {attempt.pid:>7} "
                 f"{attempt.ppid if attempt.ppid is not None else '?':>7} {ret:>6} {file_text} {args_text}")
        out.line(line)

    def finish(self) -> None:
        if self.joiner is not None:
            self._emit_all(self.joiner.flush(0))
        cmdlines = self.cmdlines
        if cmdlines is not None:
            _stop_helper(cmdlines)
        hold = self.hold
        if hold is not None:
            _stop_helper(hold)
        from rawtrace.tracers.base import report_run
        sources = ", ".join(f"{n} {s}" for s, n in sorted(self.by_source.items()))
        info = {"attempts": self.attempts, "shown": self.shown, "failed_hidden": self.failed_hidden,
                "argv_sources": self.by_source,
                "lost": self.ctx.source.summary.lost + (self.lost if self.proc_mode else 0),
                "duration": round(self.ctx.source.summary.duration, 6)}
        extra = [f"argv from {sources}"] if sources else []
        if self.failed_hidden:
            extra.append(f"{self.failed_hidden} failed not shown (-x shows them)")
        if self.proc_mode and self.lost:
            extra.append(f"{self.lost} proc connector overflows")
        if hold is not None:
            held, unread, dropped = hold.stats()
            info["exec_hold"] = {"held": held, "unread": unread, "dropped": dropped, "died": hold.died}
            extra.append(f"{held} execs held for their argv (system-wide)"
                         + (f", {unread} not readable" if unread else "")
                         + (f", {dropped} not passed on (pipe full)" if dropped else ""))
            if hold.died:
                self.ctx.out.note("warning: the child holding execs for their argv ended early; later execs "
                                  "have argv from /proc only")
        if cmdlines is not None:
            info["cmdline_at_exec"] = {"long_read": cmdlines.read_count, "gone": cmdlines.gone}
            extra.append(f"cmdline at the exec: {cmdlines.read_count} long ones read, {cmdlines.gone} programs "
                         "gone first (system-wide)")
        report_run(self.ctx.out, self.ctx.source, f"{self.shown} execs", info, extra=extra)


# ---------------------------------------------------------------------------------------------------
# The proc connector as a stream source


class ProcSource:
    """rawtrace.procconn.ProcConnectorSource behind the stream's source interface."""

    kind = PROC_KIND

    def __init__(self, host, duration: float | None = None, environ: bool = False) -> None:
        from rawtrace.procconn import ProcConnectorSource
        from rawtrace.sources import SourceSummary
        self.host = host
        self.conn = ProcConnectorSource(host, ignore_pids={os.getpid()}, exec_environ=environ)
        self.summary = SourceSummary()
        self.clock = "mono"
        self.ns = True
        self.ids: dict = {}
        self.probe_events: list = []
        self.duration = duration
        self._timer = None
        self._started = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def task_seed(self):
        return self.host.path("/proc"), {}, {}

    def arch(self) -> str:
        from rawtrace.syscalls.arches import host_arch
        return host_arch(self.host)

    def format(self, system: str, name: str):
        return None

    def available(self, system: str, name: str) -> bool:
        return False

    def open(self, events, *, wanted=None, unfiltered=None) -> None:
        import threading
        import time
        try:
            self.conn.open()
        except PermissionError:
            raise UsageError("the proc connector refused this user (older kernels need CAP_NET_ADMIN: "
                             "run as root)") from None
        except OSError as exc:
            raise NotSupported(f"no proc connector on this kernel ({exc.strerror}; CONFIG_PROC_EVENTS)") from None
        self._started = time.monotonic()
        if self.duration is not None:
            self._timer = threading.Timer(self.duration, self.stop_recording)
            self._timer.daemon = True
            self._timer.start()

    def batches(self):
        import time
        for batch in self.conn.batches():
            self.summary.duration = time.monotonic() - self._started
            yield batch

    def now(self) -> int | None:
        import time
        return time.monotonic_ns()

    def stop_recording(self) -> None:
        self.conn.stop()

    def stop(self) -> None:
        self.conn.stop()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.conn.close()


def _run_proc(args, host, note: str | None = None) -> int:
    from rawtrace.cli.tool import Signals
    from rawtrace.emit import Emitter
    from rawtrace.stream import Stream
    if args.input:
        raise UsageError("--source proc traces live; it cannot read a recording (-i)")
    source = ProcSource(host, duration=args.duration, environ=args.env)
    out = Emitter(json=args.json, ns=True)
    if note:
        out.note(note)
    signals = Signals(source.stop_recording)
    try:
        with source:
            stream = Stream(source, ExecTool, args, out, pids=args.pid, tids=args.tid, comm=None)
            stream.setup()
            stream.run()
            out.flush()
            return 0
    finally:
        signals.restore()


class ExecCommand:
    """The CLI side: the shared tool flags, then tracefs or the proc connector (--source)."""

    def __init__(self) -> None:
        from rawtrace.cli.tool import ToolCommand
        self._tool = ToolCommand(ExecTool)
        self.HELP = self._tool.HELP
        self.EPILOG = self._tool.EPILOG

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        self._tool.add_arguments(parser)

    def run(self, args, host) -> int:
        if args.source == "proc":
            return _run_proc(args, host)
        if args.source == "tracefs" or args.input:
            return self._tool.run(args, host)
        try:
            return self._tool.run(args, host)
        except (TracingBlocked, NotSupported) as exc:
            _stop_helpers()
            return _run_proc(args, host, note=f"tracefs cannot be used ({exc.message}); "
                                              "using the proc connector instead")


_COMMAND = ExecCommand()
HELP = _COMMAND.HELP
EPILOG = _COMMAND.EPILOG
add_arguments = _COMMAND.add_arguments
run = _COMMAND.run
