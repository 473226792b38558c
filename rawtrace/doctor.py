"""What works for tracing on this machine and why: lockdown, SecureBoot, tracefs, privileges, kernel features.

The doctor returns data (checks with evidence, verdicts per rawtrace capability); it never prints.
`preflight()` is the quick, quiet subset that every tracing command runs before touching tracefs.

Where each fact comes from, live and in a fake tree (`--root DIR`); one source per mode:

- kernel release / arch: os.uname() live; <root>/proc/sys/kernel/{osrelease,arch} in a fake tree.
- euid and effective capabilities: os.geteuid() and capget(2) live; the `Uid:` (second field) and
  `CapEff:` lines of <root>/proc/self/status in a fake tree (the test runner's own identity is never used).
- kernel log: /dev/kmsg live (non-blocking, one record per read, stops at EAGAIN); in a fake tree the text
  file <root>/var/log/dmesg (plain `dmesg` output, one message per line, optional `[   0.1]` prefix).
  Either is treated as unreadable when kernel.dmesg_restrict=1 and CAP_SYSLOG is missing.
- kernel config: /proc/config.gz, else /boot/config-<release> (both under <root> in a fake tree).
- file permissions in a fake tree: files belong to root; a non-root fake uid gets only the "other" bits.

Event probes: the tracefs README prints the `e[:...]` line even when CONFIG_EPROBE_EVENTS=n, and
eprobes have no file of their own, so the rule is: the kernel config decides when readable
(CONFIG_EPROBE_EVENTS); otherwise an `e:` definition already in dynamic_events proves support;
otherwise /proc/kallsyms is searched for the eprobe code (names are listed even with kptr_restrict);
otherwise the answer is "unknown". Nothing is written to find out.
"""

from __future__ import annotations

import errno
import os
import re
from collections import namedtuple
from functools import cached_property
from pathlib import Path

from rawtrace.errors import NotSupported, TracingBlocked, UsageError
from rawtrace.host import (
    EFIVARS_DEFAULT,
    SECURITYFS_DEFAULT,
    TRACEFS_DEBUGFS,
    TRACEFS_DEFAULT,
    Host,
    read_text_or_none,
)

OK, LIMITED, BLOCKED = "ok", "limited", "blocked"

CAP_SYS_ADMIN, CAP_SYSLOG, CAP_PERFMON, CAP_BPF = 21, 34, 38, 39
_CAP_NAMES = {CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_PERFMON: "CAP_PERFMON", CAP_BPF: "CAP_BPF"}

EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SHIM_LOCK_GUID = "605dab50-e046-4300-abb6-3dd810dd8b23"
BOOT_PARAMS_SECURE_BOOT = 0x1ec  # offset of boot_params.secure_boot (arch/x86/include/uapi/asm/bootparam.h)
_BOOT_PARAMS_MODES = {0: "unset (not an EFI boot)", 1: "unknown", 2: "disabled", 3: "enabled"}

FAKE_DMESG = "/var/log/dmesg"
NEEDS = frozenset({"tracefs", "syscalls", "tracepoints", "uprobes", "kprobes", "eprobes", "hist"})
_LEVELS = ("none", "integrity", "confidentiality")
# Boot and denial messages that explain lockdown and SecureBoot (security/lockdown, kernel/trace, setup_arch).
_LOG_MARKERS = ("Kernel is locked down from", "Tracing disabled due to lockdown", "Lockdown:",
                "Could not create tracefs", "due to lockdown", "Secure boot enabled",
                "Secure boot disabled", "Secure boot could not be determined")
_LOG_MARKERS_BYTES = tuple(m.encode() for m in _LOG_MARKERS)


# Records are namedtuples: importing dataclasses (which imports inspect) costs more than the whole
# doctor may take to start, and typing.NamedTuple needs typing.


class Evidence(namedtuple("Evidence", "source text")):
    """What one source said: a file (as the host sees it), the kernel log, a syscall."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.source}: {self.text}"


class Check(namedtuple("Check", "name status finding evidence remedy", defaults=((), None))):
    """One finding: status is ok / limited / blocked; remedy is set whenever status is not ok.
    evidence: tuple[Evidence, ...]; remedy: str | None."""

    __slots__ = ()

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "finding": self.finding,
                "evidence": [{"source": e.source, "text": e.text} for e in self.evidence],
                "remedy": self.remedy}


class Verdict(namedtuple("Verdict", "capability status reason remedy", defaults=(None,))):
    """Whether one rawtrace capability works here, why, and what to do if not."""

    __slots__ = ()

    def to_json(self) -> dict:
        return {"status": self.status, "reason": self.reason, "remedy": self.remedy}


class Support(namedtuple("Support", "feature supported reason evidence remedy", defaults=((), None))):
    """Whether the kernel behind a tracefs tree has a feature: `supported` is True, False, or None when it
    cannot be told; evidence: tuple[Evidence, ...]; remedy: str | None."""

    __slots__ = ()


class Report(namedtuple("Report", "kernel arch lockdown secure_boot checks verdicts exit_code")):
    """The doctor's result: checks: tuple[Check, ...]; verdicts: tuple[Verdict, ...]."""

    __slots__ = ()

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def verdict(self, capability: str) -> Verdict:
        return next(v for v in self.verdicts if v.capability == capability)

    def to_json(self) -> dict:
        return {"kernel": self.kernel, "arch": self.arch, "lockdown": self.lockdown,
                "secure_boot": self.secure_boot, "exit_code": self.exit_code,
                "checks": [c.to_json() for c in self.checks],
                "verdict": {v.capability: v.to_json() for v in self.verdicts}}


# level: none / integrity / confidentiality / unsupported / unknown; certain: read from securityfs, not
# inferred; origins: "command line", "Kernel configuration", "EFI Secure Boot mode", "securityfs".
_Lockdown = namedtuple("_Lockdown", "level certain origins evidence")
# state: enabled / disabled / setup_mode / not_efi / unknown
_SecureBoot = namedtuple("_SecureBoot", "state shim_validation_off evidence")
# state: usable / unreadable / missing / empty / unmounted / no-tracefs / denied; path: Path | None
_Tracefs = namedtuple("_Tracefs", "state path finding evidence writable", defaults=(False,))


def _quote(text: str, limit: int = 160) -> str:
    """Quote what a file or the kernel log said; escaping for a terminal is the renderer's job."""
    text = text.strip()
    return '"' + (text if len(text) <= limit else text[:limit] + "...") + '"'


