"""`python -m rawtrace` and the `rawtrace` console script: run the CLI, then exit."""

try:
    # The C module itself: `signal` would first import enum, long enough for an early Ctrl-C to land in it
    # and end in a traceback from inside that import.
    import _signal
except ImportError:  # pragma: no cover - not CPython
    import signal as _signal


import rawtrace as _package  # (imported already, as the package of this module)


def _quiet_exit(signum, _frame):
    # Until the CLI installs its own handlers: a Ctrl-C (or SIGTERM/SIGHUP) while modules are still
    # being imported ends rawtrace quietly, with no traceback from inside an import. Remembered too, for
    # when Python drops the exception (see rawtrace._early_signal).
    _package._early_signal = signum
    raise SystemExit(128 + signum)


for _sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
    _signal.signal(_sig, _quiet_exit)

import os
import sys

# Commands that only read and print. Once one returns, all interpreter teardown would do is free objects
# one by one (2-3 ms, a sixth of list-syscalls' own cost), so these leave with os._exit after flushing
# their output. Commands that trace, record or create anything exit normally: their cleanup may rely on
# finalizers, atexit handlers or threads that teardown waits for.
READ_ONLY_COMMANDS = frozenset({"list-syscalls", "format", "events", "doctor"})


def console() -> None:
    """The console entry point (pyproject's [project.scripts])."""
    from rawtrace.cli import _split_command, main
    code = main()
    _before, command, _rest = _split_command(sys.argv[1:])
    if command not in READ_ONLY_COMMANDS:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass   # the reader went away (`| head`): as the CLI treats it, not an error
    except OSError:
        sys.exit(code)   # let the interpreter report a failed write as it would have
    os._exit(code)


if __name__ == "__main__":
    console()
