"""Every format file of the running kernel parses, and agrees with a plain line-by-line reading."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import pytest

from rawtrace.parse.descriptors import FieldKind
from rawtrace.parse.format import parse_format, parse_header_event, parse_header_page
from rawtrace.tracefs.events import EventCatalog

pytestmark = pytest.mark.live


def _format_paths(events: Path) -> list[tuple[str, Path]]:
    out = []
    for system in sorted(os.listdir(events)):
        if not (events / system).is_dir():
            continue
        for name in sorted(os.listdir(events / system)):
            path = events / system / name / "format"
            if path.is_file():
                out.append((system, path))
    return out


def _plain_reading(text: str) -> list[tuple[str, int, int, bool]]:
    """(name, offset, size, signed) of each field line, read the simplest possible way: split the line
    at ';', take the number after each colon, and the last identifier of the declaration."""
    out = []
    for line in text.splitlines():
        if not line.startswith("\tfield:"):
            continue
        parts = [p.strip() for p in line.strip().split(";") if p.strip()]
        decl = parts[0].split(":", 1)[1]
        decl = re.sub(r"\[[^\]]*\]", "", decl).strip()       # drop array brackets, wherever they are
        name = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", decl)[-1]
        values = dict(p.split(":", 1) for p in parts[1:])
        out.append((name, int(values["offset"]), int(values["size"]), values["signed"] == "1"))
    return out


@pytest.fixture(scope="module")
def live_events(live_tracefs_available) -> Path:
    events = live_tracefs_available / "events"
    if not os.access(events / "header_page", os.R_OK):
        pytest.skip("tracefs events are not readable")
    return events


def test_every_live_format_parses_and_matches_a_plain_reading(live_events):
    paths = _format_paths(live_events)
    assert len(paths) > 100
    long_size = parse_header_page((live_events / "header_page").read_text()).commit_size
    for system, path in paths:
        text = path.read_text()
        fmt = parse_format(text, system=system, source=str(path), long_size=long_size)
        assert fmt.name == path.parent.name
        assert fmt.system == system
        id_file = path.parent / "id"
        if id_file.exists():
            assert fmt.id == int(id_file.read_text()), path
        got = [(f.name, f.offset, f.size, f.signed) for f in fmt.all_fields]
        assert got == _plain_reading(text), path
        assert all(f.kind in FieldKind.ALL for f in fmt.all_fields)
        assert [f.name for f in fmt.common_fields][:1] == ["common_type"], path
        assert fmt.print_fmt and fmt.print_fmt_string is not None, (path, fmt.notes)


def test_no_two_live_fields_overlap(live_events):
    for system, path in _format_paths(live_events):
        fmt = parse_format(path.read_text(), system=system, source=str(path), long_size=8)
        spans = sorted((f.offset, f.offset + f.size, f.name) for f in fmt.all_fields if f.size)
        for (start_a, end_a, name_a), (start_b, _end_b, name_b) in itertools.pairwise(spans):
            assert end_a <= start_b, f"{path}: {name_a} overlaps {name_b}"
        assert not any("overlap" in note for note in fmt.notes), path


def test_live_headers(live_events):
    page = parse_header_page((live_events / "header_page").read_text())
    assert page.commit_size == 8 and page.data_offset == 16
    assert page.subbuf_size % 4096 == 0
    header = parse_header_event((live_events / "header_event").read_text())
    assert (header.type_len_bits, header.time_delta_bits) == (5, 27)
    assert (header.padding_type, header.time_extend_type, header.time_stamp_type) == (29, 30, 31)
    assert header.data_max_type_len == 28


def test_live_catalog_ids_and_lookup(live_events):
    catalog = EventCatalog(live_events)
    events = catalog.events()
    assert ("syscalls", "sys_enter_openat") in events and ("sched", "sched_switch") in events
    available = (live_events.parent / "available_events").read_text().split()
    assert {f"{s}:{n}" for s, n in events} >= set(available)
    fmt = catalog.format("sched", "sched_switch")
    assert catalog.by_id(fmt.id) is fmt
    assert catalog.event_id("sched", "sched_switch") == fmt.id
    assert catalog.resolve(["sys_enter_openat"]) == [("syscalls", "sys_enter_openat")]
    assert catalog.long_size == 8


def test_every_available_event_resolves(live_events):
    catalog = EventCatalog(live_events)
    for full in (live_events.parent / "available_events").read_text().split():
        system, name = full.split(":")
        assert catalog.resolve([full]) == [(system, name)]
        assert catalog.resolve([f"{system}/{name}"]) == [(system, name)]


def test_format_command_on_every_live_event(live_events, capsys):
    import json

    from rawtrace.cli import main

    assert main(["--tracefs", str(live_events.parent), "format", "*:*", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == len(_format_paths(live_events))
    by_name = {(d["system"], d["name"]): d for d in data}
    openat = by_name[("syscalls", "sys_enter_openat")]
    assert [f["name"] for f in openat["fields"]][4:] == ["__syscall_nr", "dfd", "filename", "flags", "mode"]
    assert main(["format", "sys_enter_openat"]) == 0
    assert capsys.readouterr().out.startswith(f"syscalls:sys_enter_openat  ID {openat['id']}\n")
