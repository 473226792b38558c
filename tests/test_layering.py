"""Dependencies point one way: tracefs I/O modules never pull in the doctor, probe specs or the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRACEFS_MODULES = sorted(f"rawtrace.tracefs.{p.stem}" for p in (ROOT / "rawtrace/tracefs").glob("*.py")
                         if p.stem != "__init__")


@pytest.mark.parametrize("module", TRACEFS_MODULES)
def test_tracefs_modules_do_not_import_upper_layers(module):
    code = (f"import sys, {module}\n"
            "bad = sorted(m for m in sys.modules if m in ('rawtrace.doctor', 'rawtrace.probes', 'rawtrace.session')"
            " or m.startswith('rawtrace.cli'))\n"
            "print(','.join(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{module} imports {done.stdout.strip()}"


def test_probes_and_dynamic_events_import_in_either_order():
    for first, second in (("rawtrace.probes", "rawtrace.tracefs.dynevents"),
                          ("rawtrace.tracefs.dynevents", "rawtrace.probes")):
        done = subprocess.run([sys.executable, "-c", f"import {first}, {second}"], capture_output=True,
                              text=True, cwd=ROOT, check=False)
        assert done.returncode == 0, done.stderr
