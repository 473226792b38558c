"""strace-style rendering of syscall arguments and return values."""

from __future__ import annotations

import pytest

from rawtrace.syscalls import constants as C
from rawtrace.syscalls import render as R
from rawtrace.syscalls.pairing import PAIR, RESUMED, UNFINISHED, SyscallPairer
from rawtrace.syscalls.render import RenderOptions, SyscallFormatter, errno_name

AT_FDCWD_SLOT = 0xffffff9c  # -100 as the kernel stores an int in an unsigned long slot (zero-extended)
PTR = 0x7ffd12345678


def openat_args(flags: int, mode: int = 0, dfd: int = AT_FDCWD_SLOT) -> list[tuple[str, str, int]]:
    # Exactly the field list of events/syscalls/sys_enter_openat/format on 6.18.
    return [("__syscall_nr", "int", 257), ("dfd", "int", dfd), ("filename", "const char *", PTR),
            ("flags", "int", flags), ("mode", "umode_t", mode)]


@pytest.fixture
def x86():
    return SyscallFormatter("x86_64")


def test_openat_rdonly_cloexec(x86):
    assert x86.render("openat", openat_args(0o2000000), 3) == \
        "openat(AT_FDCWD, 0x7ffd12345678, O_RDONLY|O_CLOEXEC) = 3"


def test_openat_creat_shows_mode_in_octal(x86):
    flags = 0o1 | 0o100 | 0o1000
    assert x86.format_call("openat", openat_args(flags, 0o644)) == \
        "openat(AT_FDCWD, 0x7ffd12345678, O_WRONLY|O_CREAT|O_TRUNC, 0644)"


def test_mode_left_out_without_creat_but_kept_in_json_form(x86):
    args = openat_args(0, 0o644)
    assert x86.format_call("openat", args).endswith("O_RDONLY)")
    symbolic = x86.symbolic_args("openat", args)
    assert symbolic == {"dfd": "AT_FDCWD", "filename": "0x7ffd12345678", "flags": "O_RDONLY", "mode": "0644"}


def test_o_tmpfile_differs_between_x86_64_and_arm64():
    x86_tmpfile = 0o20000000 | 0o200000 | 2   # __O_TMPFILE | O_DIRECTORY (asm-generic) | O_RDWR
    arm_tmpfile = 0o20000000 | 0o40000 | 2    # __O_TMPFILE | O_DIRECTORY (arm64) | O_RDWR
    x86, arm = SyscallFormatter("x86_64"), SyscallFormatter("arm64")
    assert x86.symbolic_args("openat", openat_args(x86_tmpfile))["flags"] == "O_RDWR|O_TMPFILE"
    assert arm.symbolic_args("openat", openat_args(arm_tmpfile))["flags"] == "O_RDWR|O_TMPFILE"
    # The x86 value on arm64 is __O_TMPFILE plus arm64's O_DIRECT, not a tmpfile open.
    assert arm.symbolic_args("openat", openat_args(x86_tmpfile))["flags"] == "O_RDWR|O_DIRECT|__O_TMPFILE"
    # O_TMPFILE implies a mode argument, like O_CREAT.
    assert x86.format_call("openat", openat_args(x86_tmpfile, 0o600)).endswith("O_RDWR|O_TMPFILE, 0600)")


def test_o_direct_differs_between_x86_64_and_arm64():
    x86, arm = SyscallFormatter("x86_64"), SyscallFormatter("arm64")
    assert x86.symbolic_args("openat", openat_args(0o40000))["flags"] == "O_RDONLY|O_DIRECT"
    assert arm.symbolic_args("openat", openat_args(0o200000))["flags"] == "O_RDONLY|O_DIRECT"
    assert arm.symbolic_args("openat", openat_args(0o40000))["flags"] == "O_RDONLY|O_DIRECTORY"
    assert x86.symbolic_args("openat", openat_args(0o200000))["flags"] == "O_RDONLY|O_DIRECTORY"
    assert C.open_flag_values("aarch64")["O_DIRECT"] == 0o200000
    assert C.open_flag_values("x86_64")["O_DIRECT"] == 0o40000


def test_powerpc_and_mips_open_flags():
    assert SyscallFormatter("ppc64le").symbolic_args("openat", openat_args(0o400000))["flags"] == \
        "O_RDONLY|O_DIRECT"
    mips = SyscallFormatter("mips64")
    assert mips.symbolic_args("openat", openat_args(0x0100 | 0x0008 | 1))["flags"] == \
        "O_WRONLY|O_CREAT|O_APPEND"


