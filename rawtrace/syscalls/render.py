"""strace-style rendering of syscall arguments and return values, table-driven and per architecture."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rawtrace.memo import memo_lines, memo_namespace
from rawtrace.syscalls import constants as C
from rawtrace.syscalls.pairing import PAIR, RESUMED, UNFINISHED, SyscallRecord

# One argument as the decoder hands it over: (argument name, C type text, raw value). The raw value
# is the unsigned 64-bit slot from the sys_enter event; for `__data_loc char[] __X_val` fields the
# value is the string (bytes or str) the kernel copied from user space.
Arg = tuple[str, str, object]
# nr → (syscall name, [(argument name, C type), ...]) or None: supplied by the caller so that
# raw_syscalls events (which carry only `id` and `args[6]`) can be named and typed.
Resolver = Callable[[int], "tuple[str, Sequence[tuple[str, str]]] | None"]

DEFAULT_STRING_LIMIT = 32  # strace's default for -s


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Bounds and switches for rendering.

    string_limit: bytes of a user string shown before `...` (strace -s; default 32 like strace).
    raw: every argument as hex, no symbolic names (strace -X raw).
    """

    string_limit: int = DEFAULT_STRING_LIMIT
    raw: bool = False


# ---------------------------------------------------------------------------------------------
# Small value renderers. Each takes an already typed int.

def _hex(value: int) -> str:
    return "0" if value == 0 else f"{value:#x}"


def _pointer(value: int) -> str:
    return "NULL" if value == 0 else f"{value:#x}"


def _octal(value: int) -> str:
    # strace's "%#03o": 0 → 000, 7 → 007, 0o644 → 0644.
    return ("0" + format(value, "o")).rjust(3, "0")


# Per flag table: its entries in matching order, multi-bit names (O_TMPFILE, O_SYNC, STATX_BASIC_STATS)
# first so they claim their bits. Keyed by identity: tables are module constants or cached per arch.
_MATCH_ORDER: dict[int, tuple[C.FlagTable, tuple[tuple[int, int, str], ...]]] = {}


def _match_order(table: C.FlagTable) -> tuple[tuple[int, int, str], ...]:
    cached = _MATCH_ORDER.get(id(table))
    if cached is not None and cached[0] is table:
        return cached[1]
    entries = [(index, mask, name) for index, (mask, name) in enumerate(table) if mask]
    order = tuple([e for e in entries if e[1] & (e[1] - 1)] + [e for e in entries if not e[1] & (e[1] - 1)])
    _MATCH_ORDER[id(table)] = (table, order)
    return order


def render_flags(value: int, table: C.FlagTable, zero: str = "0") -> str:
    """Names of the set bits, OR-ed in table order (strace's); bits no name covers become a hex remainder."""
    if value == 0:
        return zero
    found = []
    rest = value
    for index, mask, name in _match_order(table):
        if rest & mask == mask:
            found.append((index, name))
            rest &= ~mask
            if not rest:
                break
    if len(found) > 1:
        found.sort()
    parts = [name for _, name in found]
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts)


def render_value(value: int, table: Mapping[int, str] | None, fallback: Callable[[int], str] = str) -> str:
    if table is not None:
        name = table.get(value)
        if name is not None:
            return name
    return fallback(value)


# Byte → C escape, the way strace prints buffers: printable ASCII as is, the usual backslash
# escapes, everything else (controls, DEL, non-ASCII bytes) as three-digit octal.
_BYTE_ESCAPES = []
for _b in range(256):
    if _b == 0x22:
        _BYTE_ESCAPES.append('\\"')
    elif _b == 0x5c:
        _BYTE_ESCAPES.append("\\\\")
    elif 0x20 <= _b < 0x7f:
        _BYTE_ESCAPES.append(chr(_b))
    else:
        _BYTE_ESCAPES.append({0x09: "\\t", 0x0a: "\\n", 0x0d: "\\r", 0x0b: "\\v", 0x0c: "\\f"}
                             .get(_b, f"\\{_b:03o}"))
del _b


def quote_string(data: bytes | str, limit: int = DEFAULT_STRING_LIMIT, truncated: bool = False) -> str:
    """A C string literal with escapes, cut at `limit` bytes; `...` after the quote if cut or truncated."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    if limit >= 0 and len(data) > limit:
        data = data[:limit]
        truncated = True
    text = '"' + "".join([_BYTE_ESCAPES[b] for b in data]) + '"'
    return text + "..." if truncated else text


def kernel_string(data: bytes | str, limit: int = DEFAULT_STRING_LIMIT) -> str:
    """Quote a string recorded by the kernel in a `__X_val` field (6.19+ syscall events).

    The kernel marks a string it cut short by ending it with "...", so that suffix becomes the
    truncation marker (a path that really ends in "..." is shown as truncated: the record cannot tell).
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    if data.endswith(b"..."):
        return quote_string(data[:-3], limit, truncated=True)
    return quote_string(data, limit)


# ---------------------------------------------------------------------------------------------
# C types → how to read the 64-bit slot. Syscall events store every argument as an unsigned long,
# whatever its declared type, so the value is truncated to sizeof(type) and sign-extended here.

def _truncate(value: int, bits: int, signed: bool) -> int:
    value &= (1 << bits) - 1
    if signed and value >> (bits - 1):
        value -= 1 << bits
    return value