class _Facts:
    """Facts about a host, each read at most once and only when asked for (preflight asks for few)."""

    def __init__(self, host: Host, *, may_mount: bool = False) -> None:
        self.host = host
        self.may_mount = may_mount and host.is_live
        self._mounted: list[str] = []

    def close(self) -> None:
        """Unmount whatever the doctor mounted to look, so nothing is left behind."""
        from rawtrace import libc
        while self._mounted:
            target = self._mounted.pop()
            try:
                # Lazily: nothing of it is open any more, and a plain umount can wait for an RCU grace
                # period (milliseconds of the doctor's run).
                libc.umount_detach(target)
            except OSError:
                pass

    def _mount_briefly(self, fstype: str, target: str) -> bool:
        """Mount fstype at target until close(); only live, as root, when the kernel has the fs type."""
        if not (self.may_mount and self.euid == 0 and fstype in self.filesystems and os.path.isdir(target)):
            return False
        from rawtrace import libc
        try:
            libc.mount("nodev" if fstype == "tracefs" else fstype, target, fstype)
        except OSError:
            return False
        self._mounted.append(target)
        return True

    # -- identity ------------------------------------------------------------------------------------
    @cached_property
    def status_lines(self) -> dict[str, str]:
        out = {}
        for line in (self.host.read_text("/proc/self/status") or "").splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
        return out

    @cached_property
    def euid(self) -> int | None:
        if self.host.is_live:
            return os.geteuid()
        fields = self.status_lines.get("Uid", "").split()
        return int(fields[1]) if len(fields) > 1 else None

    @cached_property
    def cap_effective(self) -> int | None:
        if self.host.is_live:
            from rawtrace import libc
            try:
                return libc.capget_effective()
            except OSError:
                return None
        value = self.status_lines.get("CapEff")
        try:
            return int(value, 16) if value else None
        except ValueError:
            return None

    @property
    def caps_source(self) -> str:
        return "capget(2)" if self.host.is_live else "/proc/self/status CapEff"

    def has_cap(self, cap: int) -> bool:
        caps = self.cap_effective
        return bool(caps is not None and caps >> cap & 1)

    def may(self, path: Path, mode: int) -> bool:
        """Could this user open path with mode (os.R_OK/W_OK/X_OK)? Emulated from mode bits in a fake tree."""
        if self.host.is_live:
            return os.access(path, mode)
        if self.euid in (0, None):
            # The tree's user is root (or unknown): what this process itself may do is what limits it.
            return os.access(path, mode)
        try:
            bits = path.stat().st_mode
        except OSError:
            return False
        return all(not (mode & want) or bits & have
                   for want, have in ((os.R_OK, 0o004), (os.W_OK, 0o002), (os.X_OK, 0o001)))

    # -- kernel --------------------------------------------------------------------------------------
    @cached_property
    def uname(self) -> tuple[str, str]:
        if self.host.is_live:
            u = os.uname()
            return u.release, u.machine
        release = (self.host.read_text("/proc/sys/kernel/osrelease") or "unknown").strip()
        arch = (self.host.read_text("/proc/sys/kernel/arch") or "unknown").strip()
        return release, arch

    @cached_property
    def version(self) -> tuple[int, int]:
        m = re.match(r"(\d+)\.(\d+)", self.uname[0])
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)

    @cached_property
    def filesystems(self) -> set[str]:
        text = self.host.read_text("/proc/filesystems") or ""
        return {line.split()[-1] for line in text.splitlines() if line.split()}

    @cached_property
    def cmdline(self) -> str:
        return (self.host.read_text("/proc/cmdline") or "").strip()

    @cached_property
    def config(self) -> tuple[dict[str, str], str] | None:
        """({CONFIG_X: value or "n"}, source path) from /proc/config.gz or /boot/config-<release>."""
        from rawtrace.kconfig import kernel_config
        return kernel_config(self.host, self.uname[0])

    def config_evidence(self, option: str) -> Evidence | None:
        if self.config is None:
            return None
        values, source = self.config
        value = values.get(option)
        return Evidence(source, f"{option}={value}" if value not in (None, "n") else f"{option} is not set")

    def config_says(self, option: str) -> bool | None:
        if self.config is None:
            return None
        return self.config[0].get(option, "n") not in ("n", "")

    # -- kernel log ----------------------------------------------------------------------------------
    @cached_property
    def kernel_log(self) -> tuple[list[str] | None, str]:
        """(messages, source) or (None, why not). Only lines that matter to the doctor are kept."""
        restrict = (self.host.read_text("/proc/sys/kernel/dmesg_restrict") or "0").strip()
        if self.host.is_live:
            source = "/dev/kmsg"
            try:
                fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.EACCES):
                    return None, f"/dev/kmsg: {exc.strerror} (kernel.dmesg_restrict={restrict}, needs CAP_SYSLOG)"
                return None, f"/dev/kmsg: {exc.strerror}"
            records = []
            try:
                while True:
                    try:
                        record = os.read(fd, 8192)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno == errno.EPIPE:   # records overwritten while reading: skip ahead
                            continue
                        break
                    if not record:
                        break
                    # Only records with a marker are decoded: a boot log has thousands.
                    if any(m in record for m in _LOG_MARKERS_BYTES):
                        records.append(record)
            finally:
                os.close(fd)
            lines = [r.decode(errors="replace").split("\n", 1)[0].partition(";")[2] for r in records]
        else:
            source = FAKE_DMESG
            if restrict == "1" and not self.has_cap(CAP_SYSLOG):
                return None, "kernel log: restricted (kernel.dmesg_restrict=1, no CAP_SYSLOG)"
            text = self.host.read_text(FAKE_DMESG)
            if text is None:
                return None, f"{FAKE_DMESG}: absent from this tree (no kernel log captured)"
            lines = [re.sub(r"^\[\s*[\d.]+\]\s*", "", line) for line in text.splitlines()]
        return [line for line in lines if any(m in line for m in _LOG_MARKERS)], source

    def log_lines(self, marker: str) -> list[str]:
        lines, _ = self.kernel_log
        return [line for line in lines or () if marker in line]

    # -- securityfs / lockdown -----------------------------------------------------------------------
    @cached_property
    def securityfs(self) -> tuple[dict[str, str | None], Evidence | None]:
        """Contents of securityfs `lockdown` and `lsm` (None: absent or unreadable) and a mount note."""
        note = None
        base = self.host.path(SECURITYFS_DEFAULT)
        mounted = any(fstype == "securityfs" for _s, _m, fstype, _o in self.host.mounts())
        if not mounted and self.host.is_live and not (base / "lsm").exists():
            if self._mount_briefly("securityfs", SECURITYFS_DEFAULT):
                note = Evidence("securityfs", f"not mounted; mounted at {SECURITYFS_DEFAULT} to read it "
                                "(unmounted again when the doctor finishes)")
            else:
                note = Evidence("securityfs", "not mounted, and this user cannot mount it")
        out: dict[str, str | None] = {}
        for name in ("lockdown", "lsm"):
            path = base / name
            if not path.exists():
                out[name] = None
            elif not self.may(path, os.R_OK):
                out[name] = "<unreadable>"
            else:
                try:
                    out[name] = path.read_text(errors="replace").strip()
                except OSError:
                    out[name] = "<unreadable>"
        return out, note

    @cached_property
    def lockdown(self) -> _Lockdown:
        files, note = self.securityfs
        evidence = [note] if note else []
        text, lsm = files["lockdown"], files["lsm"]
        level, certain = "unknown", False
        path = f"{SECURITYFS_DEFAULT}/lockdown"
        if text not in (None, "<unreadable>"):
            m = re.search(r"\[(\w+)\]", text)
            level, certain = (m.group(1), True) if m and m.group(1) in _LEVELS else ("unknown", False)
            evidence.append(Evidence(path, _quote(text)))
        elif text == "<unreadable>":
            evidence.append(Evidence(path, "present but not readable by this user"))
        elif lsm is not None and "lockdown" not in lsm.split(","):
            level, certain = "unsupported", True
            evidence.append(Evidence(f"{SECURITYFS_DEFAULT}/lsm", f"{_quote(lsm)} (no lockdown LSM)"))
        else:
            evidence.append(Evidence(path, "absent"))
        origins: list[str] = []
        for line in self.log_lines("Kernel is locked down from"):
            where = line.split("Kernel is locked down from", 1)[1].split(";")[0].strip()
            origins.append(where)
            evidence.append(Evidence("kernel log", _quote(line)))
        for marker in ("Tracing disabled due to lockdown", "Lockdown:"):
            for line in self.log_lines(marker)[:3]:
                evidence.append(Evidence("kernel log", _quote(line)))
        log_lines, log_source = self.kernel_log
        if log_lines is None:
            evidence.append(Evidence("kernel log", log_source))
        param = re.search(r"(?:^|\s)lockdown=(\S*)", self.cmdline)
        if param:
            evidence.append(Evidence("/proc/cmdline", f"lockdown={param.group(1)}"))
            if "command line" not in origins and param.group(1) in _LEVELS[1:]:
                origins.append("command line")
        else:
            evidence.append(Evidence("/proc/cmdline", "no lockdown= parameter"))
        forced = None
        for lvl in ("CONFIDENTIALITY", "INTEGRITY"):
            if self.config_says(f"CONFIG_LOCK_DOWN_KERNEL_FORCE_{lvl}"):
                forced = lvl.lower()
                evidence.append(self.config_evidence(f"CONFIG_LOCK_DOWN_KERNEL_FORCE_{lvl}"))
                if "Kernel configuration" not in origins:
                    origins.append("Kernel configuration")
                break
        if self.config_says("CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT"):
            evidence.append(self.config_evidence("CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT"))
        if not certain:
            # Infer a lower bound from what can be read without securityfs; lockdown only ever rises.
            guesses = [forced] if forced else []
            if param and param.group(1) in _LEVELS[1:]:
                guesses.append(param.group(1))
            if self.log_lines("Tracing disabled due to lockdown"):
                guesses.append("confidentiality")
            if self.config_says("CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT") and self.secure_boot.state == "enabled" \
                    and not self.secure_boot.shim_validation_off:
                guesses.append("integrity")  # the distribution patch locks down to integrity under SecureBoot
                origins.append("EFI Secure Boot mode")
            if guesses and level != "unsupported":
                level = max(guesses, key=_LEVELS.index)
        return _Lockdown(level, certain, tuple(dict.fromkeys(origins)), tuple(evidence))

    # -- SecureBoot ----------------------------------------------------------------------------------
    def _efivar(self, name: str, guid: str) -> bytes | None:
        path = self.host.path(EFIVARS_DEFAULT) / f"{name}-{guid}"
        try:
            return path.read_bytes()
        except OSError:
            return None

    @cached_property
    def secure_boot(self) -> _SecureBoot:
        evidence: list[Evidence] = []
        efi = self.host.path("/sys/firmware/efi")
        boot_params = self._boot_params_mode()
        if not efi.is_dir():
            evidence.append(Evidence("/sys/firmware/efi", "absent (booted by BIOS, not EFI)"))
            if boot_params is not None:
                evidence.append(boot_params[1])
            return _SecureBoot("not_efi", False, tuple(evidence))
        efivars = self.host.path(EFIVARS_DEFAULT)
        if self.host.is_live and not (efivars.is_dir() and any(efivars.iterdir())) \
                and self._mount_briefly("efivarfs", EFIVARS_DEFAULT):
            evidence.append(Evidence("efivarfs", f"not mounted; mounted at {EFIVARS_DEFAULT} to read it "
                                     "(unmounted again when the doctor finishes)"))
        secure = self._efivar("SecureBoot", EFI_GLOBAL_GUID)
        setup = self._efivar("SetupMode", EFI_GLOBAL_GUID)
        shim = self._efivar("MokSBStateRT", SHIM_LOCK_GUID)
        shim_off = bool(shim and len(shim) > 4 and shim[4] == 1)
        state = "unknown"
        if secure is not None and len(secure) > 4:
            evidence.append(Evidence(f"{EFIVARS_DEFAULT}/SecureBoot-{EFI_GLOBAL_GUID}",
                                     f"value {secure[4]} (attributes 0x{int.from_bytes(secure[:4], 'little'):x})"))
            state = "enabled" if secure[4] == 1 else "disabled"
        elif efivars.is_dir() and any(efivars.iterdir()):
            evidence.append(Evidence(f"{EFIVARS_DEFAULT}/SecureBoot-{EFI_GLOBAL_GUID}",
                                     "absent (firmware without SecureBoot)"))
            state = "disabled"
        else:
            evidence.append(Evidence(EFIVARS_DEFAULT, "not mounted or empty"))
        if setup is not None and len(setup) > 4:
            evidence.append(Evidence(f"{EFIVARS_DEFAULT}/SetupMode-{EFI_GLOBAL_GUID}", f"value {setup[4]}"))
            if setup[4] == 1:
                state = "setup_mode"
        if shim is not None:
            evidence.append(Evidence(f"{EFIVARS_DEFAULT}/MokSBStateRT-{SHIM_LOCK_GUID}",
                                     f"value {shim[4] if len(shim) > 4 else '?'}"
                                     + (" (shim: SecureBoot validation disabled)" if shim_off else "")))
        if boot_params is not None:
            evidence.append(boot_params[1])
            if state == "unknown" and boot_params[0] in (2, 3):
                state = "enabled" if boot_params[0] == 3 else "disabled"
        for line in self.log_lines("Secure boot ")[:2]:
            evidence.append(Evidence("kernel log", _quote(line)))
        return _SecureBoot(state, shim_off, tuple(evidence))

    def _boot_params_mode(self) -> tuple[int, Evidence] | None:
        try:
            data = self.host.path("/sys/kernel/boot_params/data").read_bytes()
        except OSError:
            return None
        if len(data) <= BOOT_PARAMS_SECURE_BOOT:
            return None
        mode = data[BOOT_PARAMS_SECURE_BOOT]
        return mode, Evidence("/sys/kernel/boot_params/data",
                              f"byte 0x1ec (secure_boot) = {mode}: {_BOOT_PARAMS_MODES.get(mode, 'invalid')}")

    # -- tracefs -------------------------------------------------------------------------------------
    @cached_property
    def tracefs(self) -> _Tracefs:
        from rawtrace.tracefs.discover import locate_tracefs
        try:
            found = locate_tracefs(self.host)
        except PermissionError as exc:
            return _Tracefs("unreadable", Path(exc.filename or TRACEFS_DEFAULT).parent, "not readable by this user",
                            (Evidence(str(exc.filename), "permission denied"),))
        if found is not None:
            if found.how == "override" and not found.path.is_dir():
                shown = str(found.path)
                what = "does not exist" if not found.path.exists() else "is not a directory"
                return _Tracefs("missing", found.path, f"--tracefs {shown} {what}", (Evidence(shown, what),))
            return self._tracefs_at(found.path, found.how)
        for _src, mountpoint, fstype, _opts in self.host.mounts():
            if fstype == "tracefs":
                return _Tracefs("empty", self.host.path(mountpoint), f"mounted at {mountpoint} but empty",
                                (Evidence(mountpoint, "tracefs mount with no README, trace or events"),))
        fs_note = Evidence("/proc/filesystems", "lists tracefs" if "tracefs" in self.filesystems
                           else "does not list tracefs")
        if "tracefs" not in self.filesystems:
            return _Tracefs("no-tracefs", None, "this kernel has no tracefs filesystem", (fs_note,))
        if self._mount_briefly("tracefs", TRACEFS_DEFAULT):
            path = Path(TRACEFS_DEFAULT)
            note = Evidence(TRACEFS_DEFAULT, "not mounted; mounted to look inside (unmounted again when the "
                            "doctor finishes)")
            if not (path / "README").exists():
                return _Tracefs("empty", path, "mountable but empty", (fs_note, note))
            inner = self._tracefs_at(path, "mounted briefly")
            return _Tracefs("unmounted", path, "not mounted (mountable; rawtrace mounts it when run as root)",
                            (fs_note, note) + inner.evidence, inner.writable)
        point = self.host.path(TRACEFS_DEFAULT)
        where = Evidence(TRACEFS_DEFAULT, "mount point exists, nothing mounted" if point.is_dir()
                         else "mount point missing")
        return _Tracefs("unmounted", None, "not mounted (the kernel has tracefs)", (fs_note, where))

    def _tracefs_at(self, path: Path, how: str) -> _Tracefs:
        shown = self._shown(path)
        evidence = [Evidence(shown, f"tracefs found ({how})")]
        if not self.may(path, os.R_OK | os.X_OK):
            return _Tracefs("unreadable", path, f"at {shown}, not readable by this user",
                            tuple(evidence + [Evidence(shown, "permission denied for this user")]))
        readme = path / "README"
        if self.host.is_live and readme.exists():
            try:
                os.close(os.open(readme, os.O_RDONLY))
            except OSError as exc:
                evidence.append(Evidence(f"{shown}/README", f"open: {exc.strerror}"))
                state = "denied" if exc.errno == errno.EPERM else "unreadable"
                return _Tracefs(state, path, f"at {shown}, open refused ({exc.strerror})", tuple(evidence))
        level = self.securityfs[0].get("lockdown") or ""
        if "[confidentiality]" in level:
            # Raised after boot (tracefs was populated then): every open is refused with EPERM now
            # (tracing_check_open_get_tr). The live open above sees that; a captured tree cannot.
            evidence.append(Evidence(f"{SECURITYFS_DEFAULT}/lockdown", _quote(level)))
            return _Tracefs("denied", path, f"at {shown}, every open refused by confidentiality lockdown",
                            tuple(evidence))
        writable = self.may(path / "instances", os.W_OK | os.X_OK) if (path / "instances").exists() else \
            self.may(path / "set_event", os.W_OK)
        evidence.append(Evidence(shown, "readable" + (" and writable" if writable else ", not writable")
                                 + " by this user"))
        return _Tracefs("usable", path, f"mounted at {shown}", tuple(evidence), writable)

    def _shown(self, path: Path) -> str:
        """A path as the host sees it (without the fake root prefix)."""
        if self.host.is_live:
            return str(path)
        try:
            return "/" + str(path.relative_to(self.host.root))
        except ValueError:
            return str(path)