def test_unknown_bits_as_hex_remainder(x86):
    assert x86.symbolic_args("openat", openat_args(0o2000000 | 0x80000000))["flags"] == \
        "O_RDONLY|O_CLOEXEC|0x80000000"


def test_unknown_arch_gives_hex_numbers():
    f = SyscallFormatter("vax")
    # Without the arch's O_CREAT the mode cannot be known to be unused, so it is shown.
    assert f.format_call("openat", openat_args(0o2000000)) == "openat(AT_FDCWD, 0x7ffd12345678, 0x80000, 000)"
    assert f.format_return("openat", -2) == "-1 (errno 2)"
    assert f.format_call("kill", [("pid", "pid_t", 1), ("sig", "int", 15)]) == "kill(1, 0xf)"


def test_errno_rendering(x86):
    assert x86.format_return("openat", -2) == "-1 ENOENT (No such file or directory)"
    assert x86.format_return("openat", (1 << 64) - 2) == "-1 ENOENT (No such file or directory)"
    assert errno_name("x86_64", 2) == "ENOENT"
    assert errno_name("x86_64", 35) == "EDEADLK"
    assert errno_name("mips", 45) == "EDEADLK"
    assert errno_name("mips", 35) == "ENOMSG"
    assert errno_name("mips64el", 1133) == "EDQUOT"
    assert errno_name("ppc64le", 58) == "EDEADLOCK"
    assert errno_name("x86_64", 58) is None
    assert errno_name("sparc64", 2) is None  # not tabled: never borrow another arch's names
    assert SyscallFormatter("mips").format_return("flock", -45) == "-1 EDEADLK (Resource deadlock avoided)"


def test_kernel_internal_restart_codes(x86):
    assert x86.format_return("read", -512) == "? ERESTARTSYS (To be restarted if SA_RESTART is set)"


def test_return_values(x86):
    assert x86.format_return("openat", 3) == "3"
    assert x86.format_return("openat", None) == "?"
    assert x86.format_return("mmap", 0x7f1234560000) == "0x7f1234560000"
    assert x86.format_return("mmap", -12) == "-1 ENOMEM (Cannot allocate memory)"
    assert x86.format_return("lseek", 1 << 40) == str(1 << 40)
    # A 32-bit arch: the return slot is a 32-bit long.
    assert SyscallFormatter("i686").format_return("openat", 0xfffffffe) == \
        "-1 ENOENT (No such file or directory)"


def test_sign_extension_follows_the_c_type(x86):
    assert x86.symbolic_args("openat", openat_args(0, dfd=0xffffff9c))["dfd"] == "AT_FDCWD"
    # The same bits sign-extended to 64 (how a negative long would be stored) are AT_FDCWD too.
    assert x86.symbolic_args("openat", openat_args(0, dfd=(1 << 64) - 100))["dfd"] == "AT_FDCWD"
    assert x86.symbolic_args("openat", openat_args(0, dfd=5))["dfd"] == "5"
    assert x86.format_call("close", [("fd", "unsigned int", 0xffffffff)]) == "close(-1)"
    assert x86.format_call("dup", [("fildes", "int", 0xffffffff)]) == "dup(-1)"
    assert x86.format_call("x", [("a", "unsigned int", 0xffffffff)]) == "x(4294967295)"
    assert x86.format_call("x", [("a", "long", (1 << 64) - 1)]) == "x(-1)"
    assert x86.format_call("x", [("a", "size_t", (1 << 64) - 1)]) == f"x({(1 << 64) - 1})"
    assert x86.format_call("x", [("a", "loff_t", (1 << 64) - 1)]) == "x(-1)"
    assert x86.format_call("x", [("a", "short", 0xffff)]) == "x(-1)"
    assert x86.format_call("x", [("a", "some_unknown_t", 255)]) == "x(0xff)"
    # long is 32 bits on a 32-bit arch.
    assert SyscallFormatter("arm").format_call("x", [("a", "long", 0xffffffff)]) == "x(-1)"


