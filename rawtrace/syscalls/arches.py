"""Architecture knowledge for syscall tables: names, aliases, ABIs, table files and number offsets."""

from __future__ import annotations

from collections import namedtuple

# x32 processes use the x86_64 syscall instruction with this bit set in the number
# (arch/x86/include/uapi/asm/unistd.h: __X32_SYSCALL_BIT).
X32_SYSCALL_BIT = 0x40000000
# ARM OABI encodes the number in the swi immediate on top of this base
# (arch/arm/include/uapi/asm/unistd.h: __NR_OABI_SYSCALL_BASE).
ARM_OABI_SYSCALL_BASE = 0x900000
# MIPS numbers each ABI from its own base (arch/mips/include/uapi/asm/unistd.h: __NR_Linux).
MIPS_O32_BASE, MIPS_N64_BASE, MIPS_N32_BASE = 4000, 5000, 6000


# Records are namedtuples rather than dataclasses (or typing.NamedTuple): they are declared, not parsed,
# and importing dataclasses or typing costs more than the whole table parse (list-syscalls' start-up).


class Abi(namedtuple("Abi", "name table tags nr_offset compat word_size note traced compat_entries",
                     defaults=(None, 0, False, 64, "", True, False))):
    """One way user space enters the kernel: which table rows it sees and how it numbers them.

    name: str; table: str, a file name under tables/; tags: tuple[str, ...] | None, the kernel's ABI
    column values that belong to this ABI (None: every row of the file); nr_offset: int, added to the
    table's number to get what user space puts in the register; compat: bool, a compat ABI (32-bit or
    other tasks on this 64-bit kernel); word_size: int; note: str;
    traced: bool, False where the kernel skips syscall tracepoints for these tasks
    (ARCH_TRACE_IGNORE_COMPAT_SYSCALLS in arch/<arch>/include/asm/ftrace.h);
    compat_entries: bool, whether these tasks go through the table's compat column where it has one
    (compat ABIs, and OABI binaries on an EABI kernel with CONFIG_OABI_COMPAT)."""

    __slots__ = ()

    def covers(self, tag: str) -> bool:
        return self.tags is None or tag in self.tags


class Arch(namedtuple("Arch", "name abis word_size machines aliases kernel_dir compat_column verify "
                              "elf_machine multiarch",
                      defaults=((), (), "", "", "", "", ()))):
    """A kernel architecture as rawtrace sees it: the one table of arch names every module uses.

    name: str, rawtrace's name; abis: tuple[Abi, ...], abis[0] the native ABI; word_size: int (bits of a
    long); machines: tuple[str, ...], the `uname -m` values the kernel reports for it; aliases: other names
    users type (Debian, GNU triplets, Go); kernel_dir: arch/<dir> in the kernel tree; compat_column: what
    the table's compat entry column means here ("" if unused); verify: how to check this record;
    elf_machine: the ELF e_machine name (pyelftools spelling) of its native binaries ("" if not checked);
    multiarch: Debian multiarch directories of its native libraries, most common first."""

    __slots__ = ()

    @property
    def table(self) -> str:
        return self.abis[0].table

    @property
    def native_abis(self) -> tuple[Abi, ...]:
        return tuple(a for a in self.abis if not a.compat)

    def abi(self, name: str) -> Abi | None:
        for abi in self.abis:
            if abi.name == name:
                return abi
        return None

    def row_abi(self, table: str, tag: str) -> Abi | None:
        """The first ABI of this arch reading `table` that covers a row tagged `tag`."""
        for abi in self.abis:
            if abi.table == table and abi.covers(tag):
                return abi
        return None


def _single(name: str, table: str, word_size: int, **kwargs) -> Arch:
    """An arch with one table and one ABI covering every row."""
    abi_name = kwargs.pop("abi_name", "common")
    return Arch(name, (Abi(abi_name, table, None, word_size=word_size),), word_size, **kwargs)


