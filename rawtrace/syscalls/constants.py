"""Symbolic names for syscall argument values (flags, commands, errno, signals), per architecture."""

from __future__ import annotations

from functools import cache

from rawtrace.syscalls.arches import lookup_arch, word_size

# Architectures are always passed in explicitly (a 64-bit tracer may decode a 32-bit recording); their
# names, aliases (`uname -m`, trace-cmd's "uname" record, distro names) and word sizes are those of the
# one arch table, rawtrace.syscalls.arches.


# The arches whose argument values (flags, errno, signals) the tables below were checked for; others
# (sh, xtensa, ...) render numbers in hex.
_VALUE_ARCHES = frozenset({
    "x86_64", "i386", "arm64", "arm", "riscv64", "riscv32", "s390x", "powerpc64", "powerpc", "loongarch64",
    "mips64", "mips", "csky", "m68k", "alpha", "sparc64", "sparc", "parisc", "parisc64"})


@cache
def normalize_arch(arch: str) -> str | None:
    """The canonical rawtrace name of an architecture ("aarch64" → "arm64"), or None if unknown or if
    this module has no value tables for it."""
    if not arch:
        return None
    record = lookup_arch(arch)
    return record.name if record is not None and record.name in _VALUE_ARCHES else None


def word_bits(arch: str) -> int:
    """Width of a syscall argument slot (a C long) on `arch`; 64 when the arch is unknown."""
    return word_size(arch)


# ---------------------------------------------------------------------------------------------
# Families: arches that share a header's values. A table is only used for the arches listed here;
# any other arch gets plain numbers, never another arch's names.

# include/uapi/asm-generic/fcntl.h is used unchanged by x86, riscv, s390, loongarch, csky (no uapi
# fcntl.h of their own). arch/{arm,arm64,m68k}/include/uapi/asm/fcntl.h and the powerpc one override
# four bits; arch/mips/include/uapi/asm/fcntl.h overrides most. alpha, sparc, parisc are not tabled.
_OPEN_FAMILY = {
    "x86_64": "generic", "i386": "generic", "riscv64": "generic", "riscv32": "generic", "s390x": "generic",
    "loongarch64": "generic", "csky": "generic",
    "arm64": "arm", "arm": "arm", "m68k": "arm",
    "powerpc64": "powerpc", "powerpc": "powerpc",
    "mips64": "mips", "mips": "mips",
}

# include/uapi/asm-generic/errno{,-base}.h: every arch except alpha, mips, parisc, sparc
# (arch/powerpc/include/uapi/asm/errno.h only moves EDEADLOCK to 58).
_ERRNO_FAMILY = {
    "x86_64": "generic", "i386": "generic", "riscv64": "generic", "riscv32": "generic", "s390x": "generic",
    "loongarch64": "generic", "arm64": "generic", "arm": "generic", "csky": "generic", "m68k": "generic",
    "powerpc64": "powerpc", "powerpc": "powerpc", "mips64": "mips", "mips": "mips",
}

# include/uapi/asm-generic/signal.h numbering: x86, arm, arm64, riscv, s390, loongarch (its signal.h
# only changes stack sizes, then includes asm-generic), powerpc, csky.
_GENERIC_SIGNAL_ARCHES = frozenset(
    ("x86_64", "i386", "arm64", "arm", "riscv64", "riscv32", "s390x", "loongarch64", "powerpc64", "powerpc",
     "csky"))

# include/uapi/asm-generic/mman{,-common}.h: x86 (plus MAP_32BIT/MAP_ABOVE4G), arm64 (plus PROT_BTI/PROT_MTE),
# arm, riscv, s390 (its mman.h only includes asm-generic), loongarch, csky, m68k.
# powerpc, mips, alpha, sparc, parisc override MAP_* values.
_GENERIC_MMAN_ARCHES = frozenset(
    ("x86_64", "i386", "arm64", "arm", "riscv64", "riscv32", "s390x", "loongarch64", "csky", "m68k"))

# include/uapi/asm-generic/ioctls.h (TCGETS 0x5401 ...): powerpc, mips, alpha, sparc, parisc, m68k have
# their own ioctls.h.
_GENERIC_IOCTL_ARCHES = frozenset(
    ("x86_64", "i386", "arm64", "arm", "riscv64", "riscv32", "s390x", "loongarch64", "csky"))

# include/linux/net.h SOCK_STREAM=1, SOCK_DGRAM=2; mips swaps them (arch/mips/include/asm/socket.h).
# SOCK_NONBLOCK is O_NONBLOCK and SOCK_CLOEXEC is O_CLOEXEC, so the open-flags family decides the rest.
_GENERIC_SOCKET_ARCHES = frozenset(a for a, fam in _OPEN_FAMILY.items() if fam != "mips")

# Archs whose `fcntl` commands are the asm-generic ones (mips moves F_GETLK/F_SETOWN/F_GETOWN).
_GENERIC_FCNTL_ARCHES = frozenset(a for a, fam in _OPEN_FAMILY.items() if fam != "mips")

# Syscalls that never return to the caller when they succeed (no sys_exit event follows).
NO_RETURN_SYSCALLS = frozenset(("exit", "exit_group"))


