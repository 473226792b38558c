"""The running kernel's build configuration (/proc/config.gz or /boot/config-<release>), read through Host."""

from __future__ import annotations

import os

from rawtrace.host import Host


def kernel_release(host: Host) -> str:
    """`uname -r` of the kernel `host` runs: the live one's, or what a --root tree recorded ("unknown")."""
    if host.is_live:
        return os.uname().release
    return (host.read_text("/proc/sys/kernel/osrelease") or "unknown").strip()


def parse_config(text: str) -> dict[str, str]:
    """{CONFIG_X: value} from a kernel .config text; options marked `is not set` map to "n"."""
    values = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            values[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            values[line[2:-11]] = "n"
    return values


def kernel_config(host: Host, release: str | None = None) -> tuple[dict[str, str], str] | None:
    """(options, the file they came from) for the kernel of `host`, or None when neither
    /proc/config.gz (CONFIG_IKCONFIG_PROC) nor /boot/config-<release> can be read."""
    import zlib
    try:
        data = host.path("/proc/config.gz").read_bytes()
        return parse_config(zlib.decompress(data, 47).decode(errors="replace")), "/proc/config.gz"
    except (OSError, zlib.error):
        pass
    boot = f"/boot/config-{release or kernel_release(host)}"
    text = host.read_text(boot)
    return (parse_config(text), boot) if text is not None else None


def enabled(config: dict[str, str], option: str) -> bool:
    """Whether a parsed config builds `option` in (y) or as a module (m)."""
    return config.get(option, "n") not in ("n", "")