# -- kernel features, read from tracefs without writing ------------------------------------------------

def _readme(tracefs: Path) -> str:
    return read_text_or_none(tracefs / "README") or ""


def _not_built(feature: str, options: str, present: Evidence, config: Evidence | None,
               meanwhile: str) -> Support:
    detail = config.text if config is not None else "needs " + options
    return Support(feature, False, f"not built into this kernel ({detail})",
                   tuple(e for e in (present, config) if e),
                   f"use a kernel built with {options}; lockdown is not the cause. Meanwhile {meanwhile}")


def _file_feature(facts: _Facts, tracefs: Path, feature: str, filename: str, options: str,
                  meanwhile: str) -> Support:
    path = tracefs / filename
    shown = facts._shown(path)
    if path.exists():
        return Support(feature, True, f"{filename} present", (Evidence(shown, "present"),))
    option = options.split(",")[-1].split("=")[0].strip()  # the kernel config is read only to explain
    return _not_built(feature, options, Evidence(shown, "absent"), facts.config_evidence(option), meanwhile)


def probe_support(tracefs_path: Path | str, host: Host | None = None,
                  features: set[str] | None = None) -> dict[str, Support]:
    """Which tracing features the kernel behind a (populated) tracefs tree offers, by reading only.

    Keys: tracepoints, syscalls, kprobes, uprobes, dynamic_events, eprobes, hist, mmap_ring_buffer.
    `host` supplies the kernel config and version when known. Use `features` to ask for a few."""
    tracefs = Path(tracefs_path)
    facts = _Facts(host or Host())
    return _probe_support(facts, tracefs, features)