def coverage() -> dict[str, tuple[str, ...]]:
    """Which architectures each table covers (everything else is shown as numbers)."""
    return {
        "open_flags": tuple(sorted(_OPEN_FAMILY)),
        "errno": tuple(sorted(_ERRNO_FAMILY)),
        "signals": tuple(sorted(_GENERIC_SIGNAL_ARCHES)),
        "mmap": tuple(sorted(_GENERIC_MMAN_ARCHES)),
        "ioctl": tuple(sorted(_GENERIC_IOCTL_ARCHES)),
        "socket": tuple(sorted(_GENERIC_SOCKET_ARCHES)),
        "fcntl": tuple(sorted(_GENERIC_FCNTL_ARCHES)),
        "arch_independent": ("AT_*", "CLONE_*", "SEEK_*", "access modes", "AF_*", "FUTEX_*", "CLOCK_*",
                             "W*", "LOCK_*", "MADV_*", "MREMAP_*", "SHUT_*", "GRND_*", "PR_*"),
    }


# ---------------------------------------------------------------------------------------------
# Table shapes. A FlagTable is an ordered tuple of (mask, name): a name is printed when all bits of
# its mask are set, and those bits are consumed (so multi-bit names such as O_TMPFILE come first).
# A ValueTable maps an exact value to a name.

FlagTable = tuple[tuple[int, str], ...]
ValueTable = dict[int, str]


def _flags(*pairs: tuple[int, str]) -> FlagTable:
    return tuple(pairs)


# --- open(2) flags --------------------------------------------------------------------------
# Access mode lives in the low two bits (O_ACCMODE) and is printed first, as a value.
ACCESS_MODES: ValueTable = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}
O_ACCMODE = 0o3

# include/uapi/asm-generic/fcntl.h (octal, as the header writes them).
_GENERIC_OPEN = {
    "O_CREAT": 0o100, "O_EXCL": 0o200, "O_NOCTTY": 0o400, "O_TRUNC": 0o1000, "O_APPEND": 0o2000,
    "O_NONBLOCK": 0o4000, "O_DSYNC": 0o10000, "FASYNC": 0o20000, "O_DIRECT": 0o40000,
    "O_LARGEFILE": 0o100000, "O_DIRECTORY": 0o200000, "O_NOFOLLOW": 0o400000, "O_NOATIME": 0o1000000,
    "O_CLOEXEC": 0o2000000, "__O_SYNC": 0o4000000, "O_PATH": 0o10000000, "__O_TMPFILE": 0o20000000,
}
# arch/arm64/include/uapi/asm/fcntl.h (arm has the same four, for AArch32 compat).
_ARM_OPEN = dict(_GENERIC_OPEN, O_DIRECTORY=0o40000, O_NOFOLLOW=0o100000, O_DIRECT=0o200000,
                 O_LARGEFILE=0o400000)
# arch/powerpc/include/uapi/asm/fcntl.h
_POWERPC_OPEN = dict(_GENERIC_OPEN, O_DIRECTORY=0o40000, O_NOFOLLOW=0o100000, O_LARGEFILE=0o200000,
                     O_DIRECT=0o400000)
# arch/mips/include/uapi/asm/fcntl.h (hex there); the rest falls through to asm-generic.
_MIPS_OPEN = dict(_GENERIC_OPEN, O_APPEND=0x0008, O_DSYNC=0x0010, O_NONBLOCK=0x0080, O_CREAT=0x0100,
                  O_TRUNC=0x0200, O_EXCL=0x0400, O_NOCTTY=0x0800, FASYNC=0x1000, O_LARGEFILE=0x2000,
                  __O_SYNC=0x4000, O_DIRECT=0x8000)
_OPEN_VALUES = {"generic": _GENERIC_OPEN, "arm": _ARM_OPEN, "powerpc": _POWERPC_OPEN, "mips": _MIPS_OPEN}


def open_flag_values(arch: str) -> dict[str, int] | None:
    """Name → value of the O_* bits (without the access mode) for `arch`, or None when not tabled."""
    family = _OPEN_FAMILY.get(normalize_arch(arch) or "")
    return dict(_OPEN_VALUES[family]) if family else None


@cache
def open_mode_bits(arch: str) -> int | None:
    """O_CREAT | __O_TMPFILE for `arch`: the flags with which open/openat read their mode argument."""
    v = open_flag_values(arch)
    return None if v is None else v["O_CREAT"] | v["__O_TMPFILE"]


@cache
def open_flags(arch: str) -> FlagTable | None:
    """The O_* bit table (access mode excluded) for `arch`, or None when the arch is not tabled."""
    v = open_flag_values(arch)
    if v is None:
        return None
    # O_TMPFILE = __O_TMPFILE | O_DIRECTORY and O_SYNC = __O_SYNC | O_DSYNC are multi-bit names: they
    # take their bits before the single-bit ones. The order is the printing order, strace's
    # (its xlat/open_mode_flags.in), so that output can be diffed against strace.
    pairs = [(v[n], n) for n in ("O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK")]
    pairs.append((v["__O_SYNC"] | v["O_DSYNC"], "O_SYNC"))
    pairs += [(v[n], n) for n in ("__O_SYNC", "O_DSYNC", "O_DIRECT", "O_LARGEFILE", "O_NOFOLLOW",
                                  "O_NOATIME", "O_CLOEXEC", "O_PATH")]
    pairs.append((v["__O_TMPFILE"] | v["O_DIRECTORY"], "O_TMPFILE"))
    pairs += [(v[n], n) for n in ("__O_TMPFILE", "O_DIRECTORY", "FASYNC")]
    return tuple(pairs)


