"""KernelShark opens a trace.dat rawtrace wrote (in a virtual X display, as an unprivileged user: as root it
stops at a warning dialog). Skipped unless kernelshark, xvfb-run and setpriv are installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_perfetto import recording

TOOLS = [shutil.which(name) for name in ("kernelshark", "xvfb-run", "setpriv")]
pytestmark = pytest.mark.skipif(None in TOOLS or os.geteuid() != 0,
                                reason="needs kernelshark, xvfb-run, setpriv and root (to drop to nobody)")

SCRIPT = """#!/bin/sh
kernelshark "$1" > "$2" 2>&1 &
sleep 6
kill $! 2>/dev/null
wait
"""


def open_in_kernelshark(path: Path) -> str:
    """KernelShark's output for `path`, from a directory `nobody` can reach (pytest's tmp is root-only)."""
    top = Path(tempfile.mkdtemp(prefix="rtks-"))
    try:
        os.chmod(top, 0o777)
        copy = top / path.name
        shutil.copy(path, copy)
        os.chmod(copy, 0o644)
        script = top / "ks.sh"
        script.write_text(SCRIPT)
        script.chmod(0o755)
        log = top / "ks.out"
        subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", f"HOME={top}",
                        f"XDG_RUNTIME_DIR={top}", "xvfb-run", "-a", str(script), str(copy), str(log)],
                       timeout=120, check=False, capture_output=True)
        return log.read_text(errors="replace").replace(str(copy), str(path))
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_kernelshark_loads_a_rawtrace_file(tmp_path, compression):
    path = recording(tmp_path)
    if compression == "zstd":
        if shutil.which("zstd") is None:
            pytest.skip("no zstd program")
        from rawtrace.parse.tracedat import read_tracedat
        from rawtrace.parse.tracedat_write import TraceDatContent, write_tracedat
        src = read_tracedat(path)
        buf = src.buffer()
        path = tmp_path / "z.dat"
        write_tracedat(path, TraceDatContent(header_page=src.header_page, header_event=src.header_event,
                                             event_formats=src.event_formats, cmdlines=src.cmdlines,
                                             clock=buf.clock, cpu_data={c: src.cpu_data(buf, c) for c in buf.cpus}),
                       compression="zstd")
    output = open_in_kernelshark(path)
    assert f'Loading  "{path}"' in output or f'Loading "{path}"' in output, output
    assert "ERROR" not in output, output


def test_kernelshark_rejects_a_damaged_file(tmp_path):
    # The check above can fail: a cut file is refused with an ERROR line.
    good = recording(tmp_path)
    bad = tmp_path / "bad.dat"
    bad.write_bytes(good.read_bytes()[:3000])
    assert "ERROR" in open_in_kernelshark(bad)
