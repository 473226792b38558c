"""ELF files for uprobes: library lookup, symbol → file offset, and readable refusals (the only pyelftools user)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from rawtrace.errors import UsageError
from rawtrace.host import Host

# Which ELF machine and library directories belong to a `uname -m` value comes from the one arch table,
# rawtrace.syscalls.arches (elf_machine, word_size, multiarch).


def _host_elf(machine: str) -> tuple[str, int, tuple[str, ...]]:
    """(e_machine name or "" if unchecked, ELF class, multiarch directories) for a `uname -m` value."""
    from rawtrace.syscalls.arches import lookup_arch
    arch = lookup_arch(machine)
    if arch is None:
        return "", 0, (machine + "-linux-gnu",)
    return arch.elf_machine, arch.word_size, arch.multiarch


def _elf_arch_name(e_machine: str, elfclass: int) -> str:
    """What a person calls an ELF machine in a message: `aarch64 (arm64)`, `i386`, or the EM_ name."""
    from rawtrace.syscalls.arches import ARCHES
    matches = [a for a in ARCHES if a.elf_machine == e_machine]
    arch = next((a for a in matches if a.word_size == elfclass), matches[0] if matches else None)
    if arch is None:
        return e_machine
    machine = arch.machines[0] if arch.machines else arch.name
    return machine if machine == arch.name else f"{machine} ({arch.name})"


_LIB_DIRS = ("/lib/{triplet}", "/usr/lib/{triplet}", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
             "/usr/local/lib")

_LDCACHE_MAGIC = b"glibc-ld.so.cache1.1"
_LDCACHE_HEADER = struct.Struct("<20sII4xI12x")   # magic, nlibs, len_strings, (flags+pad), extension_offset
_LDCACHE_ENTRY = struct.Struct("<iIIIQ")          # flags, key (name), value (path), osversion, hwcap
_LDCACHE_OLD_MAGIC = b"ld.so-1.7.0"
_LDCACHE_OLD_HEADER = struct.Struct("<11s1xI")    # magic (+pad), nlibs
_LDCACHE_OLD_ENTRY = 12


@dataclass(frozen=True, slots=True)
class ElfSymbol:
    """One defined symbol: its bare name, version (dynsym or `name@VER` spelling) and where it came from."""

    name: str
    version: str | None
    default_version: bool     # `@@` (the version new links bind to) or unversioned
    value: int
    size: int
    type: str                 # STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE, STT_OBJECT, ...
    table: str                # ".symtab" or ".dynsym"
    local: bool = False       # STB_LOCAL: a static function, one per compilation unit

    @property
    def spelled(self) -> str:
        if not self.version:
            return self.name
        return f"{self.name}{'@@' if self.default_version else '@'}{self.version}"


@dataclass(frozen=True, slots=True)
class ResolvedSymbol:
    """Where a uprobe goes: the file (as the kernel sees it), the symbol and its file offset."""

    path: str                 # absolute, symlinks resolved, in the kernel's view (no --root prefix)
    symbol: str               # the symbol as found (with version if it has one)
    address: int              # virtual address (st_value + offset)
    file_offset: int          # what uprobe_events wants
    aliases: tuple[str, ...]  # other names at the same address
    table: str
    elf_type: str             # ET_DYN (PIE / shared library) or ET_EXEC
    size: int


def _kernel_path(host: Host, real: Path) -> str:
    """A resolved host-view path back to the path the kernel sees (drop the --root prefix)."""
    if host.is_live:
        return str(real)
    root = host.root.resolve()
    try:
        return "/" + str(real.relative_to(root))
    except ValueError:
        return str(real)


def real_path(host: Host, path: str) -> str:
    """`path` with symlinks resolved inside the host view, spelled as the kernel sees it."""
    if not path.startswith("/"):
        path = os.path.abspath(path)
    if host.is_live:
        return os.path.realpath(path)
    # Resolve one component at a time so absolute symlinks inside the fake root stay inside it.
    parts = [p for p in path.split("/") if p]
    current = "/"
    for _ in range(4096):
        if not parts:
            return current
        part = parts.pop(0)
        if part == "..":
            current = os.path.dirname(current)
            continue
        if part == ".":
            continue
        candidate = os.path.join(current, part)
        view = host.path(candidate)
        if view.is_symlink():
            target = os.readlink(view)
            if target.startswith("/"):
                current = "/"
            parts = [p for p in target.split("/") if p] + parts
            continue
        current = candidate
    raise UsageError(f"{path}: too many levels of symbolic links")


# ---------------------------------------------------------------------------------------------------
# Library lookup


def parse_ld_so_cache(data: bytes) -> list[tuple[str, str]]:
    """(soname, path) pairs from /etc/ld.so.cache, in the cache's (preference) order.

    Handles the new format alone and the old format followed by the new one; old-only caches
    (glibc < 2.32 default was both) are read from their old table."""
    start = data.find(_LDCACHE_MAGIC)
    if start >= 0:
        if len(data) < start + _LDCACHE_HEADER.size:
            return []
        _magic, nlibs, _len_strings, _ext = _LDCACHE_HEADER.unpack_from(data, start)
        entries_at = start + _LDCACHE_HEADER.size
        # String offsets in the new format count from the start of the new header.
        return _read_entries(data, entries_at, nlibs, _LDCACHE_ENTRY.size, start)
    if data.startswith(_LDCACHE_OLD_MAGIC) and len(data) >= _LDCACHE_OLD_HEADER.size:
        _magic, nlibs = _LDCACHE_OLD_HEADER.unpack_from(data, 0)
        entries_at = _LDCACHE_OLD_HEADER.size
        strings_at = entries_at + nlibs * _LDCACHE_OLD_ENTRY
        return _read_entries(data, entries_at, nlibs, _LDCACHE_OLD_ENTRY, strings_at)
    return []


def _read_entries(data: bytes, at: int, count: int, size: int, strings_base: int) -> list[tuple[str, str]]:
    out = []
    for i in range(count):
        pos = at + i * size
        if pos + 12 > len(data):
            break
        _flags, key, value = struct.unpack_from("<iII", data, pos)
        name, path = _cstring(data, strings_base + key), _cstring(data, strings_base + value)
        if name and path:
            out.append((name, path))
    return out


def _cstring(data: bytes, at: int) -> str | None:
    if not 0 <= at < len(data):
        return None
    end = data.find(b"\0", at)
    return data[at:end if end >= 0 else len(data)].decode("utf-8", "replace")


def _library_name_matches(wanted: str, soname: str) -> bool:
    """`libc` / `c` / `libc.so` / `libc.so.6` all name libc.so.6, the way `-lc` or dlopen would."""
    if soname == wanted:
        return True
    stem = wanted if wanted.startswith("lib") else f"lib{wanted}"
    stem = stem.removesuffix(".so")
    return soname == f"{stem}.so" or soname.startswith(f"{stem}.so.")


def find_library(name: str, host: Host, machine: str | None = None) -> str:
    """The library the dynamic linker would pick for `name` on this host (kernel's view of its path)."""
    machine = machine or host.machine()
    candidates: list[str] = []
    cache = None
    try:
        cache = host.path("/etc/ld.so.cache").read_bytes()
    except OSError:
        pass
    if cache:
        candidates += [path for soname, path in parse_ld_so_cache(cache)
                       if _library_name_matches(name, soname)]
    want_machine, _class, triplets = _host_elf(machine)
    directories = [d.format(triplet=t) for d in _LIB_DIRS if "{triplet}" in d for t in triplets]
    directories += [d for d in _LIB_DIRS if "{triplet}" not in d]
    for directory in directories:
        try:
            names = sorted(os.listdir(host.path(directory)))
        except OSError:
            continue
        candidates += [f"{directory}/{entry}" for entry in names if _library_name_matches(name, entry)]
    seen = set()
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        found = _elf_machine_of(host.path(path))
        # An arch whose ELF machine rawtrace does not check takes the first ELF file of that name.
        if found is not None and found == (want_machine or found):
            return real_path(host, path)
    raise UsageError(
        f"library {name!r} not found in /etc/ld.so.cache or the standard library directories",
        hint="give the library's absolute path, e.g. uprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:openat")


def _elf_machine_of(path: Path) -> str | None:
    """The e_machine name of an ELF file, from its header alone (cheap; no pyelftools)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    endian = "<" if head[5] == 1 else ">"
    (number,) = struct.unpack_from(endian + "H", head, 18)
    return _E_MACHINE_NUMBERS.get(number, f"EM_{number}")


# e_machine numbers (include/uapi/linux/elf-em.h) of the arches in rawtrace.syscalls.arches, named as
# pyelftools names them.
_E_MACHINE_NUMBERS = {2: "EM_SPARC", 3: "EM_386", 4: "EM_68K", 8: "EM_MIPS", 15: "EM_PARISC", 20: "EM_PPC",
                      21: "EM_PPC64", 22: "EM_S390", 40: "EM_ARM", 42: "EM_SH", 43: "EM_SPARCV9",
                      62: "EM_X86_64", 92: "EM_OPENRISC", 94: "EM_XTENSA", 113: "EM_ALTERA_NIOS2",
                      164: "EM_QDSP6", 183: "EM_AARCH64", 189: "EM_MICROBLAZE", 195: "EM_ARC_COMPACT2",
                      243: "EM_RISCV", 252: "EM_CSKY", 258: "EM_LOONGARCH"}


def _other_mount_namespace(host: Host, pid: str) -> bool:
    """True when process `pid` lives in another mount namespace than this one (a container)."""
    try:
        theirs = os.readlink(host.path(f"/proc/{pid}/ns/mnt"))
        ours = os.readlink(host.path("/proc/self/ns/mnt"))
    except OSError:
        return False
    return theirs != ours


def resolve_target(target: str, host: Host, machine: str | None = None) -> str:
    """A uprobe TARGET (path, library name, or `pid:PID`) → absolute real path as the kernel sees it."""
    if target.startswith("pid:"):
        pid = target[4:]
        if not pid.isdigit():
            raise UsageError(f"bad uprobe target {target!r}: expected pid:<number>")
        try:
            exe = os.readlink(host.path(f"/proc/{pid}/exe"))
        except FileNotFoundError:
            raise UsageError(f"no process with pid {pid}") from None
        except OSError as exc:
            raise UsageError(f"cannot read /proc/{pid}/exe: {exc.strerror}",
                             hint="kernel threads have no executable; other users' processes need root") from None
        if exe.endswith(" (deleted)"):
            raise UsageError(f"process {pid} runs a deleted file ({exe}); uprobes need a file on disk")
        if _other_mount_namespace(host, pid):
            # A container's path means another file here; its root, seen through /proc, is the same inode.
            inside = f"/proc/{pid}/root{exe}"
            if not host.path(inside).exists():
                raise UsageError(f"cannot reach {exe} of process {pid} through /proc/{pid}/root")
            return inside
        return real_path(host, exe)
    if "/" in target:
        path = real_path(host, target)
        if not host.path(path).exists():
            raise UsageError(f"{target}: no such file")
        return path
    return find_library(target, host, machine)


# ---------------------------------------------------------------------------------------------------
# Symbols


def _open_elf(view: Path, shown: str, machine: str):
    """(ELFFile, file object) after the checks that give readable refusals."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        f = open(view, "rb")  # noqa: SIM115 - handed to the caller with the ELFFile that reads it
    except IsADirectoryError:
        raise UsageError(f"{shown} is a directory, not an ELF file") from None
    except OSError as exc:
        raise UsageError(f"cannot open {shown}: {exc.strerror}") from None
    head = f.read(4)
    f.seek(0)
    if head != b"\x7fELF":
        f.close()
        raise UsageError(f"{shown} is not an ELF file (a script or data?); probe the interpreter or a binary")
    try:
        elf = ELFFile(f)
    except ELFError as exc:
        f.close()
        raise UsageError(f"{shown} is a damaged ELF file: {exc}") from None
    want_machine, want_class, _ = _host_elf(machine)
    have_machine = elf.header.e_machine
    if want_machine and (have_machine != want_machine or elf.elfclass != want_class):
        f.close()
        have = _elf_arch_name(str(have_machine), elf.elfclass)
        raise UsageError(
            f"{shown} is a {elf.elfclass}-bit {have} ELF file but this host is {machine} "
            f"({_elf_arch_name(want_machine, want_class)}); uprobes need a binary of the host architecture")
    if elf.header.e_type not in ("ET_DYN", "ET_EXEC"):
        f.close()
        raise UsageError(f"{shown} is an ELF {elf.header.e_type} file, not an executable or shared library")
    return elf, f


_VERDEF = "HHHHIII"      # vd_version, vd_flags, vd_ndx, vd_cnt, vd_hash, vd_aux, vd_next
_VERDAUX = "II"          # vda_name, vda_next


def _version_definitions(data: bytes, strings: bytes, endian: str, count: int) -> dict[int, str]:
    """Version index → name from .gnu.version_d (Elf_Verdef chain, first Verdaux of each)."""
    verdef, verdaux = struct.Struct(endian + _VERDEF), struct.Struct(endian + _VERDAUX)
    names: dict[int, str] = {}
    at = 0
    for _ in range(count or 0x10000):
        if at + verdef.size > len(data):
            break
        _version, flags, ndx, aux_count, _hash, aux, following = verdef.unpack_from(data, at)
        # Index 1 names the file itself (VER_FLG_BASE), not a version anyone binds to.
        if aux_count and not flags & 0x1 and at + aux + verdaux.size <= len(data):
            name_at, _next = verdaux.unpack_from(data, at + aux)
            end = strings.find(b"\0", name_at)
            names[ndx] = strings[name_at:end if end >= 0 else len(strings)].decode("utf-8", "replace")
        if not following:
            break
        at += following
    return names


def _dynsym_versions(elf, count: int) -> list[tuple[str | None, bool]] | None:
    """Per dynsym index: (version name, is default). None when the file has no symbol versions."""
    versym = elf.get_section_by_name(".gnu.version")
    verdef = elf.get_section_by_name(".gnu.version_d")
    if versym is None or verdef is None:
        return None
    endian = "<" if elf.little_endian else ">"
    names = _version_definitions(verdef.data(), elf.get_section(verdef["sh_link"]).data(), endian,
                                 verdef["sh_info"])
    data = versym.data()[:2 * count]
    out: list[tuple[str | None, bool]] = []
    for (ndx,) in struct.iter_unpack(endian + "H", data[:len(data) // 2 * 2]):
        # bit 15 hides the version: `name@VER` (old binaries only) rather than `name@@VER`
        out.append((names.get(ndx & 0x7FFF), not ndx & 0x8000))
    return out


def _split_version(name: str) -> tuple[str, str | None, bool]:
    """`open@@GLIBC_2.2.5` → ('open', 'GLIBC_2.2.5', True); `x@V` → ('x', 'V', False); `x` → ('x', None, True)."""
    if "@@" in name:
        base, version = name.split("@@", 1)
        return base, version or None, True
    if "@" in name:
        base, version = name.split("@", 1)
        return base, version or None, False
    return name, None, True


# st_info low nibble → type name; the ones a probe can go on, plus those to explain or skip.
_SYMBOL_TYPES = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE",
                 5: "STT_COMMON", 6: "STT_TLS", 10: "STT_GNU_IFUNC"}
_SKIPPED_TYPES = frozenset({"STT_SECTION", "STT_FILE", "STT_TLS"})
_SHN_UNDEF, _SHN_ABS = 0, 0xFFF1


def _symbol_layout(elf) -> struct.Struct:
    """Elf32_Sym / Elf64_Sym for this file's class and byte order (built once per file).

    Decoded with struct rather than pyelftools' per-field parser: libc's 3000 symbols take
    milliseconds instead of a third of a second."""
    endian = "<" if elf.little_endian else ">"
    if elf.elfclass == 64:
        return struct.Struct(endian + "IBBHQQ")          # name, info, other, shndx, value, size
    return struct.Struct(endian + "IIIBBH")              # name, value, size, info, other, shndx


def read_symbols(elf) -> tuple[list[ElfSymbol], list[str]]:
    """Defined symbols of .symtab then .dynsym, and the names of the tables that exist."""
    symbols: list[ElfSymbol] = []
    tables: list[str] = []
    layout = _symbol_layout(elf)
    wide = elf.elfclass == 64
    for table in (".symtab", ".dynsym"):
        section = elf.get_section_by_name(table)
        if section is None or section["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM"):
            continue
        tables.append(table)
        strings = elf.get_section(section["sh_link"]).data()
        data = section.data()
        count = len(data) // layout.size
        versions = _dynsym_versions(elf, count) if table == ".dynsym" else None
        for i, row in enumerate(layout.iter_unpack(data[:count * layout.size])):
            if wide:
                name_at, info, _other, shndx, value, size = row
            else:
                name_at, value, size, info, _other, shndx = row
            if shndx in (_SHN_UNDEF, _SHN_ABS) or not name_at:
                continue
            kind = _SYMBOL_TYPES.get(info & 0xF, f"STT_{info & 0xF}")
            if kind in _SKIPPED_TYPES:
                continue
            end = strings.find(b"\0", name_at)
            raw = strings[name_at:end if end >= 0 else len(strings)].decode("utf-8", "replace")
            if not raw:
                continue
            name, version, default = _split_version(raw)
            if versions is not None and i < len(versions) and version is None:
                version, default = versions[i]
            symbols.append(ElfSymbol(name, version, default, value, size, kind, table, local=info >> 4 == 0))
    return symbols, tables


_SYMBOL_CACHE: dict[tuple[str, int, int, int], tuple[list[ElfSymbol], list[str]]] = {}


def _cached_symbols(view: Path, elf) -> tuple[list[ElfSymbol], list[str]]:
    """read_symbols, remembered per (file, inode, size, mtime): several probes on one library read it once."""
    st = os.stat(view)
    key = (str(view), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SYMBOL_CACHE:
        _SYMBOL_CACHE[key] = read_symbols(elf)
    return _SYMBOL_CACHE[key]


def file_offset(elf, address: int, shown: str = "file") -> int:
    """Virtual address → file offset through the PT_LOAD segment that maps it."""
    for segment in elf.iter_segments():
        if segment["p_type"] != "PT_LOAD":
            continue
        start, filesz = segment["p_vaddr"], segment["p_filesz"]
        if start <= address < start + filesz:
            return address - start + segment["p_offset"]
    raise UsageError(f"address {address:#x} is not in any loaded segment of {shown} (not code?)")


def _choose(matches: list[ElfSymbol], wanted: str, shown: str) -> ElfSymbol:
    """Pick among same-name symbols: an exact version, else the default version, else the only one."""
    by_value: dict[int, ElfSymbol] = {}
    for sym in matches:
        # .symtab and .dynsym repeat each other; keep the versioned spelling when both exist.
        kept = by_value.get(sym.value)
        if kept is None or (kept.version is None and sym.version is not None):
            by_value[sym.value] = sym
    if len(by_value) == 1:
        return next(iter(by_value.values()))
    defaults = [s for s in by_value.values() if s.default_version]
    if len(defaults) == 1:
        return defaults[0]
    # A global definition wins over static functions of the same name in other compilation units.
    exported = [s for s in defaults if not s.local]
    if len(exported) == 1:
        return exported[0]
    spelled = ", ".join(f"{s.spelled} at {s.value:#x}{' (static)' if s.local else ''}"
                        for s in sorted(by_value.values(), key=lambda s: s.value))
    raise UsageError(f"{wanted!r} is ambiguous in {shown}: {spelled}",
                     hint="name the version (SYMBOL@@VERSION) or give the virtual address (0x...)")


@dataclass(frozen=True, slots=True)
class FunctionEntry:
    """A probe-able function of an ELF file, for listings."""

    name: str                 # with version when it has one
    address: int
    file_offset: int | None   # None when no PT_LOAD maps it
    size: int
    type: str                 # "func", "ifunc" (resolver: not probe-able as such) or "notype"
    table: str


def list_functions(path: str, pattern: str = "*", host: Host | None = None, *,
                   machine: str | None = None) -> list[FunctionEntry]:
    """Functions of the ELF file `path` whose name (bare or with version) matches the glob `pattern`."""
    import fnmatch
    host = host or Host()
    machine = machine or host.machine()
    from elftools.common.exceptions import ELFError
    try:
        elf, f = _open_elf(host.path(path), path, machine)
        with f:
            symbols, _tables = _cached_symbols(host.path(path), elf)
            segments = [(seg["p_vaddr"], seg["p_filesz"], seg["p_offset"]) for seg in elf.iter_segments()
                        if seg["p_type"] == "PT_LOAD"]
    except (ELFError, struct.error, ValueError, IndexError, KeyError, OSError) as exc:
        raise UsageError(f"{path} is a damaged ELF file ({type(exc).__name__}: {exc})") from None
    kinds = {"STT_FUNC": "func", "STT_GNU_IFUNC": "ifunc", "STT_NOTYPE": "notype"}
    seen: dict[tuple[str, int], FunctionEntry] = {}
    # .symtab repeats .dynsym without versions: list the versioned spelling only.
    versioned = {(sym.name, sym.value) for sym in symbols if sym.version}
    for sym in symbols:
        if not sym.version and (sym.name, sym.value) in versioned:
            continue
        kind = kinds.get(sym.type)
        if kind is None or not (fnmatch.fnmatchcase(sym.name, pattern) or fnmatch.fnmatchcase(sym.spelled, pattern)):
            continue
        offset = next((sym.value - start + file_at for start, size, file_at in segments
                       if start <= sym.value < start + size), None)
        if kind == "notype" and offset is None:
            continue      # linker-defined markers (_end, __bss_start), not code
        seen.setdefault((sym.spelled, sym.value),
                        FunctionEntry(sym.spelled, sym.value, offset, sym.size, kind, sym.table))
    return sorted(seen.values(), key=lambda e: (e.name, e.address))


def resolve_symbol(path: str, symbol: str, host: Host | None = None, *, offset: int = 0,
                   machine: str | None = None) -> ResolvedSymbol:
    """File offset of `symbol`(+offset) in the ELF file `path` (kernel's view), for a uprobe.

    `symbol` may be `name`, `name@VERSION`, `name@@VERSION`, or a virtual address `0x...`.
    Raises UsageError for non-ELF, wrong-architecture, stripped files and unknown symbols."""
    host = host or Host()
    machine = machine or host.machine()
    from elftools.common.exceptions import ELFError
    try:
        return _resolve_symbol(path, symbol, host, offset, machine)
    except (ELFError, struct.error, ValueError, IndexError, KeyError, OSError) as exc:
        # Truncated or corrupt files fail deep inside the parser; say so in one line.
        raise UsageError(f"{path} is a damaged ELF file ({type(exc).__name__}: {exc})") from None


def _resolve_symbol(path: str, symbol: str, host: Host, offset: int, machine: str) -> ResolvedSymbol:
    view = host.path(path)
    elf, f = _open_elf(view, path, machine)
    with f:
        symbols, tables = _cached_symbols(view, elf)
        if symbol.lower().startswith("0x"):
            try:
                address = int(symbol, 16) + offset
            except ValueError:
                raise UsageError(f"bad address {symbol!r}") from None
            at = [s for s in symbols if s.value == address and s.type in ("STT_FUNC", "STT_NOTYPE")]
            name = at[0].spelled if at else symbol
            return ResolvedSymbol(path, name, address, file_offset(elf, address, path),
                                  tuple(sorted({s.spelled for s in at[1:]})), at[0].table if at else "",
                                  elf.header.e_type, at[0].size if at else 0)
        if not tables:
            raise UsageError(f"{path} is stripped: it has no symbol table (.symtab or .dynsym)",
                             hint="install its debug symbols, or give a virtual address (0x...) from a "
                                  "disassembly")
        base, version, _default = _split_version(symbol)
        matches = [s for s in symbols if s.name == base and (version is None or s.version == version)]
        if version is not None and "@@" in symbol:
            matches = [s for s in matches if s.default_version] or matches
        if not matches:
            raise UsageError(_unknown_symbol_message(symbol, base, symbols, tables, path))
        chosen = _choose(matches, symbol, path)
        if chosen.type == "STT_GNU_IFUNC":
            raise UsageError(
                f"{chosen.spelled} in {path} is an IFUNC: its address is the resolver that picks an "
                "implementation at load time, not the code that runs",
                hint=f"probe an implementation instead ({_ifunc_implementations(base, symbols)})")
        if chosen.type not in ("STT_FUNC", "STT_NOTYPE"):
            raise UsageError(f"{chosen.spelled} in {path} is {chosen.type[4:].lower()} data, not code")
        value = chosen.value
        if elf.header.e_machine == "EM_ARM":
            value &= ~1  # Thumb functions have bit 0 set in st_value
        if offset and chosen.size and offset >= chosen.size:
            raise UsageError(f"offset {offset:#x} is past the end of {chosen.spelled} (size {chosen.size:#x})")
        address = value + offset
        aliases = sorted({s.spelled for s in symbols
                          if s.value == chosen.value and s.name != chosen.name
                          and s.type in ("STT_FUNC", "STT_NOTYPE")})
        return ResolvedSymbol(path, chosen.spelled, address, file_offset(elf, address, path),
                              tuple(aliases), chosen.table, elf.header.e_type, chosen.size)


def _unknown_symbol_message(symbol: str, base: str, symbols: list[ElfSymbol], tables: list[str],
                            path: str) -> str:
    import difflib
    names = sorted({s.name for s in symbols if s.type in ("STT_FUNC", "STT_NOTYPE", "STT_GNU_IFUNC")})
    if base in names:
        versions = sorted({s.spelled for s in symbols if s.name == base})
        return f"{symbol!r} not found in {path}; it has {', '.join(versions)}"
    close = difflib.get_close_matches(base, names, n=4, cutoff=0.7)
    where = " and ".join(tables)
    extra = f"; did you mean {', '.join(close)}?" if close else ""
    only_dynamic = "" if ".symtab" in tables else " (only exported symbols: .symtab was stripped)"
    return f"function {symbol!r} not found in {where} of {path}{only_dynamic}{extra}"


def _ifunc_implementations(base: str, symbols: list[ElfSymbol]) -> str:
    prefixes = (f"__{base}_", f"{base}_")
    names = sorted({s.name for s in symbols if s.type == "STT_FUNC" and s.name.startswith(prefixes)})
    if names:
        return ", ".join(names[:4])
    return "they are local symbols, so install the library's debug symbols or use a virtual address"


# ---------------------------------------------------------------------------------------------------
# USDT (SystemTap SDT) probes: .note.stapsdt


@dataclass(frozen=True, slots=True)
class UsdtNote:
    """One statically defined probe site: where it is (file offsets) and how its arguments are spelled."""

    provider: str
    name: str
    address: int                    # virtual address of the probe's nop (after prelink adjustment)
    file_offset: int
    semaphore: int                  # virtual address of the semaphore, 0 if it has none
    semaphore_offset: int | None    # its file offset: the uprobe's (ref_ctr_offset)
    args: tuple[str, ...]           # e.g. "-4@%edi", "8@-8(%rbp)", "4@$5", "8@counter(%rip)"


def _align4(value: int) -> int:
    return (value + 3) & ~3


def read_usdt_notes(path: str, host: Host | None = None, *, machine: str | None = None) -> list[UsdtNote]:
    """Every USDT probe site of the ELF file `path`, from its .note.stapsdt section."""
    host = host or Host()
    machine = machine or host.machine()
    from elftools.common.exceptions import ELFError
    try:
        elf, f = _open_elf(host.path(path), path, machine)
        with f:
            return _read_usdt_notes(elf, path)
    except (ELFError, struct.error, ValueError, IndexError, KeyError, OSError) as exc:
        raise UsageError(f"{path} is a damaged ELF file ({type(exc).__name__}: {exc})") from None


def _read_usdt_notes(elf, path: str) -> list[UsdtNote]:
    section = elf.get_section_by_name(".note.stapsdt")
    if section is None:
        return []
    base_section = elf.get_section_by_name(".stapsdt.base")
    endian = "<" if elf.little_endian else ">"
    word = struct.Struct(endian + ("QQQ" if elf.elfclass == 64 else "III"))
    header = struct.Struct(endian + "III")
    data = section.data()
    notes = []
    at = 0
    while at + header.size <= len(data):
        namesz, descsz, kind = header.unpack_from(data, at)
        name = data[at + header.size:at + header.size + namesz]
        desc_at = _align4(at + header.size + namesz)
        desc = data[desc_at:desc_at + descsz]
        at = _align4(desc_at + descsz)
        if kind != 3 or name.rstrip(b"\0") != b"stapsdt" or len(desc) < word.size:
            continue
        pc, base, semaphore = word.unpack_from(desc, 0)
        strings = desc[word.size:].split(b"\0")
        if len(strings) < 2:
            continue
        provider, probe = strings[0].decode("utf-8", "replace"), strings[1].decode("utf-8", "replace")
        args = strings[2].decode("utf-8", "replace").split() if len(strings) > 2 else []
        # The note records the link-time address of .stapsdt.base; prelinking moves both together.
        if base_section is not None and base:
            shift = base_section["sh_addr"] - base
            pc += shift
            if semaphore:
                semaphore += shift
        semaphore_offset = file_offset(elf, semaphore, path) if semaphore else None
        notes.append(UsdtNote(provider, probe, pc, file_offset(elf, pc, path), semaphore, semaphore_offset,
                              tuple(args)))
    return notes


def find_usdt(path: str, provider: str | None, name: str, host: Host | None = None, *,
              machine: str | None = None) -> UsdtNote:
    """The one USDT site `provider:name` in `path`; UsageError with the probes it has otherwise."""
    notes = read_usdt_notes(path, host, machine=machine)
    if not notes:
        raise UsageError(f"{path} has no USDT probes (no .note.stapsdt section)")
    matches = [n for n in notes if n.name == name and (provider is None or n.provider == provider)]
    if not matches:
        import difflib
        known = sorted({f"{n.provider}:{n.name}" for n in notes})
        wanted = f"{provider}:{name}" if provider else name
        close = difflib.get_close_matches(wanted, known, n=3, cutoff=0.6)
        extra = f"; did you mean {', '.join(close)}?" if close else f"; it has {', '.join(known[:8])}"
        raise UsageError(f"USDT probe {wanted!r} not found in {path}{extra}")
    providers = sorted({n.provider for n in matches})
    if len(providers) > 1:
        raise UsageError(f"USDT probe {name!r} exists for several providers in {path}: {', '.join(providers)}",
                         hint="write usdt:TARGET:PROVIDER:NAME")
    if len(matches) > 1:
        sites = ", ".join(f"{n.address:#x}" for n in matches)
        raise UsageError(f"USDT probe {providers[0]}:{name} has {len(matches)} sites in {path} ({sites}); "
                         "rawtrace probes one site per event",
                         hint="probe a site as uprobe:TARGET:0xADDRESS with its registers")
    return matches[0]


def symbol_address(path: str, symbol: str, host: Host | None = None, *, machine: str | None = None) -> int:
    """Virtual address of any defined symbol (data included), e.g. for a USDT argument `8@counter(%rip)`."""
    host = host or Host()
    machine = machine or host.machine()
    view = host.path(path)
    elf, f = _open_elf(view, path, machine)
    with f:
        symbols, _tables = _cached_symbols(view, elf)
    base, version, _default = _split_version(symbol)
    found = sorted({s.value for s in symbols if s.name == base and (version is None or s.version == version)})
    if len(found) != 1:
        problem = "not found" if not found else "ambiguous"
        raise UsageError(f"symbol {symbol!r} of a USDT argument is {problem} in {path}")
    return found[0]