@cache
def cloexec_nonblock_flags(arch: str) -> FlagTable | None:
    """O_CLOEXEC/O_NONBLOCK only: the flags of pipe2, dup3, eventfd2, inotify_init1, signalfd4..."""
    v = open_flag_values(arch)
    if v is None:
        return None
    return ((v["O_NONBLOCK"], "O_NONBLOCK"), (v["O_CLOEXEC"], "O_CLOEXEC"))


@cache
def fd_creation_flags(arch: str, prefix: str, extra: tuple[tuple[int, str], ...] = ()) -> FlagTable | None:
    """<prefix>_CLOEXEC / <prefix>_NONBLOCK (= O_CLOEXEC / O_NONBLOCK) plus `extra`: the flags of
    eventfd2 (EFD_), signalfd4 (SFD_), timerfd_create (TFD_), inotify_init1 (IN_), epoll_create1 (EPOLL_)."""
    v = open_flag_values(arch)
    if v is None:
        return None
    return extra + ((v["O_CLOEXEC"], f"{prefix}_CLOEXEC"), (v["O_NONBLOCK"], f"{prefix}_NONBLOCK"))


# --- *at() (include/uapi/linux/fcntl.h) --------------------------------------------------------
AT_FDCWD = -100
AT_FLAGS: FlagTable = _flags(
    (0x100, "AT_SYMLINK_NOFOLLOW"), (0x400, "AT_SYMLINK_FOLLOW"), (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"), (0x2000, "AT_STATX_FORCE_SYNC"), (0x4000, "AT_STATX_DONT_SYNC"),
    (0x8000, "AT_RECURSIVE"))
# 0x200 means AT_REMOVEDIR for unlinkat and AT_EACCESS for faccessat2 (same bit, different syscalls).
AT_FLAGS_UNLINK: FlagTable = ((0x200, "AT_REMOVEDIR"),) + AT_FLAGS
AT_FLAGS_ACCESS: FlagTable = ((0x200, "AT_EACCESS"),) + AT_FLAGS

# --- access(2) (include/linux/fs.h MAY_* mirror; unistd.h) --------------------------------------
ACCESS_MODE_FLAGS: FlagTable = _flags((4, "R_OK"), (2, "W_OK"), (1, "X_OK"))

# --- statx mask (include/uapi/linux/stat.h); STATX_BASIC_STATS is multi-bit, so it wins over its 11 bits.
STATX_MASK: FlagTable = _flags(
    (0x7ff, "STATX_BASIC_STATS"), (0x1, "STATX_TYPE"), (0x2, "STATX_MODE"), (0x4, "STATX_NLINK"),
    (0x8, "STATX_UID"), (0x10, "STATX_GID"), (0x20, "STATX_ATIME"), (0x40, "STATX_MTIME"),
    (0x80, "STATX_CTIME"), (0x100, "STATX_INO"), (0x200, "STATX_SIZE"), (0x400, "STATX_BLOCKS"),
    (0x800, "STATX_BTIME"), (0x1000, "STATX_MNT_ID"), (0x2000, "STATX_DIOALIGN"),
    (0x4000, "STATX_MNT_ID_UNIQUE"), (0x8000, "STATX_SUBVOL"), (0x10000, "STATX_WRITE_ATOMIC"),
    (0x20000, "STATX_DIO_READ_ALIGN"))

# --- lseek whence (include/uapi/linux/fs.h) ---------------------------------------------------
SEEK_WHENCE: ValueTable = {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"}

# --- file types for mknod (include/uapi/linux/stat.h) -----------------------------------------
S_IFMT = 0o170000
FILE_TYPES: ValueTable = {0o140000: "S_IFSOCK", 0o120000: "S_IFLNK", 0o100000: "S_IFREG",
                          0o060000: "S_IFBLK", 0o040000: "S_IFDIR", 0o020000: "S_IFCHR",
                          0o010000: "S_IFIFO"}

# --- fcntl(2) commands (include/uapi/asm-generic/fcntl.h, include/uapi/linux/fcntl.h) ----------
_F_LINUX = 1024
_GENERIC_FCNTL: ValueTable = {
    0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 5: "F_GETLK", 6: "F_SETLK",
    7: "F_SETLKW", 8: "F_SETOWN", 9: "F_GETOWN", 10: "F_SETSIG", 11: "F_GETSIG", 15: "F_SETOWN_EX",
    16: "F_GETOWN_EX", 17: "F_GETOWNER_UIDS", 36: "F_OFD_GETLK", 37: "F_OFD_SETLK", 38: "F_OFD_SETLKW",
    _F_LINUX + 0: "F_SETLEASE", _F_LINUX + 1: "F_GETLEASE", _F_LINUX + 2: "F_NOTIFY",
    _F_LINUX + 5: "F_CANCELLK", _F_LINUX + 6: "F_DUPFD_CLOEXEC", _F_LINUX + 7: "F_SETPIPE_SZ",
    _F_LINUX + 8: "F_GETPIPE_SZ", _F_LINUX + 9: "F_ADD_SEALS", _F_LINUX + 10: "F_GET_SEALS",
    _F_LINUX + 11: "F_GET_RW_HINT", _F_LINUX + 12: "F_SET_RW_HINT", _F_LINUX + 13: "F_GET_FILE_RW_HINT",
    _F_LINUX + 14: "F_SET_FILE_RW_HINT",
}
# 12..14 exist only where __BITS_PER_LONG == 32 (the fcntl64 struct flock64 commands).
_FCNTL_32BIT: ValueTable = {12: "F_GETLK64", 13: "F_SETLK64", 14: "F_SETLKW64"}
FD_FLAGS: FlagTable = _flags((1, "FD_CLOEXEC"))
SEAL_FLAGS: FlagTable = _flags((1, "F_SEAL_SEAL"), (2, "F_SEAL_SHRINK"), (4, "F_SEAL_GROW"),
                               (8, "F_SEAL_WRITE"), (0x10, "F_SEAL_FUTURE_WRITE"), (0x20, "F_SEAL_EXEC"))
# fcntl commands whose third argument is unused (strace leaves it out).
FCNTL_NO_ARG = frozenset(("F_GETFD", "F_GETFL", "F_GETOWN", "F_GETSIG", "F_GETLEASE", "F_GETPIPE_SZ",
                          "F_GET_SEALS"))


@cache
def fcntl_commands(arch: str) -> ValueTable | None:
    """fcntl cmd value → name for `arch`, or None when not tabled."""
    a = normalize_arch(arch) or ""
    if a not in _GENERIC_FCNTL_ARCHES:
        return None
    table = dict(_GENERIC_FCNTL)
    if word_bits(a) == 32:
        table.update(_FCNTL_32BIT)
    return table


# --- flock(2) (include/uapi/asm-generic/fcntl.h) ------------------------------------------------
FLOCK_OPS: FlagTable = _flags((1, "LOCK_SH"), (2, "LOCK_EX"), (4, "LOCK_NB"), (8, "LOCK_UN"))

# --- mmap and friends (include/uapi/asm-generic/mman-common.h, mman.h) --------------------------
_PROT_GENERIC = ((0x1, "PROT_READ"), (0x2, "PROT_WRITE"), (0x4, "PROT_EXEC"), (0x8, "PROT_SEM"),
                 (0x01000000, "PROT_GROWSDOWN"), (0x02000000, "PROT_GROWSUP"))
# arch/arm64/include/uapi/asm/mman.h
_PROT_ARM64 = _PROT_GENERIC + ((0x10, "PROT_BTI"), (0x20, "PROT_MTE"))
MAP_TYPE_MASK = 0x0f
MAP_TYPES: ValueTable = {0x01: "MAP_SHARED", 0x02: "MAP_PRIVATE", 0x03: "MAP_SHARED_VALIDATE",
                         0x08: "MAP_DROPPABLE"}
_MAP_GENERIC = ((0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x0100, "MAP_GROWSDOWN"),
                (0x0800, "MAP_DENYWRITE"), (0x1000, "MAP_EXECUTABLE"), (0x2000, "MAP_LOCKED"),
                (0x4000, "MAP_NORESERVE"), (0x008000, "MAP_POPULATE"), (0x010000, "MAP_NONBLOCK"),
                (0x020000, "MAP_STACK"), (0x040000, "MAP_HUGETLB"), (0x080000, "MAP_SYNC"),
                (0x100000, "MAP_FIXED_NOREPLACE"), (0x4000000, "MAP_UNINITIALIZED"))
# arch/x86/include/uapi/asm/mman.h
_MAP_X86 = _MAP_GENERIC + ((0x40, "MAP_32BIT"), (0x80, "MAP_ABOVE4G"))
# include/uapi/asm-generic/hugetlb_encode.h: the huge page size (log2) sits in bits 26..31.
MAP_HUGE_SHIFT = 26
MAP_HUGE_MASK = 0x3f


def mmap_prot(arch: str) -> FlagTable | None:
    a = normalize_arch(arch) or ""
    if a not in _GENERIC_MMAN_ARCHES:
        return None
    return _PROT_ARM64 if a == "arm64" else _PROT_GENERIC


def mmap_flags(arch: str) -> FlagTable | None:
    a = normalize_arch(arch) or ""
    if a not in _GENERIC_MMAN_ARCHES:
        return None
    return _MAP_X86 if a in ("x86_64", "i386") else _MAP_GENERIC


MREMAP_FLAGS: FlagTable = _flags((1, "MREMAP_MAYMOVE"), (2, "MREMAP_FIXED"), (4, "MREMAP_DONTUNMAP"))
MSYNC_FLAGS: FlagTable = _flags((1, "MS_ASYNC"), (2, "MS_INVALIDATE"), (4, "MS_SYNC"))
# include/uapi/asm-generic/mman-common.h (alpha/mips/parisc differ for the first few; not tabled there).
MADVISE: ValueTable = {
    0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED", 4: "MADV_DONTNEED",
    8: "MADV_FREE", 9: "MADV_REMOVE", 10: "MADV_DONTFORK", 11: "MADV_DOFORK", 12: "MADV_MERGEABLE",
    13: "MADV_UNMERGEABLE", 14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE", 16: "MADV_DONTDUMP",
    17: "MADV_DODUMP", 18: "MADV_WIPEONFORK", 19: "MADV_KEEPONFORK", 20: "MADV_COLD", 21: "MADV_PAGEOUT",
    22: "MADV_POPULATE_READ", 23: "MADV_POPULATE_WRITE", 24: "MADV_DONTNEED_LOCKED", 25: "MADV_COLLAPSE",
    100: "MADV_HWPOISON", 101: "MADV_SOFT_OFFLINE",
}

# --- clone(2) (include/uapi/linux/sched.h); the low byte is the exit signal -----------------------
CLONE_FLAGS: FlagTable = _flags(
    (0x00000080, "CLONE_NEWTIME"), (0x00000100, "CLONE_VM"), (0x00000200, "CLONE_FS"),
    (0x00000400, "CLONE_FILES"), (0x00000800, "CLONE_SIGHAND"), (0x00001000, "CLONE_PIDFD"),
    (0x00002000, "CLONE_PTRACE"), (0x00004000, "CLONE_VFORK"), (0x00008000, "CLONE_PARENT"),
    (0x00010000, "CLONE_THREAD"), (0x00020000, "CLONE_NEWNS"), (0x00040000, "CLONE_SYSVSEM"),
    (0x00080000, "CLONE_SETTLS"), (0x00100000, "CLONE_PARENT_SETTID"), (0x00200000, "CLONE_CHILD_CLEARTID"),
    (0x00400000, "CLONE_DETACHED"), (0x00800000, "CLONE_UNTRACED"), (0x01000000, "CLONE_CHILD_SETTID"),
    (0x02000000, "CLONE_NEWCGROUP"), (0x04000000, "CLONE_NEWUTS"), (0x08000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"), (0x20000000, "CLONE_NEWPID"), (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"), (0x100000000, "CLONE_CLEAR_SIGHAND"), (0x200000000, "CLONE_INTO_CGROUP"))
CLONE_SIGNAL_MASK = 0xff

# --- signals (include/uapi/asm-generic/signal.h) ----------------------------------------------
_GENERIC_SIGNALS: ValueTable = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
    8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM",
    15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP",
    21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM",
    27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}
SIGRTMIN = 32
SIGRTMAX = 64  # _NSIG


def signal_name(arch: str, signo: int) -> str | None:
    """SIGTERM for 15 on x86_64; SIGRTMIN / SIGRT_<n> for real-time signals; None if unknown."""
    if normalize_arch(arch) not in _GENERIC_SIGNAL_ARCHES:
        return None
    name = _GENERIC_SIGNALS.get(signo)
    if name is None and SIGRTMIN <= signo <= SIGRTMAX:
        name = "SIGRTMIN" if signo == SIGRTMIN else f"SIGRT_{signo - SIGRTMIN}"
    return name


# rt_sigprocmask how (include/uapi/asm-generic/signal-defs.h; mips/sparc/alpha differ: not tabled).
SIGPROCMASK_HOW: ValueTable = {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"}

# --- sockets (include/linux/socket.h, include/linux/net.h) ----------------------------------------
ADDRESS_FAMILIES: ValueTable = {
    0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 3: "AF_AX25", 4: "AF_IPX", 5: "AF_APPLETALK",
    6: "AF_NETROM", 7: "AF_BRIDGE", 8: "AF_ATMPVC", 9: "AF_X25", 10: "AF_INET6", 11: "AF_ROSE",
    12: "AF_DECnet", 13: "AF_NETBEUI", 14: "AF_SECURITY", 15: "AF_KEY", 16: "AF_NETLINK", 17: "AF_PACKET",
    18: "AF_ASH", 19: "AF_ECONET", 20: "AF_ATMSVC", 21: "AF_RDS", 22: "AF_SNA", 23: "AF_IRDA",
    24: "AF_PPPOX", 25: "AF_WANPIPE", 26: "AF_LLC", 27: "AF_IB", 28: "AF_MPLS", 29: "AF_CAN", 30: "AF_TIPC",
    31: "AF_BLUETOOTH", 32: "AF_IUCV", 33: "AF_RXRPC", 34: "AF_ISDN", 35: "AF_PHONET", 36: "AF_IEEE802154",
    37: "AF_CAIF", 38: "AF_ALG", 39: "AF_NFC", 40: "AF_VSOCK", 41: "AF_KCM", 42: "AF_QIPCRTR", 43: "AF_SMC",
    44: "AF_XDP", 45: "AF_MCTP",
}
SOCKET_TYPES: ValueTable = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM",
                            5: "SOCK_SEQPACKET", 6: "SOCK_DCCP", 10: "SOCK_PACKET"}
SOCKET_TYPE_MASK = 0xf
# include/uapi/linux/in.h, for AF_INET/AF_INET6 sockets.
IP_PROTOCOLS: ValueTable = {0: "IPPROTO_IP", 1: "IPPROTO_ICMP", 6: "IPPROTO_TCP", 17: "IPPROTO_UDP",
                            58: "IPPROTO_ICMPV6", 132: "IPPROTO_SCTP", 136: "IPPROTO_UDPLITE",
                            255: "IPPROTO_RAW", 262: "IPPROTO_MPTCP"}
SHUTDOWN_HOW: ValueTable = {0: "SHUT_RD", 1: "SHUT_WR", 2: "SHUT_RDWR"}


@cache
def socket_type_flags(arch: str) -> FlagTable | None:
    """SOCK_NONBLOCK / SOCK_CLOEXEC (equal to O_NONBLOCK / O_CLOEXEC of the arch)."""
    a = normalize_arch(arch) or ""
    if a not in _GENERIC_SOCKET_ARCHES:
        return None
    v = _OPEN_VALUES[_OPEN_FAMILY[a]]
    return ((v["O_CLOEXEC"], "SOCK_CLOEXEC"), (v["O_NONBLOCK"], "SOCK_NONBLOCK"))  # strace's order


def socket_types(arch: str) -> ValueTable | None:
    return SOCKET_TYPES if (normalize_arch(arch) or "") in _GENERIC_SOCKET_ARCHES else None


# --- ioctl: a few tty/file requests (include/uapi/asm-generic/ioctls.h) -------------------------
_GENERIC_IOCTLS: ValueTable = {
    0x5401: "TCGETS", 0x5402: "TCSETS", 0x5403: "TCSETSW", 0x5404: "TCSETSF", 0x540E: "TIOCSCTTY",
    0x540F: "TIOCGPGRP", 0x5410: "TIOCSPGRP", 0x5413: "TIOCGWINSZ", 0x5414: "TIOCSWINSZ",
    0x541B: "FIONREAD", 0x5421: "FIONBIO", 0x5450: "FIONCLEX", 0x5451: "FIOCLEX", 0x5452: "FIOASYNC",
}


def ioctl_requests(arch: str) -> ValueTable | None:
    return _GENERIC_IOCTLS if (normalize_arch(arch) or "") in _GENERIC_IOCTL_ARCHES else None


# --- futex (include/uapi/linux/futex.h) -----------------------------------------------------------
FUTEX_OPS: ValueTable = {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE",
                         4: "FUTEX_CMP_REQUEUE", 5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI",
                         7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI", 9: "FUTEX_WAIT_BITSET",
                         10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI", 12: "FUTEX_CMP_REQUEUE_PI",
                         13: "FUTEX_LOCK_PI2"}
FUTEX_CMD_MASK = 0x7f
FUTEX_OP_FLAGS: FlagTable = _flags((128, "FUTEX_PRIVATE_FLAG"), (256, "FUTEX_CLOCK_REALTIME"))

# --- clocks (include/uapi/linux/time.h) -----------------------------------------------------------
CLOCK_IDS: ValueTable = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID",
                         3: "CLOCK_THREAD_CPUTIME_ID", 4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE",
                         6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME", 8: "CLOCK_REALTIME_ALARM",
                         9: "CLOCK_BOOTTIME_ALARM", 11: "CLOCK_TAI"}
