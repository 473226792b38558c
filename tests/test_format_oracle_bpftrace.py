"""Oracle: the fields bpftrace lists for every tracepoint (its own format-file reader) match ours."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from rawtrace.tracefs.events import EventCatalog

pytestmark = pytest.mark.live


def _bpftrace_listing() -> dict[tuple[str, str], list[str]]:
    result = subprocess.run(["bpftrace", "-lv", "tracepoint:*:*"], capture_output=True, text=True, timeout=120,
                            check=False)
    if result.returncode != 0:
        pytest.skip(f"bpftrace -lv failed: {result.stderr.strip()[:200]}")
    listing: dict[tuple[str, str], list[str]] = {}
    current: list[str] = []
    for line in result.stdout.splitlines():
        if line.startswith("tracepoint:"):
            _kind, system, name = line.split(":")
            current = listing[(system, name)] = []
        elif line.strip():
            current.append(line.strip())
    return listing


def _as_bpftrace_prints(field) -> str:
    """bpftrace writes `type name` with a fixed array's brackets after the name, as C declares it."""
    if "[" in field.type and not field.type.startswith(("__data_loc", "__rel_loc")):
        cut = field.type.index("[")
        return f"{field.type[:cut]} {field.name}{field.type[cut:]}"
    return f"{field.type} {field.name}"


def test_every_tracepoint_matches_bpftrace(live_tracefs_available):
    if shutil.which("bpftrace") is None:
        pytest.skip("bpftrace is not installed")
    listing = _bpftrace_listing()
    assert len(listing) > 100
    catalog = EventCatalog(live_tracefs_available / "events")
    mismatches = []
    for (system, name), fields in listing.items():
        ours = [_as_bpftrace_prints(f) for f in catalog.format(system, name).fields]
        if ours != fields:
            mismatches.append((system, name, ours, fields))
    assert mismatches == []
