"""Where in an x86_64 function's entry block a uprobe costs least: at an instruction the kernel emulates.

A uprobe hit traps on its breakpoint, then runs the probed instruction. The kernel emulates a few kinds of
instruction in place (push of a register, relative jumps and calls, conditional jumps, nop); every other
one is copied out of line and single-stepped, which takes a second trap. On this VM that single step made
a hit cost 14-26 us instead of about 2 us. Many C library functions start with `sub $N,%rsp`, so a probe
at their first byte is single-stepped on every call.

emulated_offset() looks for the first emulated instruction in the function's entry block (the straight
run of instructions from its first byte up to and including the first branch), and accepts it only if:
every instruction before it is one this decoder knows, none writes a register the probe reads (or
memory other than the new stack frame below %rsp), and nothing in the function jumps back into that
stretch, so the instruction runs exactly once per call, with the registers as they were at entry. Any
doubt (an unknown instruction, a byte that might be a branch into the stretch) gives 0: the entry itself.
"""

from __future__ import annotations

REGISTERS = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

_SP, _BP = 4, 5
_STRETCH_MAX = 96          # bytes of an entry block looked at

# ModRM instructions: opcode -> (operand size in bytes or 0 for the operand-size default, what they write:
# "rm" the r/m operand, "reg" the ModRM reg register, "" nothing (compare, test), immediate bytes).
_MODRM = {
    0x89: ("rm", 0), 0x8b: ("reg", 0), 0x8d: ("reg", 0),
    0x88: ("rm8", 0), 0x8a: ("reg8", 0),
    0x01: ("rm", 0), 0x03: ("reg", 0), 0x09: ("rm", 0), 0x0b: ("reg", 0), 0x21: ("rm", 0), 0x23: ("reg", 0),
    0x29: ("rm", 0), 0x2b: ("reg", 0), 0x31: ("rm", 0), 0x33: ("reg", 0),
    0x39: ("", 0), 0x3b: ("", 0), 0x38: ("", 0), 0x3a: ("", 0), 0x85: ("", 0), 0x84: ("", 0),
    0xc7: ("rm", 4), 0xc6: ("rm8", 1),
}
# Opcode-extension groups: opcode -> immediate bytes; /7 is cmp (no write), the others write r/m.
_GROUP = {0x83: 1, 0x81: 4, 0x80: 1}


def emulated_offset(code: bytes, size: int, reads: set[str]) -> int:
    """The offset in the function `code` (its first `size` bytes are the function) at which a probe that
    reads the registers `reads` ("di", "si", ...) sees them as at entry and is emulated; 0 if none."""
    if size <= 0 or len(code) < size:
        return 0                  # (a file cut short: its bytes are not the function)
    keep = {REGISTERS.index(r) for r in reads if r in REGISTERS}
    at = 0
    limit = min(size, _STRETCH_MAX)
    while at < limit:
        if _is_emulated(code, at):
            if at == 0 or _jumped_into(code, size, at):
                return 0
            return at
        step = _plain_instruction(code, at, keep)
        if step is None:
            return 0
        at += step
    return 0


def _is_emulated(code: bytes, at: int) -> bool:
    """Whether the instruction at `at` is one the kernel emulates (push of a register, relative jmp, call
    and jcc, nop): arch/x86/kernel/uprobes.c, push_setup_xol_ops() and branch_setup_xol_ops()."""
    op = code[at]
    if 0x50 <= op <= 0x57 or op in (0xe8, 0xe9, 0xeb, 0x90) or 0x70 <= op <= 0x7f:
        return True
    if op == 0x41 and at + 1 < len(code) and 0x50 <= code[at + 1] <= 0x57:
        return True               # push %r8..%r15
    return op == 0x0f and at + 1 < len(code) and 0x80 <= code[at + 1] <= 0x8f


def _jumped_into(code: bytes, size: int, end: int) -> bool:
    """Whether any byte of the function could be a relative jump or call landing in (0, end]: a
    conservative scan (bytes inside other instructions count too, which only means no relocation)."""
    for k in range(size):
        op = code[k]
        if op == 0xeb or 0x70 <= op <= 0x7f:
            length, rel = 2, _signed(code[k + 1:k + 2])
        elif op in (0xe8, 0xe9):
            length, rel = 5, _signed(code[k + 1:k + 5])
        elif op == 0x0f and k + 1 < size and 0x80 <= code[k + 1] <= 0x8f:
            length, rel = 6, _signed(code[k + 2:k + 6])
        else:
            continue
        if rel is not None and 0 < k + length + rel <= end:
            return True
    return False


def _signed(data: bytes) -> int | None:
    if len(data) not in (1, 4):
        return None
    return int.from_bytes(data, "little", signed=True)


