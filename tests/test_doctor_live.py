"""rawtrace doctor and preflight on this machine: integrity lockdown from the kernel config, no kprobes."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from rawtrace.cli import main
from rawtrace.doctor import preflight
from rawtrace.errors import NotSupported
from rawtrace.host import Host

pytestmark = pytest.mark.live


def _mounts() -> set[tuple[str, str]]:
    with open("/proc/self/mounts") as f:
        return {(line.split()[1], line.split()[2]) for line in f}


def _mount_source(target: str) -> str:
    with open("/proc/self/mounts") as f:
        return next((line.split()[0] for line in f if line.split()[1] == target), "securityfs")


def _doctor_json(capsys) -> tuple[int, dict]:
    rc = main(["doctor", "--json"])
    return rc, json.loads(capsys.readouterr().out)


@pytest.fixture
def root_only():
    if os.geteuid() != 0:
        pytest.skip("the live doctor test expects root (it reads securityfs and /dev/kmsg)")


def test_live_doctor_explains_this_machine(live_tracefs, root_only, capsys):
    before = _mounts()
    rc, r = _doctor_json(capsys)
    assert _mounts() == before, "the doctor left a mount behind or removed one"
    assert rc == 1
    assert r["lockdown"] == "integrity"
    assert r["arch"] == os.uname().machine and r["kernel"] == os.uname().release
    lock = next(c for c in r["checks"] if c["name"] == "lockdown")
    assert lock["status"] == "ok"
    assert "does not block tracefs, tracepoints, uprobes" in lock["finding"]
    evidence = " | ".join(e["text"] for e in lock["evidence"])
    assert "[integrity]" in evidence
    kprobes = r["verdict"]["kprobes"]
    assert kprobes["status"] == "blocked" and "not built" in kprobes["reason"]
    assert "lockdown is not the cause" in kprobes["remedy"]
    assert r["verdict"]["uprobes"]["status"] == "ok"
    assert r["verdict"]["syscalls"]["status"] == "ok"
    assert r["verdict"]["sched_latency"]["status"] == "ok"


def test_live_doctor_mounts_securityfs_only_for_the_read(live_tracefs, root_only, capsys):
    """With securityfs unmounted, the doctor mounts it to read the level and unmounts it again."""
    was_mounted = ("/sys/kernel/security", "securityfs") in _mounts()
    source = _mount_source("/sys/kernel/security")
    if was_mounted:
        subprocess.run(["umount", "/sys/kernel/security"], check=True)
    try:
        before = _mounts()
        rc, r = _doctor_json(capsys)
        after = _mounts()
    finally:
        if was_mounted and ("/sys/kernel/security", "securityfs") not in _mounts():
            subprocess.run(["mount", "-t", "securityfs", source, "/sys/kernel/security"], check=True)
    assert after == before, "securityfs (or another mount) was left behind"
    assert rc == 1 and r["lockdown"] == "integrity"
    lock = next(c for c in r["checks"] if c["name"] == "lockdown")
    assert any("unmounted again" in e["text"] for e in lock["evidence"])


def test_live_preflight(live_tracefs, root_only):
    host = Host()
    preflight(host, {"tracefs", "syscalls", "tracepoints", "uprobes"})
    with pytest.raises(NotSupported) as info:
        preflight(host, {"kprobes"})
    assert "not built into this kernel" in info.value.message
