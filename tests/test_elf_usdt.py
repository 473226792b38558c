"""USDT notes and argument translation, checked against `readelf -n` on built and installed binaries."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rawtrace import elf
from rawtrace.errors import UsageError
from rawtrace.host import Host
from rawtrace.probes import ProbeSpec, resolve, usdt_argument

# A program with one USDT probe written the way <sys/sdt.h> emits it (the header is not installed here):
# a nop at the probe site, a .note.stapsdt entry, a .stapsdt.base anchor and a semaphore in .probes.
# Its arguments cover a register, a stack slot, a RIP-relative global in .bss and an immediate.
USDT_SOURCE = r"""
#include <unistd.h>
unsigned short rtprov_tick_semaphore __attribute__((section(".probes"))) __attribute__((used));
volatile long counter_global = 0;

#define SDT_NOTE(provider, name, argfmt, ...) \
  __asm__ __volatile__ ( \
    "990: nop\n" \
    ".pushsection .note.stapsdt,\"?\",\"note\"\n" \
    ".balign 4\n" \
    ".4byte 992f-991f, 994f-993f, 3\n" \
    "991: .asciz \"stapsdt\"\n" \
    "992: .balign 4\n" \
    "993: .8byte 990b\n" \
    ".8byte _.stapsdt.base\n" \
    ".8byte " #provider "_" #name "_semaphore\n" \
    ".asciz \"" #provider "\"\n" \
    ".asciz \"" #name "\"\n" \
    ".asciz \"" argfmt "\"\n" \
    "994: .balign 4\n" \
    ".popsection\n" \
    ".ifndef _.stapsdt.base\n" \
    ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n" \
    ".weak _.stapsdt.base\n" \
    ".hidden _.stapsdt.base\n" \
    "_.stapsdt.base: .space 1\n" \
    ".size _.stapsdt.base, 1\n" \
    ".popsection\n" \
    ".endif\n" \
    :: __VA_ARGS__)

int main(int argc, char **argv) {
    volatile int local = 0;
    int rounds = argc > 1 ? 100000 : 1;
    for (int i = 0; i < rounds; i++) {
        local = i * 7;
        counter_global = i + 100000;
        if (rtprov_tick_semaphore)
            SDT_NOTE(rtprov, tick, "-4@%[a] -4@%[m] 8@%[g] 4@%[k]",
                     [a] "r"(i), [m] "m"(local), [g] "m"(counter_global), [k] "n"(42));
        if (argc > 1)
            usleep(20000);
    }
    return 0;
}
"""

x86_64_only = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the USDT program's asm is x86_64")


def build_usdt_program(directory: Path) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("needs cc")
    source = directory / "usdt.c"
    source.write_text(USDT_SOURCE)
    binary = directory / "usdt"
    subprocess.run(["cc", "-O1", "-o", str(binary), str(source)], check=True)
    return binary


def readelf_notes(path: str) -> list[dict]:
    """Provider, name, location, base, semaphore and arguments of each stapsdt note, from `readelf -n`."""
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True, check=True).stdout
    notes = []
    for block in out.split("NT_STAPSDT")[1:]:
        fields = dict(re.findall(r"(Provider|Name|Arguments): ?(.*)", block))
        loc = re.search(r"Location: (0x[0-9a-f]+), Base: (0x[0-9a-f]+), Semaphore: (0x[0-9a-f]+)", block)
        notes.append({"provider": fields["Provider"].strip(), "name": fields["Name"].strip(),
                      "args": tuple(fields.get("Arguments", "").split()),
                      "location": int(loc.group(1), 16), "base": int(loc.group(2), 16),
                      "semaphore": int(loc.group(3), 16)})
    return notes


def readelf_section_addr(path: str, name: str) -> int | None:
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 3 and fields[1] == name:
            return int(fields[3], 16)
    return None


@pytest.fixture(scope="module")
def usdt_binary(tmp_path_factory):
    if shutil.which("readelf") is None:
        pytest.skip("needs readelf")
    return build_usdt_program(tmp_path_factory.mktemp("usdt"))


def _check_against_readelf(path: str) -> list[elf.UsdtNote]:
    ours = elf.read_usdt_notes(path)
    theirs = readelf_notes(path)
    assert len(ours) == len(theirs) > 0
    base_addr = readelf_section_addr(path, ".stapsdt.base")
    for mine, ref in zip(ours, theirs):
        shift = (base_addr - ref["base"]) if base_addr is not None and ref["base"] else 0
        assert (mine.provider, mine.name, mine.args) == (ref["provider"], ref["name"], ref["args"])
        assert mine.address == ref["location"] + shift
        assert mine.semaphore == (ref["semaphore"] + shift if ref["semaphore"] else 0)
    return ours


@x86_64_only
def test_built_program_notes_match_readelf(usdt_binary):
    from test_elf import oracle_offset
    (note,) = _check_against_readelf(str(usdt_binary))
    assert note.file_offset == oracle_offset(str(usdt_binary), note.address)
    assert note.semaphore_offset == oracle_offset(str(usdt_binary), note.semaphore)
    assert note.args[2].endswith("counter_global(%rip)")


def test_libstdcxx_notes_match_readelf():
    try:
        path = elf.resolve_target("libstdc++", Host())
    except UsageError:
        pytest.skip("no libstdc++ here")
    if shutil.which("readelf") is None or not elf.read_usdt_notes(path):
        pytest.skip("needs readelf and a libstdc++ built with USDT probes")
    _check_against_readelf(path)


@x86_64_only
def test_usdt_definition_exact(usdt_binary):
    (note,) = elf.read_usdt_notes(str(usdt_binary))
    counter = elf.symbol_address(str(usdt_binary), "counter_global")
    spec = ProbeSpec.parse(f"usdt:{usdt_binary}:rtprov:tick i=arg1 local=arg2 g=arg3:s64 k=arg4", "x86_64")
    probe = resolve(spec)
    register, stack = note.args[0].split("@")[1], note.args[1].split("@")[1]   # as the compiler chose them
    reg = usdt_argument(note.args[0], "x86_64")[0]
    slot = usdt_argument(note.args[1], "x86_64")[0]
    legacy = re.fullmatch(r"%[er]([a-z]{2})", register)
    numbered = re.fullmatch(r"%(r\d+)[dwb]?", register)
    assert reg == "%" + (legacy or numbered).group(1)
    assert re.fullmatch(r"-?\d*\(%r[sb]p\)", stack)
    assert slot == ("" if stack.startswith("-") else "+") + stack.replace("%rsp", "%sp").replace("%rbp", "%bp")
    delta = note.address - note.file_offset
    assert probe.definition("rawtrace_1", spec.event_name) == (
        f"p:rawtrace_1/rtprov_tick {usdt_binary}:{note.file_offset:#x}({note.semaphore_offset:#x}) "
        f"i={reg}:s32 local={slot}:s32 g=@+{counter - delta:#x}:s64 k=\\42:u32")
    assert probe.semaphore_offset == note.semaphore_offset
    # provider may be left out when the name is unique
    assert resolve(ProbeSpec.parse(f"usdt:{usdt_binary}:tick", "x86_64")).place == probe.place


@x86_64_only
def test_usdt_errors(usdt_binary):
    with pytest.raises(UsageError, match="did you mean rtprov:tick"):
        resolve(ProbeSpec.parse(f"usdt:{usdt_binary}:rtprov:tock", "x86_64"))
    with pytest.raises(UsageError, match="has 4 arguments; 'arg5' asks for #5"):
        resolve(ProbeSpec.parse(f"usdt:{usdt_binary}:rtprov:tick arg5", "x86_64"))
    with pytest.raises(UsageError, match="no USDT probes"):
        resolve(ProbeSpec.parse("usdt:libc:tick", "x86_64"))
    with pytest.raises(UsageError, match="only in return probes"):
        ProbeSpec.parse(f"usdt:{usdt_binary}:tick retval", "x86_64")
    with pytest.raises(UsageError, match="expected usdt:TARGET"):
        ProbeSpec.parse("usdt:tick", "x86_64")


@pytest.mark.parametrize("spec, fetch, type_", [
    ("-4@%edi", "%di", "s32"), ("8@%rax", "%ax", "u64"), ("1@%al", "%ax", "u8"), ("2@%r9w", "%r9", "u16"),
    ("-8@%r12", "%r12", "s64"), ("8@-8(%rbp)", "-8(%bp)", "u64"), ("4@12(%rsp)", "+12(%sp)", "u32"),
    ("8@(%rax)", "+0(%ax)", "u64"), ("4@$42", "\\42", "u32"), ("-4@$-1", "\\0xffffffffffffffff", "s32"),
    ("8@counter+8(%rip)", "@+0x1008", "u64"), ("8@counter(%rip)", "@+0x1000", "u64"),
])
def test_usdt_arguments_x86_64(spec, fetch, type_):
    assert usdt_argument(spec, "x86_64", lambda name: {"counter": 0x1000}[name]) == (fetch, type_)


@pytest.mark.parametrize("spec, fetch, type_", [
    ("-4@w0", "%x0", "s32"), ("8@x30", "%x30", "u64"), ("8@[sp, 16]", "+16(%sp)", "u64"),
    ("8@[x1]", "+0(%x1)", "u64"), ("4@5", "\\5", "u32"), ("8@[x2, -8]", "-8(%x2)", "u64"),
])
def test_usdt_arguments_arm64(spec, fetch, type_):
    assert usdt_argument(spec, "aarch64") == (fetch, type_)


@pytest.mark.parametrize("spec, arch", [
    ("8@8(%rax,%rbx,4)", "x86_64"), ("4@%ah", "x86_64"), ("3@%eax", "x86_64"), ("8@%xmm0", "x86_64"),
    ("junk", "x86_64"), ("8@[x1, x2]", "aarch64"), ("8@v0", "aarch64"), ("8@%eax", "riscv64"),
])
def test_usdt_arguments_refused(spec, arch):
    with pytest.raises(UsageError):
        usdt_argument(spec, arch, lambda name: 0)
