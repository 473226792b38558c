"""rawtrace doctor and preflight on this machine: integrity lockdown from the kernel config, no kprobes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rawtrace.cli import main
from rawtrace.doctor import preflight
from rawtrace.errors import NotSupported
from rawtrace.host import Host

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parent.parent


def _mounts() -> set[tuple[str, str]]:
    with open("/proc/self/mounts") as f:
        return {(line.split()[1], line.split()[2]) for line in f}


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


def _doctor_in_private_mount_namespace(unmount: list[str]) -> tuple[int, dict, str]:
    """Run the doctor in a mount namespace of its own where `unmount` are unmounted first, so the
    machine's mounts are never touched; return (exit code, report, the namespace's mounts afterwards)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is needed to unmount in a private mount namespace")
    script = "".join(f"umount {target} && " for target in unmount)
    script += (f"{sys.executable} -m rawtrace doctor --json > \"$OUT\"; rc=$?; "
               "cat /proc/self/mounts > \"$OUT.mounts\"; exit $rc")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "report.json")
        env = dict(os.environ, OUT=out, PYTHONPATH=str(ROOT))
        done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              env=env, capture_output=True, text=True, check=False)
        assert done.returncode in (0, 1, 2), done.stderr
        with open(out) as f:
            report = json.load(f)
        with open(out + ".mounts") as f:
            mounts = f.read()
    return done.returncode, report, mounts


def test_live_doctor_mounts_securityfs_only_for_the_read(live_tracefs, root_only):
    """With securityfs unmounted, the doctor mounts it to read the level and unmounts it again."""
    if ("/sys/kernel/security", "securityfs") not in _mounts():
        pytest.skip("securityfs is not mounted here to begin with")
    rc, r, mounts = _doctor_in_private_mount_namespace(["/sys/kernel/security"])
    assert " securityfs " not in mounts, "securityfs was left mounted"
    assert rc == 1 and r["lockdown"] == "integrity"
    lock = next(c for c in r["checks"] if c["name"] == "lockdown")
    assert any("unmounted again" in e["text"] for e in lock["evidence"])


def test_live_doctor_looks_inside_an_unmounted_tracefs_and_unmounts_it(live_tracefs, root_only):
    rc, r, mounts = _doctor_in_private_mount_namespace(["/sys/kernel/tracing"])
    assert " tracefs " not in mounts, "tracefs was left mounted"
    assert rc == 1
    t = next(c for c in r["checks"] if c["name"] == "tracefs")
    assert t["status"] == "limited" and "not mounted" in t["finding"]
    assert r["verdict"]["uprobes"]["status"] == "ok"
    assert "not built" in r["verdict"]["kprobes"]["reason"]


def test_live_preflight(live_tracefs, root_only):
    host = Host()
    preflight(host, {"tracefs", "syscalls", "tracepoints", "uprobes"})
    with pytest.raises(NotSupported) as info:
        preflight(host, {"kprobes"})
    assert "not built into this kernel" in info.value.message
