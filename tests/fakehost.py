"""Builder of fake host trees (/proc, /sys, tracefs, securityfs, efivarfs, kernel log) for --root tests.

Usage:
    root = FakeHost(lockdown="confidentiality", secure_boot="enabled", tracefs="empty",
                    dmesg=["Tracing disabled due to lockdown"]).build(tmp_path)
    main(["--root", str(root), "doctor", "--json"])

Layout written (paths relative to the tree's root), each only when the spec asks for it:
    proc/sys/kernel/{osrelease,arch,dmesg_restrict}, proc/cmdline, proc/filesystems, proc/self/mounts,
    proc/self/status (Uid, Gid, CapEff), proc/config.gz, proc/self/schedstat, proc/pressure/cpu,
    proc/sys/fs/fanotify/, sys/kernel/security/{lockdown,lsm}, sys/firmware/efi/efivars/<Name>-<guid>,
    sys/kernel/boot_params/data, sys/kernel/tracing/ (README, events/..., kprobe_events, ...),
    var/log/dmesg (the kernel log rawtrace reads in a fake tree instead of /dev/kmsg).
Permissions follow the real ones that matter: tracefs is 0700 and securityfs lockdown 0600 (root only).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SHIM_LOCK_GUID = "605dab50-e046-4300-abb6-3dd810dd8b23"
ALL_CAPS = (1 << 41) - 1
CAP_SYS_ADMIN, CAP_SYSLOG = 21, 34

# Features a fake kernel can have; the default is a fully featured tracing kernel.
ALL_FEATURES = frozenset({"syscalls", "sched", "kprobes", "uprobes", "eprobes", "hist", "fanotify",
                          "schedstat", "psi"})

# Event formats captured from Linux 6.18 (x86_64); enough for tools that parse a format file.
FORMATS = {
    "syscalls/sys_enter_openat": (782, """\
	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
	field:int dfd;	offset:16;	size:8;	signed:0;
	field:const char * filename;	offset:24;	size:8;	signed:0;
	field:int flags;	offset:32;	size:8;	signed:0;
	field:umode_t mode;	offset:40;	size:8;	signed:0;

print fmt: "dfd: 0x%08lx, filename: 0x%08lx, flags: 0x%08lx, mode: 0x%08lx", ((unsigned long)(REC->dfd)), \
((unsigned long)(REC->filename)), ((unsigned long)(REC->flags)), ((unsigned long)(REC->mode))
"""),
    "syscalls/sys_exit_openat": (781, """\
	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
	field:long ret;	offset:16;	size:8;	signed:1;

print fmt: "0x%lx", REC->ret
"""),
    "sched/sched_switch": (372, """\
	field:char prev_comm[16];	offset:8;	size:16;	signed:0;
	field:pid_t prev_pid;	offset:24;	size:4;	signed:1;
	field:int prev_prio;	offset:28;	size:4;	signed:1;
	field:long prev_state;	offset:32;	size:8;	signed:1;
	field:char next_comm[16];	offset:40;	size:16;	signed:0;
	field:pid_t next_pid;	offset:56;	size:4;	signed:1;
	field:int next_prio;	offset:60;	size:4;	signed:1;

print fmt: "prev_comm=%s prev_pid=%d prev_prio=%d ==> next_comm=%s next_pid=%d next_prio=%d", \
REC->prev_comm, REC->prev_pid, REC->prev_prio, REC->next_comm, REC->next_pid, REC->next_prio
"""),
    "sched/sched_wakeup": (375, """\
	field:char comm[16];	offset:8;	size:16;	signed:0;
	field:pid_t pid;	offset:24;	size:4;	signed:1;
	field:int prio;	offset:28;	size:4;	signed:1;
	field:int target_cpu;	offset:32;	size:4;	signed:1;

print fmt: "comm=%s pid=%d prio=%d target_cpu=%03d", REC->comm, REC->pid, REC->prio, REC->target_cpu
"""),
}
_COMMON = """\
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