_TYPE_WIDTHS: dict[str, tuple[int, bool]] = {}  # type → (bits or 0 for "a long", signed)
for _names, _spec in (
    (("int", "signed int", "signed", "pid_t", "key_serial_t", "clockid_t", "timer_t", "mqd_t", "rwf_t",
      "key_t", "__s32", "s32", "int32_t", "__kernel_pid_t", "enum", "compat_int_t"), (32, True)),
    (("unsigned int", "unsigned", "uid_t", "gid_t", "u32", "__u32", "uint32_t", "qid_t", "__kernel_uid32_t",
      "__kernel_gid32_t", "dev_t", "compat_uint_t"), (32, False)),
    (("long", "signed long", "long int", "ssize_t", "off_t", "__kernel_off_t", "time_t", "__kernel_time_t",
      "__kernel_old_time_t", "clock_t", "__kernel_ssize_t", "compat_long_t"), (0, True)),
    (("unsigned long", "unsigned long int", "size_t", "__kernel_size_t", "aio_context_t", "uintptr_t",
      "compat_ulong_t"), (0, False)),
    (("long long", "loff_t", "s64", "__s64", "int64_t", "__kernel_loff_t"), (64, True)),
    (("unsigned long long", "u64", "__u64", "uint64_t", "__aligned_u64"), (64, False)),
    (("short", "signed short", "__s16", "s16", "int16_t"), (16, True)),
    (("unsigned short", "u16", "__u16", "uint16_t", "old_uid_t", "old_gid_t"), (16, False)),
    (("char", "signed char", "__s8", "s8"), (8, True)),
    (("unsigned char", "u8", "__u8", "uint8_t", "bool", "_Bool"), (8, False)),
):
    for _n in _names:
        _TYPE_WIDTHS[_n] = _spec
del _names, _spec, _n

_MODE_TYPES = frozenset(("umode_t", "mode_t", "__kernel_mode_t"))
_QUALIFIERS = frozenset(("const", "volatile", "__user", "restrict", "__restrict"))


def _clean_type(ctype: str) -> str:
    return " ".join(w for w in ctype.replace("*", " * ").split() if w not in _QUALIFIERS)


def _is_pointer(ctype: str) -> bool:
    return "*" in ctype or "[" in ctype


# ---------------------------------------------------------------------------------------------
# Argument formatters: fn(formatter, raw slot value, {arg name: raw value}) -> text.
# Those marked `pure` look at their own value only.

Formatter = Callable[["SyscallFormatter", int, dict], str]


def _pure(fmt: Formatter) -> Formatter:
    """Marks a formatter that reads its own value only (no other argument of the call)."""
    fmt.pure = True
    return fmt


def _symbolic(fmt: Formatter) -> Formatter:
    """Marks a pure formatter whose text is made of table names, digits and `|<-` only: compiled
    renderers use it without a per-call dict or escaping."""
    fmt.symbolic = True
    return _pure(fmt)


@_pure
def _fmt_hex(f: SyscallFormatter, raw: int, call: dict) -> str:
    return _hex(raw & f._word_mask)


@_pure
def _fmt_pointer(f: SyscallFormatter, raw: int, call: dict) -> str:
    return _pointer(raw & f._word_mask)


@_pure
def _fmt_int(f: SyscallFormatter, raw: int, call: dict) -> str:
    return str(_truncate(raw, 32, True))


@_pure
def _fmt_uint(f: SyscallFormatter, raw: int, call: dict) -> str:
    return str(raw & 0xffffffff)


@_pure
def _fmt_long(f: SyscallFormatter, raw: int, call: dict) -> str:
    return str(_truncate(raw, f._word_bits, True))


@_pure
def _fmt_ulong(f: SyscallFormatter, raw: int, call: dict) -> str:
    return str(raw & f._word_mask)


@_pure
def _fmt_octal(f: SyscallFormatter, raw: int, call: dict) -> str:
    return _octal(raw & 0xffffffff)


def _width_formatter(bits: int, signed: bool) -> Formatter:
    def fmt(f: SyscallFormatter, raw: int, call: dict) -> str:
        return str(_truncate(raw, bits or f._word_bits, signed))
    fmt.width = (bits, signed)
    return _pure(fmt)


@_symbolic
def _fmt_dirfd(f: SyscallFormatter, raw: int, call: dict) -> str:
    fd = _truncate(raw, 32, True)
    return "AT_FDCWD" if fd == C.AT_FDCWD else str(fd)


@_symbolic
def _fmt_signal(f: SyscallFormatter, raw: int, call: dict) -> str:
    sig = _truncate(raw, 32, True)
    if sig == 0:
        return "0"
    name = C.signal_name(f.arch, sig)
    return name if name is not None else (str(sig) if f._known_arch else _hex(sig & 0xffffffff))


def _flags_formatter(table_of_arch: Callable[[str], C.FlagTable | None], bits: int = 32,
                     zero: str = "0") -> Formatter:
    def fmt(f: SyscallFormatter, raw: int, call: dict) -> str:
        value = raw & ((1 << bits) - 1 if bits else f._word_mask)
        table = table_of_arch(f.arch)
        return _hex(value) if table is None else render_flags(value, table, zero)
    return _symbolic(fmt)


def _static_flags(table: C.FlagTable, bits: int = 32, zero: str = "0") -> Formatter:
    return _flags_formatter(lambda arch: table, bits, zero)


def _value_formatter(table_of_arch: Callable[[str], Mapping[int, str] | None],
                     signed: bool = True) -> Formatter:
    def fmt(f: SyscallFormatter, raw: int, call: dict) -> str:
        value = _truncate(raw, 32, signed)
        table = table_of_arch(f.arch)
        if table is None:
            return _hex(value & 0xffffffff)
        return render_value(value, table)
    return _symbolic(fmt)


def _static_value(table: Mapping[int, str], signed: bool = True) -> Formatter:
    return _value_formatter(lambda arch: table, signed)


@_symbolic
def _fmt_open_flags(f: SyscallFormatter, raw: int, call: dict) -> str:
    value = raw & 0xffffffff
    table = C.open_flags(f.arch)
    if table is None:
        return _hex(value)
    access = C.ACCESS_MODES.get(value & C.O_ACCMODE, "O_ACCMODE")
    rest = value & ~C.O_ACCMODE
    return access if rest == 0 else access + "|" + render_flags(rest, table)


