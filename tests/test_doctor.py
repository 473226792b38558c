"""rawtrace doctor against fake host trees: lockdown levels, SecureBoot states, tracefs states, privileges."""

from __future__ import annotations

import json

import pytest
from fakehost import ALL_FEATURES, FakeHost, write_tracefs

from rawtrace.cli import main
from rawtrace.doctor import diagnose, preflight, probe_support
from rawtrace.errors import NotSupported, TracingBlocked, UsageError
from rawtrace.host import Host

NO_KPROBES = ALL_FEATURES - {"kprobes", "eprobes", "hist"}
FROM_CONFIG = "Kernel is locked down from Kernel configuration; see man kernel_lockdown.7"
FROM_SECURE_BOOT = "Kernel is locked down from EFI Secure Boot mode; see man kernel_lockdown.7"
TRACING_DISABLED = "Tracing disabled due to lockdown"
TRACEFS_DENIED = "Lockdown: swapper/0: use of tracefs is restricted; see man kernel_lockdown.7"


def doctor(tmp_path, capsys, *extra, **spec):
    """Build the fake tree, run `rawtrace --root TREE doctor --json`, return (exit code, report)."""
    root = FakeHost(**spec).build(tmp_path / "host")
    rc = main(["--root", str(root), "doctor", "--json", *extra])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def check(report, name):
    return next(c for c in report["checks"] if c["name"] == name)


def evidence_text(item):
    return " | ".join(f"{e['source']}: {e['text']}" for e in item["evidence"])


def test_no_lockdown_everything_works(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys)
    assert rc == 0
    assert r["lockdown"] == "none" and r["secure_boot"] == "not_efi"
    assert r["kernel"] == "6.18.0" and r["arch"] == "x86_64"
    assert {name: v["status"] for name, v in r["verdict"].items()} == {
        "syscalls": "ok", "tracepoints": "ok", "kprobes": "ok", "uprobes": "ok", "eprobes": "ok", "hist": "ok",
        "file_access": "ok", "sched_latency": "ok"}
    assert all(c["status"] == "ok" and c["remedy"] is None for c in r["checks"])
    assert '"[none] integrity confidentiality"' in evidence_text(check(r, "lockdown"))


def test_integrity_under_secure_boot_does_not_block_tracing(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, lockdown="integrity", secure_boot="enabled", lockdown_in_secure_boot=True,
                   dmesg=[FROM_SECURE_BOOT, "Secure boot enabled"])
    assert rc == 0
    assert r["lockdown"] == "integrity" and r["secure_boot"] == "enabled"
    lock = check(r, "lockdown")
    assert lock["status"] == "ok"
    assert "does not block tracefs, tracepoints, uprobes or kprobes" in lock["finding"]
    assert "because SecureBoot is on" in lock["finding"]
    assert FROM_SECURE_BOOT in evidence_text(lock)
    sb = check(r, "secure boot")
    assert sb["status"] == "ok" and "does not block tracing" in sb["finding"]
    assert "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c: value 1" in evidence_text(sb)
    assert "byte 0x1ec (secure_boot) = 3: enabled" in evidence_text(sb)
    assert r["verdict"]["kprobes"]["status"] == "ok"


def test_confidentiality_with_secure_boot_blocks_tracing(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, lockdown="confidentiality", secure_boot="enabled", tracefs="empty",
                   dmesg=[FROM_SECURE_BOOT, TRACEFS_DENIED, TRACING_DISABLED])
    assert rc == 2
    assert r["lockdown"] == "confidentiality" and r["secure_boot"] == "enabled"
    lock = check(r, "lockdown")
    assert lock["status"] == "blocked"
    remedy = lock["remedy"]
    assert "confidentiality lockdown because SecureBoot is on" in remedy
    assert "lockdown=integrity on the command line cannot lower it" in remedy
    assert "mokutil --disable-validation" in remedy and "VM without SecureBoot" in remedy
    assert "fanotify-based file tracing" in remedy
    assert "most distributions lock down only to integrity" in remedy
    tracefs = check(r, "tracefs")
    assert tracefs["status"] == "blocked"
    assert "tracing disabled at boot by confidentiality lockdown" in tracefs["finding"]
    assert "but empty" in tracefs["finding"] and TRACING_DISABLED in tracefs["finding"]
    assert check(r, "secure boot")["status"] == "blocked"
    assert check(r, "debugfs tracing")["status"] == "blocked"
    for cap in ("syscalls", "tracepoints", "kprobes", "uprobes", "eprobes", "hist", "file_access"):
        assert r["verdict"][cap]["status"] == "blocked", cap
        assert "confidentiality lockdown" in r["verdict"][cap]["reason"]
        assert "mokutil" in r["verdict"][cap]["remedy"]
    # The lockdown-proof fallback is offered for scheduling latency.
    assert r["verdict"]["sched_latency"]["status"] == "limited"
    assert "schedstat" in r["verdict"]["sched_latency"]["reason"]
    assert check(r, "fanotify")["status"] == "ok"


