"""rawtrace: a raw syscall and tracefs explorer in pure Python."""

__version__ = "0.1.0"