def _open_needs_mode(f: SyscallFormatter, call: dict) -> bool:
    """open/openat pass `mode` only with O_CREAT or O_TMPFILE (strace leaves it out otherwise)."""
    bits = C.open_mode_bits(f.arch)
    flags = call.get("flags")
    if bits is None or not isinstance(flags, int):
        return True
    return bool(flags & bits)


def _open_needs_mode_compiled(f: SyscallFormatter, index_of: Mapping[str, int]) -> str:
    """_open_needs_mode as a Python expression over `values` (for SyscallFormatter.fast_text)."""
    bits = C.open_mode_bits(f.arch)
    if bits is None or "flags" not in index_of:
        return "True"
    return f"values[{index_of['flags']}] & {bits:#x}"     # a flags value that is no int: the general way


_open_needs_mode.compiled = _open_needs_mode_compiled


def _fmt_access_mode(f: SyscallFormatter, raw: int, call: dict) -> str:
    return render_flags(raw & 0xffffffff, C.ACCESS_MODE_FLAGS, zero="F_OK")


@_symbolic
def _fmt_mknod_mode(f: SyscallFormatter, raw: int, call: dict) -> str:
    mode = raw & 0xffffffff
    kind = C.FILE_TYPES.get(mode & C.S_IFMT)
    perms = mode & ~C.S_IFMT
    if kind is None:
        return _octal(mode)
    return kind if perms == 0 else f"{kind}|{_octal(perms)}"


@_symbolic
def _fmt_mmap_flags(f: SyscallFormatter, raw: int, call: dict) -> str:
    value = raw & 0xffffffff
    table = C.mmap_flags(f.arch)
    if table is None:
        return _hex(value)
    parts = [C.MAP_TYPES.get(value & C.MAP_TYPE_MASK, _hex(value & C.MAP_TYPE_MASK))]
    rest = value & ~C.MAP_TYPE_MASK
    huge = (rest >> C.MAP_HUGE_SHIFT) & C.MAP_HUGE_MASK
    if huge and rest & 0x040000:  # the size field only means something with MAP_HUGETLB
        rest &= ~(C.MAP_HUGE_MASK << C.MAP_HUGE_SHIFT)
    else:
        huge = 0
    if rest:
        parts.append(render_flags(rest, table))
    if huge:
        parts.append(f"{huge}<<MAP_HUGE_SHIFT")
    return "|".join(parts)


@_symbolic
def _fmt_prot(f: SyscallFormatter, raw: int, call: dict) -> str:
    value = raw & 0xffffffff
    table = C.mmap_prot(f.arch)
    return _hex(value) if table is None else render_flags(value, table, zero="PROT_NONE")


@_symbolic
def _fmt_clone_flags(f: SyscallFormatter, raw: int, call: dict) -> str:
    value = raw & f._word_mask
    signo = value & C.CLONE_SIGNAL_MASK
    rest = value & ~C.CLONE_SIGNAL_MASK
    parts = [render_flags(rest, C.CLONE_FLAGS)] if rest else []
    if signo:
        name = C.signal_name(f.arch, signo)
        parts.append(name if name is not None else _hex(signo))
    return "|".join(parts) if parts else "0"


@_symbolic
def _fmt_socket_family(f: SyscallFormatter, raw: int, call: dict) -> str:
    return render_value(_truncate(raw, 32, True), C.ADDRESS_FAMILIES)


@_symbolic
def _fmt_socket_type(f: SyscallFormatter, raw: int, call: dict) -> str:
    value = raw & 0xffffffff
    types = C.socket_types(f.arch)
    flags = C.socket_type_flags(f.arch)
    if types is None or flags is None:
        return _hex(value)
    parts = [render_value(value & C.SOCKET_TYPE_MASK, types, _hex)]
    rest = value & ~C.SOCKET_TYPE_MASK
    if rest:
        parts.append(render_flags(rest, flags))
    return "|".join(parts)


@_symbolic
def _fmt_socket_flags(f: SyscallFormatter, raw: int, call: dict) -> str:
    table = C.socket_type_flags(f.arch)
    value = raw & 0xffffffff
    return _hex(value) if table is None else render_flags(value, table)


def _fmt_socket_protocol(f: SyscallFormatter, raw: int, call: dict) -> str:
    value = _truncate(raw, 32, True)
    family = call.get("family", call.get("domain"))
    if isinstance(family, int) and family & 0xffffffff in (2, 10):  # AF_INET, AF_INET6
        return render_value(value, C.IP_PROTOCOLS)
    return str(value)


@_symbolic
def _fmt_fcntl_cmd(f: SyscallFormatter, raw: int, call: dict) -> str:
    return _value_formatter(C.fcntl_commands)(f, raw, call)


def _fcntl_cmd_name(f: SyscallFormatter, call: dict) -> str | None:
    cmd = call.get("cmd")
    table = C.fcntl_commands(f.arch)
    if table is None or not isinstance(cmd, int):
        return None
    return table.get(cmd & 0xffffffff)


def _fmt_fcntl_arg(f: SyscallFormatter, raw: int, call: dict) -> str:
    cmd = _fcntl_cmd_name(f, call)
    if cmd == "F_SETFL":
        return _fmt_open_flags(f, raw, call)
    if cmd == "F_SETFD":
        return render_flags(raw & 0xffffffff, C.FD_FLAGS)
    if cmd == "F_SETSIG":
        return _fmt_signal(f, raw, call)
    if cmd in ("F_ADD_SEALS",):
        return render_flags(raw & 0xffffffff, C.SEAL_FLAGS)
    if cmd in ("F_DUPFD", "F_DUPFD_CLOEXEC", "F_SETOWN", "F_SETLEASE", "F_SETPIPE_SZ", "F_NOTIFY"):
        return _fmt_int(f, raw, call)
    return _pointer(raw & f._word_mask)


