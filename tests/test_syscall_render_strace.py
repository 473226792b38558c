"""Oracle: our rendering of strace's raw argument values matches strace's own decoding, argument by argument.

strace runs the same workload twice (symbolic, then `-X raw -e raw=all`, ASLR off); the raw run gives
the values a tracepoint would carry, the symbolic run what we should print. Strings, arrays and structs
(which strace reads from the tracee's memory) are skipped. Skipped when strace/setarch are missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from rawtrace.syscalls import constants as C
from rawtrace.syscalls.render import SyscallFormatter

# The argument lists exactly as events/syscalls/sys_enter_*/format prints them on x86_64 6.18.
PARAMS = {
    "openat": [("dfd", "int"), ("filename", "const char *"), ("flags", "int"), ("mode", "umode_t")],
    "lseek": [("fd", "unsigned int"), ("offset", "off_t"), ("whence", "unsigned int")],
    "close": [("fd", "unsigned int")],
    "mmap": [("addr", "unsigned long"), ("len", "unsigned long"), ("prot", "unsigned long"),
             ("flags", "unsigned long"), ("fd", "unsigned long"), ("off", "unsigned long")],
    "mprotect": [("start", "unsigned long"), ("len", "size_t"), ("prot", "unsigned long")],
    "munmap": [("addr", "unsigned long"), ("len", "size_t")],
    "kill": [("pid", "pid_t"), ("sig", "int")],
    "umask": [("mask", "int")],
    "pipe2": [("fildes", "int *"), ("flags", "int")],
    "socket": [("family", "int"), ("type", "int"), ("protocol", "int")],
    "access": [("filename", "const char *"), ("mode", "int")],
    "unlink": [("pathname", "const char *")],
    "fcntl": [("fd", "unsigned int"), ("cmd", "unsigned int"), ("arg", "unsigned long")],
    "dup3": [("oldfd", "unsigned int"), ("newfd", "unsigned int"), ("flags", "int")],
    "rt_sigprocmask": [("how", "int"), ("nset", "sigset_t *"), ("oset", "sigset_t *"),
                       ("sigsetsize", "size_t")],
    "flock": [("fd", "unsigned int"), ("cmd", "unsigned int")],
    "madvise": [("start", "unsigned long"), ("len_in", "size_t"), ("behavior", "int")],
    "getrandom": [("ubuf", "char *"), ("len", "size_t"), ("flags", "unsigned int")],
    "memfd_create": [("uname", "const char *"), ("flags", "unsigned int")],
    "eventfd2": [("count", "unsigned int"), ("flags", "int")],
    "rt_sigaction": [("sig", "int"), ("act", "const struct sigaction *"), ("oact", "struct sigaction *"),
                     ("sigsetsize", "size_t")],
    "wait4": [("upid", "pid_t"), ("stat_addr", "int *"), ("options", "int"), ("ru", "struct rusage *")],
}

WORKLOAD = r'''
import fcntl, mmap, os, signal, socket
os.umask(0o123)  # begin marker
fd = os.open(PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_APPEND, 0o640)
os.lseek(fd, 0, os.SEEK_END)
fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK | os.O_APPEND)
fcntl.fcntl(fd, fcntl.F_GETFL)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.dup2(fd, 100, inheritable=False)
os.close(fd)
for flags in (os.O_RDONLY, os.O_RDONLY | os.O_DIRECTORY, os.O_RDWR | os.O_NOFOLLOW | os.O_EXCL | os.O_CREAT):
    try:
        os.close(os.open("/nonexistent/x", flags))
    except OSError:
        pass
m = mmap.mmap(-1, 8192, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ | mmap.PROT_WRITE)
m.madvise(mmap.MADV_DONTNEED)
os.kill(os.getpid(), 0)
try:
    os.kill(0x7ffffff0, signal.SIGTERM)
except OSError:
    pass
r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
s1 = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
s2 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
s3 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
os.access("/tmp", os.R_OK | os.W_OK)
os.access("/nonexistent", os.F_OK)
os.unlink(PATH)
os.getrandom(4, os.GRND_NONBLOCK)
os.close(os.memfd_create("rawtrace", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING))
os.close(os.eventfd(3, os.EFD_CLOEXEC | os.EFD_NONBLOCK))
signal.signal(signal.SIGUSR2, signal.SIG_IGN)
try:
    os.waitpid(-1, os.WNOHANG)
except ChildProcessError:
    pass
os.umask(0o321)  # end marker
'''

LINE = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+= (?P<ret>.*)$")


def split_args(text: str) -> list[str]:
    """Split strace's argument text at top-level commas (quotes, [], {} nest)."""
    parts, depth, quoted, escaped, current = [], 0, False, False, []
    for ch in text:
        if quoted:
            current.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if current or parts:
        parts.append("".join(current).strip())
    return parts


