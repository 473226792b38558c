"""Property tests: no spec yields more than one safe line; parsers of kernel/loader files never crash."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawtrace import elf
from rawtrace.errors import UsageError
from rawtrace.host import Host
from rawtrace.probes import ProbeSpec, ResolvedProbe
from rawtrace.tracefs.dynevents import parse_error_log

G = "rawtrace_1"
PIECES = ["uprobe:", "uretprobe:", "kprobe:", "kretprobe:", "eprobe:", "fprobe:", "fretprobe:", "libc:",
          "openat", "pid:12:", "+4", "+0x10", " ", "  ", "arg1", "arg2", ":ustring", ":string", ":u32", ":x64",
          "retval", "$retval", "comm", "%di", "%rsi", "+0(", ")", "=", "path", "-:", "grp/ev", "\n", "\r", "\0",
          ";", "#", "\t", "@@GLIBC_2.4", "$arg1", "->f", ".", "\\", '"', "p:", "x=", "é", "\x1b", "[4]",
          "b3@1/8", "sys_enter_openat", "syscalls:", "__x64_sys_openat", "$stack1", "@sym", "99999999999"]
LINE = re.compile(r"[a-z]:rawtrace_1/[A-Za-z_][A-Za-z0-9_]{0,63} \S+( [A-Za-z_][A-Za-z0-9_]*=\S+)*\Z")


HEADS = ["uprobe:libc:openat", "uretprobe:/lib/x.so:f", "uprobe:pid:12:main+0x10", "kprobe:vfs_read+4",
         "kretprobe:vfs_read", "kprobe:__x64_sys_openat", "eprobe:syscalls:sys_enter_openat", "fprobe:vfs_read",
         "fretprobe:f", "ev=uprobe:libc:f", "usdt:libstdc++:libstdcxx:throw", "usdt:/opt/a:tick"]
ARG_PIECES = ["arg1", "arg2", "arg7", ":ustring", ":string", ":u32", ":x64", "retval", "$retval", "comm",
              "%di", "%rsi", "+0(", ")", "=", "path", "x=", "-:", "grp/ev", "\n", "\r", "\0", ";", "#", "\t",
              "$arg1", "->f", ".", "\\", '"', "é", "\x1b", "[4]", "b3@1/8", "filename", "$stack1", "@sym"]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HEADS), st.lists(st.sampled_from(PIECES), max_size=2).map("".join),
       st.lists(st.lists(st.sampled_from(ARG_PIECES), min_size=1, max_size=4).map("".join), max_size=5),
       st.sampled_from(["x86_64", "aarch64"]))
def test_any_accepted_spec_is_exactly_one_safe_line(head, noise, args, arch):
    text = " ".join([head + noise, *args])
    try:
        spec = ProbeSpec.parse(text, arch)
    except UsageError:
        return
    place = {"eprobe": f"{spec.target}.{spec.symbol}"}.get(spec.kind, spec.symbol)
    if spec.is_uprobe:
        place = "/usr/lib/libc.so.6:0xf8150"
    if spec.kind == "usdt":          # friendly argN stay symbolic until the note is read
        return
    line = ResolvedProbe(spec, place).definition(G, spec.event_name)
    assert LINE.match(line), line
    assert not any(ch in line for ch in "\n\r\0;#\t")
    assert " -:" not in line and not line.startswith("-")
    # the control characters and separators that could start another command never got through
    assert not any(ch in text for ch in "\n\r\0;#")


def test_fuzz_inputs_are_often_accepted():
    """Guard against a vacuous property: a fair share of the generated specs must parse."""
    rng = random.Random(0)
    accepted = 0
    for _ in range(2000):
        args = ["".join(rng.choice(ARG_PIECES) for _ in range(rng.randint(1, 2))) for _ in range(rng.randint(0, 3))]
        try:
            ProbeSpec.parse(" ".join([rng.choice(HEADS), *args]), "x86_64")
            accepted += 1
        except UsageError:
            pass
    assert accepted > 200


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("[] .:^\n0123456789abcdefgh") + ["error: ", "  Command: ", "   ^\n"]),
                max_size=120))
def test_error_log_parser_never_crashes(parts):
    text = "".join(parts)
    for entry in parse_error_log(text):
        if entry.position is not None:
            assert entry.position >= 0
        entry.render()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_ld_so_cache_parser_never_crashes(data, with_magic):
    if with_magic:
        data = b"glibc-ld.so.cache1.1" + data
    for name, path in elf.parse_ld_so_cache(data):
        assert isinstance(name, str) and isinstance(path, str)


@pytest.fixture(scope="module")
def libc_bytes():
    return open(elf.resolve_target("libc", Host()), "rb").read()


@pytest.mark.parametrize("seed", range(24))
def test_corrupt_elf_gives_usage_error_only(seed, libc_bytes, tmp_path):
    rng = random.Random(seed)
    data = bytearray(libc_bytes)
    if seed % 3 == 0:
        data = data[:rng.randrange(16, len(data))]
    else:
        limit = 4096 if seed % 3 == 1 else len(data)   # headers, or anywhere
        for _ in range(64):
            data[rng.randrange(limit)] = rng.randrange(256)
    path = tmp_path / f"corrupt{seed}.so"
    path.write_bytes(bytes(data))
    try:
        found = elf.resolve_symbol(str(path), "openat")
    except UsageError as exc:
        assert "\n" not in exc.message
    else:
        assert found.file_offset >= 0
