"""Syscall knowledge: tables per architecture and argument rendering, apart from tracing."""
