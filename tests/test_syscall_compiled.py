"""Compiled syscall renderers (SyscallFormatter.fast_text, Emitter's compiled `syscall` records) give exactly
the text and JSON of the general way, for every argument formatter rawtrace knows and hostile values."""

from __future__ import annotations

import io
import json
import random
from collections import defaultdict
from decimal import Decimal

import pytest

from rawtrace import memo
from rawtrace.emit import Emitter
from rawtrace.syscalls import render as R
from rawtrace.syscalls.calls import Signature, Syscall
from rawtrace.syscalls.render import SyscallFormatter

C_TYPES = ["int", "unsigned int", "long", "unsigned long", "size_t", "umode_t", "const char *", "pid_t",
           "loff_t", "u64", "short", "unsigned char", "struct stat *", "key_t", "enum foo"]


def _signatures() -> list[tuple[str, tuple]]:
    """Every syscall with argument-specific formatters (their arguments in table order, several C
    types), the generic raw_syscalls form, and open/openat with their optional mode."""
    by_call: dict[str, list[str]] = defaultdict(list)
    for name, arg in R._BY_SYSCALL_ARG:
        by_call[name].append(arg)
    out = []
    rng = random.Random(7)
    for name, args in sorted(by_call.items()):
        for _ in range(3):
            params = tuple((arg, rng.choice(C_TYPES)) for arg in ["fd", *args, "count"])
            out.append((name, params))
    out.append(("newfstatat", tuple((f"arg{i}", "unsigned long") for i in range(6))))
    out.append(("openat", (("dfd", "int"), ("filename", "const char *"), ("flags", "int"), ("mode", "umode_t"))))
    out.append(("open", (("filename", "const char *"), ("flags", "int"), ("mode", "umode_t"))))
    out.append(("read", (("fd", "unsigned int"), ("buf", "char *"), ("count", "size_t"))))
    out.append(("getpid", ()))
    return out


def _values(rng: random.Random, n: int) -> tuple:
    pool = [0, 1, 2, 3, 7, 0o100, 0o644, 0o2000000, 0x241, 0x80000, 0x410000, 0xffffff9c, 0xffffffffffffff9c,
            (1 << 64) - 1, 1 << 63, 1 << 31, 0x7ffd12345678, 17, 65, 0x8000_0000_0000_0001]
    return tuple(rng.choice(pool) if rng.random() < 0.7 else rng.getrandbits(rng.choice((8, 32, 64)))
                 for _ in range(n))


def _general(f: SyscallFormatter, name: str, params: tuple, values: tuple, ret: int) -> str:
    return f"{name}({', '.join(f.call_args_text(name, params, values, None))}) = {ret}"


@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "i386", "mips", "nonesuch"])
def test_fast_text_equals_the_general_way(arch):
    f = SyscallFormatter(arch)
    rng = random.Random(arch)
    compiled = 0
    for name, params in _signatures():
        fast = f.fast_text(name, params)
        if fast is None:
            continue
        compiled += 1
        for _ in range(40):
            values = _values(rng, len(params))
            ret = rng.choice((0, 1, 3, 4096, 1 << 40))
            assert fast(values, ret) == _general(f, name, params, values, ret), (name, params, values)
    assert compiled >= 20        # the common signatures do compile