def test_confidentiality_from_command_line_is_not_blamed_on_secure_boot(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, lockdown="confidentiality", secure_boot="disabled", tracefs="empty",
                   cmdline="root=/dev/vda1 lockdown=confidentiality",
                   dmesg=["Kernel is locked down from command line; see man kernel_lockdown.7", TRACING_DISABLED])
    assert rc == 2
    remedy = check(r, "lockdown")["remedy"]
    assert "the kernel command line says lockdown=confidentiality" in remedy
    assert "removing lockdown= from the kernel command line" in remedy
    assert "mokutil" not in remedy
    assert "lockdown=confidentiality" in evidence_text(check(r, "lockdown"))


def test_secure_boot_setup_mode(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, secure_boot="setup_mode")
    assert rc == 0
    assert r["secure_boot"] == "setup_mode"
    sb = check(r, "secure boot")
    assert sb["status"] == "ok" and "setup mode" in sb["finding"]
    assert "SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c: value 1" in evidence_text(sb)


def test_shim_validation_disabled(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, secure_boot="enabled", shim_validation_off=True)
    assert rc == 0
    assert r["secure_boot"] == "enabled" and r["lockdown"] == "none"
    sb = check(r, "secure boot")
    assert "shim validation is disabled" in sb["finding"]
    assert "treats SecureBoot as off" in sb["finding"]
    assert "MokSBStateRT-605dab50-e046-4300-abb6-3dd810dd8b23: value 1" in evidence_text(sb)
    assert "byte 0x1ec (secure_boot) = 2: disabled" in evidence_text(sb)


def test_bios_machine(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, secure_boot=None, lockdown="integrity", lockdown_force="integrity",
                   dmesg=[FROM_CONFIG])
    assert rc == 0
    assert r["secure_boot"] == "not_efi"
    sb = check(r, "secure boot")
    assert "not an EFI boot" in sb["finding"] and "lockdown does not come from SecureBoot" in sb["finding"]
    assert "/sys/firmware/efi: absent" in evidence_text(sb)


def test_tracefs_not_mounted_but_mountable(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, tracefs="unmounted")
    assert rc == 1
    t = check(r, "tracefs")
    assert t["status"] == "limited"
    assert "not mounted" in t["finding"]
    assert "mount -t tracefs nodev /sys/kernel/tracing" in t["remedy"]
    assert "/proc/filesystems: lists tracefs" in evidence_text(t)
    assert r["verdict"]["syscalls"]["status"] == "limited"
    assert "rawtrace mounts it when run as root" in r["verdict"]["syscalls"]["remedy"]


def test_tracefs_missing_from_kernel(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, tracefs="absent")
    assert rc == 2
    t = check(r, "tracefs")
    assert t["status"] == "blocked" and "no tracefs" in t["finding"]
    assert "/proc/filesystems: does not list tracefs" in evidence_text(t)
    assert "CONFIG_FTRACE=y" in t["remedy"]
    assert r["verdict"]["syscalls"]["status"] == "blocked"


def test_non_root_user(tmp_path, capsys):
    caps = 1 << 38  # CAP_PERFMON only: no CAP_SYS_ADMIN, no CAP_SYSLOG
    rc, r = doctor(tmp_path, capsys, uid=1000, caps=caps, lockdown="integrity", lockdown_force="integrity",
                   dmesg=[FROM_CONFIG])
    assert rc == 2
    priv = check(r, "privileges")
    assert priv["status"] == "limited"
    assert "uid 1000 without CAP_SYS_ADMIN" in priv["finding"]
    assert "/proc/self/status CapEff: 0x0000004000000000: CAP_PERFMON" in evidence_text(priv)
    assert "run as root" in priv["remedy"]
    t = check(r, "tracefs")
    assert t["status"] == "blocked" and "not readable by this user" in t["finding"]
    # securityfs lockdown is 0600 and dmesg is restricted: the level is inferred from the kernel config.
    lock = check(r, "lockdown")
    assert r["lockdown"] == "integrity" and lock["finding"].startswith("probably integrity")
    ev = evidence_text(lock)
    assert "present but not readable by this user" in ev
    assert "restricted (kernel.dmesg_restrict=1, no CAP_SYSLOG)" in ev
    assert "CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY=y" in ev
    assert r["verdict"]["uprobes"]["status"] == "blocked"
    assert "run as root" in r["verdict"]["uprobes"]["remedy"]