"""


def readme_text(features: frozenset[str] | set[str]) -> str:
    """A tracefs README with the lines whose presence depends on the kernel config."""
    lines = ["tracing mini-HOWTO:", "", " Important files:", "  trace\t\t\t- The static contents of the buffer"]
    if "kprobes" in features:
        lines.append("  kprobe_events\t\t- Create/append/remove/show the kernel dynamic events")
    if "uprobes" in features:
        lines.append("  uprobe_events\t\t- Create/append/remove/show the userspace dynamic events")
    if features & {"kprobes", "uprobes"}:
        lines += ["\t  accepts: event-definitions (one definition per line)",
                  "\t   Format: p[:[<group>/][<event>]] <place> [<args>]",
                  "\t           r[maxactive][:[<group>/][<event>]] <place> [<args>]",
                  # Printed whatever CONFIG_EPROBE_EVENTS says (kernel/trace/trace.c readme_msg).
                  "\t           e[:[<group>/][<event>]] <attached-group>.<attached-event> [<args>] [if <filter>]",
                  "\t           -:[<group>/][<event>]"]
    if "kprobes" in features:
        lines.append("  place: [<module>:]<symbol>[+<offset>]|<memaddr>")
    if "uprobes" in features:
        lines.append("   place (uprobe): <path>:<offset>[%return][(ref_ctr_offset)]")
    lines += ["      trigger\t\t- If set, a command to perform when event is hit",
              "\t    Format: <trigger>[:count][if <filter>]",
              "\t   trigger: traceon, traceoff" + (", hist" if "hist" in features else ""),
              "\t            enable_event:<system>:<event>", "\t            disable_event:<system>:<event>"]
    if "hist" in features:
        lines.append("      hist trigger\t- If set, event hits are aggregated into a hash table")
    return "\n".join(lines) + "\n"


def write_tracefs(path: Path, features: frozenset[str] | set[str] = ALL_FEATURES, *,
                  subbuf_kb: int | None = 4, cpus: int = 2) -> Path:
    """A populated fake tracefs at `path` with the files the given kernel features create."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "README").write_text(readme_text(features))
    for name, text in (("trace", ""), ("set_event", ""), ("tracing_on", "1\n"), ("current_tracer", "nop\n"),
                       ("buffer_size_kb", "1408\n"), ("available_events", "")):
        (path / name).write_text(text)
    if subbuf_kb is not None:
        (path / "buffer_subbuf_size_kb").write_text(f"{subbuf_kb}\n")
    (path / "instances").mkdir(exist_ok=True)
    if features & {"kprobes", "uprobes", "eprobes"}:
        (path / "dynamic_events").write_text("")
    if "kprobes" in features:
        (path / "kprobe_events").write_text("")
        (path / "kprobe_profile").write_text("")
    if "uprobes" in features:
        (path / "uprobe_events").write_text("")
        (path / "uprobe_profile").write_text("")
    for cpu in range(cpus):
        per_cpu = path / "per_cpu" / f"cpu{cpu}"
        per_cpu.mkdir(parents=True, exist_ok=True)
        (per_cpu / "trace_pipe_raw").write_bytes(b"")
    events = path / "events"
    events.mkdir(exist_ok=True)
    (events / "header_page").write_text(
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
        "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
        "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
        "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n")
    available = []
    for name, (event_id, body) in FORMATS.items():
        system = name.split("/")[0]
        if (system == "syscalls" and "syscalls" not in features) or (system == "sched" and "sched" not in features):
            continue
        event_dir = events / name
        event_dir.mkdir(parents=True, exist_ok=True)
        (event_dir / "format").write_text(f"name: {name.split('/')[1]}\nID: {event_id}\nformat:\n{_COMMON}{body}")
        (event_dir / "id").write_text(f"{event_id}\n")
        (event_dir / "enable").write_text("0\n")
        (event_dir / "filter").write_text("none\n")
        (event_dir / "trigger").write_text("# Available triggers:\n# traceon traceoff\n")
        if "hist" in features:
            (event_dir / "hist").write_text("")
        available.append(name.replace("/", ":"))
    (events / "timer").mkdir(exist_ok=True)  # some tracepoints exist even in a minimal kernel
    (path / "available_events").write_text("".join(a + "\n" for a in available))
    return path


