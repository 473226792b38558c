"""Helper child processes (the exec hold, the cmdline reader at exec): forked with the stop signals blocked,
ignoring them, dying with rawtrace, holding only the fds they use, never running the parent's code."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


JOB_CONTROL_SIGNALS = frozenset({signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})


def fork_helper(main: Callable[[], None], *, own_group: bool = False) -> int:
    """Fork a child that runs `main()` and exits (status 1 if it raised); return its pid. The stop signals
    are blocked across the fork: the child must not run the parent's handlers before it ignores them.
    `own_group`: the job-control signals too, and the child is put in a process group of its own from
    both sides (no Ctrl-Z between the fork and its own setpgid can stop it)."""
    blocked = STOP_SIGNALS | (JOB_CONTROL_SIGNALS if own_group else frozenset())
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                main()
                status = 0
            except BaseException:           # noqa: BLE001 - whatever happens, never run the parent's code
                status = 1
            finally:
                os._exit(status)
        if own_group:
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass                        # (the child did it first)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return pid


def become_helper(keep: set[int], *, own_group: bool = False) -> None:
    """The child's first steps: ignore the stop signals (the parent ends it with SIGKILL), die with the
    parent, and close every fd but `keep`. `own_group`: also leave the terminal's job control (a process
    group of its own, job-control signals ignored), for a child whose stopping would stop others."""
    parent = os.getppid()
    ignored = set(STOP_SIGNALS)
    if own_group:
        try:
            os.setpgid(0, 0)
        except OSError:
            pass                            # (the parent did it first)
        ignored |= JOB_CONTROL_SIGNALS
    for sig in ignored:
        signal.signal(sig, signal.SIG_IGN)
    for sig in (signal.SIGPIPE, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, ignored)
    from rawtrace.libc import PR_SET_PDEATHSIG, prctl
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
    from rawtrace.tracefs.spool import _close_all_but
    _close_all_but(keep)