def _fcntl_has_arg(f: SyscallFormatter, call: dict) -> bool:
    return _fcntl_cmd_name(f, call) not in C.FCNTL_NO_ARG


@_symbolic
def _fmt_futex_op(f: SyscallFormatter, raw: int, call: dict) -> str:
    value = raw & 0xffffffff
    parts = [render_value(value & C.FUTEX_CMD_MASK, C.FUTEX_OPS, _hex)]
    rest = value & ~C.FUTEX_CMD_MASK
    if rest:
        parts.append(render_flags(rest, C.FUTEX_OP_FLAGS))
    return "|".join(parts)


@_symbolic
def _fmt_arch_prctl(f: SyscallFormatter, raw: int, call: dict) -> str:
    value = raw & 0xffffffff
    if f.arch in ("x86_64", "i386"):
        return render_value(value, C.X86_ARCH_PRCTL, _hex)
    return _hex(value)


@_symbolic
def _fmt_ioctl_request(f: SyscallFormatter, raw: int, call: dict) -> str:
    value = raw & 0xffffffff
    return render_value(value, C.ioctl_requests(f.arch), _hex)


@_symbolic
def _fmt_offset(f: SyscallFormatter, raw: int, call: dict) -> str:
    return _hex(raw & f._word_mask)


_at_flags = _static_flags(C.AT_FLAGS)
_cloexec = _flags_formatter(C.cloexec_nonblock_flags)
_MFD_FLAGS = ((1, "MFD_CLOEXEC"), (2, "MFD_ALLOW_SEALING"), (4, "MFD_HUGETLB"), (8, "MFD_NOEXEC_SEAL"),
              (0x10, "MFD_EXEC"))

# (syscall, argument name) → formatter. Names follow the SYSCALL_DEFINE argument names, which are
# exactly what the tracefs format files print.
_BY_SYSCALL_ARG: dict[tuple[str, str], Formatter] = {}


def _register(syscalls: str, arg: str, fmt: Formatter) -> None:
    for name in syscalls.split():
        _BY_SYSCALL_ARG[(name, arg)] = fmt


_register("open openat creat", "mode", _fmt_octal)
_register("open openat open_by_handle_at", "flags", _fmt_open_flags)
_register("access faccessat faccessat2", "mode", _fmt_access_mode)
_register("faccessat2", "flags", _static_flags(C.AT_FLAGS_ACCESS))
_register("unlinkat", "flag", _static_flags(C.AT_FLAGS_UNLINK))
_register("newfstatat fstatat64 fchownat name_to_handle_at", "flag", _at_flags)
_register("linkat utimensat utimensat_time64 statx execveat fchmodat2 faccessat2 open_tree mount_setattr",
          "flags", _at_flags)
_register("statx", "mask", _static_flags(C.STATX_MASK))
_register("execveat", "fd", _fmt_dirfd)
_register("mknod mknodat", "mode", _fmt_mknod_mode)
_register("umask", "mask", _fmt_octal)
_register("mmap mmap2 mmap_pgoff", "prot", _fmt_prot)
_register("mmap mmap2 mmap_pgoff", "flags", _fmt_mmap_flags)
_register("mmap mmap2 mmap_pgoff", "fd", _fmt_int)
_register("mmap mmap2 mmap_pgoff", "addr", _fmt_pointer)
_register("mmap mmap_pgoff", "off", _fmt_offset)
_register("mmap2 mmap_pgoff", "pgoff", _fmt_offset)
_register("mprotect pkey_mprotect", "prot", _fmt_prot)
_register("mprotect pkey_mprotect madvise msync mlock mlock2 munlock", "start", _fmt_pointer)
_register("munmap mremap", "addr", _fmt_pointer)
_register("mremap", "new_addr", _fmt_pointer)
_register("mremap", "flags", _static_flags(C.MREMAP_FLAGS))
_register("madvise", "behavior", _static_value(C.MADVISE))
_register("msync", "flags", _static_flags(C.MSYNC_FLAGS))
_register("brk", "brk", _fmt_pointer)
_register("clone", "clone_flags", _fmt_clone_flags)
_register("clone", "newsp", _fmt_pointer)
_register("clone", "tls", _fmt_pointer)
_register("unshare", "unshare_flags", _static_flags(C.CLONE_FLAGS))
_register("setns", "flags", _static_flags(C.CLONE_FLAGS))
_register("setns", "nstype", _static_flags(C.CLONE_FLAGS))
_register("rt_sigprocmask sigprocmask", "how", _static_value(C.SIGPROCMASK_HOW))
_register("shutdown", "how", _static_value(C.SHUTDOWN_HOW))
_register("socket socketpair", "family", _fmt_socket_family)
_register("socket socketpair", "type", _fmt_socket_type)
_register("socket socketpair", "protocol", _fmt_socket_protocol)
_register("accept4", "flags", _fmt_socket_flags)
_register("fcntl fcntl64", "cmd", _fmt_fcntl_cmd)
_register("fcntl fcntl64", "arg", _fmt_fcntl_arg)
_register("flock", "cmd", _static_flags(C.FLOCK_OPS))
_register("wait4 waitid", "options", _static_flags(C.WAIT_OPTIONS))
_register("waitid", "which", _static_value(C.WAITID_WHICH))
_register("futex futex_time64", "op", _fmt_futex_op)
_register("futex futex_time64", "uaddr", _fmt_pointer)
_register("futex futex_time64", "uaddr2", _fmt_pointer)
_register("clock_gettime clock_settime clock_getres clock_nanosleep clock_adjtime clock_gettime64 "
          "clock_settime64 clock_getres_time64 clock_nanosleep_time64 timer_create", "which_clock",
          _static_value(C.CLOCK_IDS))
