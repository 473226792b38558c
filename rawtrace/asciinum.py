"""Strict ASCII number parsing for numbers read from files (str.isdigit() and int() accept other scripts)."""

from __future__ import annotations

# int() and str.isdigit() accept Unicode digits ("٣", "²" passes isdigit() and then int() fails), "_"
# separators, signs and surrounding spaces; numbers in kernel and trace files are plain ASCII.
_DIGITS = frozenset("0123456789")
_OCTAL = frozenset("01234567")
_HEX = frozenset("0123456789abcdefABCDEF")
_SETS = {10: _DIGITS, 8: _OCTAL, 16: _HEX}


def ascii_digits(text: str, base: int = 10) -> bool:
    """True when `text` is one or more ASCII digits of `base` (10, 8 or 16), nothing else."""
    return bool(text) and _SETS[base].issuperset(text)


def ascii_int(text: str | bytes, base: int = 10, *, max_digits: int = 40) -> int | None:
    """The value of `text` if it is only ASCII digits of `base` (at most `max_digits` of them), else None.

    No sign, no spaces, no underscores; bytes are taken as ASCII."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not text or len(text) > max_digits or not _SETS[base].issuperset(text):
        return None
    return int(text, base)