TIMER_FLAGS: FlagTable = _flags((1, "TIMER_ABSTIME"))

# --- wait4/waitid (include/uapi/linux/wait.h) -----------------------------------------------------
WAIT_OPTIONS: FlagTable = _flags((1, "WNOHANG"), (2, "WUNTRACED"), (4, "WEXITED"), (8, "WCONTINUED"),
                                 (0x01000000, "WNOWAIT"), (0x20000000, "__WNOTHREAD"),
                                 (0x40000000, "__WALL"), (0x80000000, "__WCLONE"))
WAITID_WHICH: ValueTable = {0: "P_ALL", 1: "P_PID", 2: "P_PGID", 3: "P_PIDFD"}

# --- getrandom (include/uapi/linux/random.h) -----------------------------------------------------
GETRANDOM_FLAGS: FlagTable = _flags((1, "GRND_NONBLOCK"), (2, "GRND_RANDOM"), (4, "GRND_INSECURE"))

# --- prctl options, the common ones (include/uapi/linux/prctl.h) --------------------------------
PRCTL_OPTIONS: ValueTable = {1: "PR_SET_PDEATHSIG", 2: "PR_GET_PDEATHSIG", 3: "PR_GET_DUMPABLE",
                             4: "PR_SET_DUMPABLE", 8: "PR_SET_KEEPCAPS", 15: "PR_SET_NAME",
                             16: "PR_GET_NAME", 22: "PR_SET_SECCOMP", 23: "PR_CAPBSET_READ",
                             36: "PR_SET_CHILD_SUBREAPER", 38: "PR_SET_NO_NEW_PRIVS",
                             39: "PR_GET_NO_NEW_PRIVS", 0x53564d41: "PR_SET_VMA"}