def _probe_support(facts: _Facts, tracefs: Path, features: set[str] | None = None) -> dict[str, Support]:
    want = features or {"tracepoints", "syscalls", "kprobes", "uprobes", "dynamic_events", "eprobes", "hist",
                        "mmap_ring_buffer"}
    out: dict[str, Support] = {}
    shown = facts._shown(tracefs)
    if "tracepoints" in want:
        sched = [n for n in ("sched_switch", "sched_wakeup") if (tracefs / "events/sched" / n).is_dir()]
        if sched:
            out["tracepoints"] = Support("tracepoints", True, "events/ present, with " + " and ".join(sched),
                                         (Evidence(f"{shown}/events/sched", ", ".join(sched)),))
        elif (tracefs / "events").is_dir():
            out["tracepoints"] = Support("tracepoints", True, "events/ present (no sched tracepoints)",
                                         (Evidence(f"{shown}/events/sched", "no sched_switch/sched_wakeup"),))
        else:
            out["tracepoints"] = Support("tracepoints", False, "no events/ directory in tracefs",
                                         (Evidence(f"{shown}/events", "absent"),),
                                         "a kernel built with CONFIG_EVENT_TRACING=y")
    if "syscalls" in want:
        syscalls = tracefs / "events/syscalls"
        if (syscalls / "sys_enter_openat").is_dir() or syscalls.is_dir() and any(syscalls.iterdir()):
            out["syscalls"] = Support("syscalls", True, "syscall tracepoints present",
                                      (Evidence(f"{shown}/events/syscalls", "present"),))
        else:
            out["syscalls"] = _not_built("syscalls", "CONFIG_FTRACE_SYSCALLS=y",
                                         Evidence(f"{shown}/events/syscalls", "absent"),
                                         facts.config_evidence("CONFIG_FTRACE_SYSCALLS"),
                                         "raw_syscalls or other tracepoints may still be there")
    if "kprobes" in want:
        out["kprobes"] = _file_feature(facts, tracefs, "kprobes", "kprobe_events",
                                       "CONFIG_KPROBES=y, CONFIG_KPROBE_EVENTS=y",
                                       "uprobes and syscall tracepoints do not need kprobes")
    if "uprobes" in want:
        out["uprobes"] = _file_feature(facts, tracefs, "uprobes", "uprobe_events",
                                       "CONFIG_UPROBES=y, CONFIG_UPROBE_EVENTS=y",
                                       "syscall tracepoints still show syscalls (pointers, not strings)")
    if "dynamic_events" in want:
        out["dynamic_events"] = _file_feature(facts, tracefs, "dynamic_events", "dynamic_events",
                                              "CONFIG_DYNAMIC_EVENTS=y", "kprobe_events/uprobe_events work")
    if "eprobes" in want:
        out["eprobes"] = _eprobe_support(facts, tracefs)
    if "hist" in want:
        out["hist"] = _hist_support(facts, tracefs)
    if "mmap_ring_buffer" in want:
        raw = tracefs / "per_cpu/cpu0/trace_pipe_raw"
        version = ".".join(map(str, facts.version))
        ev = (Evidence("kernel release", facts.uname[0]), Evidence(facts._shown(raw), "present" if raw.exists() else "absent"))
        if facts.version >= (6, 10) and raw.exists():
            out["mmap_ring_buffer"] = Support("mmap_ring_buffer", True,
                                              f"kernel {version} >= 6.10 maps trace_pipe_raw (not tried: mapping "
                                              "changes the buffer's state)", ev)
        else:
            out["mmap_ring_buffer"] = Support("mmap_ring_buffer", False,
                                              f"kernel {version} < 6.10 or no trace_pipe_raw: read() is used", ev,
                                              "nothing to do: read() of trace_pipe_raw works the same")
    return out