def run_strace(tmp_path, raw: bool) -> list[tuple[str, list[str], str]]:
    out = tmp_path / ("raw.txt" if raw else "sym.txt")
    script = tmp_path / "workload.py"
    script.write_text(f"PATH = {str(tmp_path / 'file')!r}\n" + WORKLOAD)
    cmd = ["setarch", "-R", "strace", "-qq", "-e", "signal=none", "-e", "trace=" + ",".join(PARAMS), "-o",
           str(out)]
    if raw:
        cmd += ["-X", "raw", "-e", "raw=all"]
    proc = subprocess.run(cmd + [sys.executable, "-S", "-E", str(script)], check=False, capture_output=True,
                          text=True, timeout=120, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    if proc.returncode != 0:
        pytest.skip(f"strace could not run here: {proc.stderr.strip()[:200]}")
    calls = []
    for line in out.read_text().splitlines():
        m = LINE.match(line)
        if m:
            calls.append((m["name"], split_args(m["args"]), m["ret"].strip()))
    return calls


def between_markers(calls, begin: str, end: str):
    marks = [i for i, (name, args, _) in enumerate(calls)
             if name == "umask" and args and args[0] in (begin, end)]
    assert len(marks) == 2, f"markers not found: {marks}"
    return calls[marks[0]:marks[1] + 1]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="argument lists above are x86_64's")
@pytest.mark.skipif(not (shutil.which("strace") and shutil.which("setarch")), reason="strace not installed")
def test_rendering_matches_strace(tmp_path):
    sym = between_markers(run_strace(tmp_path, raw=False), "0123", "0321")
    raw = between_markers(run_strace(tmp_path, raw=True), "0x53", "0xd1")
    assert [c[0] for c in sym] == [c[0] for c in raw], "the two runs made different syscalls"
    formatter = SyscallFormatter("x86_64")
    compared = 0
    for (name, strace_args, strace_ret), (_, raw_args, raw_ret) in zip(sym, raw):
        values = [int(v, 0) for v in raw_args]
        args = [(p, t, v) for (p, t), v in zip(PARAMS[name], values)]
        ours = formatter.format_call(name, args)
        our_args = split_args(ours[len(name) + 1:-1])
        assert len(our_args) == len(strace_args), (ours, strace_args)
        for (param, ctype), mine, theirs in zip(PARAMS[name], our_args, strace_args):
            if theirs[:1] in ('"', "[", "{") or "*" in ctype:
                continue  # strace read the tracee's memory; a tracepoint has only the pointer
            if name == "mmap" and param == "addr" or name in ("munmap", "mprotect", "madvise") and \
                    param in ("addr", "start"):
                continue  # addresses: the same only if both runs got the same layout
            if param == "pid" and mine != theirs and mine.isdigit():
                continue  # each run is its own process
            assert mine == theirs, f"{name} {param}: ours {mine!r}, strace {theirs!r}"
            compared += 1
        if raw_ret.startswith("-1 "):
            ret = -C.errno_number("x86_64", raw_ret.split()[1])
        else:
            ret = int(raw_ret.split()[0], 0)
        if name not in ("mmap",):
            assert formatter.format_return(name, ret, args) == strace_ret, name
            compared += 1
    print(f"compared {compared} values over {len(sym)} calls")
    assert compared >= 40