def test_mmap_prot_and_flags(x86):
    args = [("__syscall_nr", "int", 9), ("addr", "unsigned long", 0), ("len", "unsigned long", 8192),
            ("prot", "unsigned long", 3), ("flags", "unsigned long", 0x22),
            ("fd", "unsigned long", (1 << 64) - 1), ("off", "unsigned long", 0)]
    assert x86.render("mmap", args, 0x7f0000001000) == \
        "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000001000"
    args[3] = ("prot", "unsigned long", 0)
    args[4] = ("flags", "unsigned long", 0x01 | 0x10 | 0x40 | 0x800000)
    assert x86.symbolic_args("mmap", args)["prot"] == "PROT_NONE"
    assert x86.symbolic_args("mmap", args)["flags"] == "MAP_SHARED|MAP_FIXED|MAP_32BIT|0x800000"
    # MAP_32BIT is x86 only: on arm64 the bit is unnamed.
    assert SyscallFormatter("arm64").symbolic_args("mmap", args)["flags"] == "MAP_SHARED|MAP_FIXED|0x800040"
    prot = [("start", "unsigned long", 0x1000), ("len", "size_t", 4096), ("prot", "unsigned long", 0x15)]
    assert SyscallFormatter("arm64").format_call("mprotect", prot) == \
        "mprotect(0x1000, 4096, PROT_READ|PROT_EXEC|PROT_BTI)"


def test_signals_clone_socket_whence_access(x86):
    assert x86.format_call("kill", [("pid", "pid_t", 42), ("sig", "int", 15)]) == "kill(42, SIGTERM)"
    assert x86.format_call("tgkill", [("tgid", "pid_t", 1), ("pid", "pid_t", 2), ("sig", "int", 34)]) == \
        "tgkill(1, 2, SIGRT_2)"
    clone = [("clone_flags", "unsigned long", 0x01200000 | 17), ("newsp", "unsigned long", 0),
             ("parent_tidptr", "int *", 0), ("child_tidptr", "int *", 0x7f00), ("tls", "unsigned long", 0)]
    assert x86.format_call("clone", clone) == \
        "clone(CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, NULL, NULL, 0x7f00, NULL)"
    sock = [("family", "int", 2), ("type", "int", 1 | 0o2000000 | 0o4000), ("protocol", "int", 6)]
    assert x86.format_call("socket", sock) == \
        "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK, IPPROTO_TCP)"
    assert x86.format_call("lseek", [("fd", "unsigned int", 3), ("offset", "off_t", 0),
                                     ("whence", "unsigned int", 2)]) == "lseek(3, 0, SEEK_END)"
    assert x86.format_call("access", [("filename", "const char *", PTR), ("mode", "int", 6)]) == \
        "access(0x7ffd12345678, R_OK|W_OK)"
    assert x86.format_call("access", [("filename", "const char *", PTR), ("mode", "int", 0)]) == \
        "access(0x7ffd12345678, F_OK)"
    assert x86.format_call("unlinkat", [("dfd", "int", AT_FDCWD_SLOT), ("pathname", "const char *", PTR),
                                        ("flag", "int", 0x200)]) == \
        "unlinkat(AT_FDCWD, 0x7ffd12345678, AT_REMOVEDIR)"
    assert x86.format_call("fcntl", [("fd", "unsigned int", 3), ("cmd", "unsigned int", 4),
                                     ("arg", "unsigned long", 0o4000)]) == \
        "fcntl(3, F_SETFL, O_RDONLY|O_NONBLOCK)"
    assert x86.format_call("fcntl", [("fd", "unsigned int", 3), ("cmd", "unsigned int", 1),
                                     ("arg", "unsigned long", 0)]) == "fcntl(3, F_GETFD)"
    assert x86.format_call("rt_sigprocmask", [("how", "int", 2), ("nset", "sigset_t *", 0),
                                              ("oset", "sigset_t *", 0), ("sigsetsize", "size_t", 8)]) == \
        "rt_sigprocmask(SIG_SETMASK, NULL, NULL, 8)"
    assert x86.format_call("mkdir", [("pathname", "const char *", PTR), ("mode", "umode_t", 0o755)]) == \
        "mkdir(0x7ffd12345678, 0755)"
    assert x86.format_call("umask", [("mask", "int", 0o22)]) == "umask(022)"
    assert x86.format_call("futex", [("uaddr", "u32 *", 0x10), ("op", "int", 128 | 1)]) == \
        "futex(0x10, FUTEX_WAKE|FUTEX_PRIVATE_FLAG)"