def _eprobe_support(facts: _Facts, tracefs: Path) -> Support:
    # The README's e-line is printed whatever CONFIG_EPROBE_EVENTS says, so it proves nothing.
    config = facts.config_evidence("CONFIG_EPROBE_EVENTS")
    if config is not None:
        if facts.config_says("CONFIG_EPROBE_EVENTS"):
            return Support("eprobes", True, "built in (CONFIG_EPROBE_EVENTS=y)", (config,))
        return _not_built("eprobes", "CONFIG_EPROBE_EVENTS=y", Evidence(facts._shown(tracefs / "README"),
                          "lists e[:...] but that line is printed even without eprobes"), config,
                          "uprobes and tracepoint filters still work")
    defined = read_text_or_none(tracefs / "dynamic_events") or ""
    if any(line.startswith("e:") for line in defined.splitlines()):
        return Support("eprobes", True, "an event probe is already defined",
                       (Evidence(facts._shown(tracefs / "dynamic_events"), "has an e: line"),))
    if not (tracefs / "dynamic_events").exists():
        return _not_built("eprobes", "CONFIG_EPROBE_EVENTS=y",
                          Evidence(facts._shown(tracefs / "dynamic_events"), "absent"), None,
                          "uprobes and tracepoint filters still work")
    try:
        # Symbols of kernel/trace/trace_eprobe.c ("<addr> <type> <name>"); a bare "eprobe" substring would
        # also match "traceprobe_*". One substring search over the whole file: per-line matching is 10x slower.
        symbols = facts.host.path("/proc/kallsyms").read_bytes()
        found = b" eprobe_" in symbols or b" trace_eprobe" in symbols
    except OSError:
        return Support("eprobes", None, "cannot tell: no kernel config, no eprobe defined, /proc/kallsyms "
                       "unreadable", (Evidence("/proc/kallsyms", "unreadable"),),
                       "try creating one: the kernel answers EINVAL/ENOENT if it lacks eprobes")
    if found:
        return Support("eprobes", True, "eprobe code is in the kernel symbol table",
                       (Evidence("/proc/kallsyms", "has eprobe symbols"),))
    return _not_built("eprobes", "CONFIG_EPROBE_EVENTS=y", Evidence("/proc/kallsyms", "no eprobe symbols"),
                      None, "uprobes and tracepoint filters still work")


def _hist_support(facts: _Facts, tracefs: Path) -> Support:
    readme = _readme(tracefs)
    hist_file = tracefs / "events/sched/sched_switch/hist"
    config = facts.config_evidence("CONFIG_HIST_TRIGGERS")
    if hist_file.exists() or re.search(r"^\s*trigger:.*\bhist\b", readme, re.MULTILINE) or "hist trigger" in readme:
        return Support("hist", True, "hist triggers present",
                       (Evidence(facts._shown(hist_file) if hist_file.exists() else facts._shown(tracefs / "README"),
                                 "present" if hist_file.exists() else "lists hist triggers"),))
    return _not_built("hist", "CONFIG_HIST_TRIGGERS=y",
                      Evidence(facts._shown(tracefs / "README"), "no hist in the trigger list"), config,
                      "rawtrace aggregates in user space from the ring buffer")


# -- the doctor ----------------------------------------------------------------------------------------

def diagnose(host: Host) -> Report:
    """Every check, with evidence, and a verdict per rawtrace capability. Leaves nothing mounted."""
    facts = _Facts(host, may_mount=True)
    try:
        return _diagnose(facts)
    finally:
        facts.close()


def _meanwhile(facts: _Facts) -> str:
    """The lockdown-proof fallbacks that exist on this machine."""
    host = facts.host
    have = []
    if host.path("/proc/sys/fs/fanotify").is_dir():
        have.append("fanotify-based file tracing")
    if host.read_text("/proc/self/schedstat"):
        have.append("/proc/PID/schedstat")
    if host.read_text("/proc/pressure/cpu"):
        have.append("PSI (/proc/pressure)")
    if not have:
        return "none of the lockdown-proof fallbacks (fanotify, schedstat, PSI) exist on this kernel"
    listed = ", ".join(have[:-1]) + " and " + have[-1] if len(have) > 1 else have[0]
    return listed + (" still work" if len(have) > 1 else " still works")


