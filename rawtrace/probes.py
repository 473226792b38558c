"""Probe specs (`uprobe:libc:openat arg2:ustring`): parsing, validation and the tracefs definition line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rawtrace.errors import UsageError
from rawtrace.host import Host, host_machine, read_text_or_none

# Names and owner tags are tracefs rules, re-exported here for callers of the probe API.
from rawtrace.tracefs.dynevents import _NAME, MAX_NAME, validate_name
from rawtrace.tracefs.instance import GROUP_PREFIX, group_owner, run_group  # noqa: F401


@dataclass(frozen=True, slots=True)
class ProbeArch:
    """What friendly probe arguments need to know about an architecture (which arch a name means is
    rawtrace.syscalls.arches' business: this holds only the calling conventions).

    Verify `arg_registers` against the psABI calling convention and the register names against
    regs_query_register_offset() in arch/<arch>/kernel/ptrace.c; `syscall_arg_offsets` are the
    offsets of the syscall argument registers in struct pt_regs (arch/<arch>/include/asm/ptrace.h)."""

    name: str
    arg_registers: tuple[str, ...]
    registers: frozenset[str]
    # $stackN index of the first argument passed on the stack, at function entry.
    first_stack_arg: int
    syscall_wrapper_prefixes: tuple[str, ...]
    syscall_context_register: str
    syscall_arg_offsets: tuple[int, ...]
    # Wrappers of the 32-bit compat ABI, whose arguments sit in other saved registers.
    compat_wrapper_prefixes: tuple[str, ...] = ()
    compat_arg_offsets: tuple[int, ...] = ()
    register_aliases: tuple[tuple[str, str], ...] = ()


_X86_64_REGISTERS = frozenset(
    ["ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip", "flags", "cs", "ss", "ds", "es", "fs", "gs",
     "orig_ax"] + [f"r{i}" for i in range(8, 16)])

# Keyed by rawtrace.syscalls.arches names; `_arch` maps aliases and `uname -m` values through that table.
PROBE_ARCHES: dict[str, ProbeArch] = {
    "x86_64": ProbeArch(
        name="x86_64",
        arg_registers=("di", "si", "dx", "cx", "r8", "r9"),
        registers=_X86_64_REGISTERS,
        first_stack_arg=1,          # $stack0 is the return address pushed by call
        syscall_wrapper_prefixes=("__x64_sys_",),
        syscall_context_register="di",
        # di, si, dx, r10, r8, r9 in struct pt_regs
        syscall_arg_offsets=(0x70, 0x68, 0x60, 0x38, 0x48, 0x40),
        # int 0x80 / compat: bx, cx, dx, si, di, bp in struct pt_regs
        compat_wrapper_prefixes=("__ia32_sys_", "__ia32_compat_sys_"),
        compat_arg_offsets=(0x28, 0x58, 0x60, 0x68, 0x70, 0x20),
        register_aliases=tuple((f"r{n}", n) for n in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip"))
        + tuple((f"e{n}", n) for n in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip")),
    ),
    "arm64": ProbeArch(
        name="arm64",
        arg_registers=tuple(f"x{i}" for i in range(8)),
        registers=frozenset([f"x{i}" for i in range(31)] + ["sp", "pc", "pstate"]),
        first_stack_arg=0,          # the return address is in x30, so sp points at the 9th argument
        syscall_wrapper_prefixes=("__arm64_sys_",),
        syscall_context_register="x0",
        syscall_arg_offsets=tuple(8 * i for i in range(6)),    # regs[0..5]
        register_aliases=(("lr", "x30"),),
    ),
}

KINDS = ("uprobe", "uretprobe", "usdt", "kprobe", "kretprobe", "eprobe", "fprobe", "fretprobe")
RETURN_KINDS = frozenset({"uretprobe", "kretprobe", "fretprobe"})

_BASIC_TYPES = frozenset(
    [f"{sign}{bits}" for sign in "sux" for bits in (8, 16, 32, 64)]
    + ["char", "string", "ustring", "symbol", "symstr", "%pd", "%pD"])
_STRING_TYPES = frozenset({"string", "ustring"})
_BITFIELD = re.compile(r"b\d{1,2}@\d{1,2}/(8|16|32|64)\Z")
_ARRAY = re.compile(r"(?P<base>[^\[\]]+)\[(?P<count>\d{1,3})\]\Z")
_FETCH_CHARS = re.compile(r"[A-Za-z0-9_%$@+\-().>\\]+\Z")
_FRIENDLY_ARG = re.compile(r"arg(\d+)\Z")
_KERNEL_SYMBOL = re.compile(r"[A-Za-z_.][A-Za-z0-9_.$]*\Z")
_ELF_SYMBOL = re.compile(r"[A-Za-z0-9_.$@]+\Z")
_LIBRARY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]*\Z")
_MODULE = re.compile(r"[A-Za-z0-9_\-]+\Z")
_RESERVED_ARG_NAMES = frozenset({"common_type", "common_flags", "common_preempt_count", "common_pid",
                                 "common_tgid", "__probe_ip", "__probe_func", "__probe_ret_ip"})
MAX_ARG_NAME = 32       # MAX_ARG_NAME_LEN
MAX_ARGS = 128          # MAX_TRACE_ARGS
MAX_COMMAND = 4095      # WRITE_BUFSIZE (4096) less the newline and NUL: longer lines are refused


def _reject_unsafe(text: str, what: str) -> None:
    """A spec becomes one line of a tracefs command file: nothing may end it or start another.

    The kernel splits commands at newlines and drops everything after `#` as a comment."""
    for ch in text:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise UsageError(f"{what} contains a control character ({ch!r}); probe specs are one line")
        if ch in ";#":
            raise UsageError(f"{what} contains {ch!r}, which is not allowed in a probe spec")
    # The kernel splits arguments with its Latin-1 isspace(), which counts byte 0xA0 (found inside
    # UTF-8 sequences such as U+00A0 or U+2020) as a space.
    if b"\xa0" in text.encode("utf-8", "surrogateescape"):
        raise UsageError(f"{what} contains a character whose UTF-8 form the kernel would read as a space")


def sanitize_name(text: str) -> str:
    """Make an event name the kernel accepts: [A-Za-z0-9_], not starting with a digit, <= 64 chars."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    if not name:
        name = "probe"
    if name[0].isdigit():
        name = "_" + name
    return name[:MAX_NAME]


def _arch(name: str | None) -> ProbeArch | None:
    from rawtrace.syscalls.arches import lookup_arch
    record = lookup_arch(name or host_machine())
    return PROBE_ARCHES.get(record.name) if record is not None else None


def validate_type(type_: str) -> str:
    """Return the fetcharg type if the kernel knows it (s8..u64, x8.., string, ustring, arrays...)."""
    match = _ARRAY.match(type_)
    base = match.group("base") if match else type_
    if match and not 0 < int(match.group("count")) <= 64:
        raise UsageError(f"array size in {type_!r} must be 1..64")
    if base in _BASIC_TYPES or _BITFIELD.match(base):
        return type_
    import difflib
    close = difflib.get_close_matches(base, sorted(_BASIC_TYPES), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown argument type {type_!r}{hint} (types: s8..s64, u8..u64, x8..x64, char, "
                     "string, ustring, symbol, symstr, %pd, %pD, b<width>@<offset>/<size>, TYPE[N])")


@dataclass(frozen=True, slots=True)
class ProbeArg:
    """One fetched argument: `name=fetch:type` as the kernel wants it; `given` is what the user wrote."""

    name: str
    fetch: str
    type: str | None
    given: str

    def render(self) -> str:
        return f"{self.name}={self.fetch}" + (f":{self.type}" if self.type else "")


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A parsed `--probe` spec. `target` is the uprobe file/library/pid:PID, the kprobe module, or the
    eprobe's event system; `symbol` the function (or the eprobe's event)."""

    kind: str
    target: str | None
    symbol: str
    offset: int
    args: tuple[ProbeArg, ...]
    return_probe: bool
    arch: str
    text: str
    name: str | None = None         # an explicit event name given as `NAME=kind:...`
    provider: str | None = None     # USDT provider (usdt:TARGET:PROVIDER:NAME)

    @classmethod
    def parse(cls, text: str, arch: str | None = None, host: Host | None = None) -> ProbeSpec:
        """Parse and validate a spec for `arch` (default: the machine of `host`, else of the running
        kernel); raises UsageError naming the problem. Nothing is written."""
        return parse_spec(text, arch, host)

    @property
    def event_name(self) -> str:
        """The event name to use unless the caller picks another: the explicit name, else from the symbol."""
        if self.name:
            return self.name
        base = self.symbol.split("@", 1)[0]
        if self.kind == "usdt" and self.provider:
            base = f"{self.provider}_{self.symbol}"
        elif self.kind == "eprobe":
            base = f"{self.symbol}_e"
        elif self.offset:
            base = f"{base}_{self.offset:x}"
        if self.return_probe:
            base += "_ret"
        return sanitize_name(base)

    @property
    def is_uprobe(self) -> bool:
        return self.kind in ("uprobe", "uretprobe", "usdt")

    @property
    def feature(self) -> str:
        """The kernel feature this probe needs: uprobes, kprobes, eprobes or fprobes."""
        return {"uprobe": "uprobes", "uretprobe": "uprobes", "usdt": "uprobes", "kprobe": "kprobes", "kretprobe": "kprobes",
                "eprobe": "eprobes", "fprobe": "fprobes", "fretprobe": "fprobes"}[self.kind]


def parse_spec(text: str, arch: str | None = None, host: Host | None = None) -> ProbeSpec:
    arch_name = arch or (host.machine() if host is not None else host_machine())
    arch_info = _arch(arch_name)
    if not isinstance(text, str) or not text.strip():
        raise UsageError("empty probe spec", hint="e.g. --probe 'uprobe:libc:openat path=arg2:ustring'")
    _reject_unsafe(text, "probe spec")
    head, *arg_texts = text.split()
    name = None
    if "=" in head.split(":", 1)[0]:
        name, head = head.split("=", 1)
        validate_name(name)
    kind, sep, rest = head.partition(":")
    if not sep or kind not in KINDS:
        import difflib
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f"did you mean {close[0]}:?" if close else f"kinds: {', '.join(KINDS)}"
        raise UsageError(f"bad probe spec {head!r}: expected KIND:..., {hint}")
    return_probe = kind in RETURN_KINDS
    provider = None
    if kind == "usdt":
        target, provider, symbol = _parse_usdt_place(rest, head)
        offset = 0
    else:
        target, symbol, offset = _parse_place(kind, rest, head)
    if len(arg_texts) > MAX_ARGS:
        raise UsageError(f"too many probe arguments ({len(arg_texts)}; the kernel allows {MAX_ARGS})")
    context = _Context(kind, symbol, offset, return_probe, arch_info, arch_name)
    args = _parse_args(arg_texts, context)
    return ProbeSpec(kind, target, symbol, offset, args, return_probe, arch_name, text, name, provider)


def _parse_usdt_place(rest: str, head: str) -> tuple[str, str | None, str]:
    """`TARGET:[PROVIDER:]NAME` with TARGET a path, library or pid:PID."""
    if rest.startswith("pid:"):
        pid, _sep, after = rest[4:].partition(":")
        if not pid.isdigit():
            raise UsageError(f"bad target in {head!r}: expected pid:<number>")
        target, parts = f"pid:{pid}", after.split(":")
    else:
        pieces = rest.split(":")
        if len(pieces) >= 3 and _NAME.match(pieces[-2]) and _NAME.match(pieces[-1]):
            target, parts = ":".join(pieces[:-2]), pieces[-2:]
        else:
            target, parts = ":".join(pieces[:-1]), pieces[-1:]
    if not target or len(parts) not in (1, 2) or not all(_NAME.match(p) for p in parts):
        raise UsageError(f"bad usdt spec {head!r}: expected usdt:TARGET:[PROVIDER:]NAME, "
                         "e.g. usdt:libstdc++:libstdcxx:throw")
    if not target.startswith("pid:") and "/" not in target and not _LIBRARY.match(target):
        raise UsageError(f"bad target {target!r} in {head!r}: a path (with /), a library name or pid:PID")
    provider = parts[0] if len(parts) == 2 else None
    return target, provider, parts[-1]


def _parse_offset(text: str, head: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"bad offset {text!r} in {head!r}: use a decimal or 0x number") from None
    if value < 0:
        raise UsageError(f"negative offset in {head!r}")
    return value


def _split_offset(place: str, head: str) -> tuple[str, int]:
    if "+" in place:
        symbol, offset_text = place.rsplit("+", 1)
        return symbol, _parse_offset(offset_text, head)
    return place, 0


def _parse_place(kind: str, rest: str, head: str) -> tuple[str | None, str, int]:
    if kind in ("uprobe", "uretprobe"):
        if rest.startswith("pid:"):
            pid, sep, place = rest[4:].partition(":")
            target = f"pid:{pid}"
            if not pid.isdigit():
                raise UsageError(f"bad target in {head!r}: expected pid:<number>")
        else:
            target, sep, place = rest.rpartition(":")
        if not sep or not target or not place:
            raise UsageError(f"bad {kind} spec {head!r}: expected {kind}:TARGET:SYMBOL[+OFFSET] "
                             "(TARGET: a path, a library name like libc, or pid:PID)")
        if not target.startswith("pid:") and "/" not in target and not _LIBRARY.match(target):
            raise UsageError(f"bad target {target!r} in {head!r}: a path (with /), a library name like "
                             "libc or libssl.so.3, or pid:PID")
        symbol, offset = _split_offset(place, head)
        if not _ELF_SYMBOL.match(symbol):
            raise UsageError(f"bad symbol {symbol!r} in {head!r}")
        if kind == "uretprobe" and offset:
            raise UsageError(f"a uretprobe goes on a function's entry; drop the offset in {head!r}")
        return target, symbol, offset
    if kind in ("kprobe", "kretprobe", "fprobe", "fretprobe"):
        module = None
        place = rest
        if ":" in rest and kind in ("kprobe", "kretprobe"):
            module, place = rest.split(":", 1)
            if not _MODULE.match(module):
                raise UsageError(f"bad module name {module!r} in {head!r}")
        symbol, offset = _split_offset(place, head)
        if not symbol or not _KERNEL_SYMBOL.match(symbol):
            raise UsageError(f"bad {kind} spec {head!r}: expected {kind}:FUNCTION"
                             + ("[+OFFSET]" if kind == "kprobe" else ""))
        if offset and kind != "kprobe":
            raise UsageError(f"{kind} probes go on a function's entry; drop the offset in {head!r}")
        return module, symbol, offset
    # eprobe: SYSTEM:EVENT (also SYSTEM.EVENT and SYSTEM/EVENT, the spellings tracefs uses)
    parts = re.split(r"[:./]", rest)
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts):
        raise UsageError(f"bad eprobe spec {head!r}: expected eprobe:SYSTEM:EVENT, "
                         "e.g. eprobe:syscalls:sys_enter_openat")
    return parts[0], parts[1], 0


@dataclass(frozen=True, slots=True)
class _Context:
    kind: str
    symbol: str
    offset: int
    return_probe: bool
    arch: ProbeArch | None
    arch_name: str

    @property
    def syscall_wrapper(self) -> bool:
        return (self.kind in ("kprobe", "kretprobe") and self.arch is not None
                and self.symbol.startswith(self.arch.syscall_wrapper_prefixes + self.arch.compat_wrapper_prefixes))

    @property
    def syscall_offsets(self) -> tuple[int, ...]:
        assert self.arch is not None
        if self.arch.compat_wrapper_prefixes and self.symbol.startswith(self.arch.compat_wrapper_prefixes):
            return self.arch.compat_arg_offsets
        return self.arch.syscall_arg_offsets


def _parse_args(texts: list[str], context: _Context) -> tuple[ProbeArg, ...]:
    args: list[ProbeArg] = []
    names: set[str] = set()
    for position, text in enumerate(texts, 1):
        name, fetch, type_ = _split_arg(text)
        fetch, type_, natural = _translate(fetch, type_, context, text)
        if name is None:
            name = natural or f"arg{position}"
            if name in names:
                name = f"{name}_{position}"
        if len(name) > MAX_ARG_NAME or not _NAME.match(name):
            raise UsageError(f"invalid argument name {name!r} in {text!r}: letters, digits and _, "
                             f"at most {MAX_ARG_NAME} characters")
        if name in _RESERVED_ARG_NAMES:
            raise UsageError(f"argument name {name!r} is reserved by the kernel for the event's own fields")
        if name in names:
            raise UsageError(f"argument name {name!r} is used twice")
        names.add(name)
        args.append(ProbeArg(name, fetch, type_, text))
    return tuple(args)


def _split_arg(text: str) -> tuple[str | None, str, str | None]:
    name = None
    if "=" in text:
        name, text = text.split("=", 1)
    fetch, sep, type_ = text.rpartition(":")
    if not sep:
        fetch, type_ = text, None
    elif "(" in type_ or ")" in type_:
        raise UsageError(f"bad probe argument {text!r}")
    if not fetch:
        raise UsageError(f"empty fetch in probe argument {text!r}")
    if type_ is not None:
        validate_type(type_)
    return name, fetch, type_


def _translate(fetch: str, type_: str | None, context: _Context, text: str) -> tuple[str, str | None, str | None]:
    """Friendly fetch → the kernel's fetcharg for this probe kind and arch; also a natural arg name."""
    if not _FETCH_CHARS.match(fetch) or fetch.count("(") != fetch.count(")"):
        raise UsageError(f"bad fetch {fetch!r} in probe argument {text!r}",
                         hint="registers %di, $retval, $comm, $stackN, deref +OFF(FETCH), or argN/retval")
    wants_string = type_ in _STRING_TYPES
    friendly = _FRIENDLY_ARG.match(fetch)
    if friendly and context.kind == "usdt":
        # The note spells each argument; resolve() reads it from the file and translates it.
        if int(friendly.group(1)) < 1:
            raise UsageError(f"arguments count from 1: {text!r}")
        return fetch, type_, fetch
    if friendly:
        number = int(friendly.group(1))
        kernel_fetch, type_ = _friendly_arg(number, type_, context, text)
        if wants_string:
            kernel_fetch = f"+0({kernel_fetch})"
        return kernel_fetch, type_, fetch
    if fetch in ("retval", "$retval"):
        if not context.return_probe:
            raise UsageError(f"{fetch} exists only in return probes (uretprobe, kretprobe, fretprobe): {text!r}")
        return ("+0($retval)" if wants_string else "$retval"), type_, "retval"
    if fetch in ("comm", "$comm"):
        return "$comm", type_ or "string", "comm"
    if context.kind == "eprobe" and _NAME.match(fetch):
        field = f"${fetch}"
        return (f"+0({field})" if wants_string else field), type_, fetch
    if fetch[0] not in "%$@+-\\" and context.kind in ("uprobe", "uretprobe", "usdt"):
        # A bare name is a BTF argument name, which only kernel probes have.
        raise UsageError(f"bad fetch {fetch!r} in probe argument {text!r}: uprobes fetch %REG, $stackN, "
                         "$comm, +OFF(FETCH), or the friendly argN/retval/comm")
    if re.search(r"\$arg\d", fetch) and context.kind in ("uprobe", "uretprobe", "usdt"):
        raise UsageError(f"uprobes cannot use $argN ({text!r}); use argN, which rawtrace maps to registers")
    if "$retval" in fetch and not context.return_probe:
        raise UsageError(f"$retval exists only in return probes: {text!r}")
    return _check_registers(fetch, context, text), type_, None


def _friendly_arg(number: int, type_: str | None, context: _Context, text: str) -> tuple[str, str | None]:
    if number < 1:
        raise UsageError(f"arguments count from 1: {text!r}")
    if context.kind == "eprobe":
        raise UsageError(f"event probes fetch the attached event's fields by name, not argN: {text!r}")
    if context.kind in ("fprobe", "fretprobe"):
        return f"$arg{number}", type_
    arch = context.arch
    if arch is None:
        raise UsageError(f"argN is not known for architecture {context.arch_name}; use registers: {text!r}")
    if context.syscall_wrapper:
        # __x64_sys_*(const struct pt_regs *regs): the syscall's own arguments live in that pt_regs.
        offsets = context.syscall_offsets
        if number > len(offsets):
            raise UsageError(f"system calls have at most {len(offsets)} arguments: {text!r}")
        if context.offset:
            raise UsageError(f"argN needs the function entry (offset 0): {text!r}")
        inner = f"+{offsets[number - 1]:#x}(%{arch.syscall_context_register})"
        if context.kind == "kretprobe":
            raise UsageError(f"the saved registers are gone when the syscall returns; use a kprobe for "
                             f"arguments: {text!r}")
        # The pointer came from user space: read its string from user memory.
        return inner, ("ustring" if type_ == "string" else type_)
    if context.kind == "kretprobe":
        return f"$arg{number}", type_
    if context.return_probe:
        raise UsageError(f"argument registers are overwritten by the time a function returns; "
                         f"probe the entry with a uprobe for {text!r}")
    if context.offset:
        raise UsageError(f"argN is only reliable at the function entry, not +{context.offset:#x}: "
                         f"use registers directly ({text!r})")
    if number <= len(arch.arg_registers):
        return f"%{arch.arg_registers[number - 1]}", type_
    return f"$stack{arch.first_stack_arg + number - 1 - len(arch.arg_registers)}", type_


def _check_registers(fetch: str, context: _Context, text: str) -> str:
    arch = context.arch

    def replace(match: re.Match) -> str:
        register = match.group(1)
        if arch is None:
            return match.group(0)
        register = dict(arch.register_aliases).get(register, register)
        if register not in arch.registers:
            raise UsageError(f"unknown {arch.name} register %{match.group(1)} in {text!r}",
                             hint="registers: " + " ".join(sorted(arch.registers)))
        return f"%{register}"

    return re.sub(r"%([A-Za-z0-9_]+)", replace, fetch)


# ---------------------------------------------------------------------------------------------------
# Resolution: spec → the place the kernel wants


@dataclass(frozen=True, slots=True)
class ResolvedProbe:
    """A spec with its place resolved (uprobes: absolute file path and file offset)."""

    spec: ProbeSpec
    place: str                       # `/usr/lib/.../libc.so.6:0xf8150`, `vfs_read+4`, `syscalls.sys_enter_openat`
    path: str | None = None
    symbol: str | None = None        # as found in the ELF file (with version) for uprobes
    address: int | None = None
    file_offset: int | None = None
    aliases: tuple[str, ...] = ()
    resolved_args: tuple[ProbeArg, ...] | None = None    # USDT: arguments read from the probe's note
    semaphore_offset: int | None = None                   # USDT: file offset of the semaphore

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def args(self) -> tuple[ProbeArg, ...]:
        return self.resolved_args if self.resolved_args is not None else self.spec.args

    def definition(self, group: str, event: str) -> str:
        """The exact line written to dynamic_events / uprobe_events / kprobe_events (no newline)."""
        validate_name(group, "group name")
        validate_name(event)
        kind = self.spec.kind
        letter = {"uprobe": "p", "uretprobe": "r", "usdt": "p", "kprobe": "p", "kretprobe": "r", "eprobe": "e",
                  "fprobe": "f", "fretprobe": "f"}[kind]
        place = self.place + ("%return" if kind == "fretprobe" else "")
        parts = [f"{letter}:{group}/{event}", place] + [arg.render() for arg in self.args]
        line = " ".join(parts)
        _reject_unsafe(line, "probe definition")
        if len(line) >= MAX_COMMAND:
            raise UsageError(f"probe definition is {len(line)} characters; the kernel takes at most {MAX_COMMAND - 1}")
        return line


def resolve(spec: ProbeSpec, host: Host | None = None) -> ResolvedProbe:
    """Resolve a spec against this host: uprobe targets and symbols through their ELF files."""
    host = host or Host()
    if spec.kind == "usdt":
        return _resolve_usdt(spec, host)
    if spec.is_uprobe:
        from rawtrace import elf
        machine = spec.arch
        path = elf.resolve_target(spec.target or "", host, machine)
        _reject_unsafe(path, "uprobe target path")
        if any(ch.isspace() for ch in path):
            raise UsageError(f"{path}: the kernel's probe syntax cannot express a path with spaces",
                             hint="probe it through a symlink-free copy or a bind mount without spaces")
        found = elf.resolve_symbol(path, spec.symbol, host, offset=spec.offset, machine=machine)
        return ResolvedProbe(spec, f"{path}:{found.file_offset:#x}", path, found.symbol, found.address,
                             found.file_offset, found.aliases)
    if spec.kind in ("kprobe", "kretprobe", "fprobe", "fretprobe"):
        _check_kernel_function(spec, host)
    if spec.kind in ("kprobe", "kretprobe"):
        place = f"{spec.target}:{spec.symbol}" if spec.target else spec.symbol
        if spec.offset:
            place += f"+{spec.offset}"
        return ResolvedProbe(spec, place, symbol=spec.symbol)
    if spec.kind == "eprobe":
        return ResolvedProbe(spec, f"{spec.target}.{spec.symbol}", symbol=spec.symbol)
    return ResolvedProbe(spec, spec.symbol, symbol=spec.symbol)


def _check_kernel_function(spec: ProbeSpec, host: Host) -> None:
    """Refuse a kernel function the kernel does not have, with near matches, before anything is written.

    kprobes can go on any text symbol in /proc/kallsyms; fprobes only on available_filter_functions.
    Skipped when the kernel lacks the probe kind (creating it says so) or the list cannot be read."""
    from rawtrace.tracefs.discover import locate_tracefs
    from rawtrace.tracefs.dynevents import probe_support
    location = locate_tracefs(host)
    if location is None or not location.readable or not probe_support(location.path).supports(spec.kind):
        return
    if spec.kind in ("fprobe", "fretprobe"):
        source = "available_filter_functions"
        text = read_text_or_none(location.path / source)
        names = _filter_function_names(text, None) if text else set()
    else:
        source = "/proc/kallsyms"
        text = host.read_text(source)
        names = _kallsyms_text_names(text, spec.target) if text else set()
    if not names or spec.symbol in names:
        return
    import difflib
    nearby = [n for n in names if n[:1] == spec.symbol[:1] and abs(len(n) - len(spec.symbol)) <= 4]
    close = difflib.get_close_matches(spec.symbol, nearby, n=4, cutoff=0.75)
    extra = f"; did you mean {', '.join(close)}?" if close else ""
    where = f" in module {spec.target}" if spec.target else ""
    raise UsageError(f"kernel function {spec.symbol!r}{where} not found in {source}{extra}",
                     hint="it may be inlined or renamed in this kernel version (look for .isra/.constprop "
                          "suffixes), or not probeable")


def _kallsyms_text_names(text: str, module: str | None) -> set[str]:
    """Function names from /proc/kallsyms (`addr type name [module]`), optionally of one module."""
    names = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[1] not in ("t", "T", "w", "W"):
            continue
        owner = fields[3].strip("[]") if len(fields) > 3 else None
        if module is None or owner == module:
            names.add(fields[2])
    return names


def _filter_function_names(text: str, module: str | None) -> set[str]:
    names = set()
    for line in text.splitlines():
        fields = line.split()
        if fields and (module is None or (len(fields) > 1 and fields[1].strip("[]") == module)):
            names.add(fields[0])
    return names


# ---------------------------------------------------------------------------------------------------
# USDT arguments: the note spells each one in the assembler's syntax (`-4@%edi`, `8@-8(%rbp)`, `4@$5`,
# `8@counter(%rip)`; arm64 `-4@w0`, `8@[sp, 16]`); the uprobe wants the kernel's fetcharg.

_X86_64_USDT_REGISTERS: dict[str, str] = {"rip": "ip"}
for _reg in ("ax", "bx", "cx", "dx"):
    _X86_64_USDT_REGISTERS.update({f"r{_reg}": _reg, f"e{_reg}": _reg, _reg: _reg, f"{_reg[0]}l": _reg})
for _reg in ("si", "di", "bp", "sp"):
    _X86_64_USDT_REGISTERS.update({f"r{_reg}": _reg, f"e{_reg}": _reg, _reg: _reg, f"{_reg}l": _reg})
for _n in range(8, 16):
    _X86_64_USDT_REGISTERS.update({f"r{_n}{suffix}": f"r{_n}" for suffix in ("", "d", "w", "b")})

_USDT_ARG = re.compile(r"(?P<sign>-?)(?P<size>\d+)@(?P<operand>.+)\Z")


def usdt_argument(spec: str, arch: str, symbol_fetch_offset=None) -> tuple[str, str]:
    """One USDT argument spec → (kernel fetcharg, type). `symbol_fetch_offset(name)` gives the `@+OFFSET`
    of a symbol for RIP-relative arguments. Raises UsageError for forms a uprobe cannot fetch."""
    match = _USDT_ARG.match(spec)
    if not match or int(match.group("size")) not in (1, 2, 4, 8):
        raise UsageError(f"USDT argument {spec!r} is not SIZE@OPERAND")
    bits = int(match.group("size")) * 8
    type_ = f"{'s' if match.group('sign') else 'u'}{bits}"
    operand = match.group("operand")
    arch_info = _arch(arch)
    if arch_info is not None and arch_info.name == "x86_64":
        return _usdt_x86_64(operand, spec, symbol_fetch_offset), type_
    if arch_info is not None and arch_info.name == "arm64":
        return _usdt_aarch64(operand, spec), type_
    raise UsageError(f"USDT arguments are not known for architecture {arch}")


def _usdt_x86_64(operand: str, spec: str, symbol_fetch_offset) -> str:
    def register(name: str) -> str:
        mapped = _X86_64_USDT_REGISTERS.get(name)
        if mapped is None:
            raise UsageError(f"USDT argument {spec!r} uses register %{name}, which a uprobe cannot fetch")
        return f"%{mapped}"

    if operand.startswith("%"):
        return register(operand[1:])
    if operand.startswith("$"):
        value = int(operand[1:], 0)
        return f"\\{value & 0xFFFFFFFFFFFFFFFF:#x}" if value < 0 else f"\\{value}"
    memory = re.fullmatch(r"(?P<disp>[^()]*)\((?P<regs>[^()]*)\)", operand)
    if not memory:
        raise UsageError(f"USDT argument {spec!r} has an operand rawtrace cannot translate")
    regs = [r.strip() for r in memory.group("regs").split(",")]
    if len(regs) != 1 or not regs[0].startswith("%"):
        raise UsageError(f"USDT argument {spec!r} uses indexed addressing, which uprobe fetchargs cannot express")
    disp = memory.group("disp").strip() or "0"
    if regs[0] == "%rip":
        symbol = re.fullmatch(r"(?P<name>[A-Za-z_.$][\w.$@]*)(?:(?P<sign>[+-])(?P<extra>\w+))?", disp)
        if symbol is None or symbol_fetch_offset is None:
            raise UsageError(f"USDT argument {spec!r} is RIP-relative without a symbol")
        delta = int(symbol.group("extra"), 0) if symbol.group("extra") else 0
        if symbol.group("sign") == "-":
            delta = -delta
        return f"@+{symbol_fetch_offset(symbol.group('name')) + delta:#x}"
    try:
        offset = int(disp, 0)
    except ValueError:
        raise UsageError(f"USDT argument {spec!r} has a displacement rawtrace cannot translate") from None
    return f"{'-' if offset < 0 else '+'}{abs(offset)}({register(regs[0][1:])})"


def _usdt_aarch64(operand: str, spec: str) -> str:
    def register(name: str) -> str:
        name = name.strip()
        if name == "sp":
            return "%sp"
        if re.fullmatch(r"[xw]([0-9]|[12][0-9]|30)", name):
            return f"%x{name[1:]}"
        raise UsageError(f"USDT argument {spec!r} uses register {name}, which a uprobe cannot fetch")

    if operand.startswith("["):
        inner = operand.strip("[]").split(",")
        if len(inner) > 2:
            raise UsageError(f"USDT argument {spec!r} uses indexed addressing, which uprobe fetchargs cannot express")
        try:
            offset = int(inner[1].strip().lstrip("#"), 0) if len(inner) == 2 else 0
        except ValueError:
            raise UsageError(f"USDT argument {spec!r} uses register-offset addressing, which uprobe fetchargs "
                             "cannot express") from None
        return f"{'-' if offset < 0 else '+'}{abs(offset)}({register(inner[0])})"
    if re.fullmatch(r"-?\d+", operand):
        value = int(operand)
        return f"\\{value & 0xFFFFFFFFFFFFFFFF:#x}" if value < 0 else f"\\{value}"
    return register(operand)


def _resolve_usdt(spec: ProbeSpec, host: Host) -> ResolvedProbe:
    from rawtrace import elf
    path = elf.resolve_target(spec.target or "", host, spec.arch)
    _reject_unsafe(path, "usdt target path")
    if any(ch.isspace() for ch in path):
        raise UsageError(f"{path}: the kernel's probe syntax cannot express a path with spaces")
    note = elf.find_usdt(path, spec.provider, spec.symbol, host, machine=spec.arch)
    # uprobe `@+OFFSET` is taken relative to the probed code's mapping: convert the symbol's address
    # with the probe site's own address-to-offset delta, which also works for .bss.
    delta = note.address - note.file_offset

    def symbol_fetch_offset(name: str) -> int:
        return elf.symbol_address(path, name, host, machine=spec.arch) - delta

    args = []
    for arg in spec.args:
        friendly = _FRIENDLY_ARG.match(arg.fetch)
        if not friendly:
            args.append(arg)
            continue
        number = int(friendly.group(1))
        if number > len(note.args):
            raise UsageError(f"USDT probe {note.provider}:{note.name} has {len(note.args)} argument"
                             f"{'s' if len(note.args) != 1 else ''}; {arg.given!r} asks for #{number}")
        fetch, natural_type = usdt_argument(note.args[number - 1], spec.arch, symbol_fetch_offset)
        type_ = arg.type or natural_type
        if type_ in _STRING_TYPES:
            fetch = f"+0({fetch})"
        args.append(ProbeArg(arg.name, fetch, type_, arg.given))
    place = f"{path}:{note.file_offset:#x}"
    if note.semaphore_offset is not None:
        place += f"({note.semaphore_offset:#x})"
    return ResolvedProbe(spec, place, path, f"{note.provider}:{note.name}", note.address, note.file_offset,
                         resolved_args=tuple(args), semaphore_offset=note.semaphore_offset)


# -- a kernel warning any traced program can set off ------------------------------------------------
# A uprobe hit copies what it fetches through one page per CPU (kernel/trace/trace_uprobe.c,
# prepare_uprobe_buffer). A string fetch may be up to 4096 bytes (MAX_STRING_SIZE) with its NUL, and the
# event's fixed part (at least the string's 4-byte data_loc) comes on top; when the sum passes the page
# the kernel WARNs (once per boot: taint W, a stack trace in dmesg) and cuts the record. So a traced
# program that passes a string just under 4096 bytes to a probed function (4084-4095 characters with
# `files`' 12 fixed bytes; an open() that fails with ENAMETOOLONG is enough) makes the kernel warn: seen
# here on 6.18.44 with `rawtrace files` and a 4086-character path (dsize 4099 in the WARN). Where
# kernel.panic_on_warn is set a warning is a panic: string-fetching uprobes are then refused.
TAINT_WARN = 1 << 9
UPROBE_STRING_HAZARD = ("a uprobe string fetch of a string just under 4096 bytes makes the kernel WARN "
                        "(trace_uprobe.c prepare_uprobe_buffer)")


def fetches_user_string(spec: ProbeSpec) -> bool:
    """Whether this is a uprobe (or USDT probe) with a string-typed fetch."""
    return spec.is_uprobe and any(arg.type in _STRING_TYPES for arg in spec.args)


def _sysctl_int(host: Host | None, name: str) -> int | None:
    text = (host or Host()).read_text(f"/proc/sys/kernel/{name}")
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def panic_on_warn(host: Host | None) -> bool:
    return bool(_sysctl_int(host, "panic_on_warn"))


def uprobe_string_refusal(host: Host | None) -> str | None:
    """Why string-fetching uprobes must not be created on this machine (None: they may)."""
    if panic_on_warn(host):
        return f"kernel.panic_on_warn is set, and {UPROBE_STRING_HAZARD}: a traced program could panic it"
    return None


def kernel_taint(host: Host | None) -> int | None:
    return _sysctl_int(host, "tainted")


def new_kernel_warning(before: int | None, host: Host | None) -> str | None:
    """One line when the kernel's W taint appeared since `before` (read while string uprobes were set)."""
    now = kernel_taint(host)
    if before is None or now is None or before & TAINT_WARN or not now & TAINT_WARN:
        return None
    return ("warning: the kernel logged a warning (taint W) during this trace; see dmesg. If it is in "
            f"prepare_uprobe_buffer: {UPROBE_STRING_HAZARD}; the record was cut")