_register("clock_nanosleep clock_nanosleep_time64", "flags", _static_flags(C.TIMER_FLAGS))
_register("timerfd_create", "clockid", _static_value(C.CLOCK_IDS))
_register("pipe2 dup3", "flags", _cloexec)
_register("eventfd2", "flags",
          _flags_formatter(lambda arch: C.fd_creation_flags(arch, "EFD", ((1, "EFD_SEMAPHORE"),))))
_register("signalfd4", "flags", _flags_formatter(lambda arch: C.fd_creation_flags(arch, "SFD")))
_register("timerfd_create", "flags", _flags_formatter(lambda arch: C.fd_creation_flags(arch, "TFD")))
_register("inotify_init1", "flags", _flags_formatter(lambda arch: C.fd_creation_flags(arch, "IN")))
_register("epoll_create1", "flags", _flags_formatter(lambda arch: C.fd_creation_flags(arch, "EPOLL")))
_register("memfd_create", "flags", _static_flags(_MFD_FLAGS))
_register("getrandom", "flags", _static_flags(C.GETRANDOM_FLAGS))
_register("prctl", "option", _static_value(C.PRCTL_OPTIONS))
_register("arch_prctl", "option", _fmt_arch_prctl)
_register("arch_prctl", "arg2", _fmt_pointer)
_register("prctl", "arg2", _fmt_hex)
_register("prctl", "arg3", _fmt_hex)
_register("prctl", "arg4", _fmt_hex)
_register("prctl", "arg5", _fmt_hex)
_register("ioctl", "cmd", _fmt_ioctl_request)
_register("ioctl", "arg", _fmt_pointer)
_register("lseek llseek _llseek", "whence", _static_value(C.SEEK_WHENCE))

# (syscall, argument name) → predicate(formatter, call) deciding whether strace would show the argument.
_SHOWN_IF: dict[tuple[str, str], Callable[[SyscallFormatter, dict], bool]] = {
    ("open", "mode"): _open_needs_mode,
    ("openat", "mode"): _open_needs_mode,
    ("fcntl", "arg"): _fcntl_has_arg,
    ("fcntl64", "arg"): _fcntl_has_arg,
}

# Argument names that mean the same thing in every syscall.
_DIRFD_NAMES = frozenset(("dfd", "olddfd", "newdfd", "dirfd", "from_dfd", "to_dfd", "mountdirfd"))
_FD_NAMES = frozenset(("fd", "fildes", "oldfd", "newfd", "fd_in", "fd_out", "epfd", "pidfd", "ufd", "fdin",
                       "fdout",
                       "out_fd", "in_fd", "wd", "tfd", "mqdes"))
_BY_ARG: dict[str, Formatter] = {
    "sig": _fmt_signal,
    "whence": _static_value(C.SEEK_WHENCE),
}


def _for_type(ctype: str) -> Formatter:
    t = _clean_type(ctype)
    if _is_pointer(t):
        return _fmt_pointer
    if t in _MODE_TYPES:
        return _fmt_octal
    if t.startswith("enum "):
        t = "enum"
    spec = _TYPE_WIDTHS.get(t)
    if spec is None:
        return _fmt_hex  # unknown typedef (may hide a pointer): hex is never misleading
    bits, signed = spec
    if (bits, signed) == (32, True):
        return _fmt_int
    if (bits, signed) == (32, False):
        return _fmt_uint
    if (bits, signed) == (0, True):
        return _fmt_long
    if (bits, signed) == (0, False):
        return _fmt_ulong
    return _width_formatter(bits, signed)


def _choose(syscall: str, arg: str, ctype: str) -> Formatter:
    fmt = _BY_SYSCALL_ARG.get((syscall, arg))
    if fmt is not None:
        return fmt
    if _is_pointer(_clean_type(ctype)):
        return _fmt_pointer
    if arg in _DIRFD_NAMES:
        return _fmt_dirfd
    if arg in _FD_NAMES:
        return _fmt_int  # strace prints descriptors as int even where the kernel says unsigned int
    fmt = _BY_ARG.get(arg)
    if fmt is not None:
        return fmt
    return _for_type(ctype)