# --- arch_prctl (arch/x86/include/uapi/asm/prctl.h) -----------------------------------------------
X86_ARCH_PRCTL: ValueTable = {0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS",
                              0x1004: "ARCH_GET_GS", 0x1011: "ARCH_GET_CPUID", 0x1012: "ARCH_SET_CPUID"}

# ---------------------------------------------------------------------------------------------
# errno. Names and numbers from the uapi headers; the messages are glibc's strerror() texts,
# which are what strace prints. A name's message does not depend on the arch, its number does.

# include/uapi/asm-generic/errno-base.h (1..34) and include/uapi/asm-generic/errno.h (35..133).
_GENERIC_ERRNO_TEXT = """\
EPERM 1 Operation not permitted
ENOENT 2 No such file or directory
ESRCH 3 No such process
EINTR 4 Interrupted system call
EIO 5 Input/output error
ENXIO 6 No such device or address
E2BIG 7 Argument list too long
ENOEXEC 8 Exec format error
EBADF 9 Bad file descriptor
ECHILD 10 No child processes
EAGAIN 11 Resource temporarily unavailable
ENOMEM 12 Cannot allocate memory
EACCES 13 Permission denied
EFAULT 14 Bad address
ENOTBLK 15 Block device required
EBUSY 16 Device or resource busy
EEXIST 17 File exists
EXDEV 18 Invalid cross-device link
ENODEV 19 No such device
ENOTDIR 20 Not a directory
EISDIR 21 Is a directory
EINVAL 22 Invalid argument
ENFILE 23 Too many open files in system
EMFILE 24 Too many open files
ENOTTY 25 Inappropriate ioctl for device
ETXTBSY 26 Text file busy
EFBIG 27 File too large
ENOSPC 28 No space left on device
ESPIPE 29 Illegal seek
EROFS 30 Read-only file system
EMLINK 31 Too many links
EPIPE 32 Broken pipe
EDOM 33 Numerical argument out of domain
ERANGE 34 Numerical result out of range
EDEADLK 35 Resource deadlock avoided
ENAMETOOLONG 36 File name too long
ENOLCK 37 No locks available
ENOSYS 38 Function not implemented
ENOTEMPTY 39 Directory not empty
ELOOP 40 Too many levels of symbolic links
ENOMSG 42 No message of desired type
EIDRM 43 Identifier removed
ECHRNG 44 Channel number out of range
EL2NSYNC 45 Level 2 not synchronized
EL3HLT 46 Level 3 halted
EL3RST 47 Level 3 reset
ELNRNG 48 Link number out of range
EUNATCH 49 Protocol driver not attached
ENOCSI 50 No CSI structure available
EL2HLT 51 Level 2 halted
EBADE 52 Invalid exchange
EBADR 53 Invalid request descriptor
EXFULL 54 Exchange full
ENOANO 55 No anode
EBADRQC 56 Invalid request code
EBADSLT 57 Invalid slot
EBFONT 59 Bad font file format
ENOSTR 60 Device not a stream
ENODATA 61 No data available
ETIME 62 Timer expired
ENOSR 63 Out of streams resources
ENONET 64 Machine is not on the network
ENOPKG 65 Package not installed
EREMOTE 66 Object is remote
ENOLINK 67 Link has been severed
EADV 68 Advertise error
ESRMNT 69 Srmount error
ECOMM 70 Communication error on send
EPROTO 71 Protocol error
EMULTIHOP 72 Multihop attempted
EDOTDOT 73 RFS specific error
EBADMSG 74 Bad message
EOVERFLOW 75 Value too large for defined data type
ENOTUNIQ 76 Name not unique on network
EBADFD 77 File descriptor in bad state
EREMCHG 78 Remote address changed
ELIBACC 79 Can not access a needed shared library
ELIBBAD 80 Accessing a corrupted shared library
ELIBSCN 81 .lib section in a.out corrupted
ELIBMAX 82 Attempting to link in too many shared libraries
ELIBEXEC 83 Cannot exec a shared library directly
EILSEQ 84 Invalid or incomplete multibyte or wide character
ERESTART 85 Interrupted system call should be restarted
ESTRPIPE 86 Streams pipe error
EUSERS 87 Too many users
ENOTSOCK 88 Socket operation on non-socket
EDESTADDRREQ 89 Destination address required
EMSGSIZE 90 Message too long
EPROTOTYPE 91 Protocol wrong type for socket
ENOPROTOOPT 92 Protocol not available
EPROTONOSUPPORT 93 Protocol not supported
ESOCKTNOSUPPORT 94 Socket type not supported
EOPNOTSUPP 95 Operation not supported
EPFNOSUPPORT 96 Protocol family not supported
EAFNOSUPPORT 97 Address family not supported by protocol
EADDRINUSE 98 Address already in use
EADDRNOTAVAIL 99 Cannot assign requested address
ENETDOWN 100 Network is down
ENETUNREACH 101 Network is unreachable
ENETRESET 102 Network dropped connection on reset
ECONNABORTED 103 Software caused connection abort
ECONNRESET 104 Connection reset by peer
ENOBUFS 105 No buffer space available
EISCONN 106 Transport endpoint is already connected
ENOTCONN 107 Transport endpoint is not connected
ESHUTDOWN 108 Cannot send after transport endpoint shutdown
ETOOMANYREFS 109 Too many references: cannot splice
ETIMEDOUT 110 Connection timed out
ECONNREFUSED 111 Connection refused
EHOSTDOWN 112 Host is down
EHOSTUNREACH 113 No route to host
EALREADY 114 Operation already in progress
EINPROGRESS 115 Operation now in progress
ESTALE 116 Stale file handle
EUCLEAN 117 Structure needs cleaning
ENOTNAM 118 Not a XENIX named type file
ENAVAIL 119 No XENIX semaphores available
EISNAM 120 Is a named type file
EREMOTEIO 121 Remote I/O error
EDQUOT 122 Disk quota exceeded
ENOMEDIUM 123 No medium found
EMEDIUMTYPE 124 Wrong medium type
ECANCELED 125 Operation canceled
ENOKEY 126 Required key not available
EKEYEXPIRED 127 Key has expired
EKEYREVOKED 128 Key has been revoked
EKEYREJECTED 129 Key was rejected by service
EOWNERDEAD 130 Owner died
ENOTRECOVERABLE 131 State not recoverable
ERFKILL 132 Operation not possible due to RF-kill
EHWPOISON 133 Memory page has hardware error
"""

