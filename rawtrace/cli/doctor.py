"""`rawtrace doctor`: render the doctor's checks and verdicts as text tables or JSON."""

from __future__ import annotations

import argparse
import sys

HELP = "lockdown, SecureBoot and tracing capabilities of this machine: what works, what not, why, what to do"

EPILOG = """\
The doctor only reads. If securityfs, efivarfs or tracefs is not mounted and you are root, it mounts it
to look inside and unmounts it again before exiting.

--json keys: kernel, arch, lockdown (none|integrity|confidentiality|unsupported|unknown),
secure_boot (enabled|disabled|setup_mode|not_efi|unknown), checks [{name, status, finding, evidence,
remedy}], verdict {capability: {status, reason, remedy}}, exit_code. Status is ok, limited or blocked.

exit status:
  0  everything rawtrace offers works here
  1  tracing works, but some features are unavailable (e.g. a kernel without kprobes)
  2  tracing is blocked (no tracefs, confidentiality lockdown, no permission)

examples:
  rawtrace doctor                      # checks, evidence, remedies, one verdict per capability
  rawtrace doctor --brief              # the two tables only
  rawtrace doctor --json | jq .verdict.kprobes
  rawtrace --root /tmp/laptop doctor   # a captured or fake host tree; its kernel log is var/log/dmesg
  rawtrace doctor --root DIR --tracefs DIR/sys/kernel/tracing
"""

_SHOWN = {"ok": "OK", "limited": "limited", "blocked": "blocked"}
_CAPABILITIES = {"syscalls": "syscall tracing", "tracepoints": "tracepoint tracing", "kprobes": "kprobes",
                 "uprobes": "uprobes", "eprobes": "event probes", "hist": "hist triggers",
                 "file_access": "file-access tracing", "sched_latency": "scheduling latency"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--brief", action="store_true", help="only the tables, without evidence and remedies")


def _headline(text: str, limit: int = 84) -> str:
    """The first clause of a finding, for a table cell; the whole text is shown below the table."""
    head = text.split("; ")[0]
    if len(head) > limit:
        cut = head.rfind(" ", 0, limit - 3)
        head = head[:cut if cut > 0 else limit - 3] + "..."
    return head


def render_text(report, out, brief: bool = False) -> None:
    from rawtrace.output import escape, table
    out.write(f"rawtrace doctor: Linux {escape(report.kernel)} ({escape(report.arch)}), "
              f"lockdown {report.lockdown}, SecureBoot {report.secure_boot}\n\n")
    table(([c.name, _SHOWN[c.status], _headline(escape(c.finding))] for c in report.checks),
          ["CHECK", "STATUS", "FINDING"], out)
    said: dict[str, str] = {}  # remedy text -> where it was first printed, so it is printed once

    def remedy(text: str | None, where: str) -> None:
        if not text:
            return
        if text in said:
            out.write(f"      remedy: as for {said[text]} above\n")
        else:
            said[text] = where
            out.write(f"      remedy: {escape(text)}\n")

    if not brief:
        out.write("\nevidence:\n")
        for c in report.checks:
            out.write(f"  {c.name} [{_SHOWN[c.status]}]: {escape(c.finding)}\n")
            for e in c.evidence:
                out.write(f"      {escape(e.source)}: {escape(e.text)}\n")
            remedy(c.remedy, c.name)
    out.write("\n")
    table(([_CAPABILITIES.get(v.capability, v.capability), _SHOWN[v.status], _headline(escape(v.reason))]
           for v in report.verdicts), ["CAPABILITY", "STATUS", "WHY"], out)
    missing = [v for v in report.verdicts if v.status != "ok"]
    if missing and not brief:
        out.write("\nwhat to do:\n")
        groups: dict[tuple[str, str | None], list[str]] = {}
        for v in missing:  # capabilities blocked for the same reason are listed together
            groups.setdefault((v.reason, v.remedy), []).append(_CAPABILITIES.get(v.capability, v.capability))
        for (reason, text), names in groups.items():
            out.write(f"  {', '.join(names)}: {escape(reason)}\n")
            remedy(text, names[0])
    if report.exit_code == 0:
        summary = "everything rawtrace offers works here"
    elif report.exit_code == 1:
        names = ", ".join(_CAPABILITIES.get(v.capability, v.capability) for v in missing)
        summary = f"tracing works; not fully available here: {names}"
    else:
        summary = "tracing is blocked on this machine"
    out.write(f"\nverdict: {summary} (exit {report.exit_code})\n")


def run(args: argparse.Namespace, host) -> int:
    from rawtrace.doctor import diagnose
    if not host.is_live and not host.root.is_dir():
        from rawtrace.errors import UsageError
        raise UsageError(f"--root {host.root}: no such directory")
    report = diagnose(host)
    if args.json:
        from rawtrace.output import json_dump
        json_dump(report.to_json())
    else:
        render_text(report, sys.stdout, brief=args.brief)
    return report.exit_code
