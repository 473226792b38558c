"""EventCatalog against a fake tracefs tree built from the captured 6.18 fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rawtrace.errors import ParseError, UsageError
from rawtrace.tracefs.events import EventCatalog, events_dir_of, split_event_name

CAPTURED = min(
    p
    for p in (Path(__file__).resolve().parent / "fixtures" / "formats").iterdir()
    if (p / "events" / "header_page").is_file()
)


@pytest.fixture
def tracefs(tmp_path) -> Path:
    """A copy of the captured tree plus a second system that also has a `sched_switch` (ambiguity)."""
    root = tmp_path / "tracing"
    shutil.copytree(CAPTURED / "events", root / "events")
    shutil.copytree(root / "events" / "sched" / "sched_switch", root / "events" / "other" / "sched_switch")
    (root / "events" / "other" / "sched_switch" / "id").write_text("9999\n")
    fmt = root / "events" / "other" / "sched_switch" / "format"
    fmt.write_text(fmt.read_text().replace("ID: 372", "ID: 9999"))
    (root / "events" / "enable").write_text("0\n")  # files at the top are not systems
    (root / "events" / "sched" / "enable").write_text("0\n")
    return root


def test_names(tracefs):
    catalog = EventCatalog(tracefs / "events")
    assert "sched" in catalog.systems() and "enable" not in catalog.systems()
    events = catalog.events()
    assert events == sorted(events)
    assert ("syscalls", "sys_enter_openat") in events
    assert ("sched", "enable") not in catalog.events("sched")
    assert catalog.exists("sched", "sched_switch") and not catalog.exists("sched", "nope")
    assert not catalog.exists("..", "sched") and not catalog.exists("sched", "")


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("sched:sched_waking", [("sched", "sched_waking")]),
        ("sched/sched_waking", [("sched", "sched_waking")]),
        ("sched_waking", [("sched", "sched_waking")]),
        ("syscalls:sys_enter_open*", [("syscalls", "sys_enter_open"), ("syscalls", "sys_enter_openat")]),
        (
            "sys_exit_*",
            [("syscalls", "sys_exit_getpid"), ("syscalls", "sys_exit_openat"), ("syscalls", "sys_exit_read")],
        ),
        ("*:sched_switch", [("other", "sched_switch"), ("sched", "sched_switch")]),
        ("raw_syscalls:", [("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit")]),
        ("ra?_syscalls:sys_e*", [("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit")]),
    ],
)
def test_resolve(tracefs, pattern, expected):
    assert EventCatalog(tracefs / "events").resolve([pattern]) == expected


def test_resolve_everything_and_dedupe(tracefs):
    catalog = EventCatalog(tracefs / "events")
    everything = catalog.resolve(["*:*"])
    assert everything == catalog.events()
    assert catalog.resolve(["sched:sched_waking", "sched_waking", "sched/*"])[0] == ("sched", "sched_waking")
    assert len(catalog.resolve(["sched:*", "sched:*"])) == len(catalog.events("sched"))


def test_ambiguous_bare_name_lists_choices(tracefs):
    with pytest.raises(UsageError) as info:
        EventCatalog(tracefs / "events").resolve(["sched_switch"])
    assert "ambiguous" in info.value.message
    assert "other:sched_switch" in info.value.message and "sched:sched_switch" in info.value.message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "pattern, nearest",
    [
        ("sched_wakin", "sched:sched_waking"),
        ("sched:sched_wakeupp", "sched:sched_wakeup"),
        ("syscalls:sys_enter_opn", "syscalls:sys_enter_open"),
        ("schd:sched_waking", "sched:sched_waking"),
    ],
)
def test_unknown_names_suggest_nearest(tracefs, pattern, nearest):
    with pytest.raises(UsageError) as info:
        EventCatalog(tracefs / "events").resolve([pattern])
    assert "unknown event" in info.value.message and nearest in info.value.message
    assert info.value.exit_code == 2


def test_glob_without_match(tracefs):
    with pytest.raises(UsageError, match="no event matches"):
        EventCatalog(tracefs / "events").resolve(["nosuch:*"])
    with pytest.raises(UsageError):
        EventCatalog(tracefs / "events").resolve([""])


def test_format_cached_and_by_id(tracefs):
    catalog = EventCatalog(tracefs / "events")
    fmt = catalog.format("sched", "sched_switch")
    assert catalog.format("sched", "sched_switch") is fmt
    assert fmt.id == 372 and fmt.system == "sched"
    assert catalog.by_id(372) is fmt
    assert catalog.by_id(9999).system == "other"
    assert catalog.by_id(123456) is None
    # ftrace events have no id file: the ID comes from the format's ID: line.
    assert catalog.by_id(5).full_name == "ftrace:print"
    assert catalog.event_id("ftrace", "print") == 5
    assert catalog.long_size == 8
    assert catalog.format("ftrace", "function").field("args").element_size == 8
    with pytest.raises(UsageError):
        catalog.format("sched", "nope")


def test_headers(tracefs):
    catalog = EventCatalog(tracefs / "events")
    assert catalog.header_page().data_offset == 16
    assert catalog.header_event().time_extend_type == 30


def test_broken_files(tracefs):
    events = tracefs / "events"
    (events / "sched" / "sched_waking" / "format").write_text("name: sched_waking\nID: x\n")
    catalog = EventCatalog(events)
    with pytest.raises(ParseError) as info:
        catalog.format("sched", "sched_waking")
    assert info.value.line == 2 and "sched_waking/format" in info.value.message
    (events / "header_page").unlink()
    fresh = EventCatalog(events)
    assert fresh.long_size is None
    assert fresh.format("ftrace", "function").field("args").element_size is None
    with pytest.raises(UsageError):
        fresh.header_page()


def test_missing_events_dir(tmp_path):
    with pytest.raises(UsageError, match="no events directory"):
        EventCatalog(tmp_path / "nothing").systems()


def test_helpers(tracefs):
    assert split_event_name("a:b") == ("a", "b") and split_event_name("a/b") == ("a", "b")
    assert split_event_name("b") == (None, "b")
    assert events_dir_of(tracefs) == tracefs / "events"
    assert events_dir_of(tracefs / "events") == tracefs / "events"


def test_lookups_stay_inside_events_dir(tracefs):
    catalog = EventCatalog(tracefs / "events")
    (tracefs / "format").write_text("name: x\nID: 1\nformat:\n")
    for system, name in [("..", "events"), ("sched", ".."), (".", "sched"), ("sched", "a\0b"), ("sched", "")]:
        assert not catalog.exists(system, name)
        with pytest.raises(UsageError):
            catalog.format(system, name)


def test_events_created_later_are_found(tracefs):
    events = tracefs / "events"
    catalog = EventCatalog(events)
    assert catalog.by_id(4242) is None
    assert ("uprobes", "p_bash_0") not in catalog.events()
    # A probe appears after the catalogue listed the tree (as dynamic events do).
    directory = events / "uprobes" / "p_bash_0"
    directory.mkdir(parents=True)
    (directory / "id").write_text("4243\n")
    (directory / "format").write_text(
        "name: p_bash_0\nID: 4243\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        '\n\tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n\nprint fmt: "(%lx)", REC->__probe_ip\n'
    )
    assert catalog.resolve(["uprobes:p_bash_0"]) == [("uprobes", "p_bash_0")]
    assert catalog.resolve(["p_bash_*"]) == [("uprobes", "p_bash_0")]
    assert catalog.by_id(4243).name == "p_bash_0"
    assert catalog.by_id(4242) is None  # still unknown, and not rescanned again
    shutil.rmtree(directory)
    catalog.refresh()
    assert ("uprobes", "p_bash_0") not in catalog.events()
