"""Command-line entry: a flat registry of subcommands, one module each, imported only when run.

Each command module defines `HELP` (one line), `EPILOG` (examples), `add_arguments(parser)` and
`run(args, host) -> int`. Errors are mapped to one-line messages and exit codes here, in one place."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rawtrace import __version__

# name -> (module, one-line summary). The summaries are repeated here so that `rawtrace --help`
# does not import every command.
COMMANDS: dict[str, tuple[str, str]] = {
    "list-syscalls": ("rawtrace.cli.list_syscalls", "syscall numbers, ABIs and entry points for an arch"),
    "events": ("rawtrace.cli.events", "list the tracefs events of the running kernel"),
    "format": ("rawtrace.cli.format", "show an event's fields and print fmt as a typed descriptor"),
    "doctor": ("rawtrace.cli.doctor", "lockdown, SecureBoot and tracing capabilities of this machine"),
    "trace": ("rawtrace.cli.trace", "trace tracepoints, syscalls and probes from the binary ring buffer"),
    "decode": ("rawtrace.cli.decode", "decode saved trace_pipe_raw sub-buffers offline"),
    "probes": ("rawtrace.cli.probes", "list the probes rawtrace created, with hit counts"),
    "reset": ("rawtrace.cli.reset", "remove instances and probes left behind by killed rawtrace runs"),
    "record": ("rawtrace.cli.record", "record events into a trace.dat that trace-cmd and KernelShark read"),
    "timeline": ("rawtrace.cli.timeline", "a timeline (CPUs, syscalls, losses) as JSON for Perfetto's UI"),
}


def _add_tools() -> None:
    # The tools over the event pipeline (rawtrace.tracers) are commands like the others.
    from rawtrace.tracers import TOOLS
    for name, row in TOOLS.items():
        COMMANDS.setdefault(name, row)


_add_tools()

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _untranslated(message: str) -> str:
    return message


def _untranslated_plural(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


# argparse passes its own messages through gettext: every lookup searches for .mo files and the first one
# imports locale, about 1.5 ms of each command's start-up. Python ships no translations of them, so these
# return what gettext would.
if getattr(argparse, "_", None) is not None and getattr(argparse, "ngettext", None) is not None:
    argparse._ = _untranslated                     # type: ignore[attr-defined]
    argparse.ngettext = _untranslated_plural       # type: ignore[attr-defined]


def _columns() -> int:
    """The terminal width as shutil.get_terminal_size() finds it ($COLUMNS, then stdout's tty), else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, told the width: left to find it, it imports shutil (and with it bz2 and lzma),
    about 1.5 ms of every command's start-up, since every parser makes formatters."""

    def __init__(self, prog, *args, **kwargs) -> None:
        if len(args) < 3 and kwargs.get("width") is None:
            kwargs["width"] = _columns() - 2
        super().__init__(prog, *args, **kwargs)


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exits 2, as the rest of rawtrace does."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"rawtrace: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS,
                        help="treat DIR as / for every /sys and /proc path read (env RAWTRACE_ROOT)")
    parser.add_argument("--tracefs", metavar="DIR", default=argparse.SUPPRESS,
                        help="use DIR as the tracefs directory (env RAWTRACE_TRACEFS)")


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<14} {summary}" for name, (_mod, summary) in COMMANDS.items())
    parser = _Parser(
        prog="rawtrace",
        formatter_class=_HelpFormatter,
        description="A raw syscall and tracefs explorer: no BPF, no compiler, just tracefs and Python.",
        epilog=f"commands:\n{lines}\n\nexamples:\n  rawtrace doctor\n  rawtrace list-syscalls 'open*'\n"
               "  rawtrace format sys_enter_openat\n  rawtrace trace syscalls:sys_enter_openat --comm bash\n\n"
               "Run `rawtrace COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"rawtrace {__version__}")
    _add_global_options(parser)
    parser.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    return parser


def build_command_parser(name: str, module) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"rawtrace {name}", description=module.HELP,
                     epilog=getattr(module, "EPILOG", None),
                     formatter_class=_HelpFormatter)
    _add_global_options(parser)
    module.add_arguments(parser)
    return parser


