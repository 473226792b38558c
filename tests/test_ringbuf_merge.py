"""merge_by_time: per-CPU chunked streams into one time-ordered stream, nothing lost or duplicated."""

from __future__ import annotations

import random

from rawtrace.parse.record import Lost
from rawtrace.parse.ringbuf import merge_by_time


def chunks(items: list, sizes: list[int]):
    at = 0
    for size in sizes:
        yield items[at:at + size]
        at += size
    if at < len(items):
        yield items[at:]


def test_merge_orders_by_time_and_keeps_every_item() -> None:
    rng = random.Random(7)
    streams, everything = [], []
    for cpu in range(4):
        stamps = sorted(rng.randrange(10_000) for _ in range(500))
        items = [Lost(cpu, ts, n) for n, ts in enumerate(stamps)]
        everything += items
        streams.append(chunks(items, [rng.randrange(1, 60) for _ in range(40)]))
    merged = list(merge_by_time(streams))
    assert [i.ts for i in merged] == sorted(i.ts for i in everything)
    assert sorted(merged, key=lambda i: (i.cpu, i.count)) == sorted(everything, key=lambda i: (i.cpu, i.count))
    # within a CPU the original order is kept
    for cpu in range(4):
        assert [i.count for i in merged if i.cpu == cpu] == list(range(500))


def test_merge_single_and_empty_streams() -> None:
    one = [Lost(0, ts, 0) for ts in (1, 2, 3)]
    assert list(merge_by_time([iter([one[:2], one[2:]])])) == one
    assert list(merge_by_time([iter([]), iter([one])])) == one
    assert list(merge_by_time([])) == []


def test_merge_survives_time_going_backwards() -> None:
    a = [Lost(0, ts, 0) for ts in (5, 1, 9)]       # not monotonic: still all delivered, no hang
    b = [Lost(1, ts, 0) for ts in (2, 3)]
    merged = list(merge_by_time([iter([a]), iter([b[:1], b[1:]])]))
    assert sorted(merged, key=lambda i: (i.cpu, i.ts)) == sorted(a + b, key=lambda i: (i.cpu, i.ts))
