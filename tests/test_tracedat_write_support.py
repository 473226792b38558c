"""trace-cmd as an oracle: parse `trace-cmd report -R -t` lines and compare them with rawtrace's decoding."""

from __future__ import annotations

import re
import shutil
import subprocess

from rawtrace.parse.record import Event, Lost

TRACE_CMD = shutil.which("trace-cmd")
LINE_RE = re.compile(r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+\.\d+): "
                     r"(?P<name>\w+):\s*(?P<body>.*)$")
LOST_RE = re.compile(r"CPU:\s*(?P<cpu>\d+) \[(?:(?P<count>\d+) EVENTS DROPPED|LOST EVENTS|EVENTS DROPPED)\]")


def report(path, *extra: str) -> list[str]:
    proc = subprocess.run([TRACE_CMD, "report", "-R", "-t", *extra, "-i", str(path)], capture_output=True,
                          text=True, errors="surrogateescape", check=True)
    return proc.stdout.splitlines()


def parse_report(lines: list[str]) -> tuple[dict, dict]:
    """{cpu: [(ts ns, pid, name, body)]} and {cpu: [lost counts]} from `trace-cmd report -R -t` output."""
    events: dict[int, list] = {}
    lost: dict[int, list] = {}
    for line in lines:
        m = LOST_RE.search(line)
        if m:
            lost.setdefault(int(m.group("cpu")), []).append(int(m.group("count") or -1))
            continue
        m = LINE_RE.match(line)
        if not m:
            continue
        sec, _, frac = m.group("ts").partition(".")
        ts = int(sec) * 1_000_000_000 + int(frac.ljust(9, "0"))
        events.setdefault(int(m.group("cpu")), []).append((ts, int(m.group("pid")), m.group("name"),
                                                           m.group("body")))
    return events, lost


def split_fields(body: str, names: list[str]) -> dict[str, str]:
    """`a=1 b=x y c=3` split at the format's own field names, in order (values may hold spaces)."""
    out = {}
    positions = []
    at = 0
    for name in names:
        key = f"{name}="
        found = body.find(key, at) if not positions else body.find(" " + key, at)
        if found < 0:
            continue
        start = found if not positions else found + 1
        positions.append((name, start, start + len(key)))
        at = start + len(key)
    for i, (name, _start, value_start) in enumerate(positions):
        end = positions[i + 1][1] - 1 if i + 1 < len(positions) else len(body)
        out[name] = body[value_start:end]
    return out


def _numbers(text: str) -> list[int]:
    """The values a -R number may mean: trace-cmd prints %x and %o fields without a prefix."""
    if text == "(nil)":
        return [0]
    out = []
    for base in (0, 16, 8):
        try:
            out.append(int(text, base))
        except ValueError:
            pass
    return out


def value_agrees(value, text: str, field, symbols=None, printk=None) -> bool:
    if isinstance(value, str):
        return value == text or value.rstrip("\n") == text      # the line's own newline is not shown
    if isinstance(value, int):
        numbers = _numbers(text)
        if not numbers:
            # trace-cmd shows kernel string pointers as the string, some addresses as symbols.
            if printk and printk.get(value & ((1 << 64) - 1)) == text:
                return True
            found = symbols.lookup(value) if symbols is not None else None
            return found is not None and text.startswith(found[0])
        mask = (1 << (8 * field.size)) - 1 if field.size in (1, 2, 4, 8) else (1 << 64) - 1
        return any(number & mask == value & mask for number in numbers)
    if isinstance(value, (tuple, bytes)):
        if text.startswith("ARRAY["):
            data = bytes(int(b, 16) for b in text[6:-1].split(", ") if b)
            raw = bytes(value) if isinstance(value, bytes) else b"".join(
                (v & ((1 << (8 * (field.element_size or 1))) - 1)).to_bytes(field.element_size or 1, "little")
                for v in value)
            return data == raw[:len(data)]
        return True                              # other array renderings are not compared
    return True


def compare_with_report(decoded: dict, lines: list[str], symbols=None, printk=None) -> tuple[int, int, list[str]]:
    """(events compared, field values compared, disagreements) between rawtrace's per-CPU items and the
    report. Lost markers are compared too: the same CPUs, in the same places."""
    theirs, their_lost = parse_report(lines)
    problems: list[str] = []
    events = values = 0
    for cpu in sorted(set(theirs) | set(decoded)):
        ours = [e for e in decoded.get(cpu, []) if isinstance(e, Event)]
        lost = [e for e in decoded.get(cpu, []) if isinstance(e, Lost)]
        rows = theirs.get(cpu, [])
        if len(ours) != len(rows):
            problems.append(f"cpu {cpu}: rawtrace {len(ours)} events, trace-cmd {len(rows)}")
        if len(lost) != len(their_lost.get(cpu, [])):
            problems.append(f"cpu {cpu}: rawtrace {len(lost)} loss markers, trace-cmd {len(their_lost.get(cpu, []))}")
        for event, (ts, pid, name, body) in zip(ours, rows):
            events += 1
            if (event.ts, event.pid, event.format.name) != (ts, pid, name):
                problems.append(f"cpu {cpu}: rawtrace {(event.ts, event.pid, event.format.name)} "
                                f"trace-cmd {(ts, pid, name)}")
                continue
            fields = {f.name: f for f in event.format.fields}
            texts = split_fields(body, list(fields))
            for key, value in event.fields.items():
                if key not in texts or key not in fields:
                    continue
                values += 1
                if not value_agrees(value, texts[key], fields[key], symbols, printk):
                    problems.append(f"{name}.{key}: rawtrace {value!r} trace-cmd {texts[key]!r}")
            if len(problems) > 20:
                return events, values, problems
    return events, values, problems