def _split_command(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """Split argv into (global options before the command, command, the rest)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--root", "--tracefs"):
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return argv[:i], arg, argv[i + 1:]
    return argv, None, []


def _nearest(name: str, choices) -> str:
    import difflib
    close = difflib.get_close_matches(name, list(choices), n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


class _Interrupted(BaseException):
    """A signal that arrived before the command installed its own handlers (during start-up)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _early_signal(signum, _frame) -> None:
    # Remembered as well as raised: where the exception cannot propagate (a weakref callback inside the
    # import machinery, a __del__), Python drops it, and the command's own handlers take the signal
    # over from early_signal() instead.
    import rawtrace
    rawtrace._early_signal = signum
    raise _Interrupted(signum)


def early_signal() -> int | None:
    """A SIGINT/SIGTERM/SIGHUP that came during start-up and whose exception was dropped; cleared."""
    import rawtrace
    signum, rawtrace._early_signal = rawtrace._early_signal, None
    return signum


def _quiet_unraisable(previous):
    """sys.unraisablehook leaving out the start-up handlers' dropped exceptions (the signal is remembered)."""
    def hook(unraisable) -> None:
        import rawtrace
        value = unraisable.exc_value
        quiet_exit = isinstance(value, SystemExit) and rawtrace._early_signal is not None
        if isinstance(value, _Interrupted) or quiet_exit:
            return
        previous(unraisable)
    return hook


def main(argv: list[str] | None = None) -> int:
    # First of all, before any import that a Ctrl-C could interrupt with a traceback: until a command
    # installs its own handlers, SIGINT/SIGTERM/SIGHUP end rawtrace quietly (nothing is created yet).
    import signal
    previous = {}
    # A signal may come while the handlers are being put in place or taken away again: both inside the
    # handler for _Interrupted (a SIGINT between installing the first handler and the try: was a traceback).
    unraisable = sys.unraisablehook
    dropped = early_signal()
    if dropped is not None:          # (rawtrace.__main__'s quiet exit, dropped by Python on the way here)
        return 128 + dropped
    try:
        try:
            # A dropped _Interrupted (see _early_signal) is not reported as "Exception ignored".
            sys.unraisablehook = _quiet_unraisable(unraisable)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                try:
                    previous[sig] = signal.signal(sig, _early_signal)
                except ValueError:   # not the main thread (an embedding program): leave them alone
                    break
            code = _main(sys.argv[1:] if argv is None else list(argv))
            dropped = early_signal()
            return 128 + dropped if dropped is not None else code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sys.unraisablehook = unraisable
    except _Interrupted as exc:
        return 128 + exc.signum
    except BaseException:
        # Python may turn the early handlers' exception into another on its way here (a RuntimeError
        # "Error calling __set_name__" when it interrupts a class statement): after an early signal,
        # whatever comes up is that signal's.
        dropped = early_signal()
        if dropped is None:
            raise
        return 128 + dropped


def _main(argv: list[str]) -> int:
    before, command, rest = _split_command(argv)
    if command is None:
        top = _top_parser()
        top.parse_args(before)
        top.print_help()
        return EXIT_USAGE if not before else EXIT_OK
    if command not in COMMANDS:
        sys.stderr.write(f"rawtrace: unknown command {command!r}{_nearest(command, COMMANDS)} "
                         f"(commands: {', '.join(COMMANDS)})\n")
        return EXIT_USAGE
    module = importlib.import_module(COMMANDS[command][0])
    if hasattr(module, "TOOL"):
        from rawtrace.cli.tool import ToolCommand
        module = ToolCommand(module.TOOL)
    parser = build_command_parser(command, module)
    args = parser.parse_args(before + rest)
    from rawtrace.host import Host
    host = Host.from_env(getattr(args, "root", None), getattr(args, "tracefs", None))
    return run_guarded(module.run, args, host)


def run_guarded(func, args, host) -> int:
    """Run a command, turning rawtrace's errors, Ctrl-C and broken pipes into one line and an exit code."""
    from rawtrace.errors import RawtraceError
    try:
        return int(func(args, host) or 0)
    except RawtraceError as exc:
        sys.stderr.write(f"rawtrace: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"  hint: {exc.hint}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped to `head` and closed: not an error. Point stdout at /dev/null so the
        # interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except PermissionError as exc:
        sys.stderr.write(f"rawtrace: permission denied: {exc.filename or exc} "
                         "(run as root, or see `rawtrace doctor`)\n")
        return EXIT_USAGE
    except OSError as exc:
        # A kernel interface that failed under us (tracefs unmounted, a device gone): one line, not a
        # traceback.
        what = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"rawtrace: {what}{exc.strerror or exc}\n")
        return EXIT_ERROR
