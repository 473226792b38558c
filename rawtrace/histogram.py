"""Power-of-two and linear histograms, rendered like bcc's and bpftrace's, with a JSON form."""

from __future__ import annotations

from collections.abc import Iterable

# Bar widths of the two tools being imitated: bcc's print_log2_hist draws 40 stars, bpftrace 52 '@'.
BCC_BAR_WIDTH = 40
BPFTRACE_BAR_WIDTH = 52


def log2_slot(value: int) -> int:
    """The power-of-two bucket of `value`: 0 for 0, then k for 2**(k-1) <= value < 2**k.

    This is bpftrace's hist() bucketing ([0], [1], [2, 4), [4, 8) ...). Negative values count as 0:
    a latency cannot be negative and a clock step must not crash a summary."""
    return value.bit_length() if value > 0 else 0


def slot_bounds(slot: int) -> tuple[int, int]:
    """[lo, hi) of a log2 slot: slot 0 is [0, 1), slot k is [2**(k-1), 2**k)."""
    if slot <= 0:
        return 0, 1
    return 1 << (slot - 1), 1 << slot


class Log2Histogram:
    """Counts of values in power-of-two buckets; also keeps count, total and max of the raw values."""

    __slots__ = ("count", "max", "slots", "total")

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.count = 0
        self.total = 0
        self.max = 0

    def add(self, value: int, times: int = 1) -> None:
        slot = log2_slot(value)
        if slot >= len(self.slots):
            self.slots.extend([0] * (slot + 1 - len(self.slots)))
        self.slots[slot] += times
        self.count += times
        self.total += max(value, 0) * times
        self.max = max(self.max, value)

    def merge(self, other: Log2Histogram) -> None:
        if len(other.slots) > len(self.slots):
            self.slots.extend([0] * (len(other.slots) - len(self.slots)))
        for slot, n in enumerate(other.slots):
            self.slots[slot] += n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def buckets(self) -> list[dict]:
        """Non-empty buckets in order: [{"lo": .., "hi": .., "count": ..}], hi exclusive."""
        out = []
        for slot, n in enumerate(self.slots):
            if n:
                lo, hi = slot_bounds(slot)
                out.append({"lo": lo, "hi": hi, "count": n})
        return out

    def to_json(self) -> dict:
        return {"count": self.count, "total": self.total, "max": self.max, "buckets": self.buckets()}

    def render(self, unit: str = "usecs", style: str = "bcc") -> list[str]:
        """Text lines: style "bcc" (runqlat's `usecs : count distribution`) or "bpftrace" (`[lo, hi)` and @)."""
        if style == "bcc":
            return render_bcc(self.slots, unit)
        if style == "bpftrace":
            return render_bpftrace([(*slot_bounds(s), n) for s, n in enumerate(self.slots)], log2=True)
        raise ValueError(f"unknown histogram style {style!r} (bcc or bpftrace)")


