"""The single place that knows host paths (/sys, /proc, tracefs, securityfs, efivarfs); honours --root."""

from __future__ import annotations

import errno
import os
import stat

TRACEFS_DEFAULT = "/sys/kernel/tracing"
TRACEFS_DEBUGFS = "/sys/kernel/debug/tracing"
SECURITYFS_DEFAULT = "/sys/kernel/security"
EFIVARS_DEFAULT = "/sys/firmware/efi/efivars"


class Host:
    """A view of the machine rooted at `root` ("/" live, or a captured/fake tree in tests).

    `tracefs_override` overrides tracefs discovery (a directory used as is, relative to nothing).
    A plain class, not a dataclass: importing dataclasses costs ~5 ms of every command's start-up. The
    paths are kept as strings and given as pathlib.Path only when asked for (`root`, `path()`): importing
    pathlib costs ~4 ms, which list-syscalls and format do without (`join()` gives a string)."""

    __slots__ = ("_root", "_tracefs")

    def __init__(self, root: str | os.PathLike = "/", tracefs_override: str | os.PathLike | None = None) -> None:
        self._root = clean_path(os.fspath(root))
        self._tracefs = clean_path(os.fspath(tracefs_override)) if tracefs_override is not None else None

    @property
    def root(self):
        """The root as a pathlib.Path."""
        from pathlib import Path
        return Path(self._root)

    @property
    def root_dir(self) -> str:
        return self._root

    @property
    def tracefs_override(self):
        """--tracefs as a pathlib.Path (None without one)."""
        if self._tracefs is None:
            return None
        from pathlib import Path
        return Path(self._tracefs)

    @property
    def tracefs_dir(self) -> str | None:
        """--tracefs as a string (None without one)."""
        return self._tracefs

    def __repr__(self) -> str:
        return f"Host(root={self._root!r}, tracefs_override={self._tracefs!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Host) and self._root == other._root and self._tracefs == other._tracefs

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_env(cls, root: str | None = None, tracefs: str | None = None) -> Host:
        root = root or os.environ.get("RAWTRACE_ROOT") or "/"
        tracefs = tracefs or os.environ.get("RAWTRACE_TRACEFS")
        return cls(root, tracefs or None)

    @property
    def is_live(self) -> bool:
        return self._root == "/"

    def join(self, absolute: str) -> str:
        """Map an absolute host path into this view, as a string (`/proc/mounts` → `<root>/proc/mounts`)."""
        if self._root == "/":
            return absolute
        return self._root + "/" + absolute.lstrip("/")

    def path(self, absolute: str):
        """join() as a pathlib.Path."""
        from pathlib import Path
        return Path(self.join(absolute))

    def read_text(self, absolute: str) -> str | None:
        """The file's text, or None if it cannot be read (missing, no permission)."""
        return read_text_or_none(self.join(absolute))

    def machine(self) -> str:
        """The kernel's machine name as `uname -m` prints it: the running kernel's, or for a --root
        tree the one it recorded in proc/sys/kernel/arch (that of the running kernel if it has none)."""
        if not self.is_live:
            recorded = (self.read_text("/proc/sys/kernel/arch") or "").strip()
            if recorded:
                return recorded
        return host_machine()

    def mounts(self) -> list[tuple[str, str, str, str]]:
        """(source, mountpoint, fstype, options) from /proc/self/mounts (or /proc/mounts)."""
        text = self.read_text("/proc/self/mounts") or self.read_text("/proc/mounts") or ""
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 4:
                out.append((parts[0], _unescape_mount(parts[1]), parts[2], parts[3]))
        return out


# What a "small file" may hold (kernel and tracefs text files are far smaller).
SMALL_FILE_MAX = 64 << 20


def read_text_or_none(path: str | os.PathLike) -> str | None:
    """A small file's text (bytes that are not UTF-8 replaced), or None if it cannot be read.

    Only regular files are read (procfs, sysfs and tracefs files are), and at most SMALL_FILE_MAX bytes:
    a FIFO or device put in a copied tree must neither block the open nor fill memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > SMALL_FILE_MAX:
                return None
        text = b"".join(chunks).decode("utf-8", "replace")
        # Newlines as text-mode reading gives them (what callers of the earlier read_text() got).
        return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
    except OSError:
        return None
    finally:
        os.close(fd)


def stat_or_none(path: str) -> os.stat_result | None:
    """os.stat(path), or None where pathlib's exists() says False (missing, a file on the way, a symlink
    loop, a NUL byte in the path); other errors (EACCES) are raised, as pathlib raises them."""
    try:
        return os.stat(path)
    except ValueError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return None
        raise


def is_dir(path: str) -> bool:
    """pathlib's is_dir() for a string (errors as stat_or_none())."""
    st = stat_or_none(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def clean_path(path: str) -> str:
    """A path written the way pathlib.Path writes it: repeated slashes and `.` parts dropped, no trailing
    slash ("" is "."; a leading `//`, which POSIX leaves to the system, is kept as Path keeps it)."""
    if not path:
        return "."
    lead = "//" if path.startswith("//") and not path.startswith("///") else "/" if path.startswith("/") else ""
    parts = [part for part in path.split("/") if part and part != "."]
    return lead + "/".join(parts) if parts or lead else "."


def _unescape_mount(text: str) -> str:
    """Undo the octal escapes (\\040 for space) that /proc/mounts uses; anything else (`\\999`, a
    backslash near the end) is kept as written."""
    if "\\" not in text:
        return text
    from rawtrace.asciinum import ascii_int
    out, i = [], 0
    while i < len(text):
        value = ascii_int(text[i + 1:i + 4], 8) if text[i] == "\\" and i + 3 < len(text) else None
        if value is not None and value < 256:
            out.append(chr(value))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def host_machine() -> str:
    """The running kernel's machine name as `uname -m` prints it (x86_64, aarch64, ...)."""
    return os.uname().machine