def _plain_instruction(code: bytes, at: int, keep: set[int]) -> int | None:
    """The length of the non-branching instruction at `at` if this decoder knows it and it writes none of
    the registers `keep` (indexes into REGISTERS) and no memory but the stack below %rsp; else None."""
    start = at
    if code[at:at + 4] == b"\xf3\x0f\x1e\xfa":
        return 4                  # endbr64
    rex = 0
    short = False                 # a 0x66 prefix: 16-bit operands and immediates
    while at < len(code) and code[at] in (0x64, 0x65, 0x66) and at - start < 3:
        short = short or code[at] == 0x66
        at += 1
    segment = any(code[k] in (0x64, 0x65) for k in range(start, at))
    if at < len(code) and 0x40 <= code[at] <= 0x4f:
        rex = code[at]
        at += 1
    if at >= len(code):
        return None
    op = code[at]
    at += 1
    wide = bool(rex & 8)
    short = short and not wide    # REX.W wins over 0x66: 64-bit operands, 32-bit immediates
    if 0xb8 <= op <= 0xbf:                                   # mov $imm,%reg (imm64 with REX.W)
        if (op - 0xb8) | (8 if rex & 1 else 0) in keep:
            return None
        return at + (8 if wide else 2 if short else 4) - start
    if op == 0x0f and at < len(code) and code[at] in (0xb6, 0xb7, 0xbe, 0xbf):     # movzx / movsx
        at += 1
        parsed = _modrm(code, at, rex)
        if parsed is None or parsed[1] in keep:
            return None
        return parsed[0] - start
    if op in _MODRM:
        writes, immediate = _MODRM[op]
        parsed = _modrm(code, at, rex)
        if parsed is None:
            return None
        end, reg, rm, memory_base = parsed
        if op in (0xc6, 0xc7) and reg & 7 or op == 0x8d and memory_base is None:
            return None           # (c6/c7 /1-7: xabort, xbegin or invalid; lea of a register: invalid)
        if segment and memory_base is not None and writes.startswith("rm"):
            return None           # an %fs/%gs write goes to thread-local memory, not the stack frame
        byte_op = writes.endswith("8")
        writes = writes.rstrip("8")
        if writes == "reg" and _byte_reg(reg, rex, byte_op) in keep:
            return None
        if writes == "rm" and not _rm_write_allowed(rm, memory_base, rex, byte_op, keep):
            return None
        return end + (2 if short and immediate == 4 else immediate) - start
    if op in _GROUP:
        parsed = _modrm(code, at, rex)
        if parsed is None:
            return None
        end, digit, rm, memory_base = parsed
        digit &= 7
        if segment and memory_base is not None and digit != 7:
            return None           # (as above)
        if digit != 7 and not _rm_write_allowed(rm, memory_base, rex, op == 0x80, keep):
            return None
        return end + (2 if short and op == 0x81 else _GROUP[op]) - start
    if op in (0xf6, 0xf7):                                   # test r/m, imm (only /0 writes nothing)
        parsed = _modrm(code, at, rex)
        if parsed is None or parsed[1] & 7 != 0:
            return None
        return parsed[0] + (1 if op == 0xf6 else 2 if short else 4) - start
    return None


def _byte_reg(index: int, rex: int, byte_op: bool) -> int:
    """The full register an 8-bit operand names: without REX, 4-7 are ah, ch, dh, bh."""
    if byte_op and not rex and 4 <= index <= 7:
        return index - 4
    return index


def _rm_write_allowed(rm: int, memory_base: int | None, rex: int, byte_op: bool, keep: set[int]) -> bool:
    if memory_base is None:                                  # a register
        return _byte_reg(rm, rex, byte_op) not in keep
    return memory_base == _SP                                # the stack frame only


def _modrm(code: bytes, at: int, rex: int) -> tuple[int, int, int, int | None] | None:
    """(end of the ModRM operand, reg field with REX.R, rm register with REX.B (a register operand) or
    the r/m field, memory base register or None for a register operand; -1 for RIP-relative or no base)."""
    if at >= len(code):
        return None
    modrm = code[at]
    at += 1
    mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
    reg |= 8 if rex & 4 else 0
    if mod == 3:
        return at, reg, rm | (8 if rex & 1 else 0), None
    base: int
    if rm == 4:                                              # SIB
        if at >= len(code):
            return None
        sib = code[at]
        at += 1
        index, sib_base = (sib >> 3) & 7 | (8 if rex & 2 else 0), sib & 7
        if sib_base == _BP and mod == 0:
            base = -1
            at += 4                                          # disp32, no base
        else:
            base = sib_base | (8 if rex & 1 else 0)
        if index != _SP:
            base = -1                                        # an indexed address: not "the stack frame"
    elif rm == 5 and mod == 0:
        base = -1
        at += 4                                              # RIP-relative disp32
    else:
        base = rm | (8 if rex & 1 else 0)
    at += 1 if mod == 1 else 4 if mod == 2 else 0
    if at > len(code):
        return None
    return at, reg, rm, base
