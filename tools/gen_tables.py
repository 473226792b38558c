#!/usr/bin/env python3
"""Generate tables/*.tbl from a Linux kernel source tree (or a tarball of one, or single .tbl files).

Usage:
  tools/gen_tables.py --tarball /usr/src/linux-source-6.12.tar.xz      # extracts only the files it needs
  tools/gen_tables.py --tree /path/to/linux
  tools/gen_tables.py --tree /tmp/linux-6.19      # a directory holding just the needed files, tree layout
  tools/gen_tables.py --tree /tmp/linux-6.18.2 --only s390_31.tbl   # regenerate some tables only
  tools/gen_tables.py --list-files                # the paths a --tree directory must hold
  tools/gen_tables.py --kernel-version 6.19 --file x86_64.tbl=/path/syscall_64.tbl   # one table by hand

A --tree directory need not be a whole kernel: the top Makefile (only its VERSION lines are read), the
files --list-files names, laid out as in the kernel, are enough; a table whose source is absent is
skipped and its committed file left as it is (each file's header names the version it came from).

Each output keeps the kernel's .tbl row format (nr, abi tag, name, entry, compat entry, flags), so rawtrace
parses one format at run time. Arches that use the generic table (scripts/syscall.tbl) get it filtered with
the ABI tags their arch/*/kernel/Makefile.syscalls selects, exactly as scripts/Makefile.asm-headers does.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "tables"
GENERIC_TABLE = "scripts/syscall.tbl"


@dataclass(frozen=True)
class Job:
    out: str                  # file name under tables/
    source: str               # path in the kernel tree
    generic_arch: str = ""    # for the generic table: arch/<this>/kernel/Makefile.syscalls picks the ABIs
    word_size: int = 0        # for the generic table: which syscall_abis_<32|64> list applies
    keep_compat: bool = True  # drop the compat column where the kernel never uses it for this table
    tags: tuple[str, ...] = ()  # keep only rows with these ABI tags (empty: every row)
    # A table only older kernels have: a tree without rows of these tags is skipped (the committed file,
    # from the last kernel that had them, is kept).
    needs_tags: tuple[str, ...] = ()
    note: str = ""


JOBS: tuple[Job, ...] = (
    Job("x86_64.tbl", "arch/x86/entry/syscalls/syscall_64.tbl"),
    Job("i386.tbl", "arch/x86/entry/syscalls/syscall_32.tbl"),
    Job("arm.tbl", "arch/arm/tools/syscall.tbl"),
    Job("arm64.tbl", GENERIC_TABLE, "arm64", 64, keep_compat=False,
        note="arm64 compat tasks use arm64_aarch32.tbl, so the generic compat column is dropped"),
    Job("arm64_aarch32.tbl", "arch/arm64/tools/syscall_32.tbl"),
    Job("riscv64.tbl", GENERIC_TABLE, "riscv", 64, keep_compat=False,
        note="rv32 compat tasks use riscv32.tbl (whose compat column is kept)"),
    Job("riscv32.tbl", GENERIC_TABLE, "riscv", 32),
    Job("loongarch64.tbl", GENERIC_TABLE, "loongarch", 64, keep_compat=False),
    Job("arc.tbl", GENERIC_TABLE, "arc", 32, keep_compat=False),
    Job("csky.tbl", GENERIC_TABLE, "csky", 32, keep_compat=False),
    Job("hexagon.tbl", GENERIC_TABLE, "hexagon", 32, keep_compat=False),
    Job("nios2.tbl", GENERIC_TABLE, "nios2", 32, keep_compat=False),
    Job("openrisc.tbl", GENERIC_TABLE, "openrisc", 32, keep_compat=False),
    Job("powerpc.tbl", "arch/powerpc/kernel/syscalls/syscall.tbl"),
    # Linux 6.19 removed s390 31-bit compat: its table has only "common" rows and no compat column. The
    # 64-bit table follows the current kernel; the 31-bit rows (common + 32, with their compat entries) come
    # from the last kernel that had them and stay as committed when a newer tree is generated.
    Job("s390.tbl", "arch/s390/kernel/syscalls/syscall.tbl", tags=("common", "64"), keep_compat=False,
        note="64-bit ABI only: 31-bit tasks use s390_31.tbl"),
    Job("s390_31.tbl", "arch/s390/kernel/syscalls/syscall.tbl", tags=("common", "32"), needs_tags=("32",),
        note="31-bit compat ABI (common + 32 rows; the compat column is their entry). Linux 6.19 removed "
             "it, so this table comes from the last kernel that had it"),
    Job("sparc.tbl", "arch/sparc/kernel/syscalls/syscall.tbl"),
    Job("parisc.tbl", "arch/parisc/kernel/syscalls/syscall.tbl"),
    Job("mips_n64.tbl", "arch/mips/kernel/syscalls/syscall_n64.tbl"),
    Job("mips_n32.tbl", "arch/mips/kernel/syscalls/syscall_n32.tbl"),
    Job("mips_o32.tbl", "arch/mips/kernel/syscalls/syscall_o32.tbl"),
    Job("alpha.tbl", "arch/alpha/kernel/syscalls/syscall.tbl"),
    Job("m68k.tbl", "arch/m68k/kernel/syscalls/syscall.tbl"),
    Job("sh.tbl", "arch/sh/kernel/syscalls/syscall.tbl"),
    Job("xtensa.tbl", "arch/xtensa/kernel/syscalls/syscall.tbl"),
    Job("microblaze.tbl", "arch/microblaze/kernel/syscalls/syscall.tbl"),
)

# Files read besides the tables: the version, the generic ABI defaults and each arch's ABI choices.
EXTRA_FILES = ("Makefile", "scripts/Makefile.asm-headers")


def needed_files() -> list[str]:
    paths = set(EXTRA_FILES)
    for job in JOBS:
        paths.add(job.source)
        if job.generic_arch:
            paths.add(f"arch/{job.generic_arch}/kernel/Makefile.syscalls")
    return sorted(paths)


def kernel_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL[EXTRAVERSION] from the top Makefile."""
    values = {}
    for line in (tree / "Makefile").read_text().splitlines()[:12]:
        match = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)", line)
        if match:
            values[match.group(1)] = match.group(2)
    version = f"{values['VERSION']}.{values['PATCHLEVEL']}"
    if values.get("SUBLEVEL", "0") != "0":
        version += f".{values['SUBLEVEL']}"
    return version + values.get("EXTRAVERSION", "")