def test_kernel_without_kprobes(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, features=NO_KPROBES, lockdown="integrity", lockdown_force="integrity",
                   dmesg=[FROM_CONFIG])
    assert rc == 1
    k = r["verdict"]["kprobes"]
    assert k["status"] == "blocked" and "not built" in k["reason"]
    assert "CONFIG_KPROBE_EVENTS" in k["remedy"] and "lockdown is not the cause" in k["remedy"]
    assert r["verdict"]["uprobes"]["status"] == "ok"
    assert r["verdict"]["eprobes"]["reason"] == "not built into this kernel (CONFIG_EPROBE_EVENTS is not set)"
    assert r["verdict"]["hist"]["status"] == "blocked"
    assert r["verdict"]["file_access"]["status"] == "limited"
    lock = check(r, "lockdown")
    assert lock["status"] == "ok"
    assert "the kernel build config forces it" in lock["finding"]
    assert FROM_CONFIG in evidence_text(lock)
    assert "/proc/cmdline: no lockdown= parameter" in evidence_text(lock)


def test_eprobes_without_kernel_config_use_kallsyms(tmp_path):
    root = FakeHost(features=NO_KPROBES | {"eprobes"}, config=False).build(tmp_path / "host")
    # The README lists e[:...] whatever the config says; without a config the symbol table decides.
    (root / "proc/kallsyms").write_text("0000000000000000 T trace_uprobe_create\n"
                                        "0000000000000000 T traceprobe_parse_probe_arg\n")
    sup = probe_support(root / "sys/kernel/tracing", Host(root))
    assert sup["eprobes"].supported is False and "no eprobe symbols" in str(sup["eprobes"].evidence[0])
    (root / "proc/kallsyms").write_text("0000000000000000 t eprobe_dyn_event_create\n")
    assert probe_support(root / "sys/kernel/tracing", Host(root))["eprobes"].supported is True
    (root / "proc/kallsyms").write_text("0000000000000000 t trace_eprobe_parse_filter\t[x]\n")
    assert probe_support(root / "sys/kernel/tracing", Host(root))["eprobes"].supported is True


def test_probe_support_reports_missing_kprobes(tmp_path):
    tracefs = write_tracefs(tmp_path / "tracing", NO_KPROBES)
    sup = probe_support(tracefs)
    assert sup["kprobes"].supported is False
    assert sup["kprobes"].reason.startswith("not built into this kernel")
    assert sup["uprobes"].supported and sup["syscalls"].supported and sup["tracepoints"].supported
    assert sup["hist"].supported is False


def test_preflight_passes_and_names_the_missing_feature(tmp_path):
    root = FakeHost(features=NO_KPROBES).build(tmp_path / "host")
    host = Host(root)
    preflight(host, {"tracefs", "syscalls", "tracepoints", "uprobes"})
    with pytest.raises(NotSupported) as info:
        preflight(host, {"syscalls", "kprobes"})
    assert "kprobes: not built into this kernel" in info.value.message
    assert "CONFIG_KPROBE_EVENTS" in info.value.hint
    with pytest.raises(NotSupported, match="hist triggers"):
        preflight(host, {"hist"})
    with pytest.raises(UsageError):
        preflight(host, {"bogus"})


def test_preflight_blocked_by_lockdown_carries_reason_and_remedy(tmp_path):
    root = FakeHost(lockdown="confidentiality", secure_boot="enabled", tracefs="empty",
                    dmesg=[FROM_SECURE_BOOT, TRACING_DISABLED]).build(tmp_path / "host")
    with pytest.raises(TracingBlocked) as info:
        preflight(Host(root), {"syscalls"})
    assert "confidentiality lockdown" in info.value.message
    assert "mokutil --disable-validation" in info.value.hint


def test_preflight_via_cli_prints_one_line_and_hint(tmp_path, capsys):
    root = FakeHost(tracefs="absent").build(tmp_path / "host")
    from rawtrace.cli import run_guarded

    def command(args, host):
        preflight(host, {"tracefs"})
        return 0
    rc = run_guarded(command, None, Host(root))
    err = capsys.readouterr().err
    assert rc == TracingBlocked.exit_code
    assert err.startswith("rawtrace: this kernel has no tracefs") and "  hint: " in err


