"""Live USDT probe with a semaphore: the kernel sets it (ref_ctr_offset), the program fires, the args are right."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from test_elf_usdt import build_usdt_program

from rawtrace.probes import ProbeSpec, resolve, run_group
from rawtrace.tracefs.dynevents import DynamicEvents

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(os.uname().machine != "x86_64", reason="the USDT program's asm is x86_64")]


def test_usdt_probe_with_semaphore(live_tracefs, tmp_path):
    binary = build_usdt_program(tmp_path)
    # the probe site only runs while the semaphore is non-zero: no probe, no events
    child = subprocess.Popen([str(binary), "loop"])
    group = run_group()
    dyn = DynamicEvents(live_tracefs)
    instance = live_tracefs / "instances" / f"rawtrace-{os.getpid()}-usdt"
    try:
        spec = ProbeSpec.parse(f"usdt:pid:{child.pid}:rtprov:tick i=arg1 local=arg2 g=arg3:s64 k=arg4")
        made = dyn.create([resolve(spec)])
        instance.mkdir()
        for g, e in made:
            (instance / "events" / g / e / "enable").write_text("1")
        rows: list[tuple[int, int, int, int]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(rows) < 3:
            time.sleep(0.2)
            text = (instance / "trace").read_text()
            rows = [tuple(int(v) for v in m) for m in
                    re.findall(r"rtprov_tick: \(\w+\) i=(-?\d+) local=(-?\d+) g=(-?\d+) k=(-?\d+)", text)]
        assert len(rows) >= 3
        for i, local, g, k in rows:
            assert (local, g, k) == (7 * i, i + 100000, 42)
        for g, e in made:
            (instance / "events" / g / e / "enable").write_text("0")
    finally:
        child.kill()
        child.wait()
        if instance.exists():
            instance.rmdir()
        dyn.remove()
    text = (live_tracefs / "dynamic_events").read_text()
    assert f":{group}/" not in text and not (live_tracefs / "events" / group).exists()
    assert not Path(instance).exists()
