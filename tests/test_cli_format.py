"""`rawtrace format` and `rawtrace events` against a fake tracefs tree given with --tracefs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rawtrace.cli import main

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ROOT / "tests" / "fixtures" / "formats"
CAPTURED = min(p for p in FORMATS.iterdir() if (p / "events" / "header_page").is_file())


@pytest.fixture
def tracefs(tmp_path) -> Path:
    root = tmp_path / "tracing"
    shutil.copytree(CAPTURED / "events", root / "events")
    shutil.copytree(root / "events" / "sched" / "sched_switch", root / "events" / "other" / "sched_switch")
    odd = root / "events" / "odd" / "overlap"
    odd.mkdir(parents=True)
    shutil.copy(FORMATS / "handwritten" / "overlapping_fields.format", odd / "format")
    return root


def run(capsys, tracefs, *args) -> tuple[int, str, str]:
    code = main(["--tracefs", str(tracefs), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_format_text(capsys, tracefs):
    code, out, err = run(capsys, tracefs, "format", "sys_enter_openat")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "syscalls:sys_enter_openat  ID 782"
    assert lines[1].split() == ["OFFSET", "SIZE", "SIGNED", "TYPE", "NAME", "KIND"]
    row = next(line for line in lines if " filename" in line)
    assert row.split() == ["24", "8", "0", "const", "char", "*", "filename", "pointer"]
    assert any(line.split()[-2:] == ["common_pid", "*"] or "common_pid *" in line for line in lines)
    assert lines[-1].startswith('print fmt: "dfd: 0x%08lx, filename: 0x%08lx')


def test_format_text_shows_counts_and_notes(capsys, tracefs):
    code, out, _ = run(capsys, tracefs, "format", "sched:sched_switch")
    assert code == 0 and "string[16]" in out
    code, out, _ = run(capsys, tracefs, "format", "odd:overlap")
    assert code == 0 and "NOTES" in out and "overlaps low" in out
    assert "note: fields whole and low overlap" in out


def test_format_json_single_object(capsys, tracefs):
    code, out, _ = run(capsys, tracefs, "format", "syscalls/sys_exit_openat", "--json")
    assert code == 0
    data = json.loads(out)
    assert isinstance(data, dict)
    assert (data["system"], data["name"], data["id"]) == ("syscalls", "sys_exit_openat", 781)
    assert set(data) >= {
        "system",
        "name",
        "id",
        "fields",
        "print_fmt",
        "print_fmt_string",
        "print_fmt_args",
        "notes",
    }
    ret = data["fields"][-1]
    assert ret == {
        "name": "ret",
        "type": "long",
        "offset": 16,
        "size": 8,
        "signed": True,
        "common": False,
        "kind": "integer",
        "element_type": None,
        "element_size": None,
        "count": None,
        "notes": [],
    }
    assert data["fields"][0]["common"] is True
    assert data["print_fmt"] == '"0x%lx", REC->ret' and data["print_fmt_args"] == ["REC->ret"]


def test_format_json_array_for_glob_or_several(capsys, tracefs):
    code, out, _ = run(capsys, tracefs, "format", "ftrace:function", "--json")
    assert isinstance(json.loads(out), dict)
    code, out, _ = run(capsys, tracefs, "format", "ftrace:functio*", "--json")
    data = json.loads(out)
    assert code == 0 and isinstance(data, list) and [d["name"] for d in data] == ["function"]
    args = data[0]["fields"][-1]
    assert (args["kind"], args["element_type"], args["element_size"], args["count"]) == (
        "flex_array", "unsigned long", 8, None)
    assert all(set(f) == set(args) for event in data for f in event["fields"])
    code, out, _ = run(capsys, tracefs, "format", "sched:sched_waking", "sched:sched_wakeup", "--json")
    assert [d["name"] for d in json.loads(out)] == ["sched_waking", "sched_wakeup"]
    code, out, _ = run(capsys, tracefs, "format", "*:*", "--json")
    everything = json.loads(out)
    assert len(everything) == sum(1 for _ in (tracefs / "events").glob("*/*/format"))


def test_format_ambiguous_and_unknown(capsys, tracefs):
    code, out, err = run(capsys, tracefs, "format", "sched_switch")
    assert code == 2 and out == ""
    assert "ambiguous" in err and "other:sched_switch" in err and "sched:sched_switch" in err
    code, out, err = run(capsys, tracefs, "format", "sched_wakeupp")
    assert code == 2 and out == ""
    first = err.splitlines()[0]
    assert first.startswith("rawtrace: unknown event 'sched_wakeupp'; nearest: sched:sched_wakeup")
    assert "Traceback" not in err


def test_format_unreadable_format_file_is_one_line(capsys, tracefs):
    (tracefs / "events" / "sched" / "sched_waking" / "format").write_text("name: sched_waking\nformat:\n")
    code, out, err = run(capsys, tracefs, "format", "sched:sched_waking")
    assert code == 2 and out == ""
    assert err.startswith("rawtrace: ") and "sched_waking/format" in err and "no `ID:` line" in err


def test_events_text_and_json(capsys, tracefs):
    code, out, _ = run(capsys, tracefs, "events")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["SYSTEM", "EVENT", "ID"]
    assert ["sched", "sched_switch", "372"] in [line.split() for line in lines]
    assert ["ftrace", "print", "5"] in [line.split() for line in lines]  # no id file: from the format
    code, out, _ = run(capsys, tracefs, "events", "sched", "--json")
    data = json.loads(out)
    assert {d["system"] for d in data} == {"sched"} and {"system", "name", "id"} == set(data[0])
    code, out, _ = run(capsys, tracefs, "events", "sys_exit_*", "--json")
    assert [d["name"] for d in json.loads(out)] == ["sys_exit_getpid", "sys_exit_openat", "sys_exit_read"]
    code, out, _ = run(capsys, tracefs, "events", "sched_switch", "--json")
    assert [(d["system"], d["id"]) for d in json.loads(out)] == [("other", 372), ("sched", 372)]
    code, out, err = run(capsys, tracefs, "events", "sched_wakeupp")
    assert code == 2 and "nearest: sched:sched_wakeup" in err


def test_subprocess_exit_code_and_no_traceback(tracefs):
    result = subprocess.run(
        [sys.executable, "-m", "rawtrace", "--tracefs", str(tracefs), "format", "nosuch_event"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) <= 2 and "Traceback" not in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "rawtrace", "format", "--help"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "examples:" in result.stdout


def test_note_when_tracefs_was_mounted_now(capsys, tracefs, monkeypatch):
    from rawtrace.tracefs import discover

    monkeypatch.delenv("RAWTRACE_TRACEFS", raising=False)
    monkeypatch.delenv("RAWTRACE_ROOT", raising=False)
    monkeypatch.setattr(
        discover,
        "find_tracefs",
        lambda host: discover.TracefsLocation(tracefs, "mounted now", mounted_now=True),
    )
    code = main(["format", "sched:sched_waking"])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("sched:sched_waking  ID ")
    assert err == f"rawtrace: note: tracefs was not mounted; mounted it at {tracefs}\n"


GOLDEN = FORMATS / "golden"
GOLDEN_CASES = [
    ("format_sched_switch.txt", ["format", "sched:sched_switch"]),
    ("format_ftrace_function.txt", ["format", "ftrace/function"]),
    ("format_sys_enter_openat.json", ["format", "syscalls:sys_enter_openat", "--json"]),
    ("format_ipi_glob.json", ["format", "ipi:*", "--json"]),
    ("events_raw_syscalls.txt", ["events", "raw_syscalls"]),
]


@pytest.mark.parametrize("golden, argv", GOLDEN_CASES, ids=[name for name, _ in GOLDEN_CASES])
def test_golden_output(capsys, golden, argv):
    """Output on the captured 6.18 tree, byte for byte. After an intended change, regenerate with
    RAWTRACE_REGEN_GOLDEN=1 python3 -m pytest tests/test_cli_format.py -k golden, and review the diff."""
    import os

    code = main(["--tracefs", str(CAPTURED), *argv])
    out = capsys.readouterr().out
    assert code == 0
    path = GOLDEN / golden
    if os.environ.get("RAWTRACE_REGEN_GOLDEN"):
        path.write_text(out)
    assert out == path.read_text()


def test_root_option_finds_tracefs_through_the_fake_mount_table(capsys, tmp_path):
    root = tmp_path / "root"
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "self" / "mounts").write_text("tracefs /srv/trace tracefs rw,nosuid 0 0\n")
    shutil.copytree(CAPTURED / "events", root / "srv" / "trace" / "events")
    code = main(["--root", str(root), "format", "raw_syscalls:sys_exit", "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert json.loads(out)["name"] == "sys_exit"
    code = main(["--root", str(tmp_path / "empty"), "events"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "no tracefs found" in err
