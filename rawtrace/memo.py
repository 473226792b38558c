"""Generated functions that remember what they make per key, while that pays.

A loop repeats its calls' arguments (the same fd, buffer and flags), so a compiled renderer can look its text
up instead of making it again. A lookup that finds its text costs a fraction of making it; one that does not
costs a little more than making it. So the memo is checked every CHECK misses and left alone for PAUSE calls
when fewer than half the lookups since the last check found their value; it is emptied past LIMIT values.
"""

from __future__ import annotations

LIMIT = 4096
CHECK = 1024
PAUSE = 65536


def memo_namespace() -> dict:
    """The names memo_lines() uses, with a fresh memo (one per generated function)."""
    memo: dict = {}
    return {"MEMO": memo, "MEMO_GET": memo.get, "MEMO_LIMIT": LIMIT, "MEMO_CHECK": CHECK, "MEMO_PAUSE": PAUSE}


def memo_lines(result: str, key: str, make: str, indent: str = "        ") -> list[str]:
    """Source lines that set `result` to the expression `make`, remembered per the expression `key`. They
    run in a function nested in one that set `hits = misses = off = 0` and declare those nonlocal."""
    return [f"{indent}if off:",
            f"{indent}    off -= 1",
            f"{indent}    {result} = {make}",
            f"{indent}else:",
            f"{indent}    key = {key}",
            f"{indent}    {result} = MEMO_GET(key)",
            f"{indent}    if {result} is None:",
            f"{indent}        {result} = {make}",
            f"{indent}        misses += 1",
            f"{indent}        if misses == MEMO_CHECK:",
            f"{indent}            if hits < misses:",
            f"{indent}                off = MEMO_PAUSE",
            f"{indent}                MEMO.clear()",
            f"{indent}            hits = misses = 0",
            f"{indent}            if len(MEMO) >= MEMO_LIMIT:",
            f"{indent}                MEMO.clear()",
            f"{indent}        MEMO[key] = {result}",
            f"{indent}    else:",
            f"{indent}        hits += 1"]