# arch/mips/include/uapi/asm/errno.h: 1..34 as errno-base.h, everything above renumbered.
_MIPS_ERRNO_TEXT = """\
ENOMSG 35 EIDRM 36 ECHRNG 37 EL2NSYNC 38 EL3HLT 39 EL3RST 40 ELNRNG 41 EUNATCH 42 ENOCSI 43 EL2HLT 44
EDEADLK 45 ENOLCK 46 EBADE 50 EBADR 51 EXFULL 52 ENOANO 53 EBADRQC 54 EBADSLT 55 EDEADLOCK 56 EBFONT 59
ENOSTR 60 ENODATA 61 ETIME 62 ENOSR 63 ENONET 64 ENOPKG 65 EREMOTE 66 ENOLINK 67 EADV 68 ESRMNT 69
ECOMM 70 EPROTO 71 EDOTDOT 73 EMULTIHOP 74 EBADMSG 77 ENAMETOOLONG 78 EOVERFLOW 79 ENOTUNIQ 80
EBADFD 81 EREMCHG 82 ELIBACC 83 ELIBBAD 84 ELIBSCN 85 ELIBMAX 86 ELIBEXEC 87 EILSEQ 88 ENOSYS 89
ELOOP 90 ERESTART 91 ESTRPIPE 92 ENOTEMPTY 93 EUSERS 94 ENOTSOCK 95 EDESTADDRREQ 96 EMSGSIZE 97
EPROTOTYPE 98 ENOPROTOOPT 99 EPROTONOSUPPORT 120 ESOCKTNOSUPPORT 121 EOPNOTSUPP 122 EPFNOSUPPORT 123
EAFNOSUPPORT 124 EADDRINUSE 125 EADDRNOTAVAIL 126 ENETDOWN 127 ENETUNREACH 128 ENETRESET 129
ECONNABORTED 130 ECONNRESET 131 ENOBUFS 132 EISCONN 133 ENOTCONN 134 EUCLEAN 135 ENOTNAM 137
ENAVAIL 138 EISNAM 139 EREMOTEIO 140 EINIT 141 EREMDEV 142 ESHUTDOWN 143 ETOOMANYREFS 144
ETIMEDOUT 145 ECONNREFUSED 146 EHOSTDOWN 147 EHOSTUNREACH 148 EALREADY 149 EINPROGRESS 150 ESTALE 151
ECANCELED 158 ENOMEDIUM 159 EMEDIUMTYPE 160 ENOKEY 161 EKEYEXPIRED 162 EKEYREVOKED 163
EKEYREJECTED 164 EOWNERDEAD 165 ENOTRECOVERABLE 166 ERFKILL 167 EHWPOISON 168 EDQUOT 1133
"""

