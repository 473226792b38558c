"""The common commands start without the modules that make Python start-up slow (measured costs in a clean
venv: typing ~2.5 ms, dataclasses+inspect ~5 ms, shutil ~1.7 ms, locale ~1 ms, tabulate ~60 ms, pathlib ~4 ms
with the urllib.parse it imports)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakehost import FakeHost

ROOT = Path(__file__).resolve().parent.parent
SLOW = ("typing", "dataclasses", "inspect", "shutil", "locale", "tabulate", "importlib.metadata",
        "importlib.util", "elftools", "ctypes", "json", "pathlib")

# -S: no site, so nothing a .pth file preloads (this interpreter's site imports typing) hides a regression.
PROBE = """
import os, sys
sys.path.insert(0, {root!r})
before = set(sys.modules)
devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 1)
os.dup2(devnull, 2)
from rawtrace.cli import main
code = main({argv!r})
loaded = sorted(m for m in {slow!r} if m in sys.modules and m not in before)
os.write(3, (repr((code, loaded)) + "\\n").encode())
"""


def _loaded(argv: list[str]) -> tuple[int, list[str]]:
    read, write = os.pipe()
    code = PROBE.format(root=str(ROOT), argv=argv, slow=SLOW)
    done = subprocess.run([sys.executable, "-S", "-c", f"import os; os.dup2({write}, 3)\n" + code],
                          pass_fds=(write,), capture_output=True, text=True, check=False, timeout=60)
    os.close(write)
    with open(read) as pipe:
        out = pipe.read()
    assert out, done.stderr
    return ast.literal_eval(out)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return FakeHost().build(tmp_path_factory.mktemp("startup") / "host")


@pytest.mark.parametrize("argv,allowed", [
    (["list-syscalls"], ()),
    (["list-syscalls", "open*", "--arch", "arm64"], ()),
    (["doctor"], ("ctypes", "pathlib")),        # capget/mount for the privilege and securityfs checks
    (["format", "sys_enter_openat"], ()),
])
def test_common_commands_start_lean(tree, argv, allowed):
    code, loaded = _loaded(["--root", str(tree), *argv])
    assert code in (0, 1)
    assert [m for m in loaded if m not in allowed] == []
