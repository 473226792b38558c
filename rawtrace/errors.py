"""rawtrace's own exceptions; the CLI maps each to a one-line message and an exit code."""

from __future__ import annotations


class RawtraceError(Exception):
    """Base of every error rawtrace raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(RawtraceError):
    """Bad input from the user: unknown name, bad option value, no match."""

    exit_code = 2


class ParseError(RawtraceError):
    """Text or bytes that do not follow the documented format; names the source, line and reason."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 hint: str | None = None) -> None:
        where = source or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}", hint=hint)
        self.source = source
        self.line = line
        self.reason = message


class NotSupported(RawtraceError):
    """The running kernel (or this host) lacks a feature; the message says which and what to do."""

    exit_code = 2


class TracingBlocked(RawtraceError):
    """Tracing cannot work here (lockdown, no tracefs, no privilege); carries the doctor's reason."""

    exit_code = 2


class KernelRefused(RawtraceError):
    """A tracefs write the kernel rejected; the message includes the kernel's error_log text if any."""

    exit_code = 1


class DecodeError(RawtraceError):
    """Ring-buffer data that cannot be decoded (truncated or corrupt)."""

    exit_code = 1
