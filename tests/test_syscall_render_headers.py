"""The constant tables checked against this host's kernel uapi headers (linux-libc-dev), as an oracle."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rawtrace.syscalls import constants as C

INCLUDE = Path("/usr/include")
DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)\s+(\(?-?(?:0x[0-9a-fA-F]+|\d+)(?:ULL|UL|U)?\)?)", re.MULTILINE)


def header_defines(*relative: str) -> dict[str, int]:
    """Every `#define NAME <integer literal>` in the first existing header of `relative`."""
    for rel in relative:
        path = INCLUDE / rel
        if path.is_file():
            values = {}
            for name, literal in DEFINE.findall(path.read_text()):
                literal = literal.strip("()").rstrip("UL")
                values[name] = int(literal, 0) if not re.fullmatch(r"-?0\d+", literal) else int(literal, 8)
            return values
    pytest.skip(f"header not installed: {relative[0]} (linux-libc-dev)")


def test_open_flags_match_asm_generic_fcntl_h():
    header = header_defines("x86_64-linux-gnu/asm-generic/fcntl.h", "asm-generic/fcntl.h")
    ours = C.open_flag_values("x86_64")
    assert ours is not None
    for name, value in ours.items():
        assert header[name] == value, name
    assert C.ACCESS_MODES == {header["O_RDONLY"]: "O_RDONLY", header["O_WRONLY"]: "O_WRONLY",
                              header["O_RDWR"]: "O_RDWR"}


def test_fcntl_commands_match_asm_generic_fcntl_h():
    header = header_defines("asm-generic/fcntl.h")
    linux = header_defines("linux/fcntl.h")
    table = C.fcntl_commands("x86_64")
    for value, name in table.items():
        if name in header:
            assert header[name] == value, name
        elif name in linux:
            assert linux[name] == value, name
    for value, name in C.FLOCK_OPS:
        assert header[name] == value


def test_errno_table_matches_asm_generic_errno_headers():
    header = header_defines("asm-generic/errno-base.h")
    header.update(header_defines("asm-generic/errno.h"))
    table = C.errno_table("x86_64")
    assert table is not None
    assert {name: number for number, name in table.items()} == header
    for name in header:
        assert C.errno_message(name), name


def test_at_flags_match_linux_fcntl_h():
    header = header_defines("linux/fcntl.h")
    assert header["AT_FDCWD"] == C.AT_FDCWD
    for table in (C.AT_FLAGS, C.AT_FLAGS_UNLINK, C.AT_FLAGS_ACCESS):
        for value, name in table:
            assert header[name] == value, name


def test_mmap_tables_match_asm_generic_mman_headers():
    header = header_defines("asm-generic/mman-common.h")
    header.update(header_defines("asm-generic/mman.h"))
    x86 = header_defines("x86_64-linux-gnu/asm/mman.h", "asm/mman.h")
    linux = header_defines("linux/mman.h")
    for value, name in C.mmap_prot("x86_64"):
        assert header[name] == value, name
    for value, name in C.mmap_flags("x86_64"):
        if name in ("MAP_32BIT", "MAP_ABOVE4G"):
            if name in x86:
                assert x86[name] == value, name
        elif name in header:
            assert header[name] == value, name
    for value, name in C.MAP_TYPES.items():
        if name in linux or name in header:
            assert linux.get(name, header.get(name)) == value, name
    for value, name in C.MADVISE.items():
        if name in header:  # older headers lack the newest advice values
            assert header[name] == value, name


def test_signals_match_asm_generic_signal_h():
    header = header_defines("asm-generic/signal.h")
    for number in range(1, 32):
        name = C.signal_name("x86_64", number)
        assert header[name] == number, name
    assert header["SIGRTMIN"] == C.SIGRTMIN


def test_clone_flags_match_linux_sched_h():
    header = header_defines("linux/sched.h")
    for value, name in C.CLONE_FLAGS:
        assert header[name] == value, name


def test_statx_mask_matches_linux_stat_h():
    header = header_defines("linux/stat.h")
    for value, name in C.STATX_MASK:
        if name in header:  # the newest bits are missing from older headers
            assert header[name] == value, name
