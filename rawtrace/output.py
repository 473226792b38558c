"""Output rendering in one place: tables (tabulate, imported lazily), JSON, NDJSON, and escaping."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

# Every C0 control character, DEL and backslash → a visible escape, the way strace shows them.
_ESCAPES = {i: f"\\x{i:02x}" for i in range(0x20)}
_ESCAPES.update({0x7f: "\\x7f", ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})


def escape(text: str) -> str:
    """Make text a traced process controls (comm, paths, argv) safe to print on a terminal."""
    if text.isprintable() and "\\" not in text:
        return text
    return text.translate(_ESCAPES)


def table(rows: Iterable[Iterable[Any]], headers: list[str], out=None) -> None:
    from tabulate import tabulate
    out = out or sys.stdout
    out.write(tabulate(list(rows), headers=headers, tablefmt="simple", disable_numparse=True))
    out.write("\n")


def json_dump(obj: Any, out=None) -> None:
    out = out or sys.stdout
    json.dump(obj, out, indent=2, ensure_ascii=False)
    out.write("\n")


def json_line(obj: Any, out=None) -> None:
    (out or sys.stdout).write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
