"""`rawtrace probes`: listing from a fake tracefs (text and JSON), --show dry runs, errors, and live."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from faketracefs import FakeTracefs

from rawtrace.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    fake = FakeTracefs(root / "sys" / "kernel" / "tracing")
    (root / "proc" / "4242").mkdir(parents=True)
    fake.seed("dynamic_events",
              "p:rawtrace_4242/openat /usr/lib/libc.so.6:0x00000000000f8150 path=+0(%si):ustring\n"
              "p:rawtrace_77/evil /tmp/\x1b[31mred:0x0000000000001000\n"
              "p:kprobes/theirs vfs_read\n")
    fake.seed("uprobe_profile", "  /usr/lib/libc.so.6 openat     31\n  /tmp/\x1b[31mred evil     0\n")
    fake.seed("kprobe_profile", "  theirs   5   1\n")
    return root, fake


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lists_only_rawtrace_groups(tree, capsys):
    root, fake = tree
    code, out, _ = run_cli(capsys, "--root", str(root), "--tracefs", str(fake.root), "probes", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["group"], r["event"]) for r in rows] == [("rawtrace_4242", "openat"), ("rawtrace_77", "evil")]
    assert rows[0] == {"group": "rawtrace_4242", "event": "openat", "type": "uprobe",
                       "definition": "p:rawtrace_4242/openat /usr/lib/libc.so.6:0x00000000000f8150 "
                                     "path=+0(%si):ustring",
                       "owner_pid": 4242, "owner_alive": True, "hits": 31, "misses": None, "enabled_in": []}
    assert rows[1]["owner_alive"] is False and rows[1]["hits"] == 0


def test_text_table_escapes_and_all(tree, capsys):
    root, fake = tree
    code, out, _ = run_cli(capsys, "--root", str(root), "--tracefs", str(fake.root), "probes")
    assert code == 0
    assert "\x1b" not in out and "\\x1b[31mred" in out
    assert "4242 (running)" in out and "77 (gone)" in out
    assert "kprobes/theirs" not in out
    code, out, _ = run_cli(capsys, "--root", str(root), "--tracefs", str(fake.root), "probes", "--all")
    line = next(x for x in out.splitlines() if "kprobes/theirs" in x)
    assert line.split()[1:5] == ["kprobe", "-", "5", "1"]


def test_empty(tmp_path, capsys):
    fake = FakeTracefs(tmp_path / "t")
    code, out, _ = run_cli(capsys, "--tracefs", str(fake.root), "probes")
    assert code == 0 and out.startswith("no rawtrace probes")


def test_show_prints_definition_and_writes_nothing(tmp_path, capsys):
    if os.uname().machine != "x86_64":
        pytest.skip("x86_64 registers")
    fake = FakeTracefs(tmp_path / "t", kprobes=False)
    code, out, _ = run_cli(capsys, "--tracefs", str(fake.root), "probes", "--json",
                           "--show", "uprobe:libc:openat path=arg2:ustring",
                           "--show", "kprobe:__x64_sys_openat path=arg2:ustring")
    assert code == 0
    shown = json.loads(out)
    from rawtrace.probes import run_group
    assert shown[0]["definition"].startswith(f"p:{run_group()}/openat /")
    assert shown[0]["definition"].endswith(":0x" + shown[0]["file_offset"][2:] + " path=+0(%si):ustring")
    assert "openat64" in " ".join(shown[0]["aliases"])
    assert shown[1]["definition"] == (f"p:{run_group()}/__x64_sys_openat __x64_sys_openat "
                                      "path=+0(+0x68(%di)):ustring")
    assert shown[1]["note"].startswith("kprobes are not supported")
    assert fake.text("dynamic_events") == ""


@pytest.mark.parametrize("spec, message", [
    ("uprobe:libc:opnat", "did you mean openat"),
    ("uprobe:libc:openat\n-:x/y", "control character"),
    ("uprobe:/etc/hostname:main", "not an ELF file"),
])
def test_show_errors_are_one_line(spec, message, capsys):
    code, _out, err = run_cli(capsys, "probes", "--show", spec)
    assert code == 2
    assert err.startswith("rawtrace: ") and message in err
    assert "Traceback" not in err and len(err.splitlines()) <= 2


def test_help_has_examples():
    result = subprocess.run([sys.executable, "-m", "rawtrace", "probes", "--help"], capture_output=True,
                            text=True, cwd=ROOT, check=True)
    assert "examples:" in result.stdout and "rawtrace probes --show" in result.stdout


@pytest.mark.live
def test_live_listing_of_a_probe(live_tracefs):
    from rawtrace.probes import ProbeSpec, resolve, run_group
    from rawtrace.tracefs.dynevents import DynamicEvents
    dyn = DynamicEvents(live_tracefs)
    try:
        dyn.create(resolve(ProbeSpec.parse("uprobe:libc:open64 path=arg1:ustring")), run_group(), "open64")
        result = subprocess.run([sys.executable, "-m", "rawtrace", "probes", "--json"], capture_output=True,
                                text=True, cwd=ROOT, check=True)
        rows = [r for r in json.loads(result.stdout) if r["group"] == run_group()]
        assert len(rows) == 1
        assert rows[0]["event"] == "open64" and rows[0]["type"] == "uprobe"
        assert rows[0]["owner_pid"] == os.getpid() and rows[0]["owner_alive"] is True
        assert isinstance(rows[0]["hits"], int)
    finally:
        dyn.remove()


def test_listing_without_tracefs_is_one_line(tmp_path, capsys):
    (tmp_path / "proc").mkdir()
    code, out, err = run_cli(capsys, "--root", str(tmp_path), "probes")
    assert code == 2 and out == ""
    assert err.startswith("rawtrace: tracefs is not mounted") and "Traceback" not in err


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 libc layout")
def test_symbols_listing_matches_readelf(capsys):
    import shutil
    if shutil.which("readelf") is None:
        pytest.skip("needs readelf")
    from rawtrace import elf
    from rawtrace.host import Host
    code, out, _ = run_cli(capsys, "probes", "--json", "--symbols", "libc", "open*")
    assert code == 0
    listing = json.loads(out)
    libc = elf.resolve_target("libc", Host())
    assert listing["path"] == libc
    names = {f["name"] for f in listing["functions"]}
    dyn = subprocess.run(["readelf", "-W", "--dyn-syms", libc], capture_output=True, text=True, check=True).stdout
    theirs = {line.split()[7] for line in dyn.splitlines()
              if len(line.split()) >= 8 and line.split()[0][:-1].isdigit() and line.split()[6] != "UND"
              and line.split()[3] in ("FUNC", "IFUNC") and line.split()[7].startswith("open")}
    assert names == theirs
    openat = next(f for f in listing["functions"] if f["name"].startswith("openat@"))
    assert openat["file_offset"] == elf.resolve_symbol(libc, "openat").file_offset
    code, out, err = run_cli(capsys, "probes", "--symbols", "libc", "memcpy*")
    assert code == 0 and "ifunc" in out
    code, out, err = run_cli(capsys, "probes", "--symbols", "libc", "zzz*")
    assert code == 2 and "no function" in err


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the USDT program's asm is x86_64")
def test_usdt_listing(tmp_path, capsys):
    from test_elf_usdt import build_usdt_program

    from rawtrace import elf
    binary = build_usdt_program(tmp_path)
    code, out, _ = run_cli(capsys, "probes", "--json", "--usdt", str(binary))
    assert code == 0
    (note,) = elf.read_usdt_notes(str(binary))
    assert json.loads(out)["probes"] == [{"provider": "rtprov", "name": "tick", "address": note.address,
                                          "file_offset": note.file_offset,
                                          "semaphore_offset": note.semaphore_offset, "args": list(note.args)}]
    code, out, _ = run_cli(capsys, "probes", "--usdt", str(binary))
    assert "rtprov:tick" in out and "arg4=4@$42" in out
    code, out, _ = run_cli(capsys, "probes", "--usdt", "libc")
    assert code == 0 and "0 USDT probes" in out


def test_non_utf8_file_names_are_shown_escaped(tmp_path):
    from rawtrace import elf
    from rawtrace.host import Host
    odd = os.path.join(os.fsencode(tmp_path), b"copy\xff.so")
    with open(odd, "wb") as out, open(elf.resolve_target("libc", Host()), "rb") as src:
        out.write(src.read())
    spec = b"uprobe:" + odd + b":openat"
    result = subprocess.run([sys.executable, "-m", "rawtrace", "probes", "--json", "--show", spec],
                            capture_output=True, cwd=ROOT, check=True)
    (shown,) = json.loads(result.stdout)
    assert shown["path"].endswith("copy\\xff.so")
    assert shown["definition"].endswith("copy\\xff.so:" + shown["file_offset"])
