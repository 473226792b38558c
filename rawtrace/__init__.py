"""rawtrace: a raw syscall and tracefs explorer in pure Python.

The library API is `rawtrace.Session` (see rawtrace/session.py); it is imported on first use so that
`import rawtrace` and every command stay cheap to start."""

__version__ = "0.1.0"

# A SIGINT/SIGTERM/SIGHUP that came while the CLI was starting (set by the start-up handlers of
# rawtrace.__main__ and rawtrace.cli): their exception can be dropped by Python (raised inside a weakref
# callback of the import machinery), so the signal is also remembered here, where both can reach it.
_early_signal = None

_LAZY = {"Session": "rawtrace.session", "TraceEvent": "rawtrace.session", "LostEvents": "rawtrace.session"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rawtrace' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
