"""Output rendering in one place: tables (tabulate, imported lazily), JSON, NDJSON, and escaping."""

from __future__ import annotations

import os
import sys

# Annotations only (they stay strings): typing costs ~2 ms of every command's start-up to import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

# Every C0 control character, DEL and backslash → a visible escape, the way strace shows them.
_ESCAPES = {i: f"\\x{i:02x}" for i in range(0x20)}
_ESCAPES.update({i: f"\\x{i:02x}" for i in range(0x80, 0xa0)})  # C1 controls (CSI 0x9b) too
_ESCAPES.update({0x7f: "\\x7f", ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})


def escape(text: str) -> str:
    """Make text a traced process controls (comm, paths, argv) safe to print on a terminal."""
    if text.isprintable() and "\\" not in text:
        return text
    return text.translate(_ESCAPES)


def json_text(text: str) -> str:
    """A decoded string for JSON: bytes that were not UTF-8 (surrogates) become \\xNN text."""
    if text.isascii() or not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _cell(value: Any) -> str:
    return value if type(value) is str else "" if value is None else str(value)


def _simple_table(rows: list[list[str]], headers: list[str]) -> str:
    """tabulate's "simple" format (with numparse off), for plain ASCII cells only.

    Importing tabulate costs ~30 ms (it pulls in importlib.metadata and wcwidth), which is more than a whole
    `rawtrace list-syscalls` may take. For the common case of single-line ASCII cells its output is easy to
    reproduce exactly; tests/test_output.py checks this renderer against tabulate on random tables."""
    widths = [len(h) + 2 for h in headers]
    if rows:
        widths = [max(w, max(map(len, column))) for w, column in zip(widths, zip(*rows))]
    # One format per table, one call per row: a few hundred rows render in well under a millisecond.
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [line.format(*headers).rstrip(), "  ".join("-" * w for w in widths)]
    lines += [line.format(*row).rstrip() for row in rows]
    return "\n".join(lines)


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable() and text == text.strip()


def _all_plain(cells: list[list[str]], headers: list[str], width: int) -> bool:
    """Whether every cell is plain (see _plain), checked in a few passes over all cells at once. A `|`
    next to a space in a cell only sends that table the slow (tabulate) way, never a wrong one."""
    if any(len(row) != width for row in cells):
        return False
    text = "|".join("|".join(row) for row in [headers, *cells])
    if not (text.isascii() and text.isprintable()):
        return False
    return not (text[:1] == " " or text[-1:] == " " or " |" in text or "| " in text)


def table_text(rows: Iterable[Iterable[Any]], headers: list[str]) -> str:
    """Render rows as a "simple" table (tabulate's format), without a trailing newline."""
    cells = [[_cell(v) for v in row] for row in rows]
    if _all_plain(cells, headers, len(headers)):
        return _simple_table(cells, headers)
    if all(len(r) == len(headers) and all(_plain(c) for c in r) for r in cells) \
            and all(_plain(h) for h in headers):
        return _simple_table(cells, headers)
    from tabulate import tabulate
    return tabulate(cells, headers=headers, tablefmt="simple", disable_numparse=True)


def table(rows: Iterable[Iterable[Any]], headers: list[str], out=None) -> None:
    out = out or sys.stdout
    out.write(table_text(rows, headers))
    out.write("\n")


def json_dump(obj: Any, out=None) -> None:
    import json
    out = out or sys.stdout
    json.dump(obj, out, indent=2, ensure_ascii=False)
    out.write("\n")


def json_line(obj: Any, out=None) -> None:
    import json
    (out or sys.stdout).write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")


class replacing_file:  # used like open()
    """`with replacing_file(path) as f:` writes `path`.partial; on success it replaces `path` at once, on any
    failure (Ctrl-C included) it is removed: a reader never sees half a file, and nothing is left behind.
    (A class, not contextlib: that import would cost every command's start-up.)"""

    def __init__(self, path, mode: str = "wb", **kwargs: Any) -> None:
        self.path = path
        self.tmp = f"{os.fspath(path)}.partial"
        self.mode, self.kwargs = mode, kwargs
        self.file = None

    def __enter__(self):
        self.file = open(self.tmp, self.mode, **self.kwargs)
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.file.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
                return
        except BaseException:
            self._remove()
            raise
        self._remove()

    def _remove(self) -> None:
        try:
            os.unlink(self.tmp)
        except OSError:
            pass