ARCHES: tuple[Arch, ...] = (
    Arch(
        "x86_64",
        (Abi("64", "x86_64.tbl", ("common", "64")),
         Abi("x32", "x86_64.tbl", ("common", "x32"), X32_SYSCALL_BIT, word_size=32, traced=False,
             note="ILP32 on x86_64: the 64-bit table's common rows and the x32 rows, number | 0x40000000"),
         Abi("i386", "i386.tbl", None, compat=True, compat_entries=True, word_size=32, traced=False,
             note="32-bit x86 tasks (int 0x80, sysenter) on a 64-bit kernel, with the compat entries")),
        64, machines=("x86_64",), aliases=("amd64", "x64", "x86-64"), kernel_dir="x86",
        compat_column="unused (x32 rows name their compat entry as the entry point)",
        elf_machine="EM_X86_64", multiarch=("x86_64-linux-gnu",),
        verify="arch/x86/entry/syscalls/Makefile: unistd_64.h --abis common,64; unistd_x32.h --abis "
               "common,x32 --offset __X32_SYSCALL_BIT; compare /usr/include/x86_64-linux-gnu/asm/unistd_64.h "
               "and unistd_x32.h",
    ),
    Arch(
        "i386",
        (Abi("i386", "i386.tbl", None, word_size=32),),
        32, machines=("i386", "i486", "i586", "i686"), aliases=("x86", "i686", "i586", "ia32", "x86_32"),
        kernel_dir="x86", compat_column="entry used for 32-bit tasks on an x86_64 kernel",
        elf_machine="EM_386", multiarch=("i386-linux-gnu",),
        verify="arch/x86/entry/syscalls/Makefile: unistd_32.h --abis i386; "
               "compare /usr/include/x86_64-linux-gnu/asm/unistd_32.h",
    ),
    Arch(
        "arm64",
        (Abi("64", "arm64.tbl", None),
         Abi("aarch32", "arm64_aarch32.tbl", None, compat=True, compat_entries=True, word_size=32,
             traced=False,
             note="AArch32 (EABI) tasks on an arm64 kernel: arm numbers, compat entries")),
        64, machines=("aarch64", "aarch64_be"), aliases=("aarch64", "arm64le"), kernel_dir="arm64",
        elf_machine="EM_AARCH64", multiarch=("aarch64-linux-gnu",),
        verify="arch/arm64/kernel/Makefile.syscalls: syscall_abis_64 += renameat rlimit memfd_secret "
               "(plus common,64 from scripts/Makefile.asm-headers); read is 63 in asm-generic/unistd.h",
    ),
    Arch(
        "arm",
        (Abi("eabi", "arm.tbl", ("common", "eabi"), word_size=32),
         Abi("oabi", "arm.tbl", ("common", "oabi"), ARM_OABI_SYSCALL_BASE, word_size=32, compat_entries=True,
             note="old ABI: number in the swi immediate, 0x900000 + nr")),
        32, machines=("armv4l", "armv4tl", "armv5l", "armv5tl", "armv5tel", "armv5tejl", "armv6l", "armv7l",
                      "armv8l", "arm", "armeb"),
        aliases=("armhf", "armel", "aarch32", "armv7l", "armv7", "arm32"), kernel_dir="arm",
        compat_column="OABI-compat entry (EABI kernel with CONFIG_OABI_COMPAT running OABI binaries)",
        elf_machine="EM_ARM", multiarch=("arm-linux-gnueabihf", "arm-linux-gnueabi"),
        verify="arch/arm/tools/Makefile: --abis common,eabi / common,oabi, --offset __NR_SYSCALL_BASE",
    ),
    Arch(
        "riscv64",
        (Abi("64", "riscv64.tbl", None),
         Abi("32", "riscv32.tbl", None, compat=True, compat_entries=True, word_size=32, traced=False,
             note="rv32 tasks on an rv64 kernel (CONFIG_COMPAT), with the compat entries")),
        64, machines=("riscv64",), aliases=("riscv", "rv64"), kernel_dir="riscv",
        elf_machine="EM_RISCV", multiarch=("riscv64-linux-gnu",),
        verify="arch/riscv/kernel/Makefile.syscalls: syscall_abis_64 += riscv rlimit memfd_secret",
    ),
    Arch(
        "riscv32",
        (Abi("32", "riscv32.tbl", None, word_size=32),),
        32, machines=("riscv32",), aliases=("rv32",), kernel_dir="riscv",
        compat_column="entry used for rv32 tasks on an rv64 kernel",
        elf_machine="EM_RISCV", multiarch=("riscv32-linux-gnu",),
        verify="arch/riscv/kernel/Makefile.syscalls: syscall_abis_32 += riscv memfd_secret",
    ),
    _single("loongarch64", "loongarch64.tbl", 64, abi_name="64", machines=("loongarch64",),
            aliases=("loongarch", "loong64"), kernel_dir="loongarch",
            elf_machine="EM_LOONGARCH", multiarch=("loongarch64-linux-gnu",),
            verify="arch/loongarch/kernel/Makefile.syscalls: no ABIs beyond common,64"),
    Arch(
        "powerpc64",
        (Abi("64", "powerpc.tbl", ("common", "nospu", "64")),
         Abi("spu", "powerpc.tbl", ("common", "spu"),
             note="Cell SPU contexts (spu_syscall_table): common and spu rows only"),
         Abi("32", "powerpc.tbl", ("common", "nospu", "32"), compat=True, compat_entries=True, word_size=32,
             note="32-bit tasks on a ppc64 kernel, with the compat entries")),
        64, machines=("ppc64", "ppc64le"), aliases=("ppc64", "ppc64le", "powerpc64le", "ppc64el"),
        kernel_dir="powerpc", compat_column="entry used for 32-bit tasks on a 64-bit kernel",
        elf_machine="EM_PPC64", multiarch=("powerpc64le-linux-gnu", "powerpc64-linux-gnu"),
        verify="arch/powerpc/kernel/syscalls/Makefile: abis common,nospu,64 / common,nospu,32 / common,spu",
    ),
    Arch(
        "powerpc",
        (Abi("32", "powerpc.tbl", ("common", "nospu", "32"), word_size=32),),
        32, machines=("ppc", "ppcle"), aliases=("ppc", "powerpc32", "ppc32"), kernel_dir="powerpc",
        elf_machine="EM_PPC", multiarch=("powerpc-linux-gnu",),
        verify="arch/powerpc/kernel/syscalls/Makefile: unistd_32.h abis common,nospu,32",
    ),
    Arch(
        "s390x",
        (Abi("64", "s390.tbl", None),
         # Linux 6.19 removed 31-bit compat; its rows come from the last kernel that had it (6.18.2),
         # for recordings and older kernels.
         Abi("32", "s390_31.tbl", None, compat=True, compat_entries=True, word_size=32, traced=False,
             note="31-bit tasks on a 64-bit kernel before Linux 6.19: the compat column is their entry")),
        64, machines=("s390x",), aliases=("s390", "s390-64"), kernel_dir="s390",
        compat_column="entry used for 31-bit tasks (rows tagged 32 have only this one; s390_31.tbl)",
        elf_machine="EM_S390", multiarch=("s390x-linux-gnu",),
        verify="arch/s390/kernel/syscalls/syscall.tbl: 6.19 has common rows only (Makefile --abis common,64); "
               "6.18 and older: '-' marks no entry for that ABI",
    ),
    Arch(
        "sparc64",
        (Abi("64", "sparc.tbl", ("common", "64")),
         Abi("32", "sparc.tbl", ("common", "32"), compat=True, compat_entries=True, word_size=32)),
        64, machines=("sparc64",), aliases=("sparcv9",), kernel_dir="sparc",
        compat_column="entry used for 32-bit tasks on a 64-bit kernel",
        elf_machine="EM_SPARCV9", multiarch=("sparc64-linux-gnu",),
        verify="arch/sparc/kernel/syscalls/Makefile: --abis common,$* for 32 and 64",
    ),
    Arch(
        "sparc",
        (Abi("32", "sparc.tbl", ("common", "32"), word_size=32),),
        32, machines=("sparc",), aliases=("sparc32",), kernel_dir="sparc",
        elf_machine="EM_SPARC", multiarch=("sparc-linux-gnu",),
        verify="arch/sparc/kernel/syscalls/Makefile: unistd_32.h --abis common,32",
    ),
    Arch(
        "parisc64",
        (Abi("64", "parisc.tbl", ("common", "64")),
         Abi("32", "parisc.tbl", ("common", "32"), compat=True, compat_entries=True, word_size=32)),
        64, machines=("parisc64",), aliases=("hppa64",), kernel_dir="parisc",
        compat_column="entry used for 32-bit tasks on a 64-bit kernel",
        elf_machine="EM_PARISC", multiarch=("hppa64-linux-gnu",),
        verify="arch/parisc/kernel/syscalls/Makefile: --abis common,$* for 32 and 64",
    ),
    Arch(
        "parisc",
        (Abi("32", "parisc.tbl", ("common", "32"), word_size=32),),
        32, machines=("parisc",), aliases=("hppa",), kernel_dir="parisc",
        elf_machine="EM_PARISC", multiarch=("hppa-linux-gnu",),
        verify="arch/parisc/kernel/syscalls/Makefile: unistd_32.h --abis common,32",
    ),
    Arch(
        "mips64",
        (Abi("n64", "mips_n64.tbl", None, MIPS_N64_BASE),
         Abi("n32", "mips_n32.tbl", None, MIPS_N32_BASE, compat=True, compat_entries=True, word_size=32,
             note="ILP32 on a 64-bit kernel (MIPS32_N32)"),
         Abi("o32", "mips_o32.tbl", None, MIPS_O32_BASE, compat=True, compat_entries=True, word_size=32,
             note="32-bit tasks on a 64-bit kernel (MIPS32_O32)")),
        64, machines=("mips64",), aliases=("mips64el", "mipsel64", "mips64n64"), kernel_dir="mips",
        compat_column="entry used for compat tasks",
        elf_machine="EM_MIPS", multiarch=("mips64el-linux-gnuabi64", "mips64-linux-gnuabi64"),
        verify="arch/mips/kernel/syscalls/Makefile: --offset __NR_Linux (o32 4000, n64 5000, n32 6000); "
               "read is 5000 on n64",
    ),
    Arch(
        "mips",
        (Abi("o32", "mips_o32.tbl", None, MIPS_O32_BASE, word_size=32),),
        32, machines=("mips",), aliases=("mipsel", "mips32", "mipso32"), kernel_dir="mips",
        compat_column="entry used for o32 tasks on a 64-bit kernel",
        elf_machine="EM_MIPS", multiarch=("mipsel-linux-gnu", "mips-linux-gnu"),
        verify="arch/mips/include/uapi/asm/unistd.h: __NR_Linux 4000 for _MIPS_SIM_ABI32; read is 4003",
    ),
    # Alpha binaries carry e_machine 0x9026 (include/uapi/linux/elf-em.h), not the official EM_ALPHA: unchecked.
    _single("alpha", "alpha.tbl", 64, machines=("alpha",), kernel_dir="alpha",
            multiarch=("alpha-linux-gnu",),
            verify="arch/alpha/kernel/syscalls/syscall.tbl: every row is common; read is 3"),
    _single("m68k", "m68k.tbl", 32, machines=("m68k",), kernel_dir="m68k",
            elf_machine="EM_68K", multiarch=("m68k-linux-gnu",),
            verify="arch/m68k/kernel/syscalls/syscall.tbl: every row is common; read is 3"),
    _single("sh", "sh.tbl", 32, machines=("sh", "sh2", "sh3", "sh4", "sh4a", "sh2a", "sh3eb", "sh4eb"),
            aliases=("sh4", "superh"), kernel_dir="sh",
            elf_machine="EM_SH", multiarch=("sh4-linux-gnu",),
            verify="arch/sh/kernel/syscalls/syscall.tbl: every row is common; read is 3"),
    _single("xtensa", "xtensa.tbl", 32, machines=("xtensa",), kernel_dir="xtensa",
            elf_machine="EM_XTENSA",
            verify="arch/xtensa/kernel/syscalls/syscall.tbl: every row is common"),
    _single("microblaze", "microblaze.tbl", 32, machines=("microblaze", "microblazeel"),
            kernel_dir="microblaze",
            elf_machine="EM_MICROBLAZE",
            verify="arch/microblaze/kernel/syscalls/syscall.tbl: every row is common"),
    _single("arc", "arc.tbl", 32, abi_name="32", machines=("arc", "arceb", "arcv2", "arcv3"),
            kernel_dir="arc", elf_machine="EM_ARC_COMPACT2",
            verify="arch/arc/kernel/Makefile.syscalls: syscall_abis_32 += arc time32 ..."),
    _single("csky", "csky.tbl", 32, abi_name="32", machines=("csky",), kernel_dir="csky",
            elf_machine="EM_CSKY",
            verify="arch/csky/kernel/Makefile.syscalls: syscall_abis_32 += csky time32 stat64 rlimit"),
    _single("hexagon", "hexagon.tbl", 32, abi_name="32", machines=("hexagon",), kernel_dir="hexagon",
            elf_machine="EM_QDSP6",
            verify="arch/hexagon/kernel/Makefile.syscalls: syscall_abis_32 += hexagon time32 ..."),
    _single("nios2", "nios2.tbl", 32, abi_name="32", machines=("nios2",), kernel_dir="nios2",
            elf_machine="EM_ALTERA_NIOS2",
            verify="arch/nios2/kernel/Makefile.syscalls: syscall_abis_32 += nios2 time32 ..."),
    _single("openrisc", "openrisc.tbl", 32, abi_name="32", machines=("openrisc", "or1k"), aliases=("or1k",),
            kernel_dir="openrisc",
            elf_machine="EM_OPENRISC",
            verify="arch/openrisc/kernel/Makefile.syscalls: syscall_abis_32 += or1k time32 ..."),
)