def test_a_formatter_that_raises_falls_back_to_hex(monkeypatch):
    def broken(f, raw, call):
        raise ZeroDivisionError("bug in a formatter")

    monkeypatch.setitem(R._BY_SYSCALL_ARG, ("openat", "flags"), broken)
    f = SyscallFormatter("x86_64")
    assert f.format_call("openat", openat_args(0o2000000)) == "openat(AT_FDCWD, 0x7ffd12345678, 0x80000)"
    assert f.errors == 1
    # A value that is not even an int (a decoder hiccup) does not stop rendering either.
    assert f.format_call("kill", [("pid", "pid_t", None), ("sig", "int", 9)]) == "kill(?, SIGKILL)"
    # Bytes where an int was expected are still escaped (they may come from the traced process).
    assert f.format_call("kill", [("pid", "pid_t", b"\x1b[2J"), ("sig", "int", 9)]) == \
        'kill("\\033[2J", SIGKILL)'
    assert f.format_call("close", [("fd", "unsigned int", -1)]) == "close(-1)"
    assert f.errors == 3


def test_kernel_string_field_is_escaped_and_truncated():
    f = SyscallFormatter("x86_64", RenderOptions(string_limit=8))
    args = openat_args(0) + [("__filename_val", "__data_loc char[]", b"/etc/\x1b[2J\n")]
    assert f.format_call("openat", args) == 'openat(AT_FDCWD, "/etc/\\033[2"..., O_RDONLY)'
    short = openat_args(0) + [("__filename_val", "__data_loc char[]", b"/e\"t\\c")]
    assert f.format_call("openat", short) == 'openat(AT_FDCWD, "/e\\"t\\\\c", O_RDONLY)'
    # The kernel ends a string it cut short with "...": that becomes the truncation marker.
    cut = openat_args(0) + [("__filename_val", "__data_loc char[]", b"/usr/...")]
    assert f.format_call("openat", cut) == 'openat(AT_FDCWD, "/usr/"..., O_RDONLY)'
    # The __X_val field is not an argument of its own, in text or JSON.
    assert "__filename_val" not in f.symbolic_args("openat", args)


def test_default_string_limit_is_stracess_32():
    f = SyscallFormatter("x86_64")
    long_path = "/" + "a" * 40
    text = f.format_call("openat", openat_args(0), strings={"filename": long_path})
    assert text == 'openat(AT_FDCWD, "/' + "a" * 31 + '"..., O_RDONLY)'
    assert RenderOptions().string_limit == 32


def test_strings_from_elsewhere():
    f = SyscallFormatter("x86_64")
    assert f.render("openat", openat_args(0o2000000), -2, strings={"filename": "/etc/passwd"}) == \
        'openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)'
    assert f.format_call("openat", openat_args(0), strings={"filename": "caf\u00e9"}) == \
        'openat(AT_FDCWD, "caf\\303\\251", O_RDONLY)'


def test_raw_option_prints_every_argument_in_hex():
    f = SyscallFormatter("x86_64", RenderOptions(raw=True))
    assert f.format_call("openat", openat_args(0o2000000, 0)) == \
        "openat(0xffffff9c, 0x7ffd12345678, 0x80000, 0)"


def test_raw_syscalls_with_and_without_a_resolver():
    def resolver(nr):
        if nr == 257:
            return "openat", [("dfd", "int"), ("filename", "const char *"), ("flags", "int"),
                              ("mode", "umode_t")]
        return None

    f = SyscallFormatter("x86_64", resolver=resolver)
    values = [AT_FDCWD_SLOT, PTR, 0o2000000, 0, 0, 0]
    assert f.render_raw(257, values, 3) == "openat(AT_FDCWD, 0x7ffd12345678, O_RDONLY|O_CLOEXEC) = 3"
    assert f.render_raw(9999, [1, 2, 3, 4, 5, 6], 0) == "syscall_9999(0x1, 0x2, 0x3, 0x4, 0x5, 0x6) = 0"
    plain = SyscallFormatter("x86_64")
    assert plain.format_raw_call(257, values) == \
        "syscall_257(0xffffff9c, 0x7ffd12345678, 0x80000, 0, 0, 0)"