def _abi_list(text: str, word_size: int) -> list[str]:
    """The tags `syscall_abis_<N> += a b c` adds (Makefile words, comma or space separated)."""
    tags: list[str] = []
    for line in text.splitlines():
        match = re.match(rf"^\s*syscall_abis_{word_size}\s*\+?=\s*(.*)$", line)
        if match:
            tags += [t for t in re.split(r"[\s,]+", match.group(1).split("#")[0]) if t]
    return tags


def generic_abis(tree: Path, arch: str, word_size: int) -> list[str]:
    """The generic table's tags for an arch: the defaults plus what its Makefile.syscalls adds."""
    defaults_file = tree / "scripts/Makefile.asm-headers"
    defaults = _abi_list(defaults_file.read_text(), word_size) if defaults_file.exists() \
        else ["common", str(word_size)]
    arch_file = tree / f"arch/{arch}/kernel/Makefile.syscalls"
    extra = _abi_list(arch_file.read_text(), word_size) if arch_file.exists() else []
    out: list[str] = []
    for tag in defaults + extra:
        if tag not in out:
            out.append(tag)
    return out


def table_rows(text: str, source: str) -> list[list[str]]:
    """The kernel .tbl rows as column lists; comments and blank lines dropped, numbers checked."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        cols = body.split()
        if len(cols) < 3 or not cols[0].isdigit():
            raise SystemExit(f"{source}:{number}: not a syscall table row: {line!r}")
        rows.append(cols)
    return rows


def render(rows: list[list[str]], *, version: str, source: str, extra_header: list[str],
           spdx: str | None) -> str:
    header = []
    if spdx:
        header.append(f"# {spdx}")
    header += [
        f"# Generated by tools/gen_tables.py from Linux {version} {source}; do not edit.",
        f"# kernel: {version}",
        f"# source: {source}",
    ]
    header += [f"# {line}" for line in extra_header]
    header.append("# <nr> <abi> <name> [<entry point> [<compat entry point> [<flags>]]]  ('-': none)")
    body = []
    for cols in rows:
        name_pad = cols[2].ljust(24)
        rest = "\t".join(cols[3:])
        body.append(f"{cols[0]}\t{cols[1]}\t{name_pad}\t{rest}".rstrip())
    return "\n".join(header + body) + "\n"


def _spdx(text: str) -> str | None:
    for line in text.splitlines()[:3]:
        if "SPDX-License-Identifier" in line:
            return line.lstrip("#/* ").rstrip(" */")
    return None


def generate_job(tree: Path, job: Job, version: str) -> str:
    path = tree / job.source
    text = path.read_text()
    rows = table_rows(text, job.source)
    extra: list[str] = []
    if job.tags:
        rows = [cols for cols in rows if cols[1] in job.tags]
        extra.append(f"abis: {','.join(job.tags)}")
    if job.generic_arch:
        tags = generic_abis(tree, job.generic_arch, job.word_size)
        rows = [cols for cols in rows if cols[1] in tags]
        extra.append(f"abis: {','.join(tags)} (scripts/Makefile.asm-headers syscall_abis_{job.word_size}"
                     f" + arch/{job.generic_arch}/kernel/Makefile.syscalls)")
    if not job.keep_compat and any(len(cols) > 4 for cols in rows):
        rows = [cols[:4] + ([] if len(cols) <= 5 else ["-"] + cols[5:]) for cols in rows]
        extra.append("compat column dropped: the kernel does not use it for this table")
    if job.note:
        extra.append(job.note)
    return render(rows, version=version, source=job.source, extra_header=extra, spdx=_spdx(text))


def extract_from_tarball(tarball: Path, dest: Path) -> Path:
    """Extract only the needed files (with tar, which handles .xz fast); return the tree root.

    Decompressing the whole archive twice (list, then extract) doubles the time, so the top directory
    comes from the first entry alone and members an older tree lacks are reported, not fatal."""
    with subprocess.Popen(["tar", "-tf", str(tarball)], stdout=subprocess.PIPE, text=True) as lister:
        first = lister.stdout.readline() if lister.stdout else ""
        lister.kill()
    top = first.split("/", 1)[0]
    if not top:
        raise SystemExit(f"{tarball}: empty or unreadable archive")
    wanted = [f"{top}/{p}" for p in needed_files()]
    # Missing members make tar exit non-zero after extracting the rest; what is absent is checked below.
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(dest)] + wanted, stderr=subprocess.DEVNULL,
                   check=False)
    missing = [p for p in wanted if not (dest / p).exists()]
    if missing:
        print(f"note: not in {tarball.name}: {', '.join(missing)}", file=sys.stderr)
    # Symlinks inside the tree (arch/arm64/tools/syscall_64.tbl -> scripts/syscall.tbl) are not
    # needed: every job names the real file.
    return dest / top


def _has_tags(path: Path, tags: Collection[str]) -> bool:
    return any(cols[1] in tags for cols in table_rows(path.read_text(), str(path)))


def generate_tree(tree: Path, out_dir: Path, only: Collection[str] = ()) -> list[Path]:
    """Write every table (or those named in `only`) whose source file the tree holds."""
    if not (tree / "Makefile").is_file():
        raise SystemExit(f"{tree}: no top-level Makefile, so the kernel version is unknown")
    unknown = sorted(set(only) - {job.out for job in JOBS})
    if unknown:
        raise SystemExit(f"unknown table(s): {', '.join(unknown)} (known: {', '.join(j.out for j in JOBS)})")
    version = kernel_version(tree)
    written = []
    for job in JOBS:
        if only and job.out not in only:
            continue
        if not (tree / job.source).exists():
            print(f"skip {job.out}: {job.source} not in this tree", file=sys.stderr)
            continue
        if job.needs_tags and not _has_tags(tree / job.source, job.needs_tags):
            print(f"skip {job.out}: {job.source} has no {'/'.join(job.needs_tags)} rows in {version} "
                  f"(the committed file keeps the version it came from)", file=sys.stderr)
            continue
        abi_file = f"arch/{job.generic_arch}/kernel/Makefile.syscalls"
        if job.generic_arch and not (tree / abi_file).exists():
            # Without it the arch's extra ABI tags are unknown and the table would silently lack rows.
            print(f"skip {job.out}: {abi_file} not in this tree", file=sys.stderr)
            continue
        out = out_dir / job.out
        out.write_text(generate_job(tree, job, version))
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--tree", type=Path,
                       help="root of a kernel source tree, or a directory of just the needed files in its layout")
    group.add_argument("--list-files", action="store_true", help="print the paths read from a tree, and exit")
    group.add_argument("--tarball", type=Path, help="a kernel source tarball (e.g. linux-source-6.12.tar.xz)")
    group.add_argument("--file", action="append", metavar="OUT=PATH",
                       help="convert one table file (OUT is the name under tables/, e.g. x86_64.tbl)")
    parser.add_argument("--kernel-version", help="with --file: the kernel version the file comes from")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="with --tree/--tarball: write only this table (e.g. s390.tbl); repeatable")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default {OUT_DIR})")
    args = parser.parse_args(argv)
    if args.list_files:
        print("\n".join(needed_files()))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.file:
        if not args.kernel_version:
            parser.error("--file needs --kernel-version")
        for spec in args.file:
            out, _, path = spec.partition("=")
            text = Path(path).read_text()
            source = next((j.source for j in JOBS if j.out == out), Path(path).name)
            rows = table_rows(text, path)
            (args.out / out).write_text(render(rows, version=args.kernel_version, source=source,
                                               extra_header=[], spdx=_spdx(text)))
            print(f"wrote {args.out / out}")
        return 0
    if args.tarball:
        with tempfile.TemporaryDirectory(prefix="rawtrace-gen-") as tmp:
            written = generate_tree(extract_from_tarball(args.tarball, Path(tmp)), args.out, args.only)
    else:
        written = generate_tree(args.tree, args.out, args.only)
    for path in written:
        print(f"wrote {path}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
