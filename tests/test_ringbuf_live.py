"""Live: raw sub-buffers read from a private instance decode as written, library and `rawtrace decode`."""

from __future__ import annotations

import errno
import json
import os
import struct
import time
from pathlib import Path

import pytest

from rawtrace.cli import main
from rawtrace.parse.record import DecoderSet, Event, Lost
from rawtrace.parse.ringbuf import PageLayout, iter_pages

pytestmark = pytest.mark.live


def read_raw(path: Path, subbuf_size: int) -> bytes:
    """Drain one CPU's trace_pipe_raw without blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(fd, subbuf_size)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    break
                raise
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


@pytest.fixture
def instance(live_tracefs):
    path = live_tracefs / "instances" / f"rawtrace-{os.getpid()}-ringbuftest"
    path.mkdir()
    affinity = os.sched_getaffinity(0)
    try:
        yield path
    finally:
        os.sched_setaffinity(0, affinity)
        path.rmdir()


@pytest.mark.parametrize("subbuf_kb", [4, 8])
def test_markers_round_trip(instance: Path, tmp_path: Path, capsys, subbuf_kb: int) -> None:
    from rawtrace.parse.format import parse_format, parse_header_event, parse_header_page
    size_file = instance / "buffer_subbuf_size_kb"
    if subbuf_kb != 4:
        if not size_file.exists():
            pytest.skip("this kernel has no buffer_subbuf_size_kb (before 6.8)")
        size_file.write_text(f"{subbuf_kb}\n")
    header_page = parse_header_page((instance / "events/header_page").read_text())
    if subbuf_kb != 4:
        assert header_page.subbuf_size == subbuf_kb * 1024
    layout = PageLayout.from_headers(header_page, parse_header_event((instance / "events/header_event").read_text()))
    formats = {}
    for name in ("print", "raw_data"):
        fmt = parse_format((instance / f"events/ftrace/{name}/format").read_text(), system="ftrace",
                           long_size=header_page.commit_size)
        formats[fmt.id] = fmt

    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    marker = os.open(instance / "trace_marker", os.O_WRONLY)
    marker_raw = os.open(instance / "trace_marker_raw", os.O_WRONLY)
    try:
        os.write(marker, b"hello rawtrace")
        os.write(marker_raw, struct.pack("<I", 0x1234) + b"ABCDEFG")
        os.write(marker, b"L" * 150)                 # a payload over 112 bytes: long-form record
        time.sleep(0.2)                              # more than 2^27 ns: a time extend
        os.write(marker, b"after-sleep")
    finally:
        os.close(marker)
        os.close(marker_raw)
    raw = read_raw(instance / f"per_cpu/cpu{cpu}/trace_pipe_raw", layout.subbuf_size)
    assert raw and len(raw) % layout.subbuf_size == 0

    items = list(iter_pages(layout, raw, cpu, DecoderSet(formats)))
    events = [i for i in items if isinstance(i, Event)]
    assert not [i for i in items if isinstance(i, Lost)]
    assert [(e.format.name, e.pid, e.cpu) for e in events] == [
        ("print", os.getpid(), cpu), ("raw_data", os.getpid(), cpu), ("print", os.getpid(), cpu),
        ("print", os.getpid(), cpu)]
    hello, raw_data, long_one, after = events
    assert hello.fields["buf"] == "hello rawtrace\n"
    assert raw_data.fields["id"] == 0x1234 and raw_data.fields["buf"].startswith("ABCDEFG")
    assert long_one.fields["buf"] == "L" * 150 + "\n"
    assert after.fields["buf"] == "after-sleep\n"
    assert hello.ts <= raw_data.ts <= long_one.ts
    assert 0.19e9 < after.ts - long_one.ts < 5e9

    # The same bytes through the command, with the instance directory as the tracefs copy.
    (tmp_path / f"cpu{cpu}.raw").write_bytes(raw)
    code = main(["decode", "--tracefs", str(instance), "--json", str(tmp_path / f"cpu{cpu}.raw")])
    out = capsys.readouterr().out
    assert code == 0
    # NDJSON: split on newlines only (strings may hold other line separators, such as U+0085)
    rows = [r for r in (json.loads(line) for line in out.split("\n") if line) if r["type"] == "event"]
    # ts is exact decimal seconds in the JSON: back to the nanoseconds the decoder saw.
    assert [(r["event"], r["cpu"], round(r["ts"] * 1e9)) for r in rows] == \
        [("ftrace:" + e.format.name, cpu, e.ts) for e in events]