def syscall_name_of_event(event: str) -> str:
    """'syscalls:sys_enter_openat' / 'sys_exit_openat' → 'openat'; other names are returned as given."""
    name = event.rpartition(":")[2]
    for prefix in ("sys_enter_", "sys_exit_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


# Syscalls whose successful return value is an address.
_POINTER_RETURNS = frozenset(("mmap", "mmap2", "mmap_pgoff", "mremap", "brk", "shmat", "sbrk"))

# A prepared call: per visible argument (index, name, formatter, shown-if predicate or None) and
# per kernel string field (index, the argument it belongs to).
_Plan = tuple[tuple[tuple[int, str, Formatter, "Callable | None"], ...], tuple[tuple[int, str], ...]]


class SyscallFormatter:
    """Renders syscall events of one architecture the way strace prints them.

    `arch` is passed explicitly (never the host's by default); an unknown arch renders numbers in hex.
    `resolver` names and types raw_syscalls events: nr → (name, [(arg name, C type), ...]) or None.
    """

    def __init__(self, arch: str, options: RenderOptions | None = None,
                 resolver: Resolver | None = None) -> None:
        canonical = C.normalize_arch(arch)
        self.arch = canonical or arch
        self._known_arch = canonical is not None
        self.options = options or RenderOptions()
        self.resolver = resolver
        self._word_bits = C.word_bits(self.arch)
        self._word_mask = (1 << self._word_bits) - 1
        self._plans: dict[tuple, _Plan] = {}
        # Formatter failures that fell back to hex (a bug to report, never a reason to stop).
        self.errors = 0
        self._resolved: dict[int, tuple[str, Sequence[tuple[str, str]]] | None] = {}
        self._signature_plans: dict[int, tuple] = {}
        self._fast_texts: dict[int, tuple] = {}
        self._memos: dict[Formatter, Callable[[int], str]] = {}

    # -- planning ----------------------------------------------------------------------------

    def _plan(self, name: str, args: Sequence[Arg]) -> _Plan:
        key = (name, tuple([(a[0], a[1]) for a in args]))
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        shown = []
        strings = []
        for index, (arg, ctype, _value) in enumerate(args):
            if arg.startswith("__"):
                # __syscall_nr is bookkeeping; __X_val (6.19+) is the string copied for argument X.
                if arg.endswith("_val") and "char" in ctype:
                    strings.append((index, arg[2:-4]))
                continue
            if self.options.raw:
                shown.append((index, arg, _fmt_hex, None))
            else:
                shown.append((index, arg, _choose(name, arg, ctype), _SHOWN_IF.get((name, arg))))
        plan = (tuple(shown), tuple(strings))
        self._plans[key] = plan
        return plan

    def _render_args(self, name: str, args: Sequence[Arg], strings: Mapping[str, object] | None,
                     all_args: bool) -> list[tuple[str, str]]:
        shown, string_fields = self._plan(name, args)
        values = [a[2] for a in args]
        return self._shown(shown, string_fields, values, {a[0]: a[2] for a in args}, strings, all_args)

    def _shown(self, shown, string_fields, values: Sequence, call: dict, strings: Mapping[str, object] | None,
               all_args: bool) -> list[tuple[str, str]]:
        """(argument, text) of the arguments strace would show (all of them with `all_args`): strings that
        arrived for the call first, then each argument's formatter, hex (or a quoted string) if it fails."""
        limit = self.options.string_limit
        texts: dict[str, str] = {}
        for index, target in string_fields:
            data = values[index]
            if isinstance(data, (bytes, bytearray, str)):
                texts[target] = kernel_string(bytes(data) if isinstance(data, bytearray) else data, limit)
        if strings:
            for target, data in strings.items():
                if isinstance(data, (bytes, bytearray, str)):
                    texts[target] = quote_string(bytes(data) if isinstance(data, bytearray) else data, limit)
        out = []
        for index, arg, fmt, shown_if in shown:
            if shown_if is not None and not all_args:
                try:
                    hidden = not shown_if(self, call)
                except Exception:  # noqa: BLE001 - when in doubt, show the argument
                    self.errors += 1
                    hidden = False
                if hidden:
                    continue
            text = texts.get(arg)
            if text is None:
                value = values[index]
                try:
                    text = fmt(self, value, call)
                except Exception:  # noqa: BLE001 - a formatter must never stop a trace
                    # Fall back to the raw slot (or a quoted string, if the decoder handed us text).
                    self.errors += 1
                    if isinstance(value, int):
                        text = _hex(value & self._word_mask)
                    elif isinstance(value, (bytes, bytearray, str)):
                        text = quote_string(bytes(value) if isinstance(value, bytearray) else value, limit)
                    else:
                        text = "?"
            out.append((arg, text))
        return out

    # -- structured calls (rawtrace.syscalls.calls.Syscall) --------------------------------------

    def _signature_plan(self, name: str, params: tuple) -> tuple:
        """(names, shown, string fields, simple) for a call signature; cached per params tuple (the joiner
        keeps one per syscall, so identity is enough and no key has to be built per call). `simple` lists
        (index, formatter) when every shown argument is always shown and formatted from its own value
        alone: then no per-call dict of the arguments is needed."""
        entry = self._signature_plans.get(id(params))
        if entry is not None and entry[0] is params and entry[1] == name:
            return entry[2]
        args = [(p[0], p[1], None) for p in params]
        shown, string_fields = self._plan(name, args)
        simple = None
        if not string_fields and all(shown_if is None and getattr(fmt, "pure", False)
                                     for _index, _arg, fmt, shown_if in shown):
            simple = tuple((index, fmt) for index, _arg, fmt, _shown_if in shown)
        plan = (tuple(p[0] for p in params), shown, string_fields, simple)
        if len(self._signature_plans) > 65536:
            self._signature_plans.clear()
        self._signature_plans[id(params)] = (params, name, plan)
        return plan

    def call_args_text(self, name: str, params: tuple, values: Sequence, strings: Mapping[str, object] | None,
                       all_args: bool = False) -> list[str]:
        """The rendered arguments of one call, from its signature's params and raw values."""
        names, shown, string_fields, simple = self._signature_plan(name, params)
        if simple is not None and not strings:
            try:
                return [fmt(self, values[index], None) for index, fmt in simple]
            except Exception:  # noqa: BLE001, S110 - a formatter failed: the careful way below says how
                pass
        return [text for _arg, text in
                self._shown(shown, string_fields, values, dict(zip(names, values)), strings, all_args)]

    def fast_text(self, name: str, params: tuple) -> Callable | None:
        """A compiled `(values, ret) -> text` for complete calls of this signature whose return is plain
        (0 <= ret < plain_return_limit, shown as `= ret`); None where that cannot be compiled (see
        _fast_args). Its text needs no escaping, in a terminal or in JSON, and equals call_text's general
        way. Cached per params tuple like _signature_plan."""
        entry = self._fast_texts.get(id(params))
        if entry is not None and entry[0] is params and entry[1] == name:
            return entry[2]
        fast = None
        parts = self._fast_args(name, params)
        if parts is not None:
            pieces, env = parts
            body = []
            for expr, condition in pieces:
                if condition is None:
                    body.append(("" if not body else ", ") + "{" + expr + "}")
                else:                     # only the last arguments are optional (checked in _fast_args)
                    body.append("{(', ' + str(" + expr + ")) if " + condition + " else ''}")
            env["NAME"] = name        # a name from a recording is data, never part of the source
            # Remembered per (values, ret) while that pays (rawtrace.memo).
            made = f'f"{{NAME}}({"".join(body)}) = {{ret}}"'
            env.update(memo_namespace())
            source = "\n".join(["def make():",
                                "    hits = misses = off = 0",
                                "    def text(values, ret):",
                                "        nonlocal hits, misses, off",
                                *memo_lines("found", "(values, ret)", made),
                                "        return found",
                                "    return text"]) + "\n"
            exec(compile(source, "<syscall text>", "exec"), env)  # noqa: S102 - built from our own pieces only
            fast = env["make"]()
        if len(self._fast_texts) > 65536:
            self._fast_texts.clear()
        self._fast_texts[id(params)] = (params, name, fast)
        return fast

    def _fast_args(self, name: str, params: tuple) -> tuple[list[tuple[str, str | None]], dict] | None:
        """Per shown argument a Python expression over `values[i]` giving its text, and the condition under
        which it is shown (None: always); with the names they use. None unless each argument is rendered
        from its own value by a formatter whose text is table names and digits only (_symbolic), optional
        arguments have a compiled condition and come last, no strings are expected for the call, and its
        plain return is shown as `= ret`."""
        shown, string_fields = self._plan(name, [(p[0], p[1], None) for p in params])
        if string_fields or not shown or name in _POINTER_RETURNS or name in ("fcntl", "fcntl64", "umask"):
            return None
        index_of = {p[0]: i for i, p in enumerate(params)}
        mask = self._word_mask
        env: dict[str, object] = {"_hex": _hex, "_pointer": _pointer, "_octal": _octal, "f": self}
        pieces: list[tuple[str, str | None]] = []
        for k, (index, _arg, fmt, shown_if) in enumerate(shown):
            value = f"values[{index}]"
            bits, signed = getattr(fmt, "width", (None, None))
            if fmt is _fmt_ulong or fmt is _fmt_uint or (bits is not None and not signed):
                width_mask = 0xffffffff if fmt is _fmt_uint else (1 << bits) - 1 if bits else mask
                expr = f"{value} & {width_mask:#x}"
            elif fmt is _fmt_int or fmt is _fmt_long or bits is not None:
                width = 32 if fmt is _fmt_int else self._word_bits if fmt is _fmt_long or not bits else bits
                # Sign extension of the low `width` bits: (x ^ top) - top.
                expr = f"(({value} & {(1 << width) - 1:#x}) ^ {1 << (width - 1):#x}) - {1 << (width - 1):#x}"
            elif fmt is _fmt_hex or fmt is _fmt_pointer:
                # _hex() and _pointer() inline (a call costs more than the formatting)
                word = f"({value} & {mask:#x})"
                expr = f"(f'{{{word}:#x}}' if {word} else {'0' if fmt is _fmt_hex else 'NULL'!r})"
            elif fmt is _fmt_octal:
                expr = f"_octal({value} & 0xffffffff)"
            elif getattr(fmt, "symbolic", False):
                # Flag and name tables: the same few values again and again, so remembered per value.
                # The remembered text by a dict lookup; the formatter (which remembers it) on a miss.
                env[f"F{k}"] = render = self._memoized(fmt)
                env[f"G{k}"] = render.known
                expr = f"(G{k}({value}) or F{k}({value}))"
            else:
                return None
            condition = None
            if shown_if is not None:
                compiled = getattr(shown_if, "compiled", None)
                condition = compiled(self, index_of) if compiled is not None else None
                if condition is None or not pieces:
                    return None
            elif pieces and pieces[-1][1] is not None:
                return None               # an always-shown argument after an optional one
            pieces.append((expr, condition))
        return pieces, env

    def _memoized(self, fmt: Formatter) -> Callable[[int], str]:
        """fmt(self, value, None) remembered per value (for _symbolic formatters: pure), up to 4096 values
        per formatter; one cache per formatter function, shared by the signatures using it."""
        found = self._memos.get(fmt)
        if found is None:
            cache: dict = {}
            get = cache.get

            def render(value: int) -> str:
                text = get(value)
                if text is None:
                    text = fmt(self, value, None)
                    if len(cache) < 4096 and value.__class__ is int:
                        cache[value] = text
                return text
            render.known = get
            found = self._memos[fmt] = render
        return found

    @property
    def plain_return_limit(self) -> int:
        """Returns from 0 up to this (exclusive) are shown as the number itself, for fast_text's calls."""
        return 1 << (self._word_bits - 1)

    def call_text(self, name: str, params: tuple, values: Sequence | None, ret: int | None, status: str,
                  strings: Mapping[str, object] | None = None) -> str:
        """The strace line body of a structured call: complete, unfinished, resumed or noreturn."""
        if status == "complete" and ret.__class__ is int and 0 <= ret < 1 << (self._word_bits - 1) \
                and not strings and values is not None:
            fast = self.fast_text(name, params)
            if fast is not None:
                try:
                    return fast(values, ret)
                except Exception:  # noqa: BLE001, S110 - a value of another type: the general way says how
                    pass
        if status == "resumed" or values is None:
            return self.format_resumed(name, ret)
        body = f"{name}({', '.join(self.call_args_text(name, params, values, strings))}"
        if status == "complete":
            if ret is not None and ret.__class__ is int and 0 <= ret < 4096 and name not in _POINTER_RETURNS \
                    and name not in ("fcntl", "fcntl64", "umask"):
                return f"{body}) = {ret}"
            return f"{body}) = {self.format_return(name, ret, [(p[0], p[1], v) for p, v in zip(params, values)])}"
        if status == "unfinished":
            return body + " <unfinished ...>"
        return body + ") = ?"

    # -- public API ----------------------------------------------------------------------------

    def format_call(self, name: str, args: Sequence[Arg], strings: Mapping[str, object] | None = None) -> str:
        """`openat(AT_FDCWD, 0x7ffd12345678, O_RDONLY|O_CLOEXEC)` from (name, C type, raw) triples."""
        rendered = self._render_args(name, args, strings, all_args=False)
        return f"{name}({', '.join([text for _, text in rendered])})"

    def symbolic_args(self, name: str, args: Sequence[Arg],
                      strings: Mapping[str, object] | None = None) -> dict[str, str]:
        """Every argument's rendering by name (including ones strace leaves out), for JSON output."""
        return dict(self._render_args(name, args, strings, all_args=True))

    def format_return(self, name: str, ret: int | None, args: Sequence[Arg] | None = None) -> str:
        """`3`, `0x7f0000000000` (mmap), `-1 ENOENT (No such file or directory)`, or `?` when unknown.

        With the call's `args`, returns that depend on them are decoded too (fcntl F_GETFL → flags)."""
        if ret is None or not isinstance(ret, int):
            return "?"
        ret = _truncate(ret, self._word_bits, True)
        if -C.MAX_ERRNO <= ret < 0:
            err = -ret
            internal = C.KERNEL_INTERNAL_ERRNO.get(err)
            if internal is not None:
                return f"? {internal[0]} ({internal[1]})"
            errname = C.errno_name(self.arch, err)
            if errname is None:
                return f"-1 (errno {err})"
            message = C.errno_message(errname)
            return f"-1 {errname} ({message})" if message else f"-1 {errname}"
        if name in _POINTER_RETURNS:
            return _hex(ret & self._word_mask)
        if name == "umask":  # the previous mask
            return _octal(ret)
        if args and name in ("fcntl", "fcntl64"):
            try:
                decoded = self._fcntl_return(ret, {a[0]: a[2] for a in args})
            except Exception:  # noqa: BLE001 - a formatter must never stop a trace
                self.errors += 1
                decoded = None
            if decoded is not None:
                return decoded
        return str(ret)

    def _fcntl_return(self, ret: int, call: dict) -> str | None:
        cmd = _fcntl_cmd_name(self, call)
        if cmd == "F_GETFL":
            return f"{_hex(ret)} (flags {_fmt_open_flags(self, ret, call)})"
        if cmd == "F_GETFD":
            return f"{_hex(ret)} (flags {render_flags(ret, C.FD_FLAGS)})" if ret else "0"
        if cmd == "F_GET_SEALS":
            return f"{_hex(ret)} (seals {render_flags(ret, C.SEAL_FLAGS)})" if ret else "0"
        return None

    def render(self, name: str, args: Sequence[Arg], ret: int | None,
               strings: Mapping[str, object] | None = None) -> str:
        """The whole strace line body: `openat(AT_FDCWD, 0x7ffd..., O_RDONLY) = 3`."""
        return f"{self.format_call(name, args, strings)} = {self.format_return(name, ret, args)}"

    def format_unfinished(self, name: str, args: Sequence[Arg],
                          strings: Mapping[str, object] | None = None) -> str:
        """An enter whose exit was not seen: `openat(AT_FDCWD, 0x..., O_RDONLY <unfinished ...>`."""
        call = self.format_call(name, args, strings)
        return call[:-1] + " <unfinished ...>"

    def format_resumed(self, name: str, ret: int | None) -> str:
        """An exit whose enter was not seen: `<... openat resumed> = 3`."""
        return f"<... {name} resumed> = {self.format_return(name, ret)}"

    def format_record(self, record: SyscallRecord, strings: Mapping[str, object] | None = None) -> str:
        """Text for a pairing record whose `args` are (name, C type, raw) triples (or None)."""
        name = record.name if record.name is not None else f"syscall_{record.nr}"
        args = record.args if record.args is not None else ()
        if record.kind == PAIR:
            return self.render(name, args, record.ret, strings)
        if record.kind == UNFINISHED:
            return self.format_unfinished(name, args, strings)
        if record.kind == RESUMED:
            return self.format_resumed(name, record.ret)
        return self.format_call(name, args, strings) + " = ?"

    # -- raw_syscalls --------------------------------------------------------------------------

    def resolve(self, nr: int) -> tuple[str, Sequence[tuple[str, str]]] | None:
        if nr in self._resolved:
            return self._resolved[nr]
        info = None
        if self.resolver is not None:
            try:
                info = self.resolver(nr)
            except Exception:  # noqa: BLE001 - the caller's resolver failing means "unknown"
                info = None
        self._resolved[nr] = info
        return info

    def raw_call_args(self, nr: int, values: Sequence[int]) -> tuple[str, list[Arg]]:
        """Name and (name, type, value) triples for a raw_syscalls:sys_enter event (id + args[6])."""
        info = self.resolve(nr)
        if info is None:
            return f"syscall_{nr}", [(f"arg{i}", "unsigned long", v) for i, v in enumerate(values)]
        name, params = info
        return name, [(p[0], p[1], v) for p, v in zip(params, values)]

    def format_raw_call(self, nr: int, values: Sequence[int]) -> str:
        name, args = self.raw_call_args(nr, values)
        if self.resolve(nr) is None:
            return f"{name}({', '.join([_hex(v & self._word_mask) for v in values])})"
        return self.format_call(name, args)

    def format_raw_return(self, nr: int, ret: int | None) -> str:
        info = self.resolve(nr)
        return self.format_return(info[0] if info else f"syscall_{nr}", ret)

    def render_raw(self, nr: int, values: Sequence[int], ret: int | None) -> str:
        return f"{self.format_raw_call(nr, values)} = {self.format_raw_return(nr, ret)}"


def errno_name(arch: str, number: int) -> str | None:
    """ENOENT for 2 on x86_64 (sign ignored), None when the number or the arch is not tabled."""
    return C.errno_name(arch, number)