def _lockdown_explanation(facts: _Facts) -> tuple[str, str | None]:
    """(why the kernel is at its lockdown level, as a clause, what would lower it) for this machine."""
    lock, sb = facts.lockdown, facts.secure_boot
    origins = set(lock.origins)
    if lock.level in ("none", "unsupported"):
        return "", None
    level = lock.level.upper() if lock.level in _LEVELS else "*"
    parts, remedies = [], []
    if "command line" in origins:
        param = re.search(r"(?:^|\s)(lockdown=\S*)", facts.cmdline)
        parts.append(f"the kernel command line says {param.group(1) if param else 'lockdown=...'}")
        remedies.append("removing lockdown= from the kernel command line (e.g. GRUB_CMDLINE_LINUX) and rebooting")
    if "Kernel configuration" in origins:
        parts.append(f"the kernel build config forces it (CONFIG_LOCK_DOWN_KERNEL_FORCE_{level})")
        remedies.append("a kernel built with CONFIG_LOCK_DOWN_KERNEL_FORCE_NONE")
    sb_tied = "EFI Secure Boot mode" in origins or (
        sb.state == "enabled" and not sb.shim_validation_off and not parts)
    if sb_tied:
        parts.append("SecureBoot is on" + ("" if "EFI Secure Boot mode" in origins else
                                           " (the distribution kernel locks down under SecureBoot)"))
        remedies.append("`mokutil --disable-validation` (reboot, confirm in the MOK manager), turning SecureBoot "
                        "off in the firmware, or a VM without SecureBoot")
    if "securityfs" in origins:
        parts.append("a program wrote /sys/kernel/security/lockdown after boot")
        remedies.append("disabling the boot script that writes /sys/kernel/security/lockdown")
    if not parts:
        parts.append("of an unknown source (no boot message, no lockdown= parameter, no kernel config found)")
    return " and ".join(parts), " or ".join(remedies) if remedies else None


def _check_lockdown(facts: _Facts) -> Check:
    lock = facts.lockdown
    why, lower = _lockdown_explanation(facts)
    certainty = "" if lock.certain else "probably "
    if lock.level == "none":
        return Check("lockdown", OK, "none: the kernel is not locked down", lock.evidence)
    if lock.level == "unsupported":
        return Check("lockdown", OK, "not supported by this kernel (no lockdown LSM): nothing is locked",
                     lock.evidence)
    if lock.level == "integrity":
        return Check("lockdown", OK, f"{certainty}integrity: does not block tracefs, tracepoints, uprobes or "
                     f"kprobes; integrity because {why}", lock.evidence)
    if lock.level == "confidentiality":
        sb = facts.secure_boot
        cmd = " lockdown=integrity on the command line cannot lower it (the parameter only raises);"
        surprise = ""
        if sb.state == "enabled" and "command line" not in lock.origins and \
                "Kernel configuration" not in lock.origins:
            surprise = " (most distributions lock down only to integrity under SecureBoot)"
        remedy = (f"this kernel is in confidentiality lockdown because {why}{surprise};{cmd} "
                  f"{lower or 'a kernel without lockdown'} will (after a reboot: tracing disabled at boot "
                  f"stays disabled); meanwhile {_meanwhile(facts)}")
        return Check("lockdown", BLOCKED, f"{certainty}confidentiality: refuses tracefs, kprobes, /proc/kcore and "
                     f"BPF kernel reads; confidentiality because {why}", lock.evidence, remedy)
    # unknown
    locked = facts.log_lines("Kernel is locked down from") or facts.log_lines("Lockdown:")
    finding = ("locked down, level unknown (no securityfs lockdown file: an out-of-tree lockdown patch?)"
               if locked else "unknown: the lockdown file cannot be read here")
    remedy = ("run as root so rawtrace can read /sys/kernel/security/lockdown (it mounts securityfs if needed)"
              if facts.euid not in (0, None) else
              "mount securityfs (mount -t securityfs securityfs /sys/kernel/security) and run the doctor again")
    return Check("lockdown", LIMITED, finding, lock.evidence, remedy)


def _check_secure_boot(facts: _Facts) -> Check:
    sb, lock = facts.secure_boot, facts.lockdown
    ev = sb.evidence
    if sb.state == "not_efi":
        return Check("secure boot", OK, "not applicable: not an EFI boot (BIOS)" +
                     ("; lockdown does not come from SecureBoot" if lock.level in ("integrity", "confidentiality")
                      else ""), ev)
    if sb.state == "setup_mode":
        return Check("secure boot", OK, "firmware in setup mode (no Platform Key): not enforced, so the kernel "
                     "treats SecureBoot as off", ev)
    if sb.state == "disabled":
        return Check("secure boot", OK, "disabled", ev)
    if sb.state == "enabled" and sb.shim_validation_off:
        return Check("secure boot", OK, "enabled in firmware, but shim validation is disabled (MokSBStateRT=1): "
                     "the kernel treats SecureBoot as off and does not lock down for it", ev)
    if sb.state == "enabled":
        tied = lock.level in ("integrity", "confidentiality") and not (
            {"command line", "Kernel configuration", "securityfs"} & set(lock.origins))
        if lock.level == "confidentiality" and tied:
            return Check("secure boot", BLOCKED, "enabled, and it is why the kernel is in confidentiality lockdown",
                         ev, "`mokutil --disable-validation` (reboot, confirm in MOK manager), or disable "
                         "SecureBoot in the firmware, or trace in a VM without SecureBoot")
        return Check("secure boot", OK, "enabled" + ("; distribution kernels lock down to integrity under it, "
                     "which does not block tracing" if lock.level == "integrity" else ""), ev)
    return Check("secure boot", LIMITED, "EFI boot, SecureBoot state unknown (efivarfs unreadable)", ev,
                 "run as root (rawtrace mounts efivarfs if needed) or `mokutil --sb-state`")


def _check_privileges(facts: _Facts) -> Check:
    caps = facts.cap_effective
    uid = facts.euid
    names = [name for cap, name in _CAP_NAMES.items() if facts.has_cap(cap)]
    missing = [name for cap, name in _CAP_NAMES.items() if not facts.has_cap(cap)]
    uid_source = "os.geteuid()" if facts.host.is_live else "/proc/self/status Uid"
    ev = (Evidence(uid_source, f"euid {uid}" if uid is not None else "unknown"),
          Evidence(facts.caps_source, f"0x{caps:016x}: " + (", ".join(names) or "none of "
                   + ", ".join(_CAP_NAMES.values())) if caps is not None else "unknown"))
    who = "root" if uid == 0 else f"uid {uid}" if uid is not None else "unknown user"
    if uid == 0 or facts.has_cap(CAP_SYS_ADMIN):
        more = f" (missing {', '.join(missing)})" if missing else ""
        return Check("privileges", OK, f"{who} with {', '.join(names) or 'no capabilities'}{more}", ev)
    return Check("privileges", LIMITED, f"{who} without CAP_SYS_ADMIN: tracefs is root-only by default", ev,
                 "run as root (sudo rawtrace ...), or have root mount tracefs with -o gid=GROUP,mode=0750 and "
                 "add this user to GROUP")