class LinearHistogram:
    """Counts in fixed-width buckets [min + i*step, min + (i+1)*step), with under/overflow buckets (lhist)."""

    __slots__ = ("bins", "count", "max", "maximum", "minimum", "over", "step", "total", "under")

    def __init__(self, minimum: int, maximum: int, step: int) -> None:
        if step <= 0 or maximum <= minimum:
            raise ValueError("a linear histogram needs step > 0 and maximum > minimum")
        self.minimum, self.maximum, self.step = minimum, maximum, step
        self.bins = [0] * -(-(maximum - minimum) // step)
        self.under = self.over = 0
        self.count = self.total = self.max = 0

    def add(self, value: int, times: int = 1) -> None:
        if value < self.minimum:
            self.under += times
        elif value >= self.maximum:
            self.over += times
        else:
            self.bins[(value - self.minimum) // self.step] += times
        self.count += times
        self.total += value * times
        self.max = max(self.max, value) if self.count > times else value

    def rows(self) -> list[tuple[int | None, int | None, int]]:
        """(lo, hi, count) including the open-ended under/overflow rows (None for the missing bound)."""
        rows: list[tuple[int | None, int | None, int]] = [(None, self.minimum, self.under)]
        for i, n in enumerate(self.bins):
            lo = self.minimum + i * self.step
            rows.append((lo, min(lo + self.step, self.maximum), n))
        rows.append((self.maximum, None, self.over))
        return rows

    def buckets(self) -> list[dict]:
        return [{"lo": lo, "hi": hi, "count": n} for lo, hi, n in self.rows() if n]

    def to_json(self) -> dict:
        return {"count": self.count, "total": self.total, "max": self.max, "buckets": self.buckets()}

    def render(self) -> list[str]:
        return render_bpftrace(self.rows(), log2=False)


def bar(value: int, value_max: int, width: int, char: str) -> str:
    """`char` repeated floor(width * value / value_max) times, as both tools draw it (so a count far
    below the peak gets an empty bar; the count column still shows it)."""
    if value <= 0 or value_max <= 0:
        return ""
    return char * min(width, value * width // value_max)


def render_bcc(slots: list[int], unit: str) -> list[str]:
    """bcc's log2 layout: a `unit : count distribution` header, then `lo -> hi : count |***|` rows with
    inclusive bounds, from the first row up to the last non-empty one. Like bcc the first row covers 0
    and 1 together (`0 -> 1`), and bounds wider than 32 bits switch to wide columns and half-width bars."""
    last = max((i for i, n in enumerate(slots) if n), default=-1)
    if last < 0:
        return []
    # Rows are bcc's slots: row k (k >= 1) holds values 2**(k-1) .. 2**k - 1, row 1 also holds 0.
    rows = [(0, 1, (slots[0] if slots else 0) + (slots[1] if len(slots) > 1 else 0))]
    for k in range(2, last + 1):
        rows.append((1 << (k - 1), (1 << k) - 1, slots[k]))
    peak = max(n for _, _, n in rows)
    if last <= 32:
        lines = [f"     {unit:<19} : count     distribution"]
        width, fmt = BCC_BAR_WIDTH, "{:>10} -> {:<10} : {:<8} |{:<{w}}|"
    else:
        lines = [f"               {unit:<29} : count     distribution"]
        width, fmt = BCC_BAR_WIDTH // 2, "{:>20} -> {:<20} : {:<8} |{:<{w}}|"
    for lo, hi, n in rows:
        lines.append(fmt.format(lo, hi, n, bar(n, peak, width, "*"), w=width))
    return lines


def _si(value: int) -> str:
    """bpftrace's bound labels: 1K, 2M, 4G for exact multiples of powers of 1024."""
    for suffix, scale in (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= scale and value % scale == 0:
            return f"{value // scale}{suffix}"
    return str(value)


def render_bpftrace(rows: Iterable[tuple[int | None, int | None, int]], log2: bool) -> list[str]:
    """bpftrace's layout: `[lo, hi)   count |@@@|`, from the first to the last non-empty row.
    For log2 histograms the single-value rows are `[0]` and `[1]` as bpftrace prints them."""
    rows = list(rows)
    used = [i for i, (_, _, n) in enumerate(rows) if n]
    if not used:
        return []
    rows = rows[used[0]:used[-1] + 1]
    peak = max(n for _, _, n in rows)
    lines = []
    for lo, hi, n in rows:
        if lo is None:
            label = f"(..., {_si(hi)})"
        elif hi is None:
            label = f"[{_si(lo)}, ...)"
        elif log2 and hi - lo == 1:
            label = f"[{lo}]"
        else:
            label = f"[{_si(lo)}, {_si(hi)})"
        lines.append(f"{label:<16}{n:>8} |{bar(n, peak, BPFTRACE_BAR_WIDTH, '@'):<{BPFTRACE_BAR_WIDTH}}|")
    return lines