_BY_NAME: dict[str, Arch] = {}
for _arch in ARCHES:
    _BY_NAME.setdefault(_arch.name, _arch)
for _arch in ARCHES:
    for _alias in _arch.aliases + _arch.machines:
        _BY_NAME.setdefault(_alias, _arch)
del _arch, _alias


def arch_names() -> list[str]:
    return [arch.name for arch in ARCHES]


def lookup_arch(name: str) -> Arch | None:
    """The Arch for a name, alias or `uname -m` value (case-insensitive), or None."""
    return _BY_NAME.get(name.strip().lower())


def arch_for_machine(machine: str) -> Arch | None:
    """The kernel's `uname -m` → arch mapping (also accepts names and aliases)."""
    return lookup_arch(machine)


def host_arch(host=None) -> str:
    """The arch name of the kernel `host` runs (the live one by default; a --root tree's own machine
    name), "unknown-<machine>" if rawtrace does not know it."""
    if host is None:
        from rawtrace.host import host_machine
        machine = host_machine()
    else:
        machine = host.machine()
    arch = arch_for_machine(machine)
    return arch.name if arch else f"unknown-{machine}"


def word_size(name: str, default: int = 64) -> int:
    """Bits in a C long (a syscall argument slot) on the arch called `name`; `default` if unknown."""
    arch = lookup_arch(name) if name else None
    return arch.word_size if arch is not None else default