# Kernel-internal codes that a tracepoint can see (include/linux/errno.h) but user space never does;
# strace shows them with "?" instead of -1.
KERNEL_INTERNAL_ERRNO: dict[int, tuple[str, str]] = {
    512: ("ERESTARTSYS", "To be restarted if SA_RESTART is set"),
    513: ("ERESTARTNOINTR", "To be restarted"),
    514: ("ERESTARTNOHAND", "To be restarted if no handler"),
    515: ("ENOIOCTLCMD", "No ioctl command"),
    516: ("ERESTART_RESTARTBLOCK", "Interrupted by signal"),
    517: ("EPROBE_DEFER", "Driver requests probe retry"),
    518: ("EOPENSTALE", "Open found a stale dentry"),
    519: ("ENOPARAM", "Parameter not supported"),
    521: ("EBADHANDLE", "Illegal NFS file handle"),
    522: ("ENOTSYNC", "Update synchronization mismatch"),
    523: ("EBADCOOKIE", "Cookie is stale"),
    524: ("ENOTSUPP", "Operation is not supported"),
    525: ("ETOOSMALL", "Buffer or request is too small"),
    526: ("ESERVERFAULT", "An untranslatable error occurred"),
    527: ("EBADTYPE", "Type not supported by server"),
    528: ("EJUKEBOX", "Request initiated, but will not complete before timeout"),
    529: ("EIOCBQUEUED", "iocb queued, will get completion event"),
    530: ("ERECALLCONFLICT", "Conflict with recalled state"),
    531: ("ENOGRACE", "NFS file lock reclaim refused"),
}
# The largest errno a syscall can return (include/linux/err.h MAX_ERRNO).
MAX_ERRNO = 4095


