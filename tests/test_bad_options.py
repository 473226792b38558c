"""Bad input to the tracing commands is a one-line usage error with exit status 2, never a traceback,
a silent match-nothing, or a run that starts and exits 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def rawtrace(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rawtrace", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def assert_usage_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith("rawtrace: "), done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


@pytest.mark.parametrize("args, words", [
    (["trace", "sched:sched_switch", "-d", "inf"], ["too large"]),
    (["trace", "sched:sched_switch", "-d", "1e308"], ["too large"]),
    (["trace", "sched:sched_switch", "-d", "nan"], ["must be positive"]),
    (["trace", "sched:sched_switch", "-c", "0"], ["must be positive"]),
    (["trace", "sched:sched_switch", "-p", "\u00b2"], ["not a pid"]),
    (["trace", "sched:sched_switch", "-d", "\u0663"], ["not a number"]),     # Arabic-Indic 3: float() takes it
    (["syscount", "\u0663"], ["not a number"]),
    (["sched", "--min-ms", "\u0663"], ["not a number"]),
    (["files", "--settle-ms", "\u0663"], ["not a number"]),
    (["files", "--settle-ms", "-5"], ["from 0 to 60000"]),
    (["files", "--settle-ms", "99999999999"], ["from 0 to 60000"]),
    (["trace", "sched:sched_switch", "--nice", "-5"], ["never raises"]),
    (["syscount", "-T", "x"], ["not a number"]),
    (["decode", "--cpu", "-1", "x.raw"], []),
    (["syscount", "-i", "x.dat", "-e", ""], ["-e ERRNO"]),
    (["syscount", "-i", ""], ["must not be empty"]),
    (["decode", ""], ["must not be empty"]),
])
def test_bad_numbers(args, words):
    assert_usage_error(rawtrace(*args), *words)


def test_decode_cpu_must_be_a_cpu(tmp_path):
    raw = tmp_path / "cpu0.raw"
    raw.write_bytes(bytes(4096))
    assert_usage_error(rawtrace("--tracefs", str(tmp_path), "decode", "--cpu", "-1", str(raw)), "--cpu")


@pytest.mark.skipif(os.geteuid() != 0, reason="these reach the tracefs checks only as root")
@pytest.mark.parametrize("args, words", [
    (["--filter", ""], ["--filter", "empty"]),
    (["--filter", "   "], ["--filter", "empty"]),
    (["--cgroup", ""], ["--cgroup", "empty"]),
    (["-n", ""], ["empty"]),
    (["-n", "a" * 16], ["15"]),
    (["-n", "a\nb"], ["control characters"]),
    (["-n", 'a"b'], ["quotes"]),
])
def test_bad_filters_before_anything_is_created(args, words):
    done = rawtrace("trace", "sched:sched_switch", "-d", "1", *args)
    assert_usage_error(done, *words)
    assert "\n" not in done.stderr.strip().splitlines()[0]       # a raw newline never reaches the terminal


@pytest.mark.live
def test_filters_the_kernel_refuses(live_tracefs):
    for expr, words in (("prev_pid ==", ["refused"]), ("pr\u00e9v_pid == 1", ["non-ASCII"])):
        done = rawtrace("trace", "sched:sched_switch", "-d", "1", "--filter", expr)
        assert_usage_error(done, *words)


@pytest.mark.live
def test_a_buffer_the_kernel_cannot_allocate(live_tracefs):
    done = rawtrace("trace", "sched:sched_switch", "-d", "1", "--buffer-kb", str(2 ** 40))
    assert_usage_error(done, "--buffer-kb", "KiB per CPU is free")
