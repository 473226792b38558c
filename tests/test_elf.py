"""Symbol → uprobe file offset, checked against readelf/nm and independent PT_LOAD arithmetic."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from rawtrace import elf
from rawtrace.errors import UsageError
from rawtrace.host import Host

needs_x86_64 = pytest.mark.skipif(os.uname().machine != "x86_64", reason="fixtures assume an x86_64 host")
needs_cc = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("readelf") is None,
                              reason="needs cc and binutils")


def _libc() -> str:
    return os.path.realpath(elf.resolve_target("libc", Host()))


def readelf_symbols(path: str) -> dict[str, list[tuple[int, str]]]:
    """name (as readelf spells it, with @VERSION) → [(value, type)] from `readelf -Ws` (both tables)."""
    out = subprocess.run(["readelf", "-Ws", "--dyn-syms", path], capture_output=True, text=True,
                         check=True).stdout
    table: dict[str, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0][:-1].isdigit() and fields[6] != "UND":
            table.setdefault(fields[7], []).append((int(fields[1], 16), fields[3]))
    return table


def readelf_loads(path: str) -> list[tuple[int, int, int]]:
    """(p_offset, p_vaddr, p_filesz) of each PT_LOAD, from `readelf -lW`."""
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
    loads = []
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == "LOAD":
            loads.append((int(fields[1], 16), int(fields[2], 16), int(fields[4], 16)))
    return loads


def oracle_offset(path: str, vaddr: int) -> int:
    for offset, start, filesz in readelf_loads(path):
        if start <= vaddr < start + filesz:
            return vaddr - start + offset
    raise AssertionError(f"{vaddr:#x} not in a PT_LOAD of {path}")


def pyelftools_offset(path: str, vaddr: int) -> int:
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= vaddr < seg["p_vaddr"] + seg["p_filesz"]:
                return vaddr - seg["p_vaddr"] + seg["p_offset"]
    raise AssertionError("no segment")


# --- libc of this machine ------------------------------------------------------------------------


@needs_x86_64
@needs_cc
@pytest.mark.parametrize("name", ["openat", "open64", "openat@@GLIBC_2.4", "open64@@GLIBC_2.2.5",
                                  "__open64_2"])
def test_libc_symbols_match_readelf(name):
    libc = _libc()
    found = elf.resolve_symbol(libc, name)
    base = name.split("@")[0]
    values = {v for spelled, rows in readelf_symbols(libc).items()
              if spelled.split("@")[0] == base and (("@" not in name) or spelled == name)
              for v, kind in rows if kind == "FUNC"}
    assert values == {found.address}
    assert found.file_offset == oracle_offset(libc, found.address)
    assert found.file_offset == pyelftools_offset(libc, found.address)
    assert found.symbol.split("@")[0] == base
    assert found.path == libc


@needs_x86_64
def test_libc_aliases_and_versions():
    libc = _libc()
    openat = elf.resolve_symbol(libc, "openat")
    assert openat.symbol.startswith("openat@@GLIBC_")
    assert any(a.startswith("openat64@") for a in openat.aliases)
    open64 = elf.resolve_symbol(libc, "open64")
    assert any(a.startswith("open@") for a in open64.aliases)
    # plain name and its explicit default version are the same place
    assert elf.resolve_symbol(libc, openat.symbol).file_offset == openat.file_offset
    assert elf.resolve_symbol(libc, "open64", offset=4).file_offset == open64.file_offset + 4


@needs_x86_64
@needs_cc
def test_libc_versioned_nondefault_symbol():
    libc = _libc()
    table = readelf_symbols(libc)
    old = [k for k in table if k.startswith("memcpy@") and not k.startswith("memcpy@@")]
    if not old:
        pytest.skip("this libc has no compat memcpy version")
    found = elf.resolve_symbol(libc, old[0])
    assert found.address == table[old[0]][0][0]


@needs_x86_64
def test_ifunc_is_refused_with_explanation():
    with pytest.raises(UsageError, match="IFUNC"):
        elf.resolve_symbol(_libc(), "memcpy@@GLIBC_2.14")


def test_misspelt_symbol_suggests_near_matches():
    with pytest.raises(UsageError) as info:
        elf.resolve_symbol(_libc(), "opnat")
    assert "did you mean" in info.value.message and "openat" in info.value.message


def test_unknown_version_lists_versions_present():
    with pytest.raises(UsageError, match=r"openat@@GLIBC_2\.4"):
        elf.resolve_symbol(_libc(), "openat@GLIBC_9.9")


def test_data_symbol_refused():
    with pytest.raises(UsageError, match="data, not code"):
        elf.resolve_symbol(_libc(), "stdout")


def test_offset_past_end_of_function():
    with pytest.raises(UsageError, match="past the end"):
        elf.resolve_symbol(_libc(), "openat", offset=0x100000)


# --- library and target lookup --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["libc", "c", "libc.so.6", "libc.so"])
def test_library_names_resolve_to_libc(name):
    assert os.path.basename(elf.find_library(name, Host())) == "libc.so.6"


@pytest.mark.skipif(shutil.which("ldconfig") is None, reason="needs ldconfig")
def test_ld_so_cache_parse_agrees_with_ldconfig():
    data = Path("/etc/ld.so.cache").read_bytes()
    ours = elf.parse_ld_so_cache(data)
    out = subprocess.run(["ldconfig", "-p"], check=True, capture_output=True, text=True).stdout
    theirs = re.findall(r"^\s+(\S+) \(.*\) => (\S+)$", out, re.MULTILINE)
    assert ours == theirs


def _fake_cache(entries: list[tuple[str, str]]) -> bytes:
    strings = b""
    offsets = []
    header = 48
    table = header + len(entries) * 24
    for name, path in entries:
        key = table + len(strings)
        strings += name.encode() + b"\0"
        value = table + len(strings)
        strings += path.encode() + b"\0"
        offsets.append((key, value))
    out = struct.pack("<20sII4xI12x", b"glibc-ld.so.cache1.1", len(entries), len(strings), 0)
    for key, value in offsets:
        out += struct.pack("<iIIIQ", 0x303, key, value, 0, 0)
    return out + strings


def test_ld_so_cache_under_root(tmp_path):
    root = tmp_path / "root"
    libdir = root / "opt" / "lib"
    libdir.mkdir(parents=True)
    shutil.copy(_libc(), libdir / "libfoo.so.2.1")
    os.symlink("libfoo.so.2.1", libdir / "libfoo.so.2")
    (root / "etc").mkdir()
    (root / "etc" / "ld.so.cache").write_bytes(_fake_cache([("libbar.so.1", "/opt/lib/libbar.so.1"),
                                                           ("libfoo.so.2", "/opt/lib/libfoo.so.2")]))
    host = Host(root)
    # symlink resolved inside the root, path given in the kernel's view (no root prefix)
    assert elf.find_library("foo", host) == "/opt/lib/libfoo.so.2.1"
    with pytest.raises(UsageError, match="not found"):
        elf.find_library("nosuchlib", host)


def test_pid_target_is_the_process_executable():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert elf.resolve_target(f"pid:{child.pid}", Host()) == os.path.realpath(sys.executable)
    finally:
        child.kill()
        child.wait()
    with pytest.raises(UsageError, match="no process"):
        elf.resolve_target(f"pid:{child.pid}", Host())


def test_path_target_resolves_symlinks(tmp_path):
    link = tmp_path / "mylibc"
    os.symlink(_libc(), link)
    assert elf.resolve_target(str(link), Host()) == _libc()
    with pytest.raises(UsageError, match="no such file"):
        elf.resolve_target(str(tmp_path / "missing"), Host())


# --- binaries built here ---------------------------------------------------------------------------

SOURCE = r"""
#include <stdio.h>
__attribute__((noinline)) int rawtrace_probe_target(int x) { return x * 3 + 1; }
__attribute__((noinline)) static int rawtrace_local_helper(int x) { return x - 7; }
int main(int argc, char **argv) { printf("%d\n", rawtrace_probe_target(argc) + rawtrace_local_helper(argc)); return 0; }
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if shutil.which("cc") is None or shutil.which("nm") is None:
        pytest.skip("needs cc and nm")
    d = tmp_path_factory.mktemp("elfbuild")
    src = d / "t.c"
    src.write_text(SOURCE)
    out = {}
    for name, flags in {"pie": ["-fPIE", "-pie"], "nopie": ["-no-pie", "-fno-pie"],
                        "pie_dyn": ["-fPIE", "-pie", "-rdynamic"]}.items():
        binary = d / name
        subprocess.run(["cc", "-O1", *flags, "-o", str(binary), str(src)], check=True)
        out[name] = str(binary)
    for name in ("pie", "pie_dyn"):
        stripped = d / f"{name}_stripped"
        subprocess.run(["strip", "-o", str(stripped), out[name]], check=True)
        out[f"{name}_stripped"] = str(stripped)
    return out


