"""`rawtrace list-syscalls`: text and JSON output, patterns, errors, stale-table flags on a fake tracefs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rawtrace.cli import main
from rawtrace.syscalls.arches import X32_SYSCALL_BIT, host_arch
from rawtrace.syscalls.tables import load_table

ROOT = Path(__file__).resolve().parent.parent
HOST = host_arch()
needs_known_host = pytest.mark.skipif(HOST.startswith("unknown-"), reason="no table for this machine")

COMMON = ("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
          "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
          "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
          "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n")


def _enter_format(name: str, event_id: int, args: list[tuple[str, str]]) -> str:
    lines = [f"name: sys_enter_{name}", f"ID: {event_id}", "format:", COMMON.rstrip("\n"), "",
             "\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;"]
    for i, (ctype, arg) in enumerate(args):
        lines.append(f"\tfield:{ctype} {arg};\toffset:{16 + 8 * i};\tsize:8;\tsigned:0;")
    fmt = ", ".join(f"{a}: 0x%08lx" for _t, a in args)
    rec = ", ".join(f"((unsigned long)(REC->{a}))" for _t, a in args)
    lines += ["", f'print fmt: "{fmt}"' + (f", {rec}" if rec else "")]
    return "\n".join(lines) + "\n"


def _exit_format(name: str, event_id: int) -> str:
    return (f"name: sys_exit_{name}\nID: {event_id}\nformat:\n{COMMON}"
            "\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n"
            "\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n\n"
            'print fmt: "0x%lx", REC->ret\n')


def make_tracefs(root: Path, enter: dict[str, list[tuple[str, str]]], exit_: list[str]) -> Path:
    """A fake tracefs with events/syscalls/sys_enter_<name>/format (and sys_exit_<name>)."""
    syscalls = root / "events" / "syscalls"
    syscalls.mkdir(parents=True)
    (syscalls / "enable").write_text("0\n")
    event_id = 600
    for name, args in enter.items():
        (syscalls / f"sys_enter_{name}").mkdir()
        (syscalls / f"sys_enter_{name}" / "format").write_text(_enter_format(name, event_id, args))
        event_id += 1
    for name in exit_:
        (syscalls / f"sys_exit_{name}").mkdir()
        (syscalls / f"sys_exit_{name}" / "format").write_text(_exit_format(name, event_id))
        event_id += 1
    return root


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["list-syscalls", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_text_output_other_arch_no_tracepoint_columns(capsys):
    rc, out, err = run_cli(capsys, "read", "openat", "--arch", "aarch64")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NR", "NAME", "ABI", "ENTRY"]
    assert lines[2].split() == ["56", "openat", "common", "sys_openat"]
    assert lines[3].split() == ["63", "read", "common", "sys_read"]
    assert err == ""


def test_json_shape_and_x32_number(capsys):
    rc, out, _err = run_cli(capsys, "--arch", "amd64", "--abi", "x32", "--json", "read", "rt_sigaction")
    assert rc == 0
    records = json.loads(out)
    assert [(r["nr"], r["name"], r["abi"]) for r in records] == [
        (X32_SYSCALL_BIT | 0, "read", "x32"), (X32_SYSCALL_BIT | 512, "rt_sigaction", "x32")]
    for record in records:
        assert {"nr", "name", "abi", "entry", "compat_entry"} <= set(record)
    assert records[1]["entry"] == "compat_sys_rt_sigaction"


def test_glob_and_number_patterns(capsys):
    rc, out, _ = run_cli(capsys, "--arch", "x86_64", "--json", "open*", "59", "0x40000002")
    assert rc == 0
    got = [(r["nr"], r["name"]) for r in json.loads(out)]
    assert (59, "execve") in got and (257, "openat") in got and (437, "openat2") in got
    assert (X32_SYSCALL_BIT | 2, "open") in got
    assert all(name.startswith("open") or name == "execve" for _nr, name in got)


def test_mips_numbers_include_the_abi_base(capsys):
    rc, out, _ = run_cli(capsys, "--arch", "mips64", "--abi", "o32", "--json", "read")
    assert rc == 0 and json.loads(out)[0]["nr"] == 4003


@pytest.mark.parametrize("argv,expected", [
    (["--arch", "armv9"], "unknown architecture 'armv9'"),
    (["--arch", "x86_64", "opne"], "did you mean open"),
    (["--arch", "x86_64", "99999"], "no syscall number 99999"),
    (["--arch", "x86_64", "--abi", "n32"], "x86_64 has no ABI 'n32' (choices: 64, x32, i386)"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, expected):
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err
    assert "Traceback" not in err


def test_unknown_arch_lists_valid_choices(capsys):
    _rc, _out, err = run_cli(capsys, "--arch", "vax")
    assert "choices: x86_64, i386, arm64, arm" in err


@needs_known_host
def test_stale_table_flagged_against_fake_tracefs(tmp_path, capsys):
    table = load_table(HOST)
    read = table.by_name("read")
    write = table.by_name("write")
    tracefs = make_tracefs(tmp_path, {
        "read": [("unsigned int", "fd"), ("char *", "buf"), ("size_t", "count")],
        "write": [("unsigned int", "fd"), ("const char *", "buf"), ("size_t", "count")],
        "brand_new_call": [("int", "flags")],
    }, ["read", "brand_new_call"])
    rc, out, err = run_cli(capsys, "--tracefs", str(tracefs), "--json", "--args")
    assert rc == 0
    records = json.loads(out)
    by_name = {r["name"]: r for r in records}
    assert by_name["read"]["nr"] == read.nr
    assert by_name["read"]["tracepoints"] == {"enter": True, "exit": True}
    assert by_name["read"]["tracepoint"] == "syscalls:sys_enter_read"
    assert by_name["read"]["args"] == [{"name": "fd", "type": "unsigned int"},
                                       {"name": "buf", "type": "char *"},
                                       {"name": "count", "type": "size_t"}]
    assert by_name["write"]["nr"] == write.nr
    assert by_name["write"]["tracepoints"] == {"enter": True, "exit": False}
    new = by_name["brand_new_call"]
    assert (new["nr"], new["in_table"], new["tracepoints"]) == (None, False, {"enter": True, "exit": True})
    assert new["args"] == [{"name": "flags", "type": "int"}]
    without = [r for r in records if r.get("in_table") and r["entry"] and r["entry"] != "sys_ni_syscall"
               and r["tracepoint"] is None]
    assert len(without) == len([s for s in table.main_entries if s.entry and s.entry != "sys_ni_syscall"]) - 2
    notes = err.splitlines()
    assert any("1 syscall(s) have tracepoints on this kernel" in n and "brand_new_call" in n
               and f"Linux {table.kernel_version} table" in n for n in notes), err
    assert any(f"{len(without)} table entries have no tracepoint" in n for n in notes), err


@needs_known_host
def test_stale_markers_in_text_output(tmp_path, capsys):
    tracefs = make_tracefs(tmp_path, {"read": [], "brand_new_call": []}, ["read", "brand_new_call"])
    rc, out, err = run_cli(capsys, "--tracefs", str(tracefs), "read", "write", "brand*")
    assert rc == 0
    rows = [line.split() for line in out.splitlines()[2:]]
    assert rows[0][1:] == ["read", rows[0][2], "sys_read", "yes"]
    assert rows[1][1] == "write" and rows[1][-1] == "-"
    assert rows[2] == ["?", "brand_new_call", "?", "?", "+kernel"]
    assert "1 syscall(s) have tracepoints" in err and "1 table entry has no tracepoint" in err
    assert max(len(line) for line in out.splitlines()) < 80


@needs_known_host
def test_json_without_args_has_tracepoints_but_reads_no_format_file(tmp_path, capsys):
    tracefs = make_tracefs(tmp_path, {"read": []}, ["read"])
    (tracefs / "events/syscalls/sys_enter_read/format").write_text("garbage that would not parse\n")
    rc, out, _ = run_cli(capsys, "--tracefs", str(tracefs), "--json", "read")
    assert rc == 0
    [record] = json.loads(out)
    assert record["tracepoints"] == {"enter": True, "exit": True} and "args" not in record
    # With --args a format file that does not parse leaves the row in place, without arguments.
    rc, out, _ = run_cli(capsys, "--tracefs", str(tracefs), "--json", "--args", "read")
    assert rc == 0 and json.loads(out)[0]["args"] is None


@needs_known_host
def test_args_column_from_format_files(tmp_path, capsys):
    tracefs = make_tracefs(tmp_path, {"openat": [("int", "dfd"), ("const char *", "filename")]}, ["openat"])
    rc, out, _ = run_cli(capsys, "--tracefs", str(tracefs), "--args", "openat")
    assert rc == 0
    assert out.splitlines()[0].split()[-1] == "ARGS"
    assert out.splitlines()[2].endswith("int dfd, const char *filename")


@needs_known_host
def test_missing_tracefs_is_a_note_not_an_error(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "--tracefs", str(tmp_path / "none"), "read")
    assert rc == 0
    assert out.splitlines()[0].split() == ["NR", "NAME", "ABI", "ENTRY"]
    assert err.startswith("note: no tracepoint columns:")


def _run_module(cwd: Path, pythonpath: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    env.pop("RAWTRACE_TRACEFS", None)
    return subprocess.run([sys.executable, "-m", "rawtrace", "list-syscalls", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_tables_found_from_a_checkout_outside_the_repo(tmp_path):
    proc = _run_module(tmp_path, ROOT, "read", "--arch", "x86_64", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["nr"] == 0


def test_tables_found_in_an_installed_layout(tmp_path):
    """The wheel maps tables/ to rawtrace/tables; rebuild that layout by copying and run from elsewhere."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "rawtrace", site / "rawtrace", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tables", site / "rawtrace" / "tables",
                    ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    proc = _run_module(work, site, "read", "--arch", "i386", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["nr"] == 3
    code = "from rawtrace.syscalls.tables import tables_dir; print(tables_dir())"
    probe = subprocess.run([sys.executable, "-c", code], cwd=work, env=dict(os.environ, PYTHONPATH=str(site)),
                           capture_output=True, text=True, timeout=60, check=True)
    assert probe.stdout.strip() == str(site / "rawtrace" / "tables")


def test_captured_root_of_another_machine_uses_its_arch_and_tracefs(tmp_path, capsys):
    """--root DIR: the machine is DIR/proc/sys/kernel/arch and tracefs is found under DIR, so an arm64
    capture is checked against the arm64 table wherever the test runs."""
    root = tmp_path / "root"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/arch").write_text("aarch64\n")
    (root / "proc/sys/kernel/osrelease").write_text("6.99.0-test\n")
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mounts").write_text("tracefs /sys/kernel/tracing tracefs rw,nosuid 0 0\n")
    make_tracefs(root / "sys/kernel/tracing", {"read": [], "openat": [], "renameat2": []}, ["read"])
    rc, out, err = run_cli(capsys, "--root", str(root), "--json", "read", "openat", "renameat2")
    assert rc == 0
    got = [(r["nr"], r["name"], r["tracepoints"]) for r in json.loads(out)]
    assert got == [(56, "openat", {"enter": True, "exit": False}),
                   (63, "read", {"enter": True, "exit": True}),
                   (276, "renameat2", {"enter": True, "exit": False})]
    assert "6.99.0-test" not in err  # nothing stale among the selected syscalls


def test_compat_entry_column_only_for_abis_that_use_it(capsys):
    _rc, out, _ = run_cli(capsys, "--arch", "s390x", "read")
    assert out.splitlines()[0].split() == ["NR", "NAME", "ABI", "ENTRY"]
    _rc, out, _ = run_cli(capsys, "--arch", "s390x", "--abi", "32", "read")
    assert out.splitlines()[0].split() == ["NR", "NAME", "ABI", "ENTRY", "COMPAT", "ENTRY"]
    assert out.splitlines()[2].split() == ["3", "read", "32", "sys_read", "compat_sys_s390_read"]
    _rc, out, _ = run_cli(capsys, "--arch", "s390x", "--json", "--abi", "32", "read")
    assert json.loads(out)[0]["compat_entry"] == "compat_sys_s390_read"
    _rc, out, _ = run_cli(capsys, "--arch", "s390x", "--json", "read")   # 6.19's 64-bit table has none
    assert json.loads(out)[0]["compat_entry"] is None


def test_listns_on_s390x_from_the_619_table(capsys):
    """s390's 64-bit table is 6.19's like the others (it was 6.18.2's, which lacks listns)."""
    rc, out, _ = run_cli(capsys, "--arch", "s390x", "--json", "listns")
    assert rc == 0
    record = json.loads(out)[0]
    assert (record["nr"], record["name"], record["entry"]) == (470, "listns", "sys_listns")
    rc, out, err = run_cli(capsys, "--arch", "s390x", "--abi", "32", "listns")
    assert rc == 2 and "no syscall matches 'listns' on s390x (32 ABI)" in err


def test_default_listing_fits_80_columns_for_main_abis(capsys):
    for arch in ("x86_64", "i386", "arm64", "arm", "riscv64", "ppc64le", "s390x", "mips64", "loongarch64"):
        _rc, out, _ = run_cli(capsys, "--arch", arch, "--tracefs", "/nonexistent")
        assert max(len(line) for line in out.splitlines()) <= 80, arch
