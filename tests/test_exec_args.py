"""exec argument plans: event sizes within the kernel's limits, and argv recovered exactly from simulated
probe hits (a small interpreter of the fetchargs over fake user memory, with faults and stale buffers)."""

from __future__ import annotations

import random
import re
import struct

import pytest

from rawtrace import execargs as X
from rawtrace.probes import MAX_COMMAND, parse_spec

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


class Memory:
    """Sparse user memory: mapped ranges of bytes; reads outside them fault."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, bytearray]] = []
        self.next = 0x7F0000001000

    def place(self, data: bytes, gap: int = 0, fill: bytes = b"\xAA") -> int:
        """Map data (followed by `gap` bytes of fill, so reads past a NUL see non-zero garbage)."""
        address = self.next
        self.ranges.append((address, bytearray(data + fill * gap)))
        self.next = address + len(data) + gap + 0x1000     # an unmapped page after each range
        return address

    def read(self, address: int, size: int) -> bytes | None:
        for start, data in self.ranges:
            if start <= address and address + size <= start + len(data):
                return bytes(data[address - start:address - start + size])
        return None

    def read_partial(self, address: int, size: int) -> bytes:
        """What copy_from_user_nofault leaves: the bytes before the first unmapped one (x86's copy
        routine finishes a faulting copy byte by byte)."""
        out = b""
        for offset in range(size):
            byte = self.read(address + offset, 1)
            if byte is None:
                break
            out += byte
        return out


_DEREF = re.compile(r"([+-]\d+)\((.*)\)\Z")


def _address(fetch: str, regs: dict, mem: Memory) -> int | None:
    """Value of an inner fetch (a register, or an 8-byte word read at +OFF(inner))."""
    if fetch.startswith("%"):
        return regs[fetch[1:]]
    match = _DEREF.match(fetch)
    assert match, fetch
    base = _address(match.group(2), regs, mem)
    if base is None:
        return None
    word = mem.read(base + int(match.group(1)), 8)
    return None if word is None else struct.unpack("<Q", word)[0]


def hit(events, regs: dict, mem: Memory, stale: random.Random) -> dict[str, dict]:
    """What the kernel would record for one probe hit: per event, its fields, or absent when its filter
    drops it. A faulting fetch leaves stale bytes (the per-CPU buffer is not cleared)."""
    out = {}
    for event in events:
        fields = {}
        for arg in event.spec.split()[1:]:
            name, rest = arg.split("=", 1)
            fetch, type_ = rest.rsplit(":", 1)
            if fetch.startswith("%"):
                fields[name] = regs[fetch[1:]]
                continue
            match = _DEREF.match(fetch)
            base = _address(match.group(2), regs, mem)
            address = None if base is None else base + int(match.group(1))
            if type_ == "x64":
                data = mem.read(address, 8) if address is not None else None
                fields[name] = struct.unpack("<Q", data)[0] if data else stale.getrandbits(64)
            elif type_ == "u8":
                data = mem.read(address, 1) if address is not None else None
                fields[name] = data[0] if data else stale.getrandbits(8)
            else:
                count = int(re.fullmatch(r"u64\[(\d+)\]", type_).group(1))
                words = []
                for i in range(count):       # the kernel fetches array elements one by one
                    data = mem.read_partial(address + 8 * i, 8) if address is not None else b""
                    data += stale.getrandbits(64).to_bytes(8, "little")[len(data):]
                    words.append(struct.unpack("<Q", data)[0])
                fields[name] = tuple(words)
        if event.filter is None or _passes(event.filter, fields):
            out[event.name] = fields
    return out


def _passes(expr: str, fields: dict) -> bool:
    """The kernel filter of a planned event: `a != 0 && b != 0`, or `argc > N`."""
    for term in expr.split(" && "):
        name, op, value = term.split(" ")
        if not (fields[name] != int(value) if op == "!=" else fields[name] > int(value)):
            return False
    return True


def call(argv: list[bytes], path: bytes = b"/bin/prog", garbage_after_null: int = 4,
         seed: int = 1) -> tuple[dict, Memory]:
    mem = Memory()
    rng = random.Random(seed)
    # After each string: zeros (as often in real memory) or non-zero garbage, per seed.
    fill = b"\0" if seed % 3 == 0 else b"\xAA"
    pointers = [mem.place(text + b"\0", gap=rng.randrange(0, 700), fill=fill) for text in argv]
    # Past the NULL terminator: pointers to mapped garbage, to nowhere, and NULLs.
    tail = [rng.choice([mem.place(b"\xBB" * 900), 0xDEAD0000, 0]) for _ in range(garbage_after_null)]
    array = mem.place(struct.pack(f"<{len(pointers) + 1 + len(tail)}Q", *pointers, 0, *tail))
    envp = mem.place(struct.pack("<2Q", mem.place(b"HOME=/root\0"), 0))
    regs = {"di": mem.place(path + b"\0"), "si": array, "dx": envp, "cx": 0, "r8": 0}
    return regs, mem


def capture_of(argv, limits, seed=1, **kw):
    events = [e for e in X.plan("x86_64", limits) if e.site.symbol == "execve"]
    regs, mem = call(argv, seed=seed, **kw)
    got = hit(events, regs, mem, random.Random(seed))
    assembler = X.HitAssembler(events, limits.max_args, limits.max_env)
    # The kernel runs the consumers of one address newest first; either order must work.
    order = events[::-1] if seed % 2 == 0 else events
    for event in order:
        if event.name in got:
            assembler.add(event.name, 100, 7, got[event.name])
    capture = assembler.take(7, regs["si"])
    assert capture is not None
    return capture, got, events


# -- the plan ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("limits", [
    X.PlanLimits(),
    X.PlanLimits(max_args=320, max_arg_len=10240, head_args=2),
    X.PlanLimits(max_args=1, max_arg_len=1, head_args=1, tail_len=1, path_len=1),
    X.PlanLimits(max_args=40, max_env=100, env_len=300),
])
def test_every_event_fits_the_kernel_limits(limits):
    events = X.plan("x86_64", limits)
    assert {e.site.symbol for e in events} == {"execve", "execveat", "fexecve"}
    for event in events:
        spec = parse_spec(event.spec, "x86_64")
        size = 0
        for arg in spec.args:
            match = re.fullmatch(r"u64\[(\d+)\]", arg.type)
            size += 8 * int(match.group(1)) if match else {"x64": 8, "u8": 1}[arg.type]
        assert size == event.size <= X.EVENT_BYTES
        assert len(spec.args) <= X.EVENT_ARGS
        # The line the kernel gets: "p:GROUP/NAME PATH:0xOFFSET args", one write of < 4096 bytes.
        line = f"p:rawtrace_4194304/{event.name} {LIBC}:0xfffff " + " ".join(a.render() for a in spec.args)
        assert len(line) < MAX_COMMAND
        assert all(a.type in ("x64", "u8") or a.type.startswith("u64[") for a in spec.args), \
            "only fixed-size fetches: a ustring could overflow the kernel's one-page buffer"
    heads = [e for e in events if e.head]
    assert len(heads) == 3 and all(e.filter is None for e in heads)
    assert all(e.filter for e in events if not e.head)


def test_registers_follow_each_site():
    events = {e.name: e for e in X.plan("x86_64", X.PlanLimits(max_args=2))}
    assert "argv=%si:x64" in events["execve_0"].spec and "path_0=+0(%di)" in events["execve_0"].spec
    assert all(e.spec.split()[1].startswith("argv=") for e in events.values())
    assert "argv=%dx:x64" in events["execveat_0"].spec and "path_0=+0(%si)" in events["execveat_0"].spec
    assert "argv=%si:x64" in events["fexecve_0"].spec and "path_0" not in events["fexecve_0"].spec
    arm = {e.name: e for e in X.plan("aarch64", X.PlanLimits(max_args=2))}
    assert "argv=%x1:x64" in arm["execve_0"].spec and "argv=%x2:x64" in arm["execveat_0"].spec


def test_bad_limits_and_arch():
    with pytest.raises(X.UsageError):
        X.plan("x86_64", X.PlanLimits(max_args=0))
    with pytest.raises(X.UsageError):
        X.plan("x86_64", X.PlanLimits(max_arg_len=200000))
    with pytest.raises(X.UsageError):
        X.plan("riscv64", X.PlanLimits())


# -- simulated hits ------------------------------------------------------------------------------------

NASTY = [b"/bin/prog", b"with space", b"quote\"s and 'single'", b"\xff\xfe not utf-8 \x80", b"", b"tab\there",
         b"new\nline", b"\x1b[31mred"]


@pytest.mark.parametrize("seed", range(5))
def test_nasty_arguments_come_back_exactly(seed):
    capture, _got, _events = capture_of(NASTY, X.PlanLimits(), seed=seed)
    assert capture.argv == NASTY
    assert capture.argv_cut == [False] * len(NASTY) and not capture.argv_more and not capture.incomplete
    assert capture.path == b"/bin/prog"


@pytest.mark.parametrize("argc", [0, 1, 2, 5, 12, 13, 64])
def test_argument_counts_around_event_boundaries(argc):
    argv = [f"arg-{i}".encode() for i in range(argc)]
    limits = X.PlanLimits(max_args=64)
    capture, _got, _events = capture_of(argv, limits)
    assert capture.argv == argv
    assert not capture.argv_more and not any(capture.argv_cut)


def test_300_arguments_and_a_10k_argument():
    big = bytes(range(1, 256)) * 40 + b"end"                    # 10 203 bytes, every non-NUL byte value
    argv = [b"/usr/bin/prog", big] + [f"a{i} 'x'".encode() for i in range(298)]
    limits = X.PlanLimits(max_args=320, max_arg_len=10240, head_args=2)
    capture, got, events = capture_of(argv, limits)
    assert capture.argv == argv and not capture.truncated
    assert len(got) == len(events)
    # A short argv under the same plan: events whose guard pointer is NULL are dropped; those whose guard
    # reads garbage past the NULL (or a stale value after a fault) are recorded and ignored.
    for garbage in (0, 4):
        capture, got, events = capture_of([b"true"], limits, garbage_after_null=garbage)
        assert capture.argv == [b"true"] and not capture.truncated and not capture.incomplete
    regs, mem = call([b"true"], garbage_after_null=0)
    index = next(i for i, (start, _data) in enumerate(mem.ranges) if start == regs["si"])
    mem.ranges[index] = (regs["si"], mem.ranges[index][1] + b"\0" * 4096)    # NULLs after argv's NULL
    got = hit(events, regs, mem, random.Random(0))
    # The head, and argv[0]'s first continuation, whose guard byte lies past the NUL (fill, then stale).
    assert list(got) == ["execve_0", "execve_1"]


@pytest.mark.parametrize("length", [62, 63, 64, 65, 511, 512, 1023, 1024, 1025, 3000])
def test_lengths_around_chunk_edges(length):
    text = b"x" * length
    limits = X.PlanLimits(max_args=4, max_arg_len=1024, head_args=1, tail_len=63)
    capture, _got, _events = capture_of([text, text], limits)
    head, tail = capture.argv
    assert head == text[:1024 + 7 - (1024 + 7) % 8 + 8][:len(head)]
    assert capture.argv_cut[0] == (length > len(head)) and head == text[:len(head)]
    if length <= 1024:
        assert head == text and not capture.argv_cut[0]
    assert tail == text[:len(tail)] and capture.argv_cut[1] == (length > 63)
    if length <= 63:
        assert tail == text


def test_more_arguments_than_planned_are_marked():
    argv = [f"{i}".encode() for i in range(10)]
    capture, _got, _events = capture_of(argv, X.PlanLimits(max_args=4, head_args=1))
    assert capture.argv == argv[:4] and capture.argv_more and capture.truncated


def test_env_capture():
    limits = X.PlanLimits(max_args=4, max_env=4)
    capture, _got, _events = capture_of([b"a"], limits)
    assert capture.envp == [b"HOME=/root"] and not capture.envp_more


def test_hits_of_other_threads_and_pointer_mismatch():
    events = [e for e in X.plan("x86_64", X.PlanLimits(max_args=4)) if e.site.symbol == "execve"]
    regs, mem = call([b"a", b"b"])
    got = hit(events, regs, mem, random.Random(0))
    def fed():
        assembler = X.HitAssembler(events, 4)
        for name, fields in got.items():
            assembler.add(name, 1, 10, fields)
        return assembler
    assembler = fed()
    assert assembler.take(11, regs["si"]) is None
    assert assembler.take(10, regs["si"]).argv == [b"a", b"b"]
    assert assembler.take(10, regs["si"]) is None               # taken once
    # A call with another argv: these events belonged to an earlier hit (its syscall event was lost).
    assembler = fed()
    assert assembler.take(10, regs["si"] + 8) is None
    assert assembler.take(10, regs["si"]) is None


def test_lost_event_in_a_hit_is_flagged():
    argv = [f"arg{i}".encode() for i in range(30)]
    limits = X.PlanLimits(max_args=64)
    events = [e for e in X.plan("x86_64", limits) if e.site.symbol == "execve"]
    regs, mem = call(argv)
    got = hit(events, regs, mem, random.Random(0))
    # An event that starts with a string's first chunk (its guard is that string's pointer, non-NULL
    # here), so its absence can only be a loss. A missing continuation cannot be told from a short string.
    dropped = next(e.name for e in events if not e.head and e.slots[0].offset == 0)
    assembler = X.HitAssembler(events, 64)
    for event in events:
        if event.name in got and event.name != dropped:
            assembler.add(event.name, 1, 10, got[event.name])
    capture = assembler.take(10, regs["si"])
    # Alone, a missing event reads as the guard's NULL: argv ends where the missing event began...
    first = next(e for e in events if e.name == dropped).slots[0].index
    assert capture.argv == argv[:first] and not capture.incomplete
    # ...unless the stream said events were lost: then the capture is marked.
    assembler = X.HitAssembler(events, 64)
    for event in events:
        if event.name in got and event.name != dropped:
            assembler.add(event.name, 1, 10, got[event.name])
    assembler.lost()
    assert assembler.take(10, regs["si"]).incomplete


def test_words_to_bytes():
    assert X.words_to_bytes((0x6867666564636261, 0)) == b"abcdefgh" + b"\0" * 8
    assert X.words_to_bytes(b"raw") == b"raw"


def test_syscall_string_fields():
    assert X.syscall_string_fields(["__syscall_nr", "filename", "argv", "envp", "__filename_val"]) == \
        {"filename": "__filename_val"}
    assert X.syscall_string_fields(["fd", "filename", "argv"]) == {}


def test_start_site_guards_on_argc_past_which_envp_pointers_follow():
    limits = X.PlanLimits(max_args=64, head_args=2, max_arg_len=1023)
    events = [e for e in X.plan("x86_64", limits, X.SITES + (X.START_SITE,)) if e.site == X.START_SITE]
    assert len(events) > 2
    regs, mem = call([b"true"], garbage_after_null=40)      # non-NULL pointers past argv's NULL
    regs = {"dx": regs["si"], "si": 1}
    got = hit(events, regs, mem, random.Random(3))
    assert list(got) == [events[0].name]                      # only the head: argc says the rest is empty
    assembler = X.HitAssembler(events, 64)
    for name, fields in got.items():
        assembler.add(name, 1, 5, fields)
    capture = assembler.take(5, None, X.START_SITE.symbol)
    assert capture.argv == [b"true"] and not capture.truncated


def test_two_sites_in_one_bag_the_latest_head_wins():
    events = X.plan("x86_64", X.PlanLimits(max_args=4))
    regs, mem = call([b"x", b"y"])
    fexecve = [e for e in events if e.site.symbol == "fexecve"]
    execve = [e for e in events if e.site.symbol == "execve"]
    assembler = X.HitAssembler(events, 4)
    for name, fields in hit(fexecve, regs, mem, random.Random(0)).items():
        assembler.add(name, 10, 3, fields)
    for name, fields in hit(execve, regs, mem, random.Random(0)).items():
        assembler.add(name, 20, 3, fields)
    capture = assembler.take(3, regs["si"])
    assert capture.site == "execve" and capture.argv == [b"x", b"y"]


def test_null_argv_and_envp_are_empty_not_stale():
    limits = X.PlanLimits(max_args=8, max_env=4)
    events = [e for e in X.plan("x86_64", limits) if e.site.symbol == "execve"]
    regs, mem = call([b"stale", b"words"])
    stale = hit(events, regs, mem, random.Random(0))
    regs = dict(regs, si=0, dx=0)                     # execve(path, NULL, NULL)
    got = hit(events, regs, mem, random.Random(0))
    # What the kernel leaves after faulting fetches: the previous hit's bytes.
    for name, fields in got.items():
        for key in list(fields):
            if key not in ("argv", "envp") and name in stale and key in stale[name]:
                fields[key] = stale[name][key]
    assembler = X.HitAssembler(events, 8, 4)
    for name, fields in got.items():
        assembler.add(name, 1, 9, fields)
    capture = assembler.take(9, 0)
    assert capture.argv == [] and capture.envp == [] and not capture.truncated