@pytest.mark.parametrize("check", [memo.CHECK, 8])
def test_fast_text_memo_gives_the_general_text_for_repeated_and_new_arguments(monkeypatch, check):
    """The compiled text remembers texts per (values, ret): repeated and new arguments, mixed so that the
    memo is paused (fewer than half found) and resumed (check 8, pause 40), and past its size limit."""
    monkeypatch.setattr(memo, "CHECK", check)
    monkeypatch.setattr(memo, "PAUSE", 40)
    monkeypatch.setattr(memo, "LIMIT", 64)
    f = SyscallFormatter("x86_64")
    rng = random.Random(check)
    params = (("dfd", "int"), ("filename", "const char *"), ("flags", "int"), ("mode", "umode_t"))
    fast = f.fast_text("openat", params)
    seen: list[tuple] = []
    for n in range(3000):
        # phases of mostly repeated and mostly new arguments
        repeat = rng.random() < (0.9 if (n // 500) % 2 else 0.1)
        values, ret = rng.choice(seen) if seen and repeat else (_values(rng, 4), rng.choice((0, 3, 4)))
        seen.append((values, ret))
        assert fast(values, ret) == _general(f, "openat", params, values, ret), (n, values, ret)


def test_open_mode_is_shown_only_with_o_creat_as_in_the_general_way():
    f = SyscallFormatter("x86_64")
    params = (("dfd", "int"), ("filename", "const char *"), ("flags", "int"), ("mode", "umode_t"))
    fast = f.fast_text("openat", params)
    assert fast is not None
    assert fast((0xffffff9c, 0x1000, 0o101, 0o644), 3) == "openat(AT_FDCWD, 0x1000, O_WRONLY|O_CREAT, 0644) = 3"
    assert fast((0xffffff9c, 0x1000, 0o2000000, 0o644), 3) == "openat(AT_FDCWD, 0x1000, O_RDONLY|O_CLOEXEC) = 3"


def test_signatures_that_need_more_than_their_values_are_not_compiled():
    f = SyscallFormatter("x86_64")
    assert f.fast_text("fcntl", (("fd", "unsigned int"), ("cmd", "unsigned int"), ("arg", "unsigned long"))) \
        is None                                   # its arg and return depend on cmd
    assert f.fast_text("mmap", (("addr", "unsigned long"),)) is None        # returns an address
    assert f.fast_text("openat", (("dfd", "int"), ("__filename_val", "char[]"), ("flags", "int"))) is None


def test_a_value_of_another_type_falls_back_to_the_general_way():
    f = SyscallFormatter("x86_64")
    params = (("fd", "unsigned int"), ("buf", "char *"), ("count", "size_t"))
    sig = Signature(0, "read", params, "64")
    text = f.call_text("read", params, (3, "oops", 5), 5, "complete")
    assert text == _general(f, "read", params, (3, "oops", 5), 5)
    out = Emitter(json=True, out=io.StringIO())
    call = Syscall("complete", 10, 20, 0, 0, 7, 7, "x", sig, (3, "oops", 5), 5)
    record = json.loads(out.syscall_json(call, f))
    assert record["args"]["buf"] == "oops" and record["text"] == text


@pytest.mark.parametrize("check", [memo.CHECK, 8])
@pytest.mark.parametrize("name", ["read", "newfstatat", "openat"])
def test_compiled_json_record_equals_the_general_record(name, check, monkeypatch):
    monkeypatch.setattr(memo, "CHECK", check)        # 8: the record's memo paused and resumed on the way
    monkeypatch.setattr(memo, "PAUSE", 40)
    monkeypatch.setattr(memo, "LIMIT", 64)
    f = SyscallFormatter("x86_64")
    params = dict(_signatures())[name]
    sig = Signature(5, name, params, "64")
    rng = random.Random(name)
    compiled = Emitter(json=True, out=io.StringIO())
    seen: list[tuple] = []
    for n in range(1200):
        # Phases where most or few calls repeat earlier arguments (the compiled record's memo), at other
        # times, CPUs, tasks.
        repeat = rng.random() < (0.9 if (n // 200) % 2 else 0.2)
        values = rng.choice(seen) if seen and repeat else _values(rng, len(params))
        seen.append(values)
        ts = rng.choice([0, 5, 999_999_999, 10**9, rng.getrandbits(50), rng.getrandbits(50)])
        call = Syscall("complete", ts, 0, rng.randrange(4), 1, rng.choice((42, 43)), 41, 'c"\x1b', sig, values,
                       rng.choice((0, 9)))
        # (durations at a second's edges, and negative ones: an exit stamped on another CPU's clock)
        call = call._replace(exit_ts=call.ts + rng.choice([0, 1, 999_999_999, 10**9, 10**9 + 7, -1, -(10**9 + 7),
                                                           rng.getrandbits(20)]))
        fast = compiled.syscall_json(call, f)
        # The general way: the same emitter with the compiled record taken out of its signature's pieces.
        general = Emitter(json=True, out=io.StringIO())
        general._signature_pieces(sig, f)
        general._signature_json[id(sig)] = general._signature_json[id(sig)][:5] + (None, 0)
        assert fast == general.syscall_json(call, f)
        record = json.loads(fast, parse_float=Decimal)
        assert record["text"] == _general(f, name, params, values, call.ret)
        assert record["duration"] == Decimal(call.exit_ts - call.ts) / 10**9      # exact, also when negative


def test_the_syscall_name_is_data_never_source():
    f = SyscallFormatter("x86_64")
    params = (("fd", "unsigned int"),)
    for name in ('x"); import os; ("', "a{b}c", "a\\nb", "%d%s"):
        fast = f.fast_text(name, params)
        assert fast is not None and fast((3,), 0) == f"{name}(3) = 0"
        sig = Signature(1, name, params, "64")
        record = Emitter(json=True, out=io.StringIO()).syscall_json(
            Syscall("complete", 1, 2, 0, 0, 1, 1, "c", sig, (3,), 0), f)
        assert json.loads(record)["syscall"] == name and json.loads(record)["text"] == f"{name}(3) = 0"


def test_syscall_lines_round_time_stamps_as_text_timestamp_and_remember_texts_per_arguments():
    from rawtrace.emit import text_timestamp
    from rawtrace.render_event import line_prefix
    f = SyscallFormatter("x86_64")
    params = (("fd", "unsigned int"), ("buf", "char *"), ("count", "size_t"))
    sig = Signature(0, "read", params, "64")
    out = Emitter(json=False, out=io.StringIO())
    for ts in (0, 5, 499, 500, 999_999_499, 999_999_500, 10**9, 123_456_789_012_345_678):
        for values, ret in (((3, 0x7ffd0, 64), 64), ((3, 0x7ffd0, 64), 0), ((4, 0x7ffd0, 64), 64)) * 2:
            call = Syscall("complete", ts, ts + 1500, 1, 1, 42, 41, "c", sig, values, ret)
            text = _general(f, "read", params, values, ret)
            assert out.syscall_line(call, f) == f"{line_prefix('c', 42, 1)}{text_timestamp(ts, True)}: {text} " \
                                                f"<0.000002>"


@pytest.mark.parametrize("json_mode", [True, False])
@pytest.mark.parametrize("ns", [True, False])
def test_syscall_lines_equal_the_general_functions_for_every_kind_of_call(json_mode, ns):
    """Emitter.syscall_lines (the trace tool's per-call path) gives the general record or line and a
    newline: complete calls with plain, large and failed returns, unfinished and resumed calls, calls
    with strings or a note, values of another type, hostile comms, every signature of _signatures()."""
    f = SyscallFormatter("x86_64")
    rng = random.Random(f"{json_mode}{ns}")
    fast_out = Emitter(json=json_mode, out=io.StringIO(), ns=ns)
    general_out = Emitter(json=json_mode, out=io.StringIO(), ns=ns)
    lines = fast_out.syscall_lines(f)
    general = general_out.syscall_json if json_mode else general_out.syscall_line
    fast_paths = 0
    for name, params in _signatures():
        sig = Signature(rng.choice([None, 5]), name, params, "64")
        for _ in range(12):
            values = _values(rng, len(params))
            ts = rng.choice([0, 5, 999_999_500, 10**9, rng.getrandbits(50)])
            ret = rng.choice([0, 3, 9, 1 << 40, -2, -4095, None])
            status = rng.choice(["complete"] * 4 + ["unfinished", "resumed"])
            call = Syscall(status, ts, ts + rng.choice([0, 1500, 10**9 + 7]), rng.randrange(4), 1,
                           rng.choice((42, 43)), 41, rng.choice(["c", 'c"\x1b', "caf\u00e9"]), sig, values, ret,
                           rng.choice([None, None, "note"]), rng.choice([None, None, {"filename": "/x"}]))
            if status == "unfinished":
                call = call._replace(exit_ts=None, exit_cpu=None, ret=None)
            elif status == "resumed":
                call = call._replace(ts=None, cpu=None, values=None)
            if rng.random() < 0.1 and call.values:
                call = call._replace(values=("oops", *call.values[1:]))
            elif rng.random() < 0.05 and status == "complete":
                call = call._replace(values=None)          # (a format without its args: none to show)
            got = lines(call)
            assert got == general(call, f) + "\n", call
            fast_paths += status == "complete" and isinstance(ret, int) and ret >= 0 and not call.strings
    assert fast_paths > 100


def test_a_recordings_syscall_name_is_escaped_in_text_lines_every_time():
    """A trace.dat's format names are data: a name with a control character takes the general way (which
    escapes it), also once its signature has been seen before."""
    f = SyscallFormatter("x86_64")
    sig = Signature(0, "re\x1bad", (("fd", "unsigned int"),), "64")
    lines = Emitter(json=False, out=io.StringIO()).syscall_lines(f)
    for _ in range(3):
        line = lines(Syscall("complete", 10, 1510, 1, 1, 42, 41, "c", sig, (3,), 0))
        assert "\x1b" not in line and "re\\x1bad(3) = 0" in line, line


def test_durations_round_to_the_microsecond_as_time_stamps_do():
    from rawtrace.emit import duration_text
    assert [duration_text(ns) for ns in (0, 499, 500, 1500, 6500, 999_999_499, 999_999_500, 10**9 + 7,
                                        3_600 * 10**9 + 499_500, -1, -1500)] == [
        "0.000000", "0.000000", "0.000001", "0.000002", "0.000007", "0.999999", "1.000000", "1.000000",
        "3600.000500", "-0.000000", "-0.000002"]
    # from its table the second time, the same text
    assert duration_text(6500) == "0.000007" and duration_text(10**9 + 7) == "1.000000"