def nm_value(path: str, name: str) -> int:
    out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2] == name:
            return int(fields[0], 16)
    raise AssertionError(f"{name} not in nm output")


@pytest.mark.parametrize("kind,elf_type", [("pie", "ET_DYN"), ("nopie", "ET_EXEC")])
def test_built_executable_offset(built, kind, elf_type):
    path = built[kind]
    for name in ("rawtrace_probe_target", "rawtrace_local_helper"):
        found = elf.resolve_symbol(path, name)
        assert found.address == nm_value(path, name)
        assert found.file_offset == oracle_offset(path, found.address)
        assert found.table == ".symtab"
        assert found.elf_type == elf_type
    if kind == "nopie":
        # ET_EXEC: the virtual address is not the file offset; the PT_LOAD rule must have been applied
        assert found.file_offset != found.address


def test_stripped_keeps_only_dynsym(built):
    exported = elf.resolve_symbol(built["pie_dyn_stripped"], "rawtrace_probe_target")
    assert exported.table == ".dynsym"
    assert exported.file_offset == elf.resolve_symbol(built["pie_dyn"], "rawtrace_probe_target").file_offset
    with pytest.raises(UsageError, match="stripped"):
        elf.resolve_symbol(built["pie_dyn_stripped"], "rawtrace_local_helper")
    with pytest.raises(UsageError, match="not found"):
        elf.resolve_symbol(built["pie_stripped"], "rawtrace_probe_target")


