"""rawtrace.histogram: bucketing, JSON form, and text identical to bcc's and bpftrace's."""

from __future__ import annotations

import random

import pytest

from rawtrace.histogram import LinearHistogram, Log2Histogram, log2_slot, render_bcc, slot_bounds

# bcc's tools/runqlat_example.txt (the first histogram there): inclusive bounds, 40-star bars.
BCC_RUNQLAT_EXAMPLE = """\
     usecs               : count     distribution
         0 -> 1          : 233      |***********                             |
         2 -> 3          : 742      |************************************    |
         4 -> 7          : 203      |**********                              |
         8 -> 15         : 173      |********                                |
        16 -> 31         : 24       |*                                       |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 30       |*                                       |
       128 -> 255        : 6        |                                        |
       256 -> 511        : 3        |                                        |
       512 -> 1023       : 5        |                                        |
      1024 -> 2047       : 27       |*                                       |
      2048 -> 4095       : 30       |*                                       |
      4096 -> 8191       : 20       |                                        |
      8192 -> 16383      : 29       |*                                       |
     16384 -> 32767      : 809      |****************************************|
     32768 -> 65535      : 64       |***                                     |"""

# Printed by bpftrace 0.2x on this VM for
#   @x = hist() of 0, 1, 1, 2, 3, 5, 1500, 1500, 3000000;  @l = lhist(v, 0, 30, 10) of 7, -1, 45, 12
BPFTRACE_HIST = """\
[0]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
[1]                    2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[2, 4)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[4, 8)                 1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
[8, 16)                0 |                                                    |
[16, 32)               0 |                                                    |
[32, 64)               0 |                                                    |
[64, 128)              0 |                                                    |
[128, 256)             0 |                                                    |
[256, 512)             0 |                                                    |
[512, 1K)              0 |                                                    |
[1K, 2K)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[2K, 4K)               0 |                                                    |
[4K, 8K)               0 |                                                    |
[8K, 16K)              0 |                                                    |
[16K, 32K)             0 |                                                    |
[32K, 64K)             0 |                                                    |
[64K, 128K)            0 |                                                    |
[128K, 256K)           0 |                                                    |
[256K, 512K)           0 |                                                    |
[512K, 1M)             0 |                                                    |
[1M, 2M)               0 |                                                    |
[2M, 4M)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |"""
BPFTRACE_LHIST = """\
(..., 0)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[0, 10)                1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[10, 20)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[20, 30)               0 |                                                    |
[30, ...)              1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|"""


def test_slots_follow_bpftrace_bucketing():
    assert [log2_slot(v) for v in (0, 1, 2, 3, 4, 7, 8, 1023, 1024)] == [0, 1, 2, 2, 3, 3, 4, 10, 11]
    assert log2_slot(-5) == 0
    assert [slot_bounds(s) for s in range(4)] == [(0, 1), (1, 2), (2, 4), (4, 8)]


def test_every_value_lands_inside_its_bucket():
    rng = random.Random(11)
    for _ in range(2000):
        value = rng.randrange(0, 1 << rng.randrange(1, 63))
        lo, hi = slot_bounds(log2_slot(value))
        assert lo <= value < hi


def test_bcc_rendering_matches_runqlat_example():
    counts = [233, 742, 203, 173, 24, 0, 30, 6, 3, 5, 27, 30, 20, 29, 809, 64]
    slots = [0, 233] + counts[1:]   # bcc's first row is slots 0 and 1 together
    assert "\n".join(render_bcc(slots, "usecs")) == BCC_RUNQLAT_EXAMPLE


def test_bcc_rendering_from_values_merges_zero_and_one():
    hist = Log2Histogram()
    for value in (0, 1, 1, 6):
        hist.add(value)
    lines = hist.render("msecs")
    assert lines[0] == "     msecs               : count     distribution"
    assert lines[1].startswith("         0 -> 1          : 3        |" + "*" * 40)
    assert lines[2].startswith("         2 -> 3          : 0        |")
    assert lines[3].startswith("         4 -> 7          : 1        |" + "*" * 13 + " ")
    assert len(lines) == 4


def test_bcc_wide_columns_above_32_bits():
    hist = Log2Histogram()
    hist.add(1 << 40)
    lines = hist.render()
    assert lines[0].startswith("               usecs")
    assert lines[-1] == f"{1 << 40:>20} -> {(1 << 41) - 1:<20} : 1        |{'*' * 20}|"


def test_bpftrace_rendering_matches_bpftrace():
    hist = Log2Histogram()
    for value in (0, 1, 1, 2, 3, 5, 1500, 1500, 3000000):
        hist.add(value)
    assert "\n".join(hist.render(style="bpftrace")) == BPFTRACE_HIST
    lin = LinearHistogram(0, 30, 10)
    for value in (7, -1, 45, 12):
        lin.add(value)
    assert "\n".join(lin.render()) == BPFTRACE_LHIST


def test_json_buckets_count_total_max():
    hist = Log2Histogram()
    for value in (0, 3, 3, 900):
        hist.add(value)
    assert hist.to_json() == {"count": 4, "total": 906, "max": 900, "buckets": [
        {"lo": 0, "hi": 1, "count": 1}, {"lo": 2, "hi": 4, "count": 2}, {"lo": 512, "hi": 1024, "count": 1}]}
    assert sum(b["count"] for b in hist.buckets()) == hist.count


def test_merge_equals_adding_everything_to_one():
    rng = random.Random(3)
    values = [rng.randrange(0, 10 ** 7) for _ in range(500)]
    one, a, b = Log2Histogram(), Log2Histogram(), Log2Histogram()
    for i, value in enumerate(values):
        one.add(value)
        (a if i % 3 else b).add(value)
    a.merge(b)
    assert a.to_json() == one.to_json()


def test_empty_histograms_render_nothing():
    assert Log2Histogram().render() == []
    assert Log2Histogram().render(style="bpftrace") == []
    assert Log2Histogram().buckets() == []
    with pytest.raises(ValueError):
        Log2Histogram().render(style="gnuplot")


def test_linear_json_and_bounds():
    lin = LinearHistogram(0, 25, 10)   # last bin cut at the maximum, like lhist's
    for value in (0, 9, 10, 24, 25, -3):
        lin.add(value)
    assert lin.rows() == [(None, 0, 1), (0, 10, 2), (10, 20, 1), (20, 25, 1), (25, None, 1)]
    assert lin.to_json()["buckets"][0] == {"lo": None, "hi": 0, "count": 1}
    assert lin.max == 25 and lin.count == 6
    with pytest.raises(ValueError):
        LinearHistogram(5, 5, 1)