def _blocked_tracefs_reason(facts: _Facts) -> tuple[str, str]:
    """Why tracefs is unusable and what to do, from lockdown evidence when that is the cause."""
    t = facts.tracefs
    lock = facts.lockdown
    lockdown_log = facts.log_lines("Tracing disabled due to lockdown")
    if t.state in ("empty", "denied") or lockdown_log or lock.level == "confidentiality":
        if lock.level == "confidentiality" or lockdown_log:
            why, lower = _lockdown_explanation(facts)
            what = "tracefs refused" if t.state == "denied" else "tracing disabled at boot"
            reason = (f"{what} by confidentiality lockdown, because {why}; tracefs {t.finding}"
                      + (" (\"Tracing disabled due to lockdown\" in the kernel log)" if lockdown_log else ""))
            check = _check_lockdown(facts)
            return reason, check.remedy or (lower or "")
        return (f"tracefs {t.finding} (the kernel refused to populate it)",
                "check the kernel log for lockdown messages; run `rawtrace doctor`")
    if t.state == "unreadable":
        return (f"tracefs {t.finding}",
                "run as root (sudo), or have root mount tracefs with -o gid=GROUP and add this user to GROUP")
    if t.state == "missing":
        return (t.finding, "name the directory where tracefs is mounted (or a copy of one), or leave --tracefs out")
    if t.state == "no-tracefs":
        return ("this kernel has no tracefs (built without CONFIG_TRACING/CONFIG_FTRACE)",
                "use a kernel built with CONFIG_FTRACE=y and CONFIG_TRACING=y; meanwhile " + _meanwhile(facts))
    if t.state == "unmounted":
        if facts.euid == 0:
            return ("tracefs is not mounted (the kernel has it)",
                    f"rawtrace mounts it when run as root; by hand: mount -t tracefs nodev {TRACEFS_DEFAULT}")
        return ("tracefs is not mounted and only root can mount it",
                f"as root: mount -t tracefs nodev {TRACEFS_DEFAULT} (add -o gid=GROUP to share it with GROUP)")
    return f"tracefs {t.finding}", "run `rawtrace doctor`"


def _check_tracefs(facts: _Facts) -> Check:
    t = facts.tracefs
    if t.state == "usable":
        if t.writable:
            return Check("tracefs", OK, f"{t.finding}, readable and writable", t.evidence)
        return Check("tracefs", LIMITED, f"{t.finding}, readable but not writable: events cannot be enabled",
                     t.evidence, "run as root, or mount tracefs with -o gid=GROUP,mode=0770 for this user's group")
    if t.state == "unmounted" and facts.euid == 0 and "tracefs" in facts.filesystems:
        return Check("tracefs", LIMITED, t.finding, t.evidence,
                     f"nothing to do as root (rawtrace mounts it); or: mount -t tracefs nodev {TRACEFS_DEFAULT}")
    reason, remedy = _blocked_tracefs_reason(facts)
    return Check("tracefs", BLOCKED, reason, t.evidence, remedy)


def _check_debugfs(facts: _Facts) -> Check:
    path = facts.host.path(TRACEFS_DEBUGFS)
    debugfs_mounted = any(fstype == "debugfs" for _s, _m, fstype, _o in facts.host.mounts())
    try:
        present = path.is_dir()
    except OSError:
        present = False
    if present:
        return Check("debugfs tracing", OK, f"{TRACEFS_DEBUGFS} present (the same tracefs, automounted)",
                     (Evidence(TRACEFS_DEBUGFS, "present"),))
    ev = [Evidence("/proc/self/mounts", "debugfs mounted" if debugfs_mounted else "no debugfs mount")]
    if facts.log_lines("Tracing disabled due to lockdown"):
        return Check("debugfs tracing", BLOCKED, f"{TRACEFS_DEBUGFS} missing: the automount is never created "
                     "when tracing is disabled at boot", tuple(ev), _check_lockdown(facts).remedy)
    # Otherwise the old path is missing for the same reason tracefs is (or debugfs is just not mounted);
    # rawtrace never needs it, so it is no finding of its own.
    why = "debugfs is not mounted" if not debugfs_mounted else "the tracing automount is absent"
    return Check("debugfs tracing", OK, f"{TRACEFS_DEBUGFS} missing ({why}); not needed: "
                 "rawtrace uses tracefs directly", tuple(ev))


def _support_check(name: str, support: Support) -> Check:
    if support.supported:
        return Check(name, OK, support.reason, support.evidence)
    status = LIMITED if support.supported is None or name in ("mmap ring buffer",) else BLOCKED
    return Check(name, status, support.reason, support.evidence, support.remedy)


def _fallback_checks(facts: _Facts) -> list[Check]:
    host = facts.host
    checks = []
    fan = host.path("/proc/sys/fs/fanotify")
    if fan.is_dir():
        checks.append(Check("fanotify", OK, "available (not affected by lockdown)",
                            (Evidence("/proc/sys/fs/fanotify", "present"),)))
    else:
        cfg = facts.config_evidence("CONFIG_FANOTIFY")
        checks.append(Check("fanotify", LIMITED, "not available in this kernel",
                            tuple(e for e in (Evidence("/proc/sys/fs/fanotify", "absent"), cfg) if e),
                            "a kernel with CONFIG_FANOTIFY=y; inotify (no pids) is the remaining fallback"))
    stat = host.read_text("/proc/self/schedstat")
    if stat is not None and stat.split():
        checks.append(Check("schedstat", OK, "/proc/PID/schedstat available (run-queue wait per task)",
                            (Evidence("/proc/self/schedstat", _quote(stat)),)))
    else:
        checks.append(Check("schedstat", LIMITED, "/proc/PID/schedstat missing",
                            (Evidence("/proc/self/schedstat", "absent"),), "a kernel with CONFIG_SCHED_INFO=y"))
    psi = host.read_text("/proc/pressure/cpu")
    if psi:
        checks.append(Check("psi", OK, "pressure stall information available",
                            (Evidence("/proc/pressure/cpu", _quote(psi.splitlines()[0])),)))
    else:
        disabled = host.path("/proc/pressure").is_dir()
        checks.append(Check("psi", LIMITED, "PSI off" if disabled else "PSI not built",
                            (Evidence("/proc/pressure/cpu", "unreadable" if disabled else "absent"),),
                            "boot with psi=1" if disabled else "a kernel with CONFIG_PSI=y"))
    return checks


_FEATURE_NAMES = {"tracepoints": "tracepoints", "syscalls": "syscall tracepoints", "kprobes": "kprobes",
                  "uprobes": "uprobes", "dynamic_events": "dynamic_events", "eprobes": "eprobes",
                  "hist": "hist triggers", "mmap_ring_buffer": "mmap ring buffer"}