def test_virtual_address_form(built):
    path = built["nopie"]
    value = nm_value(path, "rawtrace_probe_target")
    found = elf.resolve_symbol(path, hex(value))
    assert found.symbol == "rawtrace_probe_target"
    assert found.file_offset == oracle_offset(path, value)


def test_no_symbol_tables_at_all(tmp_path):
    if shutil.which("cc") is None:
        pytest.skip("needs cc")
    src = tmp_path / "s.c"
    src.write_text("void _start(void) { for (;;) ; }\n")
    binary = tmp_path / "static"
    built = subprocess.run(["cc", "-nostdlib", "-static", "-o", str(binary), str(src)], check=False)
    if built.returncode != 0:
        pytest.skip("cannot link a static binary here")
    subprocess.run(["strip", str(binary)], check=True)
    with pytest.raises(UsageError, match="stripped: it has no symbol table"):
        elf.resolve_symbol(str(binary), "_start")


# --- refusals ---------------------------------------------------------------------------------------


def test_non_elf_file(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(UsageError, match="not an ELF file"):
        elf.resolve_symbol(str(script), "main")
    with pytest.raises(UsageError, match="directory"):
        elf.resolve_symbol(str(tmp_path), "main")


def elf32_header(machine: int) -> bytes:
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)          # ELFCLASS32, little endian, version 1
    return ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, 0x8048000, 0, 0, 0, 52, 32, 0, 40, 0, 0)


def elf64_header(machine: int) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIQQQIHHHHHH", 3, machine, 1, 0, 0, 0, 0, 64, 56, 0, 64, 0, 0)


@needs_x86_64
def test_32_bit_elf_is_wrong_architecture(tmp_path):
    path = tmp_path / "i386"
    path.write_bytes(elf32_header(3))
    with pytest.raises(UsageError) as info:
        elf.resolve_symbol(str(path), "main")
    message = info.value.message
    assert "32-bit i386" in message and "host is x86_64" in message


@needs_x86_64
def test_arm64_elf_is_wrong_architecture(tmp_path):
    path = tmp_path / "arm64.so"
    path.write_bytes(elf64_header(183))
    with pytest.raises(UsageError, match=r"aarch64 \(arm64\) ELF file but this host is x86_64"):
        elf.resolve_symbol(str(path), "main")


def test_machine_is_taken_from_caller(tmp_path):
    # A capture from an arm64 machine resolved on this host: the arm64 file is the right one.
    path = tmp_path / "arm64.so"
    path.write_bytes(elf64_header(183))
    with pytest.raises(UsageError, match="stripped"):
        elf.resolve_symbol(str(path), "main", machine="aarch64")


# --- the struct-based symbol reader against pyelftools' own parser and readelf -----------------------


