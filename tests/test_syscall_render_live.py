"""Every sys_enter_* format of the running kernel renders without a formatter falling back."""

from __future__ import annotations

import random

import pytest

from rawtrace.parse.format import parse_format
from rawtrace.syscalls.arches import host_arch
from rawtrace.syscalls.render import SyscallFormatter

VALUE_PATTERNS = (0, 1, 0xffffff9c, (1 << 64) - 1, (1 << 63), 0x7ffd12345678, 0o2000102)


@pytest.mark.live
def test_every_syscall_format_renders(live_tracefs):
    events = live_tracefs / "events" / "syscalls"
    formats = sorted(events.glob("sys_enter_*/format"))
    if not formats:
        pytest.skip("this kernel has no syscall tracepoints")
    formatter = SyscallFormatter(host_arch())
    rng = random.Random(1)
    rendered = 0
    for path in formats:
        fmt = parse_format(path.read_text(), system="syscalls", source=str(path))
        name = fmt.name[len("sys_enter_"):]
        fields = list(fmt.fields)
        for pattern in VALUE_PATTERNS + tuple(rng.getrandbits(64) for _ in range(3)):
            args = [(f.name, f.type, pattern) for f in fields]
            text = formatter.format_call(name, args)
            assert text.startswith(name + "(") and text.endswith(")"), text
            own = {f.name for f in fields if not f.name.startswith("__")}
            assert set(formatter.symbolic_args(name, args)) == own
            assert formatter.format_return(name, pattern)
            rendered += 1
    assert formatter.errors == 0
    assert rendered >= len(formats)