def kernel_config(features: frozenset[str] | set[str], lockdown_force: str | None = None,
                  lockdown_in_secure_boot: bool = False) -> str:
    """A .config excerpt matching `features` (the options the doctor reads)."""
    def opt(name: str, on: bool) -> str:
        return f"CONFIG_{name}=y" if on else f"# CONFIG_{name} is not set"
    lines = [opt("TRACING", True), opt("FTRACE_SYSCALLS", "syscalls" in features),
             opt("KPROBES", "kprobes" in features), opt("KPROBE_EVENTS", "kprobes" in features),
             opt("UPROBES", "uprobes" in features), opt("UPROBE_EVENTS", "uprobes" in features),
             opt("EPROBE_EVENTS", "eprobes" in features), opt("HIST_TRIGGERS", "hist" in features),
             opt("FANOTIFY", "fanotify" in features), opt("SCHED_INFO", "schedstat" in features),
             opt("PSI", "psi" in features), opt("SECURITY_LOCKDOWN_LSM", True)]
    for level in ("NONE", "INTEGRITY", "CONFIDENTIALITY"):
        lines.append(opt(f"LOCK_DOWN_KERNEL_FORCE_{level}", (lockdown_force or "none").upper() == level))
    lines.append(opt("LOCK_DOWN_IN_EFI_SECURE_BOOT", lockdown_in_secure_boot))
    return "\n".join(lines) + "\n"


def _efivar(attributes: int, value: int) -> bytes:
    return attributes.to_bytes(4, "little") + bytes([value])