def _diagnose(facts: _Facts) -> Report:
    release, arch = facts.uname
    if facts.host.is_live:
        kernel_ev: tuple[Evidence, ...] = (Evidence("os.uname()", f"release {release}, machine {arch}"),)
    else:
        kernel_ev = (Evidence("/proc/sys/kernel/osrelease", release), Evidence("/proc/sys/kernel/arch", arch))
    checks = [Check("kernel", OK, f"{release} {arch}", kernel_ev)]
    checks += [_check_lockdown(facts), _check_secure_boot(facts), _check_privileges(facts),
               _check_tracefs(facts), _check_debugfs(facts)]
    t = facts.tracefs
    support: dict[str, Support] = {}
    if t.state in ("usable", "unmounted") and t.path is not None and (t.path / "README").exists():
        support = _probe_support(facts, t.path)
        for key, sup in support.items():
            checks.append(_support_check(_FEATURE_NAMES[key], sup))
        subbuf = t.path / "buffer_subbuf_size_kb"
        text = None
        try:
            text = subbuf.read_text().strip()
        except OSError:
            pass
        checks.append(Check("sub-buffer size", OK, f"{text} KiB" if text else "fixed (one page; kernel < 6.8)",
                            (Evidence(facts._shown(subbuf), text or "absent"),)))
    checks += _fallback_checks(facts)
    verdicts = _verdicts(facts, support, {c.name: c for c in checks})
    tracing = any(v.status != BLOCKED for v in verdicts if v.capability in ("syscalls", "tracepoints"))
    exit_code = 2 if not tracing else 0 if all(v.status == OK for v in verdicts) else 1
    return Report(release, arch, facts.lockdown.level, facts.secure_boot.state, tuple(checks), tuple(verdicts),
                  exit_code)


def _verdicts(facts: _Facts, support: dict[str, Support], checks: dict[str, Check]) -> list[Verdict]:
    out: list[Verdict] = []
    base_ok = facts.tracefs.state in ("usable", "unmounted") and bool(support)
    if not base_ok:
        reason, remedy = _blocked_tracefs_reason(facts)
        # Not mounted but mountable by root: rawtrace mounts it itself; what is inside is unknown until then.
        status = LIMITED if facts.tracefs.state == "unmounted" and facts.euid == 0 else BLOCKED
        if status == LIMITED:
            reason += "; its features can be checked once it is mounted"
        for cap in ("syscalls", "tracepoints", "kprobes", "uprobes", "eprobes", "hist"):
            out.append(Verdict(cap, status, reason, remedy))
    else:
        for cap in ("syscalls", "tracepoints", "kprobes", "uprobes", "eprobes", "hist"):
            sup = support[cap]
            if sup.supported:
                out.append(Verdict(cap, OK, sup.reason))
            else:
                out.append(Verdict(cap, BLOCKED if sup.supported is False else LIMITED, sup.reason, sup.remedy))
        denied = _kprobes_denied(facts)
        if denied and support["kprobes"].supported:
            remedy = _check_lockdown(facts).remedy if facts.lockdown.level == "confidentiality" else (
                "a kernel without lockdown, or a 5.4+ kernel at integrity (pre-5.4 distribution kernels lock "
                "kprobes at any lockdown; on those, SysRq+x from a physical keyboard lifts it)")
            out = [Verdict("kprobes", BLOCKED, denied, remedy) if v.capability == "kprobes" else v for v in out]
    by = {v.capability: v for v in out}
    fan_ok = checks["fanotify"].status == OK
    if by["syscalls"].status == OK and by["kprobes"].status == OK:
        out.append(Verdict("file_access", OK, "syscall tracepoints, with paths from kprobes"))
    elif by["syscalls"].status == OK and by["uprobes"].status == OK:
        out.append(Verdict("file_access", LIMITED,
                           "syscall tracepoints, with paths from uprobes on libc's open functions; without "
                           "kprobes, opens by static binaries, raw syscalls and io_uring show no path",
                           "a kernel with CONFIG_KPROBE_EVENTS=y covers every open"))
    elif by["syscalls"].status == OK:
        out.append(Verdict("file_access", LIMITED, "syscall tracepoints only: paths appear as user pointers",
                           "a kernel with CONFIG_UPROBE_EVENTS or CONFIG_KPROBE_EVENTS recovers the paths"))
    else:
        root = facts.euid == 0 or facts.has_cap(CAP_SYS_ADMIN)  # fanotify mount/filesystem marks need it
        extra = "; fanotify works here (e.g. fatrace)" if fan_ok and root and "fanotify" not in (
            by["syscalls"].remedy or "") else ""
        out.append(Verdict("file_access", by["syscalls"].status, by["syscalls"].reason,
                           (by["syscalls"].remedy or "") + extra))
    sched = support.get("tracepoints")
    has_sched = bool(base_ok and sched and sched.supported and "sched_switch" in sched.reason
                     and "sched_wakeup" in sched.reason)
    if has_sched:
        out.append(Verdict("sched_latency", OK, "sched_wakeup and sched_switch tracepoints present"))
    elif checks["schedstat"].status == OK:
        why = by["tracepoints"].reason if by["tracepoints"].status != OK else "no sched_wakeup/sched_switch"
        out.append(Verdict("sched_latency", LIMITED, f"{why}; /proc/PID/schedstat gives per-task run-queue "
                           "wait totals only", by["tracepoints"].remedy or "a kernel with sched tracepoints"))
    else:
        out.append(Verdict("sched_latency", BLOCKED, "no sched tracepoints and no /proc/PID/schedstat",
                           "a kernel with CONFIG_SCHED_INFO=y or tracing enabled"))
    return out


def _kprobes_denied(facts: _Facts) -> str | None:
    """Why lockdown refuses kprobe registration even though kprobe_events exists, or None."""
    if facts.lockdown.level == "confidentiality":
        return "refused by confidentiality lockdown"
    for line in facts.log_lines("Lockdown:"):
        if "of kprobes is restricted" in line.lower():
            return f"refused by lockdown (kernel log: {_quote(line)})"
    return None


# -- preflight -----------------------------------------------------------------------------------------

def preflight(host: Host, needs: set[str]) -> None:
    """Raise TracingBlocked (or NotSupported for a missing feature) before a command touches tracefs.

    needs ⊆ {"tracefs", "syscalls", "tracepoints", "uprobes", "kprobes", "eprobes", "hist"}. Only the
    checks those needs require are made; the lockdown and kernel-log evidence is read only on failure.
    A tracefs that is not mounted passes when the command can mount it (root on the live host)."""
    unknown = set(needs) - NEEDS
    if unknown:
        raise UsageError(f"preflight: unknown need(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(NEEDS))})")
    facts = _Facts(host)
    t = facts.tracefs
    if t.state == "unmounted" and host.is_live and facts.euid == 0:
        return  # find_tracefs() mounts it; anything found inside is checked by the command itself
    if t.state != "usable":
        reason, remedy = _blocked_tracefs_reason(facts)
        raise TracingBlocked(reason, hint=remedy)
    features = set(needs) - {"tracefs"}
    if not features:
        return
    support = _probe_support(facts, t.path, features)
    for need in sorted(features):
        sup = support[need]
        if sup.supported is False:
            raise NotSupported(f"{_FEATURE_NAMES[need]}: {sup.reason}", hint=sup.remedy)
    if "kprobes" in features:
        files, _ = facts.securityfs
        text = files.get("lockdown") or ""
        if "[confidentiality]" in text:
            raise TracingBlocked("kprobes: refused by confidentiality lockdown",
                                 hint=_check_lockdown(facts).remedy)
