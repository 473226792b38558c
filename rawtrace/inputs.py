"""Read a decode input safely: regular files (mapped) or stdin with a size bound; never block on open."""

from __future__ import annotations

import os
import stat
import sys

from rawtrace.errors import UsageError

# What '-' (a pipe) may bring: raw pages and trace.dat files that big belong in a file, which is mapped
# and costs no memory of its own.
STDIN_MAX_BYTES = 1 << 30
_CHUNK = 1 << 20


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse(path: str, mode: int) -> UsageError:
    return UsageError(f"{path} is {_kind(mode)}: an input FILE must be a regular file",
                      hint="save the data to a file first, or pipe it in as '-' (stdin)")


def read_input(path: str, *, max_bytes: int = STDIN_MAX_BYTES):
    """The bytes of an input FILE: a read-only mmap of a regular file (b"" when it is empty, a bytearray
    when its file system cannot map), or for '-' what stdin holds (mapped when it is a regular file, else
    a bytearray of at most `max_bytes`).

    Refused with a one-line UsageError: FIFOs, devices, directories and sockets as FILE (a FIFO with no
    writer would block, /dev/zero never ends), a terminal or device as stdin, stdin beyond `max_bytes`,
    and files that cannot be opened. The open itself never blocks (O_NONBLOCK, then fstat)."""
    if path == "-":
        return _read_stdin(max_bytes)
    try:
        before = os.stat(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(before.st_mode):
        raise _refuse(path, before.st_mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        # The path may have been swapped for something else between stat() and open().
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, st.st_mode)
        if st.st_size == 0:
            return b""
        try:
            import mmap
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError):
            pass
        os.set_blocking(fd, True)
        return _read_bounded(fd, max(max_bytes, st.st_size), path)
    finally:
        os.close(fd)


def _read_stdin(max_bytes: int):
    stdin = sys.stdin
    if stdin is None:
        raise UsageError("cannot read stdin ('-'): there is none")
    try:
        fd = stdin.fileno()
    except (AttributeError, ValueError, OSError):
        # A stream object with no descriptor (an embedding program's, a test's): read it, bounded.
        return _read_stream(getattr(stdin, "buffer", stdin), max_bytes)
    try:
        st = os.fstat(fd)
    except OSError:
        raise UsageError("cannot read stdin ('-'): it is closed") from None
    if stat.S_ISREG(st.st_mode):
        # `< file`: map it like a named FILE (from the current position on, as a read would give).
        position = os.lseek(fd, 0, os.SEEK_CUR)
        if st.st_size <= position:
            return b""
        try:
            import mmap
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            return mapped if position == 0 else mapped[position:]
        except (ValueError, OSError):
            return _read_bounded(fd, max(max_bytes, st.st_size), "stdin")
    if os.isatty(fd):
        raise UsageError("stdin ('-') is a terminal", hint="pipe the data in, or name the FILE")
    if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)):
        raise UsageError(f"stdin ('-') is {_kind(st.st_mode)}: it must be a pipe or a regular file",
                         hint="save the data to a file first")
    return _read_bounded(fd, max_bytes, "stdin")


def _read_stream(stream, max_bytes: int) -> bytearray:
    buf = bytearray()
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return buf
        buf += chunk
        if len(buf) > max_bytes:
            raise _too_big("stdin", max_bytes)


def _too_big(what: str, max_bytes: int) -> UsageError:
    return UsageError(f"{what} gives more than {max_bytes} bytes, more than rawtrace reads from a pipe",
                      hint="save the data to a file and name the FILE (files are mapped, not read)")


def _read_bounded(fd: int, max_bytes: int, what: str) -> bytearray:
    buf = bytearray()
    while True:
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            import select
            select.select([fd], [], [])
            continue
        except OSError as exc:
            raise UsageError(f"cannot read {what}: {exc.strerror}") from None
        if not chunk:
            return buf                 # kept a bytearray: bytes() would copy it once more
        buf += chunk
        if len(buf) > max_bytes:
            raise _too_big(what, max_bytes)
