"""Where a uprobe goes in an x86_64 function's entry block (rawtrace.x86entry): at the first instruction the
kernel emulates, only when that is exactly as good as the entry (registers read unchanged, reached once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawtrace.x86entry import emulated_offset

# glibc 2.36's __open64_nocancel: sub; mov %esi,%r10d; mov %rdx,0x30(%rsp); mov %fs:0x28,%rax;
# mov %rax,0x18(%rsp); xor %eax,%eax; and $0x40,%r10d; jne (+0x20), then more of the function.
NOCANCEL = bytes.fromhex("4883ec58" "4189f2" "4889542430" "64488b042528000000" "4889442418" "31c0"
                         "4183e240" "753e") + b"\x90" * 64


def test_a_jcc_after_a_prologue_that_leaves_the_argument_alone():
    assert emulated_offset(NOCANCEL, len(NOCANCEL), {"di"}) == 0x20


def test_an_instruction_writing_a_read_register_keeps_the_probe_at_the_entry():
    # The same prologue read for %rdx (the third argument): `mov %rdx,0x30(%rsp)` only stores it, but the
    # path in %rsi is written by nothing, and %r10 by two instructions.
    assert emulated_offset(NOCANCEL, len(NOCANCEL), {"dx", "si"}) == 0x20
    assert emulated_offset(NOCANCEL, len(NOCANCEL), {"r10"}) == 0
    assert emulated_offset(NOCANCEL, len(NOCANCEL), {"ax"}) == 0
    clobber = bytes.fromhex("4883ec58" "4889fe" "753e") + b"\x90" * 64      # mov %rdi,%rsi before the jne
    assert emulated_offset(clobber, len(clobber), {"si"}) == 0
    assert emulated_offset(clobber, len(clobber), {"di"}) == 7


def test_a_memory_write_outside_the_stack_frame_keeps_the_probe_at_the_entry():
    heap = bytes.fromhex("4883ec58" "488907" "753e") + b"\x90" * 64          # mov %rax,(%rdi)
    assert emulated_offset(heap, len(heap), {"di"}) == 0
    indexed = bytes.fromhex("4883ec58" "48890424" "753e") + b"\x90" * 64     # mov %rax,(%rsp): the frame
    assert emulated_offset(indexed, len(indexed), {"di"}) == 8
    scaled = bytes.fromhex("4883ec58" "48890434" "753e") + b"\x90" * 64      # mov %rax,(%rsp,%rsi)
    assert emulated_offset(scaled, len(scaled), {"di"}) == 0


def test_already_emulated_or_unknown_or_jumped_into_gives_the_entry():
    push = bytes.fromhex("55" "4189f2" "7505") + b"\x90" * 16                 # push %rbp first: fine as is
    assert emulated_offset(push, len(push), {"di"}) == 0
    syscall = bytes.fromhex("b857000000" "0f05" "483d01f0ffff" "7301" "c3") + b"\x90" * 16
    assert emulated_offset(syscall, len(syscall), {"di"}) == 0            # the syscall is no known instruction
    # A later jump back to the second instruction would run the probe twice per call.
    loop = bytes.fromhex("4883ec58" "4189f2" "753e") + b"\x90" * 8 + bytes.fromhex("ebf1") + b"\x90" * 8
    assert emulated_offset(loop, len(loop), {"di"}) == 0
    assert emulated_offset(loop[:9] + b"\x90" * 19, 28, {"di"}) == 7        # (without the jump back)
    assert emulated_offset(NOCANCEL, 0, {"di"}) == 0                     # no size known


def test_a_16_bit_immediate_is_measured_as_one():
    # 66 c7 44 24 08 34 12: movw $0x1234,0x8(%rsp), then jne.
    short = bytes.fromhex("4883ec58" "66c74424083412" "753e") + b"\x90" * 64
    assert emulated_offset(short, len(short), {"di"}) == 11


def test_rex_w_wins_over_the_operand_size_prefix_and_odd_forms_stop_the_scan():
    # 66 48 c7 44 24 08 imm32: movq $imm32,0x8(%rsp) (REX.W: a 4-byte immediate despite the 0x66).
    both = bytes.fromhex("4883ec58" "6648c744240878563412" "753e") + b"\x90" * 64
    assert emulated_offset(both, len(both), {"di"}) == 14
    # c7 f8 rel32 is xbegin (a branch), not a move; an %fs: write is thread-local memory, not the frame.
    xbegin = bytes.fromhex("4883ec58" "c7f800000000" "753e") + b"\x90" * 64
    assert emulated_offset(xbegin, len(xbegin), {"di"}) == 0
    tls = bytes.fromhex("4883ec58" "644889442410" "753e") + b"\x90" * 64
    assert emulated_offset(tls, len(tls), {"di"}) == 0
    assert emulated_offset(NOCANCEL[:40], 160, {"di"}) == 0             # fewer bytes than the symbol's size


LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")


@pytest.mark.skipif(not LIBC.exists(), reason="no x86_64 glibc at the Debian path")
def test_the_plan_moves_probes_only_onto_emulated_instructions_of_this_libc():
    from rawtrace import filepaths as P
    from rawtrace.host import Host
    plan = P.plan_uprobes(Host())
    data = LIBC.read_bytes()
    moved = 0
    for probe in plan.probes:
        where = probe.spec.split()[0].rsplit(":", 1)[1]
        if "+" not in where or probe.function.startswith("ld.so"):
            continue
        from rawtrace import elf
        name, offset = where.split("+")
        found = elf.resolve_symbol(str(LIBC), name, Host())
        at = found.file_offset + int(offset, 16)
        op = data[at]
        assert 0x70 <= op <= 0x7f or op in (0x50, 0x55, 0xe8, 0xe9, 0xeb) or data[at:at + 2] == b"\x0f\x84", probe
        assert " p=%" in probe.spec and "arg" not in probe.spec.split(" ", 1)[1]     # registers, not argN
        moved += 1
    assert moved, "no probe of this libc moved (its functions all start with an emulated instruction?)"


@pytest.mark.skipif(not LIBC.exists(), reason="no x86_64 glibc at the Debian path")
def test_no_probe_moves_past_another_entry_point(monkeypatch):
    """A symbol inside the stretch a probe would skip is a way in of its own: the probe stays at the entry."""
    from rawtrace import elf
    from rawtrace import filepaths as P
    from rawtrace.host import Host
    real = elf.list_functions
    nocancel = elf.resolve_symbol(str(LIBC), "__open64_nocancel", Host())

    def with_one_more(path, pattern="*", host=None, **kw):
        found = real(path, pattern, host, **kw)
        return [*found, elf.FunctionEntry("inside", nocancel.address + 4, nocancel.file_offset + 4, 1, "func", "")]
    monkeypatch.setattr(elf, "list_functions", with_one_more)
    specs = [p.spec for p in P.plan_uprobes(Host()).probes]
    assert any(":__open64_nocancel " in s for s in specs) and not any("__open64_nocancel+" in s for s in specs)
    assert any("openat64+0x" in s for s in specs)