def test_event_names_give_syscall_names():
    assert R.syscall_name_of_event("syscalls:sys_enter_openat") == "openat"
    assert R.syscall_name_of_event("sys_exit_openat") == "openat"
    assert R.syscall_name_of_event("raw_syscalls:sys_enter") == "sys_enter"


def test_pairing_records_render_like_strace():
    f = SyscallFormatter("x86_64")
    pairer = SyscallPairer()
    args = openat_args(0o2000000)
    assert pairer.enter(10, 100, 0, 257, "openat", args) == ()
    (pair,) = pairer.exit(10, 250, 1, 257, "openat", 3)
    assert pair.kind == PAIR and pair.duration_ns == 150
    assert f.format_record(pair) == "openat(AT_FDCWD, 0x7ffd12345678, O_RDONLY|O_CLOEXEC) = 3"
    (resumed,) = pairer.exit(11, 300, 0, 257, "openat", -2)
    assert resumed.kind == RESUMED
    assert f.format_record(resumed) == "<... openat resumed> = -1 ENOENT (No such file or directory)"
    pairer.enter(12, 400, 0, 257, "openat", args)
    (unfinished,) = pairer.flush()
    assert unfinished.kind == UNFINISHED
    assert f.format_record(unfinished) == \
        "openat(AT_FDCWD, 0x7ffd12345678, O_RDONLY|O_CLOEXEC <unfinished ...>"
    (gone,) = pairer.enter(13, 500, 0, 231, "exit_group", [("error_code", "int", 0)])
    assert f.format_record(gone) == "exit_group(0) = ?"


def test_arch_names_are_normalised_and_never_guessed():
    assert C.normalize_arch("aarch64") == "arm64"
    assert C.normalize_arch("x86_64") == "x86_64"
    assert C.normalize_arch("nonsense") is None
    assert "x86_64" in C.coverage()["open_flags"] and "arm64" in C.coverage()["errno"]
    assert "sparc64" not in C.coverage()["open_flags"]


def test_argument_names_from_the_6_18_format_files(x86):
    # Field lists as events/syscalls/sys_enter_*/format print them on 6.18.
    assert x86.format_call("arch_prctl", [("option", "int", 0x1002), ("arg2", "unsigned long", 0x7f00)]) == \
        "arch_prctl(ARCH_SET_FS, 0x7f00)"
    assert x86.format_call("statx", [("dfd", "int", AT_FDCWD_SLOT), ("filename", "const char *", PTR),
                                     ("flags", "unsigned", 0x1100), ("mask", "unsigned int", 0xfff),
                                     ("buffer", "struct statx *", 0x10)]) == \
        "statx(AT_FDCWD, 0x7ffd12345678, AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH, " \
        "STATX_BASIC_STATS|STATX_BTIME, 0x10)"
    assert x86.format_call("execveat", [("fd", "int", AT_FDCWD_SLOT), ("filename", "const char *", PTR),
                                        ("argv", "const char *const *", 0x20),
                                        ("envp", "const char *const *", 0),
                                        ("flags", "int", 0x1000)]) == \
        "execveat(AT_FDCWD, 0x7ffd12345678, 0x20, NULL, AT_EMPTY_PATH)"
    assert x86.format_call("dup", [("fildes", "unsigned int", 0xffffffff)]) == "dup(-1)"
    assert x86.format_call("clock_gettime", [("which_clock", "const clockid_t", 1),
                                             ("tp", "struct __kernel_timespec *", 0x30)]) == \
        "clock_gettime(CLOCK_MONOTONIC, 0x30)"
    assert x86.format_call("pipe2", [("fildes", "int *", 0x40), ("flags", "int", 0o2004000)]) == \
        "pipe2(0x40, O_NONBLOCK|O_CLOEXEC)"


def test_every_arch_record_maps_or_is_honestly_unknown():
    from rawtrace.syscalls.arches import ARCHES
    for record in ARCHES:
        assert C.word_bits(record.name) == record.word_size, record.name
        for spelling in record.machines + record.aliases:
            assert C.normalize_arch(spelling) == C.normalize_arch(record.name), spelling
    # sh is a known 32-bit arch without tables here: numbers in hex, 32-bit longs.
    sh = SyscallFormatter("sh4")
    assert sh.format_call("x", [("a", "long", 0xffffffff)]) == "x(-1)"
    assert sh.format_call("kill", [("pid", "pid_t", 1), ("sig", "int", 9)]) == "kill(1, 0x9)"
