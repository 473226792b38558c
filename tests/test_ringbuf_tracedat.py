"""Decode the first pages of the shared trace-cmd capture and check what must hold for real data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rawtrace.parse.record import DecoderSet, Event, Lost, UnknownEvent
from rawtrace.parse.ringbuf import PageLayout, iter_pages

SHARED = Path("/work/shared/data/raw_syscalls_1905722ev.dat")
PAGES = 200

pytestmark = pytest.mark.skipif(not SHARED.exists() or shutil.which("zstd") is None,
                                reason="shared capture or the zstd program is absent")


@pytest.fixture(scope="module")
def capture():
    from rawtrace.parse.format import parse_format, parse_header_event, parse_header_page
    from rawtrace.parse.tracedat import read_tracedat
    dat = read_tracedat(SHARED)
    header_page = parse_header_page(dat.header_page)
    layout = PageLayout.from_headers(header_page, parse_header_event(dat.header_event), dat.byteorder)
    formats = {}
    for system, text in dat.event_formats:
        fmt = parse_format(text, system=system, long_size=header_page.commit_size)
        formats[fmt.id] = fmt
    buf = dat.buffer()
    data = {cpu: dat.cpu_data(buf, cpu)[:PAGES * layout.subbuf_size] for cpu in buf.cpus}
    return layout, formats, data


def test_prefix_invariants(capture) -> None:
    layout, formats, data = capture
    assert layout.subbuf_size == 4096 and layout.long_size == 8
    decoders = DecoderSet(formats, layout.byteorder)
    names = {fmt.id: fmt.name for fmt in formats.values()}
    total = 0
    for cpu, raw in data.items():
        items = list(iter_pages(layout, raw, cpu, decoders, source=str(SHARED)))
        assert not any(isinstance(i, UnknownEvent) for i in items)
        assert not any(isinstance(i, Lost) for i in items)     # stats said overrun: 0
        evs = [i for i in items if isinstance(i, Event)]
        total += len(evs)
        # an average record is 48 bytes: a page of 4080 data bytes holds 60 to 145 of them
        assert 60 * PAGES < len(evs) < 145 * PAGES
        stamps = [e.ts for e in evs]
        assert stamps == sorted(stamps), f"cpu {cpu}: time stamps go backwards"
        assert all(e.cpu == cpu and e.pid > 0 for e in evs)
        # sys_enter and sys_exit of a thread alternate (a syscall can migrate or straddle the prefix)
        last: dict[int, str] = {}
        alternating = repeats = negative = 0
        for e in evs:
            name = names[e.id]
            if e.pid in last:
                if last[e.pid] != name:
                    alternating += 1
                else:
                    repeats += 1
            last[e.pid] = name
            if name == "sys_enter":
                assert len(e.fields["args"]) == 6 and 0 <= e.fields["id"] < 1024
            else:
                assert set(e.fields) == {"id", "ret"}
                assert e.fields["ret"] >= -4095          # -errno or a value; never a misread sign
                negative += e.fields["ret"] < 0
        assert alternating > 20 * repeats
        assert negative > 0
    assert decoders.unknown == {}
    assert total > 0