def test_text_output_has_tables_evidence_and_remedies(tmp_path, capsys):
    root = FakeHost(features=NO_KPROBES, lockdown="integrity", lockdown_force="integrity",
                    dmesg=[FROM_CONFIG]).build(tmp_path / "host")
    rc = main(["--root", str(root), "doctor"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "CHECK" in out and "CAPABILITY" in out
    assert "lockdown             OK" in out
    assert "kprobes              blocked   not built into this kernel" in out
    assert '/sys/kernel/security/lockdown: "none [integrity] confidentiality"' in out
    assert "remedy: use a kernel built with CONFIG_KPROBES=y, CONFIG_KPROBE_EVENTS=y" in out
    assert "verdict: tracing works; not fully available here: kprobes" in out
    assert out.endswith("(exit 1)\n")


def test_escapes_control_characters_from_the_kernel_log(tmp_path, capsys):
    root = FakeHost(lockdown="integrity", dmesg=["Lockdown: evil\x1b[2J: use of kprobes is restricted"]) \
        .build(tmp_path / "host")
    main(["--root", str(root), "doctor"])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "evil\\x1b[2J" in out


def test_help_documents_exit_status(capsys):
    with pytest.raises(SystemExit) as info:
        main(["doctor", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "exit status:" in out and "2  tracing is blocked" in out and "examples:" in out


def test_diagnose_returns_data_without_printing(tmp_path, capsys):
    root = FakeHost().build(tmp_path / "host")
    report = diagnose(Host(root))
    assert capsys.readouterr() == ("", "")
    assert report.exit_code == 0 and report.verdict("kprobes").status == "ok"
    assert report.check("tracefs").evidence[0].source == "/sys/kernel/tracing"


def test_kernel_without_the_lockdown_lsm(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, lockdown=None)
    assert rc == 0 and r["lockdown"] == "unsupported"
    lock = check(r, "lockdown")
    assert lock["status"] == "ok" and "no lockdown LSM" in lock["finding"]
    assert '/sys/kernel/security/lsm: "capability,landlock,yama" (no lockdown LSM)' in evidence_text(lock)


def test_old_out_of_tree_lockdown_is_unknown_but_reported(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, securityfs=False, lockdown=None,
                   dmesg=["Lockdown: execsnoop: Use of kprobes is restricted; see man kernel_lockdown.7"])
    assert rc == 1 and r["lockdown"] == "unknown"
    assert r["verdict"]["kprobes"]["status"] == "blocked"
    assert "Use of kprobes is restricted" in r["verdict"]["kprobes"]["reason"]
    assert "SysRq+x" in r["verdict"]["kprobes"]["remedy"]
    lock = check(r, "lockdown")
    assert lock["status"] == "limited" and "level unknown" in lock["finding"]
    assert "Use of kprobes is restricted" in evidence_text(lock)
    assert "mount securityfs" in lock["remedy"]


def test_confidentiality_raised_after_boot_refuses_tracefs(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, lockdown="confidentiality",
                   dmesg=["Kernel is locked down from securityfs; see man kernel_lockdown.7"])
    assert rc == 2
    t = check(r, "tracefs")
    assert t["status"] == "blocked"
    assert t["finding"].startswith("tracefs refused by confidentiality lockdown, because a program wrote "
                                   "/sys/kernel/security/lockdown after boot")
    assert "disabling the boot script" in t["remedy"]
    assert r["verdict"]["kprobes"]["status"] == "blocked"


def test_non_root_on_a_secure_boot_laptop_infers_integrity_from_the_distro_policy(tmp_path, capsys):
    rc, r = doctor(tmp_path, capsys, uid=1000, caps=0, lockdown="integrity", secure_boot="enabled",
                   lockdown_in_secure_boot=True, dmesg=[FROM_SECURE_BOOT])
    assert rc == 2  # tracefs is root-only
    assert r["lockdown"] == "integrity" and r["secure_boot"] == "enabled"
    lock = check(r, "lockdown")
    assert lock["finding"].startswith("probably integrity")
    assert "SecureBoot is on" in lock["finding"]
    assert "CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT=y" in evidence_text(lock)


def test_tracefs_option_points_at_a_separate_tree(tmp_path, capsys):
    root = FakeHost(tracefs="unmounted").build(tmp_path / "host")
    tracefs = write_tracefs(tmp_path / "captured-tracefs", NO_KPROBES)
    rc = main(["--root", str(root), "--tracefs", str(tracefs), "doctor", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 1
    t = check(r, "tracefs")
    assert t["status"] == "ok" and str(tracefs) in t["finding"]
    assert "tracefs found (override)" in evidence_text(t)
    assert r["verdict"]["kprobes"]["status"] == "blocked" and r["verdict"]["uprobes"]["status"] == "ok"


def test_missing_root_is_a_one_line_error(tmp_path, capsys):
    rc = main(["--root", str(tmp_path / "nope"), "doctor"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no such directory" in err


def test_tracefs_override_that_does_not_exist(tmp_path, capsys):
    """--tracefs naming nothing is reported as missing, not as a permission problem."""
    missing = tmp_path / "nonexistent"
    root = FakeHost().build(tmp_path / "host")
    main(["--root", str(root), "--tracefs", str(missing), "doctor", "--json"])
    tracefs = check(json.loads(capsys.readouterr().out), "tracefs")
    assert tracefs["status"] == "blocked"
    assert tracefs["finding"] == f"--tracefs {missing} does not exist"
    assert "not readable" not in json.dumps(tracefs) and "leave --tracefs out" in tracefs["remedy"]
