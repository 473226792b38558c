"""The single place that holds ctypes: libc calls the standard library does not wrap (mount, capget, fallocate, prctl)."""

from __future__ import annotations

import ctypes
import os
import sys

_libc = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        try:
            # The glibc soname directly: ctypes.util.find_library forks ldconfig (~5 ms, +4 ms to import).
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            from ctypes.util import find_library
            _libc = ctypes.CDLL(find_library("c") or "libc.so", use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str | None = None) -> None:
    """mount(2); raises OSError with errno on failure."""
    f = libc().mount
    f.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    f.restype = ctypes.c_int
    _check(f(source.encode(), target.encode(), fstype.encode(), flags,
             data.encode() if data is not None else None), "mount")


def umount(target: str) -> None:
    f = libc().umount
    f.argtypes = [ctypes.c_char_p]
    f.restype = ctypes.c_int
    _check(f(target.encode()), "umount")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capget_effective(pid: int = 0) -> int:
    """The effective capability set of `pid` (0 = this process) as a 64-bit mask, via capget(2)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    f = libc().capget
    f.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
    f.restype = ctypes.c_int
    _check(f(ctypes.byref(header), data), "capget")
    return data[0].effective | (data[1].effective << 32)


FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) with a mode (os.posix_fallocate has none): e.g. punch a hole that frees disk blocks."""
    f = libc().fallocate
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    f.restype = ctypes.c_int
    _check(f(fd, mode, offset, length), "fallocate")


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Free the blocks of [offset, offset+length) in a file, keeping its size (reads there give zeros)."""
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)


PR_SET_PDEATHSIG = 1


def prctl(option: int, arg2: int = 0) -> int:
    """prctl(2) with one argument (e.g. PR_SET_PDEATHSIG)."""
    f = libc().prctl
    f.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    f.restype = ctypes.c_int
    return _check(f(option, arg2, 0, 0, 0), "prctl")


# ---------------------------------------------------------------------------------------------------
# fanotify (used by rawtrace.fanotify): fanotify_init/fanotify_mark, file handles, fsid of a filesystem.

def fanotify_init(flags: int, event_f_flags: int) -> int:
    """fanotify_init(2): a new notification group's fd; raises OSError with errno."""
    f = libc().fanotify_init
    f.argtypes = [ctypes.c_uint, ctypes.c_uint]
    f.restype = ctypes.c_int
    return _check(f(flags, event_f_flags), "fanotify_init")


def fanotify_mark(fd: int, flags: int, mask: int, dirfd: int, path: str | None) -> None:
    """fanotify_mark(2) on `path` (relative to dirfd; None marks dirfd itself)."""
    f = libc().fanotify_mark
    f.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
    f.restype = ctypes.c_int
    encoded = os.fsencode(path) if path is not None else None
    _check(f(fd, flags, mask, dirfd, encoded), "fanotify_mark")


def open_by_handle_at(mount_fd: int, handle: bytes, flags: int) -> int:
    """open_by_handle_at(2): `handle` is a whole struct file_handle (handle_bytes, handle_type, f_handle)."""
    f = libc().open_by_handle_at
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    f.restype = ctypes.c_int
    buffer = ctypes.create_string_buffer(handle, len(handle))
    return _check(f(mount_fd, buffer, flags), "open_by_handle_at")


# struct statfs on 64-bit Linux: seven 8-byte counters (f_type .. f_ffree), then f_fsid (two ints).
_STATFS_SIZE = 120
_STATFS_FSID_OFFSET = 56


def fstatfs_fsid(fd: int) -> tuple[int, int]:
    """The filesystem id (f_fsid.val[0], val[1]) of the filesystem `fd` is on, as fanotify reports it."""
    if ctypes.sizeof(ctypes.c_long) != 8:
        raise OSError(0, "fstatfs_fsid: only 64-bit layouts are known")
    f = libc().fstatfs
    f.argtypes = [ctypes.c_int, ctypes.c_char_p]
    f.restype = ctypes.c_int
    buffer = ctypes.create_string_buffer(_STATFS_SIZE)
    _check(f(fd, buffer), "fstatfs")
    raw = buffer.raw
    return (int.from_bytes(raw[_STATFS_FSID_OFFSET:_STATFS_FSID_OFFSET + 4], sys.byteorder, signed=True),
            int.from_bytes(raw[_STATFS_FSID_OFFSET + 4:_STATFS_FSID_OFFSET + 8], sys.byteorder, signed=True))


# -- lazy unmount (doctor) -----------------------------------------------------------------------------

MNT_DETACH = 2      # include/linux/fs.h


def umount_detach(target: str) -> None:
    """umount2(target, MNT_DETACH): detach now, free when no longer in use; raises OSError on failure."""
    f = libc().umount2
    f.argtypes = [ctypes.c_char_p, ctypes.c_int]
    f.restype = ctypes.c_int
    _check(f(target.encode(), MNT_DETACH), "umount2")


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_readv = None
_readv_buffer = None


def process_vm_readv(pid: int, address: int, size: int) -> bytes:
    """Up to `size` bytes of process `pid`'s memory at `address` (fewer where a page cannot be read: the
    kernel stops there); raises OSError when not even the first byte can be read."""
    global _readv, _readv_buffer
    if _readv is None:
        f = libc().process_vm_readv
        f.argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.POINTER(_IoVec),
                      ctypes.c_ulong, ctypes.c_ulong]
        f.restype = ctypes.c_ssize_t
        _readv = f
    if _readv_buffer is None or len(_readv_buffer) < size:
        _readv_buffer = ctypes.create_string_buffer(max(size, 1 << 16))      # kept: one allocation, not one per read
    local = _IoVec(ctypes.cast(_readv_buffer, ctypes.c_void_p), size)
    remote = _IoVec(address, size)
    got = _readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if got < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"process_vm_readv: {os.strerror(err)}")
    return ctypes.string_at(_readv_buffer, got)