@cache
def _errno_messages() -> dict[str, str]:
    messages = {}
    for line in _GENERIC_ERRNO_TEXT.splitlines():
        name, _, rest = line.partition(" ")
        messages[name] = rest.partition(" ")[2]
    messages["EDEADLOCK"] = messages["EDEADLK"]
    messages["EINIT"] = "Reserved"
    messages["EREMDEV"] = "Error 142"
    return messages


@cache
def errno_table(arch: str) -> dict[int, str] | None:
    """errno number → name for `arch` (user-visible codes only), or None when not tabled."""
    family = _ERRNO_FAMILY.get(normalize_arch(arch) or "")
    if family is None:
        return None
    generic = {}
    for line in _GENERIC_ERRNO_TEXT.splitlines():
        name, number, _ = line.split(" ", 2)
        generic[int(number)] = name
    if family == "generic":
        return generic
    if family == "powerpc":
        # arch/powerpc/include/uapi/asm/errno.h: EDEADLOCK gets its own number.
        return {**generic, 58: "EDEADLOCK"}
    table = {n: s for n, s in generic.items() if n <= 34}
    words = _MIPS_ERRNO_TEXT.split()
    for name, number in zip(words[0::2], words[1::2]):
        table.setdefault(int(number), name)
    return table


def errno_name(arch: str, number: int) -> str | None:
    """ENOENT for 2 on x86_64, EDEADLK for 45 on mips; kernel-internal codes too; None if unknown."""
    if number < 0:
        number = -number
    table = errno_table(arch)
    name = table.get(number) if table is not None else None
    if name is None and number in KERNEL_INTERNAL_ERRNO:
        return KERNEL_INTERNAL_ERRNO[number][0]
    return name


def errno_message(name: str) -> str | None:
    """The strerror() text for an errno name ("No such file or directory" for ENOENT)."""
    msg = _errno_messages().get(name)
    if msg is None:
        for internal_name, internal_msg in KERNEL_INTERNAL_ERRNO.values():
            if internal_name == name:
                return internal_msg
    return msg


def errno_number(arch: str, name: str) -> int | None:
    table = errno_table(arch)
    if table is None:
        return None
    for number, n in table.items():
        if n == name:
            return number
    return None