def _pyelftools_symbols(path: str) -> set[tuple[str, int, int, str, str]]:
    from elftools.elf.elffile import ELFFile
    out = set()
    with open(path, "rb") as f:
        e = ELFFile(f)
        for table in (".symtab", ".dynsym"):
            section = e.get_section_by_name(table)
            if section is None:
                continue
            for sym in section.iter_symbols():
                kind = sym["st_info"]["type"]
                kind = "STT_GNU_IFUNC" if kind == "STT_LOOS" else kind
                if (not sym.name or sym["st_shndx"] in ("SHN_UNDEF", "SHN_ABS")
                        or kind in ("STT_SECTION", "STT_FILE", "STT_TLS")):
                    continue
                out.add((sym.name.split("@")[0], sym["st_value"], sym["st_size"], kind, table))
    return out


@pytest.mark.parametrize("which", ["libc", "python", "nopie"])
def test_symbol_reader_matches_pyelftools(which, built):
    path = {"libc": _libc(), "python": os.path.realpath(sys.executable), "nopie": built["nopie"]}[which]
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        ours, _tables = elf.read_symbols(ELFFile(f))
    assert {(s.name, s.value, s.size, s.type, s.table) for s in ours} == _pyelftools_symbols(path)


@needs_cc
def test_dynsym_versions_match_readelf():
    libc = _libc()
    from elftools.elf.elffile import ELFFile
    with open(libc, "rb") as f:
        ours, _tables = elf.read_symbols(ELFFile(f))
    spelled = {(s.spelled, s.value) for s in ours if s.table == ".dynsym" and s.type in ("STT_FUNC", "STT_GNU_IFUNC")}
    out = subprocess.run(["readelf", "-W", "--dyn-syms", libc], capture_output=True, text=True, check=True).stdout
    theirs = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0][:-1].isdigit() and fields[6] != "UND" and fields[3] in ("FUNC", "IFUNC"):
            theirs.add((fields[7], int(fields[1], 16)))
    assert len(theirs) > 1000
    assert spelled == theirs


def _fake_process(root: Path, pid: int, exe: str, mnt: str) -> None:
    proc = root / "proc" / str(pid)
    (proc / "ns").mkdir(parents=True)
    os.symlink(exe, proc / "exe")
    os.symlink(mnt, proc / "ns" / "mnt")


def test_pid_target_in_another_mount_namespace(tmp_path):
    root = tmp_path / "root"
    _fake_process(root, 1, "/sbin/init", "mnt:[4026531841]")
    (root / "proc" / "self").symlink_to("1")
    _fake_process(root, 500, "/usr/bin/app", "mnt:[4026532999]")
    (root / "proc" / "500" / "root" / "usr" / "bin").mkdir(parents=True)
    shutil.copy(_libc(), root / "proc" / "500" / "root" / "usr" / "bin" / "app")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "app").write_text("a different file of the same name on the host")
    host = Host(root)
    assert elf.resolve_target("pid:500", host) == "/proc/500/root/usr/bin/app"
    found = elf.resolve_symbol("/proc/500/root/usr/bin/app", "openat", host)
    assert found.file_offset == elf.resolve_symbol(_libc(), "openat").file_offset
    # same namespace: the plain path
    _fake_process(root, 600, "/usr/bin/app", "mnt:[4026531841]")
    assert elf.resolve_target("pid:600", host) == "/usr/bin/app"


def test_same_static_name_in_two_files(tmp_path):
    if shutil.which("cc") is None:
        pytest.skip("needs cc")
    (tmp_path / "a.c").write_text("__attribute__((noinline)) static int helper(int x) { return x + 1; }\n"
                                  "int from_a(int x) { return helper(x); }\n")
    (tmp_path / "b.c").write_text("__attribute__((noinline)) static int helper(int x) { return x * 5; }\n"
                                  "int from_a(int); int main(int c, char **v) { return helper(c) + from_a(c); }\n")
    binary = tmp_path / "two"
    subprocess.run(["cc", "-O1", "-o", str(binary), str(tmp_path / "a.c"), str(tmp_path / "b.c")], check=True)
    out = subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout
    addresses = sorted(int(line.split()[0], 16) for line in out.splitlines() if line.endswith(" helper"))
    assert len(addresses) == 2
    with pytest.raises(UsageError) as info:
        elf.resolve_symbol(str(binary), "helper")
    for address in addresses:
        assert f"at {address:#x} (static)" in info.value.message
    found = elf.resolve_symbol(str(binary), hex(addresses[1]))
    assert found.symbol == "helper" and found.file_offset == oracle_offset(str(binary), addresses[1])