@dataclass
class FakeHost:
    """What the fake machine looks like. Every field has the value of an unlocked, fully featured root box.

    lockdown: "none" / "integrity" / "confidentiality" / None (kernel without the lockdown LSM).
    secure_boot: "enabled" / "disabled" / "setup_mode" / None (a BIOS machine: no /sys/firmware/efi).
    tracefs: "populated" / "empty" (mounted, nothing inside) / "unmounted" (mountable) / "absent" (not in
    the kernel). uid/caps: the identity the doctor sees in proc/self/status. dmesg: kernel log lines
    (None: no var/log/dmesg). config: write proc/config.gz (False: no kernel config available)."""

    release: str = "6.18.0"
    arch: str = "x86_64"
    lockdown: str | None = "none"
    cmdline: str = "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet"
    secure_boot: str | None = None
    shim_validation_off: bool = False
    boot_params_secure_boot: int | None = None   # byte 0x1ec; None: derived from secure_boot
    tracefs: str = "populated"
    features: frozenset[str] = ALL_FEATURES
    uid: int = 0
    caps: int = ALL_CAPS
    dmesg: list[str] | None = field(default_factory=list)
    dmesg_restrict: int = 1
    config: bool = True
    lockdown_force: str | None = None
    lockdown_in_secure_boot: bool = False
    debugfs: bool = False
    securityfs: bool = True   # False: nothing under sys/kernel/security (old kernel or not mounted)

    def build(self, root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        proc, sys = root / "proc", root / "sys"
        _write(proc / "sys/kernel/osrelease", self.release + "\n")
        _write(proc / "sys/kernel/arch", self.arch + "\n")
        _write(proc / "sys/kernel/dmesg_restrict", f"{self.dmesg_restrict}\n")
        _write(proc / "cmdline", self.cmdline + "\n")
        filesystems = ["nodev\tsysfs", "nodev\tproc", "nodev\tdebugfs", "nodev\tsecurityfs"]
        if self.tracefs != "absent":
            filesystems.append("nodev\ttracefs")
        if self.secure_boot is not None:
            filesystems.append("nodev\tefivarfs")
        filesystems.append("\text4")
        _write(proc / "filesystems", "\n".join(filesystems) + "\n")
        mounts = ["/dev/vda1 / ext4 rw,relatime 0 0", "proc /proc proc rw,nosuid,nodev,noexec 0 0",
                  "sysfs /sys sysfs rw,nosuid,nodev,noexec 0 0"]
        if self.securityfs:
            mounts.append("securityfs /sys/kernel/security securityfs rw,nosuid,nodev,noexec 0 0")
        if self.tracefs in ("populated", "empty"):
            mounts.append("tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec 0 0")
        if self.debugfs:
            mounts.append("debugfs /sys/kernel/debug debugfs rw,nosuid,nodev,noexec 0 0")
        if self.secure_boot is not None:
            mounts.append("efivarfs /sys/firmware/efi/efivars efivarfs rw,nosuid,nodev,noexec 0 0")
        _write(proc / "self/mounts", "\n".join(mounts) + "\n")
        _write(proc / "self/status", f"Name:\tpython3\nUid:\t{self.uid}\t{self.uid}\t{self.uid}\t{self.uid}\n"
               f"Gid:\t{self.uid}\t{self.uid}\t{self.uid}\t{self.uid}\nCapEff:\t{self.caps:016x}\n")
        if self.config:
            text = kernel_config(self.features, self.lockdown_force, self.lockdown_in_secure_boot)
            compressor = zlib.compressobj(wbits=31)  # gzip framing, as /proc/config.gz
            (proc / "config.gz").write_bytes(compressor.compress(text.encode()) + compressor.flush())
        if "schedstat" in self.features:
            _write(proc / "self/schedstat", "2174529 56183 12\n")
        if "psi" in self.features:
            _write(proc / "pressure/cpu", "some avg10=0.00 avg60=0.00 avg300=0.00 total=1234\n"
                   "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
        if "fanotify" in self.features:
            _write(proc / "sys/fs/fanotify/max_user_groups", "128\n")
        security = sys / "kernel/security"
        security.mkdir(parents=True, exist_ok=True)
        if not self.securityfs:
            pass
        elif self.lockdown is None:
            _write(security / "lsm", "capability,landlock,yama")
        else:
            labels = " ".join(f"[{lvl}]" if lvl == self.lockdown else lvl
                              for lvl in ("none", "integrity", "confidentiality"))
            _write(security / "lsm", "lockdown,capability,landlock,yama")
            _write(security / "lockdown", labels + "\n").chmod(0o600)
        self._write_firmware(sys)
        tracing = sys / "kernel/tracing"
        if self.tracefs == "populated":
            write_tracefs(tracing, self.features)
        elif self.tracefs in ("empty", "unmounted"):
            tracing.mkdir(parents=True, exist_ok=True)
        if self.tracefs in ("populated", "empty"):
            tracing.chmod(0o700)
        if self.debugfs:
            (sys / "kernel/debug").mkdir(parents=True, exist_ok=True)
        if self.dmesg is not None:
            _write(root / "var/log/dmesg", "".join(f"[    0.{i:06d}] {line}\n" for i, line in enumerate(self.dmesg)))
        return root

    def _write_firmware(self, sys: Path) -> None:
        (sys / "firmware/acpi").mkdir(parents=True, exist_ok=True)
        mode = self.boot_params_secure_boot
        if self.secure_boot is not None:
            efivars = sys / "firmware/efi/efivars"
            efivars.mkdir(parents=True, exist_ok=True)
            attrs = 0x6  # BOOTSERVICE_ACCESS | RUNTIME_ACCESS
            enabled = self.secure_boot == "enabled"
            setup = self.secure_boot == "setup_mode"
            (efivars / f"SecureBoot-{EFI_GLOBAL_GUID}").write_bytes(_efivar(attrs, int(enabled)))
            (efivars / f"SetupMode-{EFI_GLOBAL_GUID}").write_bytes(_efivar(attrs, int(setup)))
            (efivars / f"BootCurrent-{EFI_GLOBAL_GUID}").write_bytes(_efivar(0x7, 0))
            if self.shim_validation_off:
                (efivars / f"MokSBStateRT-{SHIM_LOCK_GUID}").write_bytes(_efivar(attrs, 1))
            if mode is None:
                mode = 3 if enabled and not self.shim_validation_off else 2
        if self.arch == "x86_64":
            data = bytearray(4096)
            data[0x1ec] = mode or 0
            _write(sys / "kernel/boot_params/data", bytes(data))
            _write(sys / "kernel/boot_params/version", "0x020f\n")


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path
